//! The agent's loops: registration, heartbeats, the assignment long poll, and the watch
//! loop that ships output and state reports of the attempts.

use crate::AgentConfig;
use crate::client::Api;
use crate::error::AgentError;
use crate::inventory::{host_name, inventory};
use crate::lease_access::{LeaseAccountError, LeaseAccounts, LeaseAccountsConfig};
use crate::metrics::MetricsSampler;
use crate::runner::{Runner, Stream};
use cpn_api_types::agent::{
    AgentRegister, AgentRegistered, Assignments, AttemptReport, AttemptState, AttemptVerdict,
    Heartbeat, LeaseAccessReport,
};
use std::io::{Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Output is shipped in chunks of at most this many bytes.
pub(crate) const LOG_CHUNK: u64 = 256 * 1024;
/// The long poll's wait.
const LONG_POLL: Duration = Duration::from_secs(20);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const MIN_BACKOFF: Duration = Duration::from_millis(500);

/// State shared by the loops.
pub(crate) struct Shared {
    pub api: Api,
    pub config: AgentConfig,
    pub node: Mutex<Option<AgentRegistered>>,
    pub runner: Mutex<Option<Runner>>,
    /// Class A lease accounts, opened at the first grant or revocation, or at registration
    /// when the state dir records accounts; `None` before (and where they cannot be opened).
    pub lease_accounts: Mutex<Option<LeaseAccounts>>,
    /// The GPUs of the inventory the agent registered with (how many, and whether
    /// emulated): a lease naming another GPU is refused.
    pub gpus: Mutex<Option<(u32, bool)>>,
    /// Why the agent stopped by itself (the server refused its credential).
    pub fatal: Mutex<Option<String>>,
    pub stop: watch::Sender<bool>,
    /// Wakes the watch loop before its next tick: there is a report to send now.
    pub watch_wake: tokio::sync::Notify,
}

impl Shared {
    pub fn node_id(&self) -> Option<String> {
        lock(&self.node).as_ref().map(|n| n.node_id.clone())
    }

    fn runner(&self) -> MutexGuard<'_, Option<Runner>> {
        lock(&self.runner)
    }

    /// Stops the agent for good: the server will not take this node's requests.
    fn fail(&self, why: String) {
        tracing::error!(server = %self.api.base(), "{why}");
        lock(&self.fatal).get_or_insert(why);
        let _ = self.stop.send(true);
    }

    /// Stops the agent when an answer says its credential is refused.
    fn check_refused(&self, e: &AgentError) {
        if let AgentError::Status {
            status: 401, body, ..
        } = e
        {
            self.fail(format!(
                "the server refused this node's credential ({body}); the node was revoked: \
                 join again with a new join token (cpn agent --join TOKEN)"
            ));
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `f` on the runner on a blocking thread, never on the async ones: starts, polls and
/// forgets do file I/O (fsyncs, directory removals), and whoever waits for the runner's
/// lock would block an async thread too, which in `cpn serve` also serves the API.
/// `None` while the runner is not open (or the runtime is shutting down).
async fn on_runner<T: Send + 'static>(
    shared: &Arc<Shared>,
    f: impl FnOnce(&mut Runner) -> T + Send + 'static,
) -> Option<T> {
    let shared = shared.clone();
    match tokio::task::spawn_blocking(move || shared.runner().as_mut().map(f)).await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => None,
    }
}

/// Sleeps, or returns `true` at once when the agent is stopping.
async fn stopping_after(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

fn next_backoff(b: Duration) -> Duration {
    (b * 2).clamp(MIN_BACKOFF, MAX_BACKOFF)
}

/// The agent: opens the runner, registers, then runs the loops until stopped.
pub(crate) async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        match Runner::open(&shared.config.state_dir, &shared.config.isolation) {
            Ok(r) => {
                tracing::info!("{}", r.describe_isolation());
                *shared.runner() = Some(r);
                break;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot open the agent's state directory");
                if stopping_after(&mut stop, backoff).await {
                    return;
                }
                backoff = next_backoff(backoff);
            }
        }
    }
    let watch_task = tokio::spawn(watch_loop(shared.clone(), stop.clone()));
    let Some(registered) = register(&shared, &mut stop).await else {
        let _ = watch_task.await;
        return;
    };
    let mut interval = heartbeat_interval(&registered);
    let poll_task = tokio::spawn(assignment_loop(shared.clone(), stop.clone()));
    let mut sampler = if shared.config.emulate.is_some() {
        MetricsSampler::emulated()
    } else {
        MetricsSampler::new()
    };
    loop {
        if stopping_after(&mut stop, interval).await {
            break;
        }
        let Some(node) = shared.node_id() else {
            continue;
        };
        let attempts = on_runner(&shared, heartbeat_reports)
            .await
            .unwrap_or_default();
        let hb = Heartbeat {
            metrics: sampler.sample(),
            attempts,
        };
        match shared.api.heartbeat(&node, &hb).await {
            Ok(reply) => {
                on_runner(&shared, move |runner| {
                    for id in &reply.stop {
                        runner.stop(id, true);
                    }
                    for id in &reply.acknowledged {
                        if !runner.is_running(id) {
                            runner.forget(id);
                        }
                    }
                })
                .await;
            }
            Err(AgentError::UnknownNode(_)) => {
                tracing::warn!(node = %node, server = %shared.api.base(), "the server forgot this node: registering again");
                *lock(&shared.node) = None;
                match register(&shared, &mut stop).await {
                    Some(r) => interval = heartbeat_interval(&r),
                    None => break,
                }
            }
            Err(e) => {
                shared.check_refused(&e);
                tracing::warn!(server = %shared.api.base(), error = %e, "heartbeat failed")
            }
        }
    }
    let _ = poll_task.await;
    let _ = watch_task.await;
}

