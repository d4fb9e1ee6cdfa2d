//! `cpn template …`: the template marketplace (DO-TPL, DO-RES) and plans made from a
//! template, compared side by side (SC-PROV-01..03). `validate` checks a file locally
//! with the same validator the server runs, printing every error with its path.

use super::{Ctx, ExitWith};
use crate::client::decode;
use crate::input;
use crate::output;
use anyhow::Result;
use clap::Subcommand;
use cpn_api_types::design::{
    Dimension, PlanRequest, PlanView, Recommendation, TemplateCreate, TemplateRollback,
    TemplateUpdate, TemplateVersionView, TemplateView,
};
use serde_json::Value;

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

fn list_table(items: &[TemplateView]) -> Result<()> {
    let mut t = output::table(&["ID", "NAME", "STATE", "VERSION", "CATEGORY", "TAGS", "USED"]);
    for v in items {
        t.add_row(vec![
            v.id.clone(),
            v.name.clone(),
            v.state.clone(),
            v.version.to_string(),
            v.category.clone(),
            v.tags.join(","),
            v.usage_count.to_string(),
        ]);
    }
    output::print_table(&t)
}

fn show(ctx: &Ctx, value: &Value) -> Result<()> {
    if !ctx.table() {
        return output::print_raw(ctx.output, value);
    }
    let v: TemplateView = decode(value, "template")?;
    let text = output::fields(&[
        ("ID", v.id),
        ("Name", v.name),
        ("State", v.state),
        ("Version", v.version.to_string()),
        ("Category", v.category),
        ("Usage", v.usage_count.to_string()),
    ]);
    output::emit(&format!("{text}\n{}", v.source))
}

/// Prints plans side by side: the comparison table of SC-PROV-03.
pub fn plans_table(plans: &[PlanView]) -> Result<()> {
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
    let ok = |d: &Dimension| if d.ok { "ok" } else { "NO" }.to_string();
    for p in plans {
        let f = &p.feasibility;
        t.add_row(vec![
            p.id.clone(),
            p.objective.clone(),
            format!("{:.2}", p.cost_per_hour),
            format!("{:.2}", p.total_cost),
            p.max_latency_ms.map_or("-".into(), |l| format!("{l:.1}")),
            format!("{:.2}", p.power_kw),
            format!("{:.0}", p.green_score),
            ok(&f.compute),
            ok(&f.network),
            ok(&f.application),
            ok(&f.cost),
            ok(&f.business),
            if p.recommended { "★" } else { "" }.to_string(),
        ]);
    }
    output::print_table(&t)?;
    if let Some(best) = plans.iter().find(|p| p.recommended) {
        output::emit(&format!(
            "\n★ {} ({}): {}\n",
            best.id,
            best.objective,
            best.reasons.join("; ")
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
            list_table(&decode::<Vec<TemplateView>>(&v, "templates")?)
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
            let body = TemplateCreate {
                name,
                category,
                tags,
                description,
                source: src.text,
            };
            let v = c.post(&["api", "v1", "templates"], &body).await?;
            show(ctx, &v)
        }
        TemplateCmd::Update {
            id,
            file,
            if_version: version,
        } => {
            let src = input::read(&file)?;
            let body = TemplateUpdate {
                version,
                name: None,
                category: None,
                tags: None,
                description: None,
                source: Some(src.text),
            };
            let v = c.put(&["api", "v1", "templates", &id], &body).await?;
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
            for x in decode::<Vec<TemplateVersionView>>(&v, "template versions")? {
                t.add_row(vec![x.version.to_string(), output::wire(&x.at), x.state]);
            }
            output::print_table(&t)
        }
        TemplateCmd::Rollback {
            id,
            to_version,
            if_version: version,
        } => {
            let body = TemplateRollback {
                to_version,
                version,
            };
            let v = c
                .post(&["api", "v1", "templates", &id, "rollback"], &body)
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
            for r in decode::<Vec<Recommendation>>(&v, "recommendations")? {
                t.add_row(vec![
                    r.template.id,
                    r.template.name,
                    // As the server wrote it (3.0 stays 3.0).
                    output::wire(&r.score),
                    r.reasons.join("; "),
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
            let mut body = PlanRequest::default();
            for (k, v) in inputs {
                // Numbers and booleans as such; the server also coerces strings.
                let val = serde_json::from_str::<Value>(&v)
                    .ok()
                    .filter(|x| !x.is_object() && !x.is_array())
                    .unwrap_or(Value::String(v));
                body.inputs.insert(k, val);
            }
            let v = c
                .post(&["api", "v1", "templates", &id, "plans"], &body)
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &v);
            }
            plans_table(&decode::<Vec<PlanView>>(&v, "plans")?)
        }
    }
}
