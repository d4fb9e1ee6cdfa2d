//! What the store keeps for running work: nodes reported by executors, tasks with their
//! attempts, the event log that feeds the event stream, allocations and I2 operations.
//!
//! Like the registry records, these carry server-defined JSON (`spec`, `status`,
//! `inventory`, `data`) the store never interprets.

use crate::Result;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cpn_model::Labels;

#[derive(Debug, Clone, PartialEq)]
pub struct NodeRecord {
    pub id: String,
    pub site_id: String,
    pub site: String,
    pub name: String,
    /// `agent` or `slurm`.
    pub executor: String,
    pub labels: Labels,
    pub inventory: serde_json::Value,
    pub cordoned: bool,
    pub occupied_by: Option<String>,
    pub ready: bool,
    pub registered_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Registers a node, or refreshes one with the same (site, name): the id is kept.
#[derive(Debug, Clone)]
pub struct NodeRegistration {
    /// Used only when the node is new.
    pub id: String,
    pub site_id: String,
    pub site: String,
    pub name: String,
    pub executor: String,
    pub labels: Labels,
    pub inventory: serde_json::Value,
    pub now: DateTime<Utc>,
}

/// Fields to change on a node; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct NodePatch {
    pub ready: Option<bool>,
    pub cordoned: Option<bool>,
    pub occupied_by: Option<Option<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    /// Submission order; also the cursor of task lists.
    pub seq: i64,
    pub id: String,
    pub tenant: String,
    pub owner: String,
    pub name: String,
    pub state: String,
    pub priority: i32,
    pub attempt: u32,
    pub node_id: Option<String>,
    pub not_before: Option<DateTime<Utc>>,
    pub submitted_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub spec: serde_json::Value,
    pub status: serde_json::Value,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TaskOrder {
    /// Submission order.
    #[default]
    Seq,
    /// Queue order: priority (high first), then submission.
    Queue,
    /// Newest submission first; `after_seq` then pages towards older tasks.
    Newest,
}

/// A query of the event log. Types match as in the event stream: a type, or a prefix
/// before its dot (`task` matches `task.state`).
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only events after this sequence number (oldest first) or, newest first, before it.
    pub cursor: Option<u64>,
    pub newest_first: bool,
    pub types: Vec<String>,
    pub subject: Option<String>,
    /// Only this tenant's events; `None` for all (operators).
    pub tenant: Option<String>,
    pub limit: usize,
}

#[derive(Debug, Clone, Default)]
pub struct TaskQuery {
    pub tenant: Option<String>,
    /// Any of these states; empty means all.
    pub states: Vec<String>,
    pub node_id: Option<String>,
    pub name: Option<String>,
    /// Only tasks whose `not_before` is unset or at or before this time.
    pub due_at: Option<DateTime<Utc>>,
    /// The cursor: only tasks past this `seq` in the listing's order.
    pub after_seq: Option<i64>,
    pub limit: Option<usize>,
    pub order: TaskOrder,
}

/// A compare-and-set on one task: applied only if the stored state is one of
/// `expect_states` and the stored attempt is `expect_attempt`.
#[derive(Debug, Clone)]
pub struct TaskWrite {
    pub expect_states: Vec<String>,
    pub expect_attempt: u32,
    /// The new values of state, attempt, node_id, not_before, status and updated_at.
    pub record: TaskRecord,
    pub events: Vec<NewEvent>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub at: DateTime<Utc>,
    pub event_type: String,
    pub subject: String,
    pub tenant: String,
    pub severity: String,
    pub message: String,
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub seq: u64,
    pub event: NewEvent,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AllocationRecord {
    pub id: String,
    pub node_id: String,
    pub tenant: String,
    pub resources: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub released_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OperationRecord {
    pub id: String,
    pub at: DateTime<Utc>,
    pub tenant: String,
    pub body: serde_json::Value,
}

/// The part of [`crate::Store`] that running work needs.
#[async_trait]
pub trait RuntimeStore: Send + Sync + 'static {
    // ------------------------------------------------------------ nodes

    async fn register_node(
        &self,
        reg: NodeRegistration,
        events: Vec<NewEvent>,
    ) -> Result<NodeRecord>;
    async fn get_node(&self, id: &str) -> Result<Option<NodeRecord>>;
    async fn list_nodes(&self) -> Result<Vec<NodeRecord>>;
    async fn patch_node(
        &self,
        id: &str,
        patch: NodePatch,
        now: DateTime<Utc>,
        events: Vec<NewEvent>,
    ) -> Result<NodeRecord>;

    // ------------------------------------------------------------ tasks

    /// Inserts tasks and their events in one transaction; ids must be new.
    async fn create_tasks(
        &self,
        tasks: Vec<TaskRecord>,
        events: Vec<NewEvent>,
    ) -> Result<Vec<TaskRecord>>;
    async fn get_task(&self, id: &str) -> Result<Option<TaskRecord>>;
    async fn list_tasks(&self, query: TaskQuery) -> Result<Vec<TaskRecord>>;
    /// Applies each write whose expectation holds, in one transaction, with its events.
    /// The answer has, per write, the stored task or `None` when its expectation failed.
    async fn write_tasks(&self, writes: Vec<TaskWrite>) -> Result<Vec<Option<TaskRecord>>>;
    /// Count of tasks per state.
    async fn count_tasks(&self) -> Result<Vec<(String, u64)>>;
    /// Count of one tenant's tasks per state.
    async fn count_tenant_tasks(&self, tenant: &str) -> Result<Vec<(String, u64)>>;

    // ------------------------------------------------------------ events

    async fn append_events(&self, events: Vec<NewEvent>) -> Result<()>;
    async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<EventRecord>>;
    /// The event log's queries: events matching `filter`, in its order, at most its limit.
    async fn find_events(&self, filter: EventFilter) -> Result<Vec<EventRecord>>;
    async fn last_event_seq(&self) -> Result<u64>;

    // ------------------------------------------------------------ allocations and operations

    async fn create_allocation(&self, a: AllocationRecord) -> Result<AllocationRecord>;
    async fn get_allocation(&self, id: &str) -> Result<Option<AllocationRecord>>;
    async fn list_allocations(&self, active_only: bool) -> Result<Vec<AllocationRecord>>;
    /// Replaces the resources of an unreleased allocation.
    async fn adjust_allocation(
        &self,
        id: &str,
        resources: serde_json::Value,
    ) -> Result<AllocationRecord>;
    async fn release_allocation(&self, id: &str, now: DateTime<Utc>) -> Result<AllocationRecord>;

    async fn create_operation(
        &self,
        op: OperationRecord,
        events: Vec<NewEvent>,
    ) -> Result<OperationRecord>;
    async fn get_operation(&self, id: &str) -> Result<Option<OperationRecord>>;
    /// Newest first.
    async fn list_operations(&self, limit: usize) -> Result<Vec<OperationRecord>>;
}
