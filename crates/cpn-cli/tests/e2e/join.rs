//! Issue #12: agents join with their own credentials over TLS with a pinned CA, a node
//! cannot act for another, revocation cuts it off, a certificate from another CA is refused
//! (idle connections are in the `liveness` test binary).

use crate::harness::{Agent, Server, free_port, site, wait_nodes};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn heartbeat(server: &Server, credential: &str, node: &str) -> StatusCode {
    let (s, _) = server
        .call(
            Method::POST,
            &format!("/api/v1/agents/{node}/heartbeat"),
            Some(credential),
            Some(json!({"metrics": {"at": chrono_now(), "cpu_util_pct": 0.0, "memory_used_mib": 0,
                "memory_util_pct": 0.0, "load1": 0.0, "load5": 0.0, "load15": 0.0}, "attempts": []})),
        )
        .await;
    s
}

fn chrono_now() -> String {
    // RFC 3339 without a chrono dependency in the test crate.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let days = secs / 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn register_body(site: &str, name: &str) -> Value {
    json!({"site": site, "name": name, "inventory": {"hostname": name, "cpu_cores": 2, "memory_mib": 2048}})
}

fn stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "cpn failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_joins_over_tls_runs_a_task_and_is_cut_off_when_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        false,
        &["--no-local-agent", "--tls", "on", "--heartbeat-ms", "300"],
    )
    .await;
    assert!(server.base.starts_with("https://"));
    for name in ["edge", "other"] {
        let (s, b) = server
            .admin(Method::POST, "/api/v1/sites", Some(site(name)))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    // The operator's token opens no agent endpoint.
    let (s, b) = server
        .admin(
            Method::POST,
            "/api/v1/agents/register",
            Some(register_body("edge", "w0")),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");

    // A join token for two nodes, made with the CLI (it prints the token alone on stdout).
    let token = stdout(&server.cli(&["site", "join-token", "create", "edge", "--uses", "2"]));
    assert!(token.starts_with("cpnjoin_"), "{token}");
    let listed = stdout(&server.cli(&["site", "join-token", "list", "-o", "json"]));
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed[0]["state"], "active", "{listed}");
    assert_eq!(listed[0]["max_uses"], 2);
    assert!(
        !listed
            .to_string()
            .contains(token.trim_start_matches("cpnjoin_")),
        "a listing never shows the token"
    );

    // The agent needs nothing but the token: URL, site and CA fingerprint are in it.
    let state = dir.path().join("agent-w1");
    let mut agent = Agent::start_args(
        &[
            "--join",
            &token,
            "--name",
            "w1",
            "--state-dir",
            state.to_str().unwrap(),
        ],
        &dir.path().join("agent-w1.log"),
    );
    let nodes = wait_nodes(&server, 1).await;
    let node1 = nodes[0]["id"].as_str().unwrap().to_string();
    // The node is listed as soon as the server stored it, which is before the agent got the
    // answer and saved its credential.
    let credential_file = state.join("node-credential.json");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !credential_file.exists() {
        assert!(
            Instant::now() < deadline,
            "the agent never saved its credential"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(&credential_file).unwrap()).unwrap();
    let cred1 = saved["credential"].as_str().unwrap().to_string();
    assert_eq!(saved["node_id"], node1.as_str());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(state.join("node-credential.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the credential is private");
    assert_eq!(
        std::fs::read_to_string(state.join("ca.pem")).unwrap(),
        std::fs::read_to_string(dir.path().join("tls/ca.pem")).unwrap(),
        "the agent keeps the pinned CA"
    );

    // End to end over TLS: a task runs on the joined node and its output comes back.
    let (s, b) = server
        .admin(
            Method::POST,
            "/api/v1/tasks",
            Some(
                json!({"name": "over-tls", "command": ["sh", "-c", "echo hello over tls"],
                "resources": {"cpu_cores": 0.1, "memory_gib": 0.01}}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let id = b["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, t) = server
            .admin(Method::GET, &format!("/api/v1/tasks/{id}"), None)
            .await;
        if t["state"] == "succeeded" {
            break;
        }
        assert!(
            Instant::now() < deadline && t["state"] != "failed",
            "the task did not succeed: {t}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, logs) = server
        .admin(Method::GET, &format!("/api/v1/tasks/{id}/logs"), None)
        .await;
    assert!(logs.to_string().contains("hello over tls"), "{logs}");

    // A second node joins with the same token; a third is refused (two uses).
    let (s, b) = server
        .call(
            Method::POST,
            "/api/v1/agents/register",
            Some(&token),
            Some(register_body("edge", "w2")),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let node2 = b["node_id"].as_str().unwrap().to_string();
    let cred2 = b["credential"].as_str().unwrap().to_string();
    let (s, b) = server
        .call(
            Method::POST,
            "/api/v1/agents/register",
            Some(&token),
            Some(register_body("edge", "w3")),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("used up"),
        "{b}"
    );
    // A token of site edge does not join site other.
    let (s, _) = server
        .call(
            Method::POST,
            "/api/v1/agents/register",
            Some(&server.join_token("edge").await),
            Some(register_body("other", "w4")),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // A node acts only for itself.
    assert_eq!(heartbeat(&server, &cred2, &node2).await, StatusCode::OK);
    assert_eq!(
        heartbeat(&server, &cred2, &node1).await,
        StatusCode::FORBIDDEN
    );
    let (s, _) = server
        .call(
            Method::GET,
            &format!("/api/v1/agents/{node1}/assignments?wait_ms=0"),
            Some(&cred2),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = server
        .call(
            Method::POST,
            "/api/v1/agents/register",
            Some(&cred2),
            Some(register_body("edge", "w1")),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "a credential cannot re-register another node"
    );
    // Nor write the output of a task that ran on another node, even through its own path.
    let resp = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(dir.path().join("tls/ca.pem")).unwrap())
                .unwrap(),
        )
        .build()
        .unwrap()
        .post(format!(
            "{}/api/v1/agents/{node2}/attempts/{id}.1/logs?stream=stdout&offset=0",
            server.base
        ))
        .bearer_auth(&cred2)
        .header("content-type", "application/octet-stream")
        .body("forged")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // A node credential is no user token.
    let (s, _) = server
        .call(Method::GET, "/api/v1/sites", Some(&cred1), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Revoking the node cuts it off at once, and its agent stops.
    let out = stdout(&server.cli(&["node", "revoke", "edge/w1"]));
    assert!(out.contains("1 credential"), "{out}");
    assert_eq!(
        heartbeat(&server, &cred1, &node1).await,
        StatusCode::UNAUTHORIZED
    );
    let status = agent
        .exited_within(Duration::from_secs(20))
        .await
        .expect("the revoked agent stops");
    assert!(!status.success());
    let log = std::fs::read_to_string(dir.path().join("agent-w1.log")).unwrap();
    assert!(log.contains("revoked"), "{log}");
    // The other node is untouched.
    assert_eq!(heartbeat(&server, &cred2, &node2).await, StatusCode::OK);

    // A revoked join token lets nobody in.
    let fresh = server.join_token("edge").await;
    let listed =
        stdout(&server.cli(&["site", "join-token", "list", "--site", "edge", "-o", "json"]));
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let newest = listed[0]["id"].as_str().unwrap().to_string();
    stdout(&server.cli(&["site", "join-token", "revoke", &newest]));
    let (s, b) = server
        .call(
            Method::POST,
            "/api/v1/agents/register",
            Some(&fresh),
            Some(register_body("edge", "w5")),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("revoked"),
        "{b}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused() {
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let flags = [
        "--no-local-agent",
        "--tls",
        "on",
        "--listen",
        &listen,
        "--heartbeat-ms",
        "300",
    ];
    let mut a = Server::start_with(dir_a.path(), false, &flags).await;
    let (s, b) = a
        .admin(Method::POST, "/api/v1/sites", Some(site("edge")))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let token = a.join_token("edge").await;
    let b_server =
        Server::start_with(dir_b.path(), false, &["--no-local-agent", "--tls", "on"]).await;

    // Joining through a server that is not the token's: its CA is not the pinned one.
    let state = dir_a.path().join("agent-mitm");
    let mut refused = Agent::start_args(
        &[
            "--join",
            &token,
            "--server",
            &b_server.base,
            "--name",
            "w1",
            "--state-dir",
            state.to_str().unwrap(),
        ],
        &dir_a.path().join("mitm.log"),
    );
    let status = refused
        .exited_within(Duration::from_secs(30))
        .await
        .expect("the agent refuses the other server");
    assert!(!status.success());
    let log = std::fs::read_to_string(dir_a.path().join("mitm.log")).unwrap();
    assert!(log.contains("fingerprint"), "{log}");
    assert!(!state.join("node-credential.json").exists());

    // An agent joined to A keeps only A's CA: when another server with another CA takes
    // A's address, the agent talks to it no more (its credential is never sent).
    let state = dir_a.path().join("agent-w1");
    let _agent = Agent::start_args(
        &[
            "--join",
            &token,
            "--name",
            "w1",
            "--state-dir",
            state.to_str().unwrap(),
        ],
        &dir_a.path().join("w1.log"),
    );
    wait_nodes(&a, 1).await;
    a.kill9();
    drop(b_server);
    let dir_c = tempfile::tempdir().unwrap();
    let c = Server::start_with(dir_c.path(), false, &flags).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (s, nodes) = c.admin(Method::GET, "/api/v1/nodes", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(nodes, json!([]), "the agent never reached the impostor");
    let log = std::fs::read_to_string(dir_a.path().join("w1.log")).unwrap();
    assert!(
        log.contains("certificate") || log.contains("Certificate") || log.contains("signature"),
        "{log}"
    );
    // The CLI refuses it the same way with A's CA.
    let out = std::process::Command::new(crate::harness::CPN)
        .args([
            "site",
            "list",
            "--server",
            &c.base,
            "--token",
            "x",
            "--ca-file",
        ])
        .arg(dir_a.path().join("tls/ca.pem"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("certificate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_refused_off_loopback() {
    // The server: binding a non-loopback address without TLS needs --insecure-http.
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::harness::CPN)
        .args([
            "serve",
            "--tls",
            "off",
            "--listen",
            "0.0.0.0:0",
            "--no-demo",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--insecure-http"));
    // The agent: plain HTTP to a host that is not this machine needs --insecure-http.
    let out = std::process::Command::new(crate::harness::CPN)
        .args([
            "agent",
            "--server",
            "http://192.0.2.1:8080",
            "--site",
            "edge",
            "--state-dir",
        ])
        .arg(dir.path().join("agent"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--insecure-http"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
