//! Scheduling on the wire (SC-ENG, SC-POL): policy documents, task requests, explanations
//! and dry-run comparisons.

use crate::registry::{ChipType, Labels, Validate, Violations};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

// ---------------------------------------------------------------- policies (SC-POL)

/// Where a policy applies (SC-POL-04). Empty lists mean "any".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyScope {
    #[serde(default)]
    pub regions: Vec<String>,
    #[serde(default)]
    pub businesses: Vec<String>,
    #[serde(default)]
    pub tenants: Vec<String>,
}

/// Which tasks a policy takes (SC-POL-03). Empty lists mean "any".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchRules {
    #[serde(default)]
    pub tenants: Vec<String>,
    #[serde(default)]
    pub businesses: Vec<String>,
    #[serde(default)]
    pub origin_regions: Vec<String>,
    /// Label selector over the task's labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<String>,
}

/// A user-defined filter in CEL over `site`, `node` and `task` (SC-POL-07).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CelRule {
    pub name: String,
    /// Must evaluate to a bool; true keeps the candidate.
    pub expr: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScoreDirection {
    Higher,
    Lower,
}

/// A user-defined score in CEL; its value is normalized like any other factor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CelScore {
    pub name: String,
    /// Must evaluate to a number.
    pub expr: String,
    pub weight: f64,
    pub better: ScoreDirection,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GpuPickStrategy {
    BestFit,
    WorstFit,
    FirstFit,
}

/// A scheduling policy: which tasks it takes, and the weights and rules it schedules them by.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Higher wins when several policies match a task.
    #[serde(default)]
    pub priority: i32,
    /// A policy this one extends: everything is inherited, and what is set here overrides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(default)]
    pub scope: PolicyScope,
    #[serde(default)]
    pub match_rules: MatchRules,
    /// Score plugin name → weight, e.g. `{"price": 3, "latency": 1}`.
    #[serde(default)]
    pub weights: BTreeMap<String, f64>,
    /// In-tree filters to run; absent means all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Vec<String>>,
    #[serde(default)]
    pub cel_filters: Vec<CelRule>,
    #[serde(default)]
    pub cel_scores: Vec<CelScore>,
    /// Percentage of nodes to find before scoring (kube's percentageOfNodesToScore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_pick: Option<GpuPickStrategy>,
    /// A GPU placement policy of the FGD paper for the node and GPU choice (`random`,
    /// `dotprod`, `clustering`, `packing`, `bestfit`, `fgd`, or our `fgd_plus`), as the
    /// digital twin replays them; FGD's target workload is the live GPU tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_policy: Option<String>,
}

impl Validate for PolicySpec {
    fn validate(&self, v: &mut Violations) {
        for (name, w) in &self.weights {
            if !(w.is_finite() && *w >= 0.0) {
                v.add(
                    format!("spec.weights.{name}"),
                    "a weight must be a finite number >= 0",
                );
            }
        }
        if let Some(p) = self.sampling_percent
            && !(p.is_finite() && p > 0.0 && p <= 100.0)
        {
            v.add(
                "spec.sampling_percent",
                "must be between 0 (exclusive) and 100",
            );
        }
    }
}

/// One stored version of a policy (SC-POL-02).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PolicyVersion {
    pub generation: u64,
    pub at: chrono::DateTime<chrono::Utc>,
    pub spec: PolicySpec,
}

/// The scheduler's in-tree plugins, for clients that build policies: the filters in the
/// order they run, the score plugins with the built-in profile's weights (what a policy
/// that leaves a weight out inherits at the root), and the GPU placement policies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PluginCatalog {
    pub filters: Vec<String>,
    pub scores: Vec<ScoreDefault>,
    pub gpu_policies: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScoreDefault {
    pub name: String,
    pub default_weight: f64,
}

/// Restore the spec of an earlier generation as a new generation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    /// The generation whose spec to restore.
    pub to_generation: u64,
    /// The generation you read (optimistic concurrency, like any update).
    pub generation: u64,
}

// ---------------------------------------------------------------- tasks to place

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskResources {
    #[serde(default = "one")]
    pub cpu_cores: f64,
    #[serde(default = "one")]
    pub memory_gib: f64,
    #[serde(default)]
    pub gpus: u32,
    /// Fraction of one GPU, (0, 1]; only with `gpus: 1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_share: Option<f64>,
    #[serde(default)]
    pub storage_gib: f64,
}

fn one() -> f64 {
    1.0
}

impl Default for TaskResources {
    fn default() -> Self {
        TaskResources {
            cpu_cores: 1.0,
            memory_gib: 1.0,
            gpus: 0,
            gpu_share: None,
            storage_gib: 0.0,
        }
    }
}

/// What a task asks of the scheduler: demand per replica, constraints and preferences.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    #[serde(default)]
    pub name: String,
    /// Tenant the task runs for; defaults to the caller's (only operators may name another).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business: Option<String>,
    /// Region the data or users are in; latency is scored from there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_region: Option<String>,
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub resources: TaskResources,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chip: Option<ChipType>,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default)]
    pub regions_in: Vec<String>,
    #[serde(default)]
    pub regions_not_in: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
    #[serde(default)]
    pub affinity_regions: Vec<String>,
    #[serde(default)]
    pub anti_affinity_regions: Vec<String>,
    #[serde(default)]
    pub preferred_models: Vec<String>,
    /// Expected hours, for cost and energy estimates (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub est_hours: Option<f64>,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// How replicas are spread over sites (SC-ENG-03); default: each by its own score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<ReplicaSpread>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SpreadMode {
    /// Every replica goes where the policy scores best at that moment.
    #[default]
    ByScore,
    /// Replicas are divided in proportion to how many each feasible site can hold.
    ByCapacity,
    /// Replicas are divided by the static `weights` (site name → weight).
    ByWeights,
}

