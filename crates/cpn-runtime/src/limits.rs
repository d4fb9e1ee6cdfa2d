//! Bounds on expensive work (issue #12, item 7): what one tenant may have running at once,
//! how much output one task attempt may store, and how workflow conditions are evaluated
//! (off the request threads, a few at a time, with a deadline).
//!
//! CEL's own limits (size, depth, loop nesting, iteration budget) live in `cpn_cel`, one
//! rule for policies and workflows alike; this module adds what needs a clock and threads.

use std::sync::LazyLock;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Configurable limits (`cpn serve --max-…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of output (stdout and stderr together) kept per task attempt; the rest is
    /// dropped after one truncation marker.
    pub max_task_output_bytes: u64,
    /// Workflows one tenant may have unfinished (running, compensating, paused) at once.
    pub max_running_flows_per_tenant: usize,
    /// Simulations one tenant may have queued or running at once.
    pub max_active_simulations_per_tenant: usize,
    /// Finished simulations kept per tenant; older ones are deleted.
    pub kept_simulations_per_tenant: usize,
    /// How long one evaluation of a workflow condition may run.
    pub condition_deadline: Duration,
    /// How long a workflow's task step pinned to a site with no live node waits for one
    /// before it fails with "no live node on site X", unless the step has a `timeout_s`.
    pub flow_node_wait: Duration,
    /// How long a task that no site can ever take (every rejection permanent: no live node
    /// of its chip, no site its tenant may see) waits for capacity to appear before it fails
    /// with the reason.
    pub unplaceable_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_task_output_bytes: cpn_api_types::agent::DEFAULT_MAX_OUTPUT_BYTES,
            max_running_flows_per_tenant: 20,
            max_active_simulations_per_tenant: 4,
            kept_simulations_per_tenant: 100,
            condition_deadline: Duration::from_secs(1),
            flow_node_wait: Duration::from_secs(300),
            unplaceable_wait: Duration::from_secs(300),
        }
    }
}

/// Conditions evaluated at once, server-wide: half the cores (at least one), so looping
/// conditions can never take every core from the request threads.
pub static CONDITION_SLOTS: LazyLock<Semaphore> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    Semaphore::new((cores / 2).max(1))
});
