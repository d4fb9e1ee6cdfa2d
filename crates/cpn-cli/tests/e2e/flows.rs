//! Workflows end to end (issue #6, DO-FLOW): a diamond of real tasks runs its branches in
//! parallel; a failure compensates completed steps in reverse order; `kill -9` of the
//! server mid-workflow resumes it without running any step twice; invalid definitions
//! are refused with every error; pause / resume / cancel; process templates.

use crate::harness::{CrashSetup, Server, wait_nodes};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};

async fn start(server: &Server, definition: Value) -> String {
    let (s, b) = server
        .admin(
            Method::POST,
            "/api/v1/flows",
            Some(json!({"definition": definition})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    b["id"].as_str().unwrap().to_string()
}

async fn flow(server: &Server, id: &str) -> Value {
    let (s, b) = server
        .admin(Method::GET, &format!("/api/v1/flows/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b
}

async fn wait_end(server: &Server, id: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let f = flow(server, id).await;
        if ["succeeded", "failed", "cancelled"].contains(&f["state"].as_str().unwrap()) {
            return f;
        }
        assert!(Instant::now() < deadline, "workflow did not end: {f}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn journal(server: &Server, id: &str) -> Vec<Value> {
    let (s, b) = server
        .admin(Method::GET, &format!("/api/v1/flows/{id}/journal"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b.as_array().unwrap().clone()
}

fn task_step(id: &str, deps: &[&str], script: &str) -> Value {
    json!({"id": id, "depends_on": deps, "action": {"kind": "task", "task": {
        "name": format!("flow-{id}"), "command": ["sh", "-c", script],
        "resources": {"cpu_cores": 0.1, "memory_gib": 0.1}}}})
}

#[tokio::test]
async fn a_diamond_of_tasks_runs_its_branches_in_parallel() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), false, &[]).await;
    wait_nodes(&server, 1).await;
    let id = start(
        &server,
        json!({"name": "diamond", "steps": [
            task_step("a", &[], "sleep 1; echo a"),
            task_step("b", &["a"], "sleep 2; echo b"),
            task_step("c", &["a"], "sleep 2; echo c"),
            task_step("d", &["b", "c"], "sleep 1; echo d")]}),
    )
    .await;
    let f = wait_end(&server, &id, Duration::from_secs(90)).await;
    assert_eq!(f["state"], "succeeded", "{f}");
    for s in f["steps"].as_array().unwrap() {
        assert_eq!(s["state"], "succeeded", "{s}");
        assert_eq!(s["attempts"], 1, "{s}");
        assert!(s["outputs"]["task_id"].is_string(), "{s}");
        assert_eq!(s["outputs"]["exit_code"], 0, "{s}");
        assert_eq!(
            s["outputs"]["stdout"],
            format!("{}\n", s["id"].as_str().unwrap()),
            "{s}"
        );
    }
    let (s, r) = server
        .admin(Method::GET, &format!("/api/v1/flows/{id}/report"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert!(r["parallel_rate"].as_f64().unwrap() > 1.2, "{r}");
    assert!(r["serial_rate"].as_f64().unwrap() < 1.0, "{r}");
    let path = r["critical_path"].as_array().unwrap();
    assert_eq!(path.first().unwrap(), "a", "{r}");
    assert_eq!(path.last().unwrap(), "d", "{r}");
    // b and c overlapped.
    let step = |n: usize| &f["steps"][n];
    assert!(step(1)["started_at"].as_str() < step(2)["ended_at"].as_str());
    assert!(step(2)["started_at"].as_str() < step(1)["ended_at"].as_str());

    let out = server.cli(&["flow", "report", &id]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Parallel rate") && text.contains("a -> "),
        "{text}"
    );
    let out = server.cli(&["flow", "get", &id]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("succeeded"));
}

#[tokio::test]
async fn a_failure_compensates_completed_steps_in_reverse_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), false).await;
    let id = start(
        &server,
        json!({"name": "rollback", "steps": [
            {"id": "a", "action": {"kind": "noop", "outputs": {"x": 1}},
             "compensate": {"kind": "notify", "message": "undo a"}},
            {"id": "b", "depends_on": ["a"], "action": {"kind": "sleep", "seconds": 0.2},
             "compensate": {"kind": "noop"}},
            {"id": "c", "depends_on": ["b"], "action": {"kind": "fail", "message": "injected at c"}},
            {"id": "d", "depends_on": ["c"], "action": {"kind": "noop"},
             "compensate": {"kind": "noop"}}]}),
    )
    .await;
    let f = wait_end(&server, &id, Duration::from_secs(30)).await;
    assert_eq!(f["state"], "failed", "{f}");
    assert!(
        f["error"].as_str().unwrap().contains("injected at c"),
        "{f}"
    );
    let states: Vec<&str> = f["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["compensated", "compensated", "failed", "waiting"]);
    let j = journal(&server, &id).await;
    let compensated: Vec<&str> = j
        .iter()
        .filter(|e| e["type"] == "compensation_succeeded")
        .map(|e| e["step"].as_str().unwrap())
        .collect();
    assert_eq!(compensated, ["b", "a"], "{j:?}");
    assert!(
        !j.iter()
            .any(|e| e["step"] == "d" && e["type"] == "step_started"),
        "{j:?}"
    );
    let types: Vec<&str> = j.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let failed_at = types.iter().position(|t| *t == "step_failed").unwrap();
    let first_undo = types
        .iter()
        .position(|t| *t == "compensation_started")
        .unwrap();
    assert!(failed_at < first_undo, "{types:?}");
    assert_eq!(types.last(), Some(&"flow_failed"));
    // The notify hook was published.
    let (_, ev) = server
        .admin(
            Method::GET,
            "/api/v1/events/log?types=flow.hook&limit=1000",
            None,
        )
        .await;
    assert!(ev.to_string().contains("undo a"), "{ev}");
}

/// A real `cpn agent` process, outliving the server as a site's agent would.
#[tokio::test]
async fn kill_9_mid_workflow_resumes_it_and_runs_no_step_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = CrashSetup::start(dir.path()).await;
    let server = &setup.server;

    let shared = crate::harness::open_dir();
    let effects = shared.path().join("effects");
    let steps: Vec<Value> = (1..=5)
        .map(|i| {
            let id = format!("s{i}");
            let prev = format!("s{}", i - 1);
            let deps: Vec<&str> = if i == 1 { vec![] } else { vec![prev.as_str()] };
            task_step(
                &id,
                &deps,
                &format!("sleep 1; echo {id} >> {}", effects.display()),
            )
        })
        .collect();
    let id = start(server, json!({"name": "resumable", "steps": steps})).await;
    // Crash while the second step runs.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let j = journal(server, &id).await;
        if j.iter()
            .any(|e| e["type"] == "step_progress" && e["step"] == "s2")
        {
            break;
        }
        assert!(Instant::now() < deadline, "s2 never started: {j:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    setup.server.kill9();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    setup.restart(dir.path()).await;
    let server = &setup.server;

    let f = wait_end(server, &id, Duration::from_secs(90)).await;
    assert_eq!(f["state"], "succeeded", "{f}");
    let text = std::fs::read_to_string(&effects).unwrap();
    let mut seen: HashMap<&str, u32> = HashMap::new();
    for line in text.lines() {
        *seen.entry(line).or_default() += 1;
    }
    for i in 1..=5 {
        assert_eq!(seen.get(format!("s{i}").as_str()), Some(&1), "{text}");
    }
    let (_, tasks) = server
        .admin(Method::GET, "/api/v1/tasks?limit=1000", None)
        .await;
    let mut by_name: HashMap<String, u32> = HashMap::new();
    for t in tasks["items"].as_array().unwrap() {
        *by_name
            .entry(t["name"].as_str().unwrap().to_string())
            .or_default() += 1;
        assert_eq!(t["attempt"], 1, "{t}");
    }
    for i in 1..=5 {
        assert_eq!(by_name.get(&format!("flow-s{i}")), Some(&1), "{by_name:?}");
    }
    let j = journal(server, &id).await;
    let starts = j.iter().filter(|e| e["type"] == "step_started").count();
    assert_eq!(starts, 5, "{j:#?}");
}

#[tokio::test]
async fn an_invalid_definition_is_refused_with_every_error_and_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), false).await;
    let noop =
        |id: &str, deps: &[&str]| json!({"id": id, "action": {"kind": "noop"}, "depends_on": deps});
    let (s, b) = server
        .admin(
            Method::POST,
            "/api/v1/flows",
            Some(json!({"definition": {"name": "bad", "steps": [
                noop("a", &[]), noop("a", &[]), noop("b", &["ghost"]),
                noop("x", &["y"]), noop("y", &["x"])]}})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "definition.steps[1].id", "{b}");
    let msg = b["error"]["message"].as_str().unwrap();
    assert!(msg.contains("duplicate step id \"a\""), "{msg}");
    assert!(
        msg.contains("steps[2].depends_on[0]: unknown step \"ghost\""),
        "{msg}"
    );
    assert!(
        msg.contains("steps[3].depends_on: dependency cycle: x -> y -> x"),
        "{msg}"
    );
    let (_, list) = server.admin(Method::GET, "/api/v1/flows", None).await;
    assert_eq!(list, json!([]), "nothing stored");
}

#[tokio::test]
async fn workflows_pause_resume_and_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), false).await;
    let id = start(
        &server,
        json!({"name": "pausable", "steps": [
            {"id": "a", "action": {"kind": "sleep", "seconds": 0.5}},
            {"id": "b", "depends_on": ["a"], "action": {"kind": "noop"}}]}),
    )
    .await;
    let (s, b) = server
        .admin(Method::POST, &format!("/api/v1/flows/{id}/pause"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["state"], "paused");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let f = flow(&server, &id).await;
    assert_eq!(f["steps"][0]["state"], "succeeded", "{f}");
    assert_eq!(f["steps"][1]["state"], "waiting", "{f}");
    let (s, _) = server
        .admin(Method::POST, &format!("/api/v1/flows/{id}/pause"), None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = server
        .admin(Method::POST, &format!("/api/v1/flows/{id}/resume"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let f = wait_end(&server, &id, Duration::from_secs(10)).await;
    assert_eq!(f["state"], "succeeded", "{f}");

    let id = start(
        &server,
        json!({"name": "long", "steps": [
            {"id": "a", "action": {"kind": "sleep", "seconds": 60}}]}),
    )
    .await;
    let (s, b) = server
        .admin(Method::POST, &format!("/api/v1/flows/{id}/cancel"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["state"], "cancelled");
    assert_eq!(b["steps"][0]["state"], "cancelled");
    let (s, b) = server
        .admin(Method::POST, &format!("/api/v1/flows/{id}/resume"), None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert_eq!(b["error"]["code"], "invalid_state", "{b}");
}

#[tokio::test]
async fn process_templates_import_export_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), false).await;
    let (s, p) = server
        .raw(
            Method::POST,
            "/api/v1/processes",
            "application/yaml",
            "name: greet\ninputs: {who: world}\nsteps:\n  - id: hello\n    action: {kind: noop, outputs: {greeting: 'hi ${inputs.who}'}}\n  - id: each\n    depends_on: [hello]\n    for_each: [1, 2]\n    action: {kind: notify, message: '${steps.hello.outputs.greeting} ${item}'}\n",
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let pid = p["id"].as_str().unwrap().to_string();
    let out = server.cli(&["flow", "export", &pid]);
    assert!(out.status.success(), "{out:?}");
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(yaml.contains("name: greet"), "{yaml}");
    let (s, f) = server
        .admin(
            Method::POST,
            &format!("/api/v1/processes/{pid}/run"),
            Some(json!({"inputs": {"who": "cpn"}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{f}");
    let f = wait_end(&server, f["id"].as_str().unwrap(), Duration::from_secs(10)).await;
    assert_eq!(f["state"], "succeeded", "{f}");
    assert_eq!(
        f["steps"][1]["outputs"]["items"],
        json!([{"message": "hi cpn 1"}, {"message": "hi cpn 2"}]),
        "{f}"
    );
}

#[tokio::test]
async fn a_step_past_its_timeout_fails_and_is_retried_with_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), false).await;
    let id = start(
        &server,
        json!({"name": "slow", "steps": [
            {"id": "a", "action": {"kind": "sleep", "seconds": 30}, "timeout_s": 0.3,
             "retry": {"max_retries": 1, "backoff_s": 0.2}}]}),
    )
    .await;
    let f = wait_end(&server, &id, Duration::from_secs(10)).await;
    assert_eq!(f["state"], "failed", "{f}");
    assert_eq!(f["steps"][0]["attempts"], 2, "{f}");
    assert!(
        f["steps"][0]["error"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{f}"
    );
    let j = journal(&server, &id).await;
    let retry = j
        .iter()
        .find(|e| e["type"] == "step_failed" && !e["retry_at"].is_null())
        .expect("a retry was planned");
    assert!(retry["retry_at"].as_str() > retry["at"].as_str(), "{retry}");
}
