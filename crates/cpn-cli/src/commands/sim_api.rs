//! `cpn sim run|list|status|results|cancel`: policy simulations as server jobs (SC-POL-05).
//! Reads the CSVs to upload, submits, optionally waits with progress on stderr, prints jobs
//! and per-policy results as tables, and cancels a job.

use super::Ctx;
use super::sim::{SimCmd, parse_seeds};
use crate::client::decode;
use crate::output;
use anyhow::{Context, Result, bail};
use clap::Args;
use cpn_api_types::simulation::{
    ClusterSource, Simulation, SimulationRequest, SimulationState, Workload,
};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct SimRunArgs {
    /// Policies, comma-separated: fgd, bestfit, packing, clustering, dotprod, random.
    #[arg(long, value_delimiter = ',', required = true)]
    pub policy: Vec<String>,
    /// Seeds: a range `42-51`, a list `42,45`, or both (at most 10).
    #[arg(long, default_value = "42")]
    pub seeds: String,
    /// A trace shipped with the server, by short name (default, cpu050, gpushare40, …).
    #[arg(long, value_name = "NAME", conflicts_with = "pods")]
    pub trace: Option<String>,
    /// A pod list to upload, in the openb format.
    #[arg(long, value_name = "PODS.csv")]
    pub pods: Option<PathBuf>,
    /// A node list to upload [default: the server's shipped GPU nodes].
    #[arg(long, value_name = "NODES.csv")]
    pub nodes: Option<PathBuf>,
    /// Wait until the job finishes, showing progress, then print the results.
    #[arg(long)]
    pub wait: bool,
}

pub async fn run(ctx: &Ctx, cmd: SimCmd) -> Result<()> {
    match cmd {
        SimCmd::Gpu(_) => unreachable!("`sim gpu` runs in process"),
        SimCmd::Run(args) => submit(ctx, args).await,
        SimCmd::Federation(args) => super::sim_federation::run(ctx, args).await,
        SimCmd::List => list(ctx).await,
        SimCmd::Status { id } => status(ctx, &id).await,
        SimCmd::Results { id } => results(ctx, &id).await,
        SimCmd::Cancel { id } => cancel(ctx, &id).await,
    }
}

fn read(path: &PathBuf) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))
}

async fn fetch(ctx: &Ctx, id: &str) -> Result<(Value, Simulation)> {
    let value = ctx
        .client
        .get(&["api", "v1", "simulations", id], &[])
        .await
        .with_context(|| format!("reading simulation {id}"))?;
    let sim = decode(&value, "simulation")?;
    Ok((value, sim))
}

