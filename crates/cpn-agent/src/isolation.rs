//! Keeping tasks apart from the platform and from each other (Linux).
//!
//! - **Identity.** An agent running as root runs each tenant's attempts as an unprivileged
//!   uid/gid of its own, taken from a configured range ([`DEFAULT_TASK_UIDS`]) and kept in
//!   `{state_dir}/identities.json` so that it is stable on the node. No passwd entry is
//!   needed or written. An agent that is not root cannot switch identities: it runs only
//!   its own tenant's attempts (the tenant of the credential it registered with), unless
//!   started single-user.
//! - **Working directory.** `{work_root}/{attempt_id}`, outside every state directory,
//!   owned by the task's identity, mode 0700; `HOME` points there. The work root itself is
//!   0711 (reachable, not listable) when identities switch, 0700 otherwise.
//! - **Environment.** Nothing of the agent's: `PATH` (default [`DEFAULT_PATH`]), `HOME`,
//!   the task's own `env`, then `CPN_TASK_ID`, `CPN_ATTEMPT_ID`, `CPN_ATTEMPT`,
//!   `CPN_TENANT` and, with GPUs, `CUDA_VISIBLE_DEVICES`.
//! - **Limits.** One cgroup per attempt (`<hierarchy>/cpn/<attempt_id>`): memory from
//!   `memory_gib`, CPU from `cpu_cores` (CFS quota), processes from [`DEFAULT_PIDS_MAX`].
//!   v2 where the unified hierarchy offers the controllers, v1 controllers otherwise, none
//!   when neither is writable (reported as `none`). The OOM killer acting in the attempt's
//!   cgroup ends it with [`EndReason::Oom`].
//! - **GPUs.** Where the v1 `devices` controller is writable, each attempt's devices group
//!   lets it open only its own GPUs' `/dev/nvidiaN` of NVIDIA's major 195 (plus
//!   `nvidiactl` and `nvidia-modeset`; every other device stays open): see
//!   `make_group`'s rules and `lease_access`, which share them. The node reports GPUs
//!   `enforced` then, and `simulated` otherwise (`CUDA_VISIBLE_DEVICES` only; cgroup v2
//!   would need a BPF device program, which the agent does not attach). An attempt without
//!   GPUs opens none.

use crate::error::AgentError;
use cpn_api_types::agent::{CgroupMode, Enforcement, NodeIsolation};
use cpn_api_types::schedule::TaskResources;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::fs;
use std::ops::RangeInclusive;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The uids (and gids, the same numbers) tasks run as by default. Pick a range that no
/// account of the host uses.
pub const DEFAULT_TASK_UIDS: RangeInclusive<u32> = 61000..=61999;
/// Where attempts' working directories go when the agent is root.
pub const DEFAULT_WORK_ROOT: &str = "/var/lib/cpn-work";
/// `PATH` of a task that does not set its own.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// Processes (and threads) one attempt may have at once: a fork bomb stops here.
pub const DEFAULT_PIDS_MAX: u32 = 512;
/// The CFS period the CPU quota is expressed in.
const CPU_PERIOD_US: u64 = 100_000;
const IDENTITIES_FILE: &str = "identities.json";

/// How an agent isolates its tasks; [`Default`] is the documented default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsolationConfig {
    /// uids (and gids) for tenants' identities, used when the agent is root.
    pub task_uids: RangeInclusive<u32>,
    /// Parent of the attempts' working directories; `None`: [`DEFAULT_WORK_ROOT`] as root,
    /// `$TMPDIR/cpn-work-<uid>` otherwise.
    pub work_root: Option<PathBuf>,
    /// Without root: run every tenant's tasks as the agent's own user.
    pub single_user: bool,
    /// Process limit of each attempt.
    pub pids_max: u32,
    /// Where tenants' identities are kept; `None`: `{state_dir}/identities.json`. Agents
    /// of one process that share `task_uids` (the local and emulated nodes of `cpn serve`)
    /// must share this file too, or two tenants could get the same uid on one host.
    pub identities_file: Option<PathBuf>,
}

impl Default for IsolationConfig {
    fn default() -> Self {
        IsolationConfig {
            task_uids: DEFAULT_TASK_UIDS,
            work_root: None,
            single_user: false,
            pids_max: DEFAULT_PIDS_MAX,
            identities_file: None,
        }
    }
}