fn heartbeat_interval(r: &AgentRegistered) -> Duration {
    Duration::from_millis(r.heartbeat_interval_ms)
        .clamp(Duration::from_millis(100), Duration::from_secs(60))
}

/// Registers until it succeeds; `None` when the agent stops first.
async fn register(
    shared: &Arc<Shared>,
    stop: &mut watch::Receiver<bool>,
) -> Option<AgentRegistered> {
    let name = shared.config.name.clone().unwrap_or_else(host_name);
    let mut inventory = match &shared.config.emulate {
        Some(e) => e.inventory(),
        None => tokio::task::spawn_blocking(inventory)
            .await
            .unwrap_or_default(),
    };
    inventory.isolation = shared.runner().as_ref().map(Runner::isolation);
    *lock(&shared.gpus) = Some((inventory.gpus.len() as u32, inventory.emulated));
    let body = AgentRegister {
        site: shared.config.site.clone(),
        name,
        inventory,
        labels: shared.config.labels.clone(),
    };
    let state_dir = &shared.config.state_dir;
    let mut saved = crate::credential::saved_credential(state_dir);
    let mut backoff = MIN_BACKOFF;
    loop {
        if *stop.borrow() {
            return None;
        }
        let using_join_token = match (&saved, &shared.config.join_token) {
            (Some(c), _) => {
                shared.api.set_token(&c.credential);
                false
            }
            (None, Some(join)) => {
                shared.api.set_token(join);
                true
            }
            (None, None) => {
                shared.fail(format!(
                    "no credential in {} and no join token: join with `cpn agent --join TOKEN` \
                     (an operator makes one with `cpn site join-token create {}`)",
                    state_dir.display(),
                    shared.config.site
                ));
                return None;
            }
        };
        // Lease accounts made from here on come from polls after this registration: its
        // list of live leases does not speak for them.
        let asked_at = chrono::Utc::now();
        match shared.api.register(&body).await {
            Ok(r) => {
                if let Some(credential) = &r.credential {
                    let c = crate::credential::SavedCredential {
                        server: shared.api.base().to_string(),
                        site: r.site.clone(),
                        name: r.name.clone(),
                        node_id: r.node_id.clone(),
                        credential: credential.clone(),
                    };
                    // Kept before use: the join token may have been good for one node only.
                    if let Err(e) = crate::credential::save_credential(state_dir, &c) {
                        tracing::error!(error = %e, "cannot keep the node's credential; a restart will need a new join token");
                    }
                    shared.api.set_token(credential);
                } else if using_join_token {
                    shared.fail("the server answered the join without a credential".into());
                    return None;
                }
                tracing::info!(node = %r.node_id, site = %r.site, name = %r.name, server = %shared.api.base(), "registered");
                if let Some(runner) = shared.runner().as_mut() {
                    runner.set_own_tenant(r.tenant.clone());
                    let iso = runner.isolation();
                    if !iso.uid_switch && !iso.single_user {
                        tracing::warn!("{}", runner.describe_isolation());
                    }
                }
                *lock(&shared.node) = Some(r.clone());
                if let Some(live) = r.live_leases.clone() {
                    reconcile_leases(shared, live, asked_at).await;
                }
                return Some(r);
            }
            Err(AgentError::Status {
                status: 401,
                body: why,
                ..
            }) if !using_join_token && shared.config.join_token.is_some() => {
                tracing::warn!(server = %shared.api.base(), "the saved credential was refused ({why}); joining with the join token");
                saved = None;
                continue;
            }
            Err(AgentError::Status {
                status: status @ (401 | 403),
                body: why,
                ..
            }) => {
                shared.fail(format!(
                    "the server refused to register this node ({status}: {why})"
                ));
                return None;
            }
            Err(e) => {
                tracing::warn!(server = %shared.api.base(), error = %e, "registration failed; retrying in {backoff:?}");
            }
        }
        if stopping_after(stop, backoff).await {
            return None;
        }
        backoff = next_backoff(backoff);
    }
}

