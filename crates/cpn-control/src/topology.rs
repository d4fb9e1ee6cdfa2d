//! Topology (RM-TOPO): the graph of sites and links with the metrics in force at a moment,
//! and the append-only metric history that makes past states readable.

use crate::caller::Caller;
use crate::error::{ApiError, ApiResult};
use crate::registry::{can_read, check_modify, decode_spec, find_visible};
use crate::runtime::RuntimeState;
use chrono::{DateTime, Utc};
use cpn_api_types::Code;
use cpn_api_types::registry::{LinkMetrics, LinkSpec, SiteMetrics, SiteSpec, Violations};
use cpn_api_types::topology::{MetricSample, Topology, TopologyLink, TopologySite};
use cpn_model::Kind;
use cpn_store::{ListQuery, ObjectRecord};
use std::collections::HashMap;

/// Keeps the history complete: a link's nominal metrics are a sample from the moment they
/// are written, so `?at=` sees the value a link had before an update.
pub async fn after_write(state: &RuntimeState, rec: &ObjectRecord) -> ApiResult<()> {
    if rec.kind == Kind::Link {
        let spec: LinkSpec = decode_spec(rec)?;
        let m = LinkMetrics {
            latency_ms: spec.latency_ms,
            bandwidth_gbps: spec.bandwidth_gbps,
            jitter_ms: spec.jitter_ms,
            loss_pct: spec.loss_pct,
        };
        record(state, &rec.id, rec.updated_at, &m).await?;
    }
    Ok(())
}

async fn record<T: serde::Serialize>(
    state: &RuntimeState,
    id: &str,
    at: DateTime<Utc>,
    value: &T,
) -> ApiResult<()> {
    let value =
        serde_json::to_value(value).map_err(|e| ApiError::new(Code::Internal, e.to_string()))?;
    state.store.record_metric(id, at, value).await?;
    state.runtime.federation.registry_changed();
    Ok(())
}

/// The topology as it was at `at` (now when absent).
pub async fn topology(
    state: &RuntimeState,
    who: &Caller,
    at: Option<DateTime<Utc>>,
) -> ApiResult<Topology> {
    let at = at.unwrap_or_else(Utc::now);
    let visible = ListQuery {
        visible_to_tenant: (!who.is_operator()).then(|| who.tenant.clone()),
        ..Default::default()
    };
    let site_metrics: HashMap<String, (DateTime<Utc>, serde_json::Value)> = state
        .store
        .metrics_at(Kind::Site, at)
        .await?
        .into_iter()
        .map(|m| (m.object_id, (m.at, m.value)))
        .collect();
    let link_metrics: HashMap<String, (DateTime<Utc>, serde_json::Value)> = state
        .store
        .metrics_at(Kind::Link, at)
        .await?
        .into_iter()
        .map(|m| (m.object_id, (m.at, m.value)))
        .collect();

    let mut sites = Vec::new();
    let mut site_ids = std::collections::HashSet::new();
    for rec in state.store.list_objects(Kind::Site, &visible).await? {
        if rec.created_at > at {
            continue;
        }
        let spec: SiteSpec = decode_spec(&rec)?;
        let (metrics, metrics_at) = match site_metrics.get(&rec.id) {
            Some((t, v)) => (
                serde_json::from_value::<SiteMetrics>(v.clone()).ok(),
                Some(*t),
            ),
            None => (None, None),
        };
        site_ids.insert(rec.id.clone());
        sites.push(TopologySite {
            id: rec.id,
            name: rec.name,
            node_type: "compute".into(),
            region: spec.region,
            location: spec.location,
            platform: spec.platform,
            health: metrics.and_then(|m| m.health).unwrap_or(spec.health),
            metrics,
            metrics_at,
        });
    }
    let mut links = Vec::new();
    for rec in state.store.list_objects(Kind::Link, &visible).await? {
        if rec.created_at > at {
            continue;
        }
        let spec: LinkSpec = decode_spec(&rec)?;
        if !site_ids.contains(&spec.from) || !site_ids.contains(&spec.to) {
            continue;
        }
        let Some((metrics_at, value)) = link_metrics.get(&rec.id) else {
            continue;
        };
        let metrics: LinkMetrics = serde_json::from_value(value.clone()).map_err(|e| {
            ApiError::new(
                Code::Internal,
                format!("stored metrics of link {}: {e}", rec.id),
            )
        })?;
        links.push(TopologyLink {
            id: rec.id,
            name: rec.name,
            from: spec.from,
            to: spec.to,
            link_type: spec.link_type,
            bidirectional: spec.bidirectional,
            metrics,
            metrics_at: *metrics_at,
        });
    }
    Ok(Topology { at, sites, links })
}

/// Records an observed sample for a link or site; monitoring posts these without touching
/// the object's generation, since they are observations, not edits.
pub async fn post_metrics<T>(
    state: &RuntimeState,
    who: &Caller,
    kind: Kind,
    id: &str,
    value: T,
) -> ApiResult<MetricSample<T>>
where
    T: serde::Serialize + Validated,
{
    let rec = find_visible(state, who, kind, id).await?;
    check_modify(&who.into(), &rec)?;
    let mut v = Violations::default();
    value.validate_into(&mut v);
    crate::registry::violations_to_error(v)?;
    let at = Utc::now();
    record(state, &rec.id, at, &value).await?;
    Ok(MetricSample { at, value })
}

pub async fn metric_history<T: serde::de::DeserializeOwned>(
    state: &RuntimeState,
    who: &Caller,
    kind: Kind,
    id: &str,
    limit: usize,
) -> ApiResult<Vec<MetricSample<T>>> {
    let rec = find_visible(state, who, kind, id).await?;
    debug_assert!(can_read(&who.into(), &rec));
    let mut out = Vec::new();
    for m in state.store.metric_history(&rec.id, limit).await? {
        let value = serde_json::from_value(m.value).map_err(|e| {
            ApiError::new(Code::Internal, format!("stored metrics of {}: {e}", rec.id))
        })?;
        out.push(MetricSample { at: m.at, value });
    }
    Ok(out)
}

/// Metric documents validate themselves with field paths.
pub trait Validated {
    fn validate_into(&self, v: &mut Violations);
}

impl Validated for LinkMetrics {
    fn validate_into(&self, v: &mut Violations) {
        self.validate_at("body", v);
    }
}

impl Validated for SiteMetrics {
    fn validate_into(&self, v: &mut Violations) {
        self.validate_at("body", v);
    }
}
