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

/// A locked account stays locked across a restart of the server (issue #12): the right
/// password is refused until the lockout ends, then accepted.
#[tokio::test]
async fn a_locked_account_stays_locked_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), false).await;
    server.user("lab", "alice", "user").await;
    let login = |base: String, password: &'static str| async move {
        let r = reqwest::Client::new()
            .post(format!("{base}/api/v1/auth/login"))
            .json(&serde_json::json!({"username": "alice", "password": password}))
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.text().await.unwrap())
    };
    // Five failures lock it for 1 s; each failure after a lockout doubles it: 16 s, long
    // enough to outlast a restart.
    for _ in 0..5 {
        let (s, b) = login(server.base.clone(), "wrong").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    }
    for secs in [1, 2, 4, 8] {
        tokio::time::sleep(std::time::Duration::from_millis(secs * 1000 + 100)).await;
        let (s, b) = login(server.base.clone(), "wrong").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    }
    let locked_at = std::time::Instant::now();
    let (s, b) = login(server.base.clone(), "s3cret-password").await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{b}");
    server.kill9();

    let server = Server::start(dir.path(), false).await;
    let (s, b) = login(server.base.clone(), "s3cret-password").await;
    assert!(
        locked_at.elapsed() < std::time::Duration::from_secs(15),
        "the restart took too long to tell"
    );
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{b}");
    assert!(b.contains("even the right password is refused"), "{b}");
    // Once it has ended, the right password works.
    let until = locked_at + std::time::Duration::from_secs(30);
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let (s, b) = login(server.base.clone(), "s3cret-password").await;
        if s == StatusCode::OK {
            assert!(locked_at.elapsed() >= std::time::Duration::from_secs(15));
            break;
        }
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{b}");
        assert!(std::time::Instant::now() < until, "still locked: {b}");
    }
}
