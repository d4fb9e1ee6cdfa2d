//! Issue #13, deliverables 1 and 2: real work is placed by the whole model. Two sites with
//! real agents, each machine matched to its site's registered offer (different prices,
//! TFLOPS, PUE, electricity prices) and a link between them: the binder follows the
//! policy's price, energy, performance and latency weights exactly as explain predicts.
//! Registered capacity without a live machine is a planning target only; a machine that
//! fulfils no offer is unregistered capacity with the reason; a site whose agents stopped
//! heartbeating is down and never bound to.

use crate::harness::{Agent, Server, only, wait_nodes};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn created(server: &Server, path: &str, body: Value) -> Value {
    let (s, b) = server.admin(Method::POST, path, Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{path}: {b}");
    b
}

fn site(name: &str, region: &str, lat: f64, lon: f64, pue: f64, power: f64) -> Value {
    json!({"name": name, "visibility": "public", "spec": {
        "region": region, "supplier": "test", "location": {"lat": lat, "lon": lon},
        "pue": pue, "electricity_price": power}})
}

/// A CPU offer of `site` for the machine `node` reported (its own CPU model and
/// architecture, so the match is automatic).
fn cpu_offer(name: &str, site: &str, node: &Value, tflops: f64, price: f64, watts: f64) -> Value {
    let inv = &node["inventory"];
    assert!(
        !inv["cpu_model"].as_str().unwrap_or("").is_empty(),
        "the agent reports no CPU model: {inv}"
    );
    json!({"name": name, "visibility": "public", "spec": {"site": site, "type": "compute",
        "compute": {"supply_mode": "bare_metal", "chip_type": "cpu",
            "architecture": inv["arch"], "model": inv["cpu_model"], "count": 64, "memory_gib": 4,
            "tflops": tflops, "unit_price": price, "power_watts": watts}}})
}

async fn wait_task(server: &Server, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, t) = server
            .admin(Method::GET, &format!("/api/v1/tasks/{id}"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{t}");
        if done(&t) {
            return t;
        }
        assert!(Instant::now() < deadline, "task {id} never got there: {t}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn capacity(server: &Server) -> Vec<Value> {
    let (s, b) = server.admin(Method::GET, "/api/v1/capacity", None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b.as_array().unwrap().clone()
}

fn site_of<'a>(cap: &'a [Value], name: &str) -> &'a Value {
    cap.iter()
        .find(|s| s["site"] == name)
        .unwrap_or_else(|| panic!("no site {name} in {cap:?}"))
}

/// The verdict the live explanation records for a site from the `live_sites` filter.
fn live_verdict<'a>(explanation: &'a Value, site: &str) -> &'a Value {
    let c = explanation["decision"]["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == site)
        .unwrap_or_else(|| panic!("{site} is not a candidate: {explanation}"));
    c["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["plugin"] == "live_sites")
        .unwrap_or_else(|| panic!("no live_sites verdict for {site}: {c}"))
}

#[tokio::test]
async fn live_tasks_are_placed_by_the_whole_model_as_explain_predicts() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        false,
        &[
            "--no-local-agent",
            "--heartbeat-ms",
            "300",
            "--node-timeout-ms",
            "3000",
        ],
    )
    .await;
    // East: efficient and close to the users, dear and slow. West: cheap and fast, but
    // costly to power and 30 ms away.
    created(
        &server,
        "/api/v1/sites",
        site("east-a", "East", 31.2, 121.5, 1.1, 1.0),
    )
    .await;
    created(
        &server,
        "/api/v1/sites",
        site("west-b", "West", 37.5, 105.2, 1.5, 0.5),
    )
    .await;
    created(
        &server,
        "/api/v1/links",
        json!({"name": "east-west", "visibility": "public", "spec": {"from": "east-a", "to": "west-b",
            "link_type": "private_line", "latency_ms": 30, "bandwidth_gbps": 100, "jitter_ms": 1,
            "loss_pct": 0, "bidirectional": true}}),
    )
    .await;
    // A third site registers H800s and has no machine: a planning target only.
    created(
        &server,
        "/api/v1/sites",
        site("lab-c", "East", 30.3, 120.2, 1.2, 0.6),
    )
    .await;
    created(
        &server,
        "/api/v1/resources",
        json!({"name": "lab-c-h800", "visibility": "public",
        "spec": {"site": "lab-c", "type": "compute", "compute": {"supply_mode": "bare_metal",
            "chip_type": "gpu", "architecture": "hopper", "model": "H800", "count": 16,
            "memory_gib": 80, "tflops": 989, "unit_price": 24, "power_watts": 700}}}),
    )
    .await;

    // One real agent per site; west-b's names its offer with a label, east-a's is matched
    // by its chip, model and architecture.
    let join_a = server.join_token("east-a").await;
    let join_b = server.join_token("west-b").await;
    let _a = Agent::start(
        &server.base,
        &join_a,
        "east-a",
        "a1",
        &dir.path().join("a1"),
    );
    let log = dir.path().join("b1.log");
    let state_b = dir.path().join("b1");
    let work = crate::harness::open_dir();
    let work_b = work.path().join("work");
    let mut b1 = Agent::start_args(
        &[
            "--server",
            &server.base,
            "--join",
            &join_b,
            "--site",
            "west-b",
            "--name",
            "b1",
            "--state-dir",
            state_b.to_str().unwrap(),
            "--work-root",
            work_b.to_str().unwrap(),
            "--label",
            "cpn.node/resource=west-b-cpu",
        ],
        &log,
    );
    let nodes = tokio::time::timeout(Duration::from_secs(40), wait_nodes(&server, 2))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "agents did not register; b1 said: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
    let node = |site: &str| nodes.iter().find(|n| n["site"] == site).unwrap().clone();
    created(
        &server,
        "/api/v1/resources",
        cpu_offer("east-a-cpu", "east-a", &node("east-a"), 0.05, 0.5, 10.0),
    )
    .await;
    created(
        &server,
        "/api/v1/resources",
        cpu_offer("west-b-cpu", "west-b", &node("west-b"), 0.1, 0.1, 20.0),
    )
    .await;

    // Each machine inherits its offer; the API and the CLI say so.
    let (_, listed) = server.admin(Method::GET, "/api/v1/nodes", None).await;
    for (site, offer) in [("east-a", "east-a-cpu"), ("west-b", "west-b-cpu")] {
        let n = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["site"] == site)
            .unwrap();
        assert_eq!(n["offer"], offer, "{n}");
        assert!(n.get("unregistered").is_none(), "{n}");
    }
    let cap = capacity(&server).await;
    let a = site_of(&cap, "east-a");
    assert_eq!(a["health"], "healthy");
    assert_eq!(a["binder_target"], true);
    let o = &a["offers"][0];
    assert_eq!(o["resource"], "east-a-cpu");
    assert_eq!(o["unit"], "core");
    assert_eq!(o["registered"], 64.0);
    assert_eq!(o["nodes_live"], 1);
    assert!(o["live"].as_f64().unwrap() >= 1.0, "{o}");
    let c = site_of(&cap, "lab-c");
    assert_eq!(c["binder_target"], false, "{c}");
    assert_eq!(c["offers"][0]["registered"], 16.0);
    assert_eq!(c["offers"][0]["live"], 0.0);

    // Price → west (0.1 < 0.5 CNY per core-hour); energy → east (0.5 core × 10 W × PUE 1.1
    // × 1.0 CNY/kWh beats 20 W × 1.5 × 0.5); performance → west (0.1 > 0.05 TFLOPS);
    // latency from the East → east (0 ms; west-b is 30 ms over the link).
    let cases = [
        ("price", "west-b"),
        ("energy", "east-a"),
        ("performance", "west-b"),
        ("latency", "east-a"),
    ];
    for (factor, want) in cases {
        let policy = format!("{factor}-only");
        created(
            &server,
            "/api/v1/policies",
            json!({"name": policy, "visibility": "public", "spec": {"weights": only(factor)}}),
        )
        .await;
        let spec = json!({"name": format!("t-{factor}"), "origin_region": "East", "chip": "cpu",
            "resources": {"cpu_cores": 0.5, "memory_gib": 0.25}});
        let (s, e) = server
            .admin(
                Method::POST,
                "/api/v1/schedule/explain",
                Some(json!({"task": spec, "policy": policy})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{e}");
        let predicted = e["decision"]["chosen_site"].as_str().unwrap().to_string();
        assert!(e.get("planning_only").is_none(), "{e}");
        assert_eq!(predicted, want, "{factor}: explain {}", e["decision"]);

        let sub = created(
            &server,
            "/api/v1/tasks",
            json!({"name": format!("t-{factor}"), "command": ["true"], "policy": policy,
                "origin_region": "East", "constraints": {"chip": "cpu"},
                "resources": {"cpu_cores": 0.5, "memory_gib": 0.25}}),
        )
        .await;
        let id = sub["id"].as_str().unwrap();
        let t = wait_task(&server, id, |t| t["site"].is_string()).await;
        assert_eq!(t["site"], predicted.as_str(), "{factor}: bound {t}");
        // "Why here" is the binder's own record, made as it bound the task: the same site,
        // and the factor that decided it scored as explain predicted.
        let (s, why) = server
            .admin(Method::GET, &format!("/api/v1/tasks/{id}/explain"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{why}");
        assert!(why["decided_at"].is_string(), "a stored decision: {why}");
        assert_eq!(why["policy"]["name"], policy.as_str(), "{why}");
        assert_eq!(why["decision"]["chosen_site"], want, "{factor}: {why}");
        assert!(why["decision"]["nodes"].as_array().unwrap().is_empty());
        let factor_of = |d: &Value| -> Value {
            d["sites"][0]["factors"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["plugin"] == factor)
                .cloned()
                .unwrap_or_else(|| panic!("{factor} among the winner's factors: {d}"))
        };
        let (stored, predicted) = (factor_of(&why["decision"]), factor_of(&e["decision"]));
        assert_eq!(why["decision"]["sites"][0]["name"], want);
        assert_eq!(
            stored["normalized"], predicted["normalized"],
            "{stored} vs {predicted}"
        );
        assert_eq!(stored["contribution"], predicted["contribution"]);
        // "Explain now" runs on the live state and agrees, with every verdict.
        let (s, why) = server
            .admin(
                Method::GET,
                &format!("/api/v1/tasks/{id}/explain?now=true"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{why}");
        assert!(why.get("decided_at").is_none(), "{why}");
        assert_eq!(
            why["decision"]["chosen_site"], want,
            "{factor}: {}",
            why["decision"]
        );
        let v = live_verdict(&why, "lab-c");
        assert_eq!(v["fits"], false, "{v}");
        assert_eq!(v["code"], "no_live_node", "{v}");
        assert!(
            v["detail"]
                .as_str()
                .unwrap()
                .contains("planning target only"),
            "{v}"
        );
        wait_task(&server, id, |t| t["state"] == "succeeded").await;
    }

    // A GPU task: explain plans it on lab-c's registered H800s, the binder never binds it
    // there, and says why.
    let gpu = json!({"name": "gpu", "chip": "gpu", "resources": {"cpu_cores": 1, "memory_gib": 1, "gpus": 1}});
    let (s, e) = server
        .admin(
            Method::POST,
            "/api/v1/schedule/explain",
            Some(json!({"task": gpu})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(e["decision"]["chosen_site"], "lab-c", "{}", e["decision"]);
    assert!(
        e["planning_only"]
            .as_str()
            .is_some_and(|w| w.contains("planning target only")),
        "{e}"
    );
    let sub = created(
        &server,
        "/api/v1/tasks",
        json!({"name": "gpu", "command": ["true"], "constraints": {"chip": "gpu"},
            "resources": {"cpu_cores": 1, "memory_gib": 1, "gpus": 1}}),
    )
    .await;
    let gpu_id = sub["id"].as_str().unwrap().to_string();
    let t = wait_task(&server, &gpu_id, |t| {
        t["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no_live_node"))
    })
    .await;
    assert_eq!(t["state"], "pending", "{t}");
    let (_, why) = server
        .admin(
            Method::GET,
            &format!("/api/v1/tasks/{gpu_id}/explain"),
            None,
        )
        .await;
    assert!(why["decision"]["chosen_site"].is_null(), "{why}");
    assert_eq!(live_verdict(&why, "lab-c")["code"], "no_live_node");
    let (s, b) = server
        .admin(
            Method::POST,
            &format!("/api/v1/tasks/{gpu_id}/cancel"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");

    // A machine that fulfils no offer is unregistered capacity, with the reason.
    let join_c = server.join_token("lab-c").await;
    let gpus: Vec<Value> = (0..4)
        .map(|i| json!({"index": i, "model": "NVIDIA A100-SXM4-80GB", "memory_mib": 81920}))
        .collect();
    let (s, b) = server
        .call(
            Method::POST,
            "/api/v1/agents/register",
            Some(&join_c),
            Some(
                json!({"site": "lab-c", "name": "c1", "inventory": {"hostname": "c1",
                "arch": "x86_64", "cpu_model": "AMD EPYC 7763", "cpu_cores": 64,
                "memory_mib": 524288, "gpus": gpus}}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let c1 = b["node_id"].as_str().unwrap();
    let (s, n) = server
        .admin(Method::GET, &format!("/api/v1/nodes/{c1}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{n}");
    assert!(n.get("offer").is_none(), "{n}");
    let why = n["unregistered"].as_str().unwrap();
    assert!(
        why.contains("lab-c-h800: NVIDIA A100-SXM4-80GB is ampere, not hopper"),
        "{why}"
    );
    let c = site_of(&capacity(&server).await, "lab-c").clone();
    assert_eq!(c["unregistered"][0]["node"], "c1", "{c}");
    assert_eq!(c["unregistered"][0]["reason"], why, "{c}");
    assert_eq!(c["offers"][0]["live"], 0.0, "{c}");
    let out = server.cli(&["site", "capacity"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "east-a-cpu",
        "west-b-cpu",
        "lab-c-h800",
        "planning only",
        "Unregistered capacity",
        "ampere, not hopper",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }

    // West's agent dies: once its node times out, west-b is down whatever its spec says,
    // and a price-only task (west-b's strength) is bound in the east.
    b1.kill9();
    let deadline = Instant::now() + Duration::from_secs(30);
    let west = loop {
        let cap = capacity(&server).await;
        let w = site_of(&cap, "west-b").clone();
        if w["health"] == "down" {
            break w;
        }
        assert!(Instant::now() < deadline, "west-b never went down: {w}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(west["binder_target"], false, "{west}");
    assert_eq!(west["offers"][0]["nodes_lost"], 1, "{west}");
    assert!(
        west["health_reason"]
            .as_str()
            .unwrap()
            .contains("no heartbeat"),
        "{west}"
    );
    let (s, st) = server
        .admin(Method::GET, "/api/v1/sites/west-b/status", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{st}");
    assert_eq!(st["health"], "down", "{st}");
    let spec = json!({"name": "t-price-2", "origin_region": "East", "chip": "cpu",
        "resources": {"cpu_cores": 0.5, "memory_gib": 0.25}});
    let (_, e) = server
        .admin(
            Method::POST,
            "/api/v1/schedule/explain",
            Some(json!({"task": spec, "policy": "price-only"})),
        )
        .await;
    assert_eq!(e["decision"]["chosen_site"], "east-a", "{}", e["decision"]);
    let sub = created(
        &server,
        "/api/v1/tasks",
        json!({"name": "t-price-2", "command": ["true"], "policy": "price-only",
            "origin_region": "East", "constraints": {"chip": "cpu"},
            "resources": {"cpu_cores": 0.5, "memory_gib": 0.25}}),
    )
    .await;
    let id = sub["id"].as_str().unwrap();
    let t = wait_task(&server, id, |t| t["site"].is_string()).await;
    assert_eq!(t["site"], "east-a", "{t}");
    let (_, why) = server
        .admin(
            Method::GET,
            &format!("/api/v1/tasks/{id}/explain?now=true"),
            None,
        )
        .await;
    assert_eq!(
        live_verdict(&why, "west-b")["code"],
        "site_not_answering",
        "{why}"
    );
}
