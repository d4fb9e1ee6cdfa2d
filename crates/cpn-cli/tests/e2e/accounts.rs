//! Accounts an operator controls (issue #12): login flood, lockout, disabling users, API
//! keys and scopes, /metrics, TOTP, passwords, idle expiry, admin token rotation, and the
//! audit log of all of it.

use crate::harness::{Server, audit, site};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

const ALICE_PASSWORD: &str = "s3cret-password";

async fn login(server: &Server, username: &str, password: &str) -> (StatusCode, Value) {
    server
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": username, "password": password})),
        )
        .await
}

#[tokio::test]
async fn a_disabled_users_sessions_stop_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), false).await;
    let alice = server.user("lab", "alice", "user").await;
    let (s, _) = server
        .call(Method::GET, "/api/v1/auth/whoami", Some(&alice), None)
        .await;
    assert_eq!(s, StatusCode::OK);

    // Through the CLI, as an operator would.
    let out = server.cli(&["user", "disable", "alice"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, b) = server
        .call(Method::GET, "/api/v1/auth/whoami", Some(&alice), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    let (s, b) = server
        .call(Method::GET, "/api/v1/sites", Some(&alice), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    let (s, b) = login(&server, "alice", ALICE_PASSWORD).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        b["error"]["message"].as_str().unwrap().contains("disabled"),
        "{b}"
    );
    let (s, b) = server.admin(Method::GET, "/api/v1/users", None).await;
    assert_eq!(s, StatusCode::OK);
    let listed = b
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "alice")
        .unwrap()
        .clone();
    assert_eq!(listed["disabled"], true);

    // Enabled again: the old token stays revoked, a new login works.
    let out = server.cli(&["user", "enable", "alice"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, _) = server
        .call(Method::GET, "/api/v1/auth/whoami", Some(&alice), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = login(&server, "alice", ALICE_PASSWORD).await;
    assert_eq!(s, StatusCode::OK);

    let lines = audit(&server, "kind=users&object=alice").await;
    let actions: Vec<&str> = lines
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"users.disable") && actions.contains(&"users.enable"),
        "{actions:?}"
    );
    let disable = lines
        .iter()
        .find(|l| l["action"] == "users.disable")
        .unwrap();
    assert_eq!(
        (disable["actor"].as_str(), disable["result"].as_str()),
        (Some("admin"), Some("success"))
    );
}

