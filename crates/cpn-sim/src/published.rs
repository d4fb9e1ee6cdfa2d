//! The authors' published results (`fgd-expected-results/analysis_*_discrete.csv`) and the
//! fidelity check against them (issue #4 item 6): per (trace, policy), our mean unallocated
//! GPU % at arrived = 100 % over seeds against the published mean over theirs, passing when
//! |diff| ≤ 0.3 points or within 2.5 standard errors of the difference; plus the ranking of
//! every pair of policies whose published means are more than 0.5 points apart.

use crate::trace::{Problem, TraceError};
use std::fmt;

/// Policy keys (as `GpuPolicy::parse` takes them) in the published order.
pub const POLICIES: [&str; 6] = [
    "random",
    "dotprod",
    "clustering",
    "packing",
    "bestfit",
    "fgd",
];

/// The authors' label of a policy key (`sc_policy` column).
pub fn published_label(policy: &str) -> Option<&'static str> {
    Some(match policy {
        "random" => "01-Random",
        "dotprod" => "02-DotProd",
        "clustering" => "03-GpuClustering",
        "packing" => "04-GpuPacking",
        "bestfit" => "05-BestFit",
        "fgd" => "06-FGD",
        _ => return None,
    })
}

/// The policy key of an authors' label.
pub fn policy_key(label: &str) -> Option<&'static str> {
    POLICIES
        .iter()
        .copied()
        .find(|p| published_label(p) == Some(label))
}

/// A trace's short name (`default`) from the authors' workload name
/// (`openb_pod_list_default`) or a file name (`openb_pod_list_default.csv`).
pub fn short_trace_name(workload: &str) -> &str {
    let w = workload.rsplit('/').next().unwrap_or(workload);
    let w = w.strip_suffix(".csv").unwrap_or(w);
    w.strip_prefix("openb_pod_list_").unwrap_or(w)
}

/// One published run: a discretised curve (index = arrived %).
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedRun {
    /// Short trace name (`default`, `cpu050`, …).
    pub trace: String,
    /// Policy key (`fgd`, …).
    pub policy: String,
    pub seed: u64,
    pub values: Vec<Option<f64>>,
}

/// All rows of one `analysis_*_discrete.csv`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Published {
    pub runs: Vec<PublishedRun>,
}

impl Published {
    /// Parses an `analysis_*_discrete.csv` (`workload,sc_policy,tune,seed,[total_gpus,]0,…`).
    pub fn parse(file: &str, text: &str) -> Result<Published, TraceError> {
        let err = |line: usize, problem: Problem| TraceError {
            file: file.to_string(),
            line,
            problem,
        };
        let mut lines = text.lines().enumerate();
        let Some((_, header)) = lines.next() else {
            return Err(err(1, Problem::Empty));
        };
        let cols: Vec<&str> = header.split(',').map(str::trim).collect();
        let find = |name: &'static str| {
            cols.iter()
                .position(|c| *c == name)
                .ok_or_else(|| err(1, Problem::MissingColumn(name)))
        };
        let (cw, cp, cs) = (find("workload")?, find("sc_policy")?, find("seed")?);
        let x_cols: Vec<(usize, usize)> = cols
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.parse::<usize>().ok().map(|x| (x, i)))
            .collect();
        let width = x_cols.iter().map(|&(x, _)| x + 1).max().unwrap_or(0);
        let mut runs = Vec::new();
        for (i, line) in lines {
            let n = i + 1;
            if line.trim().is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            if f.len() != cols.len() {
                return Err(err(
                    n,
                    Problem::FieldCount {
                        expected: cols.len(),
                        found: f.len(),
                    },
                ));
            }
            let Some(policy) = policy_key(f[cp]) else {
                return Err(err(
                    n,
                    Problem::Invalid {
                        column: "sc_policy",
                        reason: format!("unknown policy {:?}", f[cp]),
                    },
                ));
            };
            let seed = f[cs].parse().map_err(|_| {
                err(
                    n,
                    Problem::NotANumber {
                        column: "seed",
                        value: f[cs].to_string(),
                    },
                )
            })?;
            let mut values = vec![None; width];
            for &(x, c) in &x_cols {
                if f[c].is_empty() {
                    continue;
                }
                values[x] = Some(f[c].parse::<f64>().map_err(|_| {
                    err(
                        n,
                        Problem::Invalid {
                            column: "arrived %",
                            reason: format!("column {x}: {:?} is not a number", f[c]),
                        },
                    )
                })?);
            }
            runs.push(PublishedRun {
                trace: short_trace_name(f[cw]).to_string(),
                policy: policy.to_string(),
                seed,
                values,
            });
        }
        Ok(Published { runs })
    }

    /// The value at arrived = x % of every published run of (trace, policy).
    pub fn values_at(&self, trace: &str, policy: &str, x: usize) -> Vec<f64> {
        self.runs
            .iter()
            .filter(|r| r.trace == trace && r.policy == policy)
            .filter_map(|r| r.values.get(x).copied().flatten())
            .collect()
    }

    /// The mean published curve of (trace, policy) over seeds, by arrived %.
    pub fn mean_curve(&self, trace: &str, policy: &str) -> Vec<Option<f64>> {
        let runs: Vec<&PublishedRun> = self
            .runs
            .iter()
            .filter(|r| r.trace == trace && r.policy == policy)
            .collect();
        let width = runs.iter().map(|r| r.values.len()).max().unwrap_or(0);
        (0..width)
            .map(|x| {
                let v: Vec<f64> = runs
                    .iter()
                    .filter_map(|r| r.values.get(x).copied().flatten())
                    .collect();
                Stats::of(&v).map(|s| s.mean)
            })
            .collect()
    }

    /// Traces present.
    pub fn traces(&self) -> Vec<String> {
        let mut t: Vec<String> = self.runs.iter().map(|r| r.trace.clone()).collect();
        t.sort();
        t.dedup();
        t
    }
}