/// What the heartbeat says of each attempt: an ended attempt shows as running until all
/// its output is shipped, so that the server never sees an end before the output.
fn heartbeat_reports(runner: &mut Runner) -> Vec<AttemptReport> {
    let mut out = Vec::new();
    for id in runner.ids() {
        let Some(report) = runner.report(&id) else {
            continue;
        };
        let logs_done = runner.ship_state(&id).is_some_and(|s| s.logs_done);
        if report.state != AttemptState::Running
            && report.state != AttemptState::FailedToStart
            && !logs_done
        {
            out.extend(runner.running_report(&id));
        } else {
            out.push(report);
        }
    }
    out
}

/// The long poll for work.
async fn assignment_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        if *stop.borrow() {
            return;
        }
        let Some(node) = shared.node_id() else {
            if stopping_after(&mut stop, Duration::from_millis(200)).await {
                return;
            }
            continue;
        };
        let result = tokio::select! {
            r = shared.api.assignments(&node, LONG_POLL) => r,
            _ = stop.changed() => return,
        };
        match result {
            Ok(a) => {
                backoff = MIN_BACKOFF;
                if !a.lease_grants.is_empty() || !a.lease_revokes.is_empty() {
                    lease_work(&shared, &node, &a).await;
                }
                sweep_leases(&shared).await;
                let reports = on_runner(&shared, move |runner| start_assigned(runner, &a))
                    .await
                    .unwrap_or_default();
                if !reports.is_empty() {
                    let shared = shared.clone();
                    let node = node.clone();
                    tokio::spawn(async move {
                        let sent = futures_util::future::join_all(
                            reports.iter().map(|r| shared.api.report(&node, r)),
                        )
                        .await;
                        on_runner(&shared, move |runner| {
                            for (r, result) in reports.iter().zip(sent) {
                                if let Some(s) = runner.ship_state(&r.attempt_id) {
                                    s.running_in_flight = false;
                                    s.running_sent |= result.is_ok();
                                }
                            }
                        })
                        .await;
                        // A short task has often ended meanwhile: its end goes now.
                        shared.watch_wake.notify_one();
                    });
                }
            }
            Err(e) => {
                shared.check_refused(&e);
                tracing::warn!(server = %shared.api.base(), error = %e, "polling for assignments failed; retrying in {backoff:?}");
                if stopping_after(&mut stop, backoff).await {
                    return;
                }
                backoff = next_backoff(backoff);
            }
        }
    }
}