#[tokio::test]
async fn api_keys_scopes_metrics_passwords_and_the_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), false).await;
    let alice = server.user("lab", "alice", "supplier").await;

    // Weak passwords are refused, naming the field.
    for weak in ["11111111", "password1234", "alice-2024"] {
        let (s, b) = server
            .admin(
                Method::POST,
                "/api/v1/users",
                Some(
                    json!({"username": "weak", "password": weak, "tenant": "lab", "role": "user"}),
                ),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{weak}: {b}");
        assert_eq!(b["error"]["field"], "password");
    }

    // /metrics: operators and metrics:read keys only.
    let (s, _) = server.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = server
        .call(Method::GET, "/metrics", Some(&alice), None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = server.admin(Method::GET, "/metrics", None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = server
        .admin(
            Method::POST,
            "/api/v1/api-keys",
            Some(json!({"name": "prometheus", "scopes": ["metrics:read"]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let scrape = b["token"].as_str().unwrap().to_string();
    let (s, _) = server
        .call(Method::GET, "/metrics", Some(&scrape), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = server
        .call(Method::GET, "/api/v1/sites", Some(&scrape), None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = server
        .call(
            Method::POST,
            "/api/v1/api-keys",
            Some(&alice),
            Some(json!({"name": "sneaky", "scopes": ["metrics:read"]})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // A read key reads and cannot write or mint keys; a write key writes; revoked is gone.
    let key = |scopes: Value| {
        server.call(
            Method::POST,
            "/api/v1/api-keys",
            Some(&alice),
            Some(json!({"name": "ci", "scopes": scopes})),
        )
    };
    let (s, b) = key(json!(["read"])).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (read, read_id) = (
        b["token"].as_str().unwrap().to_string(),
        b["key"]["id"].as_str().unwrap().to_string(),
    );
    let (s, _) = server
        .call(Method::GET, "/api/v1/sites", Some(&read), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = server
        .call(
            Method::POST,
            "/api/v1/sites",
            Some(&read),
            Some(site("by-read-key")),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, _) = server
        .call(
            Method::POST,
            "/api/v1/api-keys",
            Some(&read),
            Some(json!({"name": "more", "scopes": ["write"]})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, b) = key(json!(["write"])).await;
    assert_eq!(s, StatusCode::CREATED);
    let write = b["token"].as_str().unwrap().to_string();
    let (s, b) = server
        .call(
            Method::POST,
            "/api/v1/sites",
            Some(&write),
            Some(site("by-write-key")),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = server
        .call(Method::GET, "/api/v1/api-keys", Some(&alice), None)
        .await;
    assert_eq!((s, b.as_array().unwrap().len()), (StatusCode::OK, 2));
    let (s, _) = server
        .call(
            Method::DELETE,
            &format!("/api/v1/api-keys/{read_id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = server
        .call(Method::GET, "/api/v1/sites", Some(&read), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Own password change: the old one proves it; the new one must pass the policy.
    let (s, b) = server
        .call(
            Method::POST,
            "/api/v1/auth/password",
            Some(&alice),
            Some(json!({"old_password": "not-it-at-all", "new_password": "violet-harbor-stone-9"})),
        )
        .await;
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("old_password"))
    );
    let (s, b) = server
        .call(
            Method::POST,
            "/api/v1/auth/password",
            Some(&alice),
            Some(json!({"old_password": ALICE_PASSWORD, "new_password": "1111111111"})),
        )
        .await;
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("new_password"))
    );
    let (s, b) = server
        .call(
            Method::POST,
            "/api/v1/auth/password",
            Some(&alice),
            Some(json!({"old_password": ALICE_PASSWORD, "new_password": "violet-harbor-stone-9"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        login(&server, "alice", ALICE_PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&server, "alice", "violet-harbor-stone-9").await.0,
        StatusCode::OK
    );

    // Operator reset: every token of alice ends, including the write key.
    let (s, b) = server
        .admin(
            Method::POST,
            "/api/v1/users/alice/reset-password",
            Some(json!({"new_password": "copper-lantern-moss-4"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    for token in [&alice, &write] {
        let (s, _) = server
            .call(Method::GET, "/api/v1/auth/whoami", Some(token), None)
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        login(&server, "alice", "copper-lantern-moss-4").await.0,
        StatusCode::OK
    );

    // Rotating the operator token: a new file (0600), the old token dead.
    let old = server.token.clone();
    let out = server.cli(&["admin", "rotate-token"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new = std::fs::read_to_string(dir.path().join("admin.token"))
        .unwrap()
        .trim()
        .to_string();
    assert_ne!(new, old);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("admin.token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (s, _) = server
        .call(Method::GET, "/api/v1/auth/whoami", Some(&old), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, b) = server
        .call(
            Method::GET,
            "/api/v1/audit?action=auth.&limit=1000",
            Some(&new),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let actions: Vec<&str> = b["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    for a in ["auth.rotate-admin-token", "auth.password", "auth.login"] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    // A new key's line names the key, never its token.
    let (s, b) = server
        .call(
            Method::GET,
            "/api/v1/audit?action=api-keys.create",
            Some(&new),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let lines = b["items"].as_array().unwrap();
    assert!(!lines.is_empty());
    for l in lines {
        if l["result"] == "success" {
            assert!(l["object_id"].as_str().unwrap().starts_with("ses-"), "{l}");
        }
        assert!(
            !l.to_string().contains("cpn_"),
            "a token leaked into the audit log: {l}"
        );
    }
}

#[tokio::test]
async fn totp_mfa_guards_login() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), false).await;
    let alice = server.user("lab", "alice", "user").await;

    let (s, e) = server
        .call(Method::POST, "/api/v1/auth/mfa/enroll", Some(&alice), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    let uri = e["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/cpn:alice?secret="), "{uri}");
    let secret = base32_decode(e["secret"].as_str().unwrap());
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    // Not on until confirmed with a right code.
    assert_eq!(
        login(&server, "alice", ALICE_PASSWORD).await.0,
        StatusCode::OK
    );
    let (s, b) = server
        .call(
            Method::POST,
            "/api/v1/auth/mfa/confirm",
            Some(&alice),
            Some(json!({"code": "000000"})),
        )
        .await;
    let wrong_code_refused = s == StatusCode::UNPROCESSABLE_ENTITY;
    assert!(
        wrong_code_refused || cpn_server::totp::code_at(&secret, now()) == "000000",
        "{b}"
    );
    let code = cpn_server::totp::code_at(&secret, now());
    let (s, b) = server
        .call(
            Method::POST,
            "/api/v1/auth/mfa/confirm",
            Some(&alice),
            Some(json!({"code": code})),
        )
        .await;
    assert_eq!(
        (s, b["mfa_enabled"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{b}"
    );

    let (s, b) = login(&server, "alice", ALICE_PASSWORD).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("mfa_required"))
    );
    let code = cpn_server::totp::code_at(&secret, now());
    let with_code = |code: &str| {
        server.call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "alice", "password": ALICE_PASSWORD, "totp": code})),
        )
    };
    let (s, b) = with_code(&code).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // A code works once (RFC 6238 §5.2).
    let (s, b) = with_code(&code).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("mfa_required")),
        "{b}"
    );
    // The CLI passes --totp; the next step's code is accepted (one step of drift).
    let next = cpn_server::totp::code_at(&secret, now() + cpn_server::totp::STEP_SECONDS);
    let out = std::process::Command::new(crate::harness::CPN)
        .args(["login", "--username", "alice", "--totp", &next])
        .env("CPN_SERVER", &server.base)
        .env("CPN_PASSWORD", ALICE_PASSWORD)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn idle_sessions_expire_and_used_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        false,
        &["--no-local-agent", "--session-idle", "3s"],
    )
    .await;
    let alice = server.user("lab", "alice", "user").await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let (s, _) = server
            .call(Method::GET, "/api/v1/auth/whoami", Some(&alice), None)
            .await;
        assert_eq!(s, StatusCode::OK, "a session in use stays alive");
    }
    tokio::time::sleep(Duration::from_millis(4000)).await;
    let (s, b) = server
        .call(Method::GET, "/api/v1/auth/whoami", Some(&alice), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    // The operator token is not a login session: no idle expiry.
    let (s, _) = server.admin(Method::GET, "/api/v1/auth/whoami", None).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn changes_are_audited_with_generations_and_outlive_their_objects() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), false).await;
    let alice = server.user("lab", "alice", "user").await;
    let (s, b) = server
        .admin(Method::POST, "/api/v1/sites", Some(site("audited")))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let id = b["id"].as_str().unwrap().to_string();
    let update = json!({"generation": 1, "spec": {"region": "x", "supplier": "y", "location": {"lat": 1.0, "lon": 1.0}}});
    let (s, _) = server
        .admin(Method::PUT, "/api/v1/sites/audited", Some(update.clone()))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = server
        .admin(Method::PUT, "/api/v1/sites/audited", Some(update))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = server
        .call(Method::DELETE, "/api/v1/sites/audited", Some(&alice), None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = server
        .admin(Method::DELETE, "/api/v1/sites/audited", None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    let lines = audit(&server, "kind=sites").await;
    let summary: Vec<(String, String, String, Value, Value, String)> = lines
        .iter()
        .rev()
        .map(|l| {
            (
                l["action"].as_str().unwrap().to_string(),
                l["actor"].as_str().unwrap().to_string(),
                l["object_id"].as_str().unwrap().to_string(),
                l["generation_before"].clone(),
                l["generation_after"].clone(),
                l["result"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let s = |a: &str, who: &str, obj: &str, b: Value, g: Value, r: &str| {
        (
            a.to_string(),
            who.to_string(),
            obj.to_string(),
            b,
            g,
            r.to_string(),
        )
    };
    assert_eq!(
        summary,
        vec![
            s(
                "sites.create",
                "admin",
                &id,
                Value::Null,
                json!(1),
                "success"
            ),
            s(
                "sites.update",
                "admin",
                "audited",
                json!(1),
                json!(2),
                "success"
            ),
            s(
                "sites.update",
                "admin",
                "audited",
                Value::Null,
                Value::Null,
                "rejected"
            ),
            s(
                "sites.delete",
                "alice",
                "audited",
                Value::Null,
                Value::Null,
                "denied"
            ),
            s(
                "sites.delete",
                "admin",
                "audited",
                Value::Null,
                Value::Null,
                "success"
            ),
        ]
    );
    let conflict = &lines[2];
    assert!(
        conflict["detail"].as_str().unwrap().contains("generation"),
        "{conflict}"
    );

    // Readers of the log: operators only; the CLI filters by action prefix.
    let (s, _) = server
        .call(Method::GET, "/api/v1/audit", Some(&alice), None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let out = server.cli(&["audit", "--action", "sites.", "--actor", "alice"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("sites.delete") && text.contains("denied 403"),
        "{text}"
    );
    assert!(!text.contains("sites.create"), "{text}");
}

fn base32_decode(s: &str) -> Vec<u8> {
    let (mut buffer, mut bits, mut out) = (0u32, 0u32, Vec::new());
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => panic!("not base32: {s}"),
        };
        buffer = (buffer << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            out.push((buffer >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    out
}

#[tokio::test]
async fn operators_can_be_required_to_use_mfa() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        false,
        &["--no-local-agent", "--require-mfa-for-operators"],
    )
    .await;
    let (s, b) = server
        .admin(
            Method::POST,
            "/api/v1/users",
            Some(json!({"username": "ops", "password": "quartz-meadow-falcon-3", "tenant": "system", "role": "operator"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = login(&server, "ops", "quartz-meadow-falcon-3").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("MFA"),
        "{b}"
    );
    // Plain users are not concerned.
    server.user("lab", "alice", "user").await;

    // The operator token enrols ops; ops then logs in with a code.
    let (s, e) = server
        .admin(Method::POST, "/api/v1/auth/mfa/enroll?user=ops", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    let secret = base32_decode(e["secret"].as_str().unwrap());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let code = cpn_server::totp::code_at(&secret, now);
    let (s, b) = server
        .admin(
            Method::POST,
            "/api/v1/auth/mfa/confirm?user=ops",
            Some(json!({"code": code})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = server
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "ops", "password": "quartz-meadow-falcon-3", "totp": code})),
        )
        .await;
    assert_eq!(
        (s, b["user"]["mfa_enabled"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{b}"
    );
}
