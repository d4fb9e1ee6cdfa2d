//! Reading the Alibaba GPU trace v2023 ("openb") CSVs into scheduler types: the node list
//! becomes one site of GPU nodes, the pod list becomes tasks. Takes the text (or any
//! `BufRead`) so the core does no file I/O; every malformed row is rejected as
//! `file:line: column: reason` with a typed [`Problem`].

use cpn_sched::task::Chip;
use cpn_sched::{Cluster, ClusterBuilder, Demand, NodeSpec, SiteSpec, Task};
use std::collections::HashSet;
use std::fmt;
use std::io::BufRead;

/// The tenant every trace task belongs to.
pub const TENANT: &str = "trace";
/// The name of the single site holding every trace node.
pub const SITE: &str = "openb";

/// What is wrong with a row or the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The file has no header row.
    Empty,
    /// The header lacks a required column.
    MissingColumn(&'static str),
    /// The row has a different number of fields than the header.
    FieldCount { expected: usize, found: usize },
    /// A field is not a non-negative integer.
    NotANumber { column: &'static str, value: String },
    /// A field is well-formed but out of range or inconsistent with another.
    Invalid {
        column: &'static str,
        reason: String,
    },
    /// A name seen on an earlier line.
    Duplicate { column: &'static str, value: String },
    /// The underlying reader failed.
    Io(String),
}

impl Problem {
    /// The column the problem is in, when it is about one.
    pub fn column(&self) -> Option<&'static str> {
        match self {
            Problem::MissingColumn(c)
            | Problem::NotANumber { column: c, .. }
            | Problem::Invalid { column: c, .. }
            | Problem::Duplicate { column: c, .. } => Some(c),
            _ => None,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Empty => f.write_str("no header row"),
            Problem::MissingColumn(c) => write!(f, "header has no column `{c}`"),
            Problem::FieldCount { expected, found } => {
                write!(f, "{found} fields, the header has {expected}")
            }
            Problem::NotANumber { column, value } => {
                write!(
                    f,
                    "column `{column}`: {value:?} is not a non-negative integer"
                )
            }
            Problem::Invalid { column, reason } => write!(f, "column `{column}`: {reason}"),
            Problem::Duplicate { column, value } => {
                write!(f, "column `{column}`: {value:?} already appeared")
            }
            Problem::Io(e) => write!(f, "read error: {e}"),
        }
    }
}

/// A rejected trace file, pointing at the line (1-based, the header is line 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceError {
    pub file: String,
    pub line: usize,
    pub problem: Problem,
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.problem)
    }
}

impl std::error::Error for TraceError {}

/// One row of a node list (`sn,cpu_milli,memory_mib,gpu,model`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    pub name: String,
    pub cpu_milli: u64,
    pub memory_mib: u64,
    pub gpus: u32,
    /// GPU model; empty for CPU-only nodes.
    pub model: String,
}

/// One row of a pod list. QoS and phase are not read; the timestamps are optional (the
/// benchmark ignores them, the federation twin replays them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRow {
    pub name: String,
    pub cpu_milli: u64,
    pub memory_mib: u64,
    pub num_gpu: u32,
    /// Per GPU, 0 for CPU-only pods, 1..=1000 otherwise.
    pub gpu_milli: u32,
    /// Allowed GPU models (deduplicated, in file order); empty accepts any.
    pub gpu_spec: Vec<String>,
    /// `creation_time`, seconds; `None` when the column is absent or the field empty.
    pub creation_time: Option<u64>,
    /// `deletion_time`, seconds; `None` when the column is absent or the field empty.
    pub deletion_time: Option<u64>,
}

impl PodRow {
    /// GPU demand in milli-GPU: `num_gpu × gpu_milli`.
    pub fn gpu_demand(&self) -> u64 {
        self.num_gpu as u64 * self.gpu_milli as u64
    }

    /// The scheduler's task for this pod.
    pub fn to_task(&self) -> Task {
        Task {
            id: self.name.clone(),
            tenant: TENANT.to_string(),
            demand: Demand {
                cpu_milli: self.cpu_milli,
                memory_mib: self.memory_mib,
                gpus: self.num_gpu,
                gpu_milli: self.gpu_milli,
                storage_gib: 0,
            },
            models: self.gpu_spec.clone(),
            ..Default::default()
        }
    }
}

/// A CSV with a header, split on commas (the trace files use no quoting).
struct Table<'a> {
    file: &'a str,
    columns: Vec<String>,
}

impl<'a> Table<'a> {
    fn err(&self, line: usize, problem: Problem) -> TraceError {
        TraceError {
            file: self.file.to_string(),
            line,
            problem,
        }
    }

