//! Issue #14's class A acceptance with a real agent and a real sshd: a real `cpn agent`
//! process (root, two emulated GPUs) joins a supplier's site; the supplier publishes a class
//! A listing; a user is topped up, finds it, leases one card by the hour and enters the
//! supplier's code with an SSH key; the agent creates the lease's account from its poll;
//! the user logs in with OpenSSH's `ssh` to Debian's `sshd` (started here on a loopback
//! port with its own host key, nothing of the system's sshd is read or changed) and sees
//! only the leased GPU while the card is busy; release locks the account (a login fails)
//! and frees the card; the bill is the lease's time to the second and the ledger sums to
//! zero.
//!
//! Not real here: the GPUs are emulated (`--emulate-gpus`: indices without devices), so
//! "sees only the leased GPU" is what `CUDA_VISIBLE_DEVICES` says and, where the host has a
//! cgroup v1 devices hierarchy, which of two stand-in NVIDIA device nodes (195:0 and 195:1,
//! made here with `mknod`) the session may open: the leased one fails for want of a driver
//! (ENXIO), the other is refused by the lease's devices cgroup (EPERM); the user is created
//! by an operator (registration is tested in `market_accounts`).
//!
//! Needs root (the agent creates real accounts; the test deletes every one it made, also
//! when it fails) and openssh-server and openssh-client; without them it is skipped, saying
//! so, except under `CI`, where it fails: `.ci/run` installs them.

use crate::harness::{Agent, Server, site, wait_nodes};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "../../../cpn-agent/tests/support/gpu_nodes.rs"]
mod gpu_nodes;
#[path = "../../../cpn-agent/tests/support/sshd.rs"]
mod sshd;
use sshd::{SSH, SSH_KEYGEN, SSHD, Sshd, keygen, ssh, text};
/// Per card-hour, minor units: 10 per card-second, so a bill to the second is exact.
const HOURLY: i64 = 36_000;

/// Whether the test can run here; skips (saying why) or, under CI, fails.
fn ready(name: &str) -> bool {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root (lease accounts are real accounts of this host)".to_string());
    }
    for t in [
        SSHD,
        SSH,
        SSH_KEYGEN,
        "/usr/sbin/useradd",
        "/usr/bin/setpriv",
    ] {
        if !Path::new(t).is_file() {
            missing.push(format!(
                "{t} (apt-get install -y --no-install-recommends openssh-server openssh-client)"
            ));
        }
    }
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{name}: CI is set but this machine lacks {}: .ci/run must install openssh-server \
         and run the tests as root",
        missing.join(", ")
    );
    eprintln!("SKIPPED {name}: needs {}", missing.join(", "));
    false
}

/// Deletes the accounts the agent recorded in its state dir (only those whose comment
/// names a lease, as the agent writes it), whatever the test's outcome: killing their
/// processes first, as `userdel` refuses a logged-in user.
struct Accounts(PathBuf);

impl Drop for Accounts {
    fn drop(&mut self) {
        let recorded: serde_json::Map<String, Value> =
            fs::read_to_string(self.0.join("lease-accounts.json"))
                .ok()
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or_default();
        for account in recorded.values() {
            let Some(name) = account["username"].as_str() else {
                continue;
            };
            let Some(user) = nix::unistd::User::from_name(name).ok().flatten() else {
                continue;
            };
            if !user.gecos.to_string_lossy().starts_with("cpn lease ") {
                continue;
            }
            let uid = user.uid.as_raw().to_string();
            let _ = Command::new("/usr/bin/setpriv")
                .args([
                    &format!("--reuid={uid}"),
                    &format!("--regid={uid}"),
                    "--clear-groups",
                ])
                .args(["--", "/bin/kill", "-s", "KILL", "--", "-1"])
                .output();
            std::thread::sleep(Duration::from_millis(100));
            let _ = Command::new("/usr/sbin/userdel").arg(name).output();
            for dir in account["cgroups"].as_array().into_iter().flatten() {
                if let Some(d) = dir.as_str() {
                    let _ = fs::remove_dir(d);
                }
            }
        }
    }
}

