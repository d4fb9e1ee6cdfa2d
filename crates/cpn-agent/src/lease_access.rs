//! SSH accounts for class A (bare metal) leases (issue #14, SH-CL-14).
//!
//! For each lease the agent creates a dedicated local account, `cpnl-<lease>`, that only the
//! lease's user can reach: no password (`*`, which matches none), a home under the agent's
//! [`LeaseAccountsConfig::home_root`], and an `authorized_keys` holding the user's one
//! public key behind a forced command (a session's own command runs through it,
//! `SSH_ORIGINAL_COMMAND`). The account's passwd shell is `/bin/sh`, which runs the forced
//! command (`sh -c`) without reading any file of the user's: Debian's bash reads
//! `~/.bashrc` when sshd starts it, even for `-c`, which would run the user's code first.
//! Where the host has a writable cgroup hierarchy the lease gets a cgroup with its CPU,
//! memory and GPU-device share (`isolation::make_group`, as attempts do), and the forced
//! command moves itself into every one of the lease's cgroups before it sets
//! `CUDA_VISIBLE_DEVICES` and `NVIDIA_VISIBLE_DEVICES` to the leased GPUs and execs the
//! client's command or a login shell ([`LeaseAccountsConfig::shell`]).
//! [`LeaseAccounts::sweep`] moves any other process of the account (the v2 case below, and
//! sshd's own per-session process) and stays as a backstop. [`LeaseAccounts::revoke`]
//! locks the account (password `!*`, expired, `nologin`), kills every process of its uid
//! and removes its `authorized_keys`.
//!
//! What is enforced, stated in every [`LeaseAccess::isolation`]:
//! - **GPUs: enforced by the cgroup v1 `devices` controller** where it is writable: the
//!   lease's devices group denies everything (`a`), then allows every block device, every
//!   character major but NVIDIA's 195 (`nvidia-uvm`, `nvidia-uvm-tools`, `nvidia-caps`,
//!   whatever major `/proc/devices` gives them), and of major 195 only the leased
//!   `/dev/nvidiaN` (minor from NVML's `minor_number()` where the driver is loaded, else the
//!   GPU's index: on such hosts the driver numbers the nodes by index), `/dev/nvidiactl`
//!   (195:255) and `/dev/nvidia-modeset` (195:254). (v1 allows a device inside a denied
//!   range only in a default-deny group: in a default-allow one, `devices.allow` of
//!   `c 195:0` after `devices.deny` of `c 195:*` leaves 195:0 denied.) Opening another
//!   GPU's node fails with EPERM, whatever the file's mode. Emulated GPUs have no device
//!   nodes, but the rule holds for major 195 all the same. **Simulated** elsewhere: only the
//!   environment names the leased GPUs (CUDA honours it; the account could open the other
//!   GPUs' nodes). Cgroup v2 has no devices file: it needs a `BPF_PROG_TYPE_CGROUP_DEVICE`
//!   program attached to the lease's cgroup (what systemd's `DeviceAllow=` does), which is
//!   out of the agent's scope.
//! - **Sessions are limited from their first instruction on cgroup v1.** The agent makes
//!   the lease groups' `cgroup.procs` files (and nothing else of them) the account's, so
//!   the forced command can move itself in (v1 asks only for write access to the
//!   destination's `cgroup.procs` and for the process to be the writer's); if any move
//!   fails the session is refused (exit 126, saying why), never run outside the lease's
//!   limits. The account cannot move out (every other group's `cgroup.procs` is root's),
//!   make sub-groups (the directories are root's) or widen its devices (`devices.allow`
//!   and `devices.deny` stay root's, 0644). On v2, moving also needs write access to the
//!   `cgroup.procs` of the common ancestor of both groups (root's), so sessions start in
//!   sshd's cgroup and join at the next sweep (said in the notes). Without a writable
//!   hierarchy the limits are `unavailable`. Accounts created by an older agent (whose
//!   key names only the GPUs) run their sessions as before, joining at the sweep.
//!
//! **Invariants.** The agent touches only accounts it created: one is its own when its
//! lease is in `{state_dir}/lease-accounts.json` *and* its passwd comment is
//! `cpn lease <lease_id>`; a name that exists otherwise is refused, never reused. The
//! record is written before `useradd`, so a crash leaves nothing the next start cannot
//! find. The agent writes into an account's home only when no process of the account can
//! run: at creation (before `authorized_keys` exists) and at revocation (after the lock and
//! the kill), so a symlink the user planted cannot redirect a root write. A revoked lease is
//! never granted again.
//!
//! The calls are blocking (they run `useradd`, `usermod`, `setpriv`) and need root: call
//! them from a blocking thread.

