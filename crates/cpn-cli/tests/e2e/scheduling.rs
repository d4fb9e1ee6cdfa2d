//! Scheduling through the API: policies with scopes, explain, dry-run, CEL validation,
//! versions and rollback, on the demo federation.

use crate::harness::{Server, snapshot};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn gpu_task(name: &str) -> Value {
    json!({"name": name, "origin_region": "Shanghai", "resources": {"cpu_cores": 8, "memory_gib": 64, "gpus": 1}, "chip": "gpu"})
}

async fn create_policy(server: &Server, body: Value) -> Value {
    let (s, b) = server
        .admin(Method::POST, "/api/v1/policies", Some(body))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    b
}

#[tokio::test]
async fn policies_by_scope_explain_and_dry_run() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), true).await;
    let alice = server.user("lab-a", "alice", "user").await;

    // Two policies with different scopes: lab-a's tasks go green; inference goes near.
    create_policy(
        &server,
        json!({"name": "lab-a-green", "visibility": "public", "spec": {
        "priority": 10, "scope": {"tenants": ["lab-a"]}, "match_rules": {"tenants": ["lab-a"]},
        "weights": {"energy": 5, "carbon": 5, "price": 1, "latency": 0}}}),
    )
    .await;
    create_policy(&server, json!({"name": "near-inference", "visibility": "public", "spec": {
        "priority": 5, "scope": {"businesses": ["inference"]}, "match_rules": {"businesses": ["inference"]},
        "weights": {"latency": 10, "price": 0, "energy": 0}}})).await;

    // Alice's task is scheduled by lab-a's policy, and explain says why.
    let (s, a) = server
        .call(
            Method::POST,
            "/api/v1/schedule/explain",
            Some(&alice),
            Some(json!({"task": gpu_task("a1")})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(a["policy"]["name"], "lab-a-green");
    assert!(
        a["policy"]["reasons"].to_string().contains("lab-a"),
        "{}",
        a["policy"]
    );
    let chosen_a = a["decision"]["chosen_site"].as_str().unwrap().to_string();

    // The operator's inference task is scheduled by the latency policy; others by default.
    let mut inference = gpu_task("op1");
    inference["business"] = json!("inference");
    let (s, b) = server
        .admin(
            Method::POST,
            "/api/v1/schedule/explain",
            Some(json!({"task": inference})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["policy"]["name"], "near-inference");
    let chosen_b = b["decision"]["chosen_site"].as_str().unwrap();
    assert_ne!(
        chosen_a, chosen_b,
        "green and near policies should disagree for a Shanghai task"
    );
    let (_, c) = server
        .admin(
            Method::POST,
            "/api/v1/schedule/explain",
            Some(json!({"task": gpu_task("op2")})),
        )
        .await;
    assert_eq!(c["policy"]["name"], "default");

    // The breakdown adds up: each feasible site's contributions sum to its total, and the
    // chosen site has the highest total.
    for decision in [&a["decision"], &b["decision"], &c["decision"]] {
        let sites = decision["sites"].as_array().unwrap();
        let mut best = f64::MIN;
        for site in sites.iter().filter(|s| s["feasible"] == true) {
            let sum: f64 = site["factors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["contribution"].as_f64().unwrap())
                .sum();
            let total = site["total"].as_f64().unwrap();
            assert!(
                (sum - total).abs() < 1e-6,
                "contributions {sum} != total {total} for {}",
                site["name"]
            );
            best = best.max(total);
        }
        assert_eq!(decision["score"].as_f64().unwrap(), best);
        assert_eq!(sites[0]["name"], decision["chosen_site"]);
    }

    // Dry-run: two policies side by side, nothing stored changes.
    let before = snapshot(&server, "sites").await;
    let tasks: Vec<Value> = (0..20).map(|i| gpu_task(&format!("t{i}"))).collect();
    let (s, d) = server
        .admin(
            Method::POST,
            "/api/v1/schedule/dry-run",
            Some(json!({"policies": ["default", "lab-a-green"], "tasks": tasks})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    let runs = d["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for run in runs {
        assert_eq!(run["kpis"]["placed"], 20, "{}", run["kpis"]);
        assert!(run["kpis"]["total_cost_cny"].as_f64().unwrap() > 0.0);
        assert!(run["kpis"]["energy_kwh"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(snapshot(&server, "sites").await, before);
}

#[tokio::test]
async fn invalid_policies_are_rejected_with_positions_and_versions_roll_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), true).await;

    let (s, b) = server
        .admin(
            Method::POST,
            "/api/v1/policies",
            Some(json!({"name": "broken", "spec": {
            "cel_filters": [{"name": "cheap", "expr": "site.pue <"}]}})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "spec.cel_filters[0].expr");
    let message = b["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("line 1") && message.contains("column"),
        "{message}"
    );

    let (s, b) = server
        .admin(
            Method::POST,
            "/api/v1/policies",
            Some(json!({"name": "typo", "spec": {"weights": {"prize": 1}}})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "spec.weights.prize");

    // A CEL filter that works: only sites with PUE at most 1.2.
    let p = create_policy(
        &server,
        json!({"name": "green-only", "spec": {
        "cel_filters": [{"name": "low-pue", "expr": "site.pue <= 1.2"}], "weights": {"price": 1}}}),
    )
    .await;
    assert_eq!(p["generation"], 1);
    let (s, e) = server
        .admin(
            Method::POST,
            "/api/v1/schedule/explain",
            Some(json!({"task": gpu_task("x"), "policy": "green-only"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    for site in e["decision"]["sites"].as_array().unwrap() {
        if site["feasible"] == true {
            let (_, body) = server
                .admin(
                    Method::GET,
                    &format!("/api/v1/sites/{}", site["name"].as_str().unwrap()),
                    None,
                )
                .await;
            assert!(
                body["spec"]["pue"].as_f64().unwrap() <= 1.2,
                "{} passed the CEL filter",
                site["name"]
            );
        }
    }

    // Versions and rollback.
    let (s, b) = server
        .admin(
            Method::PUT,
            "/api/v1/policies/green-only",
            Some(json!({"generation": 1, "spec": {"weights": {"price": 7}}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, versions) = server
        .admin(Method::GET, "/api/v1/policies/green-only/versions", None)
        .await;
    assert_eq!(versions.as_array().unwrap().len(), 2);
    let (s, b) = server
        .admin(
            Method::POST,
            "/api/v1/policies/green-only/rollback",
            Some(json!({"to_generation": 1, "generation": 2})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["generation"], 3);
    assert_eq!(b["spec"]["weights"]["price"], 1.0);
    assert_eq!(b["spec"]["cel_filters"][0]["expr"], "site.pue <= 1.2");
}

/// The one live node of a `CrashSetup` and a request holding all of its CPU (the scarce
/// resource here: agents on this machine detect no GPU).
async fn hold_all_cpu(server: &Server, hold_s: Option<u64>) -> Value {
    let nodes = crate::harness::wait_nodes(server, 1).await;
    let cores = nodes[0]["inventory"]["cpu_cores"].as_u64().unwrap();
    assert!(cores >= 1, "{}", nodes[0]);
    let mut req =
        json!({"task": {"name": "hold-all", "resources": {"cpu_cores": cores, "memory_gib": 0.1}}});
    if let Some(h) = hold_s {
        req["hold_s"] = json!(h);
    }
    req
}

async fn submit_cpu_task(server: &Server) -> String {
    let (s, b) = server
        .admin(
            Method::POST,
            "/api/v1/tasks",
            Some(json!({"name": "waits-for-cpu", "command": ["true"],
                "resources": {"cpu_cores": 0.5, "memory_gib": 0.1}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    b["id"].as_str().unwrap().to_string()
}

async fn task_state(server: &Server, id: &str) -> Value {
    let (s, t) = server
        .admin(Method::GET, &format!("/api/v1/tasks/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    t
}

/// Waits until the task is pending with a reason naming CPU.
async fn waits_for_cpu(server: &Server, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = task_state(server, id).await;
        assert_eq!(t["state"], "pending", "the held CPU must not be bound: {t}");
        if t["reason"]
            .as_str()
            .is_some_and(|r| r.contains("insufficient_cpu"))
        {
            return;
        }
        assert!(Instant::now() < deadline, "no reason given: {t}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the task was bound (and ran).
async fn gets_bound(server: &Server, id: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let t = task_state(server, id).await;
        if t["state"] != "pending" {
            assert!(t["node"].is_string(), "{t}");
            return t;
        }
        assert!(Instant::now() < deadline, "never bound: {t}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Issue #13 deliverable 4, acceptance: a decision of `POST /schedule` holding the last of
/// a live node's scarce resource makes a task wait; releasing it lets the task bind. The
/// hold is in the store and the ledger: it survives a `kill -9` of the server, and the
/// decision still explains itself.
#[tokio::test]
async fn a_held_decision_blocks_the_binder_until_released_and_survives_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = crate::harness::CrashSetup::start(dir.path()).await;
    let all = hold_all_cpu(&setup.server, None).await;

    let (s, first) = setup
        .server
        .admin(Method::POST, "/api/v1/schedule", Some(all.clone()))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    assert_eq!(first["site"], "edge");
    assert_eq!(first["node"], "worker", "decided on the live node: {first}");
    assert!(first.get("expires_at").is_none(), "{first}");
    // The node's CPU is held: no second decision fits, and a task waits with the reason.
    let (s, second) = setup
        .server
        .admin(Method::POST, "/api/v1/schedule", Some(all.clone()))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{second}");
    assert_eq!(second["error"]["code"], "unschedulable");
    assert!(
        second["error"]["message"]
            .as_str()
            .unwrap()
            .contains("insufficient_cpu"),
        "{second}"
    );
    let task = submit_cpu_task(&setup.server).await;
    waits_for_cpu(&setup.server, &task).await;
    // `GET /capacity` counts the decision as allocated.
    let (_, nodes) = setup.server.admin(Method::GET, "/api/v1/nodes", None).await;
    assert!(
        nodes[0]["allocated"]["cpu_cores"].as_f64().unwrap() >= 1.0,
        "{nodes}"
    );

    // Decisions are durable: after kill -9 the reloaded ledger still holds the CPU.
    setup.server.kill9();
    setup.restart(dir.path()).await;
    let server = &setup.server;
    crate::harness::wait_nodes(server, 1).await;
    let id = first["id"].as_str().unwrap();
    let (s, stored) = server
        .admin(Method::GET, &format!("/api/v1/decisions/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{stored}");
    assert_eq!(stored["decision"]["chosen_site"], "edge");
    assert_eq!(stored["decision"]["chosen_node"], "worker");
    assert_eq!(stored["policy"]["name"], "default");
    assert!(!stored["decision"]["sites"].as_array().unwrap().is_empty());
    let (s, b) = server
        .admin(Method::POST, "/api/v1/schedule", Some(all.clone()))
        .await;
    assert_eq!(
        s,
        StatusCode::CONFLICT,
        "capacity held before the restart must still be held: {b}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(task_state(server, &task).await["state"], "pending");

    // The CLI lists what holds, and releasing (here with the CLI) gives the capacity back:
    // the waiting task binds at once.
    let out = server.cli(&["decision", "list", "--active"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(id) && text.contains("until released"),
        "{text}"
    );
    let out = server.cli(&["decision", "release", id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, released) = server
        .admin(Method::GET, &format!("/api/v1/decisions/{id}"), None)
        .await;
    assert!(released["released_at"].is_string(), "{released}");
    gets_bound(server, &task, Duration::from_secs(5)).await;
    let (_, active) = server
        .admin(Method::GET, "/api/v1/decisions?active=true", None)
        .await;
    assert_eq!(active["items"].as_array().unwrap().len(), 0, "{active}");
}

/// A decision with `hold_s` stops holding when it expires: the waiting task binds, and the
/// decision is marked released at its expiry. Explain refuses `hold_s`.
#[tokio::test]
async fn a_decision_with_an_expiry_stops_holding_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let setup = crate::harness::CrashSetup::start(dir.path()).await;
    let server = &setup.server;
    let (s, b) = server
        .admin(
            Method::POST,
            "/api/v1/schedule/explain",
            Some(json!({"task": {"name": "x"}, "hold_s": 5})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "hold_s", "{b}");
    let (s, b) = server
        .admin(
            Method::POST,
            "/api/v1/schedule",
            Some(json!({"task": {"name": "x"}, "hold_s": 0})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "hold_s", "{b}");

    let (s, d) = server
        .admin(
            Method::POST,
            "/api/v1/schedule",
            Some(hold_all_cpu(server, Some(3)).await),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    let expires: chrono::DateTime<chrono::Utc> = d["expires_at"].as_str().unwrap().parse().unwrap();
    let task = submit_cpu_task(server).await;
    waits_for_cpu(server, &task).await;
    let t = gets_bound(server, &task, Duration::from_secs(15)).await;
    let bound_at: chrono::DateTime<chrono::Utc> = t["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["state"] == "scheduled")
        .and_then(|h| h["at"].as_str())
        .unwrap_or_else(|| panic!("no scheduled step: {t}"))
        .parse()
        .unwrap();
    assert!(
        bound_at >= expires,
        "bound at {bound_at}, before the expiry {expires}"
    );
    // The sweep marks it released at its expiry.
    let id = d["id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, d) = server
            .admin(Method::GET, &format!("/api/v1/decisions/{id}"), None)
            .await;
        if let Some(at) = d["released_at"].as_str() {
            let at: chrono::DateTime<chrono::Utc> = at.parse().unwrap();
            assert!(
                (at - expires).num_milliseconds().abs() <= 1,
                "released at {at}, expiry {expires}: {d}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never marked released: {d}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A tenant's quota bounds what its decisions hold on live nodes.
#[tokio::test]
async fn tenant_quota_bounds_what_decisions_hold() {
    let dir = tempfile::tempdir().unwrap();
    let setup = crate::harness::CrashSetup::start(dir.path()).await;
    let server = &setup.server;
    let alice = server.user("lab-q", "alice", "user").await;
    // Through the CLI, as an operator would.
    let out = server.cli(&["tenant", "quota", "lab-q", "--cpu-cores", "0.5"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("cpu_cores=0.5"));

    let task = json!({"task": {"name": "q", "resources": {"cpu_cores": 0.5, "memory_gib": 0.1}}});
    let (s, b) = server
        .call(
            Method::POST,
            "/api/v1/schedule",
            Some(&alice),
            Some(task.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["node"], "worker", "{b}");
    let (s, b) = server
        .call(
            Method::POST,
            "/api/v1/schedule",
            Some(&alice),
            Some(task.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("quota_exceeded"),
        "{b}"
    );
    // The operator's own tenant has no quota and still schedules.
    let (s, b) = server
        .admin(Method::POST, "/api/v1/schedule", Some(task))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    // Alice sees her own decision only.
    let (_, mine) = server
        .call(Method::GET, "/api/v1/decisions", Some(&alice), None)
        .await;
    assert_eq!(mine["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn dry_run_divides_replicas_by_weights_or_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), true).await;
    let cpu = |spread: Value| json!({"name": "web", "replicas": 8, "resources": {"cpu_cores": 4, "memory_gib": 8}, "spread": spread});
    let by_weights = cpu(json!({"mode": "by_weights", "weights": {"horinger": 3, "qingyang": 1}}));
    let by_capacity = cpu(json!({"mode": "by_capacity"}));
    let (s, d) = server
        .admin(
            Method::POST,
            "/api/v1/schedule/dry-run",
            Some(json!({"policies": ["default"], "tasks": [by_weights, by_capacity]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    let placements = d["runs"][0]["placements"].as_array().unwrap();
    let count = |from: usize, site: &str| {
        placements[from..from + 8]
            .iter()
            .filter(|p| p["site"] == site)
            .count()
    };
    assert_eq!(
        (count(0, "horinger"), count(0, "qingyang")),
        (6, 2),
        "3:1 of 8 replicas"
    );
    let spread_sites: std::collections::BTreeSet<&str> = placements[8..16]
        .iter()
        .map(|p| p["site"].as_str().expect("placed"))
        .collect();
    assert!(
        spread_sites.len() > 1,
        "by capacity spreads over several sites: {spread_sites:?}"
    );

    let bad = cpu(json!({"mode": "by_weights", "weights": {"atlantis": 1}}));
    let (s, b) = server
        .admin(
            Method::POST,
            "/api/v1/schedule/dry-run",
            Some(json!({"policies": ["default"], "tasks": [bad]})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "tasks[0].spread.weights.atlantis");
}

/// Issue #4: the GPU policies of the FGD paper are ordinary policies of the live
/// scheduler: a stored policy names one, explain shows its plugin, and tasks are bound by it.
#[tokio::test]
async fn a_stored_policy_can_place_live_tasks_with_a_gpu_policy() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), false).await;
    let (s, b) = server
        .admin(
            Method::POST,
            "/api/v1/sites",
            Some(crate::harness::site("gpu-hall")),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    // Two 4-GPU machines registered through the agent API (they never poll: the test looks
    // at bindings only).
    let join = server.join_token("gpu-hall").await;
    for name in ["g1", "g2"] {
        let gpus: Vec<Value> = (0..4)
            .map(|i| json!({"index": i, "model": "A100", "memory_mib": 81920}))
            .collect();
        let (s, b) = server
            .call(
                Method::POST,
                "/api/v1/agents/register",
                Some(&join),
                Some(json!({"site": "gpu-hall", "name": name, "inventory": {
                    "hostname": name, "cpu_cores": 64, "memory_mib": 524288, "gpus": gpus}})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let (s, b) = server
        .admin(
            Method::POST,
            "/api/v1/policies",
            Some(json!({"name": "bad-gpu", "spec": {"gpu_policy": "tetrix"}})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "spec.gpu_policy");
    create_policy(
        &server,
        json!({"name": "frag-aware", "visibility": "public", "spec": {"gpu_policy": "fgd"}}),
    )
    .await;

    let task = json!({"name": "half", "chip": "gpu",
        "resources": {"cpu_cores": 4, "memory_gib": 16, "gpus": 1, "gpu_share": 0.5}});
    let (s, e) = server
        .admin(
            Method::POST,
            "/api/v1/schedule/explain",
            Some(json!({"task": task, "policy": "frag-aware"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(e["policy"]["weights"]["gpu_fgd"], 1000.0, "{}", e["policy"]);

    let mut ids = Vec::new();
    for i in 0..3 {
        let (s, b) = server
            .admin(
                Method::POST,
                "/api/v1/tasks",
                Some(
                    json!({"name": format!("half-{i}"), "command": ["true"], "policy": "frag-aware",
                    "constraints": {"chip": "gpu"},
                    "resources": {"cpu_cores": 4, "memory_gib": 16, "gpus": 1, "gpu_share": 0.5}}),
                ),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        ids.push(b["id"].as_str().unwrap().to_string());
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut placed = Vec::new();
    for id in &ids {
        loop {
            let (_, t) = server
                .admin(Method::GET, &format!("/api/v1/tasks/{id}"), None)
                .await;
            if t["state"] == "scheduled" {
                assert_eq!(t["policy"], "frag-aware", "{t}");
                placed.push((t["node"].as_str().unwrap().to_string(), t["gpus"].clone()));
                break;
            }
            assert!(std::time::Instant::now() < deadline, "not bound: {t}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    // Half-GPU tasks each hold one GPU; FGD keeps fragments down by pairing two halves on
    // one GPU rather than opening three.
    let mut gpus_used = std::collections::BTreeSet::new();
    for (node, g) in &placed {
        assert_eq!(g.as_array().unwrap().len(), 1, "{placed:?}");
        gpus_used.insert((node.clone(), g[0].as_u64().unwrap()));
    }
    assert_eq!(gpus_used.len(), 2, "three halves on two GPUs: {placed:?}");
}
