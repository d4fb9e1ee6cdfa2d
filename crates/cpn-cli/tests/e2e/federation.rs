//! The federation twin through the API and the CLI: a small timed workload uploaded as a
//! pod CSV, replayed over the demo federation under the built-in policy and a stored one
//! with different weights; both reports come back, they differ, and bad input gets 422.

use crate::harness::Server;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::fmt::Write as _;

/// 50 pods, one a minute, each running an hour; GPU models that do not exist in the demo.
fn pods_csv() -> String {
    let mut csv = String::from(
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n",
    );
    for i in 0..50u64 {
        let (num_gpu, gpu_milli) =
            [(1, 1000), (0, 0), (2, 1000), (1, 1000), (0, 0)][i as usize % 5];
        let created = 1000 + i * 60;
        let _ = writeln!(
            csv,
            "pod-{i:03},4000,16384,{num_gpu},{gpu_milli},V100M16,LS,Running,{created},{},{created}",
            created + 3600
        );
    }
    // A row without times is skipped.
    csv.push_str("pod-notime,1000,1024,0,0,,LS,Pending,,,\n");
    csv
}

#[tokio::test]
async fn a_timed_workload_replays_under_two_policies() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), true).await;
    let (s, b) = server
        .admin(
            Method::POST,
            "/api/v1/policies",
            Some(json!({"name": "near", "visibility": "public", "spec": {
                "weights": {"latency": 10, "price": 0, "energy": 0}}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    let pods = pods_csv();
    let (s, r) = server
        .admin(
            Method::POST,
            "/api/v1/simulations/federation",
            Some(
                json!({"policies": ["default", "near"], "workload": {"pods_csv": pods}, "seed": 7}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["tasks"], 50, "{r}");
    let reports = r["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[0]["policy"], "default");
    assert_eq!(reports[1]["policy"], "near");
    for rep in reports {
        assert!(rep["placed"].as_u64().unwrap() > 0, "{rep}");
        assert!(rep["total_cost_cny"].as_f64().unwrap() > 0.0, "{rep}");
        assert!(rep["energy_kwh"].as_f64().unwrap() > 0.0, "{rep}");
        assert!(!rep["sites"].as_array().unwrap().is_empty(), "{rep}");
    }
    let kpi = |i: usize, k: &str| reports[i][k].as_f64().unwrap_or(-1.0);
    assert!(
        kpi(0, "total_cost_cny") != kpi(1, "total_cost_cny")
            || kpi(0, "mean_latency_ms") != kpi(1, "mean_latency_ms"),
        "the two policies should differ: {r}"
    );
    // Latency-first keeps tasks nearer their origins.
    assert!(
        kpi(1, "mean_latency_ms") <= kpi(0, "mean_latency_ms"),
        "{r}"
    );

    // The same through the CLI, as tables.
    let file = dir.path().join("pods.csv");
    std::fs::write(&file, &pods).unwrap();
    let out = server.cli(&[
        "sim",
        "federation",
        "--policy",
        "default,near",
        "--pods",
        file.to_str().unwrap(),
        "--seed",
        "7",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("federation replay of 50 tasks"), "{stdout}");
    assert!(stdout.contains("mean queueing (s)"), "{stdout}");
    assert!(stdout.contains("GPU % (near)"), "{stdout}");

    // Bad input: three policies, no times at all, a shipped trace without --sim-data.
    let (s, b) = server
        .admin(
            Method::POST,
            "/api/v1/simulations/federation",
            Some(json!({"policies": ["default", "near", "x"], "workload": {"pods_csv": pods}})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "policies", "{b}");
    let (s, b) = server
        .admin(
            Method::POST,
            "/api/v1/simulations/federation",
            Some(json!({"policies": ["default"], "workload": {"pods_csv": "name,cpu_milli,memory_mib,num_gpu,gpu_milli\np,1000,10,0,0\n"}})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "workload.pods_csv", "{b}");
    let (s, b) = server
        .admin(
            Method::POST,
            "/api/v1/simulations/federation",
            Some(json!({"policies": ["default"], "workload": {"trace": "default"}})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "workload.trace", "{b}");

    let (s, doc) = server
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["paths"].get("/api/v1/simulations/federation").is_some());
    assert!(
        doc["components"]["schemas"]
            .get("FederationResult")
            .is_some()
    );
}