/// Class A lease access (issue #14): the grants and revocations a poll brought, run on a
/// blocking thread (they run `useradd`, `usermod` and kill processes; they need root), one
/// report each. A node that cannot manage lease accounts says why in every report, so the
/// lease shows it rather than waiting for ever.
async fn lease_work(shared: &Arc<Shared>, node: &str, a: &Assignments) {
    let (grants, revokes) = (a.lease_grants.clone(), a.lease_revokes.clone());
    let held = shared.clone();
    let reports = tokio::task::spawn_blocking(move || {
        let ids = grants
            .iter()
            .map(|g| g.lease_id.clone())
            .chain(revokes.iter().map(|r| r.lease_id.clone()));
        let mut guard = lock(&held.lease_accounts);
        let accounts = match open_lease_accounts(&held, &mut guard) {
            Ok(accounts) => accounts,
            Err(e) => {
                return ids
                    .map(|lease_id| LeaseAccessReport {
                        lease_id,
                        error: Some(format!("this node cannot manage lease accounts: {e}")),
                        ..Default::default()
                    })
                    .collect::<Vec<_>>();
            }
        };
        let mut out = Vec::new();
        for g in &grants {
            let (access, error) = match accounts.grant(g) {
                Ok(access) => (Some(access), None),
                Err(e) => (None, Some(e.to_string())),
            };
            out.push(LeaseAccessReport {
                lease_id: g.lease_id.clone(),
                access,
                error,
                ..Default::default()
            });
        }
        for r in &revokes {
            let (revoked, error) = match accounts.revoke(&r.lease_id) {
                Ok(revoked) => (Some(revoked), None),
                Err(e) => (None, Some(e.to_string())),
            };
            out.push(LeaseAccessReport {
                lease_id: r.lease_id.clone(),
                revoked,
                error,
                ..Default::default()
            });
        }
        out
    })
    .await
    .unwrap_or_default();
    for r in &reports {
        if let Err(e) = shared.api.lease_access(node, r).await {
            tracing::warn!(lease = %r.lease_id, error = %e, "reporting lease access failed; the server asks again");
        }
    }
}

/// The lease accounts' configuration: the node's lease settings, the GPUs it registered.
fn lease_config(shared: &Shared) -> LeaseAccountsConfig {
    let settings = &shared.config.lease;
    let host = settings
        .ssh_host
        .clone()
        .or_else(|| shared.config.name.clone())
        .unwrap_or_else(host_name);
    let gpus = *lock(&shared.gpus);
    LeaseAccountsConfig {
        home_root: settings.home_root.clone(),
        ssh_port: settings.ssh_port,
        host_key: settings.host_key.clone(),
        gpu_count: gpus.map(|(n, _)| n),
        emulated_gpus: gpus.is_some_and(|(_, emulated)| emulated),
        ..LeaseAccountsConfig::new(shared.config.state_dir.clone(), host)
    }
}

/// The lease accounts, opened on first use and kept (opening checks the host and writes
/// the forced command: not for every poll).
fn open_lease_accounts<'a>(
    shared: &Shared,
    slot: &'a mut Option<LeaseAccounts>,
) -> Result<&'a mut LeaseAccounts, LeaseAccountError> {
    if slot.is_none() {
        *slot = Some(LeaseAccounts::open(lease_config(shared))?);
    }
    Ok(slot.as_mut().expect("just opened"))
}

/// Moves the lease sessions that started since the last poll into their lease's cgroups
/// (sshd starts them in its own). Nothing to do, and nothing opened, while this agent
/// holds no lease accounts.
async fn sweep_leases(shared: &Arc<Shared>) {
    let shared = shared.clone();
    let moved = tokio::task::spawn_blocking(move || {
        lock(&shared.lease_accounts)
            .as_ref()
            .map_or(0, LeaseAccounts::sweep)
    })
    .await
    .unwrap_or_default();
    if moved > 0 {
        tracing::debug!(moved, "lease sessions moved into their cgroups");
    }
}

