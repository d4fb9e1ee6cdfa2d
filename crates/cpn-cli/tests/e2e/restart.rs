//! Durability: an acknowledged write survives `kill -9`.

use crate::harness::{Server, site};
use reqwest::{Method, StatusCode};

#[tokio::test]
async fn kill_9_right_after_201_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), false).await;

    // Many concurrent creates, so acknowledgements come from group commits; kill at once
    // after the last 201 arrives.
    let mut handles = Vec::new();
    for i in 0..40 {
        let base = server.base.clone();
        let token = server.token.clone();
        handles.push(tokio::spawn(async move {
            let r = reqwest::Client::new()
                .post(format!("{base}/api/v1/sites"))
                .bearer_auth(token)
                .json(&site(&format!("durable-{i}")))
                .send()
                .await
                .unwrap();
            r.status()
        }));
    }
    let mut acknowledged = 0;
    for h in handles {
        if h.await.unwrap() == StatusCode::CREATED {
            acknowledged += 1;
        }
    }
    assert_eq!(acknowledged, 40);
    let (s, _) = server
        .admin(Method::POST, "/api/v1/sites", Some(site("last-one")))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    server.kill9();

    let server = Server::start(dir.path(), false).await;
    let (s, b) = server
        .admin(Method::GET, "/api/v1/sites/last-one", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    for i in 0..40 {
        let (s, _) = server
            .admin(Method::GET, &format!("/api/v1/sites/durable-{i}"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "durable-{i} lost");
    }
    // The original operator token still works after the restart.
    let (s, _) = server.admin(Method::GET, "/api/v1/auth/whoami", None).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _server = Server::start(dir.path(), false).await;
    let out = std::process::Command::new(crate::harness::CPN)
        .args([
            "serve",
            "--no-demo",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another cpn process"), "{err}");
}