use crate::isolation::{self, Cgroups};
use chrono::{DateTime, Utc};
use cpn_api_types::agent::{
    CgroupMode, Enforcement, LeaseAccess, LeaseAccessGrant, LeaseIsolation, LeaseRevoked,
};
use cpn_api_types::ssh_key::{InvalidPublicKey, PublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::ops::RangeInclusive;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Where lease accounts' homes go by default.
pub const DEFAULT_HOME_ROOT: &str = "/var/lib/cpn-leases";
/// The public host key users are shown by default: the system sshd's ed25519 key.
pub const DEFAULT_HOST_KEY: &str = "/etc/ssh/ssh_host_ed25519_key.pub";
/// uids (and gids) of lease accounts by default: apart from the tasks' range
/// ([`isolation::DEFAULT_TASK_UIDS`]) and from the host's own accounts.
pub const DEFAULT_LEASE_UIDS: RangeInclusive<u32> = 62000..=62999;
/// Processes (threads included) one lease's cgroup may hold: a fork bomb stops here, a
/// parallel build does not.
pub const DEFAULT_LEASE_PIDS_MAX: u32 = 4096;
/// The prefix of every lease account's name.
pub const USERNAME_PREFIX: &str = "cpnl-";
/// The most GPUs one lease names.
pub const MAX_LEASE_GPUS: usize = 64;
const STATE_FILE: &str = "lease-accounts.json";
/// The forced command every lease key runs behind (root's, in the home root).
const SESSION_SCRIPT: &str = ".cpn-lease-session";

/// The forced command, `SESSION GPUS SHELL [CGROUP_DIR...]`: the leased GPUs (`none`: no
/// GPU), the shell sessions run, and the lease's cgroups. It runs as the account, from the
/// account's passwd shell `/bin/sh` (which reads no file of the user's for `-c`), so it is
/// the first thing of every session: it moves itself into each of the lease's cgroups
/// (the agent made their `cgroup.procs` the account's) and refuses the session when one
/// move fails, then names the GPUs and runs what the client asked for.
const SESSION: &str = r#"#!/bin/sh
# Written by the cpn agent: the forced command of lease accounts' keys. It joins the lease's
# cgroups (its limits and GPU devices), names the leased GPUs for CUDA and the NVIDIA
# container runtime, then runs what the client asked for.
gpus="${1:-none}"
# A key written by an older agent names only the GPUs: its sessions run as they did then.
shell="${2:-${SHELL:-/bin/sh}}"
if [ $# -gt 2 ]; then shift 2; else set --; fi
for cgroup in "$@"; do
    if ! echo $$ > "$cgroup/cgroup.procs"; then
        echo "cpn: this session cannot join the lease's cgroup $cgroup, so it is refused rather than run outside the lease's limits; tell the provider" >&2
        exit 126
    fi
done
if [ "$gpus" = none ]; then
    CUDA_VISIBLE_DEVICES=
    NVIDIA_VISIBLE_DEVICES=void
else
    CUDA_VISIBLE_DEVICES="$gpus"
    NVIDIA_VISIBLE_DEVICES="$gpus"
fi
SHELL="$shell"
export CUDA_VISIBLE_DEVICES NVIDIA_VISIBLE_DEVICES SHELL
if [ -n "${SSH_ORIGINAL_COMMAND:-}" ]; then
    exec "$shell" -c "$SSH_ORIGINAL_COMMAND"
fi
exec "$shell" -l
"#;
/// The accounts' passwd shell: it runs the forced command (`sh -c COMMAND`) and reads no
/// startup file of the user's before it. (Debian's bash reads `~/.bashrc` when started by
/// sshd, even for `-c`: a file the user writes would run before the forced command.)
const ACCOUNT_SHELL: &str = "/bin/sh";

/// How lease accounts are set up on this node; [`LeaseAccountsConfig::new`] gives the
/// documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseAccountsConfig {
    /// The agent's state directory; accounts are recorded in
    /// `{state_dir}/lease-accounts.json`.
    pub state_dir: PathBuf,
    /// Parent of the accounts' homes (`{home_root}/{username}`): root's, mode 0755, and
    /// never inside the state directory.
    pub home_root: PathBuf,
    /// What users connect to: the node's SSH host name or address.
    pub ssh_host: String,
    pub ssh_port: u16,
    /// The public half of the sshd host key users will see (its fingerprint is shown).
    pub host_key: PathBuf,
    /// The shell sessions run (the forced command execs it; the account's passwd shell is
    /// `/bin/sh`, see [`LeaseAccounts`]'s module doc).
    pub shell: PathBuf,
    /// uids and gids of lease accounts.
    pub uids: RangeInclusive<u32>,
    /// GPUs the node has (indices `0..n`); a lease naming another is refused. `None`: not
    /// checked.
    pub gpu_count: Option<u32>,
    /// The node's GPUs exist by index only (an emulated node): said in the isolation notes.
    pub emulated_gpus: bool,
    /// Process limit of each lease's cgroup.
    pub pids_max: u32,
}

impl LeaseAccountsConfig {
    /// Homes in [`DEFAULT_HOME_ROOT`], port 22, the ed25519 host key of the system's sshd,
    /// `/bin/bash`, uids [`DEFAULT_LEASE_UIDS`], GPUs unchecked.
    pub fn new(state_dir: impl Into<PathBuf>, ssh_host: impl Into<String>) -> Self {
        LeaseAccountsConfig {
            state_dir: state_dir.into(),
            home_root: PathBuf::from(DEFAULT_HOME_ROOT),
            ssh_host: ssh_host.into(),
            ssh_port: 22,
            host_key: PathBuf::from(DEFAULT_HOST_KEY),
            shell: PathBuf::from("/bin/bash"),
            uids: DEFAULT_LEASE_UIDS,
            gpu_count: None,
            emulated_gpus: false,
            pids_max: DEFAULT_LEASE_PIDS_MAX,
        }
    }
}

/// What can stop a lease account operation; each message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum LeaseAccountError {
    #[error("invalid lease id {0:?}: use 1 to 64 ASCII letters, digits, '.', '_' or '-'")]
    InvalidLeaseId(String),
    #[error(transparent)]
    InvalidPublicKey(#[from] InvalidPublicKey),
    #[error("invalid GPU list: {0}")]
    InvalidGpus(String),
    #[error("invalid share: {0}")]
    InvalidShare(String),
    #[error(
        "lease {lease_id} was revoked at {at}: a revoked lease's account is never opened \
         again; start a new lease"
    )]
    Revoked { lease_id: String, at: DateTime<Utc> },
    #[error(
        "lease {lease_id} already has account {username} with another key, GPUs or share; \
         revoke it first (a lease's access does not change in place)"
    )]
    Conflict { lease_id: String, username: String },
    #[error(
        "the account name {username} for lease {lease_id} is already {by}; the agent never \
         takes over an account it did not create (remove that account or use another lease id)"
    )]
    NameTaken {
        lease_id: String,
        username: String,
        by: String,
    },
    #[error("lease {0} has no account on this node")]
    UnknownLease(String),
    #[error("lease {0} is still active: revoke it before purging its account")]
    StillActive(String),
    #[error(
        "lease accounts need root (to create accounts and end their processes): run the \
         agent as root, or do not offer class A leases on this node"
    )]
    NotRoot,
    #[error("{program} not found: {hint}")]
    MissingTool {
        program: &'static str,
        hint: &'static str,
    },
    #[error("{what} failed ({status}): {stderr}")]
    Command {
        what: String,
        status: String,
        stderr: String,
    },
    #[error(
        "{count} process(es) of {username} survived SIGKILL (stuck in the kernel, state D?); \
         revoke again later"
    )]
    Unkillable { username: String, count: usize },
    /// The host is not set up as the configuration says (the message says what to change).
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Agent(#[from] crate::AgentError),
}