    fn index(&self, name: &'static str) -> Result<usize, TraceError> {
        self.columns
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| self.err(1, Problem::MissingColumn(name)))
    }

    fn optional(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }
}

/// Calls `f(table, None)` once for the header, then `f(table, Some((line number, fields)))`
/// for every non-empty data line.
fn read_csv<R: BufRead>(
    file: &str,
    reader: R,
    mut f: impl FnMut(&Table, Option<(usize, &[&str])>) -> Result<(), TraceError>,
) -> Result<(), TraceError> {
    let mut table: Option<Table> = None;
    for (i, line) in reader.lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(|e| TraceError {
            file: file.to_string(),
            line: n,
            problem: Problem::Io(e.to_string()),
        })?;
        let line = line.strip_suffix('\r').unwrap_or(&line);
        match &table {
            None => {
                let t = Table {
                    file,
                    columns: line.split(',').map(|c| c.trim().to_string()).collect(),
                };
                f(&t, None)?;
                table = Some(t);
            }
            Some(t) => {
                if line.trim().is_empty() {
                    continue;
                }
                let fields: Vec<&str> = line.split(',').map(str::trim).collect();
                if fields.len() != t.columns.len() {
                    return Err(t.err(
                        n,
                        Problem::FieldCount {
                            expected: t.columns.len(),
                            found: fields.len(),
                        },
                    ));
                }
                f(t, Some((n, &fields)))?;
            }
        }
    }
    if table.is_none() {
        return Err(TraceError {
            file: file.to_string(),
            line: 1,
            problem: Problem::Empty,
        });
    }
    Ok(())
}

fn number<T: std::str::FromStr>(
    t: &Table,
    line: usize,
    column: &'static str,
    value: &str,
) -> Result<T, TraceError> {
    value.parse().map_err(|_| {
        t.err(
            line,
            Problem::NotANumber {
                column,
                value: value.to_string(),
            },
        )
    })
}

fn name_field(
    t: &Table,
    line: usize,
    column: &'static str,
    value: &str,
    seen: &mut HashSet<String>,
) -> Result<String, TraceError> {
    if value.is_empty() {
        return Err(t.err(
            line,
            Problem::Invalid {
                column,
                reason: "empty name".into(),
            },
        ));
    }
    if !seen.insert(value.to_string()) {
        return Err(t.err(
            line,
            Problem::Duplicate {
                column,
                value: value.to_string(),
            },
        ));
    }
    Ok(value.to_string())
}

/// Reads a node list. `file` names it in errors.
pub fn read_nodes<R: BufRead>(file: &str, reader: R) -> Result<Vec<NodeRow>, TraceError> {
    let mut cols = [0usize; 5];
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    read_csv(file, reader, |t, row| {
        let Some((n, f)) = row else {
            cols = [
                t.index("sn")?,
                t.index("cpu_milli")?,
                t.index("memory_mib")?,
                t.index("gpu")?,
                t.index("model")?,
            ];
            return Ok(());
        };
        {
            let name = name_field(t, n, "sn", f[cols[0]], &mut seen)?;
            let cpu_milli = number(t, n, "cpu_milli", f[cols[1]])?;
            let memory_mib = number(t, n, "memory_mib", f[cols[2]])?;
            let gpus: u32 = number(t, n, "gpu", f[cols[3]])?;
            let model = f[cols[4]].to_string();
            if gpus > 0 && (model.is_empty() || model == "nan") {
                return Err(t.err(
                    n,
                    Problem::Invalid {
                        column: "model",
                        reason: format!("a node with {gpus} GPUs needs a GPU model"),
                    },
                ));
            }
            out.push(NodeRow {
                name,
                cpu_milli,
                memory_mib,
                gpus,
                model: if gpus == 0 { String::new() } else { model },
            });
            Ok(())
        }
    })?;
    Ok(out)
}

