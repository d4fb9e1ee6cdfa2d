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
