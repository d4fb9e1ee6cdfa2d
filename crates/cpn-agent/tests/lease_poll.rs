//! Class A lease access through the agent's poll (issue #14): a grant and a revocation
//! that arrive with the assignments are carried out on a blocking thread and each answered
//! with one report to `POST /api/v1/agents/{node}/lease-access`, whatever the host allows.
//!
//! The grant carries a key that is not an OpenSSH key and the revocation names a lease
//! this agent never had, so no account is created on the host: as root the grant fails on
//! the key and the revocation finds nothing; without root both say the node cannot manage
//! lease accounts. (Real accounts and SSH logins are `ssh_lease.rs`.)

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use cpn_agent::{AgentConfig, spawn};
use cpn_api_types::agent::{
    AgentRegister, AgentRegistered, Assignments, Heartbeat, HeartbeatReply, LeaseAccessGrant,
    LeaseAccessReport, LeaseAccessRevoke,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Server {
    polls: u32,
    reports: Vec<LeaseAccessReport>,
}

type S = Arc<Mutex<Server>>;

async fn register(Json(r): Json<AgentRegister>) -> Json<AgentRegistered> {
    Json(AgentRegistered {
        node_id: "n1".into(),
        site: r.site,
        name: r.name,
        heartbeat_interval_ms: 200,
        node_timeout_ms: 5000,
        credential: Some("secret".into()),
        tenant: Some("t1".into()),
        live_leases: None,
    })
}

async fn heartbeat(Json(_): Json<Heartbeat>) -> Json<HeartbeatReply> {
    Json(HeartbeatReply::default())
}

/// Asks until both are answered, as the server does.
async fn assignments(State(s): State<S>) -> Json<Assignments> {
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut s = s.lock().unwrap();
    s.polls += 1;
    let answered = |id: &str| s.reports.iter().any(|r| r.lease_id == id);
    let mut a = Assignments::default();
    if !answered("lgrant1") {
        a.lease_grants.push(LeaseAccessGrant {
            lease_id: "lgrant1".into(),
            public_key: "ssh-ed25519 not-a-key".into(),
            gpus: vec![0],
            ..Default::default()
        });
    }
    if !answered("lrevoke1") {
        a.lease_revokes.push(LeaseAccessRevoke {
            lease_id: "lrevoke1".into(),
        });
    }
    Json(a)
}

async fn lease_access(
    State(s): State<S>,
    Path(node): Path<String>,
    Json(r): Json<LeaseAccessReport>,
) -> StatusCode {
    assert_eq!(node, "n1");
    s.lock().unwrap().reports.push(r);
    StatusCode::NO_CONTENT
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_grants_and_revocations_are_answered_one_report_each() {
    let state: S = Arc::default();
    let app = Router::new()
        .route("/api/v1/agents/register", post(register))
        .route("/api/v1/agents/{node}/heartbeat", post(heartbeat))
        .route("/api/v1/agents/{node}/assignments", get(assignments))
        .route("/api/v1/agents/{node}/lease-access", post(lease_access))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let mut config = AgentConfig::new(format!("http://{addr}"), "site-a", dir.path().join("state"));
    config.join_token = Some("cpnjoin_test".into());
    config.name = Some("node-a".into());
    let agent = spawn(config).unwrap();
    let t0 = Instant::now();
    while state.lock().unwrap().reports.len() < 2 {
        assert!(t0.elapsed() < Duration::from_secs(20), "no lease reports");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Answered: the next polls carry nothing, and nothing is reported twice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    agent.stop().await;
    let s = state.lock().unwrap();
    assert_eq!(s.reports.len(), 2, "{:?}", s.reports);
    let grant = s.reports.iter().find(|r| r.lease_id == "lgrant1").unwrap();
    assert!(grant.access.is_none(), "{grant:?}");
    assert!(
        !grant.error.as_deref().unwrap_or_default().is_empty(),
        "{grant:?}"
    );
    let revoke = s.reports.iter().find(|r| r.lease_id == "lrevoke1").unwrap();
    match (&revoke.revoked, &revoke.error) {
        (Some(r), _) => assert!(r.username.is_none(), "never had an account: {r:?}"),
        (None, Some(e)) => assert!(e.contains("cannot manage lease accounts"), "{e}"),
        (None, None) => panic!("an empty report: {revoke:?}"),
    }
}
