//! `cpn rule`: ops orchestration rules (DO-OPS): a trigger (metric threshold, cron, event)
//! and an action (scale out / in, redeploy, isolate a node, run a task), with their firings.

use super::Ctx;
use crate::client::decode;
use crate::{input, output};
use anyhow::{Context, Result};
use clap::Subcommand;
use cpn_api_types::rules::RuleView;

#[derive(Debug, Subcommand)]
pub enum RuleCmd {
    /// List rules with their trigger, action and last firing.
    #[command(visible_alias = "ls")]
    List,
    /// Show one rule and its recent firings.
    Get {
        id: String,
    },
    /// Create a rule from a YAML or JSON file (`-` for stdin).
    #[command(after_help = "Example (scale a service out when its nodes run hot):
  cpn rule create -f - <<'YAML'
  name: web-hot
  trigger: {kind: metric, metric: cpu_util_pct, above: 90, for_s: 60, group: TASK_ID}
  action: {kind: scale_out, group: TASK_ID, by: 1, max_replicas: 5}
  cooldown_s: 300
  YAML")]
    Create {
        #[arg(short = 'f', long, value_name = "FILE")]
        file: String,
    },
    Delete {
        id: String,
    },
    Enable {
        id: String,
    },
    Disable {
        id: String,
    },
}

fn print(ctx: &Ctx, value: &serde_json::Value) -> Result<()> {
    if !ctx.table() {
        return output::print_raw(ctx.output, value);
    }
    let r: RuleView = decode(value, "rule")?;
    let mut t = output::table(&["AT", "OK", "REASON", "RESULT"]);
    for f in &r.firings {
        t.add_row(vec![
            f.at.format("%Y-%m-%d %H:%M:%S").to_string(),
            f.ok.to_string(),
            f.reason.clone(),
            f.result.clone(),
        ]);
    }
    output::emit(&format!(
        "{}\n{}\nfirings:\n{}",
        output::fields(&[
            ("id", r.id.clone()),
            ("name", r.spec.name.clone()),
            ("enabled", r.spec.enabled.to_string()),
            ("trigger", output::wire(&r.spec.trigger)),
            ("action", output::wire(&r.spec.action)),
            ("cooldown", format!("{} s", r.spec.cooldown_s)),
        ]),
        "",
        output::render(&t)
    ))
}

pub async fn rule(ctx: &Ctx, cmd: RuleCmd) -> Result<()> {
    match cmd {
        RuleCmd::List => {
            let value = ctx.client.get(&["api", "v1", "rules"], &[]).await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let rules: Vec<RuleView> = decode(&value, "rules")?;
            let mut t = output::table(&[
                "ID", "NAME", "ENABLED", "TRIGGER", "ACTION", "FIRINGS", "LAST",
            ]);
            for r in rules {
                t.add_row(vec![
                    r.id,
                    r.spec.name,
                    r.spec.enabled.to_string(),
                    output::wire(&r.spec.trigger),
                    output::wire(&r.spec.action),
                    r.firings.len().to_string(),
                    r.firings
                        .last()
                        .map(|f| f.result.clone())
                        .unwrap_or_default(),
                ]);
            }
            output::print_table(&t)
        }
        RuleCmd::Get { id } => {
            let value = ctx.client.get(&["api", "v1", "rules", &id], &[]).await?;
            print(ctx, &value)
        }
        RuleCmd::Create { file } => {
            let doc = input::single_object(&input::read(&file)?)?;
            let value = ctx
                .client
                .post(&["api", "v1", "rules"], &doc)
                .await
                .context("creating the rule")?;
            print(ctx, &value)
        }
        RuleCmd::Delete { id } => {
            ctx.client.delete(&["api", "v1", "rules", &id]).await?;
            output::emit(&format!("deleted rule {id}"))
        }
        RuleCmd::Enable { id } => {
            let value = ctx
                .client
                .post_empty(&["api", "v1", "rules", &id, "enable"])
                .await?;
            print(ctx, &value)
        }
        RuleCmd::Disable { id } => {
            let value = ctx
                .client
                .post_empty(&["api", "v1", "rules", &id, "disable"])
                .await?;
            print(ctx, &value)
        }
    }
}
