//! The scheduling framework of cpn (SC-ENG): one scheduling cycle per task, made of small
//! plugins at named extension points, weighted by a profile, explained as data.
//!
//! A cycle: pre-filter → filter sites → score sites → normalize each score to 0..=100 →
//! weighted sum → select (ties broken by a seeded order) → the same for nodes inside the
//! chosen site → reserve. The crate is pure: no I/O, no clock, no randomness but the seed
//! the caller passes, so the server and the digital twin run exactly the same code.

pub mod batch;
pub mod cluster;
pub mod cycle;
pub mod explain;
pub mod framework;
pub mod kpi;
pub mod plugins;
pub mod queue;
pub mod replicas;
pub mod synthetic;
pub mod task;

pub use cluster::{
    Cluster, ClusterBuilder, GpuAssignment, Node, NodeIdx, NodeSpec, Site, SiteIdx, SiteSpec,
};
pub use cycle::{Mode, Placement, Scheduler, Unschedulable};
pub use explain::{CandidateReport, Decision, FactorScore, VerdictReport};
pub use framework::{Better, CycleState, Plugin, Profile, Reason, Verdict};
pub use task::{Demand, Task};
