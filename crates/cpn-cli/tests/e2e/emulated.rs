//! Issue #13, "the demo comes alive": `cpn serve` with the demo runs emulated nodes for the
//! demo's sites (one per CPU and GPU offer, scaled down, marked emulated), so tasks are
//! placed across the national sites by the whole model and really run: a CPU task from
//! Shanghai goes east under a latency-only policy and to the cheapest western site under a
//! price-only one, with the local agent (unregistered capacity) running beside them; a GPU
//! task sees its emulated GPUs' indices. A restart brings the same nodes back.

use crate::harness::{Server, only};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

async fn list(server: &Server, path: &str) -> Vec<Value> {
    let (s, b) = server.admin(Method::GET, path, None).await;
    assert!(s.is_success(), "{path}: {s} {b}");
    b.get("items")
        .unwrap_or(&b)
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The demo as the registry holds it: each demo site's zone, and its CPU and GPU offers.
struct Demo {
    zone: BTreeMap<String, String>,
    /// (site name, chip type, unit price) of every CPU or GPU compute resource.
    offers: Vec<(String, String, f64)>,
}

async fn demo(server: &Server) -> Demo {
    let sites = list(server, "/api/v1/sites?limit=1000").await;
    let name_of: BTreeMap<String, String> = sites
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().into(),
                s["name"].as_str().unwrap().into(),
            )
        })
        .collect();
    let zone = sites
        .iter()
        .filter_map(|s| {
            Some((
                s["name"].as_str()?.to_string(),
                s["labels"]["zone"].as_str()?.to_string(),
            ))
        })
        .collect();
    let offers = list(server, "/api/v1/resources?limit=1000")
        .await
        .iter()
        .filter_map(|r| {
            let c = r["spec"]["compute"].as_object()?;
            let chip = c["chip_type"].as_str()?;
            let site = r["spec"]["site"].as_str()?;
            let site = name_of.get(site).cloned().unwrap_or_else(|| site.into());
            (chip == "cpu" || chip == "gpu")
                .then(|| (site, chip.into(), c["unit_price"].as_f64().unwrap()))
        })
        .collect();
    Demo { zone, offers }
}

