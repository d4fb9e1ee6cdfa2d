//! Runs attempts as detached process groups whose whole state lives in files, so that they
//! survive a restart of the agent and are re-adopted by the next one.
//!
//! Each attempt has a directory `{state_dir}/attempts/{attempt_id}/`:
//! - `assignment.json`: written and fsynced before anything is spawned; its existence means
//!   "already started" (the durable dedupe: an attempt id runs at most once);
//! - `stdout`, `stderr`: the task's output, written by the task itself (no pipes). The
//!   agent keeps of each no more than the server keeps of both (the assignment's
//!   `max_output_bytes`): every poll cuts a file past it back to the cap followed by the
//!   server's truncation marker, and the task runs on, as on the server ("truncated with
//!   a marker"). The file descriptors append, so what the task writes after a cut lands
//!   after the marker and goes at the next poll: a file holds at most the cap, the marker
//!   and one poll's worth of writing. The server, sent more than its cap, keeps the cap and
//!   its own marker. (`RLIMIT_FSIZE` would bound the files exactly, but it would bound
//!   every other file the task writes too, and kill it by `SIGXFSZ`.)
//! - `pid`, `pid_start`, `started_at`: written right after the spawn (`pid_start`, the
//!   process's start time in `/proc`, tells a reused pid apart);
//! - `exit`: the exit code, written by the wrapper shell when the task ends;
//! - `final.json`: the final report once the agent has seen the end;
//! - `script.sh` (script tasks), `cgroups` (the attempt's cgroup directories, one a line)
//!   and `work_dir` (its working directory, outside the state directory: see
//!   [`crate::isolation`]).
//!
//! The state directory is 0700: tasks, which run as other identities when the agent is
//! root, cannot read it, nor each other's output.
//!
//! Forgotten attempts leave a tombstone in `{state_dir}/forgotten/` so that a re-sent
//! assignment is not run again.

use crate::error::AgentError;
use crate::isolation::{self, DEFAULT_PATH, Isolation, IsolationConfig};
use crate::procfs::{self, GroupStat};
use chrono::{DateTime, Utc};
use cpn_api_types::agent::{
    Assignment, AttemptReport, AttemptState, AttemptUsage, DEFAULT_MAX_OUTPUT_BYTES, EndReason,
    NodeIsolation, truncation_marker,
};
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// The wrapper, `sh -c WRAPPER cpn-task EXIT_FILE CGROUP_DIR... -- ARGV...`: joins the
/// attempt's cgroups, runs the task's argv and records its exit status in EXIT_FILE, using
/// shell builtins only (the task's PATH may lack `mv`). A reader takes the file as complete
/// once it ends with a newline.
///
/// Why a wrapper rather than `pre_exec` (the workspace forbids `unsafe`): the wrapper stays
/// the agent's user (root) while the task runs, so it can join the cgroups *before* the
/// task exists (every process the task makes is born inside them) and write the exit file
/// into the state directory that the task itself cannot reach. The task drops to its
/// tenant's identity through `setpriv` (util-linux), which execs, so the exit status the
/// wrapper sees is the task's own. Nothing is passed through the environment: it is the
/// task's.
const WRAPPER: &str = r#"exit_file=$1; shift
while [ "$1" != -- ]; do
  echo $$ > "$1/cgroup.procs" || { echo "cpn: cannot join the cgroup $1" >&2; echo 125 > "$exit_file"; exit 125; }
  shift
done
shift
code=0; "$@" || code=$?; echo "$code" > "$exit_file""#;

/// How long a stopped attempt gets between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(5);

/// Error of an attempt whose process ended while no agent was watching it.
pub const UNKNOWN_END: &str =
    "the process ended while the agent was down; its exit code is unknown";

/// Tombstones older than this are pruned when a runner opens its state directory.
const TOMBSTONE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// One of the two output streams of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub const ALL: [Stream; 2] = [Stream::Stdout, Stream::Stderr];

    /// The name used on the wire and as the file name in the attempt directory.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// What the agent loop keeps per attempt about shipping it to the server.
#[derive(Debug, Clone, Default)]
pub(crate) struct ShipState {
    /// Bytes of each stream the server has.
    pub offsets: [u64; 2],
    pub running_sent: bool,
    /// The assignment loop is sending Running right now.
    pub running_in_flight: bool,
    /// All output shipped after the end: the final report may go.
    pub logs_done: bool,
    pub final_sent: bool,
    pub next_try: Option<Instant>,
    pub backoff: Duration,
}

#[derive(Debug)]
struct Kill {
    at: Instant,
    sigkill_sent: bool,
}

/// One attempt the runner holds.
#[derive(Debug)]
struct Attempt {
    dir: PathBuf,
    /// The attempt's cgroup directories (empty without cgroups), removed when forgotten.
    cgroups: Vec<PathBuf>,
    /// The working directory made for it, removed when forgotten.
    work_dir: Option<PathBuf>,
    /// The wrapper shell, when this runner spawned it (not after a re-adoption).
    child: Option<Child>,
    /// Pid of the wrapper shell, which is also the process group id.
    pid: Option<u32>,
    /// Start time of the wrapper in `/proc` terms, to tell a reused pid apart.
    pid_start: Option<u64>,
    started_at: Option<DateTime<Utc>>,
    cpu_seconds: f64,
    max_rss_mib: f64,
    usage_seen: bool,
    kill: Option<Kill>,
    /// Bytes of each output file kept before the truncation marker.
    output_cap: u64,
    forget_when_ended: bool,
    /// The final report, once ended.
    end: Option<AttemptReport>,
    ship: ShipState,
}

impl Attempt {
    fn new(dir: PathBuf) -> Self {
        Attempt {
            dir,
            cgroups: Vec::new(),
            work_dir: None,
            child: None,
            pid: None,
            pid_start: None,
            started_at: None,
            cpu_seconds: 0.0,
            max_rss_mib: 0.0,
            usage_seen: false,
            kill: None,
            output_cap: DEFAULT_MAX_OUTPUT_BYTES,
            forget_when_ended: false,
            end: None,
            ship: ShipState::default(),
        }
    }

    fn usage(&self) -> Option<AttemptUsage> {
        if !self.usage_seen {
            return None;
        }
        let wall = self
            .started_at
            .map(|s| (Utc::now() - s).num_milliseconds() as f64 / 1000.0)
            .unwrap_or(0.0);
        let util = if wall > 0.0 {
            self.cpu_seconds / wall * 100.0
        } else {
            0.0
        };
        Some(AttemptUsage {
            cpu_seconds: self.cpu_seconds,
            cpu_util_pct: if util.is_finite() { util } else { 0.0 },
            max_rss_mib: self.max_rss_mib,
        })
    }

    fn pgid(&self) -> Option<Pid> {
        self.pid
            .and_then(|p| i32::try_from(p).ok())
            .filter(|p| *p > 1)
            .map(Pid::from_raw)
    }
}