/// Reads a pod list. The `gpu_spec` column is optional (the multigpu files lack it).
pub fn read_pods<R: BufRead>(file: &str, reader: R) -> Result<Vec<PodRow>, TraceError> {
    let mut cols = [0usize; 5];
    let mut spec_col = None;
    let mut time_cols = (None, None);
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    read_csv(file, reader, |t, row| {
        let Some((n, f)) = row else {
            cols = [
                t.index("name")?,
                t.index("cpu_milli")?,
                t.index("memory_mib")?,
                t.index("num_gpu")?,
                t.index("gpu_milli")?,
            ];
            spec_col = t.optional("gpu_spec");
            time_cols = (t.optional("creation_time"), t.optional("deletion_time"));
            return Ok(());
        };
        {
            let name = name_field(t, n, "name", f[cols[0]], &mut seen)?;
            let cpu_milli = number(t, n, "cpu_milli", f[cols[1]])?;
            let memory_mib = number(t, n, "memory_mib", f[cols[2]])?;
            let num_gpu: u32 = number(t, n, "num_gpu", f[cols[3]])?;
            let gpu_milli: u32 = number(t, n, "gpu_milli", f[cols[4]])?;
            let invalid = |reason: String| {
                t.err(
                    n,
                    Problem::Invalid {
                        column: "gpu_milli",
                        reason,
                    },
                )
            };
            if num_gpu == 0 && gpu_milli != 0 {
                return Err(invalid(format!(
                    "{gpu_milli} milli-GPU asked with num_gpu 0"
                )));
            }
            if num_gpu > 0 && !(1..=1000).contains(&gpu_milli) {
                return Err(invalid(format!(
                    "{gpu_milli} is outside 1..=1000 milli per GPU"
                )));
            }
            let mut gpu_spec: Vec<String> = Vec::new();
            if let Some(c) = spec_col {
                for m in f[c].split('|').map(str::trim).filter(|m| !m.is_empty()) {
                    if !gpu_spec.iter().any(|s| s == m) {
                        gpu_spec.push(m.to_string());
                    }
                }
            }
            let time = |col: Option<usize>, column: &'static str| match col {
                Some(c) if !f[c].is_empty() => number(t, n, column, f[c]).map(Some),
                _ => Ok(None),
            };
            let creation_time = time(time_cols.0, "creation_time")?;
            let deletion_time = time(time_cols.1, "deletion_time")?;
            out.push(PodRow {
                name,
                cpu_milli,
                memory_mib,
                num_gpu,
                gpu_milli,
                gpu_spec,
                creation_time,
                deletion_time,
            });
            Ok(())
        }
    })?;
    Ok(out)
}

/// [`read_nodes`] over text in memory.
pub fn parse_nodes(file: &str, text: &str) -> Result<Vec<NodeRow>, TraceError> {
    read_nodes(file, text.as_bytes())
}

/// [`read_pods`] over text in memory.
pub fn parse_pods(file: &str, text: &str) -> Result<Vec<PodRow>, TraceError> {
    read_pods(file, text.as_bytes())
}

/// The node spec of a trace node, in site 0.
pub fn node_spec(row: &NodeRow) -> NodeSpec {
    NodeSpec {
        name: row.name.clone(),
        site: 0,
        healthy: true,
        cpu_milli: row.cpu_milli,
        memory_mib: row.memory_mib,
        chip: Some(if row.gpus > 0 { Chip::Gpu } else { Chip::Cpu }),
        model: row.model.clone(),
        gpus: row.gpus,
        ..Default::default()
    }
}

/// One site ([`SITE`]) holding every node, in file order, all empty.
pub fn build_cluster(nodes: &[NodeRow]) -> Cluster {
    let mut b = ClusterBuilder::new();
    let site = b.site(SiteSpec {
        name: SITE.to_string(),
        region: SITE.to_string(),
        healthy: true,
        pue: 1.0,
        ..Default::default()
    });
    debug_assert_eq!(site, 0);
    for n in nodes {
        b.node(node_spec(n));
    }
    b.build().expect("one site with nodes in it always builds")
}

/// Total GPU capacity of the nodes in milli-GPU.
pub fn gpu_capacity_milli(nodes: &[NodeRow]) -> u64 {
    nodes.iter().map(|n| n.gpus as u64 * 1000).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rows_and_builds_one_site() {
        let nodes = parse_nodes(
            "n.csv",
            "sn,cpu_milli,memory_mib,gpu,model\na,32000,1024,2,T4\nb,8000,512,0,\n",
        )
        .unwrap();
        assert_eq!(nodes[0].gpus, 2);
        assert_eq!(nodes[1].model, "");
        let c = build_cluster(&nodes);
        assert_eq!(c.sites.len(), 1);
        assert_eq!(c.nodes.len(), 2);
        assert_eq!(c.node(0).gpu_free, vec![1000, 1000]);
        assert_eq!(gpu_capacity_milli(&nodes), 2000);
        let pods = parse_pods(
            "p.csv",
            "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\np1,1000,10,1,500,T4|P100|T4\np2,2000,0,0,0,\n",
        )
        .unwrap();
        assert_eq!(pods[0].gpu_spec, vec!["T4", "P100"]);
        let t = pods[0].to_task();
        assert_eq!(t.demand.gpu_milli_total(), 500);
        assert_eq!(t.tenant, TENANT);
        assert_eq!(pods[1].gpu_demand(), 0);
    }
}
