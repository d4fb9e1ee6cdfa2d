//! The extension points of a scheduling cycle and the profile that fills them.
//!
//! Modelled on the kube-scheduler framework: a plugin is a small type that implements one
//! or more extension-point traits; a profile lists plugins and score weights. Rejections are
//! values with reasons (for "why not there"), never errors.

use crate::cluster::{Cluster, GpuAssignment, GpuPick, NodeIdx, SiteIdx};
use crate::task::Task;
use std::any::{Any, TypeId};
use std::sync::Arc;

/// Why a candidate was rejected. `code` is a stable constant per plugin that tests and the
/// explain API match on; `detail` is for people and only computed when explaining.
#[derive(Debug, Clone, PartialEq)]
pub struct Reason {
    pub plugin: &'static str,
    pub code: &'static str,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Fits,
    /// Could fit later (capacity frees up).
    Rejects(Reason),
    /// Will never fit while the task stays as it is (wrong chip, region excluded).
    RejectsForever(Reason),
}

impl Verdict {
    pub fn fits(&self) -> bool {
        matches!(self, Verdict::Fits)
    }
    pub fn reason(&self) -> Option<&Reason> {
        match self {
            Verdict::Fits => None,
            Verdict::Rejects(r) | Verdict::RejectsForever(r) => Some(r),
        }
    }
}

/// Which way a raw score is good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// Per-cycle scratch space typed by `TypeId`: written in `prepare`, read in filter and score.
/// The borrow rules make "write once, read many" hold without locks.
#[derive(Default)]
pub struct CycleState {
    // A handful of entries: a linear scan over TypeIds beats hashing them with SipHash,
    // which filters reading the state once per node paid on every call.
    values: Vec<(TypeId, Box<dyn Any + Send + Sync>)>,
    explain: bool,
}

impl CycleState {
    pub fn new(explain: bool) -> Self {
        CycleState {
            values: Vec::new(),
            explain,
        }
    }
    pub fn put<T: Any + Send + Sync>(&mut self, value: T) {
        let id = TypeId::of::<T>();
        match self.values.iter_mut().find(|(k, _)| *k == id) {
            Some((_, v)) => *v = Box::new(value),
            None => self.values.push((id, Box::new(value))),
        }
    }
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        let id = TypeId::of::<T>();
        self.values
            .iter()
            .find(|(k, _)| *k == id)
            .and_then(|(_, b)| b.downcast_ref())
    }
    /// True when reasons should carry human detail (explain and stored decisions).
    pub fn explaining(&self) -> bool {
        self.explain
    }
    /// Builds a reason, formatting the detail only when someone will read it.
    pub fn reason(
        &self,
        plugin: &'static str,
        code: &'static str,
        detail: impl FnOnce() -> String,
    ) -> Reason {
        Reason {
            plugin,
            code,
            detail: self.explain.then(detail),
        }
    }
}

/// Every plugin has a name and says which extension points it serves.
pub trait Plugin: Send + Sync {
    fn name(&self) -> &'static str;
    /// Computes per-task values once per cycle (e.g. latencies from the task's origin).
    fn prepare(&self, _task: &Task, _cluster: &Cluster, _state: &mut CycleState) {}
    fn as_site_filter(&self) -> Option<&dyn SiteFilter> {
        None
    }
    fn as_node_filter(&self) -> Option<&dyn NodeFilter> {
        None
    }
    fn as_site_score(&self) -> Option<&dyn SiteScore> {
        None
    }
    fn as_node_score(&self) -> Option<&dyn NodeScore> {
        None
    }
}

/// Feasibility of a site. Must be cheap (O(1) in the site's nodes): it runs for every site.
pub trait SiteFilter: Plugin {
    fn filter_site(
        &self,
        state: &CycleState,
        task: &Task,
        cluster: &Cluster,
        site: SiteIdx,
    ) -> Verdict;
}

/// Feasibility of a node inside the chosen site.
pub trait NodeFilter: Plugin {
    fn filter_node(
        &self,
        state: &CycleState,
        task: &Task,
        cluster: &Cluster,
        node: NodeIdx,
    ) -> Verdict;
}

/// A raw score for a feasible site, in the plugin's own unit; the runner normalizes it.
pub trait SiteScore: Plugin {
    fn score_site(&self, state: &CycleState, task: &Task, cluster: &Cluster, site: SiteIdx) -> f64;
    fn better(&self) -> Better;
    /// Unit of the raw value, for explanations ("ms", "CNY/h", …).
    fn unit(&self) -> &'static str {
        ""
    }
}