/// Held while an identity is given out, so agents of one process sharing an identities
/// file never give one uid to two tenants.
static IDENTITIES: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn read_identities(file: &Path) -> BTreeMap<String, u32> {
    fs::read(file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Parses `FIRST-LAST` (inclusive) for `--task-uid-range`.
pub fn parse_uid_range(s: &str) -> Result<RangeInclusive<u32>, String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("expected FIRST-LAST, like 61000-61999, got {s:?}"))?;
    let parse = |x: &str| {
        x.trim()
            .parse::<u32>()
            .map_err(|_| format!("{x:?} is not a uid"))
    };
    let (a, b) = (parse(a)?, parse(b)?);
    if a == 0 || a > b {
        return Err(format!(
            "the range {s:?} must be FIRST-LAST with 0 < FIRST <= LAST"
        ));
    }
    Ok(a..=b)
}

/// An identity a task runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    pub uid: u32,
    pub gid: u32,
}

/// One cgroup hierarchy's directory for the attempts (`<mount>/cpn`).
#[derive(Debug, Clone)]
pub(crate) enum Cgroups {
    /// The unified hierarchy: one directory per attempt.
    V2 {
        base: PathBuf,
        controllers: Vec<&'static str>,
    },
    /// v1: one directory per controller and attempt.
    V1 {
        bases: Vec<(&'static str, PathBuf)>,
        /// The device minor of each GPU index, for the `devices` controller's rules.
        gpu_minors: GpuMinors,
    },
    None,
}

/// What the runner does to isolate attempts, found once at start.
#[derive(Debug)]
pub(crate) struct Isolation {
    /// The agent is root: identities switch.
    uid_switch: bool,
    setpriv: Option<PathBuf>,
    task_uids: RangeInclusive<u32>,
    identities_file: PathBuf,
    identities: BTreeMap<String, u32>,
    work_root: PathBuf,
    cgroups: Cgroups,
    single_user: bool,
    pids_max: u32,
    /// The tenant of the agent's credential, once registered.
    own_tenant: Option<String>,
}

impl Isolation {
    /// Finds what this host allows: root or not, a usable cgroup hierarchy; prepares the
    /// work root. Fails when the setup cannot isolate as promised (no `setpriv` as root, a
    /// work root inside the state directory or out of the tasks' reach).
    pub fn detect(config: &IsolationConfig, state_dir: &Path) -> Result<Isolation, AgentError> {
        let uid_switch = nix::unistd::geteuid().is_root();
        let my_uid = nix::unistd::geteuid().as_raw();
        let work_root = match &config.work_root {
            Some(w) => absolute(w)?,
            None if uid_switch => PathBuf::from(DEFAULT_WORK_ROOT),
            None => std::env::temp_dir().join(format!("cpn-work-{my_uid}")),
        };
        let state_abs = absolute(state_dir)?;
        if work_root.starts_with(&state_abs) || state_abs.starts_with(&work_root) {
            return Err(AgentError::Isolation(format!(
                "the work root {} and the state directory {} must not contain each other: \
                 tasks must not reach the agent's state",
                work_root.display(),
                state_abs.display()
            )));
        }
        prepare_work_root(&work_root, uid_switch, my_uid)?;
        let setpriv = if uid_switch {
            Some(
                ["/usr/bin/setpriv", "/bin/setpriv", "/usr/sbin/setpriv"]
                    .iter()
                    .map(PathBuf::from)
                    .find(|p| p.is_file())
                    .ok_or_else(|| {
                        AgentError::Isolation(
                            "setpriv (util-linux) is needed to run tasks as their tenants' \
                             identities; install util-linux"
                                .into(),
                        )
                    })?,
            )
        } else {
            None
        };
        let identities_file = match &config.identities_file {
            Some(f) => {
                let f = absolute(f)?;
                if let Some(dir) = f.parent() {
                    fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(dir)
                        .map_err(AgentError::io("creating", dir))?;
                }
                f
            }
            None => state_dir.join(IDENTITIES_FILE),
        };
        let identities = read_identities(&identities_file);
        Ok(Isolation {
            uid_switch,
            setpriv,
            task_uids: config.task_uids.clone(),
            identities_file,
            identities,
            work_root,
            cgroups: detect_cgroups(),
            single_user: config.single_user,
            pids_max: config.pids_max.max(1),
            own_tenant: None,
        })
    }

