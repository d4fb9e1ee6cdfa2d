//! Tasks isolated from the platform and from each other (issue #12): identities per tenant,
//! private state, a clean environment, cgroup limits (memory → `oom`, processes), and the
//! rules of an agent that is not root. These run real tasks as other uids, so they need
//! root, as CI has; elsewhere they say so and pass without checking anything.

use crate::harness::{CPN, Server, site, wait_nodes};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: isolation tests run tasks as other uids and need root");
            return;
        }
    };
}

async fn submit_as(server: &Server, token: &str, body: Value) -> String {
    let (s, b) = server
        .call(Method::POST, "/api/v1/tasks", Some(token), Some(body))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    b["id"].as_str().expect("task id").to_string()
}

async fn task(server: &Server, id: &str) -> Value {
    let (s, b) = server
        .admin(Method::GET, &format!("/api/v1/tasks/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b
}

async fn wait_state(server: &Server, id: &str, states: &[&str], within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let t = task(server, id).await;
        if states.contains(&t["state"].as_str().unwrap_or_default()) {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "not {states:?} in {within:?}: {t}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn stdout(server: &Server, id: &str) -> String {
    let (s, b) = server
        .admin(
            Method::GET,
            &format!("/api/v1/tasks/{id}/logs?stream=stdout"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    match b {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Waits until the task's stdout has a line starting with `prefix`; returns the line.
async fn wait_line(server: &Server, id: &str, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(l) = stdout(server, id)
            .await
            .lines()
            .find(|l| l.starts_with(prefix))
        {
            return l.to_string();
        }
        assert!(Instant::now() < deadline, "no {prefix:?} line from {id}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn a_plain_users_task_cannot_read_the_platform_nor_another_tenant() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), false, &[]).await;
    wait_nodes(&server, 1).await;
    let data = dir.path();
    // The platform's files are private to it.
    assert_eq!(mode(data), 0o700);
    assert_eq!(mode(&data.join("cpn.db")), 0o600);
    assert_eq!(mode(&data.join("admin.token")), 0o600);
    if data.join("cpn.db-wal").exists() {
        assert_eq!(mode(&data.join("cpn.db-wal")), 0o600);
    }
    assert_eq!(mode(&data.join("agent")), 0o700);

    let alice = server.user("alpha", "alice", "user").await;
    let bob = server.user("beta", "bob", "user").await;
    let small = json!({"cpu_cores": 0.2, "memory_gib": 0.2});

    // Bob's task keeps a secret in its directory and its log, and stays running.
    let b_id = submit_as(
        &server,
        &bob,
        json!({"name": "keeper", "resources": small,
               "script": "echo beta-log-secret\necho beta-file-secret > \"$HOME/secret\"\necho \"uid $(id -u)\"\necho \"home $HOME\"\nsleep 60\n"}),
    )
    .await;
    let b_uid = wait_line(&server, &b_id, "uid ").await;
    let b_home = wait_line(&server, &b_id, "home ").await;
    let b_home = b_home.trim_start_matches("home ").to_string();
    let b_attempt = task(&server, &b_id).await["attempt_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        !b_home.starts_with(&data.display().to_string()),
        "the working directory lies outside the data dir: {b_home}"
    );
    let b_home_meta = std::fs::metadata(&b_home).unwrap();
    assert_eq!(b_home_meta.permissions().mode() & 0o777, 0o700);
    assert_eq!(
        b_home_meta.uid().to_string(),
        b_uid.trim_start_matches("uid ")
    );

    // Alice's task tries to read all of it.
    let targets = [
        ("admin.token", data.join("admin.token")),
        ("cpn.db", data.join("cpn.db")),
        ("agent-state", data.join("agent/identities.json")),
        (
            "other-tenant-log",
            data.join(format!("agent/attempts/{b_attempt}/stdout")),
        ),
        ("other-tenant-file", Path::new(&b_home).join("secret")),
    ];
    let mut script = String::from(
        "try() { if cat \"$2\" >/dev/null 2>&1; then echo \"READ $1\"; else echo \"DENIED $1\"; fi; }\n",
    );
    for (name, path) in &targets {
        script.push_str(&format!("try '{name}' '{}'\n", path.display()));
    }
    script.push_str("echo \"uid $(id -u)\"\necho ENV-BEGIN\nenv\necho ENV-END\n");
    let a_id = submit_as(
        &server,
        &alice,
        json!({"name": "snoop", "resources": small, "script": script}),
    )
    .await;
    let t = wait_state(
        &server,
        &a_id,
        &["succeeded", "failed"],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(t["state"], "succeeded", "{t}");
    let out = stdout(&server, &a_id).await;
    for (name, path) in &targets {
        assert!(
            path.exists(),
            "{} exists for the test to mean something",
            path.display()
        );
        assert!(
            out.lines().any(|l| l == format!("DENIED {name}")),
            "{name} must be denied:\n{out}"
        );
    }
    // Another uid than the server's (root) and than the other tenant's.
    let a_uid: u32 = out
        .lines()
        .find_map(|l| l.strip_prefix("uid "))
        .and_then(|u| u.parse().ok())
        .expect("uid line");
    assert_ne!(a_uid, 0);
    assert!((61000..=61999).contains(&a_uid), "{a_uid}");
    assert_ne!(
        format!("uid {a_uid}"),
        b_uid,
        "tenants get identities of their own"
    );
    // None of the server's environment (the harness sets RUST_LOG for it).
    let env: Vec<&str> = out
        .lines()
        .skip_while(|l| *l != "ENV-BEGIN")
        .skip(1)
        .take_while(|l| *l != "ENV-END")
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    let allowed = [
        "PATH",
        "HOME",
        "PWD",
        "CPN_TASK_ID",
        "CPN_ATTEMPT_ID",
        "CPN_ATTEMPT",
        "CPN_TENANT",
    ];
    for k in &env {
        assert!(allowed.contains(k), "{k} leaked into the task: {env:?}");
    }
    assert!(
        env.contains(&"CPN_TENANT") && env.contains(&"HOME"),
        "{env:?}"
    );
    assert!(out.contains("CPN_TENANT=alpha"), "{out}");

    // The node reports its enforcement; cpn node get shows it.
    let (_, nodes) = server.admin(Method::GET, "/api/v1/nodes", None).await;
    let node = &nodes[0];
    assert_eq!(node["inventory"]["isolation"]["uid_switch"], true, "{node}");
    let cgroups = node["inventory"]["isolation"]["cgroups"].as_str().unwrap();
    assert!(["v1", "v2", "none"].contains(&cgroups), "{node}");
    let got = server.cli(&["node", "get", node["id"].as_str().unwrap()]);
    let text = String::from_utf8_lossy(&got.stdout);
    assert!(text.contains("uid per tenant"), "{text}");

    let (s, _) = server
        .call(
            Method::POST,
            &format!("/api/v1/tasks/{b_id}/cancel"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    wait_state(&server, &b_id, &["cancelled"], Duration::from_secs(20)).await;
    // Forgotten attempts leave no working directory behind.
    let deadline = Instant::now() + Duration::from_secs(20);
    while Path::new(&b_home).exists() {
        assert!(Instant::now() < deadline, "{b_home} still there");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The cgroup hierarchy the node enforces limits with, when it has one.
async fn node_cgroups(server: &Server) -> String {
    let (_, nodes) = server.admin(Method::GET, "/api/v1/nodes", None).await;
    nodes[0]["inventory"]["isolation"]["cgroups"]
        .as_str()
        .unwrap_or("none")
        .to_string()
}

#[tokio::test]
async fn a_task_over_its_memory_ends_oom_and_a_fork_bomb_is_contained() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), false, &["--task-pids-max", "64"]).await;
    wait_nodes(&server, 1).await;
    if node_cgroups(&server).await == "none" {
        eprintln!("skipped: this host has no writable cgroups (the node reports `none`)");
        return;
    }
    let token = server.user("gamma", "greta", "user").await;

    // `tail` keeps the endless line of /dev/zero in memory.
    let hog = submit_as(
        &server,
        &token,
        json!({"name": "hog", "command": ["tail", "/dev/zero"],
               "resources": {"cpu_cores": 0.5, "memory_gib": 0.05}}),
    )
    .await;
    let t = wait_state(
        &server,
        &hog,
        &["succeeded", "failed", "lost"],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(t["state"], "failed", "{t}");
    assert!(
        t["reason"].as_str().unwrap_or_default().starts_with("oom"),
        "{t}"
    );
    let got = server.cli(&["task", "get", &hog]);
    assert!(
        String::from_utf8_lossy(&got.stdout).contains("oom"),
        "cpn task get shows the reason: {}",
        String::from_utf8_lossy(&got.stdout)
    );

    // A fork bomb meets the process limit; the node keeps running other work.
    let bomb = submit_as(
        &server,
        &token,
        json!({"name": "bomb", "script": "sleep 120 &\ns=$!\nb() { b & b; }\nb &\nwait $s\n",
               "resources": {"cpu_cores": 0.5, "memory_gib": 0.5}}),
    )
    .await;
    let t = wait_state(&server, &bomb, &["running"], Duration::from_secs(30)).await;
    let attempt = t["attempt_id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pids = [
        format!("/sys/fs/cgroup/pids/cpn/{attempt}"),
        format!("/sys/fs/cgroup/unified/cpn/{attempt}"),
        format!("/sys/fs/cgroup/cpn/{attempt}"),
    ]
    .into_iter()
    .map(std::path::PathBuf::from)
    .find(|p| p.join("pids.max").exists());
    let Some(pids) = pids else {
        panic!(
            "no pids cgroup for the bomb: {}",
            task(&server, &bomb).await
        );
    };
    let read = |f: &str| std::fs::read_to_string(pids.join(f)).unwrap_or_default();
    assert_eq!(read("pids.max").trim(), "64");
    let current: u32 = read("pids.current").trim().parse().unwrap();
    assert!(current <= 64, "{current}");
    assert!(
        read("pids.events")
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n > 0),
        "forks were refused at the limit: {}",
        read("pids.events")
    );
    let ok = submit_as(
        &server,
        &token,
        json!({"name": "alive", "command": ["sh", "-c", "echo alive"],
               "resources": {"cpu_cores": 0.2, "memory_gib": 0.1}}),
    )
    .await;
    let t = wait_state(
        &server,
        &ok,
        &["succeeded", "failed"],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(t["state"], "succeeded", "{t}");

    let (s, b) = server
        .call(
            Method::POST,
            &format!("/api/v1/tasks/{bomb}/cancel"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    wait_state(&server, &bomb, &["cancelled"], Duration::from_secs(30)).await;
    // Every process of the bomb is gone with its cgroup.
    let deadline = Instant::now() + Duration::from_secs(30);
    while pids.exists() {
        assert!(Instant::now() < deadline, "{} still there", pids.display());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn an_agent_that_is_not_root_runs_only_its_own_tenants_tasks() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), false).await;
    let (s, b) = server
        .admin(Method::POST, "/api/v1/sites", Some(site("plain")))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    // The agent runs as `nobody` from a copy of the binary it can execute.
    let open = tempfile::tempdir().unwrap();
    std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = open.path().join("cpn");
    std::fs::copy(CPN, &bin).unwrap();
    let state = open.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
    let work = open.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::os::unix::fs::chown(&work, Some(65534), Some(65534)).unwrap();
    let log = open.path().join("agent.log");
    let mut agent = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&bin)
        .args([
            "agent",
            "--server",
            &server.base,
            "--site",
            "plain",
            "--name",
            "nobody",
        ])
        .arg("--state-dir")
        .arg(&state)
        .arg("--work-root")
        .arg(&work)
        .env("CPN_JOIN_TOKEN", server.join_token("plain").await)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start the agent as nobody");
    let nodes = wait_nodes(&server, 1).await;
    assert_eq!(nodes[0]["inventory"]["isolation"]["uid_switch"], false);
    assert_eq!(nodes[0]["inventory"]["isolation"]["single_user"], false);

    // The operator's own tenant runs (as the agent's user); another tenant's fails to start.
    let (_, me) = server.admin(Method::GET, "/api/v1/auth/whoami", None).await;
    let own = me["tenant"].as_str().expect("whoami tenant").to_string();
    server.user("delta", "dora", "user").await;
    let mine = submit_as(
        &server,
        &server.token,
        json!({"name": "mine", "command": ["id", "-u"], "resources": {"cpu_cores": 0.1, "memory_gib": 0.1}}),
    )
    .await;
    let theirs = submit_as(
        &server,
        &server.token,
        json!({"name": "theirs", "tenant": "delta", "command": ["id", "-u"],
               "resources": {"cpu_cores": 0.1, "memory_gib": 0.1}}),
    )
    .await;
    let t = wait_state(
        &server,
        &mine,
        &["succeeded", "failed"],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(t["state"], "succeeded", "{own}: {t}");
    // (The log "65534\n" reads back as a JSON number: compare the text.)
    assert_eq!(stdout(&server, &mine).await.trim(), "65534");
    let t = wait_state(
        &server,
        &theirs,
        &["succeeded", "failed"],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(t["state"], "failed", "{t}");
    let reason = t["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("not root") && reason.contains("--single-user"),
        "{reason}"
    );
    let _ = agent.kill();
    let _ = agent.wait();
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        said.contains("not root"),
        "the agent says so at start:\n{said}"
    );
    assert_eq!(mode(&state), 0o700);
}