/// The attempts of this node, running or ended and not yet forgotten.
#[derive(Debug)]
pub struct Runner {
    attempts_dir: PathBuf,
    forgotten_dir: PathBuf,
    attempts: BTreeMap<String, Attempt>,
    /// Children of forgotten attempts still to be reaped.
    zombies: Vec<Child>,
    clk_tck: f64,
    page_size: u64,
    isolation: Isolation,
}

impl Runner {
    /// Opens (creating it if needed, mode 0700) the state directory, finds how this host
    /// isolates tasks ([`crate::isolation`]) and re-adopts every attempt found there: one
    /// with an `exit` file has ended, one whose process is alive runs, any other ended
    /// while no agent was watching.
    pub fn open(
        state_dir: impl AsRef<Path>,
        config: &IsolationConfig,
    ) -> Result<Runner, AgentError> {
        // Absolute: the wrapper writes the exit file from inside the task's directory.
        let state_dir = std::path::absolute(state_dir.as_ref())
            .map_err(AgentError::io("resolving", state_dir.as_ref()))?;
        let isolation = Isolation::detect(config, &state_dir)?;
        Runner::open_with(&state_dir, isolation)
    }

    fn open_with(state_dir: &Path, isolation: Isolation) -> Result<Runner, AgentError> {
        private_dir(state_dir)?;
        let attempts_dir = state_dir.join("attempts");
        let forgotten_dir = state_dir.join("forgotten");
        for d in [&attempts_dir, &forgotten_dir] {
            fs::create_dir_all(d).map_err(AgentError::io("creating", d))?;
        }
        let mut runner = Runner {
            attempts_dir,
            forgotten_dir,
            attempts: BTreeMap::new(),
            zombies: Vec::new(),
            clk_tck: procfs::clock_ticks(),
            page_size: procfs::page_size(),
            isolation,
        };
        runner.prune_tombstones();
        let entries = fs::read_dir(&runner.attempts_dir)
            .map_err(AgentError::io("reading", &runner.attempts_dir))?;
        for entry in entries.flatten() {
            let Some(id) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if valid_id(&id).is_err() || !entry.path().is_dir() {
                continue;
            }
            runner.adopt(id);
        }
        Ok(runner)
    }

