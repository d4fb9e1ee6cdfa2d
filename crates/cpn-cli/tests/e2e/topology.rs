//! Topology: the graph, and past states read back with `?at=`.

use crate::harness::{Server, site};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn topology_at_an_earlier_time_shows_the_earlier_latency() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), false).await;
    for name in ["east", "west"] {
        let (s, _) = server
            .admin(Method::POST, "/api/v1/sites", Some(site(name)))
            .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let link = json!({"name": "east-west", "spec": {"from": "east", "to": "west", "link_type": "private_line",
        "latency_ms": 10.0, "bandwidth_gbps": 100.0}});
    let (s, b) = server
        .admin(Method::POST, "/api/v1/links", Some(link))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let before_update = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;

    let update = json!({"generation": 1, "spec": {"from": "east", "to": "west", "link_type": "private_line",
        "latency_ms": 35.0, "bandwidth_gbps": 100.0}});
    let (s, b) = server
        .admin(Method::PUT, "/api/v1/links/east-west", Some(update))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");

    let latency = |t: &serde_json::Value| t["links"][0]["metrics"]["latency_ms"].as_f64().unwrap();
    let (s, now) = server.admin(Method::GET, "/api/v1/topology", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(now["sites"].as_array().unwrap().len(), 2);
    assert_eq!(latency(&now), 35.0);
    let at = before_update.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let (s, past) = server
        .admin(Method::GET, &format!("/api/v1/topology?at={at}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{past}");
    assert_eq!(latency(&past), 10.0);

    // Observed samples join the history without bumping the link's generation.
    let (s, b) = server
        .admin(
            Method::POST,
            "/api/v1/links/east-west/metrics",
            Some(json!({"latency_ms": 12.5, "bandwidth_gbps": 90.0})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (_, now) = server.admin(Method::GET, "/api/v1/topology", None).await;
    assert_eq!(latency(&now), 12.5);
    let (_, link) = server
        .admin(Method::GET, "/api/v1/links/east-west", None)
        .await;
    assert_eq!(link["generation"], 2);
    let (_, history) = server
        .admin(Method::GET, "/api/v1/links/east-west/metrics", None)
        .await;
    assert_eq!(history.as_array().unwrap().len(), 3);

    // Before the sites existed there was nothing.
    let (_, empty) = server
        .admin(
            Method::GET,
            "/api/v1/topology?at=2020-01-01T00:00:00Z",
            None,
        )
        .await;
    assert!(empty["sites"].as_array().unwrap().is_empty());
    let (s, b) = server
        .admin(Method::GET, "/api/v1/topology?at=yesterday", None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["error"]["field"], "at");

    // The CLI shows it too.
    let out = server.cli(&["topology", "--at", &at]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("10"));
}
