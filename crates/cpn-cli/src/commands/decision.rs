//! `cpn decision`: real scheduling decisions (`POST /api/v1/schedule`). A decision places
//! one task on a live node and holds that capacity in the federation's one ledger, so the
//! binder places nothing else there, until it is released or its hold time ends.

use super::Ctx;
use crate::client::decode;
use crate::input;
use crate::output;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use cpn_api_types::schedule::DecisionRecordView;
use serde_json::Value;

#[derive(Debug, Subcommand)]
pub enum DecisionCmd {
    /// Place one task for real and hold its capacity: a YAML or JSON task spec (as for
    /// `cpn explain`). Prints the decision with its explanation.
    ///
    /// Examples:
    ///   cpn decision place -f task.yaml
    ///   cpn decision place -f task.yaml --hold-s 3600 --policy green
    #[command(verbatim_doc_comment)]
    Place(PlaceArgs),
    /// Decisions of your tenant (every tenant's for operators), oldest first.
    #[command(visible_alias = "ls")]
    List {
        /// Only those still holding capacity.
        #[arg(long)]
        active: bool,
    },
    /// One decision with its explanation.
    Get {
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Give a decision's capacity back; waiting tasks may take it at once.
    Release {
        #[arg(value_name = "ID")]
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct PlaceArgs {
    /// The task: a YAML or JSON file holding one task spec, or `-` for stdin.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: String,
    /// Place it under this policy instead of the one the task's attributes select.
    #[arg(long, value_name = "NAME")]
    pub policy: Option<String>,
    /// Hold the capacity this many seconds, then let it go by itself [default: until
    /// released].
    #[arg(long, value_name = "SECONDS")]
    pub hold_s: Option<u64>,
}

pub async fn run(ctx: &Ctx, cmd: DecisionCmd) -> Result<()> {
    match cmd {
        DecisionCmd::Place(args) => {
            let input = input::read(&args.file)?;
            let mut req = super::schedule::explain_request(&input)?;
            if args.policy.is_some() {
                req.policy = args.policy;
            }
            req.hold_s = args.hold_s;
            let value = ctx
                .client
                .post(&["api", "v1", "schedule"], &req)
                .await
                .context("placing the task")?;
            show(ctx, value)
        }
        DecisionCmd::List { active } => {
            let query = if active {
                vec![("active", "true".to_string())]
            } else {
                Vec::new()
            };
            let value = ctx
                .client
                .get(&["api", "v1", "decisions"], &query)
                .await
                .context("listing decisions")?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let page: cpn_api_types::Page<DecisionRecordView> = decode(&value, "decisions")?;
            let list = page.items;
            let mut t = output::table(&[
                "ID", "TASK", "TENANT", "SITE", "NODE", "HOLDS", "CREATED", "UNTIL",
            ]);
            for d in &list {
                t.add_row(vec![
                    d.id.clone(),
                    d.task.clone(),
                    d.tenant.clone(),
                    d.site.clone(),
                    d.node.clone(),
                    holds(d),
                    d.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                    until(d),
                ]);
            }
            output::emit(&output::render(&t))
        }
        DecisionCmd::Get { id } => {
            let value = ctx
                .client
                .get(&["api", "v1", "decisions", &id], &[])
                .await
                .with_context(|| format!("reading decision {id}"))?;
            show(ctx, value)
        }
        DecisionCmd::Release { id } => {
            let value = ctx
                .client
                .post(&["api", "v1", "decisions", &id, "release"], &())
                .await
                .with_context(|| format!("releasing decision {id}"))?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            output::emit(&format!("decision {id} released\n"))
        }
    }
}

fn holds(d: &DecisionRecordView) -> String {
    let r = &d.resources;
    let mut s = format!("{} CPU, {} GiB", r.cpu_cores, r.memory_gib);
    if r.gpus > 0 {
        s.push_str(&format!(", {} GPU", r.gpus));
    }
    s
}

fn until(d: &DecisionRecordView) -> String {
    match (d.released_at, d.expires_at) {
        (Some(r), _) => format!("released {}", r.format("%Y-%m-%d %H:%M:%S")),
        (None, Some(e)) => e.format("%Y-%m-%d %H:%M:%S").to_string(),
        (None, None) => "until released".into(),
    }
}

fn show(ctx: &Ctx, value: Value) -> Result<()> {
    if !ctx.table() {
        return output::print_raw(ctx.output, &value);
    }
    let d: DecisionRecordView = decode(&value, "decision")?;
    let mut text = format!(
        "decision {} holds {} on {}/{} for tenant {} ({})\n\n",
        d.id,
        holds(&d),
        d.site,
        d.node,
        d.tenant,
        until(&d)
    );
    let explanation = cpn_api_types::schedule::Explanation {
        task: d.task.clone(),
        policy: d.policy.clone(),
        decision: d.decision.clone(),
        planning_only: None,
        decided_at: Some(d.created_at),
    };
    text.push_str(&super::schedule::render_explanation(&explanation));
    output::emit(&text)
}
