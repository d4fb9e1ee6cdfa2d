//! The batch binding loop that the live binder and the twins share: one round places the
//! queued tasks in queue order (see [`crate::queue::TaskQueue`]), each under its policy's
//! scheduler from a per-round cache, and remembers which task *shapes* failed so that a
//! task the scheduler cannot tell apart from one that just failed is not tried again:
//! capacity only shrinks during a round, so it would fail the same way. What a caller does
//! with the outcome (bind durably, depart after a duration, drop) is its own business.

use crate::cluster::Cluster;
use crate::cycle::{Mode, Placement, Scheduler, Unschedulable};
use crate::explain::Decision;
use crate::framework::Profile;
use crate::task::Task;
use std::collections::HashMap;
use std::sync::Arc;

/// What one task of a round came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Placed(Placement),
    /// Nothing fits now; it may once capacity frees up.
    Waits(Unschedulable),
    /// Nothing ever will: every rejection was permanent.
    Never(Unschedulable),
}

impl Outcome {
    fn of_failure(u: Unschedulable) -> Outcome {
        if u.forever {
            Outcome::Never(u)
        } else {
            Outcome::Waits(u)
        }
    }
}

/// A key equal for tasks that no filter can tell apart: the task without its id and its
/// estimated run time (which only scores read).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Shape(Arc<str>);

impl Shape {
    pub fn of(task: &Task) -> Shape {
        let mut t = task.clone();
        t.id.clear();
        t.est_hours = 0.0;
        Shape(format!("{t:?}").into())
    }
}

/// One placement round: call [`Round::place`] for each task in queue order.
#[derive(Debug, Default)]
pub struct Round {
    /// By policy name, then shape: the failure of the first task of that shape this round.
    failed: HashMap<String, HashMap<Shape, Unschedulable>>,
}

impl Round {
    pub fn new() -> Round {
        Round::default()
    }

    /// Places `task` under `policy` (whose scheduler `scheduler` is), reserving what it takes
    /// in `cluster`, unless a task of the same shape under the same policy already failed in
    /// this round.
    pub fn place(
        &mut self,
        policy: &str,
        scheduler: &mut Scheduler,
        task: &Task,
        shape: &Shape,
        cluster: &mut Cluster,
    ) -> Outcome {
        self.place_recorded(policy, scheduler, task, shape, cluster, Mode::Fast)
            .0
    }

    /// [`Self::place`] in `mode`, with the decision record the mode keeps (none for a task
    /// whose shape already failed: the first failure of the round is its explanation).
    pub fn place_recorded(
        &mut self,
        policy: &str,
        scheduler: &mut Scheduler,
        task: &Task,
        shape: &Shape,
        cluster: &mut Cluster,
        mode: Mode,
    ) -> (Outcome, Option<Decision>) {
        if let Some(u) = self.failed.get(policy).and_then(|f| f.get(shape)) {
            return (Outcome::of_failure(u.clone()), None);
        }
        let (result, decision) = scheduler.schedule(task, cluster, mode);
        let outcome = match result {
            Ok(p) => Outcome::Placed(p),
            Err(u) => {
                self.failed
                    .entry(policy.to_string())
                    .or_default()
                    .insert(shape.clone(), u.clone());
                Outcome::of_failure(u)
            }
        };
        (outcome, decision)
    }
}

/// Schedulers by policy name, built once and kept while the policies do not change (a
/// profile cache): building a profile compiles its CEL and sets up its plugins.
pub struct Schedulers<E> {
    seed: u64,
    by_name: HashMap<String, Result<Scheduler, E>>,
}

impl<E> Schedulers<E> {
    /// Every scheduler built here breaks its ties from `seed`.
    pub fn new(seed: u64) -> Schedulers<E> {
        Schedulers {
            seed,
            by_name: HashMap::new(),
        }
    }

    /// The scheduler of policy `name`, built by `build` the first time it is asked for; a
    /// policy that fails to build keeps failing with the same error until [`Self::clear`].
    pub fn get(
        &mut self,
        name: &str,
        build: impl FnOnce() -> Result<Profile, E>,
    ) -> Result<&mut Scheduler, &E> {
        let seed = self.seed;
        self.by_name
            .entry(name.to_string())
            .or_insert_with(|| build().map(|p| Scheduler::new(p, seed)))
            .as_mut()
            .map_err(|e| &*e)
    }

    /// Forget every scheduler (the policies changed).
    pub fn clear(&mut self) {
        self.by_name.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{ClusterBuilder, NodeSpec, SiteSpec};
    use crate::task::{Chip, Demand};

    fn one_gpu_node() -> Cluster {
        let mut b = ClusterBuilder::new();
        let s = b.site(SiteSpec {
            name: "s".into(),
            region: "r".into(),
            pue: 1.2,
            healthy: true,
            ..Default::default()
        });
        b.node(NodeSpec {
            name: "n".into(),
            site: s,
            cpu_milli: 8000,
            memory_mib: 32 << 10,
            gpus: 1,
            chip: Some(Chip::Gpu),
            model: "A100".into(),
            healthy: true,
            ..Default::default()
        });
        b.build().unwrap()
    }

    fn gpu_task(id: &str, gpus: u32) -> Task {
        Task {
            id: id.into(),
            tenant: "t".into(),
            demand: Demand {
                cpu_milli: 1000,
                memory_mib: 1024,
                gpus,
                gpu_milli: 1000,
                storage_gib: 0,
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_shape_that_failed_is_not_tried_again_in_the_round() {
        let mut cluster = one_gpu_node();
        let mut schedulers: Schedulers<String> = Schedulers::new(7);
        let mut round = Round::new();
        let tasks = [gpu_task("a", 1), gpu_task("b", 1), gpu_task("c", 1)];
        let mut outcomes = Vec::new();
        for t in &tasks {
            let s = schedulers
                .get("default", || Ok(crate::plugins::default_profile()))
                .unwrap();
            outcomes.push(round.place("default", s, t, &Shape::of(t), &mut cluster));
        }
        assert!(matches!(outcomes[0], Outcome::Placed(_)));
        assert!(matches!(outcomes[1], Outcome::Waits(_)));
        assert_eq!(
            outcomes[1], outcomes[2],
            "the same failure, not a second cycle"
        );
        assert_eq!(Shape::of(&tasks[1]), Shape::of(&tasks[2]));
    }

    #[test]
    fn a_task_no_chip_of_the_federation_can_serve_never_fits() {
        let mut cluster = one_gpu_node();
        let mut schedulers: Schedulers<String> = Schedulers::new(7);
        let s = schedulers
            .get("default", || Ok(crate::plugins::default_profile()))
            .unwrap();
        let t = Task {
            chip: Some(Chip::Npu),
            ..gpu_task("npu", 1)
        };
        let outcome = Round::new().place("default", s, &t, &Shape::of(&t), &mut cluster);
        assert!(matches!(outcome, Outcome::Never(_)), "{outcome:?}");
    }

    #[test]
    fn a_policy_that_does_not_build_keeps_its_error() {
        let mut schedulers: Schedulers<String> = Schedulers::new(0);
        assert_eq!(
            schedulers
                .get("bad", || Err("no such plugin".to_string()))
                .err(),
            Some(&"no such plugin".to_string())
        );
        assert!(
            schedulers
                .get("bad", || Ok(crate::plugins::default_profile()))
                .is_err(),
            "cached until cleared"
        );
        schedulers.clear();
        assert!(
            schedulers
                .get("bad", || Ok(crate::plugins::default_profile()))
                .is_ok()
        );
    }
}
