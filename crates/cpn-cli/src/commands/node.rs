//! `cpn node`, `cpn alloc`, `cpn op` and `cpn site status`: the nodes agents and Slurm
//! report, their real-time state, and the south-bound operations on them (I2: isolate,
//! occupy, reclaim, allocate, adjust, release), each recorded with a trace.

use super::task::{duration, truncate};
use super::{Ctx, ExitWith};
use crate::client::decode;
use crate::output;
use anyhow::{Context, Result, bail};
use chrono::{SecondsFormat, Utc};
use clap::{Args, Subcommand};
use cpn_api_types::agent::{NodeView, SiteCapacity, SiteStatus};
use cpn_api_types::operations::{
    AllocationView, OpKind, OpOutcome, OpTarget, OperationRequest, OperationView, TargetKind,
};
use cpn_api_types::schedule::TaskResources;
use serde_json::Value;

#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// List nodes with capacity, what is held, idle rate and the latest load.
    ///
    /// Example:
    ///   cpn node list -o json
    #[command(visible_alias = "ls", verbatim_doc_comment)]
    List,
    /// Show one node: inventory, capacity, allocation and latest metrics.
    ///
    /// Example:
    ///   cpn node get local/myhost
    #[command(verbatim_doc_comment)]
    Get {
        /// Node id, name, or SITE/NAME.
        #[arg(value_name = "NODE")]
        node: String,
    },
    /// Isolate a node: nothing new is placed on it; running work continues.
    ///
    /// Example:
    ///   cpn node cordon local/myhost --reason "disk replacement"
    #[command(verbatim_doc_comment)]
    Cordon {
        /// Node id, name, or SITE/NAME.
        #[arg(value_name = "NODE")]
        node: String,
        /// Why, for the operation record.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Revoke a node's credentials: its agent is answered 401 from its next request on and
    /// must join again with a new join token.
    ///
    /// Example:
    ///   cpn node revoke edge/gpu-3
    #[command(verbatim_doc_comment)]
    Revoke {
        /// Node id, name, or SITE/NAME.
        #[arg(value_name = "NODE")]
        node: String,
    },
    /// Lift the isolation of a node.
    ///
    /// Example:
    ///   cpn node uncordon local/myhost
    #[command(verbatim_doc_comment)]
    Uncordon {
        /// Node id, name, or SITE/NAME.
        #[arg(value_name = "NODE")]
        node: String,
    },
    /// Hold a whole node for a tenant: nothing else is placed on it.
    ///
    /// Example:
    ///   cpn node occupy local/myhost --tenant research
    #[command(verbatim_doc_comment)]
    Occupy {
        /// Node id, name, or SITE/NAME.
        #[arg(value_name = "NODE")]
        node: String,
        /// Tenant to hold it for [default: the caller's].
        #[arg(long, value_name = "TENANT")]
        tenant: Option<String>,
    },
    /// Give an occupied node back.
    ///
    /// Example:
    ///   cpn node release-occupy local/myhost
    #[command(verbatim_doc_comment)]
    ReleaseOccupy {
        /// Node id, name, or SITE/NAME.
        #[arg(value_name = "NODE")]
        node: String,
    },
    /// Take a node back: stop its tasks (they are rescheduled elsewhere) and release its
    /// allocations.
    ///
    /// Example:
    ///   cpn node reclaim local/myhost --reason maintenance
    #[command(verbatim_doc_comment)]
    Reclaim {
        /// Node id, name, or SITE/NAME.
        #[arg(value_name = "NODE")]
        node: String,
        /// Why, for the operation record.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AllocCmd {
    /// Hold resources on a node outside any task; prints the allocation id.
    ///
    /// Example:
    ///   cpn alloc create local/myhost --cpu 4 --memory-gib 8 --tenant research
    #[command(verbatim_doc_comment)]
    Create {
        /// Node id, name, or SITE/NAME.
        #[arg(value_name = "NODE")]
        node: String,
        #[command(flatten)]
        resources: ResourceArgs,
        /// Tenant to hold them for [default: the caller's].
        #[arg(long, value_name = "TENANT")]
        tenant: Option<String>,
    },
    /// Change what an allocation holds; values not given keep their current ones.
    ///
    /// Example:
    ///   cpn alloc adjust ALLOC_ID --cpu 2
    #[command(verbatim_doc_comment)]
    Adjust {
        /// Allocation id.
        #[arg(value_name = "ALLOC_ID")]
        id: String,
        #[command(flatten)]
        resources: ResourceArgs,
    },
    /// Give an allocation back.
    ///
    /// Example:
    ///   cpn alloc release ALLOC_ID
    #[command(verbatim_doc_comment)]
    Release {
        /// Allocation id.
        #[arg(value_name = "ALLOC_ID")]
        id: String,
    },
    /// List allocations.
    #[command(visible_alias = "ls")]
    List,
}

/// Resources of an allocation.
#[derive(Debug, Clone, Copy, Args)]
pub struct ResourceArgs {
    /// CPU cores [create default: 1].
    #[arg(long, value_name = "N")]
    pub cpu: Option<f64>,
    /// Memory in GiB [create default: 1].
    #[arg(long, value_name = "GIB")]
    pub memory_gib: Option<f64>,
    /// Whole GPUs [create default: 0].
    #[arg(long, value_name = "N")]
    pub gpus: Option<u32>,
}

impl ResourceArgs {
    fn apply(self, r: &mut TaskResources) {
        if let Some(c) = self.cpu {
            r.cpu_cores = c;
        }
        if let Some(m) = self.memory_gib {
            r.memory_gib = m;
        }
        if let Some(g) = self.gpus {
            r.gpus = g;
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum OpCmd {
    /// List recorded operations, newest first.
    #[command(visible_alias = "ls")]
    List {
        /// At most this many.
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
    },
    /// Show one operation with the trace of its steps.
    ///
    /// Example:
    ///   cpn op get OP_ID
    #[command(verbatim_doc_comment)]
    Get {
        /// Operation id.
        #[arg(value_name = "ID")]
        id: String,
    },
}

fn node_target(node: &str) -> Option<OpTarget> {
    Some(OpTarget {
        kind: TargetKind::Node,
        name: node.to_owned(),
    })
}

fn request(op: OpKind) -> OperationRequest {
    OperationRequest {
        op,
        target: None,
        resources: None,
        allocation: None,
        tenant: None,
        enable: None,
        reason: None,
    }
}

pub async fn node(ctx: &Ctx, cmd: NodeCmd) -> Result<()> {
    let req = match cmd {
        NodeCmd::List => return list(ctx).await,
        NodeCmd::Get { node } => return get(ctx, &node).await,
        NodeCmd::Revoke { node } => return super::join::revoke_node(ctx, &node).await,
        NodeCmd::Cordon { node, reason } => OperationRequest {
            target: node_target(&node),
            enable: Some(true),
            reason,
            ..request(OpKind::Isolate)
        },
        NodeCmd::Uncordon { node } => OperationRequest {
            target: node_target(&node),
            enable: Some(false),
            ..request(OpKind::Isolate)
        },
        NodeCmd::Occupy { node, tenant } => OperationRequest {
            target: node_target(&node),
            enable: Some(true),
            tenant,
            ..request(OpKind::Occupy)
        },
        NodeCmd::ReleaseOccupy { node } => OperationRequest {
            target: node_target(&node),
            enable: Some(false),
            ..request(OpKind::Occupy)
        },
        NodeCmd::Reclaim { node, reason } => OperationRequest {
            target: node_target(&node),
            reason,
            ..request(OpKind::Reclaim)
        },
    };
    operate(ctx, &req).await
}

/// `cpn resource isolate|unisolate NAME`: cordon a compute resource of the registry.
pub async fn isolate_resource(
    ctx: &Ctx,
    name: &str,
    enable: bool,
    reason: Option<String>,
) -> Result<()> {
    let req = OperationRequest {
        target: Some(OpTarget {
            kind: TargetKind::Resource,
            name: name.to_owned(),
        }),
        enable: Some(enable),
        reason,
        ..request(OpKind::Isolate)
    };
    operate(ctx, &req).await
}

pub async fn alloc(ctx: &Ctx, cmd: AllocCmd) -> Result<()> {
    let req = match cmd {
        AllocCmd::List => return alloc_list(ctx).await,
        AllocCmd::Create {
            node,
            resources,
            tenant,
        } => {
            let mut r = TaskResources::default();
            resources.apply(&mut r);
            OperationRequest {
                target: node_target(&node),
                resources: Some(r),
                tenant,
                ..request(OpKind::Allocate)
            }
        }
        AllocCmd::Adjust { id, resources } => {
            if resources.cpu.is_none() && resources.memory_gib.is_none() && resources.gpus.is_none()
            {
                bail!("nothing to change: give --cpu, --memory-gib and/or --gpus");
            }
            let mut r = current_allocation(ctx, &id).await?.resources;
            resources.apply(&mut r);
            OperationRequest {
                allocation: Some(id),
                resources: Some(r),
                ..request(OpKind::Adjust)
            }
        }
        AllocCmd::Release { id } => OperationRequest {
            allocation: Some(id),
            ..request(OpKind::Release)
        },
    };
    operate(ctx, &req).await
}

async fn allocations(ctx: &Ctx) -> Result<(Value, Vec<AllocationView>)> {
    let value = ctx
        .client
        .get(&["api", "v1", "allocations"], &[])
        .await
        .context("listing allocations")?;
    let list = decode(&value, "allocations")?;
    Ok((value, list))
}

async fn current_allocation(ctx: &Ctx, id: &str) -> Result<AllocationView> {
    let (_, list) = allocations(ctx).await?;
    list.into_iter()
        .find(|a| a.id == id && a.released_at.is_none())
        .with_context(|| format!("no allocation `{id}` is held (see `cpn alloc list`)"))
}

/// Describes what an operation acts on, for messages.
fn target_text(op: &OperationView) -> String {
    match (&op.target, &op.allocation) {
        (Some(t), _) => format!("{}/{}", output::wire(&t.kind), t.name),
        (None, Some(a)) => format!("allocation/{a}"),
        (None, None) => "-".to_owned(),
    }
}

/// Sends one operation and reports its outcome; a failed one exits 1.
async fn operate(ctx: &Ctx, req: &OperationRequest) -> Result<()> {
    let value = ctx
        .client
        .post(&["api", "v1", "operations"], req)
        .await
        .with_context(|| format!("{} failed", req.op.as_str()))?;
    if !ctx.table() {
        output::print_raw(ctx.output, &value)?;
    }
    let op: OperationView = decode(&value, "operation")?;
    if ctx.table() {
        let mut line = format!(
            "operation {}: {} {} {}",
            op.id,
            op.op.as_str(),
            target_text(&op),
            output::wire(&op.outcome)
        );
        if !op.message.is_empty() {
            line.push_str(&format!(": {}", op.message));
        }
        output::emit(&line)?;
        if op.op == OpKind::Allocate
            && let Some(a) = &op.allocation
        {
            output::emit(&format!("allocation {a}"))?;
        }
    }
    if op.outcome == OpOutcome::Failed {
        return Err(ExitWith(1).into());
    }
    Ok(())
}

async fn alloc_list(ctx: &Ctx) -> Result<()> {
    let (value, list) = allocations(ctx).await?;
    if !ctx.table() {
        return output::print_raw(ctx.output, &value);
    }
    if list.is_empty() {
        eprintln!("no allocations");
        return Ok(());
    }
    let mut t = output::table(&[
        "ID", "NODE", "TENANT", "CPU", "MEM GiB", "GPUS", "CREATED", "RELEASED",
    ]);
    for a in &list {
        t.add_row(vec![
            a.id.clone(),
            a.node.clone(),
            a.tenant.clone(),
            output::num(a.resources.cpu_cores),
            output::num(a.resources.memory_gib),
            a.resources.gpus.to_string(),
            a.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            a.released_at.map_or("-".to_owned(), |t| {
                t.to_rfc3339_opts(SecondsFormat::Secs, true)
            }),
        ]);
    }
    output::print_table(&t)
}

pub async fn op(ctx: &Ctx, cmd: OpCmd) -> Result<()> {
    match cmd {
        OpCmd::List { limit } => {
            let query: Vec<(&str, String)> = limit
                .map(|l| ("limit", l.to_string()))
                .into_iter()
                .collect();
            let value = ctx
                .client
                .get(&["api", "v1", "operations"], &query)
                .await
                .context("listing operations")?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let ops: Vec<OperationView> = decode(&value, "operations")?;
            if ops.is_empty() {
                eprintln!("no operations");
                return Ok(());
            }
            let mut t = output::table(&["ID", "AT", "OP", "TARGET", "OUTCOME", "BY", "MESSAGE"]);
            for op in &ops {
                t.add_row(vec![
                    op.id.clone(),
                    op.at.to_rfc3339_opts(SecondsFormat::Secs, true),
                    op.op.as_str().to_owned(),
                    target_text(op),
                    output::wire(&op.outcome),
                    op.by.clone(),
                    truncate(&op.message, 60),
                ]);
            }
            output::print_table(&t)
        }
        OpCmd::Get { id } => {
            let value = ctx
                .client
                .get(&["api", "v1", "operations", &id], &[])
                .await
                .with_context(|| format!("reading operation {id}"))?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let op: OperationView = decode(&value, "operation")?;
            let mut rows = vec![
                ("ID", op.id.clone()),
                ("Operation", op.op.as_str().to_owned()),
                ("Target", target_text(&op)),
                ("Outcome", output::wire(&op.outcome)),
                ("Message", output::or_dash(Some(&op.message))),
                ("By", format!("{} (tenant {})", op.by, op.tenant)),
                ("At", op.at.to_rfc3339_opts(SecondsFormat::Millis, true)),
            ];
            if let Some(a) = &op.allocation {
                rows.push(("Allocation", a.clone()));
            }
            let mut text = output::fields(&rows);
            text.push_str("\nTrace:\n");
            let mut t = output::table(&["AT", "STEP", "DETAIL"]);
            for step in &op.trace {
                t.add_row(vec![
                    step.at.to_rfc3339_opts(SecondsFormat::Millis, true),
                    step.step.clone(),
                    step.detail.clone(),
                ]);
            }
            text.push_str(&output::indent(&output::render(&t)));
            output::emit(&text)
        }
    }
}

// ------------------------------------------------------------------------ node list/get

fn pct(x: f64) -> String {
    format!("{:.0}", x)
}

/// `held/capacity`, e.g. `2/8`.
fn held(allocated: f64, capacity: f64) -> String {
    format!("{}/{}", output::num(allocated), output::num(capacity))
}

fn node_state(n: &NodeView) -> String {
    let state = output::wire(&n.state);
    match &n.occupied_by {
        Some(t) => format!("{state} (occupied by {t})"),
        None => state,
    }
}

async fn list(ctx: &Ctx) -> Result<()> {
    let value = ctx
        .client
        .get(&["api", "v1", "nodes"], &[])
        .await
        .context("listing nodes")?;
    if !ctx.table() {
        return output::print_raw(ctx.output, &value);
    }
    let nodes: Vec<NodeView> = decode(&value, "nodes")?;
    if nodes.is_empty() {
        eprintln!("no nodes: start `cpn agent` on a machine, or `cpn serve` with its local agent");
        return Ok(());
    }
    output::print_table(&nodes_table(&nodes))
}

fn nodes_table(nodes: &[NodeView]) -> comfy_table::Table {
    let mut t = output::table(&[
        "NAME",
        "SITE",
        "EXECUTOR",
        "STATE",
        "CORDONED",
        "CPU",
        "MEM GiB",
        "GPUS",
        "IDLE %",
        "TASKS",
        "CPU %",
        "LOAD",
        "OFFER",
        "ISOLATION",
    ]);
    for n in nodes {
        let (cpu_pct, load) = match &n.metrics {
            Some(m) => (pct(m.cpu_util_pct), format!("{:.2}", m.load1)),
            None => ("-".to_owned(), "-".to_owned()),
        };
        t.add_row(vec![
            n.name.clone(),
            n.site.clone(),
            executor(n),
            node_state(n),
            output::yes_no(n.cordoned).to_owned(),
            held(n.allocated.cpu_cores, n.capacity.cpu_cores),
            held(n.allocated.memory_gib, n.capacity.memory_gib),
            held(n.allocated.gpus, n.capacity.gpus),
            pct(n.idle_rate * 100.0),
            n.tasks_active.to_string(),
            cpu_pct,
            load,
            offer(n),
            isolation(n.inventory.isolation.as_ref(), true),
        ]);
    }
    t
}

/// `agent`, `slurm`, or `agent (emulated)` for an emulated node of `cpn serve`.
fn executor(n: &NodeView) -> String {
    let e = output::wire(&n.executor);
    if n.emulated {
        format!("{e} (emulated)")
    } else {
        e
    }
}

/// The compute resource a node fulfils, or `unregistered`.
fn offer(n: &NodeView) -> String {
    match (&n.offer, &n.unregistered) {
        (Some(o), _) => o.clone(),
        (None, Some(_)) => "unregistered".to_owned(),
        (None, None) => "-".to_owned(),
    }
}

/// What the node's agent enforces, in full (`node get`): `uid per tenant, cgroup v1
/// (memory, cpu, pids), GPUs enforced`; or short (`node list`): `uid, v1, gpus enforced`.
fn isolation(iso: Option<&cpn_api_types::agent::NodeIsolation>, short: bool) -> String {
    let Some(iso) = iso else {
        return "-".to_owned();
    };
    let who = match (iso.uid_switch, iso.single_user, short) {
        (true, _, false) => "uid per tenant",
        (true, _, true) => "uid",
        (false, true, false) => "single user",
        (false, true, true) => "single",
        (false, false, false) => "own tenant only",
        (false, false, true) => "own",
    };
    let limits = match (iso.cgroups, short) {
        (m, true) => m.as_str().to_owned(),
        (cpn_api_types::agent::CgroupMode::None, false) => "no cgroups".to_owned(),
        (m, false) => format!("cgroup {} ({})", m.as_str(), iso.controllers.join(", ")),
    };
    let gpus = if short { "gpus" } else { "GPUs" };
    format!("{who}, {limits}, {gpus} {}", iso.gpus.as_str())
}

async fn get(ctx: &Ctx, node: &str) -> Result<()> {
    let value = ctx
        .client
        .get(&["api", "v1", "nodes", node], &[])
        .await
        .with_context(|| format!("reading node {node}"))?;
    if !ctx.table() {
        return output::print_raw(ctx.output, &value);
    }
    let n: NodeView = decode(&value, "node")?;
    let inv = &n.inventory;
    let ago = n.last_heartbeat.map_or("-".to_owned(), |t| {
        format!(
            "{} ({} ago)",
            t.to_rfc3339_opts(SecondsFormat::Secs, true),
            duration((Utc::now() - t).num_milliseconds() as f64 / 1000.0)
        )
    });
    let mut rows = vec![
        ("ID", n.id.clone()),
        ("Name", n.name.clone()),
        ("Site", n.site.clone()),
        ("Executor", executor(&n)),
        ("State", node_state(&n)),
        ("Cordoned", output::yes_no(n.cordoned).to_owned()),
        ("Labels", output::labels(&n.labels)),
        (
            "Host",
            format!("{} ({} {}, {})", inv.hostname, inv.os, inv.kernel, inv.arch),
        ),
        ("CPU model", output::or_dash(Some(&inv.cpu_model))),
        (
            "Offer",
            match (&n.offer, &n.unregistered) {
                (Some(o), _) => o.clone(),
                (None, Some(why)) => format!("unregistered: {why}"),
                (None, None) => "-".to_owned(),
            },
        ),
        ("Isolation", isolation(inv.isolation.as_ref(), false)),
        (
            "CPU held",
            held(n.allocated.cpu_cores, n.capacity.cpu_cores),
        ),
        (
            "Memory held GiB",
            held(n.allocated.memory_gib, n.capacity.memory_gib),
        ),
        ("GPUs held", held(n.allocated.gpus, n.capacity.gpus)),
        ("Idle", format!("{}%", pct(n.idle_rate * 100.0))),
        ("Active tasks", n.tasks_active.to_string()),
        ("Last heartbeat", ago),
        (
            "Registered",
            n.registered_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        ),
    ];
    if n.emulated {
        rows.insert(
            4,
            (
                "Emulated",
                "yes: a demo offer scaled down by cpn serve; its tasks run on the server's \
                 machine, its GPUs exist by index only (CUDA_VISIBLE_DEVICES, no device), \
                 its metrics are not measured"
                    .to_owned(),
            ),
        );
    }
    let mut text = output::fields(&rows);
    if let Some(m) = &n.metrics {
        text.push_str("\nMetrics:\n");
        let mut mrows = vec![
            ("At", m.at.to_rfc3339_opts(SecondsFormat::Secs, true)),
            ("CPU", format!("{}%", pct(m.cpu_util_pct))),
            (
                "Memory",
                format!("{} MiB ({}%)", m.memory_used_mib, pct(m.memory_util_pct)),
            ),
            (
                "Load",
                format!("{:.2} {:.2} {:.2}", m.load1, m.load5, m.load15),
            ),
            (
                "Disk",
                format!(
                    "read {} IOPS {} B/s, write {} IOPS {} B/s",
                    pct(m.disk_read_iops),
                    pct(m.disk_read_bytes_per_s),
                    pct(m.disk_write_iops),
                    pct(m.disk_write_bytes_per_s)
                ),
            ),
            (
                "Network",
                format!(
                    "rx {} B/s, tx {} B/s",
                    pct(m.net_rx_bytes_per_s),
                    pct(m.net_tx_bytes_per_s)
                ),
            ),
        ];
        if let Some(w) = m.power_watts {
            mrows.push(("Power", format!("{} W", output::num(w))));
        }
        text.push_str(&output::indent(&output::fields(&mrows)));
        if !m.gpus.is_empty() {
            let mut t = output::table(&["GPU", "UTIL %", "MEM MiB", "TEMP C", "POWER W"]);
            for g in &m.gpus {
                t.add_row(vec![
                    g.index.to_string(),
                    pct(g.util_pct),
                    format!("{}/{}", g.memory_used_mib, g.memory_total_mib),
                    g.temperature_c.map_or("-".into(), output::num),
                    g.power_watts.map_or("-".into(), output::num),
                ]);
            }
            text.push('\n');
            text.push_str(&output::indent(&output::render(&t)));
        }
    }
    output::emit(&text)
}

// --------------------------------------------------------------------------- site status

pub async fn site_status(ctx: &Ctx, site: &str) -> Result<()> {
    let value = ctx
        .client
        .get(&["api", "v1", "sites", site, "status"], &[])
        .await
        .with_context(|| format!("reading the status of site {site}"))?;
    if !ctx.table() {
        return output::print_raw(ctx.output, &value);
    }
    let s: SiteStatus = decode(&value, "site status")?;
    let mut rows = vec![
        ("Site", s.site.clone()),
        ("Region", s.region.clone()),
        (
            "Location",
            format!(
                "{}, {}",
                output::num(s.location.lat),
                output::num(s.location.lon)
            ),
        ),
        ("Nodes ready", format!("{}/{}", s.nodes_ready, s.nodes)),
        (
            "CPU held",
            held(s.allocated.cpu_cores, s.capacity.cpu_cores),
        ),
        (
            "Memory held GiB",
            held(s.allocated.memory_gib, s.capacity.memory_gib),
        ),
        ("GPUs held", held(s.allocated.gpus, s.capacity.gpus)),
        ("Idle", format!("{}%", pct(s.idle_rate * 100.0))),
        ("CPU", format!("{}%", pct(s.cpu_util_pct))),
        ("Load", format!("{:.2}", s.load1)),
        ("Tasks active", s.tasks_active.to_string()),
        ("Tasks pending", s.tasks_pending.to_string()),
    ];
    if let Some(w) = s.power_watts {
        rows.push(("Power", format!("{} W", output::num(w))));
    }
    rows.insert(3, ("Health", health(&s.health, s.health_reason.as_deref())));
    output::emit(&output::fields(&rows))
}

/// `down (none of its 2 node(s) answers …)`.
fn health(h: &cpn_api_types::registry::SiteHealth, why: Option<&str>) -> String {
    match why {
        Some(w) => format!("{} ({w})", output::wire(h)),
        None => output::wire(h),
    }
}

// --------------------------------------------------------------------------- site capacity

pub async fn site_capacity(ctx: &Ctx, site: Option<&str>) -> Result<()> {
    let query: Vec<(&str, String)> = site.map(|s| ("site", s.to_string())).into_iter().collect();
    let value = ctx
        .client
        .get(&["api", "v1", "capacity"], &query)
        .await
        .context("reading capacity")?;
    if !ctx.table() {
        return output::print_raw(ctx.output, &value);
    }
    let sites: Vec<SiteCapacity> = decode(&value, "capacity")?;
    let mut t = output::table(&[
        "SITE",
        "HEALTH",
        "TARGET",
        "OFFER",
        "CHIP",
        "MODEL",
        "UNIT",
        "REGISTERED",
        "LIVE",
        "ALLOCATED",
        "FREE",
        "NODES",
        "PRICE",
    ]);
    let mut unregistered = output::table(&["SITE", "NODE", "READY", "CPU", "GPUS", "REASON"]);
    let mut notes = Vec::new();
    for s in &sites {
        let target = if s.binder_target {
            "live"
        } else {
            "planning only"
        };
        if let Some(why) = &s.health_reason {
            notes.push(format!("{}: {} ({why})", s.site, output::wire(&s.health)));
        }
        if s.offers.is_empty() {
            t.add_row(vec![
                s.site.clone(),
                output::wire(&s.health),
                target.to_owned(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                format!("{}/{}", s.nodes_ready, s.nodes),
                "-".into(),
            ]);
        }
        for o in &s.offers {
            let mut name = o.resource.clone();
            if o.isolated {
                name.push_str(" (isolated)");
            }
            let mut nodes = o.nodes_live.to_string();
            if o.nodes_emulated > 0 {
                nodes.push_str(&format!(" ({} emulated)", o.nodes_emulated));
            }
            if o.nodes_lost > 0 {
                nodes.push_str(&format!(" (+{} lost)", o.nodes_lost));
            }
            // An offer no live machine fulfils is a planning target only, whatever the site.
            let target = if s.binder_target && o.live > 0.0 {
                "live"
            } else {
                "planning only"
            };
            t.add_row(vec![
                s.site.clone(),
                output::wire(&s.health),
                target.to_owned(),
                name,
                output::wire(&o.chip_type),
                o.model.clone(),
                o.unit.as_str().to_owned(),
                output::num(o.registered),
                output::num(o.live),
                output::num(o.allocated),
                output::num(o.free),
                nodes,
                output::num(o.unit_price),
            ]);
        }
        for u in &s.unregistered {
            unregistered.add_row(vec![
                s.site.clone(),
                u.node.clone(),
                output::yes_no(u.ready).to_owned(),
                output::num(u.capacity.cpu_cores),
                output::num(u.capacity.gpus),
                u.reason.clone(),
            ]);
        }
    }
    let mut text = output::render(&t);
    let emulated: u32 = sites.iter().map(|s| s.nodes_emulated).sum();
    if emulated > 0 {
        text.push_str(&format!(
            "\n\n{emulated} emulated node(s): demo offers scaled down by cpn serve; their tasks \
             run on the server's machine, their GPUs exist by index only."
        ));
    }
    if !notes.is_empty() {
        text.push_str("\n\nHealth:\n");
        text.push_str(&output::indent(&notes.join("\n")));
    }
    if sites.iter().any(|s| !s.unregistered.is_empty()) {
        text.push_str(
            "\n\nUnregistered capacity (unknown price, performance and energy: placed as the \
             mean of the sites that know theirs):\n",
        );
        text.push_str(&output::indent(&output::render(&unregistered)));
    }
    output::emit(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cordon_sends_an_isolate_of_the_node() {
        let req = OperationRequest {
            target: node_target("local/h"),
            enable: Some(false),
            ..request(OpKind::Isolate)
        };
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            serde_json::json!({"op": "isolate", "target": {"kind": "node", "name": "local/h"},
                               "enable": false})
        );
    }

    #[test]
    fn isolation_names_the_gpu_enforcement_in_full_and_short() {
        use cpn_api_types::agent::{CgroupMode, Enforcement, NodeIsolation};
        let iso = NodeIsolation {
            uid_switch: true,
            cgroups: CgroupMode::V1,
            controllers: vec!["memory".into(), "cpu".into()],
            single_user: false,
            gpus: Enforcement::Enforced,
        };
        assert_eq!(
            isolation(Some(&iso), false),
            "uid per tenant, cgroup v1 (memory, cpu), GPUs enforced"
        );
        assert_eq!(isolation(Some(&iso), true), "uid, v1, gpus enforced");
        let own = NodeIsolation {
            uid_switch: false,
            cgroups: CgroupMode::None,
            gpus: Enforcement::Simulated,
            ..iso
        };
        assert_eq!(
            isolation(Some(&own), false),
            "own tenant only, no cgroups, GPUs simulated"
        );
        assert_eq!(isolation(Some(&own), true), "own, none, gpus simulated");
        assert_eq!(isolation(None, true), "-");
    }

    #[test]
    fn adjust_keeps_values_not_given() {
        let mut r = TaskResources {
            cpu_cores: 4.0,
            memory_gib: 8.0,
            gpus: 1,
            ..TaskResources::default()
        };
        ResourceArgs {
            cpu: Some(2.0),
            memory_gib: None,
            gpus: None,
        }
        .apply(&mut r);
        assert_eq!((r.cpu_cores, r.memory_gib, r.gpus), (2.0, 8.0, 1));
    }
}
