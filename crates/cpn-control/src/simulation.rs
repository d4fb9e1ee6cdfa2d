//! Policy simulation as a service (SC-POL-05): validates a request up front (policy names,
//! uploaded CSVs with the row at fault), then replays the workload under each policy and
//! seed with `cpn-sim` as an asynchronous job. Jobs run one at a time (a semaphore of
//! [`WORKERS`] permits) on the blocking pool, so the API never waits on them.
//!
//! Every job is a document of the collection [`COLLECTION`]: the body is the [`Simulation`],
//! the document's state its state. It is written when queued, when started, as runs finish
//! (at most about once a second) and when it ends, always with compare-and-set; listing and
//! reading come from the store, so jobs outlive a restart. A job still queued or running
//! when the server stopped cannot go on (its inputs and runs were in that process's memory):
//! at start it becomes `failed` with [`INTERRUPTED`]. A cancel records `cancelled` and sets
//! the job's stop flag, which its worker checks between runs and, through
//! [`protocol::run_until`], between the events of a run.

use crate::caller::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::Control;
use chrono::Utc;
use cpn_api_types::Code;
use cpn_api_types::simulation::{
    ClusterSource, MAX_POLICIES, MAX_SEEDS, PolicyResult, Simulation, SimulationProgress,
    SimulationRequest, SimulationState, SimulationSummary, Workload,
};
use cpn_sim::protocol::{self, RunResult, Trace, X_MAX};
use cpn_sim::published::Stats;
use cpn_sim::trace::{self, TraceError};
use cpn_store::{DocQuery, DocRecord, Store, StoreError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};

/// The document collection of simulation jobs.
pub const COLLECTION: &str = "simulations";
/// Jobs that run at once.
pub const WORKERS: usize = 1;
/// The shipped GPU node list, in the `--sim-data` folder.
pub const SHIPPED_NODES: &str = "openb_node_list_gpu_node.csv";
/// The error of a job that was queued or running when the server stopped.
pub const INTERRUPTED: &str = "interrupted: the server stopped before it finished; start it again";
/// Least time between two progress writes of a job.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// A job's stop request: a flag its runs poll, and a wake-up for a job still queued.
#[derive(Default)]
struct Stop {
    flag: AtomicBool,
    wake: Notify,
}

impl Stop {
    fn request(&self) {
        self.flag.store(true, Ordering::Relaxed);
        // Stores a permit when the job is not waiting yet, so it cannot miss the request.
        self.wake.notify_one();
    }

    fn requested(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }
}

/// The worker pool's permits and the stop requests of the jobs this process runs.
pub struct Simulations {
    workers: Arc<Semaphore>,
    /// Jobs queued or running in this process, by id.
    live: Mutex<HashMap<String, Arc<Stop>>>,
}

impl Default for Simulations {
    fn default() -> Self {
        Simulations {
            workers: Arc::new(Semaphore::new(WORKERS)),
            live: Mutex::new(HashMap::new()),
        }
    }
}

impl Simulations {
    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Stop>>> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn track(&self, id: &str) -> Arc<Stop> {
        let stop = Arc::new(Stop::default());
        self.live().insert(id.to_string(), stop.clone());
        stop
    }

    fn forget(&self, id: &str) {
        self.live().remove(id);
    }

    /// Asks the job to stop, if it is queued or running in this process.
    fn stop(&self, id: &str) {
        if let Some(stop) = self.live().get(id) {
            stop.request();
        }
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(Code::Internal, e.to_string())
}

fn job_of(r: &DocRecord) -> ApiResult<Simulation> {
    serde_json::from_value(r.body.clone())
        .map_err(|e| internal(format!("stored simulation {} is unreadable: {e}", r.id)))
}

/// `r` with `job` as its body and state, stamped now.
fn with_job(r: &DocRecord, job: &Simulation) -> Result<DocRecord, serde_json::Error> {
    let mut r = r.clone();
    r.state = job.state.as_str().to_string();
    r.body = serde_json::to_value(job)?;
    r.updated_at = Utc::now();
    Ok(r)
}

fn state_of(s: &str) -> Option<SimulationState> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
}

/// A worker's copy of its job's document.
struct Stored {
    rec: DocRecord,
    job: Simulation,
}

