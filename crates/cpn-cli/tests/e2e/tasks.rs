//! Running work for real (issue #5): tasks on real agents and processes, agent and server
//! failures, and the event stream.

use crate::harness::{Agent, CrashSetup, Server, open_dir, site, wait_nodes};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const TERMINAL: [&str; 4] = ["succeeded", "failed", "cancelled", "lost"];

async fn submit(server: &Server, body: Value) -> String {
    let (s, b) = server
        .admin(Method::POST, "/api/v1/tasks", Some(body))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    b["id"].as_str().expect("task id").to_string()
}

async fn task(server: &Server, id: &str) -> Value {
    let (s, b) = server
        .admin(Method::GET, &format!("/api/v1/tasks/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b
}

/// Waits until every task is in a terminal state; returns them by id.
async fn wait_terminal(
    server: &Server,
    ids: &[String],
    within: Duration,
) -> HashMap<String, Value> {
    let deadline = Instant::now() + within;
    loop {
        let mut done = HashMap::new();
        for id in ids {
            let t = task(server, id).await;
            if TERMINAL.contains(&t["state"].as_str().unwrap_or_default()) {
                done.insert(id.clone(), t);
            }
        }
        if done.len() == ids.len() {
            return done;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} tasks finished within {within:?}",
            done.len(),
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn logs(server: &Server, id: &str, stream: &str) -> String {
    let (s, b) = server
        .admin(
            Method::GET,
            &format!("/api/v1/tasks/{id}/logs?stream={stream}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    match b {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Reads SSE messages from a response until `want` have arrived or time runs out.
async fn read_events(
    resp: &mut reqwest::Response,
    want: usize,
    within: Duration,
) -> Vec<(u64, Value)> {
    let deadline = Instant::now() + within;
    let mut buf = String::new();
    let mut out = Vec::new();
    while out.len() < want && Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = match tokio::time::timeout(left, resp.chunk()).await {
            Ok(Ok(Some(c))) => c,
            _ => break,
        };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let message: String = buf.drain(..end + 2).collect();
            let mut id = None;
            let mut data = String::new();
            for line in message.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse::<u64>().ok();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if let Some(id) = id {
                out.push((id, serde_json::from_str(&data).unwrap_or(Value::Null)));
            }
        }
    }
    out
}

async fn open_events(server: &Server, query: &str, last: Option<u64>) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .get(format!("{}/api/v1/events{query}", server.base))
        .bearer_auth(&server.token);
    if let Some(id) = last {
        req = req.header("Last-Event-ID", id.to_string());
    }
    let resp = req.send().await.expect("open the event stream");
    assert_eq!(resp.status(), StatusCode::OK);
    resp
}

#[tokio::test]
async fn fifty_tasks_on_the_local_agent_succeed_with_their_exit_codes_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), false, &[]).await;
    wait_nodes(&server, 1).await;
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(
            submit(
                &server,
                json!({"name": format!("echo-{i}"), "command": ["sh", "-c", format!("echo out-{i}")],
                       "resources": {"cpu_cores": 0.1, "memory_gib": 0.1}}),
            )
            .await,
        );
    }
    let failing = submit(
        &server,
        json!({"name": "failing", "command": ["sh", "-c", "echo to-stdout; echo broken >&2; exit 7"],
               "resources": {"cpu_cores": 0.1, "memory_gib": 0.1}}),
    )
    .await;
    let missing = submit(
        &server,
        json!({"name": "missing", "command": ["no-such-program-cpn"], "resources": {"cpu_cores": 0.1}}),
    )
    .await;
    let mut all = ids.clone();
    all.push(failing.clone());
    all.push(missing.clone());
    let done = wait_terminal(&server, &all, Duration::from_secs(120)).await;
    for (i, id) in ids.iter().enumerate() {
        let t = &done[id];
        assert_eq!(t["state"], "succeeded", "{t}");
        assert_eq!(t["exit_code"], 0);
        assert_eq!(t["attempt"], 1, "ran once: {t}");
        let states: Vec<&str> = t["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["state"].as_str().unwrap())
            .collect();
        assert_eq!(states, ["pending", "scheduled", "running", "succeeded"]);
        assert!(t["kpis"]["queue_wait_s"].as_f64().is_some(), "{t}");
        assert_eq!(logs(&server, id, "stdout").await, format!("out-{i}\n"));
    }
    let f = &done[&failing];
    assert_eq!(f["state"], "failed");
    assert_eq!(f["exit_code"], 7);
    assert_eq!(logs(&server, &failing, "stderr").await, "broken\n");
    assert_eq!(logs(&server, &failing, "stdout").await, "to-stdout\n");
    let m = &done[&missing];
    assert_eq!(m["state"], "failed");
    assert!(
        m["reason"]
            .as_str()
            .unwrap()
            .contains("no-such-program-cpn"),
        "{m}"
    );

    // Filters and the state counts agree.
    let (s, b) = server
        .admin(Method::GET, "/api/v1/tasks?state=failed&limit=1000", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["items"].as_array().unwrap().len(), 2);
    // Cancelling a finished task is refused and changes nothing.
    let (s, b) = server
        .admin(
            Method::POST,
            &format!("/api/v1/tasks/{}/cancel", ids[0]),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert_eq!(task(&server, &ids[0]).await["state"], "succeeded");
}

#[tokio::test]
async fn bad_submissions_get_clear_errors_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), false).await;
    for (body, field) in [
        (json!({"name": "x"}), "command"),
        (
            json!({"name": "x", "command": ["true"], "resources": {"cpu_cores": -1}}),
            "resources.cpu_cores",
        ),
        (
            json!({"name": "x", "command": ["true"], "replicas": 0}),
            "replicas",
        ),
        (
            json!({"name": "x", "command": ["true"], "constraints": {"node_selector": "a in ("}}),
            "constraints.node_selector",
        ),
        (
            json!({"name": "x", "command": ["true"], "policy": "nope"}),
            "policy",
        ),
    ] {
        let (s, b) = server
            .admin(Method::POST, "/api/v1/tasks", Some(body.clone()))
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {b}");
        assert_eq!(b["error"]["field"], field, "{b}");
    }
    let (s, b) = server
        .admin(
            Method::POST,
            "/api/v1/tasks",
            Some(json!({"name": "x", "command": "true"})),
        )
        .await;
    assert!(s.is_client_error(), "{b}");
    let (_, b) = server.admin(Method::GET, "/api/v1/tasks", None).await;
    assert_eq!(b["items"].as_array().unwrap().len(), 0);
    let (s, _) = server
        .admin(Method::GET, "/api/v1/tasks/task-nope", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // With no node at all, a task waits (pending) with the reason, and an alarm is raised.
    let id = submit(&server, json!({"name": "waits", "command": ["true"]})).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = task(&server, &id).await;
        if let Some(r) = t["reason"].as_str() {
            assert!(r.contains("no nodes are registered"), "{t}");
            assert_eq!(t["state"], "pending");
            break;
        }
        assert!(Instant::now() < deadline, "no reason given: {t}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, events) = server
        .admin(Method::GET, "/api/v1/events/log?types=alarm", None)
        .await;
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["data"]["kind"] == "unschedulable" && e["subject"] == id.as_str()),
        "{events}"
    );
    // Cancel of a pending task.
    let (s, b) = server
        .admin(Method::POST, &format!("/api/v1/tasks/{id}/cancel"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["state"], "cancelled");
}