/// A raw score for a feasible node.
pub trait NodeScore: Plugin {
    fn score_node(&self, state: &CycleState, task: &Task, cluster: &Cluster, node: NodeIdx) -> f64;
    fn better(&self) -> Better;
    fn unit(&self) -> &'static str {
        ""
    }
}

/// How many feasible nodes to look for before scoring (kube's percentageOfNodesToScore).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// Score every feasible node.
    All,
    /// kube-scheduler's adaptive rule: max(100, N·max(5, 50 − N/125) %) nodes.
    Adaptive,
    /// A fixed percentage of the nodes, at least 100.
    Percent(f64),
}

impl Sampling {
    pub fn nodes_to_find(self, n: usize) -> usize {
        let min = 100.min(n);
        match self {
            Sampling::All => n,
            Sampling::Adaptive => {
                let pct = (50.0 - n as f64 / 125.0).max(5.0);
                ((n as f64 * pct / 100.0) as usize).max(min).min(n)
            }
            Sampling::Percent(p) => ((n as f64 * p / 100.0) as usize).max(min).min(n),
        }
    }
}

/// A score plugin with its weight.
#[derive(Clone)]
pub struct Weighted {
    pub plugin: Arc<dyn Plugin>,
    pub weight: f64,
}

/// The plugins of one scheduling configuration and their weights.
#[derive(Clone)]
pub struct Profile {
    pub name: String,
    /// Every plugin, in the order they run (cheap filters first).
    pub plugins: Vec<Arc<dyn Plugin>>,
    /// Weights of score plugins by name; a score plugin absent here weighs 0 and is skipped.
    pub weights: Vec<(String, f64)>,
    pub sampling: Sampling,
    pub gpu_pick: GpuPick,
    /// How many top sites to try nodes in before giving up (a site can pass the aggregate
    /// filters while no single node holds the task).
    pub site_attempts: usize,
    /// Chooses the GPUs inside the chosen node when a policy has its own rule (FGD, …);
    /// `None` uses `gpu_pick`.
    pub gpu_picker: Option<Arc<dyn GpuPicker>>,
    pub tie_break: TieBreak,
}

/// How equal totals are ordered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TieBreak {
    /// A fresh seeded order every cycle: ties spread over the candidates.
    #[default]
    PerCycle,
    /// One seeded order for the scheduler's life, like a random but fixed node priority
    /// (the protocol of the GPU-trace benchmark).
    Fixed,
}

/// Chooses which GPUs of a node a task gets. Called after the node is chosen; must return
/// GPUs that hold the task's demand (`Cluster::reserve_exact` checks it).
pub trait GpuPicker: Send + Sync {
    fn pick(&self, cluster: &Cluster, node: NodeIdx, task: &Task) -> Option<GpuAssignment>;
}

impl Profile {
    pub fn weight(&self, plugin: &str) -> f64 {
        self.weights
            .iter()
            .find(|(n, _)| n == plugin)
            .map(|(_, w)| *w)
            .unwrap_or(0.0)
    }

    pub fn site_filters(&self) -> impl Iterator<Item = &dyn SiteFilter> {
        self.plugins.iter().filter_map(|p| p.as_site_filter())
    }

    pub fn node_filters(&self) -> impl Iterator<Item = &dyn NodeFilter> {
        self.plugins.iter().filter_map(|p| p.as_node_filter())
    }

    /// Score plugins with a non-zero weight.
    pub fn site_scores(&self) -> Vec<(&dyn SiteScore, f64)> {
        self.plugins
            .iter()
            .filter_map(|p| p.as_site_score())
            .map(|s| (s, self.weight(s.name())))
            .filter(|(_, w)| *w != 0.0)
            .collect()
    }

    pub fn node_scores(&self) -> Vec<(&dyn NodeScore, f64)> {
        self.plugins
            .iter()
            .filter_map(|p| p.as_node_score())
            .map(|s| (s, self.weight(s.name())))
            .filter(|(_, w)| *w != 0.0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adaptive_sampling_matches_kube() {
        assert_eq!(Sampling::Adaptive.nodes_to_find(50), 50);
        assert_eq!(Sampling::Adaptive.nodes_to_find(1000), 420); // 42 %
        assert_eq!(Sampling::Adaptive.nodes_to_find(5000), 500); // 10 %
        assert_eq!(Sampling::Adaptive.nodes_to_find(100_000), 5000); // floor of 5 %
        assert_eq!(Sampling::All.nodes_to_find(5000), 5000);
        assert_eq!(Sampling::Percent(1.0).nodes_to_find(5000), 100);
    }
}
