//! A small discrete-event core: events ordered by time, then by the order they were
//! scheduled (a sequence number), so a run is a pure function of its inputs and seed.
//!
//! Arrivals go through the real `cpn_sched::Scheduler` (never a copy of its logic); a placed
//! task with a duration gets a departure that releases it; node failures cordon the node
//! and evict what runs there; recoveries uncordon it; samples are markers the caller uses
//! to take metrics. The caller drives the loop with [`Engine::step`] and reads the cluster
//! between steps.

use cpn_sched::{Cluster, Mode, NodeIdx, Placement, Scheduler, Task, Unschedulable};
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Simulated time, in whatever unit the caller picks (the GPU-trace protocol uses the task
/// index; a timed trace would use seconds).
pub type Time = u64;

/// What happens at an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Task `i` (index into the engine's task list) asks to be placed.
    Arrival(usize),
    /// Task `i` finishes and gives its resources back.
    Departure(usize),
    /// A node stops: it is cordoned and its tasks are evicted.
    NodeFailure(NodeIdx),
    /// A node comes back.
    NodeRecovery(NodeIdx),
    /// A point where the caller takes metrics; changes nothing.
    Sample,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Event {
    time: Time,
    seq: u64,
    kind: EventKind,
}

impl Ord for Event {
    /// Reversed, so the max-heap pops the earliest (time, seq) first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.time, other.seq).cmp(&(self.time, self.seq))
    }
}

impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A task as the simulator replays it.
#[derive(Debug, Clone)]
pub struct SimTask {
    pub task: Task,
    /// How long it runs once placed; `None` runs forever (the GPU-trace protocol).
    pub duration: Option<Time>,
}

/// What one step did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Placed {
        time: Time,
        task: usize,
        placement: Placement,
    },
    /// No node could take the task: it is dropped (not retried).
    Failed {
        time: Time,
        task: usize,
        why: Unschedulable,
    },
    Departed {
        time: Time,
        task: usize,
        node: NodeIdx,
    },
    NodeFailed {
        time: Time,
        node: NodeIdx,
        /// Tasks evicted from it (released; the caller may resubmit them).
        evicted: Vec<usize>,
    },
    NodeRecovered {
        time: Time,
        node: NodeIdx,
    },
    Sample {
        time: Time,
    },
}

/// The simulator: a cluster, a scheduler, the tasks and the pending events.
pub struct Engine {
    cluster: Cluster,
    scheduler: Scheduler,
    tasks: Vec<SimTask>,
    queue: BinaryHeap<Event>,
    seq: u64,
    now: Time,
    /// Where each task runs now.
    running: Vec<Option<Placement>>,
}

impl Engine {
    pub fn new(cluster: Cluster, scheduler: Scheduler, tasks: Vec<SimTask>) -> Self {
        let n = tasks.len();
        Engine {
            cluster,
            scheduler,
            tasks,
            queue: BinaryHeap::new(),
            seq: 0,
            now: 0,
            running: vec![None; n],
        }
    }

    /// Schedules an event. Events at the same time run in the order they were pushed.
    pub fn push(&mut self, time: Time, kind: EventKind) {
        self.queue.push(Event {
            time,
            seq: self.seq,
            kind,
        });
        self.seq += 1;
    }

