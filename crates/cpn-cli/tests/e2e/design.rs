//! Design and provisioning end to end (issue #6 items 1–4): base templates in the
//! marketplace, plans compared in five dimensions, an invalid template with every error,
//! confirm → instruction set → edit, a stale plan refused, re-plan → execute as a workflow
//! whose deploy tasks request the planned resources and, on demo sites with no live node,
//! fail with that reason after the node wait (plans.rs runs one for real).

use crate::harness::Server;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const TPL: &str = "/api/v1/templates/base-gpu-training-cluster";

async fn plans(server: &Server) -> Vec<Value> {
    let (s, b) = server
        .admin(
            Method::POST,
            &format!("{TPL}/plans"),
            Some(json!({"inputs": {}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    b.as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn template_to_plans_to_instructions_to_workflow() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), true, &["--flow-node-wait-s", "2"]).await;

    // Four base templates, published.
    let (s, b) = server.admin(Method::GET, "/api/v1/templates", None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let list = b.as_array().unwrap();
    assert_eq!(list.len(), 4, "{b}");
    assert!(list.iter().all(|t| t["state"] == "published"), "{b}");

    // Plans: at least three distinct objectives, exactly one recommended with reasons.
    let ps = plans(&server).await;
    assert!(ps.len() >= 3);
    let objectives: BTreeSet<&str> = ps
        .iter()
        .map(|p| p["objective"].as_str().unwrap())
        .collect();
    assert_eq!(objectives.len(), ps.len(), "{ps:?}");
    let rec: Vec<&Value> = ps.iter().filter(|p| p["recommended"] == true).collect();
    assert_eq!(rec.len(), 1, "{ps:#?}");
    let rec = rec[0].clone();
    assert!(!rec["reasons"].as_array().unwrap().is_empty());
    for d in ["compute", "network", "application", "cost", "business"] {
        assert_eq!(rec["feasibility"][d]["ok"], true, "{d}: {rec:#}");
    }
    assert!(rec["cost_per_hour"].as_f64().unwrap() > 0.0, "{rec:#}");
    // Any one plan leads to all of its request's alternatives, and only to those.
    let _other_request = plans(&server).await;
    let (s, alts) = server
        .admin(
            Method::GET,
            &format!("/api/v1/plans/{}/alternatives", rec["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{alts}");
    let alt_ids: BTreeSet<&str> = alts
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    let made: BTreeSet<&str> = ps.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(alt_ids, made);
    // Usage is counted.
    let (_, t) = server.admin(Method::GET, TPL, None).await;
    assert_eq!(t["usage_count"], 2, "{t}");

    // An invalid template: every error with its path.
    let bad = "inputs:\n  n: {type: integer, default: 0, constraints: {min: 1}}\nnode_templates:\n  trainer:\n    type: gpu\n    properties: {gpus: many}\n  web:\n    type: app\n    requirements: {depends_on: [ghost]}\n";
    let (s, b) = server
        .admin(
            Method::POST,
            "/api/v1/templates",
            Some(json!({"name": "bad", "source": bad})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let msg = b["error"]["message"].as_str().unwrap();
    for p in [
        "inputs.n.default",
        "node_templates.trainer.properties.gpus",
        "node_templates.web.requirements.depends_on[0]",
    ] {
        assert!(msg.contains(p), "{p} missing in {msg}");
    }

    // Confirm: an instruction set; edit one instruction.
    let id = rec["id"].as_str().unwrap().to_string();
    let (s, p) = server
        .admin(Method::POST, &format!("/api/v1/plans/{id}/confirm"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let ins = p["instructions"].as_array().unwrap();
    let kinds: BTreeSet<&str> = ins.iter().map(|i| i["kind"].as_str().unwrap()).collect();
    for k in [
        "create_resource",
        "mount_storage",
        "configure_network",
        "deploy_app",
    ] {
        assert!(kinds.contains(k), "{k} missing: {ins:#?}");
    }
    let (s, e) = server
        .admin(
            Method::PUT,
            &format!("/api/v1/plans/{id}/instructions/deploy-trainer-1"),
            Some(json!({"version": p["version"], "description": "edited"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(e["description"], "edited");

    // A site the plan uses changes: execution is refused, asking to re-plan.
    let site = rec["placements"][0]["site"].as_str().unwrap().to_string();
    let (s, sb) = server
        .admin(Method::GET, &format!("/api/v1/sites/{site}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{sb}");
    let mut spec = sb["spec"].clone();
    spec["pue"] = json!(1.11);
    let (s, b) = server
        .admin(
            Method::PUT,
            &format!("/api/v1/sites/{site}"),
            Some(json!({"generation": sb["generation"], "spec": spec})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = server
        .admin(Method::POST, &format!("/api/v1/plans/{id}/execute"), None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert_eq!(b["error"]["code"], "invalid_state");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("re-plan"),
        "{b}"
    );

    // Re-plan, confirm, execute. The demo sites have registered capacity but no live node:
    // each deploy task requests the planned 8 CPU / 64 GiB / GPUs, waits for a node on its
    // site at most the server's node wait (2 s here), then fails with the reason; the
    // provisioning, storage and network steps are simulated, and the plan fails with its
    // workflow.
    let ps = plans(&server).await;
    let rec = ps
        .iter()
        .find(|p| p["recommended"] == true)
        .unwrap()
        .clone();
    let id = rec["id"].as_str().unwrap().to_string();
    let (s, p) = server
        .admin(Method::POST, &format!("/api/v1/plans/{id}/confirm"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let (s, flow) = server
        .admin(Method::POST, &format!("/api/v1/plans/{id}/execute"), None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{flow}");
    let flow_id = flow["id"].as_str().unwrap().to_string();
    let (_, p) = server
        .admin(Method::GET, &format!("/api/v1/plans/{id}"), None)
        .await;
    assert_eq!(p["state"], "executing");
    assert_eq!(p["flow_id"], flow_id.as_str());

    let deadline = Instant::now() + Duration::from_secs(60);
    let f = loop {
        let (_, f) = server
            .admin(Method::GET, &format!("/api/v1/flows/{flow_id}"), None)
            .await;
        if ["succeeded", "failed", "cancelled"].contains(&f["state"].as_str().unwrap_or("")) {
            break f;
        }
        assert!(Instant::now() < deadline, "flow did not finish: {f:#}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(f["state"], "failed", "{f:#}");
    let steps = f["steps"].as_array().unwrap();
    let deploys: Vec<&Value> = steps
        .iter()
        .filter(|s| s["id"].as_str().unwrap().starts_with("deploy-"))
        .collect();
    assert!(!deploys.is_empty());
    for d in &deploys {
        assert_eq!(d["state"], "failed", "{d}");
        assert!(
            d["error"]
                .as_str()
                .unwrap_or_default()
                .contains("no live node on site"),
            "{d}"
        );
    }
    for s in steps.iter().filter(|s| {
        ["create-", "mount-", "net-"]
            .iter()
            .any(|p| s["id"].as_str().unwrap().starts_with(p))
    }) {
        assert_eq!(s["state"], "simulated", "{s}");
    }
    let task_id = format!("task-{flow_id}-{}-a1", deploys[0]["id"].as_str().unwrap());
    let (s, task) = server
        .admin(Method::GET, &format!("/api/v1/tasks/{task_id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{task}");
    assert_eq!(task["state"], "cancelled", "{task:#}");
    let trainer = &task["spec"]["resources"];
    assert_eq!(trainer["cpu_cores"], 8.0, "{task:#}");
    assert_eq!(trainer["memory_gib"], 64.0, "{task:#}");
    assert_eq!(trainer["gpus"], 1, "{task:#}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, p) = server
            .admin(Method::GET, &format!("/api/v1/plans/{id}"), None)
            .await;
        if p["state"] == "failed" {
            assert!(
                !p["execution"]["simulated"].as_array().unwrap().is_empty(),
                "{p:#}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "plan did not follow its workflow: {p:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Marketplace: recommendations reflect the history; versions and rollback.
    let (s, r) = server
        .admin(Method::GET, "/api/v1/templates/recommended", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r[0]["template"]["id"], "base-gpu-training-cluster", "{r:#}");
    let (s, t) = server
        .admin(
            Method::POST,
            "/api/v1/templates",
            Some(json!({"name": "mine", "category": "x", "source": "node_templates:\n  a: {type: app}\n"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    assert_eq!(t["state"], "draft");
    let tid = t["id"].as_str().unwrap();
    let (s, t2) = server
        .admin(
            Method::PUT,
            &format!("/api/v1/templates/{tid}"),
            Some(json!({"version": 1, "source": "node_templates:\n  b: {type: app}\n"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{t2}");
    let (s, t3) = server
        .admin(
            Method::POST,
            &format!("/api/v1/templates/{tid}/rollback"),
            Some(json!({"to_version": 1, "version": 2})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{t3}");
    assert!(t3["source"].as_str().unwrap().contains("a: {type: app}"));
    let (_, v) = server
        .admin(
            Method::GET,
            &format!("/api/v1/templates/{tid}/versions"),
            None,
        )
        .await;
    assert_eq!(v.as_array().unwrap().len(), 3, "{v}");

    // CLI: the comparison table and local validation.
    let out = server.cli(&[
        "template",
        "plans",
        "base-hpc-batch-job",
        "--input",
        "ranks=2",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("lowest_cost") && text.contains('★'), "{text}");
    let bad_file = dir.path().join("bad.yaml");
    std::fs::write(&bad_file, bad).unwrap();
    let out = server.cli(&["template", "validate", "-f", bad_file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("node_templates.web.requirements.depends_on[0]"),
        "{err}"
    );
}

fn ok_stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The CLI reads templates, plans, instruction sets and process templates as the wire
/// types of `cpn-api-types`: each table below is printed only if the server's answer
/// decodes into them, so a field the two disagree on fails here.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_reads_templates_plans_and_processes_as_wire_types() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), true, &["--flow-node-wait-s", "2"]).await;
    let cli = |args: &[&str]| ok_stdout(&server.cli(args));

    let text = cli(&["template", "list"]);
    assert!(text.contains("base-gpu-training-cluster"), "{text}");
    assert!(text.contains("published"), "{text}");
    let text = cli(&["template", "get", "base-gpu-training-cluster"]);
    assert!(text.contains("node_templates"), "{text}");
    let text = cli(&["template", "versions", "base-gpu-training-cluster"]);
    assert!(text.contains("published"), "{text}");

    // A draft from a file, then a new version of it.
    let file = dir.path().join("tiny.yaml");
    std::fs::write(
        &file,
        "node_templates:\n  web:\n    type: app\n    properties: {cores: 1}\n",
    )
    .unwrap();
    let text = cli(&[
        "template",
        "create",
        "-f",
        file.to_str().unwrap(),
        "--name",
        "tiny",
        "--tag",
        "cli",
    ]);
    assert!(text.contains("draft"), "{text}");
    let (_, list) = server.admin(Method::GET, "/api/v1/templates", None).await;
    let tiny = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "tiny")
        .unwrap_or_else(|| panic!("no template tiny: {list}"))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let text = cli(&[
        "template",
        "update",
        &tiny,
        "-f",
        file.to_str().unwrap(),
        "--if-version",
        "1",
    ]);
    assert!(text.contains("Version") && text.contains('2'), "{text}");
    let text = cli(&[
        "template",
        "rollback",
        &tiny,
        "--to",
        "1",
        "--if-version",
        "2",
    ]);
    assert!(text.contains('3'), "{text}");

    // Plans side by side, one recommended.
    let text = cli(&["template", "plans", "base-gpu-training-cluster"]);
    assert!(text.contains("lowest_cost") && text.contains('★'), "{text}");
    let text = cli(&["template", "recommended"]);
    assert!(text.contains("base-gpu-training-cluster"), "{text}");
    let ps = plans(&server).await;
    let rec = ps.iter().find(|p| p["recommended"] == true).unwrap();
    let id = rec["id"].as_str().unwrap();
    let text = cli(&["plan", "get", id]);
    assert!(text.contains("State: proposed"), "{text}");
    assert!(text.contains("compute: "), "{text}");

    // Confirm, read the instruction set, change a deploy command (its other params stay).
    let text = cli(&["plan", "confirm", id]);
    assert!(text.contains("confirmed (version"), "{text}");
    let text = cli(&["plan", "instructions", id]);
    assert!(
        text.contains("deploy-trainer-1") && text.contains("simulated"),
        "{text}"
    );
    let (_, p) = server
        .admin(Method::GET, &format!("/api/v1/plans/{id}"), None)
        .await;
    let version = p["version"].to_string();
    cli(&[
        "plan",
        "edit-instruction",
        id,
        "deploy-trainer-1",
        "--if-version",
        &version,
        "--command",
        "echo edited",
    ]);
    let (_, ins) = server
        .admin(
            Method::GET,
            &format!("/api/v1/plans/{id}/instructions"),
            None,
        )
        .await;
    let deploy = ins
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == "deploy-trainer-1")
        .unwrap();
    assert_eq!(
        deploy["params"]["command"],
        json!(["sh", "-c", "echo edited"]),
        "{deploy}"
    );
    assert!(deploy["params"].get("resources").is_some(), "{deploy}");

    // Execute: the answer is the started workflow.
    let text = cli(&["plan", "execute", id]);
    // "plan P executing as workflow F (cpn flow get F)"
    let flow = text
        .split_whitespace()
        .nth(5)
        .unwrap_or_else(|| panic!("no workflow id in {text}"));
    let (s, f) = server
        .admin(Method::GET, &format!("/api/v1/flows/{flow}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{text}: {f}");
    assert_eq!(f["plan"], id, "{f}");

    // Process templates: import prints the id, the list counts its steps.
    let def = dir.path().join("greet.yaml");
    std::fs::write(
        &def,
        "name: greet\nsteps:\n  - id: a\n    action: {kind: noop}\n  - id: b\n    depends_on: [a]\n    action: {kind: noop}\n",
    )
    .unwrap();
    let pid = cli(&["flow", "import", def.to_str().unwrap()]);
    let pid = pid.trim();
    assert!(pid.starts_with("proc-"), "{pid}");
    let text = cli(&["flow", "processes"]);
    let row = text
        .lines()
        .find(|l| l.starts_with(pid))
        .unwrap_or_else(|| panic!("{pid} not listed: {text}"));
    assert!(
        row.contains("greet") && row.trim_end().ends_with('2'),
        "{row}"
    );
}