    /// No identity switch, no cgroups, every tenant: how the runner's own unit tests run
    /// processes they must inspect as the test's user.
    #[cfg(test)]
    pub fn unenforced(work_root: PathBuf) -> Isolation {
        fs::create_dir_all(&work_root).expect("work root");
        Isolation {
            uid_switch: false,
            setpriv: None,
            task_uids: DEFAULT_TASK_UIDS,
            identities_file: work_root.join(IDENTITIES_FILE),
            identities: BTreeMap::new(),
            work_root,
            cgroups: Cgroups::None,
            single_user: true,
            pids_max: DEFAULT_PIDS_MAX,
            own_tenant: None,
        }
    }

    #[cfg(test)]
    pub fn single_user_for_test(&mut self, on: bool) {
        self.single_user = on;
    }

    /// What the agent reports at registration.
    pub fn report(&self) -> NodeIsolation {
        let (mode, controllers) = self.cgroups.mode();
        NodeIsolation {
            uid_switch: self.uid_switch,
            cgroups: mode,
            controllers: controllers.into_iter().map(str::to_string).collect(),
            single_user: self.single_user && !self.uid_switch,
            gpus: if self.cgroups.gpus_enforced() {
                Enforcement::Enforced
            } else {
                Enforcement::Simulated
            },
        }
    }

    /// One line saying what the agent does, for its start.
    pub fn describe(&self) -> String {
        let r = self.report();
        let who = if self.uid_switch {
            format!(
                "each tenant's tasks run as a uid of {}-{}",
                self.task_uids.start(),
                self.task_uids.end()
            )
        } else if self.single_user {
            "not root, single-user: every tenant's tasks run as the agent's own user".into()
        } else {
            format!(
                "not root: only the agent's own tenant's tasks run ({}); others fail to start \
                 (start as root, or with --single-user)",
                self.own_tenant
                    .as_deref()
                    .unwrap_or("known at registration")
            )
        };
        let limits = match r.cgroups {
            CgroupMode::None => {
                "no writable cgroups: CPU, memory and process limits are NOT enforced".to_string()
            }
            m => format!(
                "limits by cgroup {} ({})",
                m.as_str(),
                r.controllers.join(", ")
            ),
        };
        let gpus = match r.gpus {
            Enforcement::Enforced => "GPUs by device cgroup (only the attempt's GPUs open)",
            _ => "GPUs only by CUDA_VISIBLE_DEVICES (simulated: no devices cgroup)",
        };
        format!(
            "isolation: {who}; {limits}; {gpus}; working directories under {}",
            self.work_root.display()
        )
    }

    pub fn set_own_tenant(&mut self, tenant: Option<String>) {
        self.own_tenant = tenant;
    }

    pub fn work_dir(&self, attempt_id: &str) -> PathBuf {
        self.work_root.join(attempt_id)
    }

