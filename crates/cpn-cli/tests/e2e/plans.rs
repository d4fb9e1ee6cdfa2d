//! Plans run for real, or say they did not (issue #13, deliverable 6): a plan's deploy task
//! requests the planned resources and runs on the agent of the placed site; the steps with
//! no controller behind them (create, mount, network) end `simulated` in the API and the
//! CLI, never `succeeded`; the plan follows its workflow to `completed` or `failed`; the
//! lean report keeps the deploy task's queue wait apart from its run time; a deploy step
//! on a site with no live node fails with that reason after its timeout.

use crate::harness::{Agent, Server, wait_nodes};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// A small application the machine of the tests can hold: a storage volume and a network
/// (no controller here: simulated) and an app that really runs, all in `region`.
const TEMPLATE: &str = r#"
description: A web app with a volume and a network, sized for a test machine
inputs:
  region: {type: string, default: Ningxia}
  hours: {type: number, default: 1}
node_templates:
  data:
    type: storage
    properties:
      storage_gib: 1
      region: {get_input: region}
  lan:
    type: network
    properties:
      bandwidth_gbps: 1
  web:
    type: app
    properties:
      cores: 0.5
      memory_gib: 0.25
      region: {get_input: region}
      command: ["sh", "-c", "sleep 1; echo planned $CPN_PLANNED_CPU_CORES cores"]
    requirements:
      depends_on: [data, lan]
"#;

fn cpu_resource(name: &str, site: &str) -> Value {
    json!({"name": name, "spec": {"site": site, "type": "compute", "compute": {
        "supply_mode": "bare_metal", "chip_type": "cpu", "architecture": "x86_64",
        "model": "Xeon", "count": 16, "unit_price": 0.1, "power_watts": 10}}})
}

