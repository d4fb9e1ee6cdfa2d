//! `cpn policy versions` and `cpn policy rollback`: the stored history of a scheduling
//! policy, and restoring an earlier generation's spec as a new one. The other policy verbs
//! are the generic registry ones.

use super::Ctx;
use super::registry::weights;
use crate::client::{ApiError, decode};
use crate::output;
use anyhow::{Context, Result};
use chrono::SecondsFormat;
use cpn_api_types::schedule::{Policy, PolicyVersion, Rollback};

pub async fn versions(ctx: &Ctx, name: &str) -> Result<()> {
    let value = ctx
        .client
        .get(&["api", "v1", "policies", name, "versions"], &[])
        .await
        .with_context(|| format!("reading the versions of policy `{name}`"))?;
    if !ctx.table() {
        return output::print_raw(ctx.output, &value);
    }
    let versions: Vec<PolicyVersion> = decode(&value, "policy versions")?;
    if versions.is_empty() {
        eprintln!("policy `{name}` has no stored versions");
        return Ok(());
    }
    output::print_table(&versions_table(&versions))
}

fn versions_table(versions: &[PolicyVersion]) -> comfy_table::Table {
    let mut t = output::table(&["GENERATION", "AT", "WEIGHTS"]);
    for v in versions {
        t.add_row(vec![
            v.generation.to_string(),
            v.at.to_rfc3339_opts(SecondsFormat::Secs, true),
            weights(&v.spec.weights),
        ]);
    }
    t
}

pub async fn rollback(ctx: &Ctx, name: &str, to: u64) -> Result<()> {
    let value = ctx
        .client
        .get(&["api", "v1", "policies", name], &[])
        .await?;
    let current: Policy = decode(&value, "policy")?;
    let body = Rollback {
        to_generation: to,
        generation: current.generation,
    };
    let value = match ctx
        .client
        .post(&["api", "v1", "policies", name, "rollback"], &body)
        .await
    {
        Ok(v) => v,
        Err(mut e) => {
            if let Some(api) = e
                .downcast_mut::<ApiError>()
                .filter(|api| api.code == "generation_conflict")
            {
                api.hint = Some(format!(
                    "the policy changed since generation {} was read: check \
                     `cpn policy versions {name}` and try again",
                    current.generation
                ));
            }
            return Err(e.context(format!("rolling policy `{name}` back to generation {to}")));
        }
    };
    if !ctx.table() {
        return output::print_raw(ctx.output, &value);
    }
    let policy: Policy = decode(&value, "policy")?;
    output::emit(&format!(
        "policy/{} rolled back to the spec of generation {to} (now generation {})",
        policy.name, policy.generation
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_show_generation_time_and_weights() {
        let versions: Vec<PolicyVersion> = serde_json::from_value(json!([
            {"generation": 1, "at": "2025-06-01T08:00:00Z", "spec": {}},
            {"generation": 2, "at": "2025-06-02T09:30:00Z",
             "spec": {"priority": 5, "weights": {"price": 3, "latency": 1}}}
        ]))
        .unwrap();
        let text = output::render(&versions_table(&versions));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("GENERATION"), "{text}");
        assert!(lines[1].starts_with("1 ") && lines[1].contains("2025-06-01T08:00:00Z"));
        assert!(lines[2].contains("latency=1,price=3"), "{text}");
    }
}