/// After a registration: revokes the accounts of leases the server no longer has live on
/// this node (they ended while the agent was down, or their revocation was lost), and
/// repeats the revocation of revoked ones. Accounts created after `asked_at` came from a
/// poll the list did not see, and are kept. Done only where the state dir records
/// accounts: an agent that never held one needs no root for this.
async fn reconcile_leases(
    shared: &Arc<Shared>,
    live: Vec<String>,
    asked_at: chrono::DateTime<chrono::Utc>,
) {
    if !crate::lease_access::recorded(&shared.config.state_dir) {
        return;
    }
    let held = shared.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut guard = lock(&held.lease_accounts);
        let accounts = open_lease_accounts(&held, &mut guard)?;
        let mut keep: std::collections::BTreeSet<String> = live.into_iter().collect();
        keep.extend(
            accounts
                .list()
                .into_iter()
                .filter(|a| a.created_at >= asked_at)
                .map(|a| a.lease_id),
        );
        accounts.reconcile(&keep)
    })
    .await;
    match outcome {
        Ok(Ok(revoked)) => {
            for r in revoked.iter().filter(|r| !r.already_revoked) {
                tracing::info!(lease = %r.lease_id, username = ?r.username, killed = r.processes_killed, "lease no longer live on the server: account revoked");
            }
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot reconcile the lease accounts with the server's live leases")
        }
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => {}
    }
}

/// Stops and starts what a poll brought; returns the "running" reports to send at once.
fn start_assigned(runner: &mut Runner, a: &Assignments) -> Vec<AttemptReport> {
    for id in &a.stop {
        runner.stop(id, true);
    }
    let mut started = Vec::new();
    for assignment in &a.assignments {
        match runner.start(assignment) {
            Ok(true) => started.push(assignment.attempt_id.clone()),
            Ok(false) => {
                tracing::debug!(attempt = %assignment.attempt_id, "already started: ignored")
            }
            Err(e) => {
                tracing::error!(attempt = %assignment.attempt_id, error = %e, "cannot start")
            }
        }
    }
    // Say "running" now rather than at the next watch tick: it is the dispatch latency
    // users see. The watch loop sends it again if this fails.
    let reports: Vec<AttemptReport> = started
        .iter()
        .filter_map(|id| runner.running_report(id).into_iter().next())
        .filter(|r| r.state == AttemptState::Running && r.pid.is_some())
        .collect();
    // The watch loop leaves these attempts alone while this report is in flight: no
    // second Running, no output or end before it.
    for r in &reports {
        if let Some(s) = runner.ship_state(&r.attempt_id) {
            s.running_in_flight = true;
        }
    }
    reports
}

/// What the watch loop has to do for one attempt, taken from the runner under its lock.
struct Work {
    id: String,
    running: Option<AttemptReport>,
    final_report: Option<AttemptReport>,
    offsets: [u64; 2],
    paths: [std::path::PathBuf; 2],
    logs_done: bool,
}

/// Every `log_poll`, and at once when a child of the agent ends (SIGCHLD: an attempt's
/// wrapper exits when its task does) or a report is due: polls the runner, ships new
/// output, sends Running and final reports.
async fn watch_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    // Without it (no signal driver), ends are seen at the next tick.
    let mut child_ended =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()).ok();
    loop {
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(shared.config.log_poll) => {}
            Some(()) = async {
                match child_ended.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            } => {}
            _ = shared.watch_wake.notified() => {}
            _ = stop.changed() => return,
        }
        let node = shared.node_id();
        let registered = node.is_some();
        let work = on_runner(&shared, move |runner| {
            runner.poll();
            if !registered {
                return Vec::new();
            }
            let now = Instant::now();
            let mut work = Vec::new();
            for id in runner.ids() {
                let Some(report) = runner.report(&id) else {
                    continue;
                };
                let paths = [
                    runner.output_path(&id, Stream::Stdout),
                    runner.output_path(&id, Stream::Stderr),
                ];
                let Some(ship) = runner.ship_state(&id) else {
                    continue;
                };
                if ship.final_sent
                    || ship.running_in_flight
                    || ship.next_try.is_some_and(|t| t > now)
                {
                    continue;
                }
                let ended = report.state != AttemptState::Running;
                let running = (!ship.running_sent && report.pid.is_some()).then(|| AttemptReport {
                    state: AttemptState::Running,
                    exit_code: None,
                    finished_at: None,
                    error: None,
                    ..report.clone()
                });
                work.push(Work {
                    id,
                    running,
                    final_report: ended.then_some(report),
                    offsets: ship.offsets,
                    paths,
                    logs_done: ship.logs_done,
                });
            }
            work
        })
        .await
        .unwrap_or_default();
        let Some(node) = node else { continue };
        if work.is_empty() {
            continue;
        }
        // Attempts ship concurrently: one slow upload must not hold the others' reports.
        let outcomes =
            futures_util::future::join_all(work.iter().map(|w| ship(&shared, &node, w))).await;
        let base = shared.api.base().to_string();
        on_runner(&shared, move |runner| {
            for (w, outcome) in work.into_iter().zip(outcomes) {
                let Some(s) = runner.ship_state(&w.id) else {
                    continue;
                };
                s.offsets = outcome.offsets;
                s.running_sent |= outcome.running_sent;
                s.logs_done |= outcome.logs_done;
                s.final_sent |= outcome.final_sent;
                if let Some(e) = &outcome.error {
                    s.backoff = next_backoff(s.backoff);
                    s.next_try = Some(Instant::now() + s.backoff);
                    tracing::warn!(attempt = %w.id, server = %base, error = %e, "shipping the attempt failed; retrying in {:?}", s.backoff);
                } else {
                    s.backoff = Duration::ZERO;
                    s.next_try = None;
                }
                if outcome.stop {
                    tracing::info!(attempt = %w.id, "the server says stop: killing and forgetting");
                    runner.stop(&w.id, true);
                }
            }
        })
        .await;
    }
}

