//! Monitoring and evaluation of class B leases (issue #14, SH-CL-18, -20, -21, -22, -27),
//! a child of `market` (it works on the market under the same lock).
//!
//! **Sampling**: every metering run, and just before a release, each active class B lease
//! gets one sample of its nodes (`cpn_market::evaluation`): the node record's ready flag
//! and, if the agent's last heartbeat is within [`answer_window`], its report's CPU and
//! per-GPU utilisation. The core keeps a bounded summary per lease, stored with it; when
//! the lease ends the core evaluates it, the listing's reliability follows, and the cards
//! are idle again — all in the write that ends the lease.
//!
//! **Live view** ([`lease_monitoring`]): the agent's latest report of each node of the
//! lease (CPU, memory, load, network traffic, power; per card utilisation, memory,
//! temperature, power, voltage where reported, absent otherwise) and the latest
//! measurements of the site's links (latency, loss, bandwidth) from the topology. For the
//! lessee, the supplier and operators; everyone else gets 404, as for the lease.

use super::{ensure, me, now, parse_cpcid, time, visible};
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::Control;
use cpn_api_types::Code;
use cpn_api_types::agent::NodeMetrics;
use cpn_api_types::market as wire;
use cpn_api_types::registry::{LinkMetrics, LinkSpec};
use cpn_market::evaluation::Evaluation;
use cpn_market::{
    AccountId, ClusterClass, Lease, LeaseId, LeaseState, Market, NodeReport, NodeSample,
};
use cpn_model::Kind;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// How recent an agent's last heartbeat must be for its node to count as answering: three
/// heartbeat intervals, the grace the runtime gives a running attempt's report.
pub(crate) fn answer_window(state: &Control) -> Duration {
    state.runtime.config.heartbeat_interval * 3
}

/// Per mille of a percentage, for the core's integer sums.
fn per_mille(pct: f64) -> u16 {
    if pct.is_finite() {
        (pct.clamp(0.0, 100.0) * 10.0).round() as u16
    } else {
        0
    }
}

/// The latest report of each node that answered within the window, by node id.
fn fresh_reports(state: &Control, node_ids: &[&str]) -> HashMap<String, NodeMetrics> {
    let window = answer_window(state);
    let live = state
        .runtime
        .live
        .lock()
        .expect("live-node lock is never poisoned");
    node_ids
        .iter()
        .filter_map(|id| {
            let l = live.get(*id)?;
            let m = l.metrics.as_ref()?;
            (l.last_heartbeat.elapsed() <= window).then(|| (id.to_string(), m.clone()))
        })
        .collect()
}

/// One sample of each active class B lease's nodes (`only`: of that lease alone, if it is
/// `user`'s), added to the leases' monitoring. Called under the market lock, after the
/// catalog was brought in step with the nodes.
pub(super) fn observe(
    state: &Control,
    market: &mut Market,
    nodes: &[cpn_store::NodeRecord],
    only: Option<(LeaseId, AccountId)>,
) {
    let leases: Vec<LeaseId> = market
        .leases()
        .filter(|l| {
            l.class == ClusterClass::B
                && matches!(l.state, LeaseState::Active { .. })
                && only.is_none_or(|(id, user)| l.id == id && l.user == user)
        })
        .map(|l| l.id)
        .collect();
    if leases.is_empty() {
        return;
    }
    let ids: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
    let reports = fresh_reports(state, &ids);
    for id in leases {
        let Some(lease) = market.lease(id) else {
            continue;
        };
        let site = site_of(market, lease);
        let samples: Vec<NodeSample> = super::lease_nodes(market, lease)
            .into_keys()
            .filter_map(|name| {
                let rec = nodes.iter().find(|n| n.site == site && n.name == name)?;
                let report = reports.get(&rec.id).map(|m| NodeReport {
                    cpu_util: per_mille(m.cpu_util_pct),
                    // An agent without GPU metrics sends none: the inventory decides then.
                    gpus: (!m.gpus.is_empty()).then(|| {
                        m.gpus
                            .iter()
                            .map(|g| (g.index, per_mille(g.util_pct)))
                            .collect()
                    }),
                });
                Some(NodeSample {
                    node: name,
                    ready: rec.ready,
                    report,
                })
            })
            .collect();
        if let Err(e) = market.observe(id, &samples) {
            tracing::warn!(lease = id.0, error = %e, "monitoring sample refused");
        }
    }
}

