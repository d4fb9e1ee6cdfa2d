//! `cpn sim gpu`: replays the Alibaba GPU trace v2023 through the real scheduler under the
//! six GPU placement policies of the FGD paper, over many seeds in parallel, writes the
//! discretised curves and a summary, and with `--check-published` compares the result with
//! the authors' published numbers (issue #4). The simulation itself is `cpn-sim`; this file
//! only opens files, parses flags and prints. `cpn sim run|list|status|results|cancel` ask
//! the server to do the same (`sim_api`).

use crate::commands::{sim_builtin, sim_plot};
use crate::output;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use cpn_sim::protocol::{RunResult, Trace, X_MAX};
use cpn_sim::published::{self, Published, Stats};
use cpn_sim::sweep::{self, Progress};
use cpn_sim::trace;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Subcommand)]
pub enum SimCmd {
    /// Replay the Alibaba GPU trace (FGD, USENIX ATC '23) under GPU placement policies.
    ///
    /// The protocol of BENCHMARK.md §3: the GPU nodes empty, the tasks shuffled per seed and
    /// inflated to 130 % of GPU capacity, dropped when nothing fits; metrics after every
    /// task, discretised onto arrived % = 0..130. Runs policies × seeds on every core.
    /// Without --data it replays the copy of the trace built into cpn (the repository's
    /// data/alibaba-gpu-v2023: GPU nodes, `default` trace, published results).
    Gpu(SimGpuArgs),
    /// Start a policy simulation on the server (asynchronous; see `sim status`).
    ///
    /// The same protocol as `sim gpu`, run by the server in the background on a shipped
    /// trace (`--trace`, needs `cpn serve --sim-data`) or an uploaded pod list (`--pods`),
    /// on the shipped GPU nodes or an uploaded node list (`--nodes`).
    Run(crate::commands::sim_api::SimRunArgs),
    /// Replay a timed workload over the live federation (the federation twin).
    ///
    /// Tasks arrive at their trace creation times, queue until they fit and run for their
    /// trace durations, under one or two policies; prints cost, energy, latency to origin,
    /// queueing delay and per-site utilization side by side.
    Federation(crate::commands::sim_federation::SimFederationArgs),
    /// List the simulations on the server, newest first (the server keeps the newest 100).
    #[command(visible_alias = "ls")]
    List,
    /// Show a simulation's state and progress.
    Status {
        /// Simulation id.
        id: String,
    },
    /// Show a finished simulation's results per policy.
    Results {
        /// Simulation id.
        id: String,
    },
    /// Cancel a queued or running simulation.
    ///
    /// A queued one ends at once; a running one stops at its next check, within a moment.
    /// Either way it ends `cancelled`, without results. A finished one cannot be cancelled.
    Cancel {
        /// Simulation id.
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct SimGpuArgs {
    /// Folder of the trace CSVs and `fgd-expected-results/` [default: the copy built into
    /// cpn of the repository's data/alibaba-gpu-v2023, holding the GPU node list, the
    /// `default` trace and the published results].
    ///
    /// The other traces of the repository (cpu050, cpu100, gpushare40/60/80/100) need it:
    /// `--data data/alibaba-gpu-v2023` from the repository's root.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Node list [default: DATA/openb_node_list_gpu_node.csv, or the built-in one].
    #[arg(long, value_name = "NODES.csv")]
    pub nodes: Option<PathBuf>,
    /// Pod list [default: DATA/openb_pod_list_TRACE.csv for each of --traces, or the
    /// built-in `default` trace].
    #[arg(long, value_name = "PODS.csv", conflicts_with = "traces")]
    pub pods: Option<PathBuf>,
    /// Traces to replay, by short name (default, cpu050, gpushare40, …); without --data
    /// only `default` is there.
    #[arg(long, value_delimiter = ',', default_value = "default")]
    pub traces: Vec<String>,
    /// Policies: fgd, bestfit, packing, clustering, dotprod, random; fgd_plus (our own,
    /// not in the default set).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "random,dotprod,clustering,packing,bestfit,fgd"
    )]
    pub policy: Vec<String>,
    /// Seeds: a range `42-51`, a list `42,45`, or both `42-44,50`.
    #[arg(long, default_value = "42-51")]
    pub seeds: String,
    /// Write per-seed curves, summary.csv and plots here.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Compare the mean unallocated GPU % at 100 % arrived with the published results; exit
    /// non-zero when a (trace, policy) cell or a ranking pair fails.
    #[arg(long)]
    pub check_published: bool,
    /// Worker threads [default: the machine's cores].
    #[arg(long)]
    pub threads: Option<usize>,
}

