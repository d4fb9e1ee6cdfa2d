//! A restarted agent reconciles its lease accounts with the leases the server says are
//! live on the node (`AgentRegistered::live_leases`, issue #14): an account of a lease the
//! server no longer lists is locked at registration, with no revocation in any poll (the
//! server may never ask again: its revocation was lost, or its records were restored from
//! before the lease); a listed one stays open; a server that does not say (`None`) has
//! nothing revoked.
//!
//! Needs root (the agent creates a real account; the test deletes it, also when it fails)
//! and ssh-keygen, useradd and setpriv; without them it is skipped, saying so, except under
//! `CI`, where it fails.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use cpn_agent::{AgentConfig, EmulatedInventory, spawn};
use cpn_api_types::agent::{
    AgentRegister, AgentRegistered, Assignments, Heartbeat, HeartbeatReply, LeaseAccessGrant,
    LeaseAccessReport,
};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "support/sshd.rs"]
mod sshd;
use sshd::keygen;

#[derive(Default)]
struct Server {
    /// What registration answers for `live_leases`.
    live: Option<Vec<String>>,
    /// The grant the polls carry until it is answered (`None`: polls carry nothing).
    grant: Option<LeaseAccessGrant>,
    registrations: u32,
    reports: Vec<LeaseAccessReport>,
}

type S = Arc<Mutex<Server>>;

async fn register(State(s): State<S>, Json(r): Json<AgentRegister>) -> Json<AgentRegistered> {
    let mut s = s.lock().unwrap();
    s.registrations += 1;
    Json(AgentRegistered {
        node_id: "n1".into(),
        site: r.site,
        name: r.name,
        heartbeat_interval_ms: 200,
        node_timeout_ms: 5000,
        credential: Some("secret".into()),
        tenant: Some("t1".into()),
        live_leases: s.live.clone(),
    })
}

async fn heartbeat(Json(_): Json<Heartbeat>) -> Json<HeartbeatReply> {
    Json(HeartbeatReply::default())
}

async fn assignments(State(s): State<S>) -> Json<Assignments> {
    tokio::time::sleep(Duration::from_millis(100)).await;
    let s = s.lock().unwrap();
    let mut a = Assignments::default();
    if let Some(g) = &s.grant
        && !s.reports.iter().any(|r| r.lease_id == g.lease_id)
    {
        a.lease_grants.push(g.clone());
    }
    Json(a)
}

async fn lease_access(State(s): State<S>, Json(r): Json<LeaseAccessReport>) -> StatusCode {
    s.lock().unwrap().reports.push(r);
    StatusCode::NO_CONTENT
}

fn ready() -> bool {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root".to_string());
    }
    for t in [
        "/usr/bin/ssh-keygen",
        "/usr/sbin/useradd",
        "/usr/bin/setpriv",
    ] {
        if !Path::new(t).is_file() {
            missing.push(t.to_string());
        }
    }
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but this machine lacks {}",
        missing.join(", ")
    );
    eprintln!("SKIPPED lease_reconcile: needs {}", missing.join(", "));
    false
}

/// Deletes the test's account whatever the outcome (only if it is a lease account).
struct Account(String);

impl Drop for Account {
    fn drop(&mut self) {
        if let Some(u) = nix::unistd::User::from_name(&self.0).ok().flatten()
            && u.gecos.to_string_lossy().starts_with("cpn lease ")
        {
            let _ = Command::new("/usr/sbin/userdel").arg(&self.0).output();
        }
    }
}

fn config(addr: std::net::SocketAddr, dir: &Path) -> AgentConfig {
    let mut config = AgentConfig::new(format!("http://{addr}"), "site-a", dir.join("state"));
    config.join_token = Some("cpnjoin_test".into());
    config.name = Some("node-a".into());
    config.isolation.work_root = Some(dir.join("work"));
    config.lease.home_root = dir.join("homes");
    config.lease.host_key = dir.join("host_key.pub");
    config.emulate = Some(EmulatedInventory {
        cpu_model: "test".into(),
        arch: "x86_64".into(),
        cpu_cores: 2,
        memory_mib: 4096,
        gpus: 2,
        gpu_model: "A100-80G".into(),
        gpu_memory_mib: 81920,
        disk_gib: 0.0,
    });
    config
}

/// Waits until the server saw `n` registrations, then a little more (the reconciliation
/// follows the registration's answer).
async fn registered(state: &S, n: u32) {
    let t0 = Instant::now();
    while state.lock().unwrap().registrations < n {
        assert!(t0.elapsed() < Duration::from_secs(20), "no registration");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
}

fn locked(username: &str) -> bool {
    let u = nix::unistd::User::from_name(username).unwrap().unwrap();
    u.shell.ends_with("nologin") || u.shell.ends_with("false")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_locks_the_accounts_of_leases_the_server_no_longer_lists() {
    if !ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // The accounts pass through it to their homes: not a 0700 temp dir.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    keygen(&dir.join("host_key"));
    let key = keygen(&dir.join("user_key"));
    let lease_id = format!("rc{}", std::process::id());
    let username = cpn_agent::lease_access::username_for(&lease_id);
    let _account = Account(username.clone());

    let state: S = Arc::default();
    state.lock().unwrap().grant = Some(LeaseAccessGrant {
        lease_id: lease_id.clone(),
        public_key: key.trim().to_string(),
        gpus: vec![1],
        ..Default::default()
    });
    let app = Router::new()
        .route("/api/v1/agents/register", post(register))
        .route("/api/v1/agents/{node}/heartbeat", post(heartbeat))
        .route("/api/v1/agents/{node}/assignments", get(assignments))
        .route("/api/v1/agents/{node}/lease-access", post(lease_access))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // The grant comes with a poll; the account is made with the agent's lease settings.
    let agent = spawn(config(addr, dir)).unwrap();
    let t0 = Instant::now();
    while state.lock().unwrap().reports.is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(20), "no lease report");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    agent.stop().await;
    let report = state.lock().unwrap().reports[0].clone();
    let access = report
        .access
        .clone()
        .unwrap_or_else(|| panic!("{report:?}"));
    assert_eq!(access.username, username);
    assert_eq!(access.gpus, [1]);
    // The settings reached the accounts: the home under the home root, the node's name
    // as the host (no ssh host set), the default port.
    assert!(dir.join("homes").join(&username).is_dir());
    assert_eq!((access.host.as_str(), access.port), ("node-a", 22));
    assert!(!locked(&username));

    // A server that does not say which leases are live: nothing is revoked.
    {
        let mut s = state.lock().unwrap();
        s.grant = None;
        s.live = None;
    }
    let agent = spawn(config(addr, dir)).unwrap();
    registered(&state, 2).await;
    agent.stop().await;
    assert!(!locked(&username), "revoked without the server's list");

    // The server lists the lease: it stays open.
    state.lock().unwrap().live = Some(vec![lease_id.clone()]);
    let agent = spawn(config(addr, dir)).unwrap();
    registered(&state, 3).await;
    agent.stop().await;
    assert!(!locked(&username), "a live lease's account was revoked");

    // The server no longer lists it, and no poll revokes it: locked at registration.
    state.lock().unwrap().live = Some(Vec::new());
    let agent = spawn(config(addr, dir)).unwrap();
    registered(&state, 4).await;
    let t0 = Instant::now();
    while !locked(&username) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the ended lease's account is still open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    agent.stop().await;
    assert_eq!(
        state.lock().unwrap().reports.len(),
        1,
        "no poll carried a revocation"
    );
}
