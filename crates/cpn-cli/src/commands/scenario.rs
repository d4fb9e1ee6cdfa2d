//! `cpn scenario load`: send a whole federation document to the server, reporting YAML
//! syntax errors and the server's field errors against the file.

use super::Ctx;
use crate::cli::ScenarioCmd;
use crate::client::{ApiError, decode};
use crate::input;
use crate::output;
use anyhow::{Result, anyhow};
use cpn_api_types::scenario::ScenarioReport;
use serde_json::Value;

pub async fn run(ctx: &Ctx, cmd: ScenarioCmd) -> Result<()> {
    match cmd {
        ScenarioCmd::Load { file } => load(ctx, &file).await,
    }
}

async fn load(ctx: &Ctx, file: &str) -> Result<()> {
    let input = input::read(file)?;
    let doc = input::single_object(&input)?;
    let name = doc
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)")
        .to_owned();
    let answer = ctx
        .client
        .post(&["api", "v1", "scenario"], &Value::Object(doc))
        .await
        .map_err(|e| against_file(e, &input.label))?;
    if !ctx.table() {
        return output::print_raw(ctx.output, &answer);
    }
    let report: ScenarioReport = decode(&answer, "scenario report")?;
    output::emit(&format!(
        "scenario {name} loaded from {}: {} created, {} skipped (already there)",
        input.label, report.created, report.skipped
    ))
}

/// `FILE: sites[3].spec.location.lat: message` for field errors; other errors get the
/// file name in front.
fn against_file(e: anyhow::Error, label: &str) -> anyhow::Error {
    match e.downcast_ref::<ApiError>() {
        Some(ApiError {
            field: Some(field),
            message,
            ..
        }) => anyhow!("{label}: {field}: {message}"),
        Some(_) => e.context(label.to_owned()),
        None => e,
    }
}
