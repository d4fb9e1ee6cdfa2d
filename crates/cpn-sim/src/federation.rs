//! The federation twin: replays a timed workload (arrivals and durations) over a federation
//! (a `cpn_sched::Cluster` with its latencies, prices and PUE) under one profile, and reports
//! what it would cost: money, energy, latency to the tasks' origins, queueing delay and the
//! time-averaged utilization of every site.
//!
//! Arrivals enter a [`TaskQueue`] (priority classes, FIFO inside a class, aging). After the
//! events of each instant (departures first, then arrivals) the queue goes through one
//! [`Round`] of the batch binding loop the live binder shares: a task that does not fit now
//! waits, one that can never fit (`Outcome::Never`, or a miss while nothing runs anywhere)
//! is dropped; a placed task departs after its duration and gives its capacity back. Its
//! cost, energy and latency are [`PlacementCost`], as in dry-runs and plans. Pure and
//! deterministic for a seed.

use crate::rng::Rng;
use crate::trace::PodRow;
use cpn_sched::batch::{Outcome, Round, Shape};
use cpn_sched::kpi::{KpiTotals, PlacementCost};
use cpn_sched::queue::TaskQueue;
use cpn_sched::task::Chip;
use cpn_sched::{Cluster, Placement, Profile, Scheduler, Task};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A task of a timed workload.
#[derive(Debug, Clone)]
pub struct TimedTask {
    /// When it arrives, seconds from the start of the replay.
    pub arrival_s: u64,
    /// How long it runs once placed, seconds.
    pub duration_s: u64,
    pub task: Task,
}

/// Time-averaged use of one site over the replay.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteUse {
    pub site: String,
    /// Mean fraction of the site's GPU milli allocated (0 for a site without GPUs).
    pub gpu: f64,
    /// Mean fraction of the site's CPU allocated.
    pub cpu: f64,
    /// Tasks placed there.
    pub placed: u32,
}

/// What a replay came to under one profile.
#[derive(Debug, Clone, PartialEq)]
pub struct FederationReport {
    pub placed: u32,
    /// Tasks no site could ever hold.
    pub dropped: u32,
    /// Tasks still queued when every placed task had finished.
    pub still_waiting: u32,
    /// Σ price per unit-hour × units × hours run, CNY.
    pub total_cost_cny: f64,
    /// Σ units × watts × PUE × hours run, kWh.
    pub energy_kwh: f64,
    /// Mean latency from a placed task's origin region to its site (0 inside the region);
    /// `None` when no placed task had a known origin.
    pub mean_latency_ms: Option<f64>,
    /// Mean of placement time − arrival time over placed tasks.
    pub mean_queueing_delay_s: f64,
    /// 95th percentile (nearest rank) of the same.
    pub p95_queueing_delay_s: f64,
    /// Time of the last event: the span the utilization is averaged over.
    pub makespan_s: u64,
    pub sites: Vec<SiteUse>,
    /// Per task (in the order given): where and when (seconds) it was placed, if it was.
    pub placements: Vec<Option<(cpn_sched::SiteIdx, cpn_sched::NodeIdx, u64)>>,
}

fn used_fraction(free: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        1.0 - free as f64 / total as f64
    }
}