fn site_of(market: &Market, lease: &Lease) -> String {
    market
        .catalog()
        .listing(lease.listing)
        .map(|l| l.spec().site.clone())
        .unwrap_or_default()
}

pub(super) fn view(e: &Evaluation) -> wire::EvaluationView {
    wire::EvaluationView {
        lease: e.lease.0,
        listing: e.listing.to_string(),
        evaluated_at: time(e.at),
        samples: e.samples,
        availability: e.availability,
        cpu_util: e.cpu_util,
        gpu_util: e.gpu_util,
        drop_offs: e.drop_offs,
        node_losses: e.node_losses,
        score: e.score,
    }
}

/// The evaluation in words, for the lease's end notification to its user and supplier.
pub(super) fn feedback(e: &Evaluation) -> String {
    let pm = |x: Option<u16>| x.map_or("not measured".to_string(), |v| format!("{v}‰"));
    format!(
        "\n\nThe platform's evaluation of the cluster: score {} from {} monitoring sample(s): \
         availability {}, mean CPU use {}, mean GPU use {}, {} GPU drop-off(s), {} node loss(es).",
        e.score
            .map_or("none (no sample)".to_string(), |v| format!("{v}‰")),
        e.samples,
        pm(e.availability),
        pm(e.cpu_util),
        pm(e.gpu_util),
        e.drop_offs,
        e.node_losses
    )
}

/// The most evaluations one call returns.
pub const MAX_EVALUATIONS: usize = 100;

/// A listing's evaluations, newest first, paged (SH-CL-18): public like the listing.
pub async fn listing_evaluations(
    state: &Control,
    cpcid: &str,
    offset: usize,
    limit: usize,
) -> ApiResult<Vec<wire::EvaluationView>> {
    if limit == 0 || limit > MAX_EVALUATIONS {
        return Err(ApiError::field(
            "limit",
            format!("give 1..={MAX_EVALUATIONS}"),
        ));
    }
    let cpcid = parse_cpcid(cpcid)?;
    let mut inner = state.market.inner.lock().await;
    let market = ensure(state, &mut inner).await?;
    if market.catalog().listing(cpcid).is_none() {
        return Err(ApiError::not_found("listing", &cpcid.to_string()));
    }
    Ok(market
        .evaluations(cpcid)
        .skip(offset)
        .take(limit)
        .map(view)
        .collect())
}

/// The live state of a class B lease's nodes, cards and site links (module documentation).
pub async fn lease_monitoring(
    state: &Control,
    who: &Caller,
    id: u64,
) -> ApiResult<wire::LeaseMonitoring> {
    let mine = me(state, who).await?;
    let mut inner = state.market.inner.lock().await;
    let market = ensure(state, &mut inner).await?;
    let lease = market
        .lease(LeaseId(id))
        .filter(|l| visible(who, mine, l))
        .ok_or_else(|| ApiError::not_found("lease", &id.to_string()))?;
    if lease.class != ClusterClass::B {
        return Err(ApiError::new(
            Code::InvalidState,
            format!(
                "lease {id} is class A: the platform does not monitor class A clusters (their users work over SSH)"
            ),
        ));
    }
    let site = site_of(market, lease);
    let running = matches!(lease.state, LeaseState::Active { .. });
    let so_far = view(
        &lease
            .evaluation()
            .cloned()
            .unwrap_or_else(|| Evaluation::of(lease.id, lease.listing, now(), lease.monitoring())),
    );
    let state_out = match lease.state {
        LeaseState::AwaitingAccess { .. } => wire::LeaseState::AwaitingAccess,
        LeaseState::Locked => wire::LeaseState::Locked,
        LeaseState::Active { .. } => wire::LeaseState::Active,
        LeaseState::Ended { .. } => wire::LeaseState::Ended,
    };
    // The cards by node, with their catalog state; the node records are read after the lock.
    let mut per_node: BTreeMap<String, Vec<(u32, u32, wire::CardState)>> = BTreeMap::new();
    for c in &lease.cards {
        let v = super::card_view(market, *c);
        per_node
            .entry(v.node.clone())
            .or_default()
            .push((v.id, v.index, v.state));
    }
    let listing = lease.listing.to_string();
    drop(inner);
    let (nodes, links) = if running {
        (
            node_figures(state, &site, per_node).await?,
            site_links(state, &site).await?,
        )
    } else {
        // An ended lease's lessee no longer sees the supplier's nodes.
        (Vec::new(), Vec::new())
    };
    Ok(wire::LeaseMonitoring {
        lease: id,
        listing,
        site,
        state: state_out,
        at: chrono::Utc::now(),
        nodes,
        links,
        so_far,
    })
}

