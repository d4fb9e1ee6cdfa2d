//! The Slurm back end end to end: a site of kind `slurm` over a REAL Slurm cluster (started
//! by `scripts/slurm-up.sh`), through the CLI client and through slurmrestd. Skipped when
//! Slurm is not installed, except under CI, where `.ci/run` installs it.

use crate::harness::Server;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn cluster() -> Option<PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let installed = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("sbatch").is_file()));
        if !installed {
            assert!(
                std::env::var_os("CI").is_none(),
                "Slurm is not installed but CI is set: .ci/run must install slurm-wlm slurmrestd munge"
            );
            eprintln!("SKIP slurm e2e: `sbatch` not found (apt-get install slurm-wlm slurmrestd munge)");
            return None;
        }
        let dir = std::env::var_os("CPN_SLURM_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp/cpn-slurm-test"));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/slurm-up.sh");
        let out = Command::new("bash").arg(&script).arg(&dir).arg("2").output().unwrap();
        assert!(
            out.status.success(),
            "slurm-up.sh failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Jobs left by an earlier, interrupted run would hold the nodes.
        for user in ["root", "slurmrest"] {
            let _ = Command::new("scancel")
                .args(["--user", user])
                .env("SLURM_CONF", dir.join("slurm.conf"))
                .output();
        }
        Some(dir)
    })
    .clone()
}

fn slurm_site(name: &str, dir: &Path, rest: bool) -> Value {
    let mut backend = json!({
        "kind": "slurm",
        "partition": "debug",
        "slurm_conf": dir.join("slurm.conf"),
        "work_dir": dir.join("work").join(name),
    });
    if rest {
        backend["rest_url"] = json!(format!("unix:{}", dir.join("slurmrestd.sock").display()));
        backend["api_version"] = json!("v0.0.38");
    }
    json!({
        "name": name,
        "visibility": "public",
        "spec": {"region": "Guangdong", "supplier": "hpc", "location": {"lat": 22.5, "lon": 114.0},
                 "backend": backend}
    })
}

async fn wait_for(server: &Server, id: &str, states: &[&str], within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (_, t) = server
            .admin(Method::GET, &format!("/api/v1/tasks/{id}"), None)
            .await;
        if states.contains(&t["state"].as_str().unwrap_or_default()) {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "task never reached {states:?}: {t}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn job_state(dir: &Path, job: &str) -> String {
    let out = Command::new("scontrol")
        .args(["show", "job", job, "-o"])
        .env("SLURM_CONF", dir.join("slurm.conf"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.split_whitespace()
        .find_map(|kv| kv.strip_prefix("JobState="))
        .unwrap_or("")
        .to_string()
}

async fn run_on(site: &str, rest: bool) {
    let Some(dir) = cluster() else { return };
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), false).await;
    let (s, b) = server
        .admin(
            Method::POST,
            "/api/v1/sites",
            Some(slurm_site(site, &dir, rest)),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let site_tenant = b["tenant"].clone();
    // The partition's nodes are imported, with the fake GPUs of the last one.
    let deadline = Instant::now() + Duration::from_secs(30);
    let nodes = loop {
        let (_, b) = server.admin(Method::GET, "/api/v1/nodes", None).await;
        let mine: Vec<Value> = b
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["site"] == site && n["state"] == "ready")
            .cloned()
            .collect();
        if mine.len() >= 2 {
            break mine;
        }
        assert!(Instant::now() < deadline, "Slurm nodes not imported: {b}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        nodes
            .iter()
            .all(|n| n["executor"] == "slurm" && n["capacity"]["cpu_cores"] == 2.0)
    );
    assert!(
        nodes.iter().any(|n| n["capacity"]["gpus"] == 2.0),
        "{nodes:?}"
    );
    // The partition is in the registry too, for explain, dry-run and plans.
    let (s, cpu) = server
        .admin(
            Method::GET,
            &format!("/api/v1/resources/{site}-slurm-debug-cpu"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{cpu}");
    assert_eq!(cpu["spec"]["compute"]["count"], 4);
    assert_eq!(cpu["spec"]["compute"]["supply_mode"], "slurm");
    // Written by the back end as itself, in its site's tenant, not as the admin user.
    assert_eq!(cpu["owner"], "system:slurm", "{cpu}");
    assert_eq!(cpu["tenant"], site_tenant, "{cpu}");
    let (s, gpu) = server
        .admin(
            Method::GET,
            &format!("/api/v1/resources/{site}-slurm-debug-gpu"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{gpu}");
    assert_eq!(gpu["spec"]["compute"]["count"], 2);
    assert_eq!(gpu["generation"], 1, "not rewritten on every import: {gpu}");

    // A job runs on Slurm and its output comes back.
    let (s, b) = server
        .admin(
            Method::POST,
            "/api/v1/tasks",
            Some(json!({"name": "hello", "command": ["sh", "-c", "echo hello from $SLURM_JOB_ID; echo warn >&2; exit 0"],
                        "resources": {"cpu_cores": 1, "memory_gib": 0.25},
                        "constraints": {"site": site}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let id = b["id"].as_str().unwrap().to_string();
    let t = wait_for(
        &server,
        &id,
        &["succeeded", "failed", "lost"],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(t["state"], "succeeded", "{t}");
    assert_eq!(t["site"], site);
    let job = t["external_id"].as_str().expect("Slurm job id").to_string();
    let (_, out) = server
        .admin(
            Method::GET,
            &format!("/api/v1/tasks/{id}/logs?stream=stdout"),
            None,
        )
        .await;
    assert_eq!(out, Value::String(format!("hello from {job}\n")));

    // A failing job reports its exit code.
    let (_, b) = server
        .admin(
            Method::POST,
            "/api/v1/tasks",
            Some(json!({"name": "fails", "command": ["sh", "-c", "exit 7"],
                        "resources": {"cpu_cores": 1, "memory_gib": 0.25},
                        "constraints": {"site": site}})),
        )
        .await;
    let failing = b["id"].as_str().unwrap().to_string();
    let t = wait_for(
        &server,
        &failing,
        &["succeeded", "failed"],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        (t["state"].as_str(), t["exit_code"].as_i64()),
        (Some("failed"), Some(7)),
        "{t}"
    );

    // Cancel reaches Slurm.
    let (_, b) = server
        .admin(
            Method::POST,
            "/api/v1/tasks",
            Some(json!({"name": "long", "command": ["sleep", "300"],
                        "resources": {"cpu_cores": 1, "memory_gib": 0.25},
                        "constraints": {"site": site}})),
        )
        .await;
    let long = b["id"].as_str().unwrap().to_string();
    let t = wait_for(&server, &long, &["running"], Duration::from_secs(60)).await;
    let job = t["external_id"].as_str().unwrap().to_string();
    assert_eq!(job_state(&dir, &job), "RUNNING");
    let (s, b) = server
        .admin(Method::POST, &format!("/api/v1/tasks/{long}/cancel"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = job_state(&dir, &job);
        if st == "CANCELLED" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "job {job} is {st}, not cancelled"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        wait_for(&server, &long, &["cancelled"], Duration::from_secs(5)).await["state"],
        "cancelled"
    );
}

#[tokio::test]
async fn tasks_run_on_a_real_slurm_cluster_through_the_cli() {
    run_on("hpc-cli", false).await;
}

#[tokio::test]
async fn tasks_run_on_a_real_slurm_cluster_through_slurmrestd() {
    run_on("hpc-rest", true).await;
}
