//! Ops orchestration rules (issue #6 item 6): a metric threshold scales a service out when
//! its agent reports CPU above it.

use crate::harness::Server;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_cpu_threshold_rule_scales_a_busy_service_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), false, &["--heartbeat-ms", "300"]).await;
    // Bad rules are refused with the field.
    let (s, b) = server
        .admin(
            Method::POST,
            "/api/v1/rules",
            Some(
                json!({"name": "bad", "trigger": {"kind": "cron", "schedule": "61 * * * *"},
                        "action": {"kind": "scale_out", "group": "x"}}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "trigger.schedule");

    // A service that keeps one core busy.
    let (s, b) = server
        .admin(
            Method::POST,
            "/api/v1/tasks",
            // `timeout` bounds it: the server of a test is killed at its end, and a process
            // its agent ran outlives both by design.
            Some(
                json!({"name": "web", "command": ["timeout", "20", "sh", "-c", "while :; do :; done"],
                        "resources": {"cpu_cores": 0.5, "memory_gib": 0.1}}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let group = b["id"].as_str().unwrap().to_string();
    let (s, rule) = server
        .admin(
            Method::POST,
            "/api/v1/rules",
            Some(json!({"name": "web-hot",
                        "trigger": {"kind": "metric", "metric": "cpu_util_pct", "above": 30.0, "for_s": 1.0, "group": group},
                        "action": {"kind": "scale_out", "group": group, "by": 1, "max_replicas": 2}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{rule}");
    let id = rule["id"].as_str().unwrap().to_string();

    let deadline = Instant::now() + Duration::from_secs(60);
    let firing = loop {
        let (_, r) = server
            .admin(Method::GET, &format!("/api/v1/rules/{id}"), None)
            .await;
        if let Some(f) = r["firings"].as_array().and_then(|f| f.first()) {
            break f.clone();
        }
        assert!(Instant::now() < deadline, "the rule never fired: {r}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(firing["ok"], true, "{firing}");
    assert!(
        firing["reason"].as_str().unwrap().contains("CpuUtilPct"),
        "{firing}"
    );
    let replica = format!("{group}-r1");
    let (s, t) = server
        .admin(Method::GET, &format!("/api/v1/tasks/{replica}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "the new replica exists: {t}");
    assert_eq!(
        t["spec"]["command"],
        json!(["timeout", "20", "sh", "-c", "while :; do :; done"])
    );
    let (_, events) = server
        .admin(Method::GET, "/api/v1/events/log?types=ops", None)
        .await;
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e: &Value| e["subject"] == id.as_str()),
        "{events}"
    );
    // Stop burning CPU.
    for t in [group.as_str(), replica.as_str()] {
        let _ = server
            .admin(Method::POST, &format!("/api/v1/tasks/{t}/cancel"), None)
            .await;
    }
}

/// Waits for the first firing of rule `id`.
async fn first_firing(server: &Server, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, r) = server
            .admin(Method::GET, &format!("/api/v1/rules/{id}"), None)
            .await;
        if let Some(f) = r["firings"].as_array().and_then(|f| f.first()) {
            return f.clone();
        }
        assert!(Instant::now() < deadline, "rule {id} never fired: {r}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A rule acts as the rules engine (`system:rules`), not as the operator who wrote it, and
/// only while that operator is still an enabled operator.
#[tokio::test]
async fn a_rule_acts_as_the_rules_engine_and_only_for_an_enabled_operator() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), false).await;
    let ops2 = server.user("system", "ops2", "operator").await;
    let run = |name: &str| {
        json!({"kind": "run_task", "task": {"name": name, "command": ["true"],
               "resources": {"cpu_cores": 0.1, "memory_gib": 0.1}}})
    };
    // ops2's rule fires when the admin's rule does.
    let (s, later) = server
        .call(
            Method::POST,
            "/api/v1/rules",
            Some(&ops2),
            Some(json!({"name": "after-admins", "cooldown_s": 3600.0,
                        "trigger": {"kind": "event", "event_type": "ops.rule"},
                        "action": run("never")})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{later}");
    let (s, b) = server
        .admin(Method::POST, "/api/v1/users/ops2/disable", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, first) = server
        .admin(
            Method::POST,
            "/api/v1/rules",
            Some(json!({"name": "on-submit", "cooldown_s": 3600.0,
                        "trigger": {"kind": "event", "event_type": "task.state"},
                        "action": run("from-rule")})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    let (s, b) = server
        .admin(
            Method::POST,
            "/api/v1/tasks",
            Some(json!({"name": "poke", "command": ["true"],
                        "resources": {"cpu_cores": 0.1, "memory_gib": 0.1}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    let firing = first_firing(&server, first["id"].as_str().unwrap()).await;
    assert_eq!(firing["ok"], true, "{firing}");
    let task = firing["result"]
        .as_str()
        .unwrap()
        .strip_prefix("submitted ")
        .unwrap_or_else(|| panic!("{firing}"))
        .to_string();
    let (s, t) = server
        .admin(Method::GET, &format!("/api/v1/tasks/{task}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(t["owner"], "system:rules", "{t}");
    assert_eq!(t["tenant"], "system", "{t}");

    // The disabled operator's rule fired, and refused to act.
    let refused = first_firing(&server, later["id"].as_str().unwrap()).await;
    assert_eq!(refused["ok"], false, "{refused}");
    assert!(
        refused["result"]
            .as_str()
            .unwrap()
            .contains("no longer an enabled operator"),
        "{refused}"
    );
    let (_, tasks) = server
        .admin(Method::GET, "/api/v1/tasks?name=never", None)
        .await;
    assert_eq!(tasks["items"], json!([]), "{tasks}");
}