    pub fn now(&self) -> Time {
        self.now
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    pub fn tasks(&self) -> &[SimTask] {
        &self.tasks
    }

    /// Where task `i` runs now, if it does.
    pub fn placement(&self, i: usize) -> Option<&Placement> {
        self.running[i].as_ref()
    }

    /// Events still pending.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Runs the next event; `None` when none is left. The departure of a task evicted
    /// earlier is stale and skipped.
    pub fn step(&mut self) -> Option<Outcome> {
        let ev = loop {
            let ev = self.queue.pop()?;
            match ev.kind {
                EventKind::Departure(i) if self.running[i].is_none() => continue,
                _ => break ev,
            }
        };
        self.now = ev.time;
        let time = ev.time;
        Some(match ev.kind {
            EventKind::Arrival(i) => {
                let (result, _) =
                    self.scheduler
                        .schedule(&self.tasks[i].task, &mut self.cluster, Mode::Fast);
                match result {
                    Ok(placement) => {
                        if let Some(d) = self.tasks[i].duration {
                            self.push(time.saturating_add(d), EventKind::Departure(i));
                        }
                        self.running[i] = Some(placement.clone());
                        Outcome::Placed {
                            time,
                            task: i,
                            placement,
                        }
                    }
                    Err(why) => Outcome::Failed { time, task: i, why },
                }
            }
            EventKind::Departure(i) => {
                let p = self.running[i]
                    .take()
                    .expect("stale departures are skipped");
                let t = &self.tasks[i].task;
                self.cluster.release(&t.tenant, p.node, &t.demand, &p.gpus);
                Outcome::Departed {
                    time,
                    task: i,
                    node: p.node,
                }
            }
            EventKind::NodeFailure(node) => {
                self.cluster.set_cordoned(node, true);
                let mut evicted = Vec::new();
                for i in 0..self.running.len() {
                    if self.running[i].as_ref().is_some_and(|p| p.node == node) {
                        let p = self.running[i].take().expect("checked above");
                        let t = &self.tasks[i].task;
                        self.cluster.release(&t.tenant, p.node, &t.demand, &p.gpus);
                        evicted.push(i);
                    }
                }
                Outcome::NodeFailed {
                    time,
                    node,
                    evicted,
                }
            }
            EventKind::NodeRecovery(node) => {
                self.cluster.set_cordoned(node, false);
                Outcome::NodeRecovered { time, node }
            }
            EventKind::Sample => Outcome::Sample { time },
        })
    }

    /// Gives the cluster back (the end state).
    pub fn into_cluster(self) -> Cluster {
        self.cluster
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpn_sched::{ClusterBuilder, Demand, NodeSpec, SiteSpec};

    fn world() -> (Cluster, Scheduler) {
        let mut b = ClusterBuilder::new();
        let s = b.site(SiteSpec {
            name: "s".into(),
            healthy: true,
            ..Default::default()
        });
        for i in 0..2 {
            b.node(NodeSpec {
                name: format!("n{i}"),
                site: s,
                healthy: true,
                cpu_milli: 4000,
                memory_mib: 4096,
                ..Default::default()
            });
        }
        let profile =
            cpn_sched::plugins::profile(&cpn_sched::plugins::ProfileSpec::default()).unwrap();
        (b.build().unwrap(), Scheduler::new(profile, 1))
    }

    fn task(id: &str, cpu: u64, duration: Option<Time>) -> SimTask {
        SimTask {
            task: Task {
                id: id.into(),
                tenant: "t".into(),
                demand: Demand {
                    cpu_milli: cpu,
                    ..Default::default()
                },
                ..Default::default()
            },
            duration,
        }
    }

    #[test]
    fn events_run_by_time_then_push_order_and_departures_free_capacity() {
        let (c, s) = world();
        let tasks = vec![
            task("a", 4000, Some(10)),
            task("b", 4000, None),
            task("c", 4000, None),
            task("d", 4000, None),
        ];
        let mut e = Engine::new(c, s, tasks);
        e.push(5, EventKind::Arrival(2));
        e.push(0, EventKind::Arrival(0));
        e.push(0, EventKind::Arrival(1));
        e.push(20, EventKind::Arrival(3));
        let mut log = Vec::new();
        while let Some(o) = e.step() {
            log.push(match o {
                Outcome::Placed { time, task, .. } => format!("{time}:+{task}"),
                Outcome::Failed { time, task, .. } => format!("{time}:x{task}"),
                Outcome::Departed { time, task, .. } => format!("{time}:-{task}"),
                other => format!("{other:?}"),
            });
        }
        assert_eq!(log, ["0:+0", "0:+1", "5:x2", "10:-0", "20:+3"]);
    }

    #[test]
    fn failures_evict_and_recoveries_return_the_node() {
        let (c, s) = world();
        let mut e = Engine::new(
            c,
            s,
            vec![task("a", 1000, Some(100)), task("b", 4000, None)],
        );
        e.push(0, EventKind::Arrival(0));
        let Some(Outcome::Placed { placement, .. }) = e.step() else {
            panic!("placed")
        };
        e.push(1, EventKind::NodeFailure(placement.node));
        match e.step() {
            Some(Outcome::NodeFailed { evicted, .. }) => assert_eq!(evicted, vec![0]),
            other => panic!("{other:?}"),
        }
        assert_eq!(e.cluster().node(placement.node).cpu_used, 0);
        e.push(2, EventKind::NodeRecovery(placement.node));
        assert!(matches!(e.step(), Some(Outcome::NodeRecovered { .. })));
        // The stale departure of the evicted task is skipped.
        e.push(3, EventKind::Sample);
        assert_eq!(e.step(), Some(Outcome::Sample { time: 3 }));
        assert!(e.step().is_none());
        assert_eq!(e.now(), 3);
    }
}