#[tokio::test]
async fn a_task_waiting_for_capacity_is_bound_when_it_frees_not_at_the_end_of_its_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), false, &[]).await;
    wait_nodes(&server, 1).await;
    let (s, nodes) = server.admin(Method::GET, "/api/v1/nodes", None).await;
    assert_eq!(s, StatusCode::OK, "{nodes}");
    let cores = nodes[0]["inventory"]["cpu_cores"].as_f64().expect("cores");
    // The whole node for a few seconds, then a second task that needs the whole node too.
    let first = submit(
        &server,
        json!({"name": "first", "command": ["sleep", "3"],
               "resources": {"cpu_cores": cores, "memory_gib": 0.1}}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while task(&server, &first).await["state"] != "running" {
        assert!(Instant::now() < deadline, "the first task never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = submit(
        &server,
        json!({"name": "second", "command": ["true"],
               "resources": {"cpu_cores": cores, "memory_gib": 0.1}}),
    )
    .await;
    // While it waits, it backs off: the latest `not_before` seen is when the binder would
    // try it next if nothing woke it.
    let mut backoff_until: Option<String> = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = task(&server, &second).await;
        if t["state"] != "pending" {
            break;
        }
        if let Some(nb) = t["not_before"].as_str() {
            assert!(
                t["reason"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("unschedulable"),
                "{t}"
            );
            backoff_until = Some(nb.to_string());
        }
        assert!(
            Instant::now() < deadline,
            "the second task never left pending"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = wait_terminal(
        &server,
        &[first.clone(), second.clone()],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(done[&first]["state"], "succeeded", "{}", done[&first]);
    assert_eq!(done[&second]["state"], "succeeded", "{}", done[&second]);
    let at = |t: &Value, state: &str| {
        let h = t["history"].as_array().unwrap();
        let at = h.iter().find(|h| h["state"] == state).expect(state)["at"]
            .as_str()
            .unwrap();
        chrono::DateTime::parse_from_rfc3339(at).unwrap()
    };
    let backoff_until =
        chrono::DateTime::parse_from_rfc3339(&backoff_until.expect("the second task waited"))
            .unwrap();
    let bound = at(&done[&second], "scheduled");
    // Bound once the first task had ended, and before its backoff was over: the end
    // freed the capacity and woke the binder.
    assert!(bound >= at(&done[&first], "succeeded"), "{}", done[&second]);
    assert!(
        bound < backoff_until,
        "bound at {bound}, after its backoff ({backoff_until}): {}",
        done[&second]
    );
}

#[tokio::test]
async fn a_killed_agents_tasks_are_rescheduled_to_the_other_agent_with_an_alarm() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        false,
        &[
            "--no-local-agent",
            "--heartbeat-ms",
            "300",
            "--node-timeout-ms",
            "2000",
        ],
    )
    .await;
    let (s, b) = server
        .admin(Method::POST, "/api/v1/sites", Some(site("edge")))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let join = server.join_token("edge").await;
    let mut agents: HashMap<String, Agent> = HashMap::new();
    for name in ["a1", "a2"] {
        let state = dir.path().join(format!("agent-{name}"));
        agents.insert(
            name.to_string(),
            Agent::start(&server.base, &join, "edge", name, &state),
        );
    }
    wait_nodes(&server, 2).await;
    let mut events = open_events(&server, "?types=alarm", None).await;

    // Four one-core tasks on two 2-core nodes (this machine has 2 cores): both nodes busy.
    let shared = open_dir();
    let out = shared.path().to_path_buf();
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            submit(
                &server,
                json!({"name": format!("work-{i}"),
                       "command": ["sh", "-c", format!("sleep 2; echo $CPN_ATTEMPT_ID >> {}/{i}", out.display())],
                       "resources": {"cpu_cores": 0.5, "memory_gib": 0.1}}),
            )
            .await,
        );
    }
    // Wait until all run, then kill the agent of the first task.
    let deadline = Instant::now() + Duration::from_secs(30);
    let victim = loop {
        let mut nodes = Vec::new();
        for id in &ids {
            let t = task(&server, id).await;
            if t["state"] == "running" {
                nodes.push(t["node"].as_str().unwrap().to_string());
            }
        }
        if nodes.len() == ids.len() {
            break nodes[0].clone();
        }
        assert!(Instant::now() < deadline, "tasks did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let survivor = if victim == "a1" { "a2" } else { "a1" };
    agents.get_mut(&victim).unwrap().kill9();
    let on_victim: Vec<String> = {
        let mut v = Vec::new();
        for id in &ids {
            if task(&server, id).await["node"] == victim.as_str() {
                v.push(id.clone());
            }
        }
        v
    };
    assert!(!on_victim.is_empty());

    let done = wait_terminal(&server, &ids, Duration::from_secs(60)).await;
    for id in &on_victim {
        let t = &done[id];
        assert_eq!(t["state"], "succeeded", "{t}");
        assert_eq!(t["node"], survivor, "rescheduled to the other agent: {t}");
        assert_eq!(t["attempt"], 2, "{t}");
        assert!(
            t["history"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h["reason"].as_str().is_some_and(|r| r.contains("lost"))),
            "{t}"
        );
    }
    let alarms = read_events(&mut events, 1, Duration::from_secs(10)).await;
    assert!(
        alarms
            .iter()
            .any(|(_, e)| e["data"]["kind"] == "node_lost" && e["data"]["node"] == victim.as_str()),
        "no node_lost alarm on the stream: {alarms:?}"
    );
    let (_, node) = server
        .admin(Method::GET, &format!("/api/v1/nodes/{victim}"), None)
        .await;
    assert_eq!(node["state"], "not_ready", "{node}");
}

#[tokio::test]
async fn kill_9_of_the_server_while_tasks_run_loses_no_task_and_runs_none_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = CrashSetup::start(dir.path()).await;
    let server = &setup.server;

    let shared = open_dir();
    let effects = shared.path().join("effects");
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            submit(
                server,
                json!({"name": format!("effect-{i}"),
                       "command": ["sh", "-c", format!("sleep 1; echo $CPN_TASK_ID >> {}", effects.display())],
                       "resources": {"cpu_cores": 0.2, "memory_gib": 0.1}}),
            )
            .await,
        );
    }
    // Crash while some run and others wait.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, b) = server
            .admin(Method::GET, "/api/v1/tasks?state=running", None)
            .await;
        if !b["items"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "nothing started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    setup.server.kill9();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    setup.restart(dir.path()).await;
    let server = &setup.server;

    let done = wait_terminal(server, &ids, Duration::from_secs(90)).await;
    for id in &ids {
        assert_eq!(done[id]["state"], "succeeded", "{}", done[id]);
        assert_eq!(done[id]["attempt"], 1, "dispatched once: {}", done[id]);
    }
    let text = std::fs::read_to_string(&effects).unwrap();
    let mut seen: HashMap<&str, u32> = HashMap::new();
    for line in text.lines() {
        *seen.entry(line).or_default() += 1;
    }
    for id in &ids {
        assert_eq!(
            seen.get(id.as_str()),
            Some(&1),
            "side effect of {id}: {text}"
        );
    }
    assert_eq!(seen.len(), ids.len(), "{text}");
}

#[tokio::test]
async fn an_event_stream_resumed_with_last_event_id_misses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), false).await;
    let mut first = open_events(&server, "?types=task", None).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            submit(
                &server,
                json!({"name": format!("e{i}"), "command": ["true"]}),
            )
            .await,
        );
    }
    let got = read_events(&mut first, 2, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 2, "{got:?}");
    let last = got[1].0;
    drop(first);
    // Events happen while nobody listens.
    for id in &ids[..3] {
        let (s, _) = server
            .admin(Method::POST, &format!("/api/v1/tasks/{id}/cancel"), None)
            .await;
        assert_eq!(s, StatusCode::OK);
    }
    let mut resumed = open_events(&server, "?types=task", Some(last)).await;
    // 3 more submissions and 3 cancellations: 6 after `last`.
    let rest = read_events(&mut resumed, 6, Duration::from_secs(10)).await;
    let (_, log) = server
        .admin(
            Method::GET,
            &format!("/api/v1/events/log?types=task&after={last}"),
            None,
        )
        .await;
    let expected: Vec<u64> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    let received: Vec<u64> = rest.iter().map(|(id, _)| *id).collect();
    assert_eq!(expected.len(), 6, "{log}");
    assert_eq!(received, expected);
    let all: Vec<u64> = got.iter().map(|(i, _)| *i).chain(received).collect();
    assert!(all.windows(2).all(|w| w[0] < w[1]), "{all:?}");
    assert!(rest.iter().all(|(_, e)| e["type"] == "task.state"));
}