    /// The identity for a tenant's attempt: `None` runs it as the agent itself. The error
    /// is the reason of a `FailedToStart`.
    pub fn identity_for(&mut self, tenant: &str) -> Result<Option<Identity>, String> {
        if !self.uid_switch {
            if self.single_user || self.own_tenant.as_deref() == Some(tenant) {
                return Ok(None);
            }
            return Err(format!(
                "this agent is not root and cannot run tasks as their tenant's identity: it \
                 runs only tenant {:?}'s tasks, not tenant {tenant:?}'s (start it as root, or \
                 with --single-user to run every tenant's tasks as its own user)",
                self.own_tenant.as_deref().unwrap_or("unknown")
            ));
        }
        if let Some(uid) = self.identities.get(tenant) {
            return Ok(Some(Identity {
                uid: *uid,
                gid: *uid,
            }));
        }
        // Another agent of this process may have given identities out since: read the
        // file again under the lock, and write it before letting go.
        let _guard = IDENTITIES.lock().unwrap_or_else(|p| p.into_inner());
        for (t, uid) in read_identities(&self.identities_file) {
            self.identities.entry(t).or_insert(uid);
        }
        if let Some(uid) = self.identities.get(tenant) {
            return Ok(Some(Identity {
                uid: *uid,
                gid: *uid,
            }));
        }
        let taken: std::collections::BTreeSet<u32> = self.identities.values().copied().collect();
        let uid = self
            .task_uids
            .clone()
            .find(|u| !taken.contains(u))
            .ok_or_else(|| {
                format!(
                    "every uid of the task range {}-{} is given to a tenant; widen --task-uid-range",
                    self.task_uids.start(),
                    self.task_uids.end()
                )
            })?;
        self.identities.insert(tenant.to_string(), uid);
        let json = serde_json::to_vec_pretty(&self.identities)
            .map_err(|e| format!("cannot record the tenant's identity: {e}"))?;
        crate::runner::write_durable(&self.identities_file, &json)
            .map_err(|e| format!("cannot record the tenant's identity: {e}"))?;
        tracing::info!(tenant, uid, "new task identity");
        Ok(Some(Identity { uid, gid: uid }))
    }

    /// Creates the attempt's working directory, owned by the identity, mode 0700.
    pub fn make_work_dir(&self, dir: &Path, who: Option<Identity>) -> Result<(), String> {
        let fail =
            |e: std::io::Error| format!("cannot create working directory '{}': {e}", dir.display());
        if dir.exists() {
            fs::remove_dir_all(dir).map_err(fail)?;
        }
        fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(fail)?;
        if let Some(id) = who {
            std::os::unix::fs::chown(dir, Some(id.uid), Some(id.gid)).map_err(fail)?;
        }
        Ok(())
    }

    /// The command prefix that drops to the identity (empty: run as the agent).
    pub fn drop_to(&self, who: Option<Identity>) -> Vec<std::ffi::OsString> {
        match (who, &self.setpriv) {
            (Some(id), Some(setpriv)) => vec![
                setpriv.clone().into_os_string(),
                format!("--reuid={}", id.uid).into(),
                format!("--regid={}", id.gid).into(),
                "--clear-groups".into(),
                // No setuid program gives the task back what it was dropped from.
                "--no-new-privs".into(),
                "--".into(),
            ],
            _ => Vec::new(),
        }
    }

    /// Creates the attempt's cgroups with its limits and its GPUs (the only NVIDIA devices
    /// it may open); returns their directories (the wrapper joins each before it starts
    /// the task).
    pub fn make_cgroups(
        &self,
        attempt_id: &str,
        resources: &TaskResources,
        gpus: &[u32],
    ) -> Result<Vec<PathBuf>, String> {
        make_group(
            &self.cgroups,
            attempt_id,
            Share {
                cpu_cores: resources.cpu_cores,
                memory_gib: resources.memory_gib,
                pids_max: self.pids_max,
                gpus,
            },
        )
    }
}

/// What one cgroup may use: a CPU quota of `cpu_cores` and a memory limit of `memory_gib`
/// (0: none), `pids_max` processes, and the GPUs (indices) `gpus`, the only NVIDIA devices
/// it may open.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Share<'a> {
    pub cpu_cores: f64,
    pub memory_gib: f64,
    pub pids_max: u32,
    pub gpus: &'a [u32],
}