/// Replays `tasks` on `cluster` under `profile`; `seed` drives the scheduler's tie-breaks;
/// `aging_s` is how long a queued task waits to gain one priority level (0: no aging).
pub fn run(
    mut cluster: Cluster,
    tasks: &[TimedTask],
    profile: Profile,
    seed: u64,
    aging_s: u64,
) -> FederationReport {
    let mut scheduler = Scheduler::new(profile, seed);
    let mut queue: TaskQueue<usize> = TaskQueue::new(aging_s);
    // Arrivals by (time, index); departures by (time, sequence).
    let mut arrivals: Vec<usize> = (0..tasks.len()).collect();
    arrivals.sort_by_key(|&i| (tasks[i].arrival_s, i));
    let mut departures: BinaryHeap<Reverse<(u64, u64, usize)>> = BinaryHeap::new();
    let mut dep_seq = 0u64;
    let mut running: Vec<Option<Placement>> = vec![None; tasks.len()];
    let mut n_running = 0usize;

    let shapes: Vec<Shape> = tasks.iter().map(|t| Shape::of(&t.task)).collect();
    let mut kpis = KpiTotals::default();

    let n_sites = cluster.sites.len();
    let mut gpu_area = vec![0.0f64; n_sites];
    let mut cpu_area = vec![0.0f64; n_sites];
    let mut placed_at = vec![0u32; n_sites];
    let mut last_t = 0u64;

    let mut report = FederationReport {
        placed: 0,
        dropped: 0,
        still_waiting: 0,
        total_cost_cny: 0.0,
        energy_kwh: 0.0,
        mean_latency_ms: None,
        mean_queueing_delay_s: 0.0,
        p95_queueing_delay_s: 0.0,
        makespan_s: 0,
        sites: Vec::new(),
        placements: vec![None; tasks.len()],
    };
    let mut delays: Vec<u64> = Vec::new();
    let mut next_arrival = 0usize;

    loop {
        let t_arr = arrivals.get(next_arrival).map(|&i| tasks[i].arrival_s);
        let t_dep = departures.peek().map(|Reverse((t, _, _))| *t);
        let now = match (t_arr, t_dep) {
            (None, None) => break,
            (Some(a), None) => a,
            (None, Some(d)) => d,
            (Some(a), Some(d)) => a.min(d),
        };
        // Utilization held constant since the last event.
        let dt = now.saturating_sub(last_t) as f64;
        if dt > 0.0 {
            for (s, site) in cluster.sites.iter().enumerate() {
                gpu_area[s] += dt * used_fraction(site.free.gpu_milli, site.total.gpu_milli);
                cpu_area[s] += dt * used_fraction(site.free.cpu_milli, site.total.cpu_milli);
            }
        }
        last_t = now;
        // Departures at `now` first, then arrivals.
        while let Some(Reverse((t, _, i))) = departures.peek().copied() {
            if t != now {
                break;
            }
            departures.pop();
            let p = running[i].take().expect("a departure follows a placement");
            let task = &tasks[i].task;
            cluster.release(&task.tenant, p.node, &task.demand, &p.gpus);
            n_running -= 1;
        }
        while let Some(&i) = arrivals.get(next_arrival) {
            if tasks[i].arrival_s != now {
                break;
            }
            queue.push(i, tasks[i].task.priority, now);
            next_arrival += 1;
        }
        // One placement round over the whole queue, in queue order.
        let mut round = Round::new();
        let batch = queue.pop_batch(queue.len(), now);
        for i in batch {
            let timed = &tasks[i];
            let forever =
                match round.place("", &mut scheduler, &timed.task, &shapes[i], &mut cluster) {
                    Outcome::Placed(p) => {
                        kpis.add(
                            &PlacementCost::of(&cluster, &timed.task, &p),
                            timed.duration_s as f64 / 3600.0,
                        );
                        placed_at[p.site as usize] += 1;
                        report.placements[i] = Some((p.site, p.node, now));
                        delays.push(now - timed.arrival_s);
                        departures.push(Reverse((now + timed.duration_s, dep_seq, i)));
                        dep_seq += 1;
                        running[i] = Some(p);
                        n_running += 1;
                        None
                    }
                    Outcome::Never(_) => Some(true),
                    // Failing on an idle federation is for good: it never gets emptier.
                    Outcome::Waits(_) => Some(n_running == 0),
                };
            match forever {
                None => {}
                Some(true) => report.dropped += 1,
                // Back in line with its first arrival time, so aging keeps counting.
                Some(false) => queue.push(i, timed.task.priority, timed.arrival_s),
            }
        }
    }

    report.still_waiting = queue.len() as u32;
    report.makespan_s = last_t;
    report.placed = kpis.placed;
    report.total_cost_cny = kpis.cost_cny;
    report.energy_kwh = kpis.energy_kwh;
    report.mean_latency_ms = kpis.mean_latency_ms();
    if !delays.is_empty() {
        report.mean_queueing_delay_s =
            delays.iter().map(|&d| d as f64).sum::<f64>() / delays.len() as f64;
        delays.sort_unstable();
        let rank = (0.95 * delays.len() as f64).ceil() as usize;
        report.p95_queueing_delay_s = delays[rank.clamp(1, delays.len()) - 1] as f64;
    }
    let span = last_t.max(1) as f64;
    report.sites = cluster
        .sites
        .iter()
        .enumerate()
        .map(|(s, site)| SiteUse {
            site: site.spec.name.clone(),
            gpu: gpu_area[s] / span,
            cpu: cpu_area[s] / span,
            placed: placed_at[s],
        })
        .collect();
    report
}

