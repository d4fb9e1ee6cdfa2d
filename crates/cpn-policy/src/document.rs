//! The policy document as users write it (SC-POL-07, 表10): identity, priority, nesting,
//! scope, match rules, plugin weights and CEL rules. Plain serde data; `validate` checks it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A scheduling policy (调度策略). Unknown fields are rejected so a typo does not silently
/// become "no constraint".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// 策略名称; unique, also the id the store keys it by.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// 优先级: among the policies that match a task, the highest wins.
    #[serde(default)]
    pub priority: i32,
    /// 策略组合关系: the policy this one refines. It inherits the parent's scope, match rules,
    /// weights, filters, sampling and GPU pick, overrides what it sets itself, and adds its
    /// CEL rules after the parent's.
    #[serde(default)]
    pub parent: Option<String>,
    /// 生效范围: where the policy takes effect. Empty lists accept anything.
    #[serde(default)]
    pub scope: Scope,
    /// 匹配规则: which tasks the policy applies to. Empty lists accept anything.
    #[serde(default)]
    pub match_rules: MatchRules,
    /// In-tree score plugin name → weight; overrides the parent's (and the defaults).
    #[serde(default)]
    pub weights: BTreeMap<String, f64>,
    /// In-tree filter plugins to run; `None` inherits the parent's (all filters at the root).
    #[serde(default)]
    pub filters: Option<Vec<String>>,
    /// 扩展机制: CEL filters, evaluated per site (or per node when they mention `node`).
    #[serde(default)]
    pub cel_filters: Vec<CelRule>,
    /// 扩展机制: CEL scores, evaluated per site (or per node when they mention `node`).
    #[serde(default)]
    pub cel_scores: Vec<CelScoreRule>,
    /// Percentage of a site's nodes to look at before scoring; `None` inherits (kube's
    /// adaptive rule at the root).
    #[serde(default)]
    pub sampling_percent: Option<f64>,
    /// How fractional GPUs are placed inside a node; `None` inherits (best fit at the root).
    #[serde(default)]
    pub gpu_pick: Option<GpuPickRule>,
    /// A GPU placement policy of the FGD paper (`fgd`, `bestfit`, `packing`, …) that scores
    /// nodes and picks GPUs; `None` inherits (none at the root).
    #[serde(default)]
    pub gpu_policy: Option<String>,
}

/// Where a policy takes effect (生效范围). Every non-empty list must accept the task.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Regions, tested against the task's origin region.
    #[serde(default)]
    pub regions: Vec<String>,
    /// Business types (业务类型), tested against the task's business.
    #[serde(default)]
    pub businesses: Vec<String>,
    #[serde(default)]
    pub tenants: Vec<String>,
}

impl Scope {
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty() && self.businesses.is_empty() && self.tenants.is_empty()
    }
}

/// Which tasks a policy applies to (匹配规则). Every non-empty constraint must accept the task.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchRules {
    #[serde(default)]
    pub tenants: Vec<String>,
    #[serde(default)]
    pub businesses: Vec<String>,
    #[serde(default)]
    pub origin_regions: Vec<String>,
    /// A label selector over the task's labels, in `cpn_model::Selector` syntax.
    #[serde(default)]
    pub labels: Option<String>,
}

/// A CEL expression that must evaluate to `true` for a site (or node) to fit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CelRule {
    /// Unique among the policy's CEL rules; the plugin is called `cel:<name>`.
    pub name: String,
    pub expr: String,
}

/// A CEL expression that evaluates to a number per site (or node), weighted like an in-tree
/// score plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CelScoreRule {
    /// Unique among the policy's CEL rules; the plugin is called `cel:<name>`.
    pub name: String,
    pub expr: String,
    /// Weight of the normalized (0..=100) score; non-negative.
    #[serde(default = "default_weight")]
    pub weight: f64,
    #[serde(default)]
    pub better: Direction,
}

fn default_weight() -> f64 {
    1.0
}

/// Which way a CEL score is good.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    #[default]
    Higher,
    Lower,
}

impl From<Direction> for cpn_sched::Better {
    fn from(d: Direction) -> Self {
        match d {
            Direction::Higher => cpn_sched::Better::Higher,
            Direction::Lower => cpn_sched::Better::Lower,
        }
    }
}

/// How fractional GPUs are chosen inside a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GpuPickRule {
    BestFit,
    WorstFit,
    FirstFit,
}

impl From<GpuPickRule> for cpn_sched::cluster::GpuPick {
    fn from(g: GpuPickRule) -> Self {
        use cpn_sched::cluster::GpuPick;
        match g {
            GpuPickRule::BestFit => GpuPick::BestFit,
            GpuPickRule::WorstFit => GpuPick::WorstFit,
            GpuPickRule::FirstFit => GpuPick::FirstFit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_document_and_rejects_unknown_fields() {
        let p: Policy = serde_json::from_value(serde_json::json!({
            "name": "lab-a-green",
            "priority": 10,
            "parent": "base",
            "scope": {"regions": ["east"]},
            "match_rules": {"tenants": ["lab-a"], "labels": "team=vision"},
            "weights": {"energy": 3.0},
            "filters": ["resources"],
            "cel_filters": [{"name": "low-pue", "expr": "site.pue <= 1.3"}],
            "cel_scores": [{"name": "cheap", "expr": "site.electricity_price", "better": "lower"}],
            "sampling_percent": 20.0,
            "gpu_pick": "worst_fit"
        }))
        .unwrap();
        assert_eq!(p.cel_scores[0].weight, 1.0);
        assert_eq!(p.cel_scores[0].better, Direction::Lower);
        assert_eq!(p.gpu_pick, Some(GpuPickRule::WorstFit));
        let bad = serde_json::from_value::<Policy>(serde_json::json!({
            "name": "x", "scope": {"region": ["east"]}
        }));
        assert!(
            bad.unwrap_err()
                .to_string()
                .contains("unknown field `region`")
        );
    }
}
