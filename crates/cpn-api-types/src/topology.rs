//! The topology view (RM-TOPO-01..05, 表2): sites and links with the metrics in force at a time.

use crate::registry::{GeoLocation, LinkMetrics, LinkType, SiteHealth, SiteMetrics};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Topology {
    /// The moment this view describes.
    pub at: DateTime<Utc>,
    pub sites: Vec<TopologySite>,
    pub links: Vec<TopologyLink>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TopologySite {
    pub id: String,
    pub name: String,
    /// 节点类型: always `compute` for sites today.
    pub node_type: String,
    pub region: String,
    pub location: GeoLocation,
    /// Platform id, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    pub health: SiteHealth,
    /// The latest metrics sample at or before `at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<SiteMetrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TopologyLink {
    pub id: String,
    pub name: String,
    /// Site id of one end.
    pub from: String,
    /// Site id of the other end.
    pub to: String,
    pub link_type: LinkType,
    pub bidirectional: bool,
    /// The metrics in force at `at`: the latest sample at or before it.
    pub metrics: LinkMetrics,
    pub metrics_at: DateTime<Utc>,
}

/// One sample of a metric history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MetricSample<T> {
    pub at: DateTime<Utc>,
    pub value: T,
}
