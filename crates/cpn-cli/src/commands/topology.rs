//! `cpn topology`: sites and links with the metrics in force now or at `--at`, as two
//! tables with site names in place of ids.

use super::Ctx;
use crate::cli::TopologyArgs;
use crate::client::decode;
use crate::output::{self, num, wire};
use anyhow::Result;
use chrono::{DateTime, SecondsFormat, Utc};
use cpn_api_types::topology::Topology;
use std::collections::HashMap;

pub async fn run(ctx: &Ctx, args: TopologyArgs) -> Result<()> {
    let mut query = Vec::new();
    if let Some(at) = args.at {
        query.push(("at", at.to_rfc3339_opts(SecondsFormat::AutoSi, true)));
    }
    let value = ctx.client.get(&["api", "v1", "topology"], &query).await?;
    if !ctx.table() {
        return output::print_raw(ctx.output, &value);
    }
    let topo: Topology = decode(&value, "topology")?;
    output::emit(&render(&topo))
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn pct(fraction: f64) -> String {
    format!("{:.0}%", fraction * 100.0)
}

fn render(topo: &Topology) -> String {
    let names: HashMap<&str, &str> = topo
        .sites
        .iter()
        .map(|s| (s.id.as_str(), s.name.as_str()))
        .collect();
    let site_name = |id: &str| names.get(id).copied().unwrap_or(id).to_owned();

    let mut sites = output::table(&["SITE", "REGION", "HEALTH", "CPU", "GPU", "METRICS AT"]);
    for s in &topo.sites {
        let (cpu, gpu) = match &s.metrics {
            Some(m) => (pct(m.cpu_util), pct(m.gpu_util)),
            None => ("-".to_owned(), "-".to_owned()),
        };
        sites.add_row(vec![
            s.name.clone(),
            s.region.clone(),
            wire(&s.health),
            cpu,
            gpu,
            s.metrics_at.as_ref().map_or_else(|| "-".to_owned(), time),
        ]);
    }

    let mut links = output::table(&[
        "LINK",
        "ENDS",
        "TYPE",
        "LATENCY",
        "BANDWIDTH",
        "JITTER",
        "LOSS",
        "METRICS AT",
    ]);
    for l in &topo.links {
        let arrow = if l.bidirectional { "<->" } else { "->" };
        links.add_row(vec![
            l.name.clone(),
            format!("{} {arrow} {}", site_name(&l.from), site_name(&l.to)),
            wire(&l.link_type),
            format!("{} ms", num(l.metrics.latency_ms)),
            format!("{} Gbps", num(l.metrics.bandwidth_gbps)),
            format!("{} ms", num(l.metrics.jitter_ms)),
            format!("{}%", num(l.metrics.loss_pct)),
            time(&l.metrics_at),
        ]);
    }

    let mut text = format!(
        "topology at {}: {} sites, {} links\n\n",
        time(&topo.at),
        topo.sites.len(),
        topo.links.len()
    );
    if !topo.sites.is_empty() {
        text.push_str(&output::render(&sites));
    }
    if !topo.links.is_empty() {
        text.push('\n');
        text.push_str(&output::render(&links));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn links_show_site_names() {
        let topo: Topology = serde_json::from_value(json!({
            "at": "2025-06-01T08:00:00Z",
            "sites": [
                {"id": "s1", "name": "beijing-1", "node_type": "compute", "region": "Beijing",
                 "location": {"lat": 39.9, "lon": 116.4}, "health": "healthy",
                 "metrics": {"cpu_util": 0.5, "gpu_util": 0.25}, "metrics_at": "2025-06-01T07:59:00Z"},
                {"id": "s2", "name": "ningxia-1", "node_type": "compute", "region": "Ningxia",
                 "location": {"lat": 38.5, "lon": 106.3}, "health": "degraded"}
            ],
            "links": [
                {"id": "l1", "name": "bj-nx", "from": "s1", "to": "s2", "link_type": "private_line",
                 "bidirectional": true,
                 "metrics": {"latency_ms": 21.5, "bandwidth_gbps": 100, "jitter_ms": 0.4, "loss_pct": 0.01},
                 "metrics_at": "2025-06-01T07:00:00Z"}
            ]
        }))
        .unwrap();
        let text = render(&topo);
        assert!(text.contains("beijing-1 <-> ningxia-1"), "{text}");
        assert!(text.contains("21.5 ms"), "{text}");
        assert!(text.contains("50%"), "{text}");
    }
}