/// Mean and sample standard deviation (n − 1) of a set of runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub n: usize,
    pub mean: f64,
    pub sd: f64,
}

impl Stats {
    pub fn of(v: &[f64]) -> Option<Stats> {
        if v.is_empty() {
            return None;
        }
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n as f64;
        let sd = if n > 1 {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Some(Stats { n, mean, sd })
    }
}

/// Absolute tolerance that always passes.
pub const ABS_TOLERANCE: f64 = 0.3;
/// Standard errors of the difference that pass.
pub const SE_FACTOR: f64 = 2.5;
/// Published gap above which a pair's order must be reproduced.
pub const RANK_GAP: f64 = 0.5;

/// One (trace, policy) comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub trace: String,
    pub policy: String,
    pub ours: Stats,
    pub published: Stats,
    /// ours − published.
    pub diff: f64,
    /// max(0.3, 2.5·sqrt(sd_o²/n_o + sd_p²/n_p)).
    pub tolerance: f64,
    pub pass: bool,
}

/// One ordered pair whose published means differ by more than [`RANK_GAP`].
#[derive(Debug, Clone, PartialEq)]
pub struct RankPair {
    pub trace: String,
    /// Published lower (better) unallocated %.
    pub better: String,
    pub worse: String,
    pub published_gap: f64,
    /// ours(worse) − ours(better); must be positive.
    pub our_gap: f64,
    pub pass: bool,
}

/// The fidelity table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Fidelity {
    pub x: usize,
    pub cells: Vec<Cell>,
    pub ranking: Vec<RankPair>,
    /// (trace, policy) we ran but that has no published runs.
    pub unpublished: Vec<(String, String)>,
}

impl Fidelity {
    pub fn passed(&self) -> bool {
        self.cells.iter().all(|c| c.pass) && self.ranking.iter().all(|r| r.pass)
    }
    pub fn failures(&self) -> usize {
        self.cells.iter().filter(|c| !c.pass).count()
            + self.ranking.iter().filter(|r| !r.pass).count()
    }
}