async fn node_figures(
    state: &Control,
    site: &str,
    per_node: BTreeMap<String, Vec<(u32, u32, wire::CardState)>>,
) -> ApiResult<Vec<wire::NodeMonitoring>> {
    let records = state.store.list_nodes().await?;
    let mut out = Vec::new();
    for (name, cards) in per_node {
        let rec = records.iter().find(|n| n.site == site && n.name == name);
        let metrics = rec.and_then(|r| {
            state
                .runtime
                .live
                .lock()
                .expect("live-node lock is never poisoned")
                .get(&r.id)
                .and_then(|l| l.metrics.clone())
        });
        let m = metrics.as_ref();
        out.push(wire::NodeMonitoring {
            node: name,
            ready: rec.is_some_and(|r| r.ready),
            reported_at: m.map(|m| m.at),
            cpu_util_pct: m.map(|m| m.cpu_util_pct),
            memory_util_pct: m.map(|m| m.memory_util_pct),
            load1: m.map(|m| m.load1),
            net_rx_bytes_per_s: m.map(|m| m.net_rx_bytes_per_s),
            net_tx_bytes_per_s: m.map(|m| m.net_tx_bytes_per_s),
            power_watts: m.and_then(|m| m.power_watts),
            cards: cards
                .into_iter()
                .map(|(card, index, card_state)| {
                    let g = m.and_then(|m| m.gpus.iter().find(|g| g.index == index));
                    wire::CardMonitoring {
                        card,
                        index,
                        state: card_state,
                        missing: m.is_some_and(|m| !m.gpus.is_empty()) && g.is_none(),
                        util_pct: g.map(|g| g.util_pct),
                        memory_used_mib: g.map(|g| g.memory_used_mib),
                        memory_total_mib: g.map(|g| g.memory_total_mib),
                        temperature_c: g.and_then(|g| g.temperature_c),
                        power_watts: g.and_then(|g| g.power_watts),
                        voltage_v: g.and_then(|g| g.voltage_v),
                    }
                })
                .collect(),
        });
    }
    Ok(out)
}

/// The links of `site` (by name) with their latest measurements; links never measured are
/// left out.
async fn site_links(state: &Control, site: &str) -> ApiResult<Vec<wire::LinkMonitoring>> {
    let Some(site_rec) = state.store.find_object_by_name(Kind::Site, site).await? else {
        return Ok(Vec::new());
    };
    let sites: HashMap<String, String> = state
        .store
        .list_objects(Kind::Site, &Default::default())
        .await?
        .into_iter()
        .map(|r| (r.id, r.name))
        .collect();
    let measured: HashMap<String, (chrono::DateTime<chrono::Utc>, serde_json::Value)> = state
        .store
        .metrics_at(Kind::Link, chrono::Utc::now())
        .await?
        .into_iter()
        .map(|m| (m.object_id, (m.at, m.value)))
        .collect();
    let mut out = Vec::new();
    for rec in state
        .store
        .list_objects(Kind::Link, &Default::default())
        .await?
    {
        let Ok(spec) = serde_json::from_value::<LinkSpec>(rec.spec.clone()) else {
            continue;
        };
        // Links name their sites by id once stored; by name as written.
        let here = |end: &str| end == site_rec.id || end == site_rec.name;
        let peer = if here(&spec.from) {
            &spec.to
        } else if here(&spec.to) {
            &spec.from
        } else {
            continue;
        };
        let Some((at, value)) = measured.get(&rec.id) else {
            continue;
        };
        let Ok(m) = serde_json::from_value::<LinkMetrics>(value.clone()) else {
            continue;
        };
        out.push(wire::LinkMonitoring {
            link: rec.name,
            peer: sites.get(peer).cloned().unwrap_or_else(|| peer.clone()),
            latency_ms: m.latency_ms,
            loss_pct: m.loss_pct,
            bandwidth_gbps: m.bandwidth_gbps,
            measured_at: *at,
        });
    }
    Ok(out)
}
