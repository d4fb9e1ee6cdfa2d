//! Lean metrics of a workflow (seed 004): per step start, end, duration and wait (start −
//! ready), and for a task step its queue wait (the task submitted, no node running it yet)
//! apart from its run time, from the timings the executor recorded (`step_timing`); per
//! workflow the makespan (start to end, or to now), the work (sum of run times: queue wait
//! is not work), the total queue wait, the parallel rate (sum of step durations /
//! makespan: steps in flight at once), the serial rate (share of the makespan with at most
//! one step in flight) and the critical path: from the step that ended last, back through
//! the dependency that ended last, to a step without dependencies. `critical_path_s` is the
//! sum of the durations on that chain.
//!
//! A task step with no timing recorded is counted as queued while it is in flight (its
//! task has not started, or the executor has not seen it start) and as run once ended
//! (journals written before timings were recorded).

use crate::run::FlowRun;
use chrono::{DateTime, Utc};
use cpn_api_types::flows::{Action, FlowReport, StepState, StepTiming};

fn secs(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    ((b - a).num_microseconds().unwrap_or(0) as f64 / 1e6).max(0.0)
}

pub fn report(run: &FlowRun, id: &str, now: DateTime<Utc>) -> FlowReport {
    let end_of_flow = run.ended_at.unwrap_or(now);
    let makespan = secs(run.started_at, end_of_flow);
    // (start, end) of each step that started.
    let spans: Vec<Option<(DateTime<Utc>, DateTime<Utc>)>> = run
        .steps
        .iter()
        .map(|s| {
            s.started_at
                .map(|a| (a, s.ended_at.unwrap_or(end_of_flow).max(a)))
        })
        .collect();
    let steps: Vec<StepTiming> = run
        .def
        .steps
        .iter()
        .zip(&run.steps)
        .zip(&spans)
        .map(|((d, s), span)| {
            let duration_s = span.map_or(0.0, |(a, b)| secs(a, b));
            let (queue_s, run_s) = match &d.action {
                Action::Task { .. } if !s.timings.is_empty() => {
                    let end = s.ended_at.unwrap_or(end_of_flow);
                    let ran = |t: &crate::TaskTiming| match (t.run_s, t.started_at) {
                        (Some(r), _) => r,
                        (None, Some(a)) => secs(a, end),
                        (None, None) => 0.0,
                    };
                    (
                        s.timings.values().map(|t| t.queue_s).sum(),
                        s.timings.values().map(ran).sum(),
                    )
                }
                Action::Task { .. } if s.state == StepState::Running => (duration_s, 0.0),
                _ => (0.0, duration_s),
            };
            StepTiming {
                id: d.id.clone(),
                state: s.state,
                start: s.started_at,
                end: s.ended_at,
                duration_s,
                wait_s: match (s.ready_at, s.started_at) {
                    (Some(r), Some(a)) => secs(r, a),
                    _ => 0.0,
                },
                queue_s,
                run_s,
            }
        })
        .collect();
    let in_flight: f64 = steps.iter().map(|s| s.duration_s).sum();
    let work: f64 = steps.iter().map(|s| s.run_s).sum();
    let queue: f64 = steps.iter().map(|s| s.queue_s).sum();
    // Sweep: time with at most one step running.
    let mut edges: Vec<(DateTime<Utc>, i32)> = Vec::new();
    for (a, b) in spans.iter().flatten() {
        edges.push((*a, 1));
        edges.push((*b, -1));
    }
    edges.sort();
    let mut busy_multi = 0.0;
    let mut level = 0;
    let mut last = run.started_at;
    for (t, delta) in edges {
        if level > 1 {
            busy_multi += secs(last, t);
        }
        level += delta;
        last = t;
    }
    let (parallel_rate, serial_rate) = if makespan > 0.0 {
        (
            in_flight / makespan,
            ((makespan - busy_multi) / makespan).clamp(0.0, 1.0),
        )
    } else {
        (0.0, 1.0)
    };
    // Critical path.
    let mut path = Vec::new();
    let mut cur = (0..spans.len())
        .filter(|&i| spans[i].is_some())
        .max_by_key(|&i| (spans[i].map(|s| s.1), std::cmp::Reverse(i)));
    while let Some(i) = cur {
        path.push(i);
        cur = run.def.steps[i]
            .depends_on
            .iter()
            .filter_map(|d| run.index(d))
            .filter(|&j| spans[j].is_some() && !path.contains(&j))
            .max_by_key(|&j| (spans[j].map(|s| s.1), std::cmp::Reverse(j)));
    }
    path.reverse();
    FlowReport {
        id: id.to_string(),
        state: run.state,
        makespan_s: makespan,
        work_s: work,
        queue_s: queue,
        parallel_rate,
        serial_rate,
        critical_path_s: path.iter().map(|&i| steps[i].duration_s).sum(),
        critical_path: path.iter().map(|&i| run.def.steps[i].id.clone()).collect(),
        simulated_steps: steps
            .iter()
            .filter(|s| s.state == StepState::Simulated)
            .map(|s| s.id.clone())
            .collect(),
        steps,
    }
}