fn secs(v: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .timestamp()
}

fn states(listing: &Value) -> Vec<String> {
    listing["cards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["state"].as_str().unwrap().to_string())
        .collect()
}

/// Polls the lease as its user until `done` holds (or fails after 30 s with the last view
/// and the agent's log).
async fn wait_lease(
    server: &Server,
    token: &str,
    id: u64,
    agent_log: &Path,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, lease) = server
            .call(
                Method::GET,
                &format!("/api/v1/market/leases/{id}"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{lease}");
        if done(&lease) {
            return lease;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {lease}\nagent: {}",
            fs::read_to_string(agent_log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leased_card_is_reached_over_real_ssh_through_a_real_agent_and_locked_at_release() {
    if !ready("lease_ssh") {
        return;
    }
    // The lease accounts pass through this directory to their homes: not a 0700 temp dir.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    let host_key = dir.join("host_key");
    keygen(&host_key);
    let user_key = keygen(&dir.join("user_key"));
    let sshd = Sshd::start(dir, &host_key);
    let host_pub = fs::read_to_string(host_key.with_extension("pub")).unwrap();
    fs::write(
        dir.join("known_hosts"),
        format!("[127.0.0.1]:{} {}", sshd.port, host_pub),
    )
    .unwrap();

    let server = Server::start_with(&dir.join("data"), false, &["--no-local-agent"]).await;
    let supplier = server.user("acme", "sup", "supplier").await;
    let ann = server.user("lab", "ann", "user").await;
    let (s, b) = server
        .call(
            Method::POST,
            "/api/v1/sites",
            Some(&supplier),
            Some(site("acme-sz")),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    // A real agent process with two emulated GPUs, its lease accounts reached through the
    // test's sshd.
    let state = dir.join("agent-state");
    let _accounts = Accounts(state.clone());
    let join = server.join_token("acme-sz").await;
    let agent_log = dir.join("agent.log");
    let port = sshd.port.to_string();
    let (work, homes) = (dir.join("work"), dir.join("homes"));
    let host_key_pub = host_key.with_extension("pub");
    let args = [
        "--server",
        &server.base,
        "--join",
        &join,
        "--site",
        "acme-sz",
        "--name",
        "n1",
        "--state-dir",
        state.to_str().unwrap(),
        "--work-root",
        work.to_str().unwrap(),
        "--emulate-gpus",
        "2",
        "--lease-ssh-host",
        "127.0.0.1",
        "--lease-ssh-port",
        &port,
        "--lease-host-key",
        host_key_pub.to_str().unwrap(),
        "--lease-home-root",
        homes.to_str().unwrap(),
    ];
    let _agent = Agent::start_args(&args, &agent_log);
    let nodes = wait_nodes(&server, 1).await;
    assert_eq!(nodes[0]["name"], "n1", "{nodes:?}");

    // The supplier publishes both cards as a class A listing; both are idle.
    let listing = json!({
        "class": "a", "resource_type": "gpu", "model": "A100 80GB", "card_memory_gib": 80,
        "memory_gib": 64, "vcpus": 8, "prices": {"hourly_minor": HOURLY},
        "vendor": "Acme Cloud", "region": "深圳市",
        "storage": [{"kind": "nvme_ssd", "role": "data", "size_gb": 100}],
        "site": "acme-sz", "usage": "ssh as shown on the lease",
        "cards": [{"node": "n1", "index": 0}, {"node": "n1", "index": 1}]
    });
    let (s, l) = server
        .call(
            Method::POST,
            "/api/v1/market/listings",
            Some(&supplier),
            Some(listing),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{l}");
    let cpcid = l["cpcid"].as_str().unwrap().to_string();
    let listing_of = |token: String| {
        let server = &server;
        let path = format!("/api/v1/market/listings/{cpcid}");
        async move {
            let (s, b) = server.call(Method::GET, &path, Some(&token), None).await;
            assert_eq!(s, StatusCode::OK, "{b}");
            b
        }
    };
    assert_eq!(states(&listing_of(ann.clone()).await), ["idle", "idle"]);

    // The user is topped up and finds it by class, model, mode and price.
    let (s, bal) = server
        .admin(
            Method::POST,
            "/api/v1/billing/topups",
            Some(json!({"tenant": "lab", "amount_minor": 1_000_000})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{bal}");
    let (s, hits) = server
        .call(
            Method::GET,
            "/api/v1/market/listings?class=a&model=a100%2080gb&mode=hourly&max_unit_price_minor=40000&min_cards=1",
            Some(&ann),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{hits}");
    assert_eq!(hits["total"], 1, "{hits}");
    assert_eq!(hits["items"][0]["cpcid"], cpcid.as_str());
    let (_, none) = server
        .call(
            Method::GET,
            "/api/v1/market/listings?class=b",
            Some(&ann),
            None,
        )
        .await;
    assert_eq!(
        none["total"], 0,
        "a filter it does not meet hides it: {none}"
    );

    // One card by the hour; the supplier's code and the user's key open it.
    let (s, placed) = server
        .call(
            Method::POST,
            "/api/v1/market/orders",
            Some(&ann),
            Some(json!({"listing": cpcid, "cards": 1, "mode": "hourly"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{placed}");
    let lease = &placed["lease"];
    assert_eq!(lease["state"], "awaiting_access", "{placed}");
    let id = lease["id"].as_u64().unwrap();
    let gpu = lease["cards"][0]["index"].as_u64().unwrap();
    let (s, code) = server
        .call(
            Method::POST,
            &format!("/api/v1/market/leases/{id}/authorization-code"),
            Some(&supplier),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{code}");
    let (s, active) = server
        .call(
            Method::POST,
            &format!("/api/v1/market/leases/{id}/code"),
            Some(&ann),
            Some(json!({"code": code["code"], "public_key": user_key.trim()})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{active}");
    assert_eq!(active["state"], "active", "{active}");

    // The agent's poll brings the grant; the account it made is what the lease shows.
    let shown = wait_lease(&server, &ann, id, &agent_log, "no SSH access", |l| {
        l["ssh"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    let access = &shown["ssh"][0];
    let username = access["username"].as_str().unwrap().to_string();
    assert!(username.starts_with("cpnl-"), "{shown}");
    assert_eq!(access["host"], "127.0.0.1", "{shown}");
    assert_eq!(access["port"].as_u64(), Some(sshd.port as u64), "{shown}");
    assert_eq!(access["gpus"], json!([gpu]), "{shown}");
    // The fingerprint the user is shown is the sshd's host key's, as ssh-keygen prints it.
    let printed = Command::new(SSH_KEYGEN)
        .args(["-l", "-E", "sha256", "-f"])
        .arg(host_key.with_extension("pub"))
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&printed.stdout).to_string();
    assert!(
        printed.contains(access["host_key_fingerprint"].as_str().unwrap()),
        "{printed} vs {shown}"
    );
    let mut busy = vec!["idle".to_string(); 2];
    busy[gpu as usize] = "busy".into();
    assert_eq!(states(&listing_of(ann.clone()).await), busy);

    // A real login as the lease's account, with the host key checked: only the leased GPU,
    // by its environment and, where the host has a devices hierarchy, by its devices.
    let nodes = gpu_nodes::make(&dir.join("dev"));
    let host = access["host"].as_str().unwrap();
    let port = u16::try_from(access["port"].as_u64().unwrap()).unwrap();
    let out = ssh(
        dir,
        host,
        port,
        &username,
        &[],
        &format!(
            "id -un; echo \"gpus=$CUDA_VISIBLE_DEVICES nvidia=$NVIDIA_VISIBLE_DEVICES\"; \
             cat {}; cat {}; true",
            nodes[0].display(),
            nodes[1].display()
        ),
    );
    assert!(
        out.status.success(),
        "login failed: {}\nsshd: {}",
        text(&out),
        sshd.log_text()
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        stdout,
        format!("{username}\ngpus={gpu} nvidia={gpu}\n"),
        "{}",
        text(&out)
    );
    if gpu_nodes::v1_devices_hierarchy() {
        assert_eq!(access["isolation"]["gpus"], "enforced", "{shown}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let other = 1 - gpu as usize;
        for (node, says) in [
            (&nodes[gpu as usize], gpu_nodes::ALLOWED),
            (&nodes[other], gpu_nodes::DENIED),
        ] {
            let line = format!("{}: {says}", node.display());
            assert!(stderr.contains(&line), "{line} missing: {}", text(&out));
        }
    } else {
        eprintln!("note: no cgroup v1 devices hierarchy here; GPU devices are not checked");
    }

    // A lease of a few seconds, so that a bill of zero could not pass for one to the second.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Release: the agent locks the account, the login fails, the card is idle again.
    let (s, ended) = server
        .call(
            Method::POST,
            &format!("/api/v1/market/leases/{id}/release"),
            Some(&ann),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{ended}");
    assert_eq!(ended["state"], "ended", "{ended}");
    let locked = wait_lease(&server, &ann, id, &agent_log, "account not locked", |l| {
        l["access"]
            .as_str()
            .is_some_and(|a| a.contains(&format!("account {username} on node n1 locked")))
    })
    .await;
    // An ended lease shows no way in.
    assert!(
        locked
            .get("ssh")
            .is_none_or(|v| v.as_array().is_some_and(Vec::is_empty)),
        "{locked}"
    );
    let out = ssh(dir, host, port, &username, &[], "id -un");
    assert!(
        !out.status.success(),
        "logged in after release: {}",
        text(&out)
    );
    let passwd = nix::unistd::User::from_name(&username).unwrap().unwrap();
    assert!(
        passwd.shell.ends_with("nologin") || passwd.shell.ends_with("false"),
        "{passwd:?}"
    );
    assert_eq!(states(&listing_of(ann.clone()).await), ["idle", "idle"]);

    // The bill is the lease's time to the second at its price; the ledger sums to zero.
    let seconds = secs(&ended["ended_at"]) - secs(&ended["started_at"]);
    assert!(seconds >= 2, "{ended}");
    let expected = HOURLY * seconds / 3600;
    assert_eq!(ended["charged_minor"], expected, "{ended}");
    let month = &ended["started_at"].as_str().unwrap()[..7];
    let (s, usage) = server
        .call(
            Method::GET,
            &format!("/api/v1/billing/usage?month={month}"),
            Some(&ann),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{usage}");
    let records = usage.as_array().unwrap();
    let quantity: u64 = records
        .iter()
        .map(|r| r["quantity"].as_u64().unwrap_or_else(|| panic!("{usage}")))
        .sum();
    let amount: i64 = records
        .iter()
        .map(|r| {
            r["amount_minor"]
                .as_i64()
                .unwrap_or_else(|| panic!("{usage}"))
        })
        .sum();
    assert_eq!(quantity as i64, seconds, "{usage}");
    assert_eq!(amount, expected, "{usage}");
    let (_, bal) = server
        .call(Method::GET, "/api/v1/billing/balance", Some(&ann), None)
        .await;
    assert_eq!(bal["available_minor"], 1_000_000 - expected, "{bal}");
    let (_, ledger) = server
        .admin(Method::GET, "/api/v1/billing/ledger", None)
        .await;
    assert_eq!(ledger["trial_balance_minor"], 0, "{ledger}");
}
