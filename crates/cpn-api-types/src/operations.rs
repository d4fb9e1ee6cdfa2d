//! South-bound operations on nodes and resources (I2, IF-I2-01..06): allocate, release,
//! adjust, occupy, isolate, reclaim. Each is recorded with a trace of its steps and its
//! result, whether it succeeded or not.

use crate::schedule::TaskResources;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// Hold `resources` on a node for a tenant; the answer names the allocation.
    Allocate,
    /// Give an allocation back (`allocation`).
    Release,
    /// Change an allocation's `resources`.
    Adjust,
    /// Hold a whole node for a tenant (`occupy: false` gives it back).
    Occupy,
    /// Cordon: place nothing new on the node or resource (`isolate: false` lifts it).
    Isolate,
    /// Take a node back: stop its tasks (they are rescheduled) and release its allocations.
    Reclaim,
}

impl OpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Allocate => "allocate",
            OpKind::Release => "release",
            OpKind::Adjust => "adjust",
            OpKind::Occupy => "occupy",
            OpKind::Isolate => "isolate",
            OpKind::Reclaim => "reclaim",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// A node reported by an agent or imported from Slurm.
    Node,
    /// A compute resource of the registry.
    Resource,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpTarget {
    pub kind: TargetKind,
    /// Id, or `site/name` for a node, or name for a resource.
    pub name: String,
}

/// Body of `POST /api/v1/operations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OperationRequest {
    pub op: OpKind,
    /// Not needed for `release` and `adjust`, which name an allocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<OpTarget>,
    /// For `allocate` and `adjust`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<TaskResources>,
    /// For `release` and `adjust`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation: Option<String>,
    /// For `allocate` and `occupy`; default: the caller's tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// For `isolate` and `occupy`: false undoes it (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OpOutcome {
    Succeeded,
    Failed,
}

/// One step of an operation, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TraceStep {
    pub at: DateTime<Utc>,
    pub step: String,
    pub detail: String,
}

/// The record of one operation (IF-I2-06).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OperationView {
    pub id: String,
    pub op: OpKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<OpTarget>,
    pub outcome: OpOutcome,
    pub message: String,
    /// The allocation made, changed or released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation: Option<String>,
    pub trace: Vec<TraceStep>,
    pub by: String,
    pub tenant: String,
    pub at: DateTime<Utc>,
    pub request: OperationRequest,
}

/// Capacity held on a node outside any task (IF-I2-01).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AllocationView {
    pub id: String,
    pub node_id: String,
    pub node: String,
    pub tenant: String,
    pub resources: TaskResources,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_at: Option<DateTime<Utc>>,
}
