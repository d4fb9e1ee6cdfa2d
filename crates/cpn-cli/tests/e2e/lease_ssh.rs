//! Issue #14's first two acceptance checks as one story, with real agents, a real SMTP
//! server and a real sshd. A supplier registers as an enterprise with its business licence
//! (the verification code arrives through aiosmtpd on loopback, as in `market_accounts`),
//! activates, and logs in once an operator has approved it through the API; two real
//! `cpn agent` processes (root, two emulated GPUs each) join the supplier's own site; it
//! publishes a class A listing of the cards of both nodes, whose CPcId and per-card states
//! are checked. A user registers, activates with the mailed code, logs in, is topped up by
//! an operator, filters the marketplace, leases one card by the hour and enters the
//! supplier's authorization code with an SSH key; the leased card's agent creates the
//! lease's account from its poll; the user logs in with OpenSSH's `ssh` to Debian's `sshd`
//! (started here on a loopback port with its own host key, nothing of the system's sshd is
//! read or changed) and sees only the leased GPU while the card is busy; release locks the
//! account (a login fails) and frees the card; the bill is the lease's time to the second
//! and the ledger sums to zero.
//!
//! Not real here: the GPUs are emulated (`--emulate-gpus`: indices without devices), so
//! "sees only the leased GPU" is what `CUDA_VISIBLE_DEVICES` says and, where the host has a
//! cgroup v1 devices hierarchy, which of two stand-in NVIDIA device nodes (195:0 and 195:1,
//! made here with `mknod`) the session may open: the leased one fails for want of a driver
//! (ENXIO), the other is refused by the lease's devices cgroup (EPERM). Both agents run on
//! this one host and reach their lease accounts through the one test sshd.
//!
//! Needs root (the agents create real accounts; the test deletes every one they made, also
//! when it fails), openssh-server and openssh-client, and aiosmtpd (`CPN_TEST_PYTHON`);
//! without them it is skipped, saying so, except under `CI`, where it fails: `.ci/run`
//! installs them.

