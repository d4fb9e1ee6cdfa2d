//! Workflows (DO-FLOW-01..08, 表7): a process definition is a DAG of steps, each an action
//! with dependencies, an optional condition, retries, a timeout and a compensating action.
//! Instruction sets compiled from confirmed plans (SC-PROV-04..06) run as workflows too.

use crate::schedule::TaskResources;
use crate::tasks::TaskSubmit;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// A process definition; importable and exportable as a YAML or JSON file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowDefinition {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Data every step can read as `inputs.NAME` (in conditions) or `${inputs.NAME}` (in
    /// string fields of actions).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub inputs: BTreeMap<String, serde_json::Value>,
    pub steps: Vec<StepDef>,
    /// Most steps running at once (default: unbounded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepDef {
    /// Unique within the definition; `[a-z0-9_-]+`.
    pub id: String,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Runs the step only when this CEL expression over `inputs` and `steps` (each
    /// finished step's `outputs` and `status`) is true; otherwise it is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Runs the action once per item (available as `${item}`), in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub for_each: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    pub retry: StepRetry,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<f64>,
    /// Undoes the step when a later failure rolls the workflow back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensate: Option<Action>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepRetry {
    #[serde(default)]
    pub max_retries: u32,
    #[serde(default = "one")]
    pub backoff_s: f64,
}

fn one() -> f64 {
    1.0
}

impl Default for StepRetry {
    fn default() -> Self {
        StepRetry {
            max_retries: 0,
            backoff_s: 1.0,
        }
    }
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
// Actions are few and short-lived; boxing the task would only complicate building them.
#[allow(clippy::large_enum_variant)]
pub enum Action {
    /// Submits a cpn task and waits for it; fails unless it succeeds. Outputs: `task_id`,
    /// `exit_code`, `node`, `site`, `stdout` (the last 4 KiB).
    Task {
        task: TaskSubmit,
    },
    /// I2 allocate on a node (`site/name`, name or id). Outputs: `allocation`.
    Allocate {
        node: String,
        resources: TaskResources,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tenant: Option<String>,
    },
    /// I2 release of an allocation (usually `${steps.ID.outputs.allocation}`).
    Release {
        allocation: String,
    },
    Sleep {
        seconds: f64,
    },
    /// Does nothing but publish `outputs` (data passed to later steps).
    Noop {
        #[serde(default)]
        #[schema(value_type = Object)]
        outputs: BTreeMap<String, serde_json::Value>,
    },
    /// Publishes an event `flow.hook` with the message (event hooks / callbacks).
    Notify {
        message: String,
    },
    /// Always fails: for tests and failure drills.
    Fail {
        message: String,
    },
    /// Stands for an operation that has no real controller behind it here (provisioning,
    /// a storage mount, a network or security configuration): publishes `outputs` (with
    /// `reason`) and ends `simulated`, never `succeeded`, so nobody takes it for work done.
    /// Counts as done for the steps that depend on it; never compensated.
    Simulate {
        /// Why nothing was done (which controller is missing).
        #[serde(default)]
        reason: String,
        #[serde(default)]
        #[schema(value_type = Object)]
        outputs: BTreeMap<String, serde_json::Value>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FlowState {
    Running,
    Paused,
    /// A step failed; completed steps are being compensated in reverse order.
    Compensating,
    Succeeded,
    /// Failed and compensated.
    Failed,
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Waiting,
    Running,
    Succeeded,
    Failed,
    Skipped,
    /// Ended without doing anything real: its action is `simulate` (no controller behind
    /// it). Terminal; counts as done for dependents, like `succeeded`, but is never shown
    /// or counted as such.
    Simulated,
    Compensating,
    Compensated,
    Cancelled,
}

/// One step as a workflow shows it, with its lean timing (seed 004).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StepView {
    pub id: String,
    pub state: StepState,
    pub attempts: u32,
    /// When its dependencies were all met.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub outputs: BTreeMap<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FlowView {
    pub id: String,
    pub name: String,
    pub tenant: String,
    pub owner: String,
    pub state: FlowState,
    pub steps: Vec<StepView>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub definition: FlowDefinition,
    /// The plan this workflow executes, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}

/// Lean metrics of a workflow (seed 004): `GET /api/v1/flows/{id}/report`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FlowReport {
    pub id: String,
    pub state: FlowState,
    /// Wall time from start to end (or now).
    pub makespan_s: f64,
    /// Sum of the steps' run times (`run_s`): queue wait is not work.
    pub work_s: f64,
    /// Sum of the steps' queue waits (`queue_s`): task steps waiting for a node.
    #[serde(default)]
    pub queue_s: f64,
    /// Σ step durations / makespan: how many steps were in flight (queued or running) at
    /// once on average.
    pub parallel_rate: f64,
    /// Share of the makespan when at most one step was running.
    pub serial_rate: f64,
    /// The chain of steps that determined the makespan.
    pub critical_path: Vec<String>,
    pub critical_path_s: f64,
    /// Steps that ended `simulated` (nothing real was done).
    #[serde(default)]
    pub simulated_steps: Vec<String>,
    pub steps: Vec<StepTiming>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StepTiming {
    pub id: String,
    pub state: StepState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTime<Utc>>,
    /// From start to end (or now): `queue_s` + `run_s` and the engine's own overhead.
    pub duration_s: f64,
    /// From ready (dependencies met) to start.
    pub wait_s: f64,
    /// A task step: from the task's submission to the start of its attempt (waiting for a
    /// node), summed over the step's attempts. 0 for other steps.
    #[serde(default)]
    pub queue_s: f64,
    /// A task step: the time its task's attempts ran (until now for one still running).
    /// Other steps: `duration_s`.
    #[serde(default)]
    pub run_s: f64,
}

/// Body of `POST /api/v1/flows`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartFlow {
    pub definition: FlowDefinition,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub inputs: BTreeMap<String, serde_json::Value>,
}

/// Body of `POST /api/v1/processes/{id}/run` (optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunProcess {
    #[serde(default)]
    #[schema(value_type = Object)]
    pub inputs: BTreeMap<String, serde_json::Value>,
}

/// Body of `POST /api/v1/flows/{id}/cancel` (optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelFlow {
    /// Roll back the completed steps (default false).
    #[serde(default)]
    pub compensate: bool,
}

/// A stored process template (`/api/v1/processes`): a workflow definition shared with
/// every user.
// Fields in alphabetical order: the order they had on the wire when the server built this
// answer as a JSON map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProcessView {
    pub created_at: DateTime<Utc>,
    pub definition: FlowDefinition,
    pub id: String,
    pub name: String,
    pub owner: String,
    pub tenant: String,
    pub updated_at: DateTime<Utc>,
    pub version: u64,
}
