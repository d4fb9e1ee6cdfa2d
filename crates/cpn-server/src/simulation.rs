//! Policy simulation as a service (SC-POL-05): validates a request up front (policy names,
//! uploaded CSVs with the row at fault), then replays the workload under each policy and
//! seed with `cpn-sim` as an asynchronous job. Jobs run one at a time (a semaphore of
//! [`WORKERS`] permits) on the blocking pool, so the API never waits on them; their state
//! lives in memory only and is lost on restart.

use crate::error::{ApiError, ApiResult};
use crate::extract::Principal;
use crate::state::AppState;
use chrono::Utc;
use cpn_api_types::Code;
use cpn_api_types::simulation::{
    ClusterSource, MAX_POLICIES, MAX_SEEDS, PolicyResult, Simulation, SimulationProgress,
    SimulationRequest, SimulationState, SimulationSummary, Workload,
};
use cpn_sim::protocol::{self, RunResult, Trace, X_MAX};
use cpn_sim::published::Stats;
use cpn_sim::trace::{self, TraceError};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// Jobs kept in memory; the oldest finished ones are forgotten first.
pub const MAX_KEPT: usize = 100;
/// Jobs that run at once.
pub const WORKERS: usize = 1;
/// The shipped GPU node list, in the `--sim-data` folder.
pub const SHIPPED_NODES: &str = "openb_node_list_gpu_node.csv";

/// The in-memory job registry and the worker pool's permits.
pub struct Simulations {
    jobs: Mutex<VecDeque<Simulation>>,
    workers: Arc<Semaphore>,
}

impl Default for Simulations {
    fn default() -> Self {
        Simulations {
            jobs: Mutex::new(VecDeque::new()),
            workers: Arc::new(Semaphore::new(WORKERS)),
        }
    }
}

impl Simulations {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Simulation>> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut Simulation)) {
        if let Some(job) = self.lock().iter_mut().find(|j| j.id == id) {
            f(job);
        }
    }

    /// Adds a job, forgetting the oldest finished one when full.
    fn insert(&self, job: Simulation) -> ApiResult<()> {
        let mut jobs = self.lock();
        if jobs.len() >= MAX_KEPT {
            match jobs.iter().position(|j| j.state.is_final()) {
                Some(i) => {
                    jobs.remove(i);
                }
                None => {
                    return Err(ApiError::new(
                        Code::InUse,
                        format!(
                            "{MAX_KEPT} simulations are queued or running; try again when some finish"
                        ),
                    ));
                }
            }
        }
        jobs.push_back(job);
        Ok(())
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

/// Validates the request and queues the job; answers at once with it (state `queued`).
pub async fn submit(
    s: &AppState,
    who: &Principal,
    req: SimulationRequest,
) -> ApiResult<Simulation> {
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
    s.simulations.insert(job.clone())?;
    tracing::info!(id = %job.id, runs = total, "simulation queued");
    let sims = s.simulations.clone();
    let id = job.id.clone();
    tokio::spawn(async move {
        let outcome = execute(&sims, &id, prepared).await;
        sims.update(&id, |j| {
            j.finished_at = Some(Utc::now());
            match outcome {
                Ok(results) => {
                    j.state = SimulationState::Succeeded;
                    j.results = Some(results);
                }
                Err(e) => {
                    tracing::warn!(id = %j.id, error = %e, "simulation failed");
                    j.state = SimulationState::Failed;
                    j.error = Some(e);
                }
            }
        });
    });
    Ok(job)
}

/// Waits for a worker, then runs every (policy, seed) on the blocking pool, one at a time.
async fn execute(sims: &Simulations, id: &str, p: Prepared) -> Result<Vec<PolicyResult>, String> {
    let _permit = sims
        .workers
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| format!("worker pool closed: {e}"))?;
    sims.update(id, |j| {
        j.state = SimulationState::Running;
        j.started_at = Some(Utc::now());
    });
    let trace = Arc::new(p.trace);
    let mut runs: Vec<RunResult> = Vec::new();
    for policy in &p.policies {
        for &seed in &p.seeds {
            let (t, name) = (trace.clone(), policy.clone());
            let run = tokio::task::spawn_blocking(move || protocol::run(&t, &name, seed, false))
                .await
                .map_err(|e| format!("the run of {policy} with seed {seed} crashed: {e}"))?;
            runs.push(run);
            sims.update(id, |j| j.progress.done += 1);
        }
    }
    Ok(p.policies
        .iter()
        .map(|policy| summarize(policy, &runs))
        .collect())
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

fn visible(who: &Principal, job: &Simulation) -> bool {
    who.is_operator() || job.tenant == who.tenant
}

/// The caller's jobs (every tenant's for operators), newest first.
pub fn list(s: &AppState, who: &Principal) -> Vec<Simulation> {
    s.simulations
        .lock()
        .iter()
        .rev()
        .filter(|j| visible(who, j))
        .cloned()
        .collect()
}

/// One job, if the caller may see it.
pub fn get(s: &AppState, who: &Principal, id: &str) -> ApiResult<Simulation> {
    s.simulations
        .lock()
        .iter()
        .find(|j| j.id == id && visible(who, j))
        .cloned()
        .ok_or_else(|| ApiError::not_found("simulation", id))
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
