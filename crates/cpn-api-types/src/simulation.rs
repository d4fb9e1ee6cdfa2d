//! Policy simulation on the wire (SC-POL-05): a request to replay a GPU workload on a GPU
//! cluster under several placement policies, and the asynchronous job that does it, with
//! its progress and, once done, per-policy results of the GPU-trace benchmark protocol.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Most policies one simulation may compare (there are six).
pub const MAX_POLICIES: usize = 6;
/// Most seeds one simulation may run per policy.
pub const MAX_SEEDS: usize = 10;

fn default_seeds() -> Vec<u64> {
    vec![42]
}

/// Replay a workload on a cluster under each policy, once per seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SimulationRequest {
    /// 1 to 6 GPU placement policies: `random`, `dotprod`, `clustering`, `packing`,
    /// `bestfit`, `fgd` (also written `FGD`, `06-FGD`, `best_fit`).
    pub policies: Vec<String>,
    /// Seeds of the runs (arrival order and tie-breaking), at most 10.
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    pub workload: Workload,
    pub cluster: ClusterSource,
}

/// The tasks to replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// A trace shipped with the server, by short name: `default`, `cpu050`, `gpushare40`, …
    /// (the file `openb_pod_list_NAME.csv` of the server's `--sim-data` folder).
    Trace(String),
    /// An uploaded pod list in the openb format: a header with at least `name`,
    /// `cpu_milli`, `memory_mib`, `num_gpu`, `gpu_milli` (optionally `gpu_spec`).
    PodsCsv(String),
}

/// The cluster to replay on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClusterSource {
    /// `true`: the shipped openb GPU nodes (`openb_node_list_gpu_node.csv`).
    Shipped(bool),
    /// An uploaded node list in the openb format: `sn,cpu_milli,memory_mib,gpu,model`.
    NodesCsv(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SimulationState {
    Queued,
    Running,
    Succeeded,
    Failed,
    /// Stopped on request (`POST /api/v1/simulations/{id}/cancel`) before it finished.
    Cancelled,
}

impl SimulationState {
    pub fn as_str(self) -> &'static str {
        match self {
            SimulationState::Queued => "queued",
            SimulationState::Running => "running",
            SimulationState::Succeeded => "succeeded",
            SimulationState::Failed => "failed",
            SimulationState::Cancelled => "cancelled",
        }
    }

    /// Whether the job will change no more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            SimulationState::Succeeded | SimulationState::Failed | SimulationState::Cancelled
        )
    }
}

/// Runs finished out of runs to do (policies × seeds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SimulationProgress {
    pub done: usize,
    pub total: usize,
}

/// What was asked, without the uploaded text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SimulationSummary {
    /// Canonical policy names, in the order asked.
    pub policies: Vec<String>,
    pub seeds: Vec<u64>,
    /// `trace:NAME` or `uploaded`.
    pub workload: String,
    /// `shipped` or `uploaded`.
    pub cluster: String,
    /// Tasks in the workload (before the protocol inflates it to 130 % of capacity).
    pub pods: usize,
    pub nodes: usize,
    pub gpus: u64,
}

/// One policy's outcome over all seeds, at 100 % of the cluster's GPU capacity arrived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PolicyResult {
    pub policy: String,
    /// Seeds run.
    pub seeds: usize,
    /// Mean over seeds of the unallocated GPU % (lower is better).
    pub mean_unallocated_gpu_pct_at_100: Option<f64>,
    /// Sample standard deviation of the above (0 with one seed).
    pub sd: Option<f64>,
    /// Mean fragmented GPU as % of capacity.
    pub mean_frag_amount_pct_at_100: Option<f64>,
    /// Mean fragmented GPU as % of idle GPU.
    pub mean_frag_rate_pct_at_100: Option<f64>,
    /// Unallocated GPU % against arrived GPU % (0..=130), the median over seeds, as
    /// `[arrived_pct, unallocated_pct]` pairs; points with no logged event are left out.
    #[schema(value_type = Vec<Vec<f64>>)]
    pub curve: Vec<(u32, f64)>,
}

/// A simulation job. Jobs are stored (the document collection `simulations`) and outlive a
/// restart, but one that was queued or running when the server stopped is `failed` (its
/// runs are in the server's memory); only the newest 100 are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Simulation {
    pub id: String,
    pub tenant: String,
    pub state: SimulationState,
    pub progress: SimulationProgress,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Why the job failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub request: SimulationSummary,
    /// Per policy, in the order asked; present once the job succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<Vec<PolicyResult>>,
}

/// Most tasks one federation replay may hold.
pub const MAX_FEDERATION_TASKS: usize = 20_000;

