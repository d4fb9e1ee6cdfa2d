//! The event stream (I1 alarms, I3 publish/subscribe): `GET /api/v1/events` as
//! Server-Sent Events. Every event has a sequence id; a client that reconnects with
//! `Last-Event-ID` gets everything after it, so nothing is lost across a reconnect.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Event types; `?types=` filters by these or by their prefix before the dot (`task`).
pub mod types {
    /// A task changed state; data: `{state, attempt, node, reason, exit_code}`.
    pub const TASK_STATE: &str = "task.state";
    /// A node registered, became ready or not ready, or was cordoned; data: the node view.
    pub const NODE_STATE: &str = "node.state";
    /// An I2 operation finished; data: the operation record.
    pub const OPERATION: &str = "operation";
    /// Something needs attention (IF-I1-03); data: `{kind, ...}`.
    pub const ALARM: &str = "alarm";
}

/// The kinds of alarm (`data.kind` of an `alarm` event).
pub mod alarms {
    pub const TASK_FAILED: &str = "task_failed";
    pub const NODE_LOST: &str = "node_lost";
    pub const UNSCHEDULABLE: &str = "unschedulable";
    pub const TASK_LOST: &str = "task_lost";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

/// One event, as the `data:` line of an SSE message (whose `id:` is `id` and `event:` is
/// `type`), and as the items of `GET /api/v1/events?after=`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    pub id: u64,
    pub at: DateTime<Utc>,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The object it is about: a task, node or operation id.
    pub subject: String,
    /// Tenant of the subject; events of other tenants are not shown to a tenant's users.
    pub tenant: String,
    pub severity: Severity,
    pub message: String,
    #[serde(default)]
    pub data: serde_json::Value,
}

/// Does `event_type` pass a `?types=a,b.c` filter (empty = everything)?
pub fn type_matches(filter: &[String], event_type: &str) -> bool {
    filter.is_empty()
        || filter.iter().any(|f| {
            f == event_type
                || event_type
                    .strip_prefix(f.as_str())
                    .is_some_and(|rest| rest.starts_with('.'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_whole_types_and_prefixes() {
        let f = vec!["task".to_string(), "alarm".to_string()];
        assert!(type_matches(&f, "task.state"));
        assert!(type_matches(&f, "alarm"));
        assert!(!type_matches(&f, "node.state"));
        assert!(!type_matches(&["tas".to_string()], "task.state"));
        assert!(type_matches(&[], "anything"));
    }
}
