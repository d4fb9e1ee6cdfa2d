//! Design (DO-TPL, DO-RES, SC-PROV): templates of the marketplace, plans made from a
//! template (placements, the five feasibility dimensions, cost), their instruction sets
//! and how their execution ended.

use crate::flows::FlowState;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;

// ------------------------------------------------------------------------- templates

/// A template as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TemplateView {
    pub id: String,
    pub name: String,
    pub category: String,
    pub tags: Vec<String>,
    pub description: String,
    /// `draft`, `published` or `offline`.
    pub state: String,
    pub version: u64,
    pub tenant: String,
    pub owner: String,
    pub usage_count: u64,
    /// The template's YAML.
    pub source: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `POST /api/v1/templates` (JSON, or the same fields as YAML).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateCreate {
    pub name: String,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub description: String,
    pub source: String,
}

/// `PUT /api/v1/templates/{id}`: the fields to change, and the version they apply to.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateUpdate {
    pub version: u64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateRollback {
    pub to_version: u64,
    pub version: u64,
}

/// Optional compare-and-set version of a state change.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VersionOnly {
    #[serde(default)]
    pub version: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TemplateVersionView {
    pub version: u64,
    pub at: DateTime<Utc>,
    pub state: String,
    pub name: String,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Recommendation {
    pub template: TemplateView,
    pub score: f64,
    pub reasons: Vec<String>,
}

// ----------------------------------------------------------------------------- plans

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    #[serde(default)]
    #[schema(value_type = Object)]
    pub inputs: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Placement {
    pub node: String,
    pub replica: u32,
    /// Site name and registry id; `None` when the scheduler found no room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_id: Option<String>,
    /// The inventory node (synthesized from a registry resource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    pub cost_per_hour: f64,
    pub power_kw: f64,
    pub carbon_kg_per_hour: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unplaced_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Dimension {
    pub ok: bool,
    pub detail: Vec<String>,
}

/// The five dimensions of seed 004.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Feasibility {
    pub compute: Dimension,
    pub network: Dimension,
    pub application: Dimension,
    pub cost: Dimension,
    pub business: Dimension,
}

impl Feasibility {
    pub fn all_ok(&self) -> bool {
        self.compute.ok
            && self.network.ok
            && self.application.ok
            && self.cost.ok
            && self.business.ok
    }
}

/// A registry object the plan placed on, with its generation then.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GenRef {
    pub kind: String,
    pub id: String,
    pub name: String,
    pub generation: u64,
}

/// One instruction of a confirmed plan (表11).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Instruction {
    /// `[a-z0-9_-]+`, unique in the plan; the workflow step id.
    pub id: String,
    /// `create_resource`, `configure_network`, `configure_security`, `mount_storage`,
    /// `deploy_app`.
    pub kind: String,
    pub node: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    pub depends_on: Vec<String>,
    pub description: String,
    /// What the step does: for `deploy_app`, `command` (argv) and `resources`.
    #[schema(value_type = Object)]
    pub params: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PlanView {
    pub id: String,
    /// Plans made by one request share a group.
    pub group: String,
    pub template_id: String,
    pub template_name: String,
    pub template_version: u64,
    pub objective: String,
    pub objective_description: String,
    /// `proposed`, `confirmed`, `executing`, then as its workflow ended: `completed`
    /// (every step succeeded or was simulated: see `execution`), `failed` or `cancelled`.
    pub state: String,
    pub version: u64,
    #[schema(value_type = Object)]
    pub inputs: BTreeMap<String, Value>,
    pub hours: f64,
    pub placements: Vec<Placement>,
    pub cost_per_hour: f64,
    pub total_cost: f64,
    /// Worst latency over every connects_to pair; `None` without any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency_ms: Option<f64>,
    pub power_kw: f64,
    pub carbon_kg_per_hour: f64,
    /// 0..=100, 100 the least carbon among the plans of the group.
    pub green_score: f64,
    pub feasibility: Feasibility,
    pub feasible: bool,
    pub recommended: bool,
    pub reasons: Vec<String>,
    pub generations: Vec<GenRef>,
    #[serde(default)]
    pub instructions: Vec<Instruction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_id: Option<String>,
    /// How the execution ended, once its workflow has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<PlanExecution>,
    #[schema(value_type = Object)]
    pub outputs: BTreeMap<String, Value>,
    #[serde(default)]
    pub nodes: Vec<Value>,
    pub created_at: DateTime<Utc>,
}

/// The end of a plan's execution, from its workflow's steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PlanExecution {
    pub flow_state: FlowState,
    /// Steps that ran for real and succeeded (deploy tasks).
    pub succeeded: Vec<String>,
    /// Steps with no controller behind them: described, nothing was done.
    pub simulated: Vec<String>,
    pub failed: Vec<String>,
    /// Steps that did not end in one of the above (never started, cancelled, compensated).
    pub other: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub ended_at: DateTime<Utc>,
    /// One line: how many steps ran for real, how many were simulated.
    pub summary: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstructionEdit {
    /// The plan version the edit applies to.
    pub version: u64,
    #[serde(default)]
    pub depends_on: Option<Vec<String>>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub params: Option<Value>,
}