async fn submit(ctx: &Ctx, args: SimRunArgs) -> Result<()> {
    let workload = match (&args.trace, &args.pods) {
        (_, Some(p)) => Workload::PodsCsv(read(p)?),
        (Some(t), None) => Workload::Trace(t.clone()),
        (None, None) => Workload::Trace("default".into()),
    };
    let cluster = match &args.nodes {
        Some(p) => ClusterSource::NodesCsv(read(p)?),
        None => ClusterSource::Shipped(true),
    };
    let req = SimulationRequest {
        policies: args.policy.clone(),
        seeds: parse_seeds(&args.seeds)?,
        workload,
        cluster,
    };
    let value = ctx
        .client
        .post(&["api", "v1", "simulations"], &req)
        .await
        .context("starting the simulation")?;
    let sim: Simulation = decode(&value, "simulation")?;
    if !args.wait {
        if !ctx.table() {
            return output::print_raw(ctx.output, &value);
        }
        return output::emit(&format!(
            "simulation {} queued: {} runs ({} policies × {} seeds) on {} pods, {} GPUs\n\
             follow it with `cpn sim status {}`",
            sim.id,
            sim.progress.total,
            sim.request.policies.len(),
            sim.request.seeds.len(),
            sim.request.pods,
            sim.request.gpus,
            sim.id
        ));
    }
    eprintln!(
        "simulation {}: {} runs on {} pods, {} GPUs",
        sim.id, sim.progress.total, sim.request.pods, sim.request.gpus
    );
    let mut last = usize::MAX;
    loop {
        let (value, sim) = fetch(ctx, &sim.id).await?;
        if sim.progress.done != last {
            last = sim.progress.done;
            eprintln!(
                "[{}/{}] {}",
                sim.progress.done,
                sim.progress.total,
                sim.state.as_str()
            );
        }
        if sim.state.is_final() {
            match sim.state {
                SimulationState::Failed => bail!(
                    "simulation {} failed: {}",
                    sim.id,
                    sim.error.as_deref().unwrap_or("no reason given")
                ),
                SimulationState::Cancelled => bail!(
                    "simulation {} was cancelled after {}/{} runs",
                    sim.id,
                    sim.progress.done,
                    sim.progress.total
                ),
                _ => {}
            }
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            return output::print_table(&results_table(&sim));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn status_table(sims: &[Simulation]) -> comfy_table::Table {
    let mut t = output::table(&[
        "ID", "STATE", "PROGRESS", "CREATED", "WORKLOAD", "POLICIES", "SEEDS", "ERROR",
    ]);
    for s in sims {
        t.add_row(vec![
            s.id.clone(),
            s.state.as_str().to_string(),
            format!("{}/{}", s.progress.done, s.progress.total),
            s.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            format!("{} ({} pods)", s.request.workload, s.request.pods),
            s.request.policies.join(","),
            s.request.seeds.len().to_string(),
            output::or_dash(s.error.as_deref()),
        ]);
    }
    t
}

fn results_table(sim: &Simulation) -> comfy_table::Table {
    let mut t = output::table(&["POLICY", "SEEDS", "UNALLOCATED % @100", "SD", "FRAG %"]);
    let f = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into());
    for r in sim.results.iter().flatten() {
        t.add_row(vec![
            r.policy.clone(),
            r.seeds.to_string(),
            f(r.mean_unallocated_gpu_pct_at_100),
            f(r.sd),
            f(r.mean_frag_amount_pct_at_100),
        ]);
    }
    t
}

async fn list(ctx: &Ctx) -> Result<()> {
    let value = ctx
        .client
        .get(&["api", "v1", "simulations"], &[])
        .await
        .context("listing simulations")?;
    if !ctx.table() {
        return output::print_raw(ctx.output, &value);
    }
    let sims: Vec<Simulation> = decode(&value, "simulations")?;
    output::print_table(&status_table(&sims))
}

async fn status(ctx: &Ctx, id: &str) -> Result<()> {
    let (value, sim) = fetch(ctx, id).await?;
    if !ctx.table() {
        return output::print_raw(ctx.output, &value);
    }
    output::print_table(&status_table(std::slice::from_ref(&sim)))
}

async fn results(ctx: &Ctx, id: &str) -> Result<()> {
    let (value, sim) = fetch(ctx, id).await?;
    if !ctx.table() {
        return output::print_raw(ctx.output, &value);
    }
    match sim.state {
        SimulationState::Succeeded => output::print_table(&results_table(&sim)),
        SimulationState::Failed => bail!(
            "simulation {id} failed: {}",
            sim.error.as_deref().unwrap_or("no reason given")
        ),
        SimulationState::Cancelled => bail!(
            "simulation {id} was cancelled ({}/{} runs done); it has no results",
            sim.progress.done,
            sim.progress.total
        ),
        s => bail!(
            "simulation {id} is {} ({}/{} runs done); no results yet",
            s.as_str(),
            sim.progress.done,
            sim.progress.total
        ),
    }
}

async fn cancel(ctx: &Ctx, id: &str) -> Result<()> {
    let value = ctx
        .client
        .post_empty(&["api", "v1", "simulations", id, "cancel"])
        .await
        .with_context(|| format!("cancelling simulation {id}"))?;
    if !ctx.table() {
        return output::print_raw(ctx.output, &value);
    }
    let sim: Simulation = decode(&value, "simulation")?;
    output::emit(&format!(
        "simulation {} {} after {}/{} runs",
        sim.id,
        sim.state.as_str(),
        sim.progress.done,
        sim.progress.total
    ))
}
