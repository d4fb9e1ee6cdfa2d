//! `cpn template …`: the template marketplace (DO-TPL, DO-RES) and plans made from a
//! template, compared side by side (SC-PROV-01..03). `validate` checks a file locally
//! with the same validator the server runs, printing every error with its path.

use super::{Ctx, ExitWith};
use crate::input;
use crate::output;
use anyhow::{Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};

#[derive(Debug, Subcommand)]
pub enum TemplateCmd {
    /// List the templates you may see (published ones and your tenant's).
    #[command(visible_alias = "ls")]
    List,
    /// Show one template with its YAML.
    Get { id: String },
    /// Create a draft template from a YAML file.
    ///
    /// Example:
    ///   cpn template create -f train.yaml --name my-train --category ai-training --tag gpu
    #[command(verbatim_doc_comment)]
    Create {
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value = "")]
        category: String,
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Replace a template's YAML (a new version); --if-version is the one you read.
    Update {
        id: String,
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: String,
        /// The version you read (`cpn template get`); a newer stored one refuses the update.
        #[arg(long = "if-version", value_name = "N")]
        if_version: u64,
    },
    /// Delete a template.
    Delete { id: String },
    /// Every version of a template.
    Versions { id: String },
    /// Make a new version with the content of an older one.
    Rollback {
        id: String,
        #[arg(long = "to")]
        to_version: u64,
        /// The version you read; a newer stored one refuses the rollback.
        #[arg(long = "if-version", value_name = "N")]
        if_version: u64,
    },
    /// Publish (operators and suppliers).
    Publish { id: String },
    /// Take offline (operators and suppliers).
    Withdraw { id: String },
    /// Published templates ranked for you, with the reasons.
    Recommended,
    /// Check a template file locally; prints every error with its path.
    Validate {
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: String,
    },
    /// Make plans from a template and compare them.
    ///
    /// Example:
    ///   cpn template plans base-gpu-training-cluster --input workers=4 --input hours=12
    #[command(verbatim_doc_comment)]
    Plans {
        id: String,
        #[arg(long = "input", value_name = "NAME=VALUE", value_parser = super::task::parse_key_value)]
        inputs: Vec<(String, String)>,
    },
}

