//! `cpn plan …`: a plan's details, confirmation, its instruction set (view, edit, delete
//! before execution) and execution as a workflow (SC-PROV-04..06).

use super::Ctx;
use crate::output;
use anyhow::Result;
use clap::Subcommand;
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
            let v = c.get(&["api", "v1", "plans", &id], &[]).await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &v);
            }
            super::template::plans_table(std::slice::from_ref(&v))?;
            let mut t = output::table(&["NODE", "REPLICA", "SITE", "HOST", "COST/H"]);
            for p in v["placements"].as_array().into_iter().flatten() {
                t.add_row(vec![
                    p["node"].as_str().unwrap_or("").to_string(),
                    p["replica"].to_string(),
                    p["site"].as_str().unwrap_or("-").to_string(),
                    p["host"].as_str().unwrap_or("-").to_string(),
                    format!("{:.2}", p["cost_per_hour"].as_f64().unwrap_or(0.0)),
                ]);
            }
            output::emit("\n")?;
            output::print_table(&t)?;
            let mut text = String::from("\nState: ");
            text.push_str(v["state"].as_str().unwrap_or(""));
            text.push_str(&format!("   Version: {}\n", v["version"]));
            if let Some(f) = v["flow_id"].as_str() {
                text.push_str(&format!("Workflow: {f}\n"));
            }
            let ex = &v["execution"];
            if let Some(summary) = ex["summary"].as_str() {
                text.push_str(&format!("Execution: {summary}\n"));
                for (label, key) in [
                    ("ran", "succeeded"),
                    ("simulated", "simulated"),
                    ("failed", "failed"),
                ] {
                    let ids: Vec<&str> = ex[key]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    if !ids.is_empty() {
                        text.push_str(&format!("  {label}: {}\n", ids.join(", ")));
                    }
                }
                if let Some(e) = ex["error"].as_str() {
                    text.push_str(&format!("  error: {e}\n"));
                }
            }
            for d in ["compute", "network", "application", "cost", "business"] {
                for line in v["feasibility"][d]["detail"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    text.push_str(&format!("{d}: {}\n", line.as_str().unwrap_or("")));
                }
            }
            output::emit(&text)
        }
        PlanCmd::Confirm { id } => {
            let v = c
                .post_empty(&["api", "v1", "plans", &id, "confirm"])
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &v);
            }
            output::emit(&format!(
                "plan {id} confirmed (version {}): {} instructions\n",
                v["version"],
                v["instructions"].as_array().map_or(0, Vec::len)
            ))
        }
        PlanCmd::Instructions { id } => {
            let v = c
                .get(&["api", "v1", "plans", &id, "instructions"], &[])
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &v);
            }
            instructions_table(&v)
        }
        PlanCmd::EditInstruction {
            id,
            instruction,
            if_version: version,
            description,
            depends_on,
            command,
        } => {
            let mut body = json!({"version": version});
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            if let Some(d) = depends_on {
                let list: Vec<&str> = d.split(',').filter(|s| !s.is_empty()).collect();
                body["depends_on"] = json!(list);
            }
            if let Some(cmd) = command {
                let current = c
                    .get(&["api", "v1", "plans", &id, "instructions"], &[])
                    .await?;
                let mut params = current
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|i| i["id"] == instruction.as_str())
                    .map(|i| i["params"].clone())
                    .unwrap_or(json!({}));
                params["command"] = json!(["sh", "-c", cmd]);
                body["params"] = params;
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
            let v = c
                .post_empty(&["api", "v1", "plans", &id, "execute"])
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &v);
            }
            output::emit(&format!(
                "plan {id} executing as workflow {} (cpn flow get {})\n",
                v["id"].as_str().unwrap_or(""),
                v["id"].as_str().unwrap_or("")
            ))
        }
    }
}

fn instructions_table(v: &Value) -> Result<()> {
    let mut t = output::table(&["#", "ID", "KIND", "RUNS AS", "NODE", "SITE", "DEPENDS ON"]);
    for (n, i) in v.as_array().into_iter().flatten().enumerate() {
        let deps: Vec<&str> = i["depends_on"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        t.add_row(vec![
            (n + 1).to_string(),
            i["id"].as_str().unwrap_or("").to_string(),
            i["kind"].as_str().unwrap_or("").to_string(),
            // Only deploy_app has a real controller (a task); the rest are simulated.
            if i["kind"] == "deploy_app" {
                "task"
            } else {
                "simulated"
            }
            .to_string(),
            i["node"].as_str().unwrap_or("").to_string(),
            i["site"].as_str().unwrap_or("-").to_string(),
            deps.join(","),
        ]);
    }
    output::print_table(&t)
}
