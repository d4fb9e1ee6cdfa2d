//! Tasks: users' work that cpn places and runs (I1, IF-I1-01/02).
//!
//! A task is submitted once and may run in several attempts (retries, reschedules after a
//! node is lost). Each attempt has an id `{task}.{n}`, which the executor uses to make
//! dispatch idempotent: one attempt never runs twice.

use crate::registry::{ChipType, Labels, Validate, Violations};
use crate::schedule::TaskResources;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Most replicas one submission may create.
pub const MAX_REPLICAS: u32 = 1000;
/// Most retries a task may ask for.
pub const MAX_RETRIES: u32 = 100;

/// Body of `POST /api/v1/tasks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskSubmit {
    pub name: String,
    /// The program and its arguments (argv); no shell is involved.
    #[serde(default)]
    pub command: Vec<String>,
    /// A script run by `/bin/sh` instead of `command`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory on the node; default: a fresh directory per attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// Tenant the task runs for; defaults to the caller's (only operators may name another).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Higher runs first; waiting tasks age upwards so none starves.
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub resources: TaskResources,
    #[serde(default)]
    pub constraints: TaskConstraints,
    /// Region the data or users are in; latency is scored from there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_region: Option<String>,
    /// A task still waiting to start at its deadline fails with reason `deadline`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DateTime<Utc>>,
    /// Not placed before this time (like `sbatch --begin`); every task due at the same
    /// instant is placed in one binding round, in queue order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_after: Option<DateTime<Utc>>,
    /// Runs this many independent copies, each its own task (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Scheduling policy by name; default: the policy whose match rules select the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(default)]
    pub labels: Labels,
    /// Runs inside this class B marketplace lease of the task's tenant (issue #14): only on
    /// the lease's node(s), within the cards, CPU and memory it holds, with
    /// `CUDA_VISIBLE_DEVICES` naming leased cards. It waits while the lease's share is full
    /// and ends with the lease. Not billed apart: the lease is billed by its time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<u64>,
}

/// Where a task may run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskConstraints {
    /// Only this site (by name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chip: Option<ChipType>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions_in: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions_not_in: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
}

/// What happens when an attempt fails or its node is lost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Further attempts after a failed one (exit code other than 0).
    #[serde(default)]
    pub max_retries: u32,
    /// Wait before the first retry; doubles each time up to `max_backoff_s`.
    #[serde(default = "default_backoff")]
    pub backoff_s: f64,
    #[serde(default = "default_max_backoff")]
    pub max_backoff_s: f64,
    /// Reschedule elsewhere when the node running the task is lost (default true).
    /// These reschedules do not count against `max_retries`, up to `max_reschedules`.
    #[serde(default = "yes")]
    pub reschedule_on_lost: bool,
    #[serde(default = "default_max_reschedules")]
    pub max_reschedules: u32,
}

fn default_backoff() -> f64 {
    1.0
}
fn default_max_backoff() -> f64 {
    60.0
}
fn yes() -> bool {
    true
}
fn default_max_reschedules() -> u32 {
    3
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 0,
            backoff_s: default_backoff(),
            max_backoff_s: default_max_backoff(),
            reschedule_on_lost: true,
            max_reschedules: default_max_reschedules(),
        }
    }
}

impl Validate for TaskSubmit {
    fn validate(&self, v: &mut Violations) {
        v.non_empty(&self.name, "name");
        match (&self.script, self.command.is_empty()) {
            (None, true) => v.add(
                "command",
                "give the program and its arguments as a list, e.g. [\"echo\", \"hi\"], or a `script`",
            ),
            (Some(_), false) => v.add("script", "give either `command` or `script`, not both"),
            (Some(s), true) if s.trim().is_empty() => v.add("script", "the script is empty"),
            _ => {}
        }
        if self.command.first().is_some_and(|p| p.is_empty()) {
            v.add("command[0]", "the program name is empty");
        }
        for key in self.env.keys() {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                v.add(
                    format!("env.{key}"),
                    "an environment variable name must be non-empty without '=' or NUL",
                );
            }
        }
        let r = &self.resources;
        if !(r.cpu_cores.is_finite() && r.cpu_cores > 0.0) {
            v.add("resources.cpu_cores", "must be a number > 0");
        }
        if !(r.memory_gib.is_finite() && r.memory_gib >= 0.0) {
            v.add("resources.memory_gib", "must be a number >= 0");
        }
        if let Some(s) = r.gpu_share
            && !(s.is_finite() && s > 0.0 && s <= 1.0 && r.gpus == 1)
        {
            v.add("resources.gpu_share", "must be in (0, 1] and needs gpus: 1");
        }
        if let (Some(start), Some(deadline)) = (self.start_after, self.deadline)
            && start >= deadline
        {
            v.add("start_after", "must be before the deadline");
        }
        if let Some(n) = self.replicas
            && !(1..=MAX_REPLICAS).contains(&n)
        {
            v.add("replicas", format!("must be between 1 and {MAX_REPLICAS}"));
        }
        let p = &self.retry;
        if p.max_retries > MAX_RETRIES {
            v.add("retry.max_retries", format!("at most {MAX_RETRIES}"));
        }
        if !(p.backoff_s.is_finite() && p.backoff_s >= 0.0 && p.backoff_s <= 3600.0) {
            v.add("retry.backoff_s", "must be between 0 and 3600");
        }
        if !(p.max_backoff_s.is_finite() && p.max_backoff_s >= p.backoff_s) {
            v.add("retry.max_backoff_s", "must be a number >= backoff_s");
        }
    }
}

