//! Placement as every scheduling path shares it (issue #13): the one conversion of a wire
//! task into the scheduler's (`task_from_spec`, with what the caller may ask for), the one
//! view of a decision (`decision_view`), and what a stored decision holds (`hold_of`). The
//! binder, explain, dry-run, real decisions, plans and the federation twin all call these.

use crate::access::violations_to_error;
use crate::caller::Actor;
use crate::error::{ApiError, ApiResult};
use crate::inventory;
use crate::ledger::Hold;
use cpn_api_types::registry::{Validate, Violations};
use cpn_api_types::schedule::*;
use cpn_model::Selector;
use cpn_sched::task::Demand;
use cpn_sched::{CandidateReport, Decision, Task};

/// The most nodes an explanation lists; the counts of rejections cover the rest.
pub const MAX_NODES_SHOWN: usize = 20;

/// Converts a wire task into the scheduler's, checking what the caller may ask for.
pub fn task_from_spec(who: &Actor, spec: &TaskSpec, index: usize) -> ApiResult<Task> {
    let mut v = Violations::default();
    spec.validate(&mut v);
    violations_to_error(v)?;
    let tenant = match &spec.tenant {
        Some(t) if t != who.tenant() && !who.is_operator() => {
            return Err(ApiError::forbidden(
                "only operators may schedule for another tenant",
            ));
        }
        Some(t) => t.clone(),
        None => who.tenant().to_string(),
    };
    let selector = |text: &Option<String>, field: &str| -> ApiResult<Selector> {
        match text {
            None => Ok(Selector::default()),
            Some(s) => Selector::parse(s)
                .map_err(|e| ApiError::field(format!("task.{field}"), e.to_string())),
        }
    };
    let r = &spec.resources;
    let gpu_milli = match (r.gpus, r.gpu_share) {
        (0, _) => 0,
        (_, Some(share)) => ((share * 1000.0).round() as u32).clamp(1, 1000),
        (_, None) => 1000,
    };
    Ok(Task {
        id: if spec.name.is_empty() {
            format!("task-{}", index + 1)
        } else {
            spec.name.clone()
        },
        tenant,
        business: spec.business.clone(),
        origin_region: spec.origin_region.clone(),
        priority: spec.priority,
        demand: Demand {
            cpu_milli: (r.cpu_cores * 1000.0).round() as u64,
            memory_mib: (r.memory_gib * 1024.0).round() as u64,
            gpus: r.gpus,
            gpu_milli,
            storage_gib: r.storage_gib.ceil() as u64,
        },
        chip: spec.chip.map(inventory::chip_of),
        models: spec.models.clone(),
        architectures: spec.architectures.clone(),
        regions_in: spec.regions_in.clone(),
        regions_not_in: spec.regions_not_in.clone(),
        site_selector: selector(&spec.site_selector, "site_selector")?,
        node_selector: selector(&spec.node_selector, "node_selector")?,
        affinity_regions: spec.affinity_regions.clone(),
        anti_affinity_regions: spec.anti_affinity_regions.clone(),
        preferred_models: spec.preferred_models.clone(),
        est_hours: spec.est_hours.unwrap_or(1.0),
        labels: spec.labels.clone(),
    })
}

fn candidate_view(c: &CandidateReport) -> CandidateView {
    CandidateView {
        name: c.name.clone(),
        feasible: c.feasible,
        total: c.total,
        verdicts: c
            .verdicts
            .iter()
            .map(|v| VerdictView {
                plugin: v.plugin.to_string(),
                fits: v.fits,
                permanent: v.forever,
                code: v.code.map(str::to_string),
                detail: v.detail.clone(),
            })
            .collect(),
        factors: c
            .factors
            .iter()
            .map(|f| FactorView {
                plugin: f.plugin.to_string(),
                raw: f.raw,
                unit: f.unit.to_string(),
                normalized: f.normalized,
                weight: f.weight,
                contribution: f.contribution,
            })
            .collect(),
    }
}

pub fn decision_view(d: &Decision) -> DecisionView {
    DecisionView {
        chosen_site: d.chosen_site.clone(),
        chosen_node: d.chosen_node.clone(),
        score: d.score,
        margin: d.margin,
        seed: d.seed,
        sites: d.sites.iter().map(candidate_view).collect(),
        nodes: d
            .nodes
            .iter()
            .take(MAX_NODES_SHOWN)
            .map(candidate_view)
            .collect(),
        rejections: d
            .rejections
            .iter()
            .map(|(reason, count)| RejectionCount {
                reason: reason.clone(),
                count: *count,
            })
            .collect(),
    }
}

/// What a decision holds besides its demand, as stored in its body.
#[derive(serde::Deserialize)]
pub struct DecisionBody {
    pub policy: PolicyChoice,
    pub decision: DecisionView,
    pub gpus: Vec<(u32, u32)>,
    /// The live node's id; absent in decisions made on the registry snapshot (before the
    /// ledger), which hold nothing.
    #[serde(default)]
    pub node_id: Option<String>,
    #[serde(default)]
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// What an unreleased decision holds: its demand on its live node, on the GPUs it was given,
/// until its expiry. `None` for one made before decisions were placed on live nodes.
pub fn hold_of(d: &cpn_store::DecisionRecord) -> Option<Hold> {
    if d.released_at.is_some() {
        return None;
    }
    let body: DecisionBody = serde_json::from_value(d.body.clone()).ok()?;
    let demand: inventory::StoredDemand = serde_json::from_value(d.demand.clone()).ok()?;
    Some(Hold {
        target: body.node_id?,
        tenant: d.tenant.clone(),
        demand: demand.into(),
        gpus: body.gpus,
        expires_at: body.expires_at,
        lease: None,
    })
}