impl Stored {
    /// Applies `change` to the job and writes it. When the document changed under it (a
    /// cancel), reads it again and applies the change to that, unless the job has ended (or
    /// is gone) meanwhile: then writes nothing and answers `false`.
    async fn save(
        &mut self,
        store: &dyn Store,
        change: impl Fn(&mut Simulation),
    ) -> ApiResult<bool> {
        for _ in 0..5 {
            let mut job = self.job.clone();
            change(&mut job);
            let rec = with_job(&self.rec, &job).map_err(internal)?;
            match store.update_doc(rec, vec![]).await {
                Ok(rec) => {
                    self.rec = rec;
                    self.job = job;
                    return Ok(true);
                }
                Err(StoreError::StaleVersion { .. }) => {
                    let Some(rec) = store.get_doc(COLLECTION, &self.rec.id).await? else {
                        return Ok(false);
                    };
                    self.job = job_of(&rec)?;
                    self.rec = rec;
                    if self.job.state.is_final() {
                        return Ok(false);
                    }
                }
                // Deleted as one of the oldest once it had ended.
                Err(StoreError::NotFound { .. }) => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::new(
            Code::GenerationConflict,
            format!(
                "simulation {} kept changing while being written",
                self.rec.id
            ),
        ))
    }
}

/// A validated request, ready to run.
struct Prepared {
    policies: Vec<String>,
    seeds: Vec<u64>,
    trace: Trace,
    summary: SimulationSummary,
}

pub(crate) fn csv_error(field: &str, e: &TraceError) -> ApiError {
    ApiError::field(field, format!("line {}: {e}", e.line))
}

/// The path of a shipped file, or a 422 on `field` saying how to give the server the data.
pub(crate) fn shipped(dir: Option<&Path>, file: &str, field: &str) -> ApiResult<PathBuf> {
    let dir = dir.ok_or_else(|| {
        ApiError::field(
            field,
            "this server has no shipped traces: start it with `cpn serve --sim-data DIR` \
             (DIR holding the openb CSVs), or upload the CSV instead",
        )
    })?;
    let path = dir.join(file);
    if !path.is_file() {
        return Err(ApiError::field(
            field,
            format!("{file} is not in the server's --sim-data folder"),
        ));
    }
    Ok(path)
}

pub(crate) fn read(path: &Path, field: &str) -> ApiResult<String> {
    std::fs::read_to_string(path)
        .map_err(|e| ApiError::field(field, format!("cannot read {}: {e}", path.display())))
}

/// Checks everything that can be checked before running: policies, seeds, and that the
/// workload and cluster parse. Blocking (reads and parses files).
fn prepare(data: Option<&Path>, req: SimulationRequest) -> ApiResult<Prepared> {
    if req.policies.is_empty() || req.policies.len() > MAX_POLICIES {
        return Err(ApiError::field(
            "policies",
            format!(
                "give 1 to {MAX_POLICIES} policies, got {}",
                req.policies.len()
            ),
        ));
    }
    let mut policies: Vec<String> = Vec::new();
    for (i, p) in req.policies.iter().enumerate() {
        let name = cpn_sim::policy::canonical(p).ok_or_else(|| {
            ApiError::field(
                format!("policies[{i}]"),
                format!(
                    "unknown GPU placement policy {p:?}; valid: {}",
                    cpn_sim::published::POLICIES.join(", ")
                ),
            )
        })?;
        if policies.iter().any(|q| q == name) {
            return Err(ApiError::field(
                format!("policies[{i}]"),
                format!("policy {name} is listed twice"),
            ));
        }
        policies.push(name.to_string());
    }
    if req.seeds.is_empty() || req.seeds.len() > MAX_SEEDS {
        return Err(ApiError::field(
            "seeds",
            format!("give 1 to {MAX_SEEDS} seeds, got {}", req.seeds.len()),
        ));
    }
    let mut seeds = req.seeds.clone();
    seeds.sort_unstable();
    seeds.dedup();

    let (nodes, cluster) = match &req.cluster {
        ClusterSource::Shipped(true) => {
            let path = shipped(data, SHIPPED_NODES, "cluster.shipped")?;
            let text = read(&path, "cluster.shipped")?;
            let nodes = trace::parse_nodes(SHIPPED_NODES, &text)
                .map_err(|e| csv_error("cluster.shipped", &e))?;
            (nodes, "shipped".to_string())
        }
        ClusterSource::Shipped(false) => {
            return Err(ApiError::field(
                "cluster.shipped",
                "must be true; to use your own nodes send `nodes_csv` instead",
            ));
        }
        ClusterSource::NodesCsv(text) => {
            let nodes = trace::parse_nodes("nodes.csv", text)
                .map_err(|e| csv_error("cluster.nodes_csv", &e))?;
            (nodes, "uploaded".to_string())
        }
    };
    let cluster_field = match req.cluster {
        ClusterSource::Shipped(_) => "cluster.shipped",
        ClusterSource::NodesCsv(_) => "cluster.nodes_csv",
    };
    if trace::gpu_capacity_milli(&nodes) == 0 {
        return Err(ApiError::field(cluster_field, "the cluster has no GPUs"));
    }

    let (pods, workload, name) = match &req.workload {
        Workload::Trace(t) => {
            if t.is_empty()
                || !t
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(ApiError::field(
                    "workload.trace",
                    format!("{t:?} is not a trace name such as `default`, `cpu050`, `gpushare40`"),
                ));
            }
            let file = format!("openb_pod_list_{t}.csv");
            let path = shipped(data, &file, "workload.trace")?;
            let text = read(&path, "workload.trace")?;
            let pods =
                trace::parse_pods(&file, &text).map_err(|e| csv_error("workload.trace", &e))?;
            (pods, format!("trace:{t}"), t.clone())
        }
        Workload::PodsCsv(text) => {
            let pods = trace::parse_pods("pods.csv", text)
                .map_err(|e| csv_error("workload.pods_csv", &e))?;
            (pods, "uploaded".to_string(), "uploaded".to_string())
        }
    };
    if pods.is_empty() {
        let field = match req.workload {
            Workload::Trace(_) => "workload.trace",
            Workload::PodsCsv(_) => "workload.pods_csv",
        };
        return Err(ApiError::field(field, "the workload has no pods"));
    }
    let summary = SimulationSummary {
        policies: policies.clone(),
        seeds: seeds.clone(),
        workload,
        cluster,
        pods: pods.len(),
        nodes: nodes.len(),
        gpus: trace::gpu_capacity_milli(&nodes) / 1000,
    };
    Ok(Prepared {
        policies,
        seeds,
        trace: Trace::new(name, nodes, pods),
        summary,
    })
}