/// Creates one cgroup named `name` under the agent's base of each hierarchy in use, with
/// the limits of `share`; returns their directories. Attempts (`Isolation::make_cgroups`)
/// and lease accounts (`lease_access`) share it, so both are limited the same way.
pub(crate) fn make_group(
    cgroups: &Cgroups,
    name: &str,
    share: Share<'_>,
) -> Result<Vec<PathBuf>, String> {
    let Share {
        cpu_cores,
        memory_gib,
        pids_max,
        gpus,
    } = share;
    let mem_bytes = (memory_gib > 0.0)
        .then_some((memory_gib * 1024.0 * 1024.0 * 1024.0) as u64)
        .map(|b| b.max(4 * 1024 * 1024));
    let cpu_quota =
        (cpu_cores > 0.0).then(|| ((cpu_cores * CPU_PERIOD_US as f64) as u64).max(1000));
    let fail =
        |p: &Path, e: std::io::Error| format!("cannot set up the cgroup '{}': {e}", p.display());
    let write = |p: PathBuf, v: String| fs::write(&p, v).map_err(|e| fail(&p, e));
    match cgroups {
        Cgroups::None => Ok(Vec::new()),
        Cgroups::V2 { base, controllers } => {
            let dir = base.join(name);
            make_fresh_dir(&dir).map_err(|e| fail(&dir, e))?;
            if let Some(b) = mem_bytes {
                write(dir.join("memory.max"), b.to_string())?;
                let _ = fs::write(dir.join("memory.swap.max"), "0");
            }
            if let Some(q) = cpu_quota
                && controllers.contains(&"cpu")
            {
                write(dir.join("cpu.max"), format!("{q} {CPU_PERIOD_US}"))?;
            }
            write(dir.join("pids.max"), pids_max.to_string())?;
            Ok(vec![dir])
        }
        Cgroups::V1 { bases, gpu_minors } => {
            let mut dirs = Vec::new();
            for (controller, base) in bases {
                let dir = base.join(name);
                make_fresh_dir(&dir).map_err(|e| fail(&dir, e))?;
                match *controller {
                    "memory" => {
                        if let Some(b) = mem_bytes {
                            write(dir.join("memory.limit_in_bytes"), b.to_string())?;
                            // Swap must not extend the limit where it is accounted.
                            let _ =
                                fs::write(dir.join("memory.memsw.limit_in_bytes"), b.to_string());
                        }
                    }
                    "cpu" => {
                        if let Some(q) = cpu_quota {
                            write(dir.join("cpu.cfs_period_us"), CPU_PERIOD_US.to_string())?;
                            write(dir.join("cpu.cfs_quota_us"), q.to_string())?;
                        }
                    }
                    "pids" => write(dir.join("pids.max"), pids_max.to_string())?,
                    "devices" => {
                        write_device_rules(&dir, gpu_minors, gpus).map_err(|e| fail(&dir, e))?
                    }
                    _ => {}
                }
                dirs.push(dir);
            }
            Ok(dirs)
        }
    }
}

impl Cgroups {
    /// The hierarchy and the controllers in use, as reported.
    pub(crate) fn mode(&self) -> (CgroupMode, Vec<&'static str>) {
        match self {
            Cgroups::V2 { controllers, .. } => (CgroupMode::V2, controllers.clone()),
            Cgroups::V1 { bases, .. } => (CgroupMode::V1, bases.iter().map(|(c, _)| *c).collect()),
            Cgroups::None => (CgroupMode::None, Vec::new()),
        }
    }

    /// Whether the groups' device rules keep them from the GPUs they were not given (the
    /// v1 `devices` controller is in use).
    pub(crate) fn gpus_enforced(&self) -> bool {
        matches!(self, Cgroups::V1 { bases, .. } if bases.iter().any(|(c, _)| *c == "devices"))
    }

    /// Whether an unprivileged process may move itself into a group of ours once it may
    /// write the group's `cgroup.procs` ([`let_join`]): so in v1, where that is the whole
    /// check (plus owning the process); v2 also wants write access to the `cgroup.procs` of
    /// the common ancestor of both groups, which stays root's.
    pub(crate) fn self_join(&self) -> bool {
        matches!(self, Cgroups::V1 { .. })
    }
}

/// NVIDIA's character device major: `/dev/nvidiaN` is 195:N (N the GPU's minor),
/// `/dev/nvidiactl` 195:255 and `/dev/nvidia-modeset` 195:254.
pub const NVIDIA_MAJOR: u32 = 195;
const NVIDIACTL_MINOR: u32 = 255;
const NVIDIA_MODESET_MINOR: u32 = 254;
/// Character majors are below this (the kernel's `CHRDEV_MAJOR_MAX`).
const CHRDEV_MAJOR_MAX: u32 = 512;

/// The device minor of each GPU index. NVML's `minor_number()` where the driver is there;
/// otherwise (no driver, emulated GPUs) the minor is taken to be the index, which is how
/// the driver numbers `/dev/nvidiaN` on a host where NVML's and the device files' order
/// agree.
#[derive(Debug, Clone, Default)]
pub(crate) struct GpuMinors(Vec<u32>);

