//! `cpn flow …`: workflows (DO-FLOW) and process templates. Start a workflow from a
//! definition file, watch it, read its journal and lean report (seed 004), pause, resume
//! or cancel it; import, export and run shared process templates.

use super::{Ctx, ExitWith};
use crate::client::decode;
use crate::input;
use crate::output;
use anyhow::{Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Args, Subcommand};
use cpn_api_types::flows::{
    FlowDefinition, FlowReport, FlowState, FlowView, ProcessView, StepState,
};
use serde_json::{Value, json};
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum FlowCmd {
    /// Start a workflow from a definition file (YAML or JSON); prints its id.
    ///
    /// With --wait, waits for the end and exits 1 unless it succeeded.
    ///
    /// Examples:
    ///   cpn flow start -f deploy.yaml --input env=prod
    ///   cpn flow start -f drill.yaml --wait
    #[command(verbatim_doc_comment)]
    Start(StartArgs),
    /// List workflows, oldest first.
    #[command(visible_alias = "ls")]
    List {
        /// Only workflows in this state (running, paused, compensating, succeeded, failed,
        /// cancelled).
        #[arg(long, value_name = "STATE")]
        state: Option<String>,
    },
    /// Show one workflow: its steps with state, attempts, start and duration.
    Get {
        #[arg(value_name = "ID")]
        id: String,
    },
    /// The workflow's journal: every transition, in order.
    Journal {
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Lean metrics: per step start, end, duration, wait, and a task's queue wait apart
    /// from its run time; parallel and serial rates; the critical path.
    Report {
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Pause: no new step starts, running steps finish.
    Pause {
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Resume a paused workflow.
    Resume {
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Cancel: stop running steps; with --compensate, roll back the completed ones.
    Cancel {
        #[arg(value_name = "ID")]
        id: String,
        #[arg(long)]
        compensate: bool,
    },
    /// Import a process template (a workflow definition, YAML or JSON); prints its id.
    Import {
        #[arg(value_name = "FILE")]
        file: String,
    },
    /// Export a process template as YAML (to stdout or --out FILE).
    Export {
        #[arg(value_name = "ID")]
        id: String,
        #[arg(long = "out", value_name = "FILE")]
        out: Option<String>,
    },
    /// List process templates.
    Processes,
    /// Start a workflow from a process template; prints its id.
    RunProcess {
        #[arg(value_name = "ID")]
        id: String,
        /// An input of the process (repeatable; the value is parsed as JSON when it can be).
        #[arg(long = "input", value_name = "K=V", value_parser = super::task::parse_key_value)]
        inputs: Vec<(String, String)>,
    },
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// The definition (YAML or JSON), or `-` for stdin.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: String,
    /// An input of the workflow (repeatable; the value is parsed as JSON when it can be).
    #[arg(long = "input", value_name = "K=V", value_parser = super::task::parse_key_value)]
    pub inputs: Vec<(String, String)>,
    /// Wait until the workflow ends; exit 1 unless it succeeded.
    #[arg(long)]
    pub wait: bool,
}

fn inputs_json(inputs: &[(String, String)]) -> Value {
    Value::Object(
        inputs
            .iter()
            .map(|(k, v)| {
                let value = serde_json::from_str(v).unwrap_or_else(|_| json!(v));
                (k.clone(), value)
            })
            .collect(),
    )
}

fn read_definition(path: &str) -> Result<Value> {
    let input = input::read(path)?;
    let doc = Value::Object(input::single_object(&input)?);
    // Check the shape here for a clear message; the server checks the rest.
    serde_json::from_value::<FlowDefinition>(doc.clone())
        .with_context(|| format!("{}: not a workflow definition", input.label))?;
    Ok(doc)
}

pub async fn run(ctx: &Ctx, cmd: FlowCmd) -> Result<()> {
    match cmd {
        FlowCmd::Start(args) => {
            let definition = read_definition(&args.file)?;
            let body = json!({"definition": definition, "inputs": inputs_json(&args.inputs)});
            let value = ctx.client.post(&["api", "v1", "flows"], &body).await?;
            started(ctx, value, args.wait).await
        }
        FlowCmd::List { state } => {
            let query: Vec<(&str, String)> = state.into_iter().map(|s| ("state", s)).collect();
            let value = ctx.client.get(&["api", "v1", "flows"], &query).await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let flows: Vec<FlowView> = decode(&value, "workflows")?;
            let mut t = output::table(&["ID", "NAME", "STATE", "STEPS", "CREATED"]);
            for f in &flows {
                let done = f.steps.iter().filter(|s| s.ended_at.is_some()).count();
                t.add_row(vec![
                    f.id.clone(),
                    f.name.clone(),
                    state_name(f.state),
                    format!("{done}/{}", f.steps.len()),
                    time(Some(f.created_at)),
                ]);
            }
            output::print_table(&t)
        }
        FlowCmd::Get { id } => {
            let value = ctx.client.get(&["api", "v1", "flows", &id], &[]).await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let f: FlowView = decode(&value, "workflow")?;
            output::emit(&details(&f, Utc::now()))
        }
        FlowCmd::Journal { id } => {
            let value = ctx
                .client
                .get(&["api", "v1", "flows", &id, "journal"], &[])
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let entries: Vec<Value> = decode(&value, "journal")?;
            let mut t = output::table(&["SEQ", "AT", "TYPE", "STEP", "DETAIL"]);
            for e in &entries {
                let mut detail = e.clone();
                if let Value::Object(o) = &mut detail {
                    for k in ["seq", "at", "type", "step"] {
                        o.remove(k);
                    }
                    o.retain(|_, v| !v.is_null());
                }
                t.add_row(vec![
                    e["seq"].to_string(),
                    e["at"].as_str().unwrap_or_default().to_string(),
                    e["type"].as_str().unwrap_or_default().to_string(),
                    e["step"].as_str().unwrap_or("-").to_string(),
                    if detail.as_object().is_some_and(|o| o.is_empty()) {
                        String::new()
                    } else {
                        detail.to_string()
                    },
                ]);
            }
            output::print_table(&t)
        }
        FlowCmd::Report { id } => {
            let value = ctx
                .client
                .get(&["api", "v1", "flows", &id, "report"], &[])
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let r: FlowReport = decode(&value, "report")?;
            output::emit(&report_text(&r))
        }
        FlowCmd::Pause { id } => control(ctx, &id, "pause", json!({})).await,
        FlowCmd::Resume { id } => control(ctx, &id, "resume", json!({})).await,
        FlowCmd::Cancel { id, compensate } => {
            control(ctx, &id, "cancel", json!({"compensate": compensate})).await
        }
        FlowCmd::Import { file } => {
            let definition = read_definition(&file)?;
            let value = ctx
                .client
                .post(&["api", "v1", "processes"], &definition)
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let process: ProcessView = decode(&value, "process template")?;
            output::emit(&process.id)
        }
        FlowCmd::Export { id, out } => {
            let value = ctx
                .client
                .get(&["api", "v1", "processes", &id], &[])
                .await?;
            let process: ProcessView = decode(&value, "process template")?;
            let text = serde_yaml::to_string(&process.definition).context("formatting YAML")?;
            match out {
                Some(path) => {
                    std::fs::write(&path, text).with_context(|| format!("writing {path}"))
                }
                None => output::emit(&text),
            }
        }
        FlowCmd::Processes => {
            let value = ctx.client.get(&["api", "v1", "processes"], &[]).await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let mut t = output::table(&["ID", "NAME", "OWNER", "STEPS"]);
            for p in decode::<Vec<ProcessView>>(&value, "process templates")? {
                t.add_row(vec![
                    p.id,
                    p.name,
                    p.owner,
                    p.definition.steps.len().to_string(),
                ]);
            }
            output::print_table(&t)
        }
        FlowCmd::RunProcess { id, inputs } => {
            let body = json!({"inputs": inputs_json(&inputs)});
            let value = ctx
                .client
                .post(&["api", "v1", "processes", &id, "run"], &body)
                .await?;
            started(ctx, value, false).await
        }
    }
}

async fn control(ctx: &Ctx, id: &str, op: &str, body: Value) -> Result<()> {
    let value = ctx
        .client
        .post(&["api", "v1", "flows", id, op], &body)
        .await?;
    if !ctx.table() {
        return output::print_raw(ctx.output, &value);
    }
    let f: FlowView = decode(&value, "workflow")?;
    output::emit(&format!("{} {}", f.id, state_name(f.state)))
}

async fn started(ctx: &Ctx, value: Value, wait: bool) -> Result<()> {
    let f: FlowView = decode(&value, "workflow")?;
    if !wait {
        if !ctx.table() {
            return output::print_raw(ctx.output, &value);
        }
        return output::emit(&f.id);
    }
    let mut f = f;
    while matches!(
        f.state,
        FlowState::Running | FlowState::Paused | FlowState::Compensating
    ) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        f = decode(
            &ctx.client.get(&["api", "v1", "flows", &f.id], &[]).await?,
            "workflow",
        )?;
    }
    if ctx.table() {
        output::emit(&details(&f, Utc::now()))?;
    } else {
        output::print_raw(ctx.output, &serde_json::to_value(&f)?)?;
    }
    if f.state != FlowState::Succeeded {
        return Err(ExitWith(1).into());
    }
    Ok(())
}

fn state_name(s: FlowState) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map_or("-".into(), |t| {
        t.to_rfc3339_opts(SecondsFormat::Millis, true)
    })
}

fn details(f: &FlowView, now: DateTime<Utc>) -> String {
    let mut rows = vec![
        ("Id", f.id.clone()),
        ("Name", f.name.clone()),
        ("State", state_name(f.state)),
        ("Owner", format!("{}/{}", f.tenant, f.owner)),
        ("Created", time(Some(f.created_at))),
    ];
    if let Some(e) = &f.error {
        rows.push(("Error", e.clone()));
    }
    if let Some(p) = &f.plan {
        rows.push(("Plan", p.clone()));
    }
    let simulated = f
        .steps
        .iter()
        .filter(|s| s.state == StepState::Simulated)
        .count();
    if simulated > 0 {
        rows.push((
            "Simulated",
            format!(
                "{simulated} of {} steps (no controller behind them: nothing was done)",
                f.steps.len()
            ),
        ));
    }
    let mut text = output::fields(&rows);
    let mut t = output::table(&["STEP", "STATE", "ATTEMPTS", "START", "DURATION", "ERROR"]);
    for s in &f.steps {
        let duration = s.started_at.map(|a| {
            let b = s.ended_at.unwrap_or(now);
            format!("{:.1}s", (b - a).num_milliseconds() as f64 / 1000.0)
        });
        t.add_row(vec![
            s.id.clone(),
            serde_json::to_value(s.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            s.attempts.to_string(),
            time(s.started_at),
            duration.unwrap_or_else(|| "-".into()),
            output::or_dash(s.error.as_deref()),
        ]);
    }
    text.push_str("Steps:\n");
    text.push_str(&output::indent(&output::render(&t)));
    text
}

fn report_text(r: &FlowReport) -> String {
    let mut rows = vec![
        ("Workflow", r.id.clone()),
        ("State", state_name(r.state)),
        ("Makespan", format!("{:.2}s", r.makespan_s)),
        ("Work (run time)", format!("{:.2}s", r.work_s)),
        ("Queue wait", format!("{:.2}s", r.queue_s)),
        ("Parallel rate", format!("{:.2}", r.parallel_rate)),
        ("Serial rate", format!("{:.0}%", r.serial_rate * 100.0)),
        (
            "Critical path",
            format!(
                "{} ({:.2}s)",
                r.critical_path.join(" -> "),
                r.critical_path_s
            ),
        ),
    ];
    if !r.simulated_steps.is_empty() {
        rows.push((
            "Simulated",
            format!(
                "{} (no controller behind them: nothing was done)",
                r.simulated_steps.join(", ")
            ),
        ));
    }
    let mut text = output::fields(&rows);
    let mut t = output::table(&[
        "STEP", "STATE", "START", "END", "DURATION", "WAIT", "QUEUE", "RUN",
    ]);
    for s in &r.steps {
        t.add_row(vec![
            s.id.clone(),
            serde_json::to_value(s.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            time(s.start),
            time(s.end),
            format!("{:.2}s", s.duration_s),
            format!("{:.2}s", s.wait_s),
            format!("{:.2}s", s.queue_s),
            format!("{:.2}s", s.run_s),
        ]);
    }
    text.push_str("Steps:\n");
    text.push_str(&output::indent(&output::render(&t)));
    text
}