fn is_final(d: &DocRecord) -> bool {
    state_of(&d.state).is_none_or(SimulationState::is_final)
}

/// The tenant's jobs, oldest first; 429 when as many are queued or running as it may have.
async fn tenant_jobs(s: &Control, tenant: &str) -> ApiResult<Vec<DocRecord>> {
    let limit = s.runtime.config.limits.max_active_simulations_per_tenant;
    let q = DocQuery {
        tenant: Some(tenant.to_string()),
        ..Default::default()
    };
    let docs = s.store.list_docs(COLLECTION, q).await?;
    let active = docs.iter().filter(|d| !is_final(d)).count();
    if active >= limit {
        return Err(ApiError::new(
            Code::TooManyRequests,
            format!(
                "tenant {tenant} has {active} simulations queued or running, the most it may have at once ({limit}); \
                 start this one when one of them has finished, or cancel one"
            ),
        ));
    }
    Ok(docs)
}

/// Makes room for one more job of `tenant`: 429 when the tenant has as many jobs queued or
/// running as it may; else deletes the tenant's oldest finished jobs beyond its newest
/// `kept_simulations_per_tenant` - 1. Other tenants' jobs are never touched.
async fn make_room(s: &Control, tenant: &str) -> ApiResult<()> {
    let limits = s.runtime.config.limits;
    let docs = tenant_jobs(s, tenant).await?;
    let finished: Vec<&DocRecord> = docs.iter().filter(|d| is_final(d)).collect();
    let keep = limits.kept_simulations_per_tenant.max(1);
    if finished.len() < keep {
        return Ok(());
    }
    // Ids are time-ordered: the list is oldest first.
    for d in &finished[..finished.len() + 1 - keep] {
        match s.store.delete_doc(COLLECTION, &d.id).await {
            Ok(()) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Validates the request, stores the job and queues it; answers at once with it (state
/// `queued`).
pub async fn submit(s: &Control, who: &Caller, req: SimulationRequest) -> ApiResult<Simulation> {
    // Refused before the inputs are parsed, which is the costly part of a request.
    tenant_jobs(s, &who.tenant).await?;
    let data = s.sim_data_dir.clone();
    let prepared = tokio::task::spawn_blocking(move || prepare(data.as_deref(), req))
        .await
        .map_err(|e| ApiError::new(Code::Internal, format!("validating the request: {e}")))??;
    let total = prepared.policies.len() * prepared.seeds.len();
    let job = Simulation {
        id: format!("sim-{}", uuid::Uuid::now_v7().simple()),
        tenant: who.tenant.clone(),
        state: SimulationState::Queued,
        progress: SimulationProgress { done: 0, total },
        created_at: Utc::now(),
        started_at: None,
        finished_at: None,
        error: None,
        request: prepared.summary.clone(),
        results: None,
    };
    // One submission at a time between the tenant's count and the new document, so two
    // concurrent ones cannot both pass its limit.
    static SUBMITTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _submitting = SUBMITTING.lock().await;
    make_room(s, &who.tenant).await?;
    let rec = DocRecord {
        collection: COLLECTION.into(),
        id: job.id.clone(),
        tenant: job.tenant.clone(),
        owner: who.username.clone(),
        name: job.id.clone(),
        state: job.state.as_str().into(),
        version: 1,
        created_at: job.created_at,
        updated_at: job.created_at,
        body: serde_json::to_value(&job).map_err(internal)?,
    };
    // Tracked before it is stored, so a cancel that finds the document finds its flag.
    let stop = s.simulations.track(&job.id);
    let rec = match s.store.create_doc(rec, vec![]).await {
        Ok(rec) => rec,
        Err(e) => {
            s.simulations.forget(&job.id);
            return Err(e.into());
        }
    };
    tracing::info!(id = %job.id, runs = total, "simulation queued");
    let stored = Stored {
        rec,
        job: job.clone(),
    };
    tokio::spawn(work(s.clone(), stored, prepared, stop));
    Ok(job)
}

/// How a job's runs ended.
enum Outcome {
    Done(Vec<PolicyResult>),
    Failed(String),
    /// Cancelled, or ended by someone else meanwhile.
    Stopped,
}

/// Runs the job and records how it ended.
async fn work(s: Control, mut stored: Stored, p: Prepared, stop: Arc<Stop>) {
    let id = stored.job.id.clone();
    let store = s.store.as_ref();
    let outcome = match execute(&s, &mut stored, p, &stop).await {
        Ok(o) => o,
        Err(e) => Outcome::Failed(e.to_string()),
    };
    let now = Utc::now();
    let written = match outcome {
        Outcome::Done(results) => {
            stored
                .save(store, |j| {
                    j.state = SimulationState::Succeeded;
                    j.finished_at = Some(now);
                    j.progress.done = j.progress.total;
                    j.results = Some(results.clone());
                })
                .await
        }
        Outcome::Failed(error) => {
            tracing::warn!(%id, %error, "simulation failed");
            stored
                .save(store, |j| {
                    j.state = SimulationState::Failed;
                    j.finished_at = Some(now);
                    j.error = Some(error.clone());
                })
                .await
        }
        // The cancel recorded it; this only writes when that write was lost.
        Outcome::Stopped => {
            stored
                .save(store, |j| {
                    j.state = SimulationState::Cancelled;
                    j.finished_at = Some(now);
                })
                .await
        }
    };
    if let Err(e) = written {
        tracing::error!(%id, error = %e, "could not record the end of a simulation; it is marked failed at the next start");
    }
    s.simulations.forget(&id);
}

/// Waits for a worker (or a cancel), then runs every (policy, seed) on the blocking pool,
/// one at a time, checking the stop flag between runs and inside them.
async fn execute(
    s: &Control,
    stored: &mut Stored,
    p: Prepared,
    stop: &Arc<Stop>,
) -> ApiResult<Outcome> {
    let store = s.store.as_ref();
    let _permit = tokio::select! {
        permit = s.simulations.workers.clone().acquire_owned() => {
            permit.map_err(|e| internal(format!("worker pool closed: {e}")))?
        }
        () = stop.wake.notified() => return Ok(Outcome::Stopped),
    };
    if stop.requested() {
        return Ok(Outcome::Stopped);
    }
    let started = Utc::now();
    let running = stored
        .save(store, |j| {
            j.state = SimulationState::Running;
            j.started_at = Some(started);
        })
        .await?;
    if !running {
        return Ok(Outcome::Stopped);
    }
    let total = p.policies.len() * p.seeds.len();
    let trace = Arc::new(p.trace);
    let mut runs: Vec<RunResult> = Vec::new();
    let mut written = Instant::now();
    for policy in &p.policies {
        for &seed in &p.seeds {
            if stop.requested() {
                return Ok(Outcome::Stopped);
            }
            let (t, name, flag) = (trace.clone(), policy.clone(), stop.clone());
            let run = tokio::task::spawn_blocking(move || {
                protocol::run_until(&t, &name, seed, false, &|| flag.requested())
            })
            .await;
            match run {
                Ok(Some(run)) => runs.push(run),
                Ok(None) => return Ok(Outcome::Stopped),
                Err(e) => {
                    return Ok(Outcome::Failed(format!(
                        "the run of {policy} with seed {seed} crashed: {e}"
                    )));
                }
            }
            // The last run's progress goes with the results.
            let done = runs.len();
            if done < total && written.elapsed() >= PROGRESS_EVERY {
                if !stored.save(store, |j| j.progress.done = done).await? {
                    return Ok(Outcome::Stopped);
                }
                written = Instant::now();
            }
        }
    }
    Ok(Outcome::Done(
        p.policies
            .iter()
            .map(|policy| summarize(policy, &runs))
            .collect(),
    ))
}

/// Median of the values, `None` when there are none.
fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len().is_multiple_of(2) {
        (v[m - 1] + v[m]) / 2.0
    } else {
        v[m]
    })
}

fn summarize(policy: &str, runs: &[RunResult]) -> PolicyResult {
    let runs: Vec<&RunResult> = runs.iter().filter(|r| r.policy == policy).collect();
    let at = |f: &dyn Fn(&RunResult) -> Option<f64>| {
        Stats::of(&runs.iter().filter_map(|r| f(r)).collect::<Vec<_>>())
    };
    let u100 = at(&|r| r.curve.unallocated(100));
    let curve = (0..=X_MAX)
        .filter_map(|x| {
            median(runs.iter().filter_map(|r| r.curve.unallocated(x)).collect())
                .map(|v| (x as u32, v))
        })
        .collect();
    PolicyResult {
        policy: policy.to_string(),
        seeds: runs.len(),
        mean_unallocated_gpu_pct_at_100: u100.map(|s| s.mean),
        sd: u100.map(|s| s.sd),
        mean_frag_amount_pct_at_100: at(&|r| r.curve.frag_amount[100]).map(|s| s.mean),
        mean_frag_rate_pct_at_100: at(&|r| r.curve.frag_rate[100]).map(|s| s.mean),
        curve,
    }
}

fn visible(who: &Caller, r: &DocRecord) -> bool {
    who.is_operator() || r.tenant == who.tenant
}

/// A job's document, if the caller may see it (404 otherwise, as if it did not exist).
async fn load(s: &Control, who: &Caller, id: &str) -> ApiResult<DocRecord> {
    match s.store.get_doc(COLLECTION, id).await? {
        Some(r) if visible(who, &r) => Ok(r),
        _ => Err(ApiError::not_found("simulation", id)),
    }
}

/// The caller's jobs (every tenant's for operators), newest first.
pub async fn list(s: &Control, who: &Caller) -> ApiResult<Vec<Simulation>> {
    let query = DocQuery {
        tenant: (!who.is_operator()).then(|| who.tenant.clone()),
        ..DocQuery::default()
    };
    let docs = s.store.list_docs(COLLECTION, query).await?;
    Ok(docs
        .iter()
        .rev()
        .filter(|r| visible(who, r))
        .filter_map(|r| {
            job_of(r)
                .inspect_err(|e| tracing::warn!(id = %r.id, error = %e, "simulation left out"))
                .ok()
        })
        .collect())
}

/// One job, if the caller may see it.
pub async fn get(s: &Control, who: &Caller, id: &str) -> ApiResult<Simulation> {
    job_of(&load(s, who, id).await?)
}

/// Cancels a queued or running job: a queued one ends at once, a running one stops at its
/// worker's next check (between runs, and between the events of a run). Answers the job,
/// `cancelled`; 409 `invalid_state` once it has ended.
pub async fn cancel(s: &Control, who: &Caller, id: &str) -> ApiResult<Simulation> {
    let mut asked = false;
    for _ in 0..5 {
        let rec = load(s, who, id).await?;
        let job = job_of(&rec)?;
        if job.state.is_final() {
            if asked && job.state == SimulationState::Cancelled {
                // Its worker saw the flag and recorded it first.
                return Ok(job);
            }
            return Err(ApiError::new(
                Code::InvalidState,
                format!(
                    "simulation {id} is already {}; only queued or running simulations can be cancelled",
                    job.state.as_str()
                ),
            ));
        }
        s.simulations.stop(id);
        asked = true;
        let mut ended = job;
        ended.state = SimulationState::Cancelled;
        ended.finished_at = Some(Utc::now());
        match s
            .store
            .update_doc(with_job(&rec, &ended).map_err(internal)?, vec![])
            .await
        {
            Ok(rec) => {
                tracing::info!(%id, by = %who.username, "simulation cancelled");
                return job_of(&rec);
            }
            // Its worker wrote progress (or its end) meanwhile: look again.
            Err(StoreError::StaleVersion { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::new(
        Code::GenerationConflict,
        format!("simulation {id} kept changing while being cancelled; try again"),
    ))
}

/// At start, before serving: every job still queued or running was cut short when the
/// server last stopped, and cannot go on (its inputs and runs were in that process's
/// memory), so it becomes `failed` with [`INTERRUPTED`]. Answers how many.
pub async fn fail_interrupted(store: &dyn Store) -> anyhow::Result<usize> {
    let mut n = 0;
    for state in [SimulationState::Queued, SimulationState::Running] {
        let query = DocQuery {
            state: Some(state.as_str().into()),
            ..DocQuery::default()
        };
        for rec in store.list_docs(COLLECTION, query).await? {
            let mut job = match job_of(&rec) {
                Ok(job) => job,
                Err(e) => {
                    tracing::warn!(id = %rec.id, error = %e, "simulation left as it is");
                    continue;
                }
            };
            job.state = SimulationState::Failed;
            job.error = Some(INTERRUPTED.into());
            job.finished_at = Some(Utc::now());
            store.update_doc(with_job(&rec, &job)?, vec![]).await?;
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str =
        "sn,cpu_milli,memory_mib,gpu,model\nn1,32000,65536,2,T4\nn2,32000,65536,1,T4\n";

    fn req(pods: &str) -> SimulationRequest {
        SimulationRequest {
            policies: vec!["fgd".into(), "BestFit".into()],
            seeds: vec![1],
            workload: Workload::PodsCsv(pods.into()),
            cluster: ClusterSource::NodesCsv(NODES.into()),
        }
    }

    #[test]
    fn validation_names_the_field_and_line() {
        let pods = "name,cpu_milli,memory_mib,num_gpu,gpu_milli\np1,1000,10,1,500\np2,x,10,1,500\n";
        let e = prepare(None, req(pods)).err().unwrap();
        assert_eq!(e.field.as_deref(), Some("workload.pods_csv"));
        assert!(e.message.contains("line 3"), "{}", e.message);
        let mut r = req("name,cpu_milli,memory_mib,num_gpu,gpu_milli\np1,1000,10,1,500\n");
        r.policies[1] = "nope".into();
        let e = prepare(None, r).err().unwrap();
        assert_eq!(e.field.as_deref(), Some("policies[1]"));
        let mut r = req("name,cpu_milli,memory_mib,num_gpu,gpu_milli\np1,1000,10,1,500\n");
        r.workload = Workload::Trace("default".into());
        let e = prepare(None, r).err().unwrap();
        assert_eq!(e.field.as_deref(), Some("workload.trace"));
        assert!(e.message.contains("--sim-data"), "{}", e.message);
    }

    fn stored_job(id: &str, state: SimulationState) -> (Simulation, DocRecord) {
        let now = Utc::now();
        let job = Simulation {
            id: id.into(),
            tenant: "t".into(),
            state,
            progress: SimulationProgress { done: 1, total: 4 },
            created_at: now,
            started_at: None,
            finished_at: None,
            error: None,
            request: SimulationSummary {
                policies: vec!["fgd".into()],
                seeds: vec![1, 2, 3, 4],
                workload: "uploaded".into(),
                cluster: "uploaded".into(),
                pods: 3,
                nodes: 2,
                gpus: 3,
            },
            results: None,
        };
        let rec = DocRecord {
            collection: COLLECTION.into(),
            id: id.into(),
            tenant: "t".into(),
            owner: "u".into(),
            name: id.into(),
            state: state.as_str().into(),
            version: 1,
            created_at: now,
            updated_at: now,
            body: serde_json::to_value(&job).unwrap(),
        };
        (job, rec)
    }

    #[tokio::test]
    async fn writes_are_compare_and_set_and_a_restart_fails_unfinished_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(cpn_store::SqliteStore::open(dir.path()).unwrap());
        let store = store.as_ref();
        let mut made = Vec::new();
        for (id, state) in [
            ("sim-1", SimulationState::Succeeded),
            ("sim-2", SimulationState::Running),
            ("sim-3", SimulationState::Queued),
            ("sim-4", SimulationState::Running),
        ] {
            let (job, rec) = stored_job(id, state);
            made.push(Stored {
                rec: store.create_doc(rec, vec![]).await.unwrap(),
                job,
            });
        }

        // A worker's write goes on top of a progress write it did not make...
        let mut w = made.remove(1);
        let mut other = Stored {
            rec: w.rec.clone(),
            job: w.job.clone(),
        };
        assert!(other.save(store, |j| j.progress.done = 2).await.unwrap());
        assert!(w.save(store, |j| j.progress.done = 3).await.unwrap());
        assert_eq!((w.rec.version, w.job.progress.done), (3, 3));
        // ...but not on top of a cancel: it writes nothing more.
        assert!(
            other
                .save(store, |j| j.state = SimulationState::Cancelled)
                .await
                .unwrap()
        );
        assert!(!w.save(store, |j| j.progress.done = 4).await.unwrap());
        assert_eq!(w.job.state, SimulationState::Cancelled);
        assert_eq!(w.job.progress.done, 3);

        // At start, queued and running jobs fail as interrupted; others stay as they were.
        assert_eq!(fail_interrupted(store).await.unwrap(), 2);
        let state = |id: &'static str| async move {
            let rec = store.get_doc(COLLECTION, id).await.unwrap().unwrap();
            let job = job_of(&rec).unwrap();
            assert_eq!(rec.state, job.state.as_str());
            (job.state, job.error)
        };
        assert_eq!(state("sim-1").await, (SimulationState::Succeeded, None));
        assert_eq!(state("sim-2").await, (SimulationState::Cancelled, None));
        for id in ["sim-3", "sim-4"] {
            assert_eq!(
                state(id).await,
                (SimulationState::Failed, Some(INTERRUPTED.to_string()))
            );
        }
        assert_eq!(fail_interrupted(store).await.unwrap(), 0);
    }

    #[test]
    fn a_small_run_summarizes_per_policy() {
        let pods = "name,cpu_milli,memory_mib,num_gpu,gpu_milli\np1,1000,10,1,500\np2,1000,10,1,1000\np3,1000,10,0,0\n";
        let p = prepare(None, req(pods)).unwrap();
        assert_eq!(p.policies, vec!["fgd", "bestfit"]);
        let runs: Vec<RunResult> = p
            .policies
            .iter()
            .map(|pol| protocol::run(&p.trace, pol, 1, false))
            .collect();
        let r = summarize("fgd", &runs);
        assert_eq!(r.seeds, 1);
        assert!(!r.curve.is_empty());
        assert!(r.curve.iter().all(|&(_, u)| (0.0..=100.0).contains(&u)));
    }
}
