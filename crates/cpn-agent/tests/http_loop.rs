//! The agent against a tiny in-memory server speaking the agent protocol: registration,
//! Running / output / Exited in that order, and no second run of a re-sent assignment; an
//! emulated node's attempt with a GPU opens only that GPU's device node.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use cpn_agent::{AgentConfig, EmulatedInventory, spawn};
use cpn_api_types::agent::{
    AgentRegister, AgentRegistered, Assignment, Assignments, AttemptReply, AttemptReport,
    AttemptState, AttemptVerdict, Enforcement, Heartbeat, HeartbeatReply, NodeIsolation,
};
use cpn_api_types::schedule::TaskResources;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "support/gpu_nodes.rs"]
mod gpu_nodes;

#[derive(Default)]
struct Server {
    registrations: u32,
    assignment: Option<Assignment>,
    /// Each report with the stdout the server had when it came.
    reports: Vec<(AttemptReport, Vec<u8>)>,
    logs: HashMap<String, Vec<u8>>,
    heartbeats: u32,
    bad_auth: u32,
    /// What the agent reported at its last registration.
    isolation: Option<NodeIsolation>,
}

type S = Arc<Mutex<Server>>;

fn check(s: &S, h: &HeaderMap) {
    if h.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer secret") {
        s.lock().unwrap().bad_auth += 1;
    }
}

async fn register(
    State(s): State<S>,
    h: HeaderMap,
    Json(r): Json<AgentRegister>,
) -> Json<AgentRegistered> {
    if h.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer cpnjoin_test") {
        check(&s, &h);
    }
    assert!(r.inventory.cpu_cores > 0);
    assert!(
        r.inventory.isolation.is_some(),
        "the agent reports its isolation"
    );
    let mut st = s.lock().unwrap();
    st.registrations += 1;
    st.isolation = r.inventory.isolation.clone();
    drop(st);
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

async fn heartbeat(
    State(s): State<S>,
    h: HeaderMap,
    Path(node): Path<String>,
    Json(hb): Json<Heartbeat>,
) -> Json<HeartbeatReply> {
    check(&s, &h);
    assert_eq!(node, "n1");
    let mut s = s.lock().unwrap();
    s.heartbeats += 1;
    let acknowledged = hb
        .attempts
        .iter()
        .filter(|a| a.state != AttemptState::Running)
        .filter(|a| {
            s.reports
                .iter()
                .any(|(r, _)| r.attempt_id == a.attempt_id && r.state == a.state)
        })
        .map(|a| a.attempt_id.clone())
        .collect();
    Json(HeartbeatReply {
        stop: vec![],
        acknowledged,
    })
}

