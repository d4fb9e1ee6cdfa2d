//! `cpn link metrics`: post an observed metrics sample for a link, taking the fields not
//! given from the link's nominal spec.

use super::Ctx;
use crate::cli::LinkMetricsArgs;
use crate::client::decode;
use crate::output::{self, num};
use anyhow::{Context, Result};
use cpn_api_types::registry::{Link, LinkMetrics};

pub async fn metrics(ctx: &Ctx, args: LinkMetricsArgs) -> Result<()> {
    let value = ctx
        .client
        .get(&["api", "v1", "links", &args.link], &[])
        .await?;
    let link: Link = decode(&value, "link")?;
    let v = args.values;
    let m = LinkMetrics {
        latency_ms: v.latency_ms.unwrap_or(link.spec.latency_ms),
        bandwidth_gbps: v.bandwidth_gbps.unwrap_or(link.spec.bandwidth_gbps),
        jitter_ms: v.jitter_ms.unwrap_or(link.spec.jitter_ms),
        loss_pct: v.loss_pct.unwrap_or(link.spec.loss_pct),
    };
    let answer = ctx
        .client
        .post(&["api", "v1", "links", &link.id, "metrics"], &m)
        .await
        .with_context(|| format!("recording metrics of link `{}`", link.name))?;
    if !ctx.table() {
        // The server may answer 204; then show what was recorded.
        let shown = if answer.is_null() {
            serde_json::to_value(m)?
        } else {
            answer
        };
        return output::print_raw(ctx.output, &shown);
    }
    output::emit(&format!(
        "link/{} metrics recorded: latency {} ms, bandwidth {} Gbps, jitter {} ms, loss {}%",
        link.name,
        num(m.latency_ms),
        num(m.bandwidth_gbps),
        num(m.jitter_ms),
        num(m.loss_pct)
    ))
}
