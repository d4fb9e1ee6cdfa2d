//! `cpn sim federation`: the federation twin on the server. Replays a timed workload (a
//! shipped trace or an uploaded pod CSV with creation and deletion times) over the live
//! federation under one or two policies and prints their KPIs side by side, then the
//! time-averaged utilization of every site.

use super::Ctx;
use crate::client::decode;
use crate::output;
use anyhow::{Context, Result, bail};
use clap::Args;
use cpn_api_types::simulation::{
    FederationReport, FederationRequest, FederationResult, FederationSiteUse, FederationWorkload,
};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct SimFederationArgs {
    /// One or two policies, comma-separated; `default` is the built-in one.
    #[arg(long, value_delimiter = ',', default_value = "default")]
    pub policy: Vec<String>,
    /// A trace shipped with the server, by short name (default, cpu050, …) [default: default].
    #[arg(long, value_name = "NAME", conflicts_with = "pods")]
    pub trace: Option<String>,
    /// A pod list to upload, in the openb format with `creation_time` and `deletion_time`.
    #[arg(long, value_name = "PODS.csv")]
    pub pods: Option<PathBuf>,
    /// Most tasks to replay, the earliest created first (at most 20000).
    #[arg(long, default_value_t = 2000)]
    pub limit: usize,
    /// Multiplies arrival offsets and durations.
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// Seed of the scheduler's tie-breaks and the tasks' origin regions.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Replay on the live nodes the binder places on, instead of the registered capacity.
    #[arg(long)]
    pub live: bool,
}

pub async fn run(ctx: &Ctx, args: SimFederationArgs) -> Result<()> {
    if args.policy.is_empty() || args.policy.len() > 2 {
        bail!("--policy: name one or two policies");
    }
    let workload = match (&args.trace, &args.pods) {
        (_, Some(p)) => FederationWorkload {
            trace: None,
            pods_csv: Some(
                std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?,
            ),
            limit: Some(args.limit),
            time_scale: Some(args.time_scale),
            tasks: None,
        },
        (t, None) => FederationWorkload {
            trace: Some(t.clone().unwrap_or_else(|| "default".into())),
            pods_csv: None,
            limit: Some(args.limit),
            time_scale: Some(args.time_scale),
            tasks: None,
        },
    };
    let req = FederationRequest {
        policies: args.policy.clone(),
        workload,
        seed: args.seed,
        live: args.live,
        placements: false,
    };
    let value = ctx
        .client
        .post(&["api", "v1", "simulations", "federation"], &req)
        .await
        .context("replaying the workload over the federation")?;
    if !ctx.table() {
        return output::print_raw(ctx.output, &value);
    }
    let result: FederationResult = decode(&value, "federation replay")?;
    output::emit(&render(&result, args.seed))
}

fn render(result: &FederationResult, seed: u64) -> String {
    let reports = &result.reports;
    let mut text = format!(
        "federation replay of {} task{}, seed {seed}\n\n",
        result.tasks,
        if result.tasks == 1 { "" } else { "s" }
    );
    let mut header = vec!["KPI"];
    header.extend(reports.iter().map(|r| r.policy.as_str()));
    let mut kpis = output::table(&header);
    let row = |label: &str, cell: &dyn Fn(&FederationReport) -> String| {
        let mut row = vec![label.to_owned()];
        row.extend(reports.iter().map(cell));
        row
    };
    kpis.add_row(row("placed", &|r| r.placed.to_string()));
    kpis.add_row(row("dropped", &|r| r.dropped.to_string()));
    kpis.add_row(row("still waiting", &|r| r.still_waiting.to_string()));
    kpis.add_row(row("total cost (CNY)", &|r| {
        format!("{:.2}", r.total_cost_cny)
    }));
    kpis.add_row(row("energy (kWh)", &|r| format!("{:.2}", r.energy_kwh)));
    kpis.add_row(row("mean latency (ms)", &|r| {
        r.mean_latency_ms
            .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1}"))
    }));
    kpis.add_row(row("mean queueing (s)", &|r| {
        format!("{:.1}", r.mean_queueing_delay_s)
    }));
    kpis.add_row(row("p95 queueing (s)", &|r| {
        format!("{:.1}", r.p95_queueing_delay_s)
    }));
    kpis.add_row(row("makespan (s)", &|r| r.makespan_s.to_string()));
    text.push_str(&output::render(&kpis));
    text.push('\n');
    text.push_str(&output::render(&sites_table(reports)));
    text
}

/// Per site: tasks placed, then mean GPU and CPU allocated, one column per policy.
fn sites_table(reports: &[FederationReport]) -> comfy_table::Table {
    let mut sites: Vec<&str> = Vec::new();
    for r in reports {
        for s in &r.sites {
            if !sites.contains(&s.site.as_str()) {
                sites.push(&s.site);
            }
        }
    }
    let column = |measure: &str, policy: &str| {
        if reports.len() == 1 {
            measure.to_owned()
        } else {
            format!("{measure} ({policy})")
        }
    };
    let mut header = vec!["SITE".to_owned()];
    for measure in ["PLACED", "GPU %", "CPU %"] {
        header.extend(reports.iter().map(|r| column(measure, &r.policy)));
    }
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut t = output::table(&header);
    let pct = |x: f64| format!("{:.1}%", x * 100.0);
    for site in sites {
        fn of<'a>(r: &'a FederationReport, site: &str) -> Option<&'a FederationSiteUse> {
            r.sites.iter().find(|s| s.site == site)
        }
        let mut row = vec![site.to_owned()];
        row.extend(
            reports
                .iter()
                .map(|r| of(r, site).map_or_else(|| "-".into(), |s| s.placed.to_string())),
        );
        row.extend(
            reports
                .iter()
                .map(|r| of(r, site).map_or_else(|| "-".into(), |s| pct(s.gpu))),
        );
        row.extend(
            reports
                .iter()
                .map(|r| of(r, site).map_or_else(|| "-".into(), |s| pct(s.cpu))),
        );
        t.add_row(row);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(policy: &str, cost: f64) -> FederationReport {
        FederationReport {
            policy: policy.into(),
            placed: 3,
            dropped: 0,
            still_waiting: 0,
            total_cost_cny: cost,
            energy_kwh: 1.0,
            mean_latency_ms: Some(12.5),
            mean_queueing_delay_s: 4.0,
            p95_queueing_delay_s: 10.0,
            makespan_s: 100,
            sites: vec![FederationSiteUse {
                site: "bj".into(),
                gpu: 0.5,
                cpu: 0.25,
                placed: 3,
            }],
            placements: None,
        }
    }

    #[test]
    fn renders_policies_side_by_side() {
        let text = render(
            &FederationResult {
                tasks: 3,
                reports: vec![report("default", 12.0), report("green", 9.5)],
            },
            7,
        );
        assert!(text.starts_with("federation replay of 3 tasks, seed 7"));
        assert!(text.contains("12.00") && text.contains("9.50"), "{text}");
        assert!(text.contains("GPU % (green)"), "{text}");
        assert!(text.contains("50.0%"), "{text}");
    }
}