    fn adopt(&mut self, id: String) {
        let dir = self.attempts_dir.join(&id);
        if !dir.join("assignment.json").exists() {
            // Crashed before the start was committed: nothing ran.
            let _ = fs::remove_dir_all(&dir);
            return;
        }
        let mut att = Attempt::new(dir.clone());
        att.cgroups = fs::read_to_string(dir.join("cgroups"))
            .map(|s| {
                s.lines()
                    .filter(|l| !l.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default();
        att.work_dir = read_trimmed(&dir.join("work_dir")).map(PathBuf::from);
        att.output_cap = fs::read(dir.join("assignment.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Assignment>(&b).ok())
            .and_then(|a| a.max_output_bytes)
            .unwrap_or(DEFAULT_MAX_OUTPUT_BYTES);
        att.pid = read_trimmed(&dir.join("pid")).and_then(|s| s.parse().ok());
        att.pid_start = read_trimmed(&dir.join("pid_start")).and_then(|s| s.parse().ok());
        // Found ended: its final report goes without a Running first.
        att.ship.running_sent = true;
        att.started_at = read_trimmed(&dir.join("started_at"))
            .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
            .map(|t| t.with_timezone(&Utc))
            .or_else(|| {
                let m = fs::metadata(dir.join("assignment.json")).ok()?;
                Some(DateTime::<Utc>::from(m.modified().ok()?))
            });
        if let Some(end) = fs::read(dir.join("final.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<AttemptReport>(&b).ok())
        {
            att.end = Some(end);
        } else if let Some(code) = read_exit_file(&dir) {
            tracing::info!(attempt = %id, code, "re-adopted an attempt that has ended");
            self.attempts.insert(id.clone(), att);
            self.finish(&id, AttemptState::Exited, Some(code), None);
            return;
        } else if att.pid.is_some_and(|p| process_alive(p, att.pid_start)) {
            tracing::info!(attempt = %id, pid = att.pid, "re-adopted a running attempt");
            att.ship.running_sent = false;
        } else {
            let error = if att.pid.is_some() {
                UNKNOWN_END.to_string()
            } else {
                "the agent stopped while starting the process; its outcome is unknown".to_string()
            };
            self.attempts.insert(id.clone(), att);
            self.finish(&id, AttemptState::Exited, None, Some(error));
            return;
        }
        self.attempts.insert(id, att);
    }

    fn prune_tombstones(&self) {
        let Ok(entries) = fs::read_dir(&self.forgotten_dir) else {
            return;
        };
        let now = SystemTime::now();
        for e in entries.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > TOMBSTONE_TTL);
            if old {
                let _ = fs::remove_file(e.path());
            }
        }
    }

    /// The directory of an attempt (whether or not it exists).
    pub fn attempt_dir(&self, attempt_id: &str) -> PathBuf {
        self.attempts_dir.join(attempt_id)
    }

    /// Whether this attempt id has ever been started here (held, or forgotten recently).
    pub fn knows(&self, attempt_id: &str) -> bool {
        self.attempts.contains_key(attempt_id)
            || self
                .attempt_dir(attempt_id)
                .join("assignment.json")
                .exists()
            || self.forgotten_dir.join(attempt_id).exists()
    }

    /// Starts an attempt. Returns `Ok(false)` and does nothing when this attempt id was
    /// started before (durably: across agent restarts). A start that fails (no such
    /// program, bad working directory) is recorded as ended with `FailedToStart` and
    /// returns `Ok(true)`; errors are only for the state directory itself.
    pub fn start(&mut self, a: &Assignment) -> Result<bool, AgentError> {
        valid_id(&a.attempt_id)?;
        if self.knows(&a.attempt_id) {
            return Ok(false);
        }
        let id = a.attempt_id.clone();
        let dir = self.attempt_dir(&id);
        if dir.exists() {
            // Left over by a start that crashed before committing.
            fs::remove_dir_all(&dir).map_err(AgentError::io("removing", &dir))?;
        }
        fs::create_dir_all(&dir).map_err(AgentError::io("creating", &dir))?;
        let json = serde_json::to_vec_pretty(a).map_err(|source| AgentError::Json {
            what: "assignment",
            source,
        })?;
        write_durable(&dir.join("assignment.json"), &json)?;
        sync_dir(&self.attempts_dir);

        let mut att = Attempt::new(dir.clone());
        att.output_cap = a.max_output_bytes.unwrap_or(DEFAULT_MAX_OUTPUT_BYTES);
        let spawned = spawn(a, &dir, &mut self.isolation, &mut att);
        self.attempts.insert(id.clone(), att);
        match spawned {
            Ok((child, started_at)) => {
                let att = self.attempts.get_mut(&id).expect("just inserted");
                att.pid = Some(child.id());
                att.started_at = Some(started_at);
                att.child = Some(child);
                let pid = att.pid.unwrap_or(0);
                let _ = fs::write(dir.join("pid"), format!("{pid}\n"));
                att.pid_start = i32::try_from(pid).ok().and_then(procfs::start_time);
                if let Some(t) = att.pid_start {
                    let _ = fs::write(dir.join("pid_start"), format!("{t}\n"));
                }
                let _ = fs::write(dir.join("started_at"), started_at.to_rfc3339());
                tracing::info!(attempt = %id, task = %a.task_id, pid = att.pid, "started");
            }
            Err(error) => {
                tracing::warn!(attempt = %id, task = %a.task_id, %error, "failed to start");
                self.finish(&id, AttemptState::FailedToStart, None, Some(error));
            }
        }
        Ok(true)
    }

    /// Checks every running attempt: usage, end (exit file, wrapper gone, process gone),
    /// the SIGKILL after the grace period of a stop. Returns the ids that ended now.
    pub fn poll(&mut self) -> Vec<String> {
        self.zombies
            .retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
        let any_running = self.attempts.values().any(|a| a.end.is_none());
        let groups = if any_running {
            procfs::scan_groups()
        } else {
            HashMap::new()
        };
        let mut ended = Vec::new();
        let ids: Vec<String> = self.attempts.keys().cloned().collect();
        for id in ids {
            if self.poll_one(&id, &groups) {
                ended.push(id);
            }
        }
        // Cgroups whose last processes were still exiting at the end go once empty.
        for att in self.attempts.values_mut() {
            if att.end.is_some()
                && !att.cgroups.is_empty()
                && isolation::remove_cgroups(&att.cgroups)
            {
                att.cgroups.clear();
            }
        }
        // Stopped attempts are forgotten as soon as they are gone.
        let discard: Vec<String> = self
            .attempts
            .iter()
            .filter(|(_, a)| a.end.is_some() && a.forget_when_ended)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &discard {
            self.forget(id);
        }
        ended.retain(|id| !discard.contains(id));
        ended
    }

    fn poll_one(&mut self, id: &str, groups: &HashMap<i32, GroupStat>) -> bool {
        let (clk_tck, page_size) = (self.clk_tck, self.page_size);
        let Some(att) = self.attempts.get_mut(id) else {
            return false;
        };
        // Reap the wrapper whenever it is done, ended attempt or not.
        let mut wrapper_status: Option<ExitStatus> = None;
        if let Some(child) = att.child.as_mut() {
            match child.try_wait() {
                Ok(Some(st)) => {
                    wrapper_status = Some(st);
                    att.child = None;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(attempt = %id, error = %e, "waiting for the wrapper failed");
                    att.child = None;
                }
            }
        }
        if att.end.is_some() {
            return false;
        }
        let Some(pgid) = att.pgid() else {
            // Cannot happen for a running attempt; end it rather than hold it forever.
            self.finish(
                id,
                AttemptState::Exited,
                None,
                Some(UNKNOWN_END.to_string()),
            );
            return true;
        };
        let group = groups.get(&pgid.as_raw()).copied().unwrap_or_default();
        if group.processes > 0 {
            att.usage_seen = true;
            att.cpu_seconds = att.cpu_seconds.max(group.ticks as f64 / clk_tck);
            let rss = (group.rss_pages * page_size) as f64 / (1024.0 * 1024.0);
            att.max_rss_mib = att.max_rss_mib.max(rss);
        }
        let exit = read_exit_file(&att.dir);
        cut_output(&att.dir, att.output_cap);
        if let Some(kill) = att.kill.as_mut() {
            if group.live == 0 && att.child.is_none() {
                self.finish(id, AttemptState::Killed, exit, None);
                return true;
            }
            if !kill.sigkill_sent && kill.at.elapsed() >= KILL_GRACE {
                tracing::info!(attempt = %id, pgid = pgid.as_raw(), "sending SIGKILL");
                let _ = killpg(pgid, Signal::SIGKILL);
                kill.sigkill_sent = true;
            } else if kill.sigkill_sent {
                // Processes born while the signal went round (a fork bomb) get it too.
                let _ = killpg(pgid, Signal::SIGKILL);
                isolation::kill_cgroups(&att.cgroups);
            }
            return false;
        }
        if let Some(code) = exit {
            if group.live > 0 {
                // Whatever the task left behind in its group goes with it.
                let _ = killpg(pgid, Signal::SIGKILL);
            }
            self.finish(id, AttemptState::Exited, Some(code), None);
            return true;
        }
        if let Some(st) = wrapper_status {
            let code = st
                .code()
                .or_else(|| std::os::unix::process::ExitStatusExt::signal(&st).map(|s| 128 + s));
            if group.live > 0 {
                let _ = killpg(pgid, Signal::SIGKILL);
            }
            self.finish(
                id,
                AttemptState::Exited,
                code,
                Some("the wrapper shell ended without recording the exit code".to_string()),
            );
            return true;
        }
        if att.child.is_none() && !process_alive(pgid.as_raw() as u32, att.pid_start) {
            // Re-adopted and gone; look once more for an exit file written meanwhile.
            let exit = read_exit_file(&att.dir);
            let error = exit.is_none().then(|| UNKNOWN_END.to_string());
            self.finish(id, AttemptState::Exited, exit, error);
            return true;
        }
        false
    }

    fn finish(
        &mut self,
        id: &str,
        state: AttemptState,
        exit_code: Option<i32>,
        error: Option<String>,
    ) {
        let Some(att) = self.attempts.get_mut(id) else {
            return;
        };
        // Whatever is left in its cgroups goes with it (processes that left the group too).
        isolation::kill_cgroups(&att.cgroups);
        let oom = state != AttemptState::FailedToStart && isolation::oom_killed(&att.cgroups);
        // Its last writes, and those of an attempt found ended, are cut too.
        cut_output(&att.dir, att.output_cap);
        let report = AttemptReport {
            attempt_id: id.to_string(),
            state,
            exit_code,
            pid: att.pid,
            started_at: att.started_at,
            finished_at: Some(Utc::now()),
            error,
            usage: att.usage(),
            end_reason: oom.then_some(EndReason::Oom),
        };
        // Empty once its processes are gone; one still exiting leaves it to `forget`.
        if isolation::remove_cgroups(&att.cgroups) {
            att.cgroups.clear();
        }
        tracing::info!(attempt = %id, state = ?state, exit_code, "attempt ended");
        if let Ok(json) = serde_json::to_vec_pretty(&report) {
            let _ = write_durable(&att.dir.join("final.json"), &json);
        }
        att.end = Some(report);
    }

    /// Stops an attempt: SIGTERM to its process group, SIGKILL after [`KILL_GRACE`]; it ends
    /// as `Killed`. With `forget`, it is forgotten as soon as it has ended (the server's
    /// "stop": kill and forget). An unknown id is ignored, but any directory left for it
    /// is removed.
    pub fn stop(&mut self, attempt_id: &str, forget: bool) {
        if valid_id(attempt_id).is_err() {
            return;
        }
        let Some(att) = self.attempts.get_mut(attempt_id) else {
            let dir = self.attempt_dir(attempt_id);
            if dir.exists() {
                self.forget(attempt_id);
            }
            return;
        };
        att.forget_when_ended |= forget;
        if att.end.is_some() {
            if forget {
                self.forget(attempt_id);
            }
            return;
        }
        if att.kill.is_none() {
            if let Some(pgid) = att.pgid() {
                tracing::info!(attempt = %attempt_id, pgid = pgid.as_raw(), "sending SIGTERM");
                let _ = killpg(pgid, Signal::SIGTERM);
            }
            att.kill = Some(Kill {
                at: Instant::now(),
                sigkill_sent: false,
            });
        }
    }

    /// Forgets an attempt: removes its directory, keeps a tombstone so that it is never
    /// started again. A running attempt is not forgotten (stop it first).
    pub fn forget(&mut self, attempt_id: &str) {
        if valid_id(attempt_id).is_err() {
            return;
        }
        if let Some(att) = self.attempts.get(attempt_id)
            && att.end.is_none()
        {
            return;
        }
        let dir = self.attempt_dir(attempt_id);
        let held = self.attempts.remove(attempt_id);
        // A stop that found no attempt held still cleans what a crashed start left.
        let (cgroups, work_dir) = match &held {
            Some(att) => (att.cgroups.clone(), att.work_dir.clone()),
            None => (
                fs::read_to_string(dir.join("cgroups"))
                    .map(|s| {
                        s.lines()
                            .filter(|l| !l.is_empty())
                            .map(PathBuf::from)
                            .collect()
                    })
                    .unwrap_or_default(),
                read_trimmed(&dir.join("work_dir")).map(PathBuf::from),
            ),
        };
        if let Some(mut att) = held
            && let Some(mut child) = att.child.take()
            && !matches!(child.try_wait(), Ok(Some(_)))
        {
            self.zombies.push(child);
        }
        isolation::kill_cgroups(&cgroups);
        if !isolation::remove_cgroups(&cgroups) {
            // Processes still exiting: give them a moment, then try once more.
            std::thread::sleep(Duration::from_millis(20));
            if !isolation::remove_cgroups(&cgroups) {
                tracing::warn!(attempt = %attempt_id, "cannot remove the attempt's cgroups (busy)");
            }
        }
        if let Some(w) = work_dir
            && let Err(e) = fs::remove_dir_all(&w)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %w.display(), error = %e, "cannot remove an attempt's working directory");
        }
        let tomb = self.forgotten_dir.join(attempt_id);
        if let Err(e) = fs::write(&tomb, b"") {
            tracing::warn!(path = %tomb.display(), error = %e, "cannot write a tombstone");
        }
        if let Err(e) = fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %dir.display(), error = %e, "cannot remove an attempt directory");
        }
    }

    /// The ids held, running or ended.
    pub fn ids(&self) -> Vec<String> {
        self.attempts.keys().cloned().collect()
    }

    /// Whether the attempt is held and still running.
    pub fn is_running(&self, attempt_id: &str) -> bool {
        self.attempts
            .get(attempt_id)
            .is_some_and(|a| a.end.is_none())
    }

    /// The process group of a held attempt (the wrapper's pid).
    pub fn pgid(&self, attempt_id: &str) -> Option<u32> {
        self.attempts.get(attempt_id).and_then(|a| a.pid)
    }

    /// The current report of a held attempt: `Running`, or its final report.
    pub fn report(&self, attempt_id: &str) -> Option<AttemptReport> {
        let att = self.attempts.get(attempt_id)?;
        Some(
            att.end
                .clone()
                .unwrap_or_else(|| running_report(attempt_id, att)),
        )
    }

    /// Reports of every attempt held.
    pub fn reports(&self) -> Vec<AttemptReport> {
        self.attempts
            .keys()
            .filter_map(|id| self.report(id))
            .collect()
    }

    /// The report of a held attempt as `Running`, whatever its state (used while its
    /// output is still being shipped).
    pub(crate) fn running_report(&self, attempt_id: &str) -> Option<AttemptReport> {
        let att = self.attempts.get(attempt_id)?;
        Some(running_report(attempt_id, att))
    }

    pub(crate) fn ship_state(&mut self, attempt_id: &str) -> Option<&mut ShipState> {
        self.attempts.get_mut(attempt_id).map(|a| &mut a.ship)
    }

    /// Path of one output file of an attempt.
    pub fn output_path(&self, attempt_id: &str, stream: Stream) -> PathBuf {
        self.attempt_dir(attempt_id).join(stream.name())
    }

    /// The enforcement active on this node, as registration reports it.
    pub fn isolation(&self) -> NodeIsolation {
        self.isolation.report()
    }

    /// One line saying how tasks are isolated here.
    pub fn describe_isolation(&self) -> String {
        self.isolation.describe()
    }

    /// The tenant of the agent's credential: an agent that cannot switch identities runs
    /// only this tenant's tasks (unless single-user).
    pub fn set_own_tenant(&mut self, tenant: Option<String>) {
        self.isolation.set_own_tenant(tenant);
    }

    /// The working directory of an attempt (whether or not it exists).
    pub fn work_dir(&self, attempt_id: &str) -> PathBuf {
        self.isolation.work_dir(attempt_id)
    }
}

/// Creates a directory with mode 0700, or tightens an existing one to it.
fn private_dir(dir: &Path) -> Result<(), AgentError> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(AgentError::io("creating", dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(AgentError::io("chmod 0700", dir))
}

fn running_report(id: &str, att: &Attempt) -> AttemptReport {
    AttemptReport {
        attempt_id: id.to_string(),
        state: AttemptState::Running,
        exit_code: None,
        pid: att.pid,
        started_at: att.started_at,
        finished_at: None,
        error: None,
        usage: att.usage(),
        end_reason: None,
    }
}

/// Attempt ids become directory names and URL path segments.
fn valid_id(id: &str) -> Result<(), AgentError> {
    let ok = !id.is_empty()
        && id.len() <= 200
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(AgentError::InvalidAttemptId(id.to_string()))
    }
}

/// Spawns the attempt's wrapper in its own process group, output to the attempt's files,
/// as the tenant's identity, in the attempt's cgroups and working directory, with a clean
/// environment (see [`crate::isolation`]). What it sets up is recorded in `att` (and in
/// files beside the assignment) as it goes, so that a failed start is cleaned up too. The
/// error is the text of a `FailedToStart` report.
fn spawn(
    a: &Assignment,
    dir: &Path,
    iso: &mut Isolation,
    att: &mut Attempt,
) -> Result<(Child, DateTime<Utc>), String> {
    for key in a.env.keys() {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            return Err(format!("invalid environment variable name {key:?}"));
        }
    }
    let who = iso.identity_for(&a.tenant)?;
    let home = iso.work_dir(&a.attempt_id);
    let _ = fs::write(dir.join("work_dir"), format!("{}\n", home.display()));
    att.work_dir = Some(home.clone());
    iso.make_work_dir(&home, who)?;
    let workdir = match &a.workdir {
        Some(w) => {
            let w = PathBuf::from(w);
            if !w.is_dir() {
                return Err(format!(
                    "working directory '{}' does not exist or is not a directory",
                    w.display()
                ));
            }
            w
        }
        None => home.clone(),
    };
    let mut argv: Vec<OsString> = match (&a.script, a.command.is_empty()) {
        (Some(script), _) => {
            let record = dir.join("script.sh");
            fs::write(&record, script)
                .map_err(|e| format!("cannot write '{}': {e}", record.display()))?;
            // The task reads its script from its own directory: the state dir is not its.
            let path = home.join(".cpn-script.sh");
            fs::write(&path, script)
                .map_err(|e| format!("cannot write '{}': {e}", path.display()))?;
            if let Some(id) = who {
                std::os::unix::fs::chown(&path, Some(id.uid), Some(id.gid))
                    .map_err(|e| format!("cannot hand '{}' to the task: {e}", path.display()))?;
            }
            vec!["/bin/sh".into(), path.into_os_string()]
        }
        (None, false) => a.command.iter().map(OsString::from).collect(),
        (None, true) => return Err("the assignment has neither a command nor a script".into()),
    };
    let path_var = OsString::from(a.env.get("PATH").map_or(DEFAULT_PATH, String::as_str));
    argv[0] = resolve_program(&argv[0], Some(&path_var), &workdir)?.into_os_string();