/// Karmada-style division of replicas across sites (largest remainder).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplicaSpread {
    pub mode: SpreadMode,
    #[serde(default)]
    pub weights: BTreeMap<String, f64>,
}

impl Validate for TaskSpec {
    fn validate(&self, v: &mut Violations) {
        let r = &self.resources;
        for (name, x) in [
            ("cpu_cores", r.cpu_cores),
            ("memory_gib", r.memory_gib),
            ("storage_gib", r.storage_gib),
        ] {
            if !(x.is_finite() && x >= 0.0) {
                v.add(
                    format!("task.resources.{name}"),
                    "must be a finite number >= 0",
                );
            }
        }
        if let Some(s) = r.gpu_share {
            if !(s.is_finite() && s > 0.0 && s <= 1.0) {
                v.add("task.resources.gpu_share", "must be a fraction in (0, 1]");
            } else if r.gpus != 1 {
                v.add("task.resources.gpu_share", "a GPU share needs gpus: 1");
            }
        }
        if let Some(h) = self.est_hours
            && !(h.is_finite() && h > 0.0)
        {
            v.add("task.est_hours", "must be a number > 0");
        }
    }
}

// ---------------------------------------------------------------- explain and dry-run

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    pub task: TaskSpec,
    /// Use this policy instead of the one the task's attributes select.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// `POST /schedule` only: the decision holds its capacity this many seconds
    /// (1..=2592000), then stops holding and is marked released; without it, until
    /// released. Explain refuses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_s: Option<u64>,
}

/// Which policy scheduled a task, and why.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PolicyChoice {
    /// `default` when no stored policy matched.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// Why it was chosen: the rules that matched, or that it was named in the request.
    pub reasons: Vec<String>,
    /// Other policies that matched but lost, each with why.
    #[serde(default)]
    pub also_matched: Vec<String>,
    /// The weights in force after nesting.
    pub weights: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VerdictView {
    pub plugin: String,
    pub fits: bool,
    /// The rejection holds until the task changes.
    pub permanent: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FactorView {
    pub plugin: String,
    pub raw: f64,
    pub unit: String,
    /// 0..=100, 100 best among the feasible candidates.
    pub normalized: f64,
    pub weight: f64,
    /// normalized × weight; the contributions sum to the candidate's total.
    pub contribution: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CandidateView {
    pub name: String,
    pub feasible: bool,
    pub total: f64,
    pub verdicts: Vec<VerdictView>,
    pub factors: Vec<FactorView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RejectionCount {
    /// `plugin/code`.
    pub reason: String,
    pub count: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DecisionView {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen_site: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen_node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// Winner's total minus the runner-up site's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin: Option<f64>,
    pub seed: u64,
    /// Every site: feasible ones best first, then the rejected.
    pub sites: Vec<CandidateView>,
    /// Nodes evaluated in the chosen site, best first (at most 20 shown).
    pub nodes: Vec<CandidateView>,
    pub rejections: Vec<RejectionCount>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Explanation {
    pub task: String,
    pub policy: PolicyChoice,
    pub decision: DecisionView,
    /// Explain and dry-run plan on registered capacity: when the chosen site has no machine
    /// answering, this says that a task submitted now would not be bound there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planning_only: Option<String>,
    /// Set when this is the binder's own record of a binding, made at this time ("why
    /// here", as decided: the best sites with their factors, no node list); absent when
    /// the task is explained against the nodes as they are now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DryRunRequest {
    /// One or two policy names to compare; `default` is the built-in profile.
    pub policies: Vec<String>,
    pub tasks: Vec<TaskSpec>,
    /// Seed of the tie-breaks; the same seed gives the same placements.
    #[serde(default)]
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlacementView {
    pub task: String,
    pub replica: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// Why it could not be placed.
    #[serde(default)]
    pub unplaced: Vec<RejectionCount>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SiteUtilization {
    pub site: String,
    /// Fraction of GPU milli allocated, after the batch.
    pub gpu: f64,
    /// Fraction of CPU allocated, after the batch.
    pub cpu: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Kpis {
    pub placed: u32,
    pub unplaced: u32,
    /// Σ price × units × hours over placed replicas, CNY.
    pub total_cost_cny: f64,
    /// Σ units × watts × PUE × hours, kWh.
    pub energy_kwh: f64,
    /// Mean latency from each placed task's origin region to its site (tasks with an origin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_latency_ms: Option<f64>,
    pub utilization: Vec<SiteUtilization>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PolicyRun {
    pub policy: String,
    pub placements: Vec<PlacementView>,
    pub kpis: Kpis,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DryRunResult {
    pub runs: Vec<PolicyRun>,
}

/// A real scheduling decision: the placement holds capacity until released, and its full
/// explanation is kept so "why there?" can be asked later.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DecisionRecordView {
    pub id: String,
    pub task: String,
    pub tenant: String,
    pub site: String,
    pub site_id: String,
    pub node: String,
    /// GPUs given: (index on the node, milli).
    pub gpus: Vec<(u32, u32)>,
    pub resources: TaskResources,
    pub policy: PolicyChoice,
    pub decision: DecisionView,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When it stops holding by itself (`hold_s`); absent: until released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_at: Option<chrono::DateTime<chrono::Utc>>,
}

crate::registry_kind!(Policy, PolicyCreate, PolicyUpdate, PolicySpec);
