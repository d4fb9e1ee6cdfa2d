//! Identity: tokens, tenant isolation, ownership.

use crate::harness::{Server, site};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn tenants_are_isolated_and_tokens_are_required() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), false).await;

    // No token, or a bad one: 401 everywhere but health, login and the API document.
    let (s, b) = server.call(Method::GET, "/api/v1/sites", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(b["error"]["code"], "unauthenticated");
    let (s, _) = server
        .call(Method::GET, "/api/v1/sites", Some("cpn_not-a-token"), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = server.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(s, StatusCode::OK);

    let alice = server.user("tenant-a", "alice", "user").await;
    let bob = server.user("tenant-b", "bob", "supplier").await;

    // Bob (supplier, tenant B) registers a private site and a public one.
    let mut private = site("b-private");
    private["visibility"] = json!("tenant");
    let (s, b) = server
        .call(Method::POST, "/api/v1/sites", Some(&bob), Some(private))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let private_id = b["id"].as_str().unwrap().to_string();
    assert_eq!(b["tenant"], "tenant-b");
    let (s, _) = server
        .call(
            Method::POST,
            "/api/v1/sites",
            Some(&bob),
            Some(site("b-public")),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);

    // Alice (tenant A) cannot see B's private site: 404 by id and by name, absent from lists.
    for path in [
        format!("/api/v1/sites/{private_id}"),
        "/api/v1/sites/b-private".to_string(),
    ] {
        let (s, b) = server.call(Method::GET, &path, Some(&alice), None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {b}");
        assert!(!b.to_string().contains("Ningxia"), "a 404 leaked data: {b}");
    }
    let (s, b) = server
        .call(Method::GET, "/api/v1/sites", Some(&alice), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<&str> = b["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["b-public"]);

    // Users create nothing in the registry; suppliers change only what they own.
    let (s, _) = server
        .call(
            Method::POST,
            "/api/v1/sites",
            Some(&alice),
            Some(site("a-site")),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, b) = server
        .admin(Method::POST, "/api/v1/sites", Some(site("operator-site")))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let update = json!({"generation": 1, "spec": {"region": "x", "supplier": "bob", "location": {"lat": 1.0, "lon": 1.0}}});
    let (s, _) = server
        .call(
            Method::PUT,
            "/api/v1/sites/operator-site",
            Some(&bob),
            Some(update.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, b) = server
        .call(
            Method::PUT,
            "/api/v1/sites/b-public",
            Some(&bob),
            Some(update),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // The operator sees everything.
    let (s, _) = server
        .admin(Method::GET, &format!("/api/v1/sites/{private_id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK);

    // Wrong password and logout.
    let (s, _) = server
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "alice", "password": "wrong-password"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, b) = server
        .call(Method::GET, "/api/v1/auth/whoami", Some(&alice), None)
        .await;
    assert_eq!(
        (s, b["tenant"].as_str()),
        (StatusCode::OK, Some("tenant-a"))
    );
    let (s, _) = server
        .call(Method::POST, "/api/v1/auth/logout", Some(&alice), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = server
        .call(Method::GET, "/api/v1/auth/whoami", Some(&alice), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[cfg(unix)]
#[test]
fn admin_token_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(Server::start(dir.path(), false));
    let mode = std::fs::metadata(dir.path().join("admin.token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    drop(server);
}