/// `42-51`, `42,43`, `42-44,50`.
pub(crate) fn parse_seeds(s: &str) -> Result<Vec<u64>> {
    let mut seeds = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u64, u64) = (
                    a.trim().parse().with_context(|| format!("seed {a:?}"))?,
                    b.trim().parse().with_context(|| format!("seed {b:?}"))?,
                );
                if a > b {
                    bail!("seed range {part:?} runs backwards");
                }
                seeds.extend(a..=b);
            }
            None => seeds.push(part.parse().with_context(|| format!("seed {part:?}"))?),
        }
    }
    if seeds.is_empty() {
        bail!("no seeds in {s:?}");
    }
    Ok(seeds)
}

fn open(path: &Path) -> Result<BufReader<File>> {
    Ok(BufReader::new(
        File::open(path).with_context(|| format!("open {}", path.display()))?,
    ))
}

fn read_nodes(path: &Path) -> Result<Vec<trace::NodeRow>> {
    Ok(trace::read_nodes(&path.display().to_string(), open(path)?)?)
}

fn read_pods(path: &Path) -> Result<Vec<trace::PodRow>> {
    Ok(trace::read_pods(&path.display().to_string(), open(path)?)?)
}

/// The published allocation results: DATA's, where it has them, or the built-in ones.
fn read_published(data: Option<&Path>, file: &str) -> Result<Option<Published>> {
    let Some(data) = data else {
        let name = format!("{} (built in)", sim_builtin::ORIGIN);
        return Ok(Some(Published::parse(&name, sim_builtin::PUBLISHED_ALLO)?));
    };
    let path = data.join("fgd-expected-results").join(file);
    if !path.exists() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    Ok(Some(Published::parse(&path.display().to_string(), &text)?))
}

/// Median of the values, `None` when there are none.
fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len().is_multiple_of(2) {
        (v[m - 1] + v[m]) / 2.0
    } else {
        v[m]
    })
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.4}")).unwrap_or_default()
}