    let cgroups = iso.make_cgroups(&a.attempt_id, &a.resources, &a.gpus);
    // Recorded before checking, so that a partial set is removed with the attempt.
    att.cgroups = match &cgroups {
        Ok(c) => c.clone(),
        Err(_) => Vec::new(),
    };
    let listed: String = att
        .cgroups
        .iter()
        .map(|c| format!("{}\n", c.display()))
        .collect();
    let _ = fs::write(dir.join("cgroups"), listed);
    let cgroups = cgroups?;

    let open = |name: &str| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(name))
            .map_err(|e| format!("cannot open '{}': {e}", dir.join(name).display()))
    };
    let (stdout, stderr) = (open("stdout")?, open("stderr")?);
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(WRAPPER)
        .arg("cpn-task")
        .arg(dir.join("exit"))
        .args(&cgroups)
        .arg("--")
        .args(iso.drop_to(who))
        .args(&argv)
        .current_dir(&workdir)
        // Nothing of the agent's environment reaches the task.
        .env_clear()
        .env("PATH", DEFAULT_PATH)
        .env("HOME", &home)
        .envs(&a.env)
        .env("CPN_TASK_ID", &a.task_id)
        .env("CPN_ATTEMPT_ID", &a.attempt_id)
        .env("CPN_ATTEMPT", a.attempt.to_string())
        .env("CPN_TENANT", &a.tenant)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0);
    if !a.gpus.is_empty() {
        let list: Vec<String> = a.gpus.iter().map(u32::to_string).collect();
        cmd.env("CUDA_VISIBLE_DEVICES", list.join(","));
    }
    let started_at = Utc::now();
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start '{}': {e}", a.command.join(" ")))?;
    Ok((child, started_at))
}