use crate::harness::{Agent, Server, site, wait_nodes};
use crate::market_accounts::{Smtp, activate, enterprise_supplier, individual, login, register};
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
    agent_logs: &[PathBuf],
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
            "{what}: {lease}\nagents: {}",
            agent_logs
                .iter()
                .map(|l| fs::read_to_string(l).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn registered_supplier_and_user_lease_a_card_of_two_agents_over_real_ssh() {
    if !ready("lease_ssh") {
        return;
    }
    // Registration codes arrive through a real SMTP server (skipped or, under CI, failed
    // without aiosmtpd).
    let Some(smtp) = Smtp::start() else { return };
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

    let relay = smtp.relay();
    let server = Server::start_with(
        &dir.join("data"),
        false,
        &["--no-local-agent", "--smtp-relay", &relay],
    )
    .await;

    // The supplier registers as an enterprise with its licence, activates with the code
    // mailed to it, and waits for review; an operator approves it through the API.
    let (s, b) = register(&server, enterprise_supplier("acme", "ops@acme.cn")).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["account"]["has_licence"], true, "{b}");
    let account = b["account"]["id"].as_u64().unwrap();
    let (s, b) = activate(&server, "acme", &smtp.code_for("ops@acme.cn", 1)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["state"], "pending_review", "{b}");
    let (s, b) = login(&server, "acme").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "not before the review: {b}");
    let (s, b) = server
        .admin(
            Method::POST,
            &format!("/api/v1/market/accounts/{account}/approve"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["state"], "active", "{b}");
    let (s, b) = login(&server, "acme").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["user"]["role"], "supplier", "{b}");
    assert_eq!(b["user"]["tenant"], "acme", "{b}");
    let supplier = b["token"].as_str().unwrap().to_string();

    // The supplier's own site (its tenant owns it; a listing may only use a site the
    // supplier owns), joined by two real agent processes with two emulated GPUs each,
    // their lease accounts reached through the test's sshd.
    let (s, b) = server
        .call(
            Method::POST,
            "/api/v1/sites",
            Some(&supplier),
            Some(site("acme-sz")),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let join = server.join_token("acme-sz").await;
    let port = sshd.port.to_string();
    let host_key_pub = host_key.with_extension("pub");
    let mut agents = Vec::new();
    let mut agent_logs = Vec::new();
    for node in ["n1", "n2"] {
        let state = dir.join(format!("{node}-state"));
        let (work, homes) = (
            dir.join(format!("{node}-work")),
            dir.join(format!("{node}-homes")),
        );
        let log = dir.join(format!("{node}.log"));
        let args = [
            "--server",
            &server.base,
            "--join",
            &join,
            "--site",
            "acme-sz",
            "--name",
            node,
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
        // The agent first: a tuple drops in order, so the agent stops before its
        // accounts are deleted, whatever the outcome.
        agents.push((Agent::start_args(&args, &log), Accounts(state.clone())));
        agent_logs.push(log);
    }
    let mut joined: Vec<String> = wait_nodes(&server, 2)
        .await
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect();
    joined.sort();
    assert_eq!(joined, ["n1", "n2"]);

    // The supplier publishes a class A listing of the cards of both nodes: it gets a
    // CPcId, and every card shows its state.
    let listing = json!({
        "class": "a", "resource_type": "gpu", "model": "A100 80GB", "card_memory_gib": 80,
        "memory_gib": 64, "vcpus": 8, "prices": {"hourly_minor": HOURLY},
        "vendor": "Acme Cloud", "region": "深圳市",
        "storage": [{"kind": "nvme_ssd", "role": "data", "size_gb": 100}],
        "site": "acme-sz", "usage": "ssh as shown on the lease",
        "cards": [
            {"node": "n1", "index": 0}, {"node": "n1", "index": 1},
            {"node": "n2", "index": 0}, {"node": "n2", "index": 1}
        ]
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
    assert!(cpcid.starts_with("CPC-"), "{l}");
    assert_eq!(l["supplier"], "acme", "{l}");
    assert_eq!(l["spec"]["class"], "a", "{l}");
    let cards: Vec<(String, u64)> = l["cards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["node"].as_str().unwrap().to_string(),
                c["index"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        cards,
        [("n1", 0), ("n1", 1), ("n2", 0), ("n2", 1)].map(|(n, i)| (n.to_string(), i))
    );
    assert_eq!(states(&l), ["idle"; 4], "{l}");

    // The user registers, activates with the code the SMTP server received, logs in, and
    // is topped up by an operator.
    let (s, b) = register(
        &server,
        individual("ann", "ann@lab.cn", "44030419900307123X"),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = activate(&server, "ann", &smtp.code_for("ann@lab.cn", 1)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["state"], "active", "{b}");
    let (s, b) = login(&server, "ann").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["user"]["role"], "user", "{b}");
    let ann = b["token"].as_str().unwrap().to_string();
    let listing_of = |token: String| {
        let server = &server;
        let path = format!("/api/v1/market/listings/{cpcid}");
        async move {
            let (s, b) = server.call(Method::GET, &path, Some(&token), None).await;
            assert_eq!(s, StatusCode::OK, "{b}");
            b
        }
    };
    assert_eq!(states(&listing_of(ann.clone()).await), ["idle"; 4]);
    let (s, bal) = server
        .admin(
            Method::POST,
            "/api/v1/billing/topups",
            Some(json!({"tenant": "ann", "amount_minor": 1_000_000})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{bal}");

    // The user finds it by class, model, mode and price.
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

    // One card by the hour, the second node's second card by the number the user sees, so
    // that the second agent makes the account and the card's index is not the first;
    // the supplier's code and the user's key open it.
    let seen = listing_of(ann.clone()).await;
    let wanted = seen["cards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["node"] == "n2" && c["index"] == 1)
        .unwrap_or_else(|| panic!("{seen}"))["id"]
        .clone();
    let (s, placed) = server
        .call(
            Method::POST,
            "/api/v1/market/orders",
            Some(&ann),
            Some(json!({"listing": cpcid, "card_ids": [wanted], "mode": "hourly"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{placed}");
    let lease = &placed["lease"];
    assert_eq!(lease["cards"].as_array().map(Vec::len), Some(1), "{placed}");
    assert_eq!(lease["cards"][0]["node"], "n2", "{placed}");
    assert_eq!(lease["cards"][0]["index"], 1, "{placed}");
    assert_eq!(lease["state"], "awaiting_access", "{placed}");
    let id = lease["id"].as_u64().unwrap();
    let node = lease["cards"][0]["node"].as_str().unwrap().to_string();
    let gpu = lease["cards"][0]["index"].as_u64().unwrap();
    let leased = cards
        .iter()
        .position(|c| c.0 == node && c.1 == gpu)
        .unwrap_or_else(|| panic!("{placed}"));
    let mut reserved = vec!["idle".to_string(); 4];
    reserved[leased] = "reserved".into();
    assert_eq!(
        states(&listing_of(ann.clone()).await),
        reserved,
        "held for the code"
    );
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
    let shown = wait_lease(&server, &ann, id, &agent_logs, "no SSH access", |l| {
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
    let mut busy = vec!["idle".to_string(); 4];
    busy[leased] = "busy".into();
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
    if let Err(why) = gpu_nodes::v1_devices_hierarchy() {
        assert_eq!(access["isolation"]["gpus"], "simulated", "{shown}");
        eprintln!("note: GPU devices are not checked: {why}");
    } else {
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
    let locked = wait_lease(&server, &ann, id, &agent_logs, "account not locked", |l| {
        l["access"]
            .as_str()
            .is_some_and(|a| a.contains(&format!("account {username} on node {node} locked")))
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
    assert_eq!(states(&listing_of(ann.clone()).await), ["idle"; 4]);

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
