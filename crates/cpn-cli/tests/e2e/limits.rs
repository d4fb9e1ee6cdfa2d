//! Bounded expensive work and no leaks (issue #12, items 7 and 8), on the real server
//! (runaway workflow conditions are in the `liveness` test binary): per-tenant limits on unfinished
//! workflows and active simulations, and simulation retention per tenant; task output capped
//! per attempt; nodes, node metrics, site status and task counts show only what the caller
//! may see; the live binder never places a task on another tenant's private site.

use crate::harness::{Agent, Server, site, wait_nodes};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn submit_as(server: &Server, token: &str, name: &str, script: &str) -> String {
    let (s, b) = server
        .call(
            Method::POST,
            "/api/v1/tasks",
            Some(token),
            Some(json!({"name": name, "command": ["sh", "-c", script],
                        "resources": {"cpu_cores": 0.1, "memory_gib": 0.1}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    b["id"].as_str().expect("task id").to_string()
}

async fn task(server: &Server, token: &str, id: &str) -> Value {
    let (s, b) = server
        .call(
            Method::GET,
            &format!("/api/v1/tasks/{id}"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b
}

async fn wait_succeeded(server: &Server, token: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = task(server, token, id).await;
        if t["state"] == "succeeded" {
            return t;
        }
        assert!(
            !["failed", "cancelled", "lost"].contains(&t["state"].as_str().unwrap_or_default()),
            "{t}"
        );
        assert!(Instant::now() < deadline, "task did not succeed: {t}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_tenants_task_never_lands_on_another_tenants_private_site_and_sees_none_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        false,
        &["--no-local-agent", "--heartbeat-ms", "300"],
    )
    .await;
    let supplier_a = server.user("alpha", "alice", "supplier").await;
    let user_a = server.user("alpha", "amos", "user").await;
    let user_b = server.user("beta", "bob", "user").await;

    // Alpha's private site, with a real agent on it.
    let mut private = site("alpha-private");
    private["visibility"] = json!("tenant");
    let (s, b) = server
        .call(
            Method::POST,
            "/api/v1/sites",
            Some(&supplier_a),
            Some(private),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let _private_agent = Agent::start(
        &server.base,
        &server.join_token("alpha-private").await,
        "alpha-private",
        "vault",
        &dir.path().join("agent-private"),
    );
    let nodes = wait_nodes(&server, 1).await;
    let private_node = nodes[0]["id"].as_str().unwrap().to_string();

    // Beta sees nothing of it: not the site's status, not its node, not the node's metrics.
    for path in [
        "/api/v1/sites/alpha-private/status".to_string(),
        format!("/api/v1/nodes/{private_node}"),
        "/api/v1/nodes/alpha-private/vault".to_string(),
        format!("/api/v1/nodes/{private_node}/metrics"),
    ] {
        let (s, b) = server.call(Method::GET, &path, Some(&user_b), None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {b}");
    }
    let (s, b) = server
        .call(Method::GET, "/api/v1/nodes", Some(&user_b), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b, json!([]), "beta lists no node: {b}");
    // Alpha does see them.
    let (s, b) = server
        .call(
            Method::GET,
            "/api/v1/sites/alpha-private/status",
            Some(&user_a),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["nodes"], 1, "{b}");
    let (_, b) = server
        .call(Method::GET, "/api/v1/nodes", Some(&user_a), None)
        .await;
    assert_eq!(b.as_array().map(Vec::len), Some(1), "{b}");

    // Beta's task does not land on the only node there is, alpha's private one.
    let beta_task = submit_as(&server, &user_b, "beta-work", "echo beta").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let t = task(&server, &user_b, &beta_task).await;
    assert_eq!(t["state"], "pending", "{t}");
    assert!(t["node"].is_null(), "{t}");
    // Alpha's own task does land there (the node works).
    let alpha_task = submit_as(&server, &user_a, "alpha-work", "echo alpha").await;
    let t = wait_succeeded(&server, &user_a, &alpha_task).await;
    assert_eq!(t["site"], "alpha-private", "{t}");

    // A public site appears: beta's task runs there, never on the private one.
    let (s, b) = server
        .admin(Method::POST, "/api/v1/sites", Some(site("commons")))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let _public_agent = Agent::start(
        &server.base,
        &server.join_token("commons").await,
        "commons",
        "shared",
        &dir.path().join("agent-public"),
    );
    wait_nodes(&server, 2).await;
    let t = wait_succeeded(&server, &user_b, &beta_task).await;
    assert_eq!(t["site"], "commons", "{t}");
    // More of beta's tasks, while alpha's node is idle: none lands on it.
    let mut more = Vec::new();
    for i in 0..6 {
        more.push(submit_as(&server, &user_b, &format!("beta-{i}"), "sleep 0.2").await);
    }
    for id in &more {
        let t = wait_succeeded(&server, &user_b, id).await;
        assert_eq!(t["site"], "commons", "{t}");
    }
    // Beta's node list now has the public node only; its task counts are its own.
    let (_, b) = server
        .call(Method::GET, "/api/v1/nodes", Some(&user_b), None)
        .await;
    let names: Vec<&str> = b
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["site"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["commons"], "{b}");
    // The twin on the live nodes places beta's tasks on commons only, and reports the use
    // of no site beta may not see (the binder's cluster holds them all).
    let (s, twin) = server
        .call(
            Method::POST,
            "/api/v1/simulations/federation",
            Some(&user_b),
            Some(
                json!({"policies": ["default"], "live": true, "placements": true,
                "workload": {"tasks": [{"arrival_s": 0, "duration_s": 60, "task":
                    {"name": "t", "command": ["true"], "resources": {"cpu_cores": 0.1}}}]}}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{twin}");
    let report = &twin["reports"][0];
    assert_eq!(report["placements"][0]["site"], "commons", "{twin}");
    assert!(
        report["sites"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["site"] != "alpha-private"),
        "{twin}"
    );
    let (s, counts) = server
        .call(Method::GET, "/api/v1/tasks/counts", Some(&user_b), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{counts}");
    assert_eq!(counts["succeeded"], 7, "{counts}");
    let (_, counts) = server
        .admin(Method::GET, "/api/v1/tasks/counts", None)
        .await;
    assert_eq!(
        counts["succeeded"], 8,
        "operators count every task: {counts}"
    );
}

#[tokio::test]
async fn task_output_is_capped_per_attempt_with_one_marker() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        false,
        &[
            "--no-local-agent",
            "--heartbeat-ms",
            "300",
            "--max-task-output-mib",
            "1",
        ],
    )
    .await;
    let (s, b) = server
        .admin(Method::POST, "/api/v1/sites", Some(site("edge")))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let _agent = Agent::start(
        &server.base,
        &server.join_token("edge").await,
        "edge",
        "worker",
        &dir.path().join("agent"),
    );
    wait_nodes(&server, 1).await;
    // 8 MiB on stdout, then a line on stderr.
    let id = submit_as(
        &server,
        &server.token.clone(),
        "chatty",
        "head -c 8388608 /dev/zero | tr '\\0' x; echo done >&2",
    )
    .await;
    wait_succeeded(&server, &server.token, &id).await;
    let (s, b) = server
        .admin(Method::GET, &format!("/api/v1/tasks/{id}/logs"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let text = b.as_str().unwrap_or_default();
    assert!(text.len() < (1 << 20) + 200, "{} bytes kept", text.len());
    assert!(text.len() >= 1 << 20, "{} bytes kept", text.len());
    assert_eq!(text.matches("output truncated").count(), 1);
    assert!(
        text.trim_end().ends_with("the rest was dropped]"),
        "the marker ends it"
    );
    // On disk too: the attempt's files hold the cap and the marker, not 8 MiB.
    let mut stored = 0;
    for e in std::fs::read_dir(dir.path().join("logs").join(&id)).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().ends_with(".stdout") {
            stored += e.metadata().unwrap().len();
        }
    }
    assert!(stored < (1 << 20) + 200, "{stored} bytes stored");
}

#[tokio::test]
async fn tenants_have_their_own_limits_on_workflows_and_simulations() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        false,
        &[
            "--no-local-agent",
            "--max-running-workflows",
            "2",
            "--max-active-simulations",
            "1",
            "--kept-simulations",
            "2",
        ],
    )
    .await;
    let a = server.user("alpha", "alice", "user").await;
    let b = server.user("beta", "bob", "user").await;

    // Workflows: two unfinished at once per tenant.
    let sleeper = json!({"definition": {"name": "nap", "steps": [
        {"id": "nap", "action": {"kind": "sleep", "seconds": 30}}]}});
    let mut naps = Vec::new();
    for _ in 0..2 {
        let (s, body) = server
            .call(
                Method::POST,
                "/api/v1/flows",
                Some(&a),
                Some(sleeper.clone()),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        naps.push(body["id"].as_str().unwrap().to_string());
    }
    let (s, body) = server
        .call(
            Method::POST,
            "/api/v1/flows",
            Some(&a),
            Some(sleeper.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "too_many_requests", "{body}");
    // Another tenant is not held back by alpha's.
    let (s, body) = server
        .call(
            Method::POST,
            "/api/v1/flows",
            Some(&b),
            Some(sleeper.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    // A cancelled one makes room.
    let (s, body) = server
        .call(
            Method::POST,
            &format!("/api/v1/flows/{}/cancel", naps[0]),
            Some(&a),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, body) = server
        .call(
            Method::POST,
            "/api/v1/flows",
            Some(&a),
            Some(sleeper.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");

    // Simulations: one active per tenant, and each tenant keeps its own newest two.
    let beta_job = run_simulation(&server, &b, &simulation_job(4, 20, 1)).await;
    // A long job (minutes for this debug server) holds alpha's one slot...
    let (s, long) = server
        .call(
            Method::POST,
            "/api/v1/simulations",
            Some(&a),
            Some(simulation_job(1000, 2000, 10)),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{long}");
    let long = long["id"].as_str().unwrap().to_string();
    let (s, refused) = server
        .call(
            Method::POST,
            "/api/v1/simulations",
            Some(&a),
            Some(simulation_job(4, 20, 1)),
        )
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{refused}");
    assert_eq!(refused["error"]["code"], "too_many_requests", "{refused}");
    // ...but not beta's (which waits for the server's one simulation worker).
    let (s, queued) = server
        .call(
            Method::POST,
            "/api/v1/simulations",
            Some(&b),
            Some(simulation_job(4, 20, 1)),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{queued}");
    let (s, body) = server
        .call(
            Method::POST,
            &format!("/api/v1/simulations/{long}/cancel"),
            Some(&a),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    wait_simulation(&server, &b, queued["id"].as_str().unwrap()).await;
    let mut alpha_jobs = vec![long];
    for _ in 0..3 {
        alpha_jobs.push(run_simulation(&server, &a, &simulation_job(4, 20, 1)).await);
    }
    let (s, list) = server
        .call(Method::GET, "/api/v1/simulations", Some(&a), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let kept: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(kept.len(), 2, "alpha keeps its newest two: {list}");
    let newest: Vec<&str> = alpha_jobs
        .iter()
        .rev()
        .take(2)
        .map(String::as_str)
        .collect();
    for id in &newest {
        assert!(kept.contains(id), "{id} kept: {list}");
    }
    // Beta's older job was not deleted by alpha's newer ones.
    let (s, job) = server
        .call(
            Method::GET,
            &format!("/api/v1/simulations/{beta_job}"),
            Some(&b),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "beta's job is kept: {job}");
}

/// A simulation of made-up GPU nodes and pods under six policies and `seeds` seeds: a
/// moment for a few nodes and one seed, minutes for a thousand and ten.
fn simulation_job(nodes: usize, pods: usize, seeds: u64) -> Value {
    let mut node_csv = String::from("sn,cpu_milli,memory_mib,gpu,model\n");
    for i in 0..nodes {
        node_csv.push_str(&format!(
            "node-{i},96000,393216,{},V100M16\n",
            [2, 4, 8][i % 3]
        ));
    }
    let mut pod_csv = String::from("name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\n");
    for i in 0..pods {
        let (num, milli) = [(1, 1000), (1, 500), (1, 250), (2, 1000)][i % 4];
        pod_csv.push_str(&format!("pod-{i},1000,1024,{num},{milli},\n"));
    }
    let seeds: Vec<u64> = (1..=seeds).collect();
    let policies = if nodes > 100 {
        json!([
            "fgd",
            "bestfit",
            "packing",
            "clustering",
            "dotprod",
            "random"
        ])
    } else {
        json!(["bestfit"])
    };
    json!({"policies": policies, "seeds": seeds, "workload": {"pods_csv": pod_csv},
           "cluster": {"nodes_csv": node_csv}})
}

async fn run_simulation(server: &Server, token: &str, body: &Value) -> String {
    let (s, job) = server
        .call(
            Method::POST,
            "/api/v1/simulations",
            Some(token),
            Some(body.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    wait_simulation(server, token, &id).await;
    id
}

async fn simulation_state(server: &Server, token: &str, id: &str) -> String {
    let (s, job) = server
        .call(
            Method::GET,
            &format!("/api/v1/simulations/{id}"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{job}");
    job["state"].as_str().unwrap().to_string()
}

async fn wait_simulation(server: &Server, token: &str, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = simulation_state(server, token, id).await;
        if state == "succeeded" {
            return;
        }
        assert!(
            !["failed", "cancelled"].contains(&state.as_str()),
            "{id}: {state}"
        );
        assert!(Instant::now() < deadline, "{id} still {state}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