/// Issue #13 (5): a task no site can ever take (here a GPU task on a federation whose only
/// live node has no GPU) fails with the reason once `--unplaceable-wait-s` has passed,
/// instead of waiting for ever; a placed task's "why here" is the binder's own record.
#[tokio::test]
async fn an_unplaceable_task_fails_fast_and_a_bound_one_explains_itself_as_decided() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), false, &["--unplaceable-wait-s", "2"]).await;
    wait_nodes(&server, 1).await;

    let gpu = submit(
        &server,
        json!({"name": "needs-a-gpu", "command": ["true"], "resources": {"cpu_cores": 0.1, "gpus": 1}}),
    )
    .await;
    let cpu = submit(
        &server,
        json!({"name": "fits", "command": ["true"], "resources": {"cpu_cores": 0.1}}),
    )
    .await;
    let started = Instant::now();
    let done = wait_terminal(
        &server,
        &[gpu.clone(), cpu.clone()],
        Duration::from_secs(60),
    )
    .await;
    let failed = &done[&gpu];
    assert_eq!(failed["state"], "failed", "{failed}");
    let reason = failed["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("unplaceable: "), "{failed}");
    assert!(
        reason.contains("no site can ever take it") && reason.contains("chip_model/"),
        "names what ruled the sites out: {reason}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "it waited for capacity to appear first"
    );
    assert_eq!(done[&cpu]["state"], "succeeded", "{}", done[&cpu]);

    // `cpn task why` shows the stored decision; `--now` explains against the nodes now.
    let out = server.cli(&["task", "why", &cpu]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("as the binder decided at"), "{text}");
    assert!(text.contains("site local"), "{text}");
    let out = server.cli(&["task", "why", &cpu, "--now"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("as the binder decided"), "{text}");
    let (s, b) = server
        .admin(
            Method::GET,
            &format!("/api/v1/tasks/{cpu}/explain?now=maybe"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["error"]["field"], "now", "{b}");
}