impl GpuMinors {
    pub(crate) fn detect() -> GpuMinors {
        let Ok(nvml) = nvml_wrapper::Nvml::init() else {
            return GpuMinors::default();
        };
        let count = nvml.device_count().unwrap_or(0);
        let minors: Option<Vec<u32>> = (0..count)
            .map(|i| nvml.device_by_index(i).ok()?.minor_number().ok())
            .collect();
        GpuMinors(minors.unwrap_or_default())
    }

    fn minor(&self, index: u32) -> u32 {
        self.0.get(index as usize).copied().unwrap_or(index)
    }
}

/// The rules of a v1 `devices` group that may open the GPUs `gpus` and no other NVIDIA
/// device. v1 carves an allowed device out of a denied range only in a group whose default
/// is deny: in a default-allow group, `devices.allow` of `c 195:0` after `devices.deny` of
/// `c 195:*` only removes an identical exception and leaves 195:0 denied (checked on this
/// kernel). So the group denies everything (`a`), then allows every block device, every
/// character major but NVIDIA's (`nvidia-uvm`, `nvidia-caps` and the like included,
/// whatever major `/proc/devices` gives them now or after a driver loads later), and of
/// major 195 the given GPUs' nodes and, when there is one, `nvidiactl` and
/// `nvidia-modeset`, which every CUDA program opens.
fn device_rules(minors: &GpuMinors, gpus: &[u32]) -> Vec<String> {
    let mut rules = vec!["b *:* rwm".to_string()];
    rules.extend(
        (0..CHRDEV_MAJOR_MAX)
            .filter(|m| *m != NVIDIA_MAJOR)
            .map(|m| format!("c {m}:* rwm")),
    );
    if !gpus.is_empty() {
        for minor in [NVIDIACTL_MINOR, NVIDIA_MODESET_MINOR]
            .into_iter()
            .chain(gpus.iter().map(|g| minors.minor(*g)))
        {
            rules.push(format!("c {NVIDIA_MAJOR}:{minor} rwm"));
        }
    }
    rules
}

/// Writes the device rules into a fresh v1 `devices` group (one rule per write, as the
/// kernel reads them). The files stay root's, mode 0644: only root changes them.
fn write_device_rules(dir: &Path, minors: &GpuMinors, gpus: &[u32]) -> std::io::Result<()> {
    fs::write(dir.join("devices.deny"), "a")?;
    let allow = dir.join("devices.allow");
    for rule in device_rules(minors, gpus) {
        fs::write(&allow, rule)?;
    }
    Ok(())
}

/// Lets `uid` move its own processes into these groups (a lease's session joins its
/// lease's groups itself, before its first command): their `cgroup.procs` becomes the
/// uid's. Nothing else of them does: the limits, the device rules and `tasks` stay root's,
/// and so does every other group's `cgroup.procs`, so the uid can move in, never out.
pub(crate) fn let_join(dirs: &[PathBuf], uid: u32) -> std::io::Result<()> {
    for dir in dirs {
        std::os::unix::fs::chown(dir.join("cgroup.procs"), Some(uid), None)?;
    }
    Ok(())
}

/// Whether the OOM killer acted in any of these cgroups.
pub(crate) fn oom_killed(dirs: &[PathBuf]) -> bool {
    dirs.iter().any(|d| {
        // v2: memory.events; v1: memory.oom_control (kernels since 4.13 count kills).
        ["memory.events", "memory.oom_control"].iter().any(|f| {
            fs::read_to_string(d.join(f)).is_ok_and(|s| {
                s.lines().any(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse::<u64>().ok())
                        .is_some_and(|n| n > 0)
                })
            })
        })
    })
}