/// `cpn sim gpu`, in process.
pub fn gpu(args: SimGpuArgs) -> Result<()> {
    let seeds = parse_seeds(&args.seeds)?;
    let mut policies = Vec::new();
    for p in &args.policy {
        match cpn_sim::policy::canonical(p) {
            Some(name) => policies.push(name.to_string()),
            None => bail!(
                "unknown policy {p:?}; valid: {}, fgd_plus",
                published::POLICIES.join(", ")
            ),
        }
    }
    let data = args.data.as_deref();
    let built_in = |file: &str| format!("{}/{file} (built in)", sim_builtin::ORIGIN);
    let nodes = match (&args.nodes, data) {
        (Some(path), _) => read_nodes(path)?,
        (None, Some(dir)) => read_nodes(&dir.join("openb_node_list_gpu_node.csv"))?,
        (None, None) => trace::parse_nodes(
            &built_in("openb_node_list_gpu_node.csv"),
            sim_builtin::NODES,
        )?,
    };
    let mut traces = Vec::new();
    if let Some(path) = &args.pods {
        let name = published::short_trace_name(&path.to_string_lossy()).to_string();
        traces.push(Trace::new(name, nodes.clone(), read_pods(path)?));
    } else {
        for t in &args.traces {
            let file = format!("openb_pod_list_{t}.csv");
            let pods = match data {
                Some(dir) => read_pods(&dir.join(&file))?,
                None => match sim_builtin::trace(t) {
                    Some(text) => trace::parse_pods(&built_in(&file), text)?,
                    None => bail!(
                        "trace {t:?} is not built into cpn (only {} is); give the folder \
                         holding {file} with --data, e.g. `--data {}` from the repository's root",
                        sim_builtin::names(),
                        sim_builtin::ORIGIN
                    ),
                },
            };
            traces.push(Trace::new(t.clone(), nodes.clone(), pods));
        }
    }
    let published_allo = read_published(data, "analysis_allo_discrete.csv")?;
    let published_allo = published_allo.as_ref();
    if args.check_published && published_allo.is_none() {
        bail!(
            "--check-published needs {}",
            data.unwrap_or(Path::new("DATA"))
                .join("fgd-expected-results/analysis_allo_discrete.csv")
                .display()
        );
    }

    let jobs = sweep::jobs(traces.len(), &policies, &seeds);
    let threads = args.threads.unwrap_or_else(sweep::default_threads);
    eprintln!(
        "sim gpu: {} trace(s) × {} policies × {} seeds = {} runs on {threads} thread(s); {} nodes, {} GPUs",
        traces.len(),
        policies.len(),
        seeds.len(),
        jobs.len(),
        nodes.len(),
        trace::gpu_capacity_milli(&nodes) / 1000
    );
    let started = Instant::now();
    let progress = |p: Progress| {
        let r = p.result;
        eprintln!(
            "[{:>3}/{}] {:<11} {:<10} seed {:<4} unallocated@100 {:>6} %  placed {:>5} failed {:>5}  {:.1} s",
            p.done,
            p.total,
            r.trace,
            r.policy,
            r.seed,
            r.curve
                .unallocated(100)
                .map(|v| format!("{v:.2}"))
                .unwrap_or_else(|| "-".into()),
            r.placed,
            r.failed,
            p.elapsed.as_secs_f64()
        );
    };
    let results = sweep::sweep(&traces, &jobs, threads, false, &progress);
    let wall = started.elapsed();
    let cpu: f64 = results.iter().map(|t| t.elapsed.as_secs_f64()).sum();
    eprintln!(
        "sim gpu: {} runs in {:.1} s wall, {:.1} s per run on average",
        results.len(),
        wall.as_secs_f64(),
        cpu / results.len().max(1) as f64
    );

    // Group by (trace, policy), in the order asked.
    let mut groups: BTreeMap<(usize, usize), Vec<&RunResult>> = BTreeMap::new();
    for (job, t) in jobs.iter().zip(&results) {
        let p = policies.iter().position(|p| *p == job.policy).unwrap_or(0);
        groups.entry((job.trace, p)).or_default().push(&t.result);
    }

    if let Some(out) = &args.out {
        write_curves(out, &results)?;
    }
    let summary = summarize(&traces, &policies, &groups, published_allo);
    output::print_table(&summary.table)?;
    if let Some(out) = &args.out {
        std::fs::write(out.join("summary.csv"), &summary.csv).context("write summary.csv")?;
        for (t, trace) in traces.iter().enumerate() {
            let series: Vec<sim_plot::Series> = policies
                .iter()
                .enumerate()
                .filter_map(|(p, policy)| {
                    let runs = groups.get(&(t, p))?;
                    let ours = (0..=X_MAX)
                        .map(|x| median(runs.iter().filter_map(|r| r.curve.unallocated(x))))
                        .collect();
                    let published = published_allo.map(|pubs| {
                        (0..=X_MAX)
                            .map(|x| {
                                median(
                                    pubs.values_at(&trace.name, policy, x)
                                        .into_iter()
                                        .map(|a| 100.0 - a),
                                )
                            })
                            .collect::<Vec<_>>()
                    });
                    Some(sim_plot::Series {
                        policy: policy.clone(),
                        ours,
                        published: published.filter(|c| c.iter().any(Option::is_some)),
                    })
                })
                .collect();
            let path = out.join(format!("{}-unallocated.png", trace.name));
            let title = format!(
                "{}: unallocated GPU vs arrived workload, median of {} seeds (solid: cpn, dashed: published)",
                trace.name,
                seeds.len()
            );
            sim_plot::plot(&path, &title, &series)?;
        }
        eprintln!("sim gpu: wrote {}", out.display());
    }

    if args.check_published {
        let ours: Vec<(String, String, Vec<f64>)> = groups
            .iter()
            .map(|(&(t, p), runs)| {
                (
                    traces[t].name.clone(),
                    policies[p].clone(),
                    runs.iter()
                        .filter_map(|r| r.curve.unallocated(100))
                        .collect(),
                )
            })
            .collect();
        let fid = published::check(&ours, published_allo.expect("checked above"), 100);
        print!("\n{fid}");
        if let Some(out) = &args.out {
            let mut csv = String::from(
                "trace,policy,n_ours,ours_mean,ours_sd,n_published,published_mean,published_sd,diff,tolerance,pass\n",
            );
            for c in &fid.cells {
                let _ = writeln!(
                    csv,
                    "{},{},{},{:.4},{:.4},{},{:.4},{:.4},{:.4},{:.4},{}",
                    c.trace,
                    c.policy,
                    c.ours.n,
                    c.ours.mean,
                    c.ours.sd,
                    c.published.n,
                    c.published.mean,
                    c.published.sd,
                    c.diff,
                    c.tolerance,
                    c.pass
                );
            }
            std::fs::write(out.join("fidelity.csv"), csv).context("write fidelity.csv")?;
        }
        if !fid.passed() {
            bail!(
                "fidelity check failed: {} cell(s) or ranking pair(s) off the published results",
                fid.failures()
            );
        }
    }
    Ok(())
}