#[derive(Default)]
struct Outcome {
    offsets: [u64; 2],
    running_sent: bool,
    logs_done: bool,
    final_sent: bool,
    stop: bool,
    error: Option<AgentError>,
}

async fn ship(shared: &Shared, node: &str, w: &Work) -> Outcome {
    let mut out = Outcome {
        offsets: w.offsets,
        ..Outcome::default()
    };
    if let Some(r) = &w.running {
        match shared.api.report(node, r).await {
            Ok(reply) => {
                out.running_sent = true;
                if reply.verdict == AttemptVerdict::Stop {
                    out.stop = true;
                    return out;
                }
            }
            Err(e) => {
                out.error = Some(e);
                return out;
            }
        }
    }
    let mut all_shipped = true;
    for (i, stream) in Stream::ALL.into_iter().enumerate() {
        match ship_stream(
            shared,
            node,
            &w.id,
            stream,
            &w.paths[i],
            &mut out.offsets[i],
        )
        .await
        {
            Ok(done) => all_shipped &= done,
            Err(e) => {
                out.error = Some(e);
                return out;
            }
        }
    }
    let Some(final_report) = &w.final_report else {
        return out;
    };
    if !all_shipped && !w.logs_done {
        return out;
    }
    out.logs_done = true;
    match shared.api.report(node, final_report).await {
        Ok(reply) => {
            out.final_sent = true;
            out.stop = reply.verdict == AttemptVerdict::Stop;
        }
        Err(e) if e.is_transient() => out.error = Some(e),
        Err(e) => {
            tracing::error!(attempt = %w.id, error = %e, "the server refused the final report; it stays in heartbeats");
            out.final_sent = true;
        }
    }
    out
}

/// Ships what the file holds beyond `offset`, a few chunks per call. Returns whether the
/// server now has all of it.
async fn ship_stream(
    shared: &Shared,
    node: &str,
    id: &str,
    stream: Stream,
    path: &std::path::Path,
    offset: &mut u64,
) -> Result<bool, AgentError> {
    const CHUNKS_PER_TICK: usize = 16;
    for _ in 0..CHUNKS_PER_TICK {
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if len <= *offset {
            return Ok(true);
        }
        let bytes =
            read_chunk(path, *offset, LOG_CHUNK).map_err(AgentError::io("reading", path))?;
        if bytes.is_empty() {
            return Ok(true);
        }
        let sent_to = *offset + bytes.len() as u64;
        let ack = shared.api.logs(node, id, stream, *offset, bytes).await?;
        if ack.capped {
            // The server keeps no more of this attempt's output: skip what the file holds
            // now instead of sending it; later growth costs one chunk per tick at most.
            *offset = len;
            return Ok(true);
        }
        let length = ack.length;
        if length < *offset || length > sent_to {
            tracing::debug!(attempt = %id, stream = stream.name(), length, "server log length differs: resyncing");
        }
        *offset = length.min(len);
    }
    Ok(false)
}

fn read_chunk(path: &std::path::Path, offset: u64, max: u64) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.take(max).read_to_end(&mut buf)?;
    Ok(buf)
}