/// Kills whatever still runs in the attempt's cgroups (processes that left its process
/// group included).
pub(crate) fn kill_cgroups(dirs: &[PathBuf]) {
    for d in dirs {
        if fs::write(d.join("cgroup.kill"), "1").is_ok() {
            continue;
        }
        if let Ok(s) = fs::read_to_string(d.join("cgroup.procs")) {
            for pid in s.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                if pid > 1 {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
    }
}

/// Removes the attempt's cgroups; returns whether all are gone (a cgroup with processes
/// still exiting is busy: try again later).
pub(crate) fn remove_cgroups(dirs: &[PathBuf]) -> bool {
    let mut all = true;
    for d in dirs {
        if let Err(e) = fs::remove_dir(d)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            all = false;
        }
    }
    all
}

fn make_fresh_dir(dir: &Path) -> std::io::Result<()> {
    match fs::create_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // Left by a start that crashed before it committed: nothing of it ran.
            kill_cgroups(&[dir.to_path_buf()]);
            let _ = fs::remove_dir(dir);
            fs::create_dir(dir).or_else(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    Ok(())
                } else {
                    Err(e)
                }
            })
        }
        other => other,
    }
}

fn absolute(p: &Path) -> Result<PathBuf, AgentError> {
    std::path::absolute(p).map_err(AgentError::io("resolving", p))
}

/// Creates the work root: 0711 and root's when identities switch (each task reaches its
/// own directory, none can list the others), 0700 and the agent's otherwise. Every
/// directory above it must be searchable by the tasks' identities.
fn prepare_work_root(root: &Path, uid_switch: bool, my_uid: u32) -> Result<(), AgentError> {
    let mode = if uid_switch { 0o711 } else { 0o700 };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(root)
        .map_err(AgentError::io("creating", root))?;
    let meta = fs::symlink_metadata(root).map_err(AgentError::io("reading", root))?;
    if !meta.is_dir() || meta.uid() != my_uid {
        return Err(AgentError::Isolation(format!(
            "the work root {} must be a directory owned by the agent's user (uid {my_uid})",
            root.display()
        )));
    }
    fs::set_permissions(root, fs::Permissions::from_mode(mode))
        .map_err(AgentError::io("chmod", root))?;
    if uid_switch {
        for dir in root.ancestors().skip(1) {
            let m = fs::metadata(dir).map_err(AgentError::io("reading", dir))?;
            if m.permissions().mode() & 0o001 == 0 {
                return Err(AgentError::Isolation(format!(
                    "tasks cannot reach the work root {}: {} is mode {:o} (others need search \
                     permission, o+x); choose another --work-root",
                    root.display(),
                    dir.display(),
                    m.permissions().mode() & 0o7777
                )));
            }
        }
    }
    Ok(())
}

/// The mounts of cgroup hierarchies: (mount point, fstype, options).
fn cgroup_mounts() -> Vec<(PathBuf, String, Vec<String>)> {
    let Ok(mounts) = fs::read_to_string("/proc/self/mounts") else {
        return Vec::new();
    };
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (mnt, fstype, opts) = (f.get(1)?, f.get(2)?, f.get(3)?);
            (*fstype == "cgroup" || *fstype == "cgroup2").then(|| {
                (
                    PathBuf::from(mnt.replace("\\040", " ")),
                    fstype.to_string(),
                    opts.split(',').map(str::to_string).collect(),
                )
            })
        })
        .collect()
}