/// Compares our unallocated GPU % at arrived = `x` — `ours` holds (trace, policy, one value
/// per seed) — with the published allocation file (`analysis_allo_discrete.csv`).
pub fn check(
    ours: &[(String, String, Vec<f64>)],
    published_allo: &Published,
    x: usize,
) -> Fidelity {
    let mut fid = Fidelity {
        x,
        ..Default::default()
    };
    for (trace, policy, values) in ours {
        let pub_values: Vec<f64> = published_allo
            .values_at(trace, policy, x)
            .into_iter()
            .map(|a| 100.0 - a)
            .collect();
        let (Some(o), Some(p)) = (Stats::of(values), Stats::of(&pub_values)) else {
            fid.unpublished.push((trace.clone(), policy.clone()));
            continue;
        };
        let diff = o.mean - p.mean;
        let se = (o.sd.powi(2) / o.n as f64 + p.sd.powi(2) / p.n as f64).sqrt();
        let tolerance = ABS_TOLERANCE.max(SE_FACTOR * se);
        fid.cells.push(Cell {
            trace: trace.clone(),
            policy: policy.clone(),
            ours: o,
            published: p,
            diff,
            tolerance,
            pass: diff.abs() <= tolerance,
        });
    }
    let mut traces: Vec<&str> = fid.cells.iter().map(|c| c.trace.as_str()).collect();
    traces.dedup();
    for trace in traces {
        let cells: Vec<&Cell> = fid.cells.iter().filter(|c| c.trace == trace).collect();
        for a in &cells {
            for b in &cells {
                let gap = b.published.mean - a.published.mean;
                if gap > RANK_GAP {
                    let our_gap = b.ours.mean - a.ours.mean;
                    fid.ranking.push(RankPair {
                        trace: trace.to_string(),
                        better: a.policy.clone(),
                        worse: b.policy.clone(),
                        published_gap: gap,
                        our_gap,
                        pass: our_gap > 0.0,
                    });
                }
            }
        }
    }
    fid
}

impl fmt::Display for Fidelity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "unallocated GPU % at arrived = {} %: ours vs published (mean ± sd over seeds)",
            self.x
        )?;
        writeln!(
            f,
            "{:<12} {:<11} {:>16} {:>16} {:>7} {:>6}  result",
            "trace", "policy", "ours", "published", "diff", "tol"
        )?;
        for c in &self.cells {
            writeln!(
                f,
                "{:<12} {:<11} {:>8.2} ± {:<5.2} {:>8.2} ± {:<5.2} {:>+7.2} {:>6.2}  {}",
                c.trace,
                c.policy,
                c.ours.mean,
                c.ours.sd,
                c.published.mean,
                c.published.sd,
                c.diff,
                c.tolerance,
                if c.pass { "pass" } else { "FAIL" }
            )?;
        }
        let bad: Vec<&RankPair> = self.ranking.iter().filter(|r| !r.pass).collect();
        writeln!(
            f,
            "ranking: {} of {} pairs with a published gap > {RANK_GAP} points in the published order",
            self.ranking.len() - bad.len(),
            self.ranking.len()
        )?;
        for r in bad {
            writeln!(
                f,
                "  FAIL {}: {} should beat {} (published gap {:.2}, ours {:+.2})",
                r.trace, r.better, r.worse, r.published_gap, r.our_gap
            )?;
        }
        for (t, p) in &self.unpublished {
            writeln!(f, "  (no published runs for {t} / {p})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks() {
        let text = "workload,sc_policy,tune,seed,total_gpus,99,100\n\
            openb_pod_list_default,06-FGD,1.3,42,6212,94.0,95.0\n\
            openb_pod_list_default,06-FGD,1.3,43,6212,94.0,95.4\n\
            openb_pod_list_default,01-Random,1.3,42,6212,,86.0\n";
        let p = Published::parse("a.csv", text).unwrap();
        assert_eq!(p.runs.len(), 3);
        assert_eq!(p.values_at("default", "fgd", 100), vec![95.0, 95.4]);
        assert_eq!(p.runs[2].values[99], None);
        let ours = vec![
            ("default".to_string(), "fgd".to_string(), vec![4.9, 4.7]),
            (
                "default".to_string(),
                "random".to_string(),
                vec![13.0, 14.0],
            ),
        ];
        let fid = check(&ours, &p, 100);
        assert!(fid.cells[0].pass, "{fid}");
        assert!((fid.cells[0].diff - 0.0).abs() < 1e-9);
        assert_eq!(fid.ranking.len(), 1);
        assert!(fid.passed());
        let bad = vec![("default".to_string(), "fgd".to_string(), vec![6.0, 6.0])];
        assert!(!check(&bad, &p, 100).passed());
        assert_eq!(short_trace_name("x/openb_pod_list_cpu050.csv"), "cpu050");
    }
}
