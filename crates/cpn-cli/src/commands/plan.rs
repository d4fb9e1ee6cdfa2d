//! `cpn plan …`: a plan's details, confirmation, its instruction set (view, edit, delete
//! before execution) and execution as a workflow (SC-PROV-04..06).

use super::Ctx;
use crate::client::decode;
use crate::output;
use anyhow::Result;
use clap::Subcommand;
use cpn_api_types::design::{Instruction, InstructionEdit, PlanView};
use cpn_api_types::flows::FlowView;
use serde_json::{Value, json};

#[derive(Debug, Subcommand)]
pub enum PlanCmd {
    /// Show a plan: placements, the five feasibility dimensions, cost and reasons; once
    /// executed, how its workflow ended (which steps ran for real, which were simulated).
    Get { id: String },
    /// Confirm a proposed plan; compiles its instruction set.
    Confirm { id: String },
    /// The instruction set of a confirmed plan, in order.
    Instructions { id: String },
    /// Change one instruction before execution.
    ///
    /// Example:
    ///   cpn plan edit-instruction PLAN deploy-trainer-1 --if-version 2 --command "sh -c 'echo hi'"
    #[command(verbatim_doc_comment)]
    EditInstruction {
        id: String,
        instruction: String,
        /// The plan version you read (from `cpn plan get`).
        #[arg(long = "if-version", value_name = "N")]
        if_version: u64,
        #[arg(long)]
        description: Option<String>,
        /// Dependencies, comma-separated (empty: none).
        #[arg(long)]
        depends_on: Option<String>,
        /// New argv of a deploy_app instruction, split on whitespace by `sh -c` rules: give
        /// it as one string run through `sh -c`.
        #[arg(long)]
        command: Option<String>,
    },
    /// Delete one instruction before execution.
    DeleteInstruction { id: String, instruction: String },
    /// Execute a confirmed plan as a workflow (refused if the inventory changed).
    Execute { id: String },
}

pub async fn run(ctx: &Ctx, cmd: PlanCmd) -> Result<()> {
    let c = &ctx.client;
    match cmd {
        PlanCmd::Get { id } => {
            let value = c.get(&["api", "v1", "plans", &id], &[]).await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let v: PlanView = decode(&value, "plan")?;
            super::template::plans_table(std::slice::from_ref(&v))?;
            let mut t = output::table(&["NODE", "REPLICA", "SITE", "HOST", "COST/H"]);
            for p in &v.placements {
                t.add_row(vec![
                    p.node.clone(),
                    p.replica.to_string(),
                    p.site.clone().unwrap_or_else(|| "-".into()),
                    p.host.clone().unwrap_or_else(|| "-".into()),
                    format!("{:.2}", p.cost_per_hour),
                ]);
            }
            output::emit("\n")?;
            output::print_table(&t)?;
            let mut text = format!("\nState: {}   Version: {}\n", v.state, v.version);
            if let Some(f) = &v.flow_id {
                text.push_str(&format!("Workflow: {f}\n"));
            }
            if let Some(ex) = &v.execution {
                text.push_str(&format!("Execution: {}\n", ex.summary));
                for (label, ids) in [
                    ("ran", &ex.succeeded),
                    ("simulated", &ex.simulated),
                    ("failed", &ex.failed),
                ] {
                    if !ids.is_empty() {
                        text.push_str(&format!("  {label}: {}\n", ids.join(", ")));
                    }
                }
                if let Some(e) = &ex.error {
                    text.push_str(&format!("  error: {e}\n"));
                }
            }
            let f = &v.feasibility;
            for (d, dim) in [
                ("compute", &f.compute),
                ("network", &f.network),
                ("application", &f.application),
                ("cost", &f.cost),
                ("business", &f.business),
            ] {
                for line in &dim.detail {
                    text.push_str(&format!("{d}: {line}\n"));
                }
            }
            output::emit(&text)
        }
        PlanCmd::Confirm { id } => {
            let value = c
                .post_empty(&["api", "v1", "plans", &id, "confirm"])
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let v: PlanView = decode(&value, "plan")?;
            output::emit(&format!(
                "plan {id} confirmed (version {}): {} instructions\n",
                v.version,
                v.instructions.len()
            ))
        }
        PlanCmd::Instructions { id } => {
            let v = c
                .get(&["api", "v1", "plans", &id, "instructions"], &[])
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &v);
            }
            instructions_table(&decode::<Vec<Instruction>>(&v, "instructions")?)
        }
        PlanCmd::EditInstruction {
            id,
            instruction,
            if_version: version,
            description,
            depends_on,
            command,
        } => {
            let mut body = InstructionEdit {
                version,
                description,
                depends_on: depends_on.map(|d| {
                    d.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                }),
                params: None,
            };
            if let Some(cmd) = command {
                let current: Vec<Instruction> = decode(
                    &c.get(&["api", "v1", "plans", &id, "instructions"], &[])
                        .await?,
                    "instructions",
                )?;
                // Params replace the instruction's whole params: keep the others.
                let mut params = current
                    .into_iter()
                    .find(|i| i.id == instruction)
                    .map(|i| i.params)
                    .filter(Value::is_object)
                    .unwrap_or_else(|| json!({}));
                params["command"] = json!(["sh", "-c", cmd]);
                body.params = Some(params);
            }
            let v = c
                .put(
                    &["api", "v1", "plans", &id, "instructions", &instruction],
                    &body,
                )
                .await?;
            output::print_raw(
                if ctx.table() {
                    crate::cli::OutputFormat::Yaml
                } else {
                    ctx.output
                },
                &v,
            )
        }
        PlanCmd::DeleteInstruction { id, instruction } => {
            c.delete(&["api", "v1", "plans", &id, "instructions", &instruction])
                .await?;
            output::emit(&format!("deleted instruction {instruction}\n"))
        }
        PlanCmd::Execute { id } => {
            let value = c
                .post_empty(&["api", "v1", "plans", &id, "execute"])
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let flow: FlowView = decode(&value, "workflow")?;
            output::emit(&format!(
                "plan {id} executing as workflow {} (cpn flow get {})\n",
                flow.id, flow.id
            ))
        }
    }
}

fn instructions_table(instructions: &[Instruction]) -> Result<()> {
    let mut t = output::table(&["#", "ID", "KIND", "RUNS AS", "NODE", "SITE", "DEPENDS ON"]);
    for (n, i) in instructions.iter().enumerate() {
        t.add_row(vec![
            (n + 1).to_string(),
            i.id.clone(),
            i.kind.clone(),
            // Only deploy_app has a real controller (a task); the rest are simulated.
            if i.kind == "deploy_app" {
                "task"
            } else {
                "simulated"
            }
            .to_string(),
            i.node.clone(),
            i.site.clone().unwrap_or_else(|| "-".into()),
            i.depends_on.join(","),
        ]);
    }
    output::print_table(&t)
}