/// v2 when the unified hierarchy has the memory and pids controllers and they can be
/// delegated to `<root>/cpn`; otherwise the writable v1 controllers; otherwise none.
pub(crate) fn detect_cgroups() -> Cgroups {
    let mounts = cgroup_mounts();
    for (mnt, fstype, _) in &mounts {
        if fstype != "cgroup2" {
            continue;
        }
        let available = fs::read_to_string(mnt.join("cgroup.controllers")).unwrap_or_default();
        let have: Vec<&str> = available.split_whitespace().collect();
        if !(have.contains(&"memory") && have.contains(&"pids")) {
            continue;
        }
        let wanted: Vec<&'static str> = ["memory", "pids", "cpu"]
            .into_iter()
            .filter(|c| have.contains(c))
            .collect();
        let enable = wanted
            .iter()
            .map(|c| format!("+{c}"))
            .collect::<Vec<_>>()
            .join(" ");
        let base = mnt.join("cpn");
        let ok = fs::write(mnt.join("cgroup.subtree_control"), &enable).is_ok()
            && fs::create_dir_all(&base).is_ok()
            && fs::write(base.join("cgroup.subtree_control"), &enable).is_ok();
        if ok {
            return Cgroups::V2 {
                base,
                controllers: wanted,
            };
        }
        tracing::warn!(mount = %mnt.display(), "cgroup v2 has the controllers but cannot delegate them; trying v1");
    }
    let mut bases = Vec::new();
    let gpu_minors = GpuMinors::detect();
    for controller in ["memory", "cpu", "pids", "devices"] {
        let Some((mnt, _, _)) = mounts
            .iter()
            .find(|(_, t, opts)| t == "cgroup" && opts.iter().any(|o| o == controller))
        else {
            continue;
        };
        let base = mnt.join("cpn");
        // Writable means the agent can make an attempt's cgroup there (the base may exist,
        // made by another agent of another user).
        // Unique per probe, not only per process: agents of one process (the emulated nodes
        // of `cpn serve`, tests) probe at the same time, and a name taken by another's probe
        // would read as "not writable".
        static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let probe = base.join(format!(
            ".probe-{}-{}",
            std::process::id(),
            PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let writable = fs::create_dir_all(&base).is_ok()
            && fs::create_dir(&probe).is_ok()
            // Device rules are reported enforced only where they can be written (a
            // container's root group allows a short list, and without CAP_SYS_ADMIN the
            // kernel refuses every rule).
            && (controller != "devices"
                || write_device_rules(&probe, &gpu_minors, &[0])
                    .inspect_err(|e| {
                        tracing::warn!(
                            group = %probe.display(),
                            "cannot write GPU device rules ({e}); GPU isolation is simulated"
                        )
                    })
                    .is_ok());
        let removed = fs::remove_dir(&probe).is_ok();
        if writable && removed {
            bases.push((controller, base));
        }
    }
    if bases.is_empty() {
        Cgroups::None
    } else {
        Cgroups::V1 { bases, gpu_minors }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_rules_open_everything_but_the_gpus_not_given() {
        let nvidia = |rules: &[String]| -> Vec<String> {
            rules
                .iter()
                .filter(|r| r.starts_with(&format!("c {NVIDIA_MAJOR}:")))
                .cloned()
                .collect()
        };
        // By index where NVML is absent.
        let rules = device_rules(&GpuMinors::default(), &[1, 3]);
        assert_eq!(rules[0], "b *:* rwm");
        assert!(
            rules.contains(&"c 1:* rwm".to_string()),
            "/dev/null and co."
        );
        assert!(
            rules.contains(&"c 511:* rwm".to_string()),
            "dynamic majors (nvidia-uvm)"
        );
        assert_eq!(
            nvidia(&rules),
            [
                "c 195:255 rwm",
                "c 195:254 rwm",
                "c 195:1 rwm",
                "c 195:3 rwm"
            ]
        );
        assert_eq!(rules.len(), 1 + 511 + 4);
        // By NVML's minor numbers where it gives them.
        let minors = GpuMinors(vec![4, 0]);
        assert_eq!(
            nvidia(&device_rules(&minors, &[0])),
            ["c 195:255 rwm", "c 195:254 rwm", "c 195:4 rwm"]
        );
        // No GPU: not even the control device.
        assert!(nvidia(&device_rules(&minors, &[])).is_empty());
    }

    #[test]
    fn agents_sharing_an_identities_file_never_give_one_uid_to_two_tenants() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: identities switch only as root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let config = IsolationConfig {
            work_root: Some(t.path().join("work")),
            identities_file: Some(t.path().join("shared").join("identities.json")),
            ..IsolationConfig::default()
        };
        let (sa, sb) = (t.path().join("a"), t.path().join("b"));
        fs::create_dir_all(&sa).unwrap();
        fs::create_dir_all(&sb).unwrap();
        // Both loaded before either gave anything out, as agents of one process are.
        let mut a = Isolation::detect(&config, &sa).unwrap();
        let mut b = Isolation::detect(&config, &sb).unwrap();
        let alpha = a.identity_for("alpha").unwrap().unwrap();
        let beta = b.identity_for("beta").unwrap().unwrap();
        assert_ne!(alpha.uid, beta.uid);
        assert_eq!(b.identity_for("alpha").unwrap().unwrap(), alpha);
        assert_eq!(a.identity_for("beta").unwrap().unwrap(), beta);
        assert!(!sa.join(IDENTITIES_FILE).exists());
    }
}
