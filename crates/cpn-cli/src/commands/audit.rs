//! `cpn audit`: the audit log (operators), newest first, with filters.

use super::Ctx;
use crate::client::decode;
use crate::output::{self, or_dash};
use anyhow::Result;
use chrono::SecondsFormat;
use cpn_api_types::Page;
use cpn_api_types::identity::AuditEntry;

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Only this user's actions (for failed logins: the name as typed).
    #[arg(long, value_name = "USER")]
    pub actor: Option<String>,
    /// An action (`sites.update`) or every action under a prefix ending in `.` (`auth.`).
    #[arg(long, value_name = "ACTION")]
    pub action: Option<String>,
    /// Object kind, e.g. `sites`, `users`.
    #[arg(long, value_name = "KIND")]
    pub kind: Option<String>,
    /// Object id or name as in the request path.
    #[arg(long, value_name = "ID")]
    pub object: Option<String>,
    /// success, denied, rejected, error, failure, locked or busy.
    #[arg(long, value_name = "RESULT")]
    pub result: Option<String>,
    /// At or after this RFC 3339 time, e.g. 2026-01-02T03:04:05Z.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Before this RFC 3339 time.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Lines to show, newest first.
    #[arg(long, default_value_t = 50, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// Older lines: the cursor printed under the previous page.
    #[arg(long, value_name = "CURSOR")]
    pub cursor: Option<String>,
}

pub async fn run(ctx: &Ctx, args: AuditArgs) -> Result<()> {
    let mut query: Vec<(&str, String)> = vec![("limit", args.limit.to_string())];
    for (key, value) in [
        ("actor", args.actor),
        ("action", args.action),
        ("kind", args.kind),
        ("object", args.object),
        ("result", args.result),
        ("since", args.since),
        ("until", args.until),
        ("cursor", args.cursor),
    ] {
        if let Some(v) = value {
            query.push((key, v));
        }
    }
    let value = ctx.client.get(&["api", "v1", "audit"], &query).await?;
    if !ctx.table() {
        return output::print_raw(ctx.output, &value);
    }
    let page: Page<AuditEntry> = decode(&value, "audit page")?;
    let mut t = output::table(&[
        "TIME", "ACTOR", "SOURCE", "ACTION", "OBJECT", "GEN", "RESULT", "DETAIL",
    ]);
    for e in page.items {
        let generation = match (e.generation_before, e.generation_after) {
            (None, None) => "-".to_string(),
            (b, a) => format!(
                "{}→{}",
                b.map(|g| g.to_string()).unwrap_or_default(),
                a.map(|g| g.to_string()).unwrap_or_default()
            ),
        };
        t.add_row(vec![
            e.at.to_rfc3339_opts(SecondsFormat::Secs, true),
            e.actor,
            e.source,
            e.action,
            or_dash(Some(&e.object_id)),
            generation,
            format!("{} {}", e.result, e.status),
            or_dash(Some(&e.detail)),
        ]);
    }
    output::print_table(&t)?;
    if let Some(c) = page.next_cursor {
        output::emit(&format!("older: cpn audit --cursor {c}"))?;
    }
    Ok(())
}