async fn assignments(
    State(s): State<S>,
    h: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Json<Assignments> {
    check(&s, &h);
    assert!(q.contains_key("wait_ms"));
    // Re-sends the same assignment on every poll.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let a = s.lock().unwrap().assignment.clone();
    Json(Assignments {
        assignments: a.into_iter().collect(),
        stop: vec![],
        ..Default::default()
    })
}

async fn report(
    State(s): State<S>,
    h: HeaderMap,
    Path((_, id)): Path<(String, String)>,
    Json(r): Json<AttemptReport>,
) -> Json<AttemptReply> {
    check(&s, &h);
    assert_eq!(r.attempt_id, id);
    let mut s = s.lock().unwrap();
    let out = s
        .logs
        .get(&format!("{id}/stdout"))
        .cloned()
        .unwrap_or_default();
    s.reports.push((r, out));
    Json(AttemptReply {
        verdict: AttemptVerdict::Accepted,
    })
}

async fn logs(
    State(s): State<S>,
    h: HeaderMap,
    Path((_, id)): Path<(String, String)>,
    Query(q): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, StatusCode> {
    check(&s, &h);
    let offset: usize = q["offset"].parse().map_err(|_| StatusCode::BAD_REQUEST)?;
    let mut s = s.lock().unwrap();
    let have = s.logs.entry(format!("{id}/{}", q["stream"])).or_default();
    if offset <= have.len() && offset + body.len() > have.len() {
        let skip = have.len() - offset;
        have.extend_from_slice(&body[skip..]);
    }
    Ok(Json(serde_json::json!({ "length": have.len() })))
}

/// The in-memory server on a loopback port.
async fn serve(state: S) -> std::net::SocketAddr {
    let app = Router::new()
        .route("/api/v1/agents/register", post(register))
        .route("/api/v1/agents/{node}/heartbeat", post(heartbeat))
        .route("/api/v1/agents/{node}/assignments", get(assignments))
        .route("/api/v1/agents/{node}/attempts/{id}", post(report))
        .route("/api/v1/agents/{node}/attempts/{id}/logs", post(logs))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A directory open to all: the task may run as another uid (the agent is root).
fn open_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let open_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(open_dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    open_dir
}

/// An agent of the server at `addr`, its state in `dir`, its work root in `open_dir`.
fn agent_config(
    addr: std::net::SocketAddr,
    dir: &std::path::Path,
    open_dir: &std::path::Path,
) -> AgentConfig {
    let mut config = AgentConfig::new(format!("http://{addr}"), "site-a", dir.join("state"));
    config.join_token = Some("cpnjoin_test".into());
    config.name = Some("node-a".into());
    config.log_poll = Duration::from_millis(50);
    config.isolation.work_root = Some(open_dir.join("work"));
    config
}

async fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_an_assignment_once_and_reports_it() {
    let state: S = Arc::default();
    let addr = serve(state.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let open_dir = open_dir();
    let count = open_dir.path().join("count");
    state.lock().unwrap().assignment = Some(Assignment {
        attempt_id: "att-1".into(),
        task_id: "task-1".into(),
        attempt: 1,
        name: "hello".into(),
        tenant: "t1".into(),
        command: vec![
            "sh".into(),
            "-c".into(),
            format!("echo hello; echo run >> '{}'; exit 0", count.display()),
        ],
        script: None,
        env: BTreeMap::new(),
        workdir: None,
        resources: TaskResources::default(),
        gpus: vec![],
        max_output_bytes: None,
    });
    let config = agent_config(addr, dir.path(), open_dir.path());
    let agent = spawn(config.clone()).unwrap();

    let finals = |s: &S| {
        s.lock()
            .unwrap()
            .reports
            .iter()
            .filter(|(r, _)| r.state != AttemptState::Running)
            .count()
    };
    wait_for("the final report", Duration::from_secs(20), || {
        finals(&state) > 0
    })
    .await;
    assert_eq!(agent.node_id().as_deref(), Some("n1"));
    {
        let s = state.lock().unwrap();
        let (first, _) = &s.reports[0];
        assert_eq!(first.state, AttemptState::Running);
        assert!(first.pid.is_some() && first.started_at.is_some());
        let (last, out_then) = s.reports.last().unwrap();
        assert_eq!(
            (last.state, last.exit_code),
            (AttemptState::Exited, Some(0))
        );
        assert_eq!(
            out_then, b"hello\n",
            "output shipped before the final report"
        );
        assert!(last.usage.is_some());
    }
    // The heartbeat acknowledges it; the agent forgets it (its directory goes).
    let attempt_dir = dir.path().join("state/attempts/att-1");
    wait_for(
        "the attempt to be forgotten",
        Duration::from_secs(10),
        || !attempt_dir.exists(),
    )
    .await;

    // The server keeps re-sending the assignment; a restarted agent does not run it either.
    tokio::time::sleep(Duration::from_millis(500)).await;
    agent.stop().await;
    // Counted before the restart: the new agent may register before this line runs.
    let before = state.lock().unwrap().registrations;
    let agent = spawn(config).unwrap();
    wait_for("re-registration", Duration::from_secs(10), || {
        state.lock().unwrap().registrations > before
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    agent.stop().await;

    assert_eq!(
        std::fs::read_to_string(&count).unwrap(),
        "run\n",
        "ran exactly once"
    );
    assert_eq!(finals(&state), 1);
    let s = state.lock().unwrap();
    assert_eq!(
        s.reports
            .iter()
            .filter(|(r, _)| r.state == AttemptState::Running)
            .count(),
        1
    );
    assert_eq!(
        s.reports
            .iter()
            .filter(|(r, _)| r.state == AttemptState::Exited)
            .count(),
        1
    );
    assert!(s.heartbeats > 0);
    assert_eq!(s.bad_auth, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emulated_nodes_attempt_with_a_gpu_opens_only_that_gpus_device() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "SKIPPED: GPU device isolation of attempts needs a root agent (uid switch, cgroups)"
        );
        return;
    }
    let state: S = Arc::default();
    let addr = serve(state.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let open_dir = open_dir();
    let [gpu0, gpu1] = gpu_nodes::make(&open_dir.path().join("dev"));
    state.lock().unwrap().assignment = Some(Assignment {
        attempt_id: "att-gpu".into(),
        task_id: "task-gpu".into(),
        attempt: 1,
        name: "gpu".into(),
        tenant: "t1".into(),
        command: vec![
            "sh".into(),
            "-c".into(),
            format!(
                "id -u; echo \"cuda=$CUDA_VISIBLE_DEVICES\"; cat {}; cat {}; exit 0",
                gpu0.display(),
                gpu1.display()
            ),
        ],
        script: None,
        env: BTreeMap::new(),
        workdir: None,
        resources: TaskResources::default(),
        // The server gave the task GPU 1 of the node's two.
        gpus: vec![1],
        max_output_bytes: None,
    });
    let mut config = agent_config(addr, dir.path(), open_dir.path());
    config.emulate = Some(EmulatedInventory {
        cpu_model: "Xeon-8358".into(),
        arch: std::env::consts::ARCH.into(),
        cpu_cores: 4,
        memory_mib: 8192,
        gpus: 2,
        gpu_model: "A100-80G".into(),
        gpu_memory_mib: 80 * 1024,
        disk_gib: 0.0,
    });
    let agent = spawn(config).unwrap();
    let expected = (
        format!("{}: {}", gpu1.display(), gpu_nodes::ALLOWED),
        format!("{}: {}", gpu0.display(), gpu_nodes::DENIED),
    );
    let enforced = gpu_nodes::v1_devices_hierarchy();
    wait_for("the task's output", Duration::from_secs(20), || {
        let s = state.lock().unwrap();
        let done = s
            .reports
            .iter()
            .any(|(r, _)| r.state != AttemptState::Running);
        let err = String::from_utf8_lossy(s.logs.get("att-gpu/stderr").map_or(&[][..], |v| v));
        done && err.contains(gpu0.to_str().unwrap()) && err.contains(gpu1.to_str().unwrap())
    })
    .await;
    agent.stop().await;
    let s = state.lock().unwrap();
    let stdout = String::from_utf8_lossy(&s.logs["att-gpu/stdout"]).to_string();
    let stderr = String::from_utf8_lossy(&s.logs["att-gpu/stderr"]).to_string();
    let uid: u32 = stdout.lines().next().unwrap().parse().unwrap();
    assert_ne!(uid, 0, "the task ran as root: {stdout}");
    assert!(stdout.contains("cuda=1\n"), "{stdout}");
    let isolation = s.isolation.clone().expect("registered");
    if let Err(why) = enforced {
        assert_eq!(isolation.gpus, Enforcement::Simulated);
        eprintln!("SKIPPED the device check: {why}");
        return;
    }
    assert_eq!(isolation.gpus, Enforcement::Enforced, "{isolation:?}");
    assert!(
        isolation.controllers.iter().any(|c| c == "devices"),
        "{isolation:?}"
    );
    assert!(stderr.contains(&expected.0), "{stderr}");
    assert!(stderr.contains(&expected.1), "{stderr}");
}