/// DIR/TRACE/POLICY/seed-N.csv: the discretised curves of one run.
fn write_curves(out: &Path, results: &[sweep::Timed]) -> Result<()> {
    for t in results {
        let r = &t.result;
        let dir = out.join(&r.trace).join(&r.policy);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let mut csv = String::from(
            "arrived_pct,allocated_pct,unallocated_pct,frag_amount_pct,frag_rate_pct\n",
        );
        for x in 0..=X_MAX {
            let _ = writeln!(
                csv,
                "{x},{},{},{},{}",
                fmt_opt(r.curve.allocated[x]),
                fmt_opt(r.curve.unallocated(x)),
                fmt_opt(r.curve.frag_amount[x]),
                fmt_opt(r.curve.frag_rate[x]),
            );
        }
        let path = dir.join(format!("seed-{}.csv", r.seed));
        std::fs::write(&path, csv).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

struct Summary {
    table: comfy_table::Table,
    csv: String,
}

fn summarize(
    traces: &[Trace],
    policies: &[String],
    groups: &BTreeMap<(usize, usize), Vec<&RunResult>>,
    published_allo: Option<&Published>,
) -> Summary {
    let mut table = output::table(&[
        "TRACE",
        "POLICY",
        "SEEDS",
        "UNALLOC@100 %",
        "PUBLISHED@100 %",
        "UNALLOC@130 %",
        "FRAG AMOUNT@100 %",
        "FRAG RATE@100 %",
        "FAILED TASKS",
    ]);
    let mut csv = String::from(
        "trace,policy,seeds,unallocated_100_mean,unallocated_100_sd,published_100_mean,published_100_sd,unallocated_130_mean,unallocated_130_sd,frag_amount_100_mean,frag_rate_100_mean,failed_tasks_mean\n",
    );
    let pm = |s: Option<Stats>| {
        s.map(|s| format!("{:.2} ± {:.2}", s.mean, s.sd))
            .unwrap_or_else(|| "-".into())
    };
    for (&(t, p), runs) in groups {
        let at = |f: &dyn Fn(&RunResult) -> Option<f64>| {
            Stats::of(&runs.iter().filter_map(|r| f(r)).collect::<Vec<_>>())
        };
        let u100 = at(&|r| r.curve.unallocated(100));
        let u130 = at(&|r| r.curve.unallocated(130));
        let fa = at(&|r| r.curve.frag_amount[100]);
        let fr = at(&|r| r.curve.frag_rate[100]);
        let failed = at(&|r| Some(r.failed as f64));
        let pubs = published_allo.and_then(|published| {
            Stats::of(
                &published
                    .values_at(&traces[t].name, &policies[p], 100)
                    .into_iter()
                    .map(|a| 100.0 - a)
                    .collect::<Vec<_>>(),
            )
        });
        table.add_row(vec![
            traces[t].name.clone(),
            policies[p].clone(),
            runs.len().to_string(),
            pm(u100),
            pm(pubs),
            pm(u130),
            fa.map(|s| format!("{:.2}", s.mean)).unwrap_or_default(),
            fr.map(|s| format!("{:.2}", s.mean)).unwrap_or_default(),
            failed.map(|s| format!("{:.0}", s.mean)).unwrap_or_default(),
        ]);
        let m = |s: Option<Stats>| s.map(|s| format!("{:.4}", s.mean)).unwrap_or_default();
        let sd = |s: Option<Stats>| s.map(|s| format!("{:.4}", s.sd)).unwrap_or_default();
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{},{},{},{}",
            traces[t].name,
            policies[p],
            runs.len(),
            m(u100),
            sd(u100),
            m(pubs),
            sd(pubs),
            m(u130),
            sd(u130),
            m(fa),
            m(fr),
            m(failed)
        );
    }
    Summary { table, csv }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_lists() {
        assert_eq!(parse_seeds("42-45").unwrap(), vec![42, 43, 44, 45]);
        assert_eq!(parse_seeds("42,50").unwrap(), vec![42, 50]);
        assert_eq!(parse_seeds("1-2,7").unwrap(), vec![1, 2, 7]);
        assert!(parse_seeds("5-1").is_err());
        assert!(parse_seeds("x").is_err());
    }
}