/// The lifecycle of a task. Terminal states never change again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for a placement (or for its retry backoff to pass).
    Pending,
    /// Bound to a node durably; the executor has been told, the process has not started.
    Scheduled,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// Its node stopped answering and no reschedule was allowed.
    Lost,
}

impl TaskState {
    pub const ALL: [TaskState; 7] = [
        TaskState::Pending,
        TaskState::Scheduled,
        TaskState::Running,
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::Cancelled,
        TaskState::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Scheduled => "scheduled",
            TaskState::Running => "running",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
            TaskState::Lost => "lost",
        }
    }

    pub fn parse(s: &str) -> Option<TaskState> {
        TaskState::ALL.into_iter().find(|t| t.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Failed | TaskState::Cancelled | TaskState::Lost
        )
    }

    /// Holds capacity on a node.
    pub fn is_active(self) -> bool {
        matches!(self, TaskState::Scheduled | TaskState::Running)
    }
}

/// One state change, as kept in a task's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StateChange {
    pub state: TaskState,
    pub at: DateTime<Utc>,
    /// The attempt this change belongs to (0 before the first binding).
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Per-task KPIs (IF-I1-02).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskKpis {
    /// Seconds from submission to the start of the last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_wait_s: Option<f64>,
    /// Seconds the last attempt ran (so far, while running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_time_s: Option<f64>,
    /// CPU seconds the last attempt's processes used, from the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_seconds: Option<f64>,
    /// Mean CPU use of the last attempt in cores' percent (100 = one core busy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_util_pct: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rss_mib: Option<f64>,
    /// Mean utilization of the node's GPUs assigned to the task while it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_util_pct: Option<f64>,
    pub attempts: u32,
}

/// A task as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskView {
    pub id: String,
    pub name: String,
    pub tenant: String,
    pub owner: String,
    pub state: TaskState,
    pub priority: i32,
    /// The current (or last) attempt, 0 before the first binding.
    pub attempt: u32,
    /// `{id}.{attempt}` of the current attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The scheduling policy that placed the current attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// GPU indices on the node held by the current attempt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<u32>,
    /// The executor's own id for the attempt (a Slurm job id, a process id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why the task failed, was cancelled, lost, or is still waiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// While pending after a failure: not before this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<DateTime<Utc>>,
    pub submitted_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub history: Vec<StateChange>,
    pub kpis: TaskKpis,
    /// Id of the first replica of the submission this task came from.
    pub group: String,
    pub replica: u32,
    pub spec: TaskSubmit,
}

/// Answer of `POST /api/v1/tasks`: the first replica, plus the ids of all of them.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskSubmitted {
    pub id: String,
    pub state: TaskState,
    pub replica_ids: Vec<String>,
    pub task: TaskView,
}

/// `GET /api/v1/tasks/{id}/logs` picks one stream or both, interleaved as they arrived.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    #[default]
    All,
    Stdout,
    Stderr,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::All => "all",
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submit(json: serde_json::Value) -> TaskSubmit {
        serde_json::from_value(json).unwrap()
    }

    fn fields(t: &TaskSubmit) -> Vec<String> {
        let mut v = Violations::default();
        t.validate(&mut v);
        v.list.into_iter().map(|v| v.field).collect()
    }

    #[test]
    fn minimal_submission_is_valid_and_gets_defaults() {
        let t = submit(serde_json::json!({"name": "hello", "command": ["echo", "hi"]}));
        assert!(fields(&t).is_empty());
        assert_eq!(t.retry.max_retries, 0);
        assert!(t.retry.reschedule_on_lost);
        assert_eq!(t.resources.cpu_cores, 1.0);
    }

    #[test]
    fn a_task_needs_exactly_one_of_command_and_script() {
        let none = submit(serde_json::json!({"name": "x"}));
        assert_eq!(fields(&none), ["command"]);
        let both = submit(serde_json::json!({"name": "x", "command": ["true"], "script": "true"}));
        assert_eq!(fields(&both), ["script"]);
    }

    #[test]
    fn states_round_trip_and_terminals_are_known() {
        for s in TaskState::ALL {
            assert_eq!(TaskState::parse(s.as_str()), Some(s));
        }
        assert!(TaskState::Lost.is_terminal() && !TaskState::Running.is_terminal());
    }
}