async fn created(server: &Server, path: &str, body: Value) -> Value {
    let (s, b) = server.admin(Method::POST, path, Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{path}: {b}");
    b
}

async fn get(server: &Server, path: &str) -> Value {
    let (s, b) = server.admin(Method::GET, path, None).await;
    assert_eq!(s, StatusCode::OK, "{path}: {b}");
    b
}

/// Plans the template in `region`, confirms the recommended plan; its id and the plan.
async fn confirmed_plan(server: &Server, template: &str, region: &str) -> (String, Value) {
    let ps = created(
        server,
        &format!("/api/v1/templates/{template}/plans"),
        json!({"inputs": {"region": region}}),
    )
    .await;
    let rec = ps
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["recommended"] == true)
        .unwrap_or_else(|| panic!("no recommended plan: {ps:#}"))
        .clone();
    let id = rec["id"].as_str().unwrap().to_string();
    let (s, p) = server
        .admin(Method::POST, &format!("/api/v1/plans/{id}/confirm"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    (id, p)
}

async fn execute(server: &Server, plan: &str) -> String {
    let (s, flow) = server
        .admin(Method::POST, &format!("/api/v1/plans/{plan}/execute"), None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{flow}");
    flow["id"].as_str().unwrap().to_string()
}

async fn wait_flow_end(server: &Server, id: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let f = get(server, &format!("/api/v1/flows/{id}")).await;
        if ["succeeded", "failed", "cancelled"].contains(&f["state"].as_str().unwrap()) {
            return f;
        }
        assert!(Instant::now() < deadline, "workflow did not end: {f:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The plan, once it has left `executing` (it follows its workflow's end).
async fn wait_plan_end(server: &Server, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let p = get(server, &format!("/api/v1/plans/{id}")).await;
        if p["state"] != "executing" {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "plan still executing after its workflow ended: {p:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn step<'a>(flow: &'a Value, id: &str) -> &'a Value {
    flow["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step {id}: {flow:#}"))
}

fn ids(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect()
}

fn stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plan_deploys_its_planned_resources_simulates_the_rest_and_ends_with_its_workflow() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), false).await;
    created(&server, "/api/v1/sites", crate::harness::site("edge")).await;
    let mut dark = crate::harness::site("dark");
    dark["spec"]["region"] = json!("Gansu");
    created(&server, "/api/v1/sites", dark).await;
    created(
        &server,
        "/api/v1/resources",
        cpu_resource("edge-cpu", "edge"),
    )
    .await;
    created(
        &server,
        "/api/v1/resources",
        cpu_resource("dark-cpu", "dark"),
    )
    .await;
    let t = created(
        &server,
        "/api/v1/templates",
        json!({"name": "small-web", "source": TEMPLATE}),
    )
    .await;
    let tid = t["id"].as_str().unwrap().to_string();

    // ---- A plan on `edge`: its deploy task runs for real, the rest is simulated.
    let (plan, p) = confirmed_plan(&server, &tid, "Ningxia").await;
    let ins = p["instructions"].as_array().unwrap();
    let deploy = ins
        .iter()
        .find(|i| i["kind"] == "deploy_app")
        .unwrap_or_else(|| panic!("no deploy: {ins:#?}"));
    assert_eq!(deploy["site"], "edge", "{deploy}");
    let deploy_id = deploy["id"].as_str().unwrap().to_string();
    let planned = deploy["params"]["resources"].clone();
    assert_eq!(planned["cpu_cores"], 0.5, "{planned}");
    assert_eq!(planned["memory_gib"], 0.25, "{planned}");
    let unreal: Vec<String> = ins
        .iter()
        .filter(|i| i["kind"] != "deploy_app")
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    for kind in ["create_resource", "mount_storage", "configure_network"] {
        assert!(ins.iter().any(|i| i["kind"] == kind), "{kind}: {ins:#?}");
    }
    // The CLI says up front which instructions will only be simulated.
    let text = stdout(&server.cli(&["plan", "instructions", &plan]));
    assert!(text.contains("RUNS AS"), "{text}");
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let runs_as = if cols[2] == "deploy_app" {
            "task"
        } else {
            "simulated"
        };
        assert_eq!(cols[3], runs_as, "{text}");
    }

    // Executed before the site has a live node: the deploy task queues until one joins.
    let flow = execute(&server, &plan).await;
    let queued = Instant::now();
    assert_eq!(
        get(&server, &format!("/api/v1/plans/{plan}")).await["state"],
        "executing"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let join = server.join_token("edge").await;
    let _agent = Agent::start(
        &server.base,
        &join,
        "edge",
        "edge-1",
        &dir.path().join("agent-edge"),
    );
    wait_nodes(&server, 1).await;
    let f = wait_flow_end(&server, &flow, Duration::from_secs(120)).await;
    assert_eq!(f["state"], "succeeded", "{f:#}");

    // The deploy task asked for exactly the planned resources, and ran on edge.
    let d = step(&f, &deploy_id);
    assert_eq!(d["state"], "succeeded", "{d}");
    assert_eq!(d["outputs"]["site"], "edge", "{d}");
    assert_eq!(d["outputs"]["stdout"], "planned 0.5 cores\n", "{d}");
    let task_id = d["outputs"]["task_id"].as_str().unwrap();
    let task = get(&server, &format!("/api/v1/tasks/{task_id}")).await;
    let r = &task["spec"]["resources"];
    assert_eq!(r["cpu_cores"], planned["cpu_cores"], "{task:#}");
    assert_eq!(r["memory_gib"], planned["memory_gib"], "{task:#}");
    assert_eq!(r["gpus"], planned["gpus"], "{task:#}");
    assert_eq!(task["spec"]["constraints"]["site"], "edge", "{task:#}");

    // Create, mount and network steps: simulated, never succeeded.
    for u in &unreal {
        let s = step(&f, u);
        assert_eq!(s["state"], "simulated", "{s}");
        assert!(
            s["outputs"]["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("no ")),
            "{s}"
        );
    }
    let journal = get(&server, &format!("/api/v1/flows/{flow}/journal")).await;
    for e in journal.as_array().unwrap() {
        if e["type"] == "step_succeeded" {
            assert_eq!(e["step"], deploy_id.as_str(), "{e}");
        }
    }

    // The plan ended with its workflow, and says what was real.
    let p = wait_plan_end(&server, &plan).await;
    assert_eq!(p["state"], "completed", "{p:#}");
    let ex = &p["execution"];
    assert_eq!(ids(&ex["succeeded"]), [deploy_id.as_str()], "{ex:#}");
    let mut simulated: Vec<&str> = ids(&ex["simulated"]);
    simulated.sort();
    let mut want: Vec<&str> = unreal.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(simulated, want, "{ex:#}");
    assert!(
        ex["summary"].as_str().unwrap().contains("simulated"),
        "{ex}"
    );

    // The lean report: the deploy task's queue wait is not run time.
    let rep = get(&server, &format!("/api/v1/flows/{flow}/report")).await;
    let timing = rep["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == deploy_id.as_str())
        .unwrap()
        .clone();
    let (queue, run, duration) = (
        timing["queue_s"].as_f64().unwrap(),
        timing["run_s"].as_f64().unwrap(),
        timing["duration_s"].as_f64().unwrap(),
    );
    assert!(
        queue >= 2.5,
        "queued at least until the agent joined: {rep:#}"
    );
    assert!(run >= 0.9 && run < duration - 2.0, "{rep:#}");
    assert!(queue + run <= duration + 0.5, "{rep:#}");
    assert!(rep["queue_s"].as_f64().unwrap() >= queue - 1e-6, "{rep:#}");
    let durations: f64 = rep["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["duration_s"].as_f64().unwrap())
        .sum();
    assert!(
        rep["work_s"].as_f64().unwrap() <= durations - queue + 1e-6,
        "work excludes queue wait: {rep:#}"
    );
    assert_eq!(ids(&rep["simulated_steps"]).len(), unreal.len(), "{rep:#}");
    assert!(queued.elapsed() >= Duration::from_secs(3));

    // The CLI shows all of it.
    let text = stdout(&server.cli(&["flow", "get", &flow]));
    assert!(text.contains("simulated"), "{text}");
    assert!(text.contains("Simulated"), "{text}");
    let text = stdout(&server.cli(&["flow", "report", &flow]));
    assert!(
        text.contains("Queue wait") && text.contains("QUEUE") && text.contains("RUN"),
        "{text}"
    );
    let text = stdout(&server.cli(&["plan", "get", &plan]));
    assert!(text.contains("State: completed"), "{text}");
    assert!(
        text.contains("Execution:") && text.contains("simulated:"),
        "{text}"
    );

    // ---- A plan on `dark`, a site with no live node: its deploy step waits at most its
    // timeout (set on the instruction here), then fails with the reason; the plan fails.
    let (plan, p) = confirmed_plan(&server, &tid, "Gansu").await;
    let deploy = p["instructions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "deploy_app")
        .unwrap()
        .clone();
    assert_eq!(deploy["site"], "dark", "{deploy}");
    let deploy_id = deploy["id"].as_str().unwrap().to_string();
    let mut params = deploy["params"].clone();
    params["timeout_s"] = json!(3);
    let (s, b) = server
        .admin(
            Method::PUT,
            &format!("/api/v1/plans/{plan}/instructions/{deploy_id}"),
            Some(json!({"version": p["version"], "params": params})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let started = Instant::now();
    let flow = execute(&server, &plan).await;
    let f = wait_flow_end(&server, &flow, Duration::from_secs(60)).await;
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "waited its timeout"
    );
    assert_eq!(f["state"], "failed", "{f:#}");
    let d = step(&f, &deploy_id);
    assert_eq!(d["state"], "failed", "{d}");
    let error = d["error"].as_str().unwrap_or_default();
    assert!(error.contains("no live node on site dark"), "{d}");
    assert!(
        f["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no live node on site dark"),
        "{f:#}"
    );
    // All of its time was queue wait, none of it run time.
    let rep = get(&server, &format!("/api/v1/flows/{flow}/report")).await;
    let timing = rep["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == deploy_id.as_str())
        .unwrap()
        .clone();
    assert!(timing["queue_s"].as_f64().unwrap() >= 2.5, "{rep:#}");
    assert_eq!(timing["run_s"], 0.0, "{rep:#}");
    // Its task was cancelled, not left waiting.
    let tasks = get(&server, "/api/v1/tasks?limit=100").await;
    let waiting: Vec<&Value> = tasks["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["spec"]["constraints"]["site"] == "dark")
        .collect();
    assert_eq!(waiting.len(), 1, "{tasks:#}");
    assert_eq!(waiting[0]["state"], "cancelled", "{:#}", waiting[0]);
    let p = wait_plan_end(&server, &plan).await;
    assert_eq!(p["state"], "failed", "{p:#}");
    assert_eq!(
        ids(&p["execution"]["failed"]),
        [deploy_id.as_str()],
        "{p:#}"
    );
    assert!(
        p["execution"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no live node on site dark"),
        "{p:#}"
    );
    let text = stdout(&server.cli(&["flow", "get", &flow]));
    assert!(text.contains("no live node on site dark"), "{text}");
    let text = stdout(&server.cli(&["plan", "get", &plan]));
    assert!(text.contains("State: failed"), "{text}");
}
