//! The README's start, as a stranger types it: `cpn serve` and `cpn agent` from a fresh
//! empty directory with no flags but a free port (the only change allowed; the CLI then
//! needs `CPN_SERVER`), and the tour's `cpn task submit --wait`.
//!
//! Every other test passes absolute paths; these must not, because that is how the README
//! start once ran no task at all (each attempt failed with exit 2: its wrapper was told a
//! relative exit-file path from inside its own working directory).

use crate::harness::{CPN, free_port};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `cpn ARGS` run in `dir` the way the tour runs it: the server named by `CPN_SERVER`, the
/// token taken by the CLI itself from `./cpn-data/admin.token` unless `token` is given.
fn cpn_in(dir: &Path, server: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(CPN);
    cmd.args(args)
        .current_dir(dir)
        .env("CPN_SERVER", server)
        .env_remove("CPN_TOKEN")
        .env_remove("CPN_DATA_DIR");
    if let Some(token) = token {
        cmd.env("CPN_TOKEN", token);
    }
    cmd.output().expect("run cpn")
}

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `cpn serve --listen 127.0.0.1:PORT` in `dir`, nothing else; waits for its address file in
/// the default data dir `./cpn-data`.
fn serve_in(dir: &Path) -> (Killed, String) {
    let port = free_port();
    let log = std::fs::File::create(dir.join("serve.log")).expect("serve log");
    let child = Command::new(CPN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(dir)
        .env_remove("CPN_DATA_DIR")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn cpn serve");
    let child = Killed(child);
    let addr_file = dir.join("cpn-data").join("cpn.addr");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&addr_file).is_ok_and(|s| s.ends_with('\n')) {
        assert!(
            Instant::now() < deadline,
            "cpn serve did not start within 60 s; its log:\n{}",
            std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, format!("http://127.0.0.1:{port}"))
}

/// Submits the tour's failing task with `--wait` (optionally on one site, on nodes labelled
/// `pool=a`) and checks what a user sees: the CLI exits like the task, and the task's output
/// is `hi`. Returns the task.
fn submit_hi_exit_3(dir: &Path, server: &str, site: Option<&str>) -> serde_json::Value {
    let mut args = vec!["task", "submit", "--wait"];
    if let Some(site) = site {
        args.extend(["--site", site, "--node-selector", "pool=a"]);
    }
    args.extend(["--", "sh", "-c", "echo hi; exit 3"]);
    let out = cpn_in(dir, server, None, &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "`cpn task submit --wait` must exit like the task\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stderr.contains("(exit 3)"), "{stderr}");
    let id = stdout.lines().next().expect("the task id").trim();
    let logs = cpn_in(dir, server, None, &["task", "logs", id]);
    assert!(logs.status.success(), "{logs:?}");
    assert_eq!(String::from_utf8_lossy(&logs.stdout), "hi\n");
    let got = cpn_in(dir, server, None, &["task", "get", id, "-o", "json"]);
    let task: serde_json::Value = serde_json::from_slice(&got.stdout).expect("task json");
    assert_eq!(task["state"], "failed", "{task}");
    assert_eq!(task["exit_code"], 3, "{task}");
    if let Some(site) = site {
        assert_eq!(task["site"], site, "{task}");
    }
    task
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_with_no_flags_runs_the_tour_task_from_a_fresh_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (_serve, server) = serve_in(dir.path());
    // As the tour does, look at the federation first: the emulated nodes join within a
    // moment of the start (a task submitted before they have may run on the local agent).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = cpn_in(dir.path(), &server, None, &["node", "list"]);
        let text = String::from_utf8_lossy(&out.stdout);
        if text.lines().filter(|l| l.contains("emulated")).count() >= 10 {
            break;
        }
        assert!(Instant::now() < deadline, "no emulated nodes: {text}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let task = submit_hi_exit_3(dir.path(), &server, None);
    // The demo comes alive: the task runs on an emulated node of a national site, not on
    // the local agent's site.
    let site = task["site"].as_str().unwrap_or_default();
    assert!(!site.is_empty() && site != "local", "{task}");
    let key = format!("{site}/{}", task["node"].as_str().unwrap_or_default());
    let node = cpn_in(
        dir.path(),
        &server,
        None,
        &["node", "get", &key, "-o", "json"],
    );
    let node: serde_json::Value = serde_json::from_slice(&node.stdout).expect("node json");
    assert_eq!(node["emulated"], true, "{node}");
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_with_no_state_dir_flag_runs_a_task_from_a_fresh_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (_serve, server) = serve_in(dir.path());
    // The operator issues a join token for the site, as the README shows.
    let issued = cpn_in(
        dir.path(),
        &server,
        None,
        &["site", "join-token", "create", "zhongwei"],
    );
    assert!(issued.status.success(), "{issued:?}");
    let join = String::from_utf8_lossy(&issued.stdout).trim().to_string();
    // The agent's own fresh directory, as on another machine: the join token is all it needs.
    let agent_home = dir.path().join("gpu-07");
    std::fs::create_dir(&agent_home).unwrap();
    let agent = Command::new(CPN)
        .args(["agent", "--join", &join])
        .args(["--name", "gpu-07", "--label", "pool=a"])
        .current_dir(&agent_home)
        .env_remove("CPN_TOKEN")
        .env_remove("CPN_SERVER")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn cpn agent");
    let _agent = Killed(agent);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let nodes = cpn_in(dir.path(), &server, None, &["node", "list", "-o", "json"]);
        let list: serde_json::Value = serde_json::from_slice(&nodes.stdout).unwrap_or_default();
        let ready = list.as_array().is_some_and(|nodes| {
            nodes
                .iter()
                .any(|n| n["name"] == "gpu-07" && n["state"] == "ready")
        });
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the agent never became ready: {list}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    submit_hi_exit_3(dir.path(), &server, Some("zhongwei"));
    assert!(
        agent_home.join("cpn-agent-state").is_dir(),
        "the agent keeps its state in ./cpn-agent-state by default"
    );
}