/// Finds the program to run: a name without `/` on PATH (relative PATH entries and paths
/// with `/` are taken from the working directory), which must be an executable file.
fn resolve_program(
    prog: &std::ffi::OsStr,
    path_var: Option<&std::ffi::OsStr>,
    workdir: &Path,
) -> Result<PathBuf, String> {
    let name = prog.to_string_lossy();
    if name.is_empty() {
        return Err("the command's program name is empty".into());
    }
    if name.contains('/') {
        let p = workdir.join(prog);
        return if is_executable(&p) {
            Ok(p)
        } else {
            Err(format!("program '{name}' not found or not executable"))
        };
    }
    for d in std::env::split_paths(path_var.unwrap_or_default()) {
        let d = if d.as_os_str().is_empty() {
            workdir.to_path_buf()
        } else {
            workdir.join(d)
        };
        let p = d.join(prog);
        if is_executable(&p) {
            return Ok(p);
        }
    }
    Err(format!("program '{name}' not found on PATH"))
}

fn is_executable(p: &Path) -> bool {
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Cuts each output file of an attempt longer than `cap` back to `cap` bytes followed by
/// the truncation marker; a file already cut loses only what follows its marker.
fn cut_output(dir: &Path, cap: u64) {
    use std::os::unix::fs::FileExt;
    let marker = truncation_marker(cap);
    let marked = cap + marker.len() as u64;
    for stream in Stream::ALL {
        let path = dir.join(stream.name());
        let len = fs::metadata(&path).map_or(0, |m| m.len());
        if len <= cap {
            continue;
        }
        let cut = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .and_then(|f| {
                let mut tail = vec![0; marker.len()];
                let has_marker = len >= marked
                    && f.read_exact_at(&mut tail, cap).is_ok()
                    && tail == marker.as_bytes();
                if has_marker {
                    if len > marked {
                        f.set_len(marked)?;
                    }
                    return Ok(());
                }
                f.set_len(cap)?;
                // At its place, whatever the task appended meanwhile (the next cut drops that).
                f.write_all_at(marker.as_bytes(), cap)
            });
        if let Err(e) = cut {
            tracing::warn!(path = %path.display(), error = %e, "cannot cut an attempt's output");
        }
    }
}

/// The exit code in `{dir}/exit`, once the wrapper has written it completely.
fn read_exit_file(dir: &Path) -> Option<i32> {
    let s = fs::read_to_string(dir.join("exit")).ok()?;
    if !s.ends_with('\n') {
        return None;
    }
    s.trim().parse().ok()
}

fn read_trimmed(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

/// Whether a process exists and is not a zombie.
fn pid_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if raw <= 1 {
        return false;
    }
    match kill(Pid::from_raw(raw), None) {
        Err(Errno::ESRCH) => false,
        // EPERM: it exists but is not ours to signal.
        _ => procfs::process_state(raw).is_none_or(|s| s != 'Z' && s != 'X'),
    }
}

/// Whether the process that was started as `pid` (at `start`, when known) still lives.
fn process_alive(pid: u32, start: Option<u64>) -> bool {
    pid_alive(pid)
        && start.is_none_or(|s| {
            i32::try_from(pid)
                .ok()
                .and_then(procfs::start_time)
                .is_none_or(|t| t == s)
        })
}

/// Writes a file durably: temporary file, fsync, rename.
pub(crate) fn write_durable(path: &Path, bytes: &[u8]) -> Result<(), AgentError> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(AgentError::io("creating", &tmp))?;
    f.write_all(bytes)
        .map_err(AgentError::io("writing", &tmp))?;
    f.sync_all().map_err(AgentError::io("syncing", &tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(AgentError::io("renaming", path))?;
    if let Some(parent) = path.parent() {
        sync_dir(parent);
    }
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpn_api_types::schedule::TaskResources;
    use std::os::unix::fs::MetadataExt;

    fn assignment(id: &str, command: &[&str]) -> Assignment {
        Assignment {
            attempt_id: id.to_string(),
            task_id: format!("task-{id}"),
            attempt: 1,
            name: id.to_string(),
            tenant: "t1".to_string(),
            command: command.iter().map(|s| s.to_string()).collect(),
            script: None,
            env: BTreeMap::new(),
            workdir: None,
            resources: TaskResources::default(),
            gpus: Vec::new(),
            max_output_bytes: None,
        }
    }

    /// A runner that runs tasks as the test's own user, without cgroups: these tests look
    /// at the processes' bookkeeping, not at their isolation.
    fn open(dir: &Path) -> Runner {
        Runner::open_with(dir, Isolation::unenforced(dir.join("work-root"))).unwrap()
    }

    /// Polls until the attempt has ended; returns its final report.
    fn wait_end(runner: &mut Runner, id: &str, limit: Duration) -> AttemptReport {
        let t0 = Instant::now();
        loop {
            runner.poll();
            let r = runner.report(id).expect("held");
            if r.state != AttemptState::Running {
                return r;
            }
            assert!(t0.elapsed() < limit, "{id} still running after {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn group_gone(pgid: u32) -> bool {
        procfs::scan_groups()
            .get(&(pgid as i32))
            .is_none_or(|g| g.live == 0)
    }

    #[test]
    fn argv_task_exit_code_and_output_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut runner = open(dir.path());
        let a = assignment("a1", &["sh", "-c", "echo out; echo err >&2; exit 3"]);
        assert!(runner.start(&a).unwrap());
        let r = wait_end(&mut runner, "a1", Duration::from_secs(10));
        assert_eq!(r.state, AttemptState::Exited);
        assert_eq!(r.exit_code, Some(3));
        assert!(r.pid.is_some() && r.started_at.is_some() && r.finished_at.is_some());
        assert_eq!(r.error, None);
        let adir = runner.attempt_dir("a1");
        assert_eq!(fs::read_to_string(adir.join("stdout")).unwrap(), "out\n");
        assert_eq!(fs::read_to_string(adir.join("stderr")).unwrap(), "err\n");
        assert!(adir.join("assignment.json").exists());
        assert!(runner.work_dir("a1").is_dir());
    }

    /// Both output files of an attempt, as text, and their total size.
    fn outputs(runner: &Runner, id: &str) -> (String, String, u64) {
        let [out, err] = Stream::ALL.map(|s| fs::read(runner.output_path(id, s)).unwrap());
        let total = (out.len() + err.len()) as u64;
        let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
        (text(out), text(err), total)
    }

    /// Waits for a file to reach `len` bytes.
    fn wait_len(path: &Path, len: u64) {
        let t0 = Instant::now();
        while fs::metadata(path).map_or(0, |m| m.len()) < len {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "{} never grew",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn output_past_the_cap_is_cut_with_a_marker_while_the_attempt_runs_on() {
        let dir = tempfile::tempdir().unwrap();
        let mut runner = open(dir.path());
        let cap = 1 << 20;
        // Ten times the cap on stdout, then a line on stderr and a pause to look at it.
        let mut a = assignment(
            "big",
            &[
                "sh",
                "-c",
                "head -c 10485760 /dev/zero; echo done >&2; sleep 2; echo late",
            ],
        );
        a.max_output_bytes = Some(cap);
        runner.start(&a).unwrap();
        wait_len(&runner.output_path("big", Stream::Stderr), 5);
        runner.poll();
        let marker = truncation_marker(cap);
        let (out, err, _) = outputs(&runner, "big");
        assert_eq!(out.len() as u64, cap + marker.len() as u64);
        assert!(out.ends_with(&marker));
        assert_eq!(err, "done\n", "a stream under the cap is whole");
        assert!(runner.is_running("big"), "the attempt runs on");
        // What it writes after the cut goes at the next poll; it ends as it would have.
        let r = wait_end(&mut runner, "big", Duration::from_secs(20));
        assert_eq!(
            (r.state, r.exit_code, r.end_reason),
            (AttemptState::Exited, Some(0), None)
        );
        let (out, _, _) = outputs(&runner, "big");
        assert_eq!(out.len() as u64, cap + marker.len() as u64);
        assert!(out.ends_with(&marker));
    }

    #[test]
    fn a_steady_writer_is_cut_back_at_every_poll_with_one_marker() {
        let dir = tempfile::tempdir().unwrap();
        let mut runner = open(dir.path());
        let cap = 1 << 20;
        let mut a = assignment(
            "steady",
            &["sh", "-c", "while :; do head -c 65536 /dev/zero; done"],
        );
        a.max_output_bytes = Some(cap);
        runner.start(&a).unwrap();
        let path = runner.output_path("steady", Stream::Stdout);
        let t0 = Instant::now();
        let mut polls = 0;
        while t0.elapsed() < Duration::from_secs(2) {
            runner.poll();
            polls += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        // It wrote through many cuts and runs on.
        assert!(polls > 20 && runner.is_running("steady"));
        runner.stop("steady", false);
        let r = wait_end(&mut runner, "steady", Duration::from_secs(20));
        assert_eq!(r.state, AttemptState::Killed);
        let out = fs::read(&path).unwrap();
        let marker = truncation_marker(cap);
        assert_eq!(out.len() as u64, cap + marker.len() as u64);
        assert!(out.ends_with(marker.as_bytes()));
        let text = String::from_utf8_lossy(&out);
        assert_eq!(text.matches("output truncated").count(), 1);
    }

    #[test]
    fn an_attempt_found_ended_past_its_output_cap_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut runner = open(dir.path());
        let cap = 1 << 20;
        let mut a = assignment(
            "burst",
            &[
                "sh",
                "-c",
                "head -c 5242880 /dev/zero; head -c 5242880 /dev/zero >&2",
            ],
        );
        a.max_output_bytes = Some(cap);
        runner.start(&a).unwrap();
        // Not polled while it runs: its files are cut when its end is seen.
        let t0 = Instant::now();
        while read_exit_file(&runner.attempt_dir("burst")).is_none() {
            assert!(t0.elapsed() < Duration::from_secs(20), "still running");
            std::thread::sleep(Duration::from_millis(20));
        }
        let r = wait_end(&mut runner, "burst", Duration::from_secs(10));
        assert_eq!((r.state, r.exit_code), (AttemptState::Exited, Some(0)));
        let (out, err, total) = outputs(&runner, "burst");
        let marker = truncation_marker(cap);
        assert_eq!(total, 2 * (cap + marker.len() as u64));
        assert!(out.ends_with(&marker) && err.ends_with(&marker));
    }

    #[test]
    fn arguments_with_spaces_and_quotes_pass_through() {
        let dir = tempfile::tempdir().unwrap();
        let mut runner = open(dir.path());
        let a = assignment("q", &["printf", "%s|", "a b", "it's \"x\"", "$HOME", ""]);
        runner.start(&a).unwrap();
        let r = wait_end(&mut runner, "q", Duration::from_secs(10));
        assert_eq!(r.exit_code, Some(0));
        let out = fs::read_to_string(runner.output_path("q", Stream::Stdout)).unwrap();
        assert_eq!(out, "a b|it's \"x\"|$HOME||");
    }

    #[test]
    fn script_task_env_and_workdir() {
        let dir = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let mut runner = open(dir.path());
        let mut a = assignment("s1", &[]);
        a.script = Some(
            "echo \"$CPN_TASK_ID $CPN_ATTEMPT_ID $CPN_ATTEMPT $CUDA_VISIBLE_DEVICES $FOO\"\npwd\nexit 7\n"
                .into(),
        );
        a.env.insert("FOO".into(), "bar".into());
        a.gpus = vec![0, 2];
        a.workdir = Some(work.path().to_string_lossy().into_owned());
        runner.start(&a).unwrap();
        let r = wait_end(&mut runner, "s1", Duration::from_secs(10));
        assert_eq!(r.exit_code, Some(7));
        let out = fs::read_to_string(runner.output_path("s1", Stream::Stdout)).unwrap();
        let want_pwd = work.path().canonicalize().unwrap();
        assert_eq!(
            out,
            format!("task-s1 s1 1 0,2 bar\n{}\n", want_pwd.display())
        );
        assert!(runner.attempt_dir("s1").join("script.sh").exists());
    }

    #[test]
    fn failures_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut runner = open(dir.path());
        runner
            .start(&assignment("nf", &["no-such-program-cpn", "x"]))
            .unwrap();
        let r = runner.report("nf").unwrap();
        assert_eq!(r.state, AttemptState::FailedToStart);
        let err = r.error.unwrap();
        assert!(
            err.contains("'no-such-program-cpn'") && err.contains("PATH"),
            "{err}"
        );

        let mut a = assignment("wd", &["true"]);
        a.workdir = Some("/no/such/dir".into());
        runner.start(&a).unwrap();
        let r = runner.report("wd").unwrap();
        assert_eq!(r.state, AttemptState::FailedToStart);
        assert!(r.error.unwrap().contains("/no/such/dir"));

        // A PATH of the task's own is searched instead of the agent's.
        let mut a = assignment("p", &["sh", "-c", "true"]);
        a.env.insert("PATH".into(), "/nonexistent".into());
        runner.start(&a).unwrap();
        assert_eq!(
            runner.report("p").unwrap().state,
            AttemptState::FailedToStart
        );

        // Failed starts are durable too: re-adopted as such.
        drop(runner);
        let runner = open(dir.path());
        assert_eq!(
            runner.report("nf").unwrap().state,
            AttemptState::FailedToStart
        );
    }

    #[test]
    fn stop_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let mut runner = open(dir.path());
        runner
            .start(&assignment(
                "k",
                &["sh", "-c", "sh -c 'sleep 60 & wait' & sleep 60"],
            ))
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        runner.poll();
        assert!(runner.is_running("k"));
        let pgid = runner.pgid("k").unwrap();
        let g = procfs::scan_groups()[&(pgid as i32)];
        assert!(g.live >= 4, "wrapper, sh, sh, sleeps: {g:?}");
        let t0 = Instant::now();
        runner.stop("k", false);
        let r = wait_end(&mut runner, "k", Duration::from_secs(8));
        assert_eq!(r.state, AttemptState::Killed);
        assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
        assert!(group_gone(pgid));
        assert!(r.usage.is_some());
        // A stop for an unknown id is ignored.
        runner.stop("unknown", true);
        // Forgetting removes the directory and the id is still never started again.
        runner.forget("k");
        assert!(!runner.attempt_dir("k").exists());
        assert!(!runner.start(&assignment("k", &["true"])).unwrap());
    }

    #[test]
    fn sigkill_after_the_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let mut runner = open(dir.path());
        runner
            .start(&assignment("t", &["sh", "-c", "trap '' TERM; sleep 60"]))
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let pgid = runner.pgid("t").unwrap();
        runner.stop("t", true);
        let t0 = Instant::now();
        while runner.report("t").is_some() {
            assert!(t0.elapsed() < Duration::from_secs(10));
            runner.poll();
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(t0.elapsed() >= KILL_GRACE - Duration::from_millis(500));
        assert!(group_gone(pgid));
        // Stopped with forget: gone, directory removed.
        assert!(!runner.attempt_dir("t").exists());
    }

    #[test]
    fn readoption_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut runner = open(dir.path());
        runner
            .start(&assignment(
                "r",
                &["sh", "-c", "sleep 1; echo done; exit 5"],
            ))
            .unwrap();
        runner
            .start(&assignment("long", &["sh", "-c", "sleep 60"]))
            .unwrap();
        runner.poll();
        let pid = runner.pgid("r").unwrap();
        drop(runner); // the Child handles go; the processes do not

        let mut runner = open(dir.path());
        assert!(runner.is_running("r"));
        assert_eq!(runner.pgid("r"), Some(pid));
        assert_eq!(runner.report("r").unwrap().state, AttemptState::Running);
        let r = wait_end(&mut runner, "r", Duration::from_secs(10));
        assert_eq!((r.state, r.exit_code), (AttemptState::Exited, Some(5)));
        assert_eq!(
            fs::read_to_string(runner.output_path("r", Stream::Stdout)).unwrap(),
            "done\n"
        );
        // Never started twice, re-adopted or not.
        assert!(!runner.start(&assignment("r", &["true"])).unwrap());

        // A process that ends while no agent watches, without an exit file: unknown.
        let long_pid = runner.pgid("long").unwrap();
        drop(runner);
        killpg(Pid::from_raw(long_pid as i32), Signal::SIGKILL).unwrap();
        let t0 = Instant::now();
        while !group_gone(long_pid) {
            assert!(t0.elapsed() < Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut runner = open(dir.path());
        runner.poll();
        let r = runner.report("long").unwrap();
        assert_eq!(r.state, AttemptState::Exited);
        assert_eq!(r.exit_code, None);
        assert_eq!(r.error.as_deref(), Some(UNKNOWN_END));
        // The ended report of "r" was kept as it was.
        assert_eq!(runner.report("r").unwrap().exit_code, Some(5));
    }

    #[test]
    fn an_attempt_id_runs_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut runner = open(dir.path());
        let count = dir.path().join("count");
        let cmd = format!("echo x >> '{}'", count.display());
        let a = assignment("once", &["sh", "-c", &cmd]);
        assert!(runner.start(&a).unwrap());
        assert!(!runner.start(&a).unwrap());
        wait_end(&mut runner, "once", Duration::from_secs(10));
        drop(runner);
        let mut runner = open(dir.path());
        assert!(!runner.start(&a).unwrap());
        runner.forget("once");
        drop(runner);
        let mut runner = open(dir.path());
        assert!(!runner.start(&a).unwrap());
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(fs::read_to_string(&count).unwrap(), "x\n");
        assert!(matches!(
            runner.start(&assignment("../x", &["true"])),
            Err(AgentError::InvalidAttemptId(_))
        ));
    }

    #[test]
    fn a_reused_pid_is_not_the_attempt() {
        let me = std::process::id();
        let start = procfs::start_time(me as i32).unwrap();
        assert!(process_alive(me, Some(start)));
        assert!(process_alive(me, None));
        assert!(!process_alive(me, Some(start + 1)));
    }

    #[test]
    fn usage_is_measured() {
        let dir = tempfile::tempdir().unwrap();
        let mut runner = open(dir.path());
        runner
            .start(&assignment(
                "u",
                &[
                    "sh",
                    "-c",
                    "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done",
                ],
            ))
            .unwrap();
        let r = wait_end(&mut runner, "u", Duration::from_secs(30));
        assert_eq!(r.exit_code, Some(0));
        let u = r.usage.expect("usage");
        assert!(u.cpu_seconds > 0.0, "{u:?}");
        assert!(u.max_rss_mib > 0.0, "{u:?}");
        assert!(u.cpu_util_pct > 0.0 && u.cpu_util_pct.is_finite(), "{u:?}");
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// A work root tasks of other uids can reach (a tempdir is 0700).
    fn open_work_root() -> (tempfile::TempDir, IsolationConfig) {
        let t = tempfile::tempdir().unwrap();
        fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let config = IsolationConfig {
            work_root: Some(t.path().join("work")),
            ..IsolationConfig::default()
        };
        (t, config)
    }

    #[test]
    fn a_root_runner_runs_each_tenant_as_its_own_identity_with_a_clean_env() {
        if !is_root() {
            eprintln!("skipped: switching identities needs root");
            return;
        }
        let state = tempfile::tempdir().unwrap();
        let (_work, config) = open_work_root();
        let mut runner = Runner::open(state.path(), &config).unwrap();
        assert!(runner.isolation().uid_switch);
        assert_eq!(
            fs::metadata(state.path()).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let script =
            "id -u; id -g; id -G; echo \"$HOME\"; pwd; env | cut -d= -f1 | sort | tr '\\n' ' '";
        let mut a = assignment("i1", &["sh", "-c", script]);
        a.tenant = "alpha".into();
        a.env.insert("FOO".into(), "bar".into());
        runner.start(&a).unwrap();
        let mut b = assignment("i2", &["id", "-u"]);
        b.tenant = "beta".into();
        runner.start(&b).unwrap();
        assert_eq!(
            wait_end(&mut runner, "i1", Duration::from_secs(10)).exit_code,
            Some(0)
        );
        assert_eq!(
            wait_end(&mut runner, "i2", Duration::from_secs(10)).exit_code,
            Some(0)
        );
        let out = fs::read_to_string(runner.output_path("i1", Stream::Stdout)).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        let uid: u32 = lines[0].parse().unwrap();
        assert!(DEFAULT_TASK_UIDS_FOR_TEST.contains(&uid), "{out}");
        assert_eq!(lines[1], lines[0], "gid = uid: {out}");
        assert_eq!(lines[2], lines[0], "no supplementary groups: {out}");
        let home = runner.work_dir("i1");
        assert_eq!(lines[3], home.display().to_string());
        assert_eq!(lines[4], home.display().to_string());
        assert!(!home.starts_with(state.path()));
        let meta = fs::metadata(&home).unwrap();
        assert_eq!(
            (meta.uid(), meta.permissions().mode() & 0o777),
            (uid, 0o700)
        );
        let keys: Vec<&str> = lines[5].split_whitespace().collect();
        for k in &keys {
            assert!(
                [
                    "PATH",
                    "HOME",
                    "PWD",
                    "FOO",
                    "CPN_TASK_ID",
                    "CPN_ATTEMPT_ID",
                    "CPN_ATTEMPT",
                    "CPN_TENANT"
                ]
                .contains(k),
                "{k} leaked: {keys:?}"
            );
        }
        let other: u32 = fs::read_to_string(runner.output_path("i2", Stream::Stdout))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_ne!(uid, other, "each tenant has an identity of its own");
        // The same tenant keeps its identity across agent restarts.
        runner.forget("i1");
        assert!(
            !home.exists(),
            "a forgotten attempt's working directory goes"
        );
        drop(runner);
        let mut runner = Runner::open(state.path(), &config).unwrap();
        let mut c = assignment("i3", &["id", "-u"]);
        c.tenant = "alpha".into();
        runner.start(&c).unwrap();
        wait_end(&mut runner, "i3", Duration::from_secs(10));
        let again = fs::read_to_string(runner.output_path("i3", Stream::Stdout)).unwrap();
        assert_eq!(again.trim(), uid.to_string());
    }

    const DEFAULT_TASK_UIDS_FOR_TEST: std::ops::RangeInclusive<u32> =
        crate::isolation::DEFAULT_TASK_UIDS;

    #[test]
    fn over_its_memory_an_attempt_ends_with_oom_and_its_cgroups_go() {
        if !is_root() {
            eprintln!("skipped: cgroups need root");
            return;
        }
        let state = tempfile::tempdir().unwrap();
        let (_work, config) = open_work_root();
        let mut runner = Runner::open(state.path(), &config).unwrap();
        if runner.isolation().cgroups == cpn_api_types::agent::CgroupMode::None {
            eprintln!("skipped: no writable cgroups here");
            return;
        }
        let mut a = assignment("oom1", &["tail", "/dev/zero"]);
        a.resources.memory_gib = 0.03;
        runner.start(&a).unwrap();
        let cgroups = runner.attempts["oom1"].cgroups.clone();
        assert!(!cgroups.is_empty() && cgroups.iter().all(|c| c.is_dir()));
        let r = wait_end(&mut runner, "oom1", Duration::from_secs(30));
        assert_eq!(r.end_reason, Some(EndReason::Oom), "{r:?}");
        runner.forget("oom1");
        assert!(cgroups.iter().all(|c| !c.exists()), "{cgroups:?}");
        // Within its memory, no such reason.
        let mut ok = assignment("ok1", &["true"]);
        ok.resources.memory_gib = 0.1;
        runner.start(&ok).unwrap();
        let r = wait_end(&mut runner, "ok1", Duration::from_secs(10));
        assert_eq!((r.exit_code, r.end_reason), (Some(0), None));
    }

    #[test]
    fn without_root_only_the_own_tenant_runs_unless_single_user() {
        let dir = tempfile::tempdir().unwrap();
        let mut iso = Isolation::unenforced(dir.path().join("w"));
        iso.single_user_for_test(false);
        iso.set_own_tenant(Some("mine".into()));
        assert_eq!(iso.identity_for("mine"), Ok(None));
        let err = iso.identity_for("theirs").unwrap_err();
        assert!(
            err.contains("not root") && err.contains("--single-user"),
            "{err}"
        );
        assert!(
            iso.describe().contains("only the agent's own tenant"),
            "{}",
            iso.describe()
        );
        iso.single_user_for_test(true);
        assert_eq!(iso.identity_for("theirs"), Ok(None));
    }

    #[test]
    fn a_work_root_inside_the_state_dir_is_refused() {
        let state = tempfile::tempdir().unwrap();
        let config = IsolationConfig {
            work_root: Some(state.path().join("work")),
            ..IsolationConfig::default()
        };
        let err = Runner::open(state.path(), &config).unwrap_err();
        assert!(
            err.to_string().contains("must not contain each other"),
            "{err}"
        );
    }
}