/// Waits until every demo site with a CPU or GPU offer has one ready emulated node per offer;
/// returns the emulated nodes.
async fn wait_emulated(server: &Server, demo: &Demo) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let nodes: Vec<Value> = list(server, "/api/v1/nodes")
            .await
            .into_iter()
            .filter(|n| n["emulated"] == true)
            .collect();
        let ready = nodes.iter().filter(|n| n["state"] == "ready").count();
        if ready == demo.offers.len() {
            return nodes;
        }
        assert!(
            Instant::now() < deadline,
            "{ready} of {} emulated nodes ready: {nodes:?}",
            demo.offers.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_done(server: &Server, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, t) = server
            .admin(Method::GET, &format!("/api/v1/tasks/{id}"), None)
            .await;
        assert!(s.is_success(), "{t}");
        if ["succeeded", "failed", "cancelled", "lost"].contains(&t["state"].as_str().unwrap_or(""))
        {
            return t;
        }
        assert!(Instant::now() < deadline, "task {id} did not end: {t}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The task's stored explanation ("why here", as the binder decided) names the site it ran
/// on, and the one factor of its policy is what put that site first.
async fn why_here(server: &Server, id: &str, site: &str, factor: &str) {
    let (s, why) = server
        .admin(Method::GET, &format!("/api/v1/tasks/{id}/explain"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{why}");
    assert!(why["decided_at"].is_string(), "a stored decision: {why}");
    let d = &why["decision"];
    assert_eq!(d["chosen_site"], site, "{d}");
    assert_eq!(d["sites"][0]["name"], site, "{d}");
    let contributions: Vec<(String, f64)> = d["sites"][0]["factors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["plugin"].as_str().unwrap().to_string(),
                f["contribution"].as_f64().unwrap(),
            )
        })
        .collect();
    let top = contributions
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    assert_eq!(
        top.0, factor,
        "the winner's contributions: {contributions:?}"
    );
    assert!(top.1 > 0.0, "{contributions:?}");
}

async fn submit(server: &Server, body: Value) -> String {
    let (s, b) = server
        .admin(Method::POST, "/api/v1/tasks", Some(body))
        .await;
    assert_eq!(s.as_u16(), 201, "{b}");
    b["id"].as_str().unwrap().to_string()
}

async fn logs(server: &Server, id: &str) -> String {
    let resp = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/tasks/{id}/logs?stream=stdout",
            server.base
        ))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap();
    resp.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_comes_alive_on_emulated_nodes() {
    let dir = tempfile::tempdir().unwrap();
    // As a plain `cpn serve`: the demo, its emulated nodes and the local agent.
    let mut server = Server::start_emulated(dir.path(), &[]).await;
    let demo = demo(&server).await;
    let demo_sites: BTreeSet<&String> = demo.offers.iter().map(|(s, _, _)| s).collect();
    assert!(demo_sites.len() >= 10, "{:?}", demo.offers);

    // One emulated node per CPU and GPU offer, on every demo site, scaled down, matched to
    // its offer; the local agent's node is not emulated.
    let nodes = wait_emulated(&server, &demo).await;
    for site in &demo_sites {
        assert!(
            nodes
                .iter()
                .any(|n| &n["site"].as_str().unwrap().to_string() == *site),
            "no emulated node on {site}"
        );
    }
    for n in &nodes {
        assert_eq!(n["inventory"]["emulated"], true, "{n}");
        assert!(
            n["offer"].is_string(),
            "every emulated node fulfils its offer: {n}"
        );
        assert!(n["capacity"]["cpu_cores"].as_f64().unwrap() <= 32.0, "{n}");
        assert!(n["capacity"]["gpus"].as_f64().unwrap() <= 8.0, "{n}");
    }
    let local: Vec<Value> = list(&server, "/api/v1/nodes")
        .await
        .into_iter()
        .filter(|n| n["site"] == "local")
        .collect();
    assert!(local.iter().all(|n| n["emulated"] == false), "{local:?}");

    // The CLI says so: node list, node get and site capacity.
    let out = server.cli(&["node", "list"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let marked = text
        .lines()
        .filter(|l| l.contains("agent (emulated)"))
        .count();
    assert_eq!(marked, demo.offers.len(), "{text}");
    let a100 = nodes
        .iter()
        .find(|n| n["offer"] == "horinger-a100")
        .expect("an emulated node for horinger-a100");
    let key = format!("horinger/{}", a100["name"].as_str().unwrap());
    let out = server.cli(&["node", "get", &key]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Emulated") && text.contains("by index only"),
        "{text}"
    );
    let out = server.cli(&["site", "capacity", "horinger"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1 (1 emulated)") && text.contains("emulated node(s)"),
        "{text}"
    );
    let (_, cap) = server
        .admin(Method::GET, "/api/v1/capacity?site=horinger", None)
        .await;
    assert_eq!(cap[0]["binder_target"], true, "{cap}");
    assert!(cap[0]["nodes_emulated"].as_u64().unwrap() >= 2, "{cap}");

    // A CPU task from Shanghai: latency-only runs east, price-only on the cheapest western
    // site (the demo's own prices say which: the least CPU unit price of any live site is a
    // western one).
    let cpu_price = |site: &str| {
        demo.offers
            .iter()
            .filter(|(s, chip, _)| s == site && chip == "cpu")
            .map(|(_, _, p)| *p)
            .fold(f64::INFINITY, f64::min)
    };
    let cheapest = demo_sites
        .iter()
        .map(|s| cpu_price(s))
        .fold(f64::INFINITY, f64::min);
    let cheapest_sites: Vec<&&String> = demo_sites
        .iter()
        .filter(|s| cpu_price(s) == cheapest)
        .collect();
    assert!(
        cheapest_sites
            .iter()
            .all(|s| demo.zone[s.as_str()] == "west"),
        "the demo's cheapest CPU sites are western: {cheapest_sites:?}"
    );
    for (factor, policy) in [("latency", "latency-only"), ("price", "price-only")] {
        let (s, b) = server
            .admin(
                Method::POST,
                "/api/v1/policies",
                Some(json!({"name": policy, "visibility": "public", "spec": {"weights": only(factor)}})),
            )
            .await;
        assert_eq!(s.as_u16(), 201, "{b}");
    }
    let from_shanghai = |policy: &str| {
        json!({"name": format!("from-shanghai-{policy}"), "command": ["sh", "-c", "echo ran"],
            "policy": policy, "origin_region": "Shanghai", "constraints": {"chip": "cpu"},
            "resources": {"cpu_cores": 1, "memory_gib": 1}})
    };
    let id = submit(&server, from_shanghai("latency-only")).await;
    let t = wait_done(&server, &id).await;
    assert_eq!(t["state"], "succeeded", "{t}");
    let site = t["site"].as_str().unwrap();
    assert_eq!(
        demo.zone[site], "east",
        "latency-only from Shanghai ran on {site}: {t}"
    );
    assert_eq!(logs(&server, &id).await, "ran\n");
    why_here(&server, &id, site, "latency").await;
    let id = submit(&server, from_shanghai("price-only")).await;
    let t = wait_done(&server, &id).await;
    assert_eq!(t["state"], "succeeded", "{t}");
    let site = t["site"].as_str().unwrap();
    assert_eq!(demo.zone[site], "west", "price-only ran on {site}: {t}");
    assert_eq!(
        cpu_price(site),
        cheapest,
        "price-only ran on {site}, not on one of the cheapest {cheapest_sites:?}: {t}"
    );
    why_here(&server, &id, site, "price").await;

    // A GPU task runs on an emulated GPU node and sees the indices it was given.
    let id = submit(
        &server,
        json!({"name": "gpu", "command": ["sh", "-c", "echo \"gpus=$CUDA_VISIBLE_DEVICES\""],
            "constraints": {"chip": "gpu"}, "resources": {"cpu_cores": 1, "memory_gib": 1, "gpus": 2}}),
    )
    .await;
    let t = wait_done(&server, &id).await;
    assert_eq!(t["state"], "succeeded", "{t}");
    let node = nodes
        .iter()
        .find(|n| n["site"] == t["site"] && n["name"] == t["node"])
        .unwrap_or_else(|| panic!("the GPU task ran on no emulated node: {t}"));
    assert!(node["capacity"]["gpus"].as_f64().unwrap() >= 2.0, "{node}");
    let given: Vec<String> = t["gpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.to_string())
        .collect();
    assert_eq!(given.len(), 2, "{t}");
    assert_eq!(
        logs(&server, &id).await,
        format!("gpus={}\n", given.join(","))
    );

    // A restart brings the same nodes back with their saved credentials: no new ones.
    let ids: BTreeSet<String> = nodes
        .iter()
        .map(|n| n["id"].as_str().unwrap().into())
        .collect();
    server.kill9();
    let server = Server::start_emulated(dir.path(), &[]).await;
    let again = wait_emulated(&server, &demo).await;
    let again: BTreeSet<String> = again
        .iter()
        .map(|n| n["id"].as_str().unwrap().into())
        .collect();
    assert_eq!(again, ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_emulated_nodes_leaves_the_demo_sites_planning_targets() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), true, &["--no-local-agent"]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(list(&server, "/api/v1/nodes").await.is_empty());
    let (_, cap) = server.admin(Method::GET, "/api/v1/capacity", None).await;
    assert!(
        cap.as_array()
            .unwrap()
            .iter()
            .all(|s| s["binder_target"] == false),
        "{cap}"
    );
    let out = std::process::Command::new(crate::harness::CPN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--no-emulated-nodes"), "{help}");
}
