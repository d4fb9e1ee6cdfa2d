//! Runs many protocol runs (traces × policies × seeds) on every core with
//! `std::thread::scope`: workers take the next job from a shared counter, so results do not
//! depend on how many threads there are, and come back in job order.

use crate::protocol::{self, RunResult, Trace};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// One run to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Index into the traces given to [`sweep`].
    pub trace: usize,
    pub policy: String,
    pub seed: u64,
}

/// Every (trace, policy, seed) combination, trace-major.
pub fn jobs(traces: usize, policies: &[String], seeds: &[u64]) -> Vec<Job> {
    let mut out = Vec::new();
    for trace in 0..traces {
        for policy in policies {
            for &seed in seeds {
                out.push(Job {
                    trace,
                    policy: policy.clone(),
                    seed,
                });
            }
        }
    }
    out
}

/// Told after each finished run.
pub struct Progress<'a> {
    pub done: usize,
    pub total: usize,
    pub result: &'a RunResult,
    /// Wall time of this run.
    pub elapsed: Duration,
}

/// A finished run and how long it took.
#[derive(Debug, Clone)]
pub struct Timed {
    pub result: RunResult,
    pub elapsed: Duration,
}

/// Runs `jobs` over `threads` workers (at least one); results in job order.
pub fn sweep(
    traces: &[Trace],
    jobs: &[Job],
    threads: usize,
    keep_samples: bool,
    progress: &(dyn Fn(Progress) + Sync),
) -> Vec<Timed> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Timed>>> = Mutex::new(vec![None; jobs.len()]);
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, jobs.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let start = Instant::now();
                    let result =
                        protocol::run(&traces[job.trace], &job.policy, job.seed, keep_samples);
                    let elapsed = start.elapsed();
                    let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                    progress(Progress {
                        done: d,
                        total: jobs.len(),
                        result: &result,
                        elapsed,
                    });
                    results.lock().expect("no worker panics holding it")[i] =
                        Some(Timed { result, elapsed });
                }
            });
        }
    });
    results
        .into_inner()
        .expect("workers are done")
        .into_iter()
        .map(|r| r.expect("every job ran"))
        .collect()
}

/// Default worker count: the machine's cores.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