type Result<T, E = LeaseAccountError> = std::result::Result<T, E>;

/// One account the agent created, as recorded in its state directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseAccount {
    pub lease_id: String,
    pub username: String,
    /// `None` until `useradd` has run (a record without a uid is one a crash interrupted).
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub home: PathBuf,
    pub gpus: Vec<u32>,
    pub cpu_cores: f64,
    pub memory_gib: f64,
    /// `SHA256:…` of the user's key, to tell a repeated grant from a changed one.
    pub key_fingerprint: String,
    /// The lease's cgroups (empty without a writable hierarchy).
    #[serde(default)]
    pub cgroups: Vec<PathBuf>,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The lease accounts of one node. Operations take `&mut self`: one at a time.
#[derive(Debug)]
pub struct LeaseAccounts {
    config: LeaseAccountsConfig,
    state_file: PathBuf,
    accounts: BTreeMap<String, LeaseAccount>,
    cgroups: Cgroups,
    setpriv: PathBuf,
    host_key_type: String,
    host_key_fingerprint: String,
}

impl LeaseAccounts {
    /// Checks that this host can hold lease accounts (root, the shadow tools, `setpriv`,
    /// a readable host key, a home root sshd accepts), loads the accounts a previous run
    /// created and writes the forced command.
    pub fn open(config: LeaseAccountsConfig) -> Result<LeaseAccounts> {
        if !nix::unistd::geteuid().is_root() {
            return Err(LeaseAccountError::NotRoot);
        }
        for (program, path) in [
            ("useradd", "/usr/sbin/useradd"),
            ("usermod", "/usr/sbin/usermod"),
            ("userdel", "/usr/sbin/userdel"),
        ] {
            if !Path::new(path).is_file() {
                return Err(LeaseAccountError::MissingTool {
                    program,
                    hint: "install the shadow tools (Debian: passwd)",
                });
            }
        }
        let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or(LeaseAccountError::MissingTool {
                program: "setpriv",
                hint: "install util-linux",
            })?;
        if config.uids.is_empty() || *config.uids.start() < 1000 {
            return Err(LeaseAccountError::Setup(format!(
                "the lease uid range {}-{} must be non-empty and above the system accounts' \
                 (>= 1000)",
                config.uids.start(),
                config.uids.end()
            )));
        }
        let state_dir = std::path::absolute(&config.state_dir)
            .map_err(crate::AgentError::io("resolving", &config.state_dir))?;
        let home_root = std::path::absolute(&config.home_root)
            .map_err(crate::AgentError::io("resolving", &config.home_root))?;
        if home_root.starts_with(&state_dir) || state_dir.starts_with(&home_root) {
            return Err(LeaseAccountError::Setup(format!(
                "the lease home root {} and the state directory {} must not contain each \
                 other: lease users must not reach the agent's state",
                home_root.display(),
                state_dir.display()
            )));
        }
        let printable = home_root.to_str().is_some_and(|s| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
        });
        if !printable {
            return Err(LeaseAccountError::Setup(format!(
                "the lease home root {} may hold only ASCII letters, digits, '/', '.', '_' \
                 and '-' (it is written into authorized_keys options)",
                home_root.display()
            )));
        }
        let key_text = fs::read_to_string(&config.host_key).map_err(|e| {
            LeaseAccountError::Setup(format!(
                "cannot read the sshd host key {}: {e}; point the host key setting at the \
                 .pub file of the key sshd serves",
                config.host_key.display()
            ))
        })?;
        let host_key = PublicKey::parse(key_text.trim()).map_err(|why| {
            LeaseAccountError::Setup(format!(
                "{} is not an OpenSSH public key: {why}",
                config.host_key.display()
            ))
        })?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&state_dir)
            .map_err(crate::AgentError::io("creating", &state_dir))?;
        prepare_home_root(&home_root)?;
        write_root_file(&home_root.join(SESSION_SCRIPT), SESSION.as_bytes(), 0o755)?;
        let state_file = state_dir.join(STATE_FILE);
        let accounts = match fs::read(&state_file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                LeaseAccountError::Setup(format!(
                    "{} is not a lease account record ({e}); it lists the accounts this \
                     agent created: repair it rather than delete it",
                    state_file.display()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(crate::AgentError::io("reading", &state_file)(e).into()),
        };
        Ok(LeaseAccounts {
            config: LeaseAccountsConfig {
                state_dir,
                home_root,
                ..config
            },
            state_file,
            accounts,
            cgroups: isolation::detect_cgroups(),
            setpriv,
            host_key_type: host_key.kind.to_string(),
            host_key_fingerprint: host_key.fingerprint(),
        })
    }

    /// The accounts this agent created (revoked ones included, until purged).
    pub fn list(&self) -> Vec<LeaseAccount> {
        self.accounts.values().cloned().collect()
    }

    /// Creates the lease's account and answers how to reach it. Granting an active lease
    /// again with the same key, GPUs and share answers the same access and changes nothing.
    pub fn grant(&mut self, req: &LeaseAccessGrant) -> Result<LeaseAccess> {
        validate_lease_id(&req.lease_id)?;
        let key = PublicKey::parse(&req.public_key).map_err(InvalidPublicKey)?;
        let gpus = self.validate_gpus(&req.gpus)?;
        validate_share("cpu_cores", req.cpu_cores, 4096.0)?;
        validate_share("memory_gib", req.memory_gib, 1024.0 * 1024.0)?;
        let username = username_for(&req.lease_id);
        let fingerprint = key.fingerprint();
        if let Some(existing) = self.accounts.get(&req.lease_id) {
            if let Some(at) = existing.revoked_at {
                return Err(LeaseAccountError::Revoked {
                    lease_id: req.lease_id.clone(),
                    at,
                });
            }
            let same = existing.key_fingerprint == fingerprint
                && existing.gpus == gpus
                && existing.cpu_cores == req.cpu_cores
                && existing.memory_gib == req.memory_gib;
            if same && existing.uid.is_some() {
                return Ok(self.access(existing));
            }
            if !same {
                return Err(LeaseAccountError::Conflict {
                    lease_id: req.lease_id.clone(),
                    username: existing.username.clone(),
                });
            }
            // A record without a uid: a crash came between the record and useradd. Start
            // over from the record (its account, if useradd did run, is ours by comment).
            let existing = existing.clone();
            self.remove_account(&existing)?;
        }
        if let Some(other) = self
            .accounts
            .values()
            .find(|a| a.username == username && a.lease_id != req.lease_id)
        {
            return Err(LeaseAccountError::NameTaken {
                lease_id: req.lease_id.clone(),
                username,
                by: format!("lease {}'s account", other.lease_id),
            });
        }
        if nix::unistd::User::from_name(&username)
            .ok()
            .flatten()
            .is_some()
        {
            return Err(LeaseAccountError::NameTaken {
                lease_id: req.lease_id.clone(),
                username,
                by: "an account of this host".into(),
            });
        }
        let home = self.config.home_root.join(&username);
        if fs::symlink_metadata(&home).is_ok() {
            return Err(LeaseAccountError::Setup(format!(
                "{} exists but belongs to no account of the agent's; move it away",
                home.display()
            )));
        }
        let mut account = LeaseAccount {
            lease_id: req.lease_id.clone(),
            username: username.clone(),
            uid: None,
            gid: None,
            home: home.clone(),
            gpus,
            cpu_cores: req.cpu_cores,
            memory_gib: req.memory_gib,
            key_fingerprint: fingerprint,
            cgroups: Vec::new(),
            created_at: Utc::now(),
            revoked_at: None,
        };
        // Recorded before useradd: a crash after it leaves an account the next start knows.
        self.accounts.insert(req.lease_id.clone(), account.clone());
        self.save()?;
        match self.create(&mut account, &key) {
            Ok(()) => {
                self.accounts.insert(req.lease_id.clone(), account.clone());
                self.save()?;
                tracing::info!(lease = %req.lease_id, %username, gpus = ?account.gpus, "lease account granted");
                Ok(self.access(&account))
            }
            Err(e) => {
                // Nothing of a failed grant stays: the user never saw the account.
                if let Err(cleanup) = self.remove_account(&account) {
                    tracing::warn!(lease = %req.lease_id, error = %cleanup, "removing a failed lease account");
                }
                self.accounts.remove(&req.lease_id);
                self.save()?;
                Err(e)
            }
        }
    }

    /// Ends the lease's access: locks the account (no new logins), kills every process of
    /// it (sessions included), removes its `authorized_keys` and the lease's cgroups.
    /// Idempotent: revoking again repeats the lock and the kill and says it was revoked
    /// already; an unknown lease reports no account.
    pub fn revoke(&mut self, lease_id: &str) -> Result<LeaseRevoked> {
        validate_lease_id(lease_id)?;
        let Some(mut account) = self.accounts.get(lease_id).cloned() else {
            return Ok(LeaseRevoked {
                lease_id: lease_id.to_string(),
                ..LeaseRevoked::default()
            });
        };
        let already_revoked = account.revoked_at.is_some();
        if !already_revoked {
            // Recorded first: once asked, the lease never opens again, whatever fails below.
            account.revoked_at = Some(Utc::now());
            self.accounts.insert(lease_id.to_string(), account.clone());
            self.save()?;
        }
        let mut report = LeaseRevoked {
            lease_id: lease_id.to_string(),
            username: Some(account.username.clone()),
            already_revoked,
            ..LeaseRevoked::default()
        };
        let Some((uid, gid)) = self.owned_ids(&account) else {
            // useradd never ran (or someone else removed the account): nothing can log in.
            report.locked = true;
            return Ok(report);
        };
        // Lock before killing, so nothing logs in again between the two.
        run(
            Command::new("/usr/sbin/usermod")
                .args(["--lock", "--expiredate", "1", "--shell"])
                .arg(nologin())
                .arg(&account.username),
            &format!("locking {}", account.username),
        )?;
        report.locked = true;
        report.processes_killed = self.kill_all(&account, uid, gid)?;
        // Every process of the account is gone: nothing of it can swap a path under us now.
        for name in ["authorized_keys", "authorized_keys2"] {
            let ssh = account.home.join(".ssh");
            if is_real_dir(&account.home) && is_real_dir(&ssh) {
                match fs::remove_file(ssh.join(name)) {
                    Ok(()) => report.authorized_keys_removed |= name == "authorized_keys",
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(crate::AgentError::io("removing", ssh.join(name))(e).into());
                    }
                }
            }
        }
        if !isolation::remove_cgroups(&account.cgroups) {
            tracing::warn!(
                lease = lease_id,
                "lease cgroups still busy; removed at purge"
            );
        }
        tracing::info!(lease = lease_id, username = %account.username, killed = report.processes_killed, "lease account revoked");
        Ok(report)
    }

    /// Deletes a revoked lease's account and home for good (after the data the user may
    /// fetch is no longer kept); forgets the lease.
    pub fn purge(&mut self, lease_id: &str) -> Result<()> {
        validate_lease_id(lease_id)?;
        let account = self
            .accounts
            .get(lease_id)
            .cloned()
            .ok_or_else(|| LeaseAccountError::UnknownLease(lease_id.to_string()))?;
        if account.revoked_at.is_none() {
            return Err(LeaseAccountError::StillActive(lease_id.to_string()));
        }
        self.revoke(lease_id)?;
        self.remove_account(&account)?;
        self.accounts.remove(lease_id);
        self.save()
    }

    /// Moves every process of the active accounts into their lease's cgroups; returns how
    /// many moved. Sessions start in sshd's cgroup: until this runs they are not limited.
    pub fn sweep(&self) -> usize {
        let mut moved = 0;
        for account in self.accounts.values() {
            if account.revoked_at.is_some() || account.cgroups.is_empty() {
                continue;
            }
            let Some(uid) = account.uid else { continue };
            for pid in processes_of(uid) {
                let mut all = true;
                for dir in &account.cgroups {
                    if in_cgroup(pid, dir) {
                        continue;
                    }
                    all &= fs::write(dir.join("cgroup.procs"), pid.to_string()).is_ok();
                }
                moved += usize::from(all);
            }
        }
        moved
    }

    /// After a restart: revokes every active account whose lease is not in `live` (the
    /// leases the server says are active on this node), and repeats the revocation of the
    /// revoked ones (a crash may have come between the lock and the kill). Returns what
    /// each revocation did.
    pub fn reconcile(&mut self, live: &BTreeSet<String>) -> Result<Vec<LeaseRevoked>> {
        let ids: Vec<String> = self
            .accounts
            .values()
            .filter(|a| a.revoked_at.is_some() || !live.contains(&a.lease_id))
            .map(|a| a.lease_id.clone())
            .collect();
        ids.iter().map(|id| self.revoke(id)).collect()
    }

    /// The lease's access as the user sees it.
    pub fn access(&self, account: &LeaseAccount) -> LeaseAccess {
        LeaseAccess {
            lease_id: account.lease_id.clone(),
            host: self.config.ssh_host.clone(),
            port: self.config.ssh_port,
            username: account.username.clone(),
            host_key_fingerprint: self.host_key_fingerprint.clone(),
            host_key_type: self.host_key_type.clone(),
            gpus: account.gpus.clone(),
            isolation: self.isolation(account),
        }
    }

    fn isolation(&self, account: &LeaseAccount) -> LeaseIsolation {
        let (mode, controllers) = self.cgroups.mode();
        let placed = !account.cgroups.is_empty();
        let mut notes = Vec::new();
        let gpus = if placed && self.cgroups.gpus_enforced() {
            Enforcement::Enforced
        } else {
            notes.push(if account.gpus.is_empty() {
                "gpus: simulated: CUDA_VISIBLE_DEVICES is empty in sessions, but no devices \
                 cgroup keeps the account from the GPUs' device nodes"
                    .to_string()
            } else {
                format!(
                    "gpus: simulated: sessions see CUDA_VISIBLE_DEVICES={} (set by the key's \
                     forced command), but no devices cgroup keeps the account from the other \
                     GPUs' device nodes (cgroup v2 would need a BPF device program, which the \
                     agent does not attach)",
                    join(&account.gpus)
                )
            });
            Enforcement::Simulated
        };
        if self.config.emulated_gpus {
            notes.push("gpus: this node's GPUs are emulated: no device stands behind them".into());
        }
        let mut limit = |what: &str, asked: f64, controller: &str| {
            if asked <= 0.0 {
                notes.push(format!("{what}: the lease names no {what} share"));
                Enforcement::Unavailable
            } else if placed && controllers.contains(&controller) {
                Enforcement::Enforced
            } else {
                notes.push(format!(
                    "{what}: unavailable: no writable cgroup hierarchy with the {controller} \
                     controller on this node"
                ));
                Enforcement::Unavailable
            }
        };
        let cpu = limit("cpu", account.cpu_cores, "cpu");
        let memory = limit("memory", account.memory_gib, "memory");
        if placed && !self.cgroups.self_join() {
            notes.push(
                "cgroup: sessions join the lease's cgroup when the agent sweeps, not at login"
                    .into(),
            );
        }
        LeaseIsolation {
            gpus,
            cpu,
            memory,
            cgroup: if placed { mode } else { CgroupMode::None },
            notes,
        }
    }

    fn validate_gpus(&self, gpus: &[u32]) -> Result<Vec<u32>> {
        if gpus.len() > MAX_LEASE_GPUS {
            return Err(LeaseAccountError::InvalidGpus(format!(
                "{} GPUs named, at most {MAX_LEASE_GPUS}",
                gpus.len()
            )));
        }
        let set: BTreeSet<u32> = gpus.iter().copied().collect();
        if set.len() != gpus.len() {
            return Err(LeaseAccountError::InvalidGpus(format!(
                "{gpus:?} names a GPU twice"
            )));
        }
        if let Some(n) = self.config.gpu_count
            && let Some(bad) = set.iter().find(|g| **g >= n)
        {
            return Err(LeaseAccountError::InvalidGpus(format!(
                "GPU {bad} is not on this node, which has GPUs 0..{n}"
            )));
        }
        Ok(set.into_iter().collect())
    }

    /// useradd, home, key, cgroups. The account can log in once authorized_keys exists,
    /// which is written last.
    fn create(&self, account: &mut LeaseAccount, key: &PublicKey) -> Result<()> {
        let (lo, hi) = (self.config.uids.start(), self.config.uids.end());
        run(
            Command::new("/usr/sbin/useradd")
                .arg("--comment")
                .arg(comment(&account.lease_id))
                .arg("--home-dir")
                .arg(&account.home)
                .arg("--no-create-home")
                .args(["--shell", ACCOUNT_SHELL])
                .arg("--user-group")
                // '*' matches no password; '!' would lock the account for sshd without PAM.
                .args(["--password", "*"])
                .args(["--key", &format!("UID_MIN={lo}")])
                .args(["--key", &format!("UID_MAX={hi}")])
                .args(["--key", &format!("GID_MIN={lo}")])
                .args(["--key", &format!("GID_MAX={hi}")])
                .arg(&account.username),
            &format!("creating account {}", account.username),
        )?;
        let user = nix::unistd::User::from_name(&account.username)
            .ok()
            .flatten()
            .ok_or_else(|| {
                LeaseAccountError::Setup(format!(
                    "useradd created {} but the system does not find it",
                    account.username
                ))
            })?;
        let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
        account.uid = Some(uid);
        account.gid = Some(gid);
        // A uid freed by a deleted account may still have processes; they would become
        // the lease user's and could race the writes below.
        let strays = processes_of(uid);
        if !strays.is_empty() {
            return Err(LeaseAccountError::Setup(format!(
                "uid {uid}, given to {} by useradd, still has processes {strays:?} of a                  deleted account; end them or narrow the lease uid range",
                account.username
            )));
        }
        let ssh = account.home.join(".ssh");
        for dir in [&account.home, &ssh] {
            fs::DirBuilder::new()
                .mode(0o700)
                .create(dir)
                .map_err(crate::AgentError::io("creating", dir))?;
            std::os::unix::fs::chown(dir, Some(uid), Some(gid))
                .map_err(crate::AgentError::io("chown", dir))?;
        }
        account.cgroups = isolation::make_group(
            &self.cgroups,
            &format!("lease@{}", account.username),
            isolation::Share {
                cpu_cores: account.cpu_cores,
                memory_gib: account.memory_gib,
                pids_max: self.config.pids_max,
                gpus: &account.gpus,
            },
        )
        .map_err(LeaseAccountError::Setup)?;
        // Sessions join the groups themselves where the hierarchy lets them; elsewhere
        // the sweep moves them.
        let joined: &[PathBuf] = if self.cgroups.self_join() {
            isolation::let_join(&account.cgroups, uid).map_err(|e| {
                LeaseAccountError::Setup(format!(
                    "cannot let {} join its lease's cgroups: {e}",
                    account.username
                ))
            })?;
            &account.cgroups
        } else {
            &[]
        };
        let gpus = if account.gpus.is_empty() {
            "none".to_string()
        } else {
            join(&account.gpus)
        };
        let mut command = vec![
            self.config.home_root.join(SESSION_SCRIPT),
            PathBuf::from(gpus),
            self.config.shell.clone(),
        ];
        command.extend(joined.iter().cloned());
        let command = command
            .iter()
            .map(|p| {
                p.to_str().filter(|s| shell_word(s)).ok_or_else(|| {
                    LeaseAccountError::Setup(format!(
                        "{} may hold only ASCII letters, digits and '/', '.', '_', '-', \
                         ',', '@', '+', ':' (it is a word of the key's forced command)",
                        p.display()
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?
            .join(" ");
        // The user's comment is dropped: only the type and the key (base64) are theirs.
        let line = format!(
            "command=\"{command}\",no-agent-forwarding,no-X11-forwarding,no-user-rc {} {} {}\n",
            key.kind,
            key.base64,
            comment(&account.lease_id).replace(' ', "-"),
        );
        let path = ssh.join("authorized_keys");
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
            .map_err(crate::AgentError::io("creating", &path))?;
        f.write_all(line.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(crate::AgentError::io("writing", &path))?;
        std::os::unix::fs::chown(&path, Some(uid), Some(gid))
            .map_err(crate::AgentError::io("chown", &path))?;
        Ok(())
    }

    /// The account's uid and gid when the host's account of that name is the one the
    /// agent created (its comment names the lease).
    fn owned_ids(&self, account: &LeaseAccount) -> Option<(u32, u32)> {
        let user = nix::unistd::User::from_name(&account.username)
            .ok()
            .flatten()?;
        let gecos = user.gecos.to_string_lossy().into_owned();
        (gecos == comment(&account.lease_id)).then(|| (user.uid.as_raw(), user.gid.as_raw()))
    }

    /// SIGKILL to every process of the uid, as the uid itself (`kill -1` reaches exactly
    /// the processes it may signal, atomically in the kernel, so a forking loop cannot
    /// outrun it), until none is left; returns how many there were.
    fn kill_all(&self, account: &LeaseAccount, uid: u32, gid: u32) -> Result<u32> {
        let mut seen = BTreeSet::new();
        for round in 0..50u32 {
            let live = processes_of(uid);
            if live.is_empty() {
                return Ok(u32::try_from(seen.len()).unwrap_or(u32::MAX));
            }
            seen.extend(live);
            isolation::kill_cgroups(&account.cgroups);
            let _ = Command::new(&self.setpriv)
                .arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .args([
                    "--clear-groups",
                    "--",
                    "/bin/kill",
                    "-s",
                    "KILL",
                    "--",
                    "-1",
                ])
                .env_clear()
                .output();
            std::thread::sleep(Duration::from_millis(5 * u64::from(round.min(20) + 1)));
        }
        Err(LeaseAccountError::Unkillable {
            username: account.username.clone(),
            count: processes_of(uid).len(),
        })
    }

    /// Deletes the host account (if it is ours) and the home, and the cgroups.
    fn remove_account(&self, account: &LeaseAccount) -> Result<()> {
        if self.owned_ids(account).is_some() {
            run(
                Command::new("/usr/sbin/userdel").arg(&account.username),
                &format!("deleting account {}", account.username),
            )?;
        }
        isolation::kill_cgroups(&account.cgroups);
        isolation::remove_cgroups(&account.cgroups);
        // The home lies in the root-owned home root: its own path cannot be a user's link.
        if account.home.parent() == Some(self.config.home_root.as_path())
            && is_real_dir(&account.home)
        {
            fs::remove_dir_all(&account.home)
                .map_err(crate::AgentError::io("removing", &account.home))?;
        }
        Ok(())
    }

    fn save(&self) -> Result<()> {
        let json = serde_json::to_vec_pretty(&self.accounts).map_err(|source| {
            crate::AgentError::Json {
                what: "lease accounts",
                source,
            }
        })?;
        crate::runner::write_durable(&self.state_file, &json)?;
        Ok(())
    }
}

/// Whether the state directory records lease accounts (of this run or an earlier one):
/// an agent that never granted a lease need not open [`LeaseAccounts`] (which needs root).
pub fn recorded(state_dir: &Path) -> bool {
    state_dir.join(STATE_FILE).is_file()
}

/// The account name of a lease: `cpnl-` and the lease id itself where it is a valid,
/// short, lower-case name (readable in `ps` and `who`), else `cpnl-x` and 16 hex digits of
/// its SHA-256. Two leases that would share a name are refused by `grant`, never merged.
pub fn username_for(lease_id: &str) -> String {
    let plain = !lease_id.is_empty()
        && lease_id.len() <= 26
        && !lease_id.starts_with('x')
        && lease_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if plain {
        format!("{USERNAME_PREFIX}{lease_id}")
    } else {
        let digest = Sha256::digest(lease_id.as_bytes());
        format!("{USERNAME_PREFIX}x{}", &hex::encode(digest)[..16])
    }
}

fn validate_lease_id(id: &str) -> Result<()> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(LeaseAccountError::InvalidLeaseId(
            id.chars().take(80).collect(),
        ))
    }
}

fn validate_share(what: &str, v: f64, max: f64) -> Result<()> {
    if v.is_finite() && (0.0..=max).contains(&v) {
        Ok(())
    } else {
        Err(LeaseAccountError::InvalidShare(format!(
            "{what} must be between 0 and {max}, got {v}"
        )))
    }
}

fn comment(lease_id: &str) -> String {
    format!("cpn lease {lease_id}")
}

fn join(gpus: &[u32]) -> String {
    gpus.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether `s` is one word to `sh -c`, as the key's forced command is run: nothing the
/// shell would split, quote or expand.
fn shell_word(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-,@+:".contains(&b))
}

fn nologin() -> &'static str {
    ["/usr/sbin/nologin", "/sbin/nologin"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .unwrap_or("/bin/false")
}

fn is_real_dir(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
}

/// Runs a tool; its stderr is the error.
fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| LeaseAccountError::Command {
            what: what.to_string(),
            status: "not started".into(),
            stderr: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LeaseAccountError::Command {
            what: what.to_string(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// The live (not zombie) processes whose real or effective uid is `uid`.
fn processes_of(uid: u32) -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
                return false;
            };
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(str::trim)
                    .unwrap_or("")
                    .to_string()
            };
            let zombie = field("State:").starts_with('Z');
            let ids: Vec<u32> = field("Uid:")
                .split_whitespace()
                .take(2)
                .filter_map(|s| s.parse().ok())
                .collect();
            !zombie && ids.contains(&uid)
        })
        .collect()
}

/// Whether the process is in the cgroup `dir` (by the path below its hierarchy's mount).
fn in_cgroup(pid: i32, dir: &Path) -> bool {
    fs::read_to_string(dir.join("cgroup.procs"))
        .is_ok_and(|s| s.lines().any(|l| l.trim() == pid.to_string()))
}

/// The home root: root's, 0755 (sshd's StrictModes refuses homes under a directory others
/// can write; the accounts must be able to pass through it to their homes).
fn prepare_home_root(root: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(root)
        .map_err(crate::AgentError::io("creating", root))?;
    let meta = fs::symlink_metadata(root).map_err(crate::AgentError::io("reading", root))?;
    if !meta.is_dir() || meta.uid() != 0 {
        return Err(LeaseAccountError::Setup(format!(
            "the lease home root {} must be a directory owned by root",
            root.display()
        )));
    }
    fs::set_permissions(root, fs::Permissions::from_mode(0o755))
        .map_err(crate::AgentError::io("chmod", root))?;
    for dir in root.ancestors().skip(1) {
        let m = fs::metadata(dir).map_err(crate::AgentError::io("reading", dir))?;
        if m.permissions().mode() & 0o001 == 0 {
            return Err(LeaseAccountError::Setup(format!(
                "lease accounts cannot reach their homes under {}: {} is mode {:o} (others \
                 need search permission, o+x); choose another home root",
                root.display(),
                dir.display(),
                m.permissions().mode() & 0o7777
            )));
        }
    }
    Ok(())
}

/// Writes a root-owned file that accounts may read but not change (the forced command).
fn write_root_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    if fs::read(path).is_ok_and(|b| b == bytes)
        && fs::symlink_metadata(path)
            .is_ok_and(|m| m.is_file() && m.uid() == 0 && m.mode() & 0o7777 == mode)
    {
        return Ok(());
    }
    crate::runner::write_durable(path, bytes)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(crate::AgentError::io("chmod", path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use cpn_api_types::ssh_key::{MAX_PUBLIC_KEY_LEN, public_key_fingerprint};

    // Generated with ssh-keygen for these tests; only their public halves are here.
    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICitm0VaZggGj4FDbv0sDw95+tsK66nL6DbVUmWFnKcM alice@laptop";

    #[test]
    fn a_plain_key_line_parses_and_keeps_no_comment() {
        let k = PublicKey::parse(ED25519).unwrap();
        assert_eq!(k.kind, "ssh-ed25519");
        assert!(!k.base64.contains("alice"));
        // As `ssh-keygen -l -E sha256 -f` printed it for this key.
        assert_eq!(
            k.fingerprint(),
            "SHA256:4DTOSwYbIJJ7ggc6+RGHBhY1WhKipeeZYt5Z/9lwpd4"
        );
        assert_eq!(public_key_fingerprint(ED25519).unwrap(), k.fingerprint());
        // A trailing newline, as `cat id.pub` gives, is fine.
        assert_eq!(PublicKey::parse(&format!("{ED25519}\n")).unwrap(), k);
    }

    #[test]
    fn option_injection_and_extra_lines_are_refused() {
        for bad in [
            format!("command=\"/bin/sh\" {ED25519}"),
            format!("environment=\"CUDA_VISIBLE_DEVICES=0\",no-pty {ED25519}"),
            format!("{ED25519}\ncommand=\"id\" {ED25519}"),
            format!("{ED25519}\rfoo"),
            format!("{ED25519} \u{0}"),
            "ssh-dss AAAAB3NzaC1kc3MAAACBAP".into(),
            "ssh-ed25519 !!notbase64".into(),
            // The blob says ssh-rsa while the line says ssh-ed25519.
            "ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAAAAQC7".into(),
            String::new(),
            "x".repeat(MAX_PUBLIC_KEY_LEN + 1),
        ] {
            assert!(PublicKey::parse(&bad).is_err(), "accepted {bad:?}");
        }
        let why = PublicKey::parse(&format!("command=\"/bin/sh\" {ED25519}")).unwrap_err();
        assert!(why.contains("options"), "{why}");
    }

    #[test]
    fn a_short_rsa_key_is_refused() {
        // A 1024-bit RSA key (public half).
        let mut blob = Vec::new();
        for part in [&b"ssh-rsa"[..], &[1, 0, 1], &[0x80; 128]] {
            blob.extend_from_slice(&(part.len() as u32).to_be_bytes());
            blob.extend_from_slice(part);
        }
        let line = format!(
            "ssh-rsa {}",
            base64::engine::general_purpose::STANDARD.encode(&blob)
        );
        let why = PublicKey::parse(&line).unwrap_err();
        assert!(why.contains("1024 bits"), "{why}");
    }

    #[test]
    fn usernames_are_prefixed_valid_and_distinct() {
        assert_eq!(username_for("42"), "cpnl-42");
        assert_eq!(username_for("lease-7"), "cpnl-lease-7");
        let hashed = username_for("L-00042");
        assert!(
            hashed.starts_with("cpnl-x") && hashed.len() == 22,
            "{hashed}"
        );
        assert_ne!(username_for("L-00042"), username_for("l-00042"));
        // A plain id that starts like a hashed name is hashed too, so the forms never meet.
        assert!(username_for("x0123").starts_with("cpnl-x") && username_for("x0123").len() == 22);
        for id in ["42", "L-00042", &"a".repeat(64), "x"] {
            let u = username_for(id);
            assert!(u.len() <= 32, "{u}");
            assert!(
                u.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            );
        }
    }

    #[test]
    fn lease_ids_are_bounded() {
        assert!(validate_lease_id("L-42.a_b").is_ok());
        for bad in ["", "a b", "a/b", "../x", &"a".repeat(65), "ü"] {
            assert!(validate_lease_id(bad).is_err(), "{bad:?}");
        }
    }
}