/// How the workload builder gives tasks an origin region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginAssignment {
    /// Regions in turn, in the order given.
    RoundRobin,
    /// A seeded uniform draw per task.
    Seeded(u64),
}

/// How to turn a pod list into a timed workload.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadOptions {
    /// Most tasks to keep (the earliest created).
    pub limit: Option<usize>,
    /// Multiplies arrival offsets and durations (0.01 replays 100× faster).
    pub time_scale: f64,
    pub origins: OriginAssignment,
}

impl Default for WorkloadOptions {
    fn default() -> Self {
        WorkloadOptions {
            limit: None,
            time_scale: 1.0,
            origins: OriginAssignment::RoundRobin,
        }
    }
}

/// Builds a timed workload from trace pods: arrival = creation time relative to the
/// earliest kept pod, duration = deletion − creation (at least one second), both scaled.
/// Pods without both times (or deleted before created) are skipped. The trace's GPU models
/// do not exist in a federation, so GPU tasks accept any GPU (`models` cleared, `chip` set
/// to GPU). Origins come from `regions` (none when it is empty).
pub fn workload(pods: &[PodRow], regions: &[String], opts: &WorkloadOptions) -> Vec<TimedTask> {
    let mut timed: Vec<(u64, u64, &PodRow)> = pods
        .iter()
        .filter_map(|p| match (p.creation_time, p.deletion_time) {
            (Some(c), Some(d)) if d >= c => Some((c, d - c, p)),
            _ => None,
        })
        .collect();
    timed.sort_by_key(|&(c, _, _)| c);
    if let Some(limit) = opts.limit {
        timed.truncate(limit);
    }
    let first = timed.first().map(|&(c, _, _)| c).unwrap_or(0);
    let scale = if opts.time_scale.is_finite() && opts.time_scale > 0.0 {
        opts.time_scale
    } else {
        1.0
    };
    let mut rng = match opts.origins {
        OriginAssignment::Seeded(seed) => Some(Rng::new(seed)),
        OriginAssignment::RoundRobin => None,
    };
    timed
        .into_iter()
        .enumerate()
        .map(|(k, (created, duration, pod))| {
            let mut task = pod.to_task();
            if task.demand.gpus > 0 {
                task.models.clear();
                task.chip = Some(Chip::Gpu);
            }
            let duration_s = ((duration as f64 * scale).round() as u64).max(1);
            task.est_hours = duration_s as f64 / 3600.0;
            if !regions.is_empty() {
                let r = match rng.as_mut() {
                    Some(rng) => rng.index(regions.len()),
                    None => k % regions.len(),
                };
                task.origin_region = Some(regions[r].clone());
            }
            TimedTask {
                arrival_s: ((created - first) as f64 * scale).round() as u64,
                duration_s,
                task,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpn_sched::{ClusterBuilder, Demand, NodeSpec, SiteSpec};

    /// Two sites: `a` (region ra) with one 1-GPU node, `b` (region rb) CPU only.
    fn world() -> Cluster {
        let mut b = ClusterBuilder::new();
        let a = b.site(SiteSpec {
            name: "a".into(),
            region: "ra".into(),
            pue: 1.5,
            healthy: true,
            ..Default::default()
        });
        let s = b.site(SiteSpec {
            name: "b".into(),
            region: "rb".into(),
            pue: 1.0,
            healthy: true,
            ..Default::default()
        });
        b.node(NodeSpec {
            name: "gpu".into(),
            site: a,
            healthy: true,
            cpu_milli: 8000,
            memory_mib: 8192,
            chip: Some(Chip::Gpu),
            model: "m".into(),
            gpus: 1,
            price_per_unit_hour: 10.0,
            watts_per_unit: 400.0,
            ..Default::default()
        });
        b.node(NodeSpec {
            name: "cpu".into(),
            site: s,
            healthy: true,
            cpu_milli: 4000,
            memory_mib: 4096,
            ..Default::default()
        });
        b.build().unwrap()
    }

    fn gpu_task(id: &str, arrival_s: u64, duration_s: u64) -> TimedTask {
        TimedTask {
            arrival_s,
            duration_s,
            task: Task {
                id: id.into(),
                tenant: "t".into(),
                origin_region: Some("ra".into()),
                chip: Some(Chip::Gpu),
                demand: Demand {
                    cpu_milli: 1000,
                    gpus: 1,
                    gpu_milli: 1000,
                    ..Default::default()
                },
                ..Default::default()
            },
        }
    }

    fn cpu_task(id: &str, arrival_s: u64, duration_s: u64, cpu: u64) -> TimedTask {
        TimedTask {
            arrival_s,
            duration_s,
            task: Task {
                id: id.into(),
                tenant: "t".into(),
                demand: Demand {
                    cpu_milli: cpu,
                    ..Default::default()
                },
                ..Default::default()
            },
        }
    }

    fn profile() -> Profile {
        cpn_sched::plugins::default_profile()
    }

    #[test]
    fn the_second_task_on_the_only_gpu_waits_the_first_ones_duration() {
        let tasks = vec![gpu_task("x", 0, 3600), gpu_task("y", 0, 3600)];
        let r = run(world(), &tasks, profile(), 1, 0);
        assert_eq!((r.placed, r.dropped, r.still_waiting), (2, 0, 0));
        // Delays 0 and 3600.
        assert_eq!(r.mean_queueing_delay_s, 1800.0);
        assert_eq!(r.p95_queueing_delay_s, 3600.0);
        assert_eq!(r.makespan_s, 7200);
        // 2 tasks × 1 GPU × 1 h × 10 CNY; 2 × 0.4 kW × 1.5 PUE × 1 h.
        assert!((r.total_cost_cny - 20.0).abs() < 1e-9);
        assert!((r.energy_kwh - 1.2).abs() < 1e-9);
        assert_eq!(r.mean_latency_ms, Some(0.0));
        // The GPU is busy for the whole span.
        let a = r.sites.iter().find(|s| s.site == "a").unwrap();
        assert!((a.gpu - 1.0).abs() < 1e-9, "{a:?}");
        assert_eq!(a.placed, 2);
        // Each task's place and time: both on site a's only node, at 0 and 3600.
        assert_eq!(r.placements, vec![Some((0, 0, 0)), Some((0, 0, 3600))]);
    }

    #[test]
    fn a_task_that_can_never_fit_is_dropped_and_the_rest_go_on() {
        let tasks = vec![
            cpu_task("huge", 0, 10, 1_000_000),
            cpu_task("small", 5, 10, 1000),
        ];
        let r = run(world(), &tasks, profile(), 1, 0);
        assert_eq!((r.placed, r.dropped, r.still_waiting), (1, 1, 0));
        assert_eq!(r.mean_queueing_delay_s, 0.0);
        assert_eq!(r.makespan_s, 15);
    }

    #[test]
    fn a_smaller_task_passes_a_waiting_one_and_utilization_is_time_averaged() {
        // The CPU site has 4 cores; a 3-core task holds it 0..100, a second 3-core task
        // waits until 100, a 1-core task fits beside the first at 10.
        let mut w = world();
        // Keep CPU tasks off the GPU node: cordon it.
        let gpu_node = (0..w.nodes.len() as u32)
            .find(|&n| w.node(n).spec.name == "gpu")
            .unwrap();
        w.set_cordoned(gpu_node, true);
        let tasks = vec![
            cpu_task("big1", 0, 100, 3000),
            cpu_task("big2", 0, 100, 3000),
            cpu_task("small", 10, 90, 1000),
        ];
        let r = run(w, &tasks, profile(), 7, 0);
        assert_eq!(r.placed, 3);
        assert_eq!(r.makespan_s, 200);
        // Delays 0, 100, 0.
        assert!((r.mean_queueing_delay_s - 100.0 / 3.0).abs() < 1e-9);
        let b = r.sites.iter().find(|s| s.site == "b").unwrap();
        // 0..10: 3/4, 10..100: 4/4, 100..200: 3/4 → (7.5 + 90 + 75) / 200.
        assert!((b.cpu - 172.5 / 200.0).abs() < 1e-9, "{b:?}");
    }

    #[test]
    fn replays_are_deterministic_for_a_seed() {
        let tasks: Vec<TimedTask> = (0..40)
            .map(|i| cpu_task(&format!("t{i}"), i * 3, 50, 1000))
            .collect();
        let a = run(world(), &tasks, profile(), 9, 10);
        let b = run(world(), &tasks, profile(), 9, 10);
        assert_eq!(a, b);
    }

    fn pod(name: &str, gpus: u32, times: Option<(u64, u64)>) -> PodRow {
        PodRow {
            name: name.into(),
            cpu_milli: 1000,
            memory_mib: 1024,
            num_gpu: gpus,
            gpu_milli: if gpus > 0 { 1000 } else { 0 },
            gpu_spec: vec!["V100M16".into()],
            creation_time: times.map(|t| t.0),
            deletion_time: times.map(|t| t.1),
        }
    }

    #[test]
    fn the_workload_is_relative_scaled_limited_and_any_gpu() {
        let pods = vec![
            pod("late", 1, Some((300, 500))),
            pod("none", 0, None),
            pod("first", 0, Some((100, 200))),
            pod("mid", 1, Some((200, 200))),
        ];
        let regions = vec!["r1".to_string(), "r2".to_string()];
        let opts = WorkloadOptions {
            limit: Some(2),
            time_scale: 0.5,
            origins: OriginAssignment::RoundRobin,
        };
        let w = workload(&pods, &regions, &opts);
        let got: Vec<(&str, u64, u64, Option<&str>)> = w
            .iter()
            .map(|t| {
                (
                    t.task.id.as_str(),
                    t.arrival_s,
                    t.duration_s,
                    t.task.origin_region.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [("first", 0, 50, Some("r1")), ("mid", 50, 1, Some("r2"))]
        );
        assert!(w[1].task.models.is_empty());
        assert_eq!(w[1].task.chip, Some(Chip::Gpu));
        assert_eq!(w[0].task.chip, None);
        let seeded = WorkloadOptions {
            origins: OriginAssignment::Seeded(3),
            ..Default::default()
        };
        let a = workload(&pods, &regions, &seeded);
        let b = workload(&pods, &regions, &seeded);
        assert_eq!(a.len(), 3);
        let regions_of = |w: &[TimedTask]| -> Vec<Option<String>> {
            w.iter().map(|t| t.task.origin_region.clone()).collect()
        };
        assert_eq!(regions_of(&a), regions_of(&b));
    }
}
