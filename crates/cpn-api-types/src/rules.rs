//! Ops orchestration rules (DO-OPS-01..04, 表8): a trigger (a metric crossing a threshold
//! for a while, a cron schedule, or an event) and an action (scale a service out or in,
//! redeploy it, isolate a node and move its work, or run a task).

use crate::tasks::TaskSubmit;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub name: String,
    pub trigger: Trigger,
    pub action: RuleAction,
    /// Least time between two firings.
    #[serde(default = "default_cooldown")]
    pub cooldown_s: f64,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn default_cooldown() -> f64 {
    60.0
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MetricName {
    CpuUtilPct,
    MemoryUtilPct,
    Load1,
    /// Mean utilization of the node's GPUs.
    GpuUtilPct,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Trigger {
    /// Fires when the metric is above (or below) the threshold on the watched nodes for
    /// `for_s` seconds. Watched: the nodes running the service `group`, or one `node`, or
    /// every node of `site`; the mean over them is compared.
    Metric {
        metric: MetricName,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        above: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        below: Option<f64>,
        #[serde(default)]
        for_s: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        site: Option<String>,
    },
    /// Five-field cron in UTC, e.g. `*/5 * * * *`.
    Cron { schedule: String },
    /// An event of this type (and, for alarms, this `alarm` kind such as `node_lost`).
    Event {
        event_type: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        alarm: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RuleAction {
    /// Adds `by` replicas to the service (a task submission, by its first task's id), up to
    /// `max_replicas` active ones.
    ScaleOut {
        group: String,
        #[serde(default = "one")]
        by: u32,
        #[serde(default = "default_max")]
        max_replicas: u32,
    },
    /// Cancels the newest `by` active replicas, keeping at least `min_replicas`.
    ScaleIn {
        group: String,
        #[serde(default = "one")]
        by: u32,
        #[serde(default = "one")]
        min_replicas: u32,
    },
    /// Cancels every active replica and submits as many fresh ones.
    Redeploy { group: String },
    /// Cordons the node (the one that triggered, or `node`) and reclaims it: its tasks are
    /// rescheduled elsewhere.
    IsolateNode {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
    },
    /// Submits this task.
    RunTask { task: Box<TaskSubmit> },
}

fn one() -> u32 {
    1
}
fn default_max() -> u32 {
    10
}

/// One firing of a rule, with what it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RuleFiring {
    pub at: DateTime<Utc>,
    /// What tripped it (`cpu_util_pct 97.0 > 90 on local/vm for 5 s`).
    pub reason: String,
    pub ok: bool,
    pub result: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RuleView {
    pub id: String,
    pub version: u64,
    pub spec: RuleSpec,
    pub created_at: DateTime<Utc>,
    /// Newest last, at most 50.
    pub firings: Vec<RuleFiring>,
}