fn default_federation_seed() -> u64 {
    42
}

/// Replay a timed workload over the live federation under one or two scheduling policies
/// (the federation twin). Answered synchronously.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FederationRequest {
    /// One or two stored policy names; `default` is the built-in profile.
    pub policies: Vec<String>,
    pub workload: FederationWorkload,
    /// Seeds the scheduler's tie-breaks and the draw of origin regions.
    #[serde(default = "default_federation_seed")]
    pub seed: u64,
    /// Replay on the live nodes the binder places on (with the binder's visibility and
    /// live-site filters) instead of the registered capacity. With `tasks` due at once and
    /// the server's `--scheduler-seed` equal to `seed`, the replay places exactly as the
    /// binder does.
    #[serde(default)]
    pub live: bool,
    /// Also answer where each task went (`FederationReport::placements`).
    #[serde(default)]
    pub placements: bool,
}

/// Where the timed tasks come from: pod rows with `creation_time` and `deletion_time`
/// (rows without both are skipped). Arrivals are creation times relative to the first,
/// durations deletion − creation, both times `time_scale`; GPU pods accept any GPU model;
/// origin regions are drawn from the federation's regions with the seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FederationWorkload {
    /// A trace shipped with the server, by short name (`default`, `cpu050`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// An uploaded pod list in the openb format with the two time columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods_csv: Option<String>,
    /// Most tasks to replay, the earliest created first (at most 20,000, the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Multiplies arrival offsets and durations (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_scale: Option<f64>,
    /// Tasks as they would be submitted (`POST /tasks` bodies), each with its arrival and
    /// duration: converted to the scheduler's tasks as the binder converts submitted ones,
    /// with the origin region each names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Vec<TimedTaskSubmit>>,
}

/// One task of a `tasks` workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TimedTaskSubmit {
    /// Seconds from the start of the replay.
    pub arrival_s: u64,
    /// Seconds it runs once placed (at least 1).
    pub duration_s: u64,
    pub task: crate::tasks::TaskSubmit,
}

/// Where one task of a replay went (`None`s: it never found a place).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FederationPlacement {
    /// The task's name.
    pub task: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// When it was placed, seconds from the start of the replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_s: Option<u64>,
}

/// Time-averaged use of one site over a replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FederationSiteUse {
    pub site: String,
    /// Mean fraction of GPU milli allocated.
    pub gpu: f64,
    /// Mean fraction of CPU allocated.
    pub cpu: f64,
    /// Tasks placed there.
    pub placed: u32,
}

/// One policy's replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FederationReport {
    pub policy: String,
    pub placed: u32,
    /// Tasks no site could ever hold.
    pub dropped: u32,
    /// Tasks still queued at the end.
    pub still_waiting: u32,
    /// Σ price per unit-hour × units × hours run, CNY.
    pub total_cost_cny: f64,
    /// Σ units × watts × PUE × hours run, kWh.
    pub energy_kwh: f64,
    /// Mean latency from the task's origin region to its site (0 inside the region).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_latency_ms: Option<f64>,
    pub mean_queueing_delay_s: f64,
    pub p95_queueing_delay_s: f64,
    /// Span of the replay, seconds: the utilization is averaged over it.
    pub makespan_s: u64,
    pub sites: Vec<FederationSiteUse>,
    /// Per task in workload order, when the request asked for `placements`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placements: Option<Vec<FederationPlacement>>,
}

/// Per policy, in the order asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FederationResult {
    /// Timed tasks replayed (after skipping rows without times and the limit).
    pub tasks: usize,
    pub reports: Vec<FederationReport>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_shapes() {
        let r: SimulationRequest = serde_json::from_value(serde_json::json!({
            "policies": ["fgd"], "workload": {"trace": "default"}, "cluster": {"shipped": true}
        }))
        .unwrap();
        assert_eq!(r.seeds, vec![42]);
        assert_eq!(r.workload, Workload::Trace("default".into()));
        assert_eq!(r.cluster, ClusterSource::Shipped(true));
        let r: SimulationRequest = serde_json::from_value(serde_json::json!({
            "policies": ["fgd"], "seeds": [1, 2], "workload": {"pods_csv": "x"},
            "cluster": {"nodes_csv": "y"}
        }))
        .unwrap();
        assert_eq!(r.workload, Workload::PodsCsv("x".into()));
        assert_eq!(r.cluster, ClusterSource::NodesCsv("y".into()));
        assert!(
            serde_json::from_value::<SimulationRequest>(serde_json::json!({
                "policies": ["fgd"], "workload": {"trace": "default"}, "cluster": {"shipped": true},
                "extra": 1
            }))
            .is_err()
        );
    }
}
