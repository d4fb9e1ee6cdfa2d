//! The one place that names the GPU placement policies of `cpn_sched::plugins::gpu`: the
//! protocol asks here for a policy's profile, the target workload and the fragmentation
//! tracker, so a change of that API touches this file only.

use cpn_sched::Profile;
use cpn_sched::Task;
pub use cpn_sched::plugins::gpu::{FragmentationTracker, GpuPolicy, TargetWorkload};
use std::sync::Arc;

/// The target workload ("typical pods") of the original task list.
pub fn target_workload(tasks: &[Task]) -> TargetWorkload {
    TargetWorkload::from_tasks(tasks)
}

/// Whether `name` is a policy the scheduler knows.
pub fn is_policy(name: &str) -> bool {
    GpuPolicy::parse(name).is_some()
}

/// The short name of a policy however it is written ("FGD", "06-FGD", "best_fit").
pub fn canonical(name: &str) -> Option<&'static str> {
    GpuPolicy::parse(name).map(GpuPolicy::name)
}

/// The scheduling profile of policy `name` for a run with `seed`.
///
/// # Panics
/// On an unknown name: callers check names with [`is_policy`] first.
pub fn profile(name: &str, target: Arc<TargetWorkload>, seed: u64) -> Profile {
    let policy = GpuPolicy::parse(name).unwrap_or_else(|| panic!("unknown GPU policy {name:?}"));
    cpn_sched::plugins::gpu::profile(policy, target, seed)
}