fn list_table(items: &[Value]) -> Result<()> {
    let mut t = output::table(&["ID", "NAME", "STATE", "VERSION", "CATEGORY", "TAGS", "USED"]);
    for v in items {
        let tags: Vec<&str> = v["tags"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        t.add_row(vec![
            v["id"].as_str().unwrap_or("").to_string(),
            v["name"].as_str().unwrap_or("").to_string(),
            v["state"].as_str().unwrap_or("").to_string(),
            v["version"].to_string(),
            v["category"].as_str().unwrap_or("").to_string(),
            tags.join(","),
            v["usage_count"].to_string(),
        ]);
    }
    output::print_table(&t)
}

fn show(ctx: &Ctx, v: &Value) -> Result<()> {
    if !ctx.table() {
        return output::print_raw(ctx.output, v);
    }
    let text = output::fields(&[
        ("ID", v["id"].as_str().unwrap_or("").to_string()),
        ("Name", v["name"].as_str().unwrap_or("").to_string()),
        ("State", v["state"].as_str().unwrap_or("").to_string()),
        ("Version", v["version"].to_string()),
        ("Category", v["category"].as_str().unwrap_or("").to_string()),
        ("Usage", v["usage_count"].to_string()),
    ]);
    output::emit(&format!(
        "{text}\n{}",
        v["source"].as_str().unwrap_or_default()
    ))
}

/// Prints plans side by side: the comparison table of SC-PROV-03.
pub fn plans_table(plans: &[Value]) -> Result<()> {
    let mut t = output::table(&[
        "PLAN",
        "OBJECTIVE",
        "COST/H",
        "TOTAL",
        "MAX LAT ms",
        "kW",
        "GREEN",
        "COMP",
        "NET",
        "APP",
        "COST",
        "BIZ",
        "REC",
    ]);
    let ok = |p: &Value, d: &str| {
        if p["feasibility"][d]["ok"].as_bool() == Some(true) {
            "ok"
        } else {
            "NO"
        }
        .to_string()
    };
    for p in plans {
        t.add_row(vec![
            p["id"].as_str().unwrap_or("").to_string(),
            p["objective"].as_str().unwrap_or("").to_string(),
            format!("{:.2}", p["cost_per_hour"].as_f64().unwrap_or(0.0)),
            format!("{:.2}", p["total_cost"].as_f64().unwrap_or(0.0)),
            p["max_latency_ms"]
                .as_f64()
                .map_or("-".into(), |l| format!("{l:.1}")),
            format!("{:.2}", p["power_kw"].as_f64().unwrap_or(0.0)),
            format!("{:.0}", p["green_score"].as_f64().unwrap_or(0.0)),
            ok(p, "compute"),
            ok(p, "network"),
            ok(p, "application"),
            ok(p, "cost"),
            ok(p, "business"),
            if p["recommended"] == true { "★" } else { "" }.to_string(),
        ]);
    }
    output::print_table(&t)?;
    if let Some(best) = plans.iter().find(|p| p["recommended"] == true) {
        let reasons: Vec<&str> = best["reasons"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        output::emit(&format!(
            "\n★ {} ({}): {}\n",
            best["id"].as_str().unwrap_or(""),
            best["objective"].as_str().unwrap_or(""),
            reasons.join("; ")
        ))?;
    }
    Ok(())
}

pub async fn run(ctx: &Ctx, cmd: TemplateCmd) -> Result<()> {
    let c = &ctx.client;
    match cmd {
        TemplateCmd::List => {
            let v = c.get(&["api", "v1", "templates"], &[]).await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &v);
            }
            list_table(v.as_array().map(Vec::as_slice).unwrap_or_default())
        }
        TemplateCmd::Get { id } => show(ctx, &c.get(&["api", "v1", "templates", &id], &[]).await?),
        TemplateCmd::Create {
            file,
            name,
            category,
            tags,
            description,
        } => {
            let src = input::read(&file)?;
            let name = name.unwrap_or_else(|| {
                std::path::Path::new(&file)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "template".into())
            });
            let v = c
                .post(
                    &["api", "v1", "templates"],
                    &json!({"name": name, "category": category, "tags": tags,
                            "description": description, "source": src.text}),
                )
                .await?;
            show(ctx, &v)
        }
        TemplateCmd::Update {
            id,
            file,
            if_version: version,
        } => {
            let src = input::read(&file)?;
            let v = c
                .put(
                    &["api", "v1", "templates", &id],
                    &json!({"version": version, "source": src.text}),
                )
                .await?;
            show(ctx, &v)
        }
        TemplateCmd::Delete { id } => {
            c.delete(&["api", "v1", "templates", &id]).await?;
            output::emit(&format!("deleted template {id}\n"))
        }
        TemplateCmd::Versions { id } => {
            let v = c
                .get(&["api", "v1", "templates", &id, "versions"], &[])
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &v);
            }
            let mut t = output::table(&["VERSION", "AT", "STATE"]);
            for x in v.as_array().into_iter().flatten() {
                t.add_row(vec![
                    x["version"].to_string(),
                    x["at"].as_str().unwrap_or("").to_string(),
                    x["state"].as_str().unwrap_or("").to_string(),
                ]);
            }
            output::print_table(&t)
        }
        TemplateCmd::Rollback {
            id,
            to_version,
            if_version: version,
        } => {
            let v = c
                .post(
                    &["api", "v1", "templates", &id, "rollback"],
                    &json!({"to_version": to_version, "version": version}),
                )
                .await?;
            show(ctx, &v)
        }
        TemplateCmd::Publish { id } => {
            let v = c
                .post_empty(&["api", "v1", "templates", &id, "publish"])
                .await?;
            show(ctx, &v)
        }
        TemplateCmd::Withdraw { id } => {
            let v = c
                .post_empty(&["api", "v1", "templates", &id, "withdraw"])
                .await?;
            show(ctx, &v)
        }
        TemplateCmd::Recommended => {
            let v = c
                .get(&["api", "v1", "templates", "recommended"], &[])
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &v);
            }
            let mut t = output::table(&["ID", "NAME", "SCORE", "REASONS"]);
            for r in v.as_array().into_iter().flatten() {
                let reasons: Vec<&str> = r["reasons"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                t.add_row(vec![
                    r["template"]["id"].as_str().unwrap_or("").to_string(),
                    r["template"]["name"].as_str().unwrap_or("").to_string(),
                    r["score"].to_string(),
                    reasons.join("; "),
                ]);
            }
            output::print_table(&t)
        }
        TemplateCmd::Validate { file } => {
            let src = input::read(&file)?;
            match cpn_template::check(&src.text) {
                Ok(_) => output::emit(&format!("{}: valid\n", src.label)),
                Err(issues) => {
                    for i in &issues {
                        eprintln!("{}: {i}", src.label);
                    }
                    eprintln!("{} error(s)", issues.len());
                    Err(ExitWith(1).into())
                }
            }
        }
        TemplateCmd::Plans { id, inputs } => {
            let mut map = serde_json::Map::new();
            for (k, v) in inputs {
                // Numbers and booleans as such; the server also coerces strings.
                let val = serde_json::from_str::<Value>(&v)
                    .ok()
                    .filter(|x| !x.is_object() && !x.is_array())
                    .unwrap_or(Value::String(v));
                map.insert(k, val);
            }
            let v = c
                .post(
                    &["api", "v1", "templates", &id, "plans"],
                    &json!({"inputs": map}),
                )
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &v);
            }
            let Some(plans) = v.as_array() else {
                bail!("unexpected answer: {v}");
            };
            plans_table(plans)
        }
    }
}
