//! Plans (SC-PROV-01..06): a template instantiated with inputs is placed by the real
//! scheduler under four objectives, each plan is checked in the five feasibility dimensions
//! of seed 004, one is recommended; a confirmed plan compiles into an instruction set
//! (表11) that runs as a workflow.
//!
//! Objectives are scheduler profiles (`cpn_sched::plugins::profile`): lowest cost weighs
//! `price`, lowest latency weighs `latency` (each replica's origin is the site of a peer it
//! connects to or depends on, so connected nodes are pulled together), greenest weighs
//! `energy` and `carbon`, balanced is the default profile. Each plan schedules on its own
//! copy of one inventory snapshot and reserves as it goes, so its replicas never
//! double-book; plans are alternatives, so they do not reserve against each other, and
//! nothing is held in the registry until execution.
//!
//! Instruction → workflow action (honest about what is real):
//! - `create_resource`, `configure_network`, `configure_security`, `mount_storage` →
//!   `simulate`: there is no provisioning, SDN or storage controller behind them here, so
//!   the step publishes what would be done and ends `simulated`, never `succeeded` (it
//!   still lets the steps after it run).
//! - `deploy_app` → a real cpn `task` pinned to the placed site (`constraints.site`),
//!   running the node's `command` (default `sh -c "echo deployed NAME"`) and requesting the
//!   planned resources (`params.resources`: CPU cores, memory, GPUs, storage), so it runs
//!   only on a node of that site that can hold them. The plan is in its `CPN_PLAN`
//!   environment, the planned capacity in `CPN_PLANNED_*`. On a site with no live node the step fails with "no live node on site
//!   X" after `params.timeout_s` (the step's timeout) or the server's node wait.
//!
//! States: `proposed` → `confirmed` → `executing` → `completed` | `failed` | `cancelled`,
//! following the workflow to its end (`follow_flow`, called when the workflow ends, and
//! again when a plan is read in case the server stopped in between). A `completed` plan's
//! `execution` says which steps ran for real and which were only `simulated`.

use super::{PLANS, internal, issues_error};
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult};
use crate::inventory;
use crate::state::Control;
use chrono::Utc;
use cpn_api_types::Code;
use cpn_api_types::design::{
    Dimension, Feasibility, GenRef, Instruction, InstructionEdit, Placement, PlanExecution,
    PlanRequest, PlanView,
};
use cpn_api_types::flows::{
    Action, FlowDefinition, FlowState, FlowView, StepDef, StepRetry, StepState,
};
use cpn_api_types::schedule::TaskResources;
use cpn_api_types::tasks::{TaskConstraints, TaskSubmit};
use cpn_model::Kind;
use cpn_sched::kpi::PlacementCost;
use cpn_sched::plugins::{ProfileSpec, profile};
use cpn_sched::task::{Chip, Demand};
use cpn_sched::{Cluster, Mode, Scheduler, Task};
use cpn_store::{DocQuery, DocRecord};
use cpn_template::{ConcreteNode, Instance};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

/// Score weights by plugin name (empty: the default profile).
pub type Weights = &'static [(&'static str, f64)];

/// (name, what it optimizes, score weights).
pub const OBJECTIVES: &[(&str, &str, Weights)] = &[
    (
        "lowest_cost",
        "cheapest price per hour",
        &[("price", 10.0), ("free_capacity", 0.5)],
    ),
    (
        "lowest_latency",
        "connected nodes as close as the topology allows",
        &[("latency", 10.0), ("free_capacity", 0.5)],
    ),
    (
        "greenest",
        "least energy (PUE-weighted) and carbon",
        &[("energy", 5.0), ("carbon", 5.0), ("free_capacity", 0.5)],
    ),
    ("balanced", "the default scheduling profile", &[]),
];

fn view(r: &DocRecord) -> ApiResult<PlanView> {
    let mut v: PlanView = serde_json::from_value(r.body.clone()).map_err(internal)?;
    v.id = r.id.clone();
    v.state = r.state.clone();
    v.version = r.version;
    Ok(v)
}

async fn load(state: &Control, who: &Caller, id: &str) -> ApiResult<DocRecord> {
    match state.store.get_doc(PLANS, id).await? {
        Some(r) if who.is_operator() || r.tenant == who.tenant => Ok(r),
        _ => Err(ApiError::not_found("plan", id)),
    }
}

async fn save(state: &Control, mut r: DocRecord, v: &PlanView) -> ApiResult<PlanView> {
    r.body = serde_json::to_value(v).map_err(internal)?;
    r.state = v.state.clone();
    r.updated_at = Utc::now();
    view(&state.store.update_doc(r, vec![]).await?)
}

fn task_of(
    who: &Caller,
    n: &ConcreteNode,
    replica: u32,
    hours: f64,
    origin: Option<String>,
) -> Task {
    Task {
        id: format!("{}-{}", n.name, replica),
        tenant: who.tenant.clone(),
        business: None,
        origin_region: origin,
        priority: 0,
        demand: Demand {
            cpu_milli: (n.cores * 1000.0).round() as u64,
            memory_mib: (n.memory_gib * 1024.0).round() as u64,
            gpus: n.gpus,
            gpu_milli: if n.gpus > 0 { 1000 } else { 0 },
            storage_gib: n.storage_gib.ceil() as u64,
        },
        chip: (n.gpus > 0).then_some(Chip::Gpu),
        models: n.gpu_model.iter().cloned().collect(),
        architectures: vec![],
        regions_in: n.region.iter().cloned().collect(),
        regions_not_in: vec![],
        site_selector: Default::default(),
        node_selector: Default::default(),
        affinity_regions: vec![],
        anti_affinity_regions: vec![],
        preferred_models: vec![],
        est_hours: hours,
        labels: Default::default(),
    }
}

/// Places every replica of every placed node under one objective.
fn place_all(
    who: &Caller,
    inst: &Instance,
    hours: f64,
    weights: &[(&str, f64)],
    mut cluster: Cluster,
    site_ids: &[String],
    resource_of: &HashMap<u32, String>,
) -> ApiResult<Vec<Placement>> {
    let mut spec = ProfileSpec::default();
    if !weights.is_empty() {
        spec.weights = weights.iter().map(|(n, w)| (n.to_string(), *w)).collect();
    }
    let prof = profile(&spec).map_err(internal)?;
    let mut sched = Scheduler::new(prof, 0);
    let mut site_of: BTreeMap<String, String> = BTreeMap::new(); // node → region of replica 1
    let mut out = Vec::new();
    for n in inst.nodes.iter().filter(|n| n.is_placed()) {
        let origin = n
            .connects_to
            .iter()
            .map(|c| &c.node)
            .chain(n.depends_on.iter())
            .find_map(|p| site_of.get(p).cloned());
        for r in 1..=n.replicas {
            let task = task_of(who, n, r, hours, origin.clone());
            let (res, _) = sched.schedule(&task, &mut cluster, Mode::Fast);
            match res {
                Ok(p) => {
                    let site = cluster.site(p.site);
                    let node = cluster.node(p.node);
                    // Priced as dry-runs and the twins price it (`cpn_sched::kpi`).
                    let PlacementCost {
                        cost_per_hour: cost,
                        power_kw: kw,
                        carbon_kg_per_hour: carbon,
                        ..
                    } = PlacementCost::of(&cluster, &task, &p);
                    site_of
                        .entry(n.name.clone())
                        .or_insert_with(|| site.spec.region.clone());
                    out.push(Placement {
                        node: n.name.clone(),
                        replica: r,
                        site: Some(site.spec.name.clone()),
                        site_id: site_ids.get(p.site as usize).cloned(),
                        host: Some(node.spec.name.clone()),
                        resource_id: resource_of.get(&p.node).cloned(),
                        cost_per_hour: round(cost),
                        power_kw: round(kw),
                        carbon_kg_per_hour: round(carbon),
                        unplaced_reason: None,
                    });
                }
                Err(u) => {
                    let reasons: Vec<String> =
                        u.reasons.iter().map(|(r, n)| format!("{r} x{n}")).collect();
                    out.push(Placement {
                        node: n.name.clone(),
                        replica: r,
                        site: None,
                        site_id: None,
                        host: None,
                        resource_id: None,
                        cost_per_hour: 0.0,
                        power_kw: 0.0,
                        carbon_kg_per_hour: 0.0,
                        unplaced_reason: Some(reasons.join(", ")),
                    });
                }
            }
        }
    }
    Ok(out)
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Latency and bottleneck bandwidth between two placed sites (0 ms and unlimited on the
/// same site; estimated from coordinates when no route exists).
fn between(cluster: &Cluster, a: &str, b: &str) -> (Option<f64>, Option<f64>) {
    if a == b {
        return (Some(0.0), None);
    }
    let (Some(sa), Some(sb)) = (cluster.site_by_name(a), cluster.site_by_name(b)) else {
        return (None, None);
    };
    let (Some(va), Some(vb)) = (cluster.site(sa).vertex, cluster.site(sb).vertex) else {
        return (None, None);
    };
    if let Some(reach) = cluster.topology.shortest_paths(va).get(vb) {
        return (Some(reach.latency_ms), Some(reach.bottleneck_gbps));
    }
    (cluster.latencies_from(va)[vb.index()].ms(), None)
}

fn feasibility(
    inst: &Instance,
    placements: &[Placement],
    cluster: &Cluster,
    hours: f64,
    cost_per_hour: f64,
) -> (Feasibility, Option<f64>) {
    let unplaced: Vec<&Placement> = placements.iter().filter(|p| p.site.is_none()).collect();
    let compute = Dimension {
        ok: unplaced.is_empty(),
        detail: if unplaced.is_empty() {
            vec![format!("all {} replica(s) placed", placements.len())]
        } else {
            unplaced
                .iter()
                .map(|p| {
                    format!(
                        "{}#{} not placed: {}",
                        p.node,
                        p.replica,
                        p.unplaced_reason.as_deref().unwrap_or("no room")
                    )
                })
                .collect()
        },
    };
    let sites = |node: &str| -> Vec<&str> {
        placements
            .iter()
            .filter(|p| p.node == node)
            .filter_map(|p| p.site.as_deref())
            .collect()
    };
    let mut net = Dimension {
        ok: true,
        detail: vec![],
    };
    let mut worst: Option<f64> = None;
    for n in &inst.nodes {
        for c in &n.connects_to {
            let (from, to) = (sites(&n.name), sites(&c.node));
            if from.is_empty() || to.is_empty() {
                // Network and security nodes are not placed; nothing to measure.
                continue;
            }
            let mut lat_max: f64 = 0.0;
            let mut bw_min = f64::INFINITY;
            let mut unknown = false;
            for a in &from {
                for b in &to {
                    let (l, bw) = between(cluster, a, b);
                    match l {
                        Some(l) => lat_max = lat_max.max(l),
                        None => unknown = true,
                    }
                    if let Some(bw) = bw {
                        bw_min = bw_min.min(bw);
                    }
                }
            }
            worst = Some(worst.unwrap_or(0.0).max(lat_max));
            let mut ok = true;
            if let Some(max) = c.max_latency_ms
                && (unknown || lat_max > max)
            {
                ok = false;
            }
            if let Some(min) = c.min_bandwidth_gbps
                && bw_min < min
            {
                ok = false;
            }
            net.ok &= ok;
            net.detail.push(format!(
                "{} -> {}: {} latency {:.1} ms (max {}), bandwidth {} (min {})",
                n.name,
                c.node,
                if ok { "ok" } else { "VIOLATED" },
                lat_max,
                c.max_latency_ms.map_or("-".into(), |m| m.to_string()),
                if bw_min.is_finite() {
                    format!("{bw_min} Gbps")
                } else {
                    "unlimited".into()
                },
                c.min_bandwidth_gbps.map_or("-".into(), |m| m.to_string()),
            ));
        }
    }
    if net.detail.is_empty() {
        net.detail.push("no connects_to requirements".into());
    }
    let deps: usize = inst.nodes.iter().map(|n| n.depends_on.len()).sum();
    let order: Vec<&str> = inst.nodes.iter().map(|n| n.name.as_str()).collect();
    let application = Dimension {
        ok: true,
        detail: vec![format!(
            "{deps} dependencies resolvable, no cycle; order: {}",
            order.join(", ")
        )],
    };
    let cost = Dimension {
        ok: cost_per_hour.is_finite(),
        detail: vec![format!(
            "{:.2}/h x {hours} h = {:.2}",
            cost_per_hour,
            cost_per_hour * hours
        )],
    };
    let mut business = Dimension {
        ok: true,
        detail: vec![],
    };
    for n in &inst.nodes {
        if n.is_placed() {
            let placed = sites(&n.name).len() as u32;
            let ok = placed == n.replicas;
            business.ok &= ok;
            business.detail.push(format!(
                "{}: {placed}/{} replicas{}",
                n.name,
                n.replicas,
                if ok { "" } else { " (VIOLATED)" }
            ));
        }
        if let Some(d) = n.deadline_hours {
            let ok = hours <= d;
            business.ok &= ok;
            business.detail.push(format!(
                "{}: runs {hours} h within deadline {d} h{}",
                n.name,
                if ok { "" } else { " (VIOLATED)" }
            ));
        }
        if let Some(region) = &n.region {
            let wrong: Vec<&Placement> = placements
                .iter()
                .filter(|p| p.node == n.name)
                .filter(|p| {
                    p.site
                        .as_deref()
                        .and_then(|s| cluster.site_by_name(s))
                        .is_some_and(|s| &cluster.site(s).spec.region != region)
                })
                .collect();
            business.ok &= wrong.is_empty();
            business.detail.push(format!(
                "{}: region {region} {}",
                n.name,
                if wrong.is_empty() { "kept" } else { "VIOLATED" }
            ));
        }
    }
    (
        Feasibility {
            compute,
            network: net,
            application,
            cost,
            business,
        },
        worst,
    )
}

/// Makes one plan per objective, stores them (`proposed`), recommends one.
pub async fn make(
    state: &Control,
    who: &Caller,
    template_id: &str,
    req: PlanRequest,
) -> ApiResult<Vec<PlanView>> {
    let t = super::load(state, who, template_id).await?;
    if t.state == "offline" {
        return Err(ApiError::new(
            Code::InvalidState,
            format!("template {template_id} is offline; plans need a draft or published one"),
        ));
    }
    let tb = super::body_of(&t);
    let tpl = cpn_template::check(&tb.source).map_err(|i| issues_error(&i))?;
    let inst = cpn_template::instantiate(&tpl, &req.inputs).map_err(|i| issues_error(&i))?;
    let hours = inst
        .inputs
        .get("hours")
        .and_then(Value::as_f64)
        .unwrap_or(1.0);
    let (inv, resources) = inventory::snapshot_with_resources(state, who, None).await?;
    let resource_of: HashMap<u32, String> = resources
        .iter()
        .flat_map(|(id, nodes)| nodes.iter().map(move |n| (*n, id.clone())))
        .collect();
    let group = uuid::Uuid::now_v7().to_string();
    let now = Utc::now();
    let mut views = Vec::new();
    for (name, desc, weights) in OBJECTIVES {
        let placements = place_all(
            who,
            &inst,
            hours,
            weights,
            inv.cluster.clone(),
            &inv.site_ids,
            &resource_of,
        )?;
        let cost_per_hour = round(placements.iter().map(|p| p.cost_per_hour).sum());
        let (feas, worst) = feasibility(&inst, &placements, &inv.cluster, hours, cost_per_hour);
        let mut generations: BTreeMap<(String, String), GenRef> = BTreeMap::new();
        for p in &placements {
            if let Some(id) = &p.site_id {
                generations.insert(
                    ("site".into(), id.clone()),
                    GenRef {
                        kind: "site".into(),
                        id: id.clone(),
                        name: p.site.clone().unwrap_or_default(),
                        generation: 0,
                    },
                );
            }
            if let Some(id) = &p.resource_id {
                generations.insert(
                    ("resource".into(), id.clone()),
                    GenRef {
                        kind: "resource".into(),
                        id: id.clone(),
                        name: String::new(),
                        generation: 0,
                    },
                );
            }
        }
        let mut gens = Vec::new();
        for (_, mut g) in generations {
            let kind = if g.kind == "site" {
                Kind::Site
            } else {
                Kind::Resource
            };
            if let Some(rec) = state.store.get_object(kind, &g.id).await? {
                g.generation = rec.generation;
                g.name = rec.name;
                gens.push(g);
            }
        }
        let mut outputs = inst.outputs.clone();
        for v in outputs.values_mut() {
            if let Some(node) = v.get("get_site").and_then(Value::as_str) {
                *v = placements
                    .iter()
                    .find(|p| p.node == node)
                    .and_then(|p| p.site.clone())
                    .map(Value::from)
                    .unwrap_or(Value::Null);
            }
        }
        views.push(PlanView {
            id: uuid::Uuid::now_v7().to_string(),
            group: group.clone(),
            template_id: t.id.clone(),
            template_name: t.name.clone(),
            template_version: t.version,
            objective: name.to_string(),
            objective_description: desc.to_string(),
            state: "proposed".into(),
            version: 1,
            inputs: inst.inputs.clone(),
            hours,
            cost_per_hour,
            total_cost: round(cost_per_hour * hours),
            max_latency_ms: worst.map(round),
            power_kw: round(placements.iter().map(|p| p.power_kw).sum()),
            carbon_kg_per_hour: round(placements.iter().map(|p| p.carbon_kg_per_hour).sum()),
            green_score: 0.0,
            feasible: feas.all_ok(),
            feasibility: feas,
            recommended: false,
            reasons: vec![],
            generations: gens,
            instructions: vec![],
            flow_id: None,
            execution: None,
            outputs,
            nodes: inst
                .nodes
                .iter()
                .map(|n| serde_json::to_value(n).unwrap_or(Value::Null))
                .collect(),
            placements,
            created_at: now,
        });
    }
    recommend(&mut views);
    let mut stored = Vec::new();
    for v in views {
        let r = state
            .store
            .create_doc(
                DocRecord {
                    collection: PLANS.into(),
                    id: v.id.clone(),
                    tenant: who.tenant.clone(),
                    owner: who.username.clone(),
                    name: format!("{}/{}", t.name, v.objective),
                    state: v.state.clone(),
                    version: 1,
                    created_at: now,
                    updated_at: now,
                    body: serde_json::to_value(&v).map_err(internal)?,
                },
                vec![],
            )
            .await?;
        stored.push(view(&r)?);
    }
    super::count_usage(state, &t.id).await?;
    Ok(stored)
}

/// Green score: 100 for the least carbon (then least power) of the group, scaled down
/// linearly to 0 for the most. Recommendation: among the feasible plans, the lowest sum
/// of ranks in cost, worst latency and carbon; ties go to `balanced`, then list order.
fn recommend(views: &mut [PlanView]) {
    let green = |v: &PlanView| v.carbon_kg_per_hour + v.power_kw / 1000.0;
    let (lo, hi) = views
        .iter()
        .map(green)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), g| {
            (a.min(g), b.max(g))
        });
    for v in views.iter_mut() {
        v.green_score = if hi > lo {
            round(100.0 * (hi - green(v)) / (hi - lo))
        } else {
            100.0
        };
    }
    let rank = |key: &dyn Fn(&PlanView) -> f64, v: &PlanView, all: &[PlanView]| {
        all.iter().filter(|o| key(o) < key(v) - 1e-9).count()
    };
    let cost = |v: &PlanView| v.cost_per_hour;
    let lat = |v: &PlanView| v.max_latency_ms.unwrap_or(0.0);
    let carbon = |v: &PlanView| -v.green_score;
    let snapshot = views.to_vec();
    let best = snapshot
        .iter()
        .enumerate()
        .filter(|(_, v)| v.feasible)
        .min_by_key(|(i, v)| {
            let s =
                rank(&cost, v, &snapshot) + rank(&lat, v, &snapshot) + rank(&carbon, v, &snapshot);
            (s, v.objective != "balanced", *i)
        })
        .map(|(i, _)| i);
    for (i, v) in views.iter_mut().enumerate() {
        let mut reasons = vec![];
        if !v.feasible {
            let f = &v.feasibility;
            let bad: Vec<&str> = [
                ("compute", f.compute.ok),
                ("network", f.network.ok),
                ("application", f.application.ok),
                ("cost", f.cost.ok),
                ("business", f.business.ok),
            ]
            .iter()
            .filter(|(_, ok)| !ok)
            .map(|(n, _)| *n)
            .collect();
            reasons.push(format!("infeasible in: {}", bad.join(", ")));
        } else {
            reasons.push("feasible in all five dimensions".into());
        }
        let (rc, rl, rg) = (
            rank(&cost, v, &snapshot) + 1,
            rank(&lat, v, &snapshot) + 1,
            rank(&carbon, v, &snapshot) + 1,
        );
        reasons.push(format!(
            "cost {:.2}/h ranks {rc} of {n}; worst latency {} ranks {rl}; green score {:.0} ranks {rg}",
            v.cost_per_hour,
            v.max_latency_ms.map_or("n/a".into(), |l| format!("{l:.1} ms")),
            v.green_score,
            n = snapshot.len()
        ));
        if Some(i) == best {
            v.recommended = true;
            reasons.insert(
                0,
                "recommended: the feasible plan with the best combined rank of cost, latency and carbon".into(),
            );
        }
        v.reasons = reasons;
    }
}

pub async fn get(state: &Control, who: &Caller, id: &str) -> ApiResult<PlanView> {
    view(&synced(state, load(state, who, id).await?).await?)
}

/// The plans made by the same request as `id` (its alternatives, itself included), in the
/// order they were made.
pub async fn alternatives(state: &Control, who: &Caller, id: &str) -> ApiResult<Vec<PlanView>> {
    let record = load(state, who, id).await?;
    let plan = view(&record)?;
    // One request's plans are written together under one tenant; a tenant's plans are few
    // (one per request and objective), so reading them all is cheap.
    let docs = state
        .store
        .list_docs(
            PLANS,
            DocQuery {
                tenant: Some(record.tenant.clone()),
                ..Default::default()
            },
        )
        .await?;
    let mut out = Vec::new();
    for d in &docs {
        if d.body.get("group").and_then(Value::as_str) == Some(plan.group.as_str()) {
            out.push(view(&synced(state, d.clone()).await?)?);
        }
    }
    Ok(out)
}

/// Compiles the instruction set (see the module docs for the kinds and their order).
pub fn compile(v: &PlanView) -> Vec<Instruction> {
    let nodes: Vec<ConcreteNode> = v
        .nodes
        .iter()
        .filter_map(|n| serde_json::from_value(n.clone()).ok())
        .collect();
    let by_name: BTreeMap<&str, &ConcreteNode> =
        nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    let reps = |node: &str| -> Vec<&Placement> {
        v.placements.iter().filter(|p| p.node == node).collect()
    };
    let create_id = |p: &Placement| format!("create-{}-{}", p.node, p.replica);
    let mut out: Vec<Instruction> = Vec::new();
    // 1. create_resource for every placed replica.
    for p in &v.placements {
        if let Some(site) = &p.site {
            out.push(Instruction {
                id: create_id(p),
                kind: "create_resource".into(),
                node: p.node.clone(),
                site: Some(site.clone()),
                depends_on: vec![],
                description: format!("hold capacity for {}#{} on {}", p.node, p.replica, site),
                params: json!({"host": p.host, "resource_id": p.resource_id, "cost_per_hour": p.cost_per_hour}),
            });
        }
    }
    // The step that makes node `d` ready for its dependents.
    let ready_of = |d: &ConcreteNode| -> Vec<String> {
        match d.ty.as_str() {
            "storage" => vec![format!("mount-{}", d.name)],
            "network" => vec![format!("net-{}", d.name)],
            "security" => vec![format!("sec-{}", d.name)],
            _ => reps(&d.name)
                .iter()
                .filter(|p| p.site.is_some())
                .map(|p| format!("deploy-{}-{}", p.node, p.replica))
                .collect(),
        }
    };
    // Who uses each network/security/storage node: their create steps.
    let users_creates = |name: &str| -> Vec<String> {
        nodes
            .iter()
            .filter(|n| {
                n.depends_on.iter().any(|d| d == name)
                    || n.connects_to.iter().any(|c| c.node == name)
            })
            .flat_map(|n| reps(&n.name))
            .filter(|p| p.site.is_some())
            .map(create_id)
            .collect()
    };
    for n in &nodes {
        let sites: Vec<String> = {
            let mut s: Vec<String> = reps(&n.name)
                .iter()
                .filter_map(|p| p.site.clone())
                .collect();
            s.sort();
            s.dedup();
            s
        };
        match n.ty.as_str() {
            "storage" => out.push(Instruction {
                id: format!("mount-{}", n.name),
                kind: "mount_storage".into(),
                node: n.name.clone(),
                site: sites.first().cloned(),
                depends_on: reps(&n.name)
                    .iter()
                    .filter(|p| p.site.is_some())
                    .map(|p| create_id(p))
                    .chain(users_creates(&n.name))
                    .collect(),
                description: format!(
                    "mount {} GiB volume {} for its users",
                    n.storage_gib, n.name
                ),
                params: json!({"storage_gib": n.storage_gib, "sites": sites}),
            }),
            "network" => out.push(Instruction {
                id: format!("net-{}", n.name),
                kind: "configure_network".into(),
                node: n.name.clone(),
                site: None,
                depends_on: users_creates(&n.name),
                description: format!("network {} between the sites of its users", n.name),
                params: json!({"bandwidth_gbps": n.bandwidth_gbps}),
            }),
            "security" => out.push(Instruction {
                id: format!("sec-{}", n.name),
                kind: "configure_security".into(),
                node: n.name.clone(),
                site: None,
                depends_on: users_creates(&n.name),
                description: format!("security policy {} on the sites of its users", n.name),
                params: json!({}),
            }),
            _ => {}
        }
    }
    // Links of connects_to between placed nodes.
    for n in &nodes {
        for c in &n.connects_to {
            let Some(peer) = by_name.get(c.node.as_str()) else {
                continue;
            };
            if !peer.is_placed() || !n.is_placed() {
                continue;
            }
            let deps: Vec<String> = reps(&n.name)
                .into_iter()
                .chain(reps(&c.node))
                .filter(|p| p.site.is_some())
                .map(create_id)
                .collect();
            out.push(Instruction {
                id: format!("link-{}-{}", n.name, c.node),
                kind: "configure_network".into(),
                node: n.name.clone(),
                site: None,
                depends_on: deps,
                description: format!("connect {} to {}", n.name, c.node),
                params: json!({"to": c.node, "max_latency_ms": c.max_latency_ms, "min_bandwidth_gbps": c.min_bandwidth_gbps}),
            });
        }
    }
    // deploy_app per replica of compute-like nodes.
    for n in nodes.iter().filter(|n| n.is_placed() && n.ty != "storage") {
        for p in reps(&n.name).into_iter().filter(|p| p.site.is_some()) {
            let mut deps = vec![create_id(p)];
            for d in &n.depends_on {
                if let Some(dn) = by_name.get(d.as_str()) {
                    deps.extend(ready_of(dn));
                }
            }
            for c in &n.connects_to {
                if by_name.get(c.node.as_str()).is_some_and(|x| x.is_placed()) {
                    deps.push(format!("link-{}-{}", n.name, c.node));
                }
            }
            let command = if n.command.is_empty() {
                vec![
                    "sh".to_string(),
                    "-c".to_string(),
                    format!("echo deployed {}", n.name),
                ]
            } else {
                n.command.clone()
            };
            out.push(Instruction {
                id: format!("deploy-{}-{}", n.name, p.replica),
                kind: "deploy_app".into(),
                node: n.name.clone(),
                site: p.site.clone(),
                depends_on: deps,
                description: format!("deploy {}#{} on {}", n.name, p.replica, p.site.as_deref().unwrap_or("")),
                params: json!({
                    "command": command,
                    "image": n.image,
                    "resources": {"cpu_cores": n.cores, "memory_gib": n.memory_gib, "gpus": n.gpus, "storage_gib": n.storage_gib},
                }),
            });
        }
    }
    // Keep only dependencies that exist (a node may have no replica placed).
    let ids: std::collections::BTreeSet<String> = out.iter().map(|i| i.id.clone()).collect();
    for i in &mut out {
        i.depends_on.retain(|d| ids.contains(d));
        i.depends_on.sort();
        i.depends_on.dedup();
    }
    out
}

fn require_state(v: &PlanView, want: &str, doing: &str) -> ApiResult<()> {
    if v.state != want {
        return Err(ApiError::new(
            Code::InvalidState,
            format!("plan {} is {}; {doing} needs a {want} plan", v.id, v.state),
        ));
    }
    Ok(())
}

pub async fn confirm(state: &Control, who: &Caller, id: &str) -> ApiResult<PlanView> {
    let r = load(state, who, id).await?;
    let mut v = view(&r)?;
    require_state(&v, "proposed", "confirming")?;
    if !v.feasibility.compute.ok {
        return Err(ApiError::new(
            Code::InvalidState,
            format!("plan {id} does not place every node; pick another plan or re-plan"),
        ));
    }
    v.instructions = compile(&v);
    v.state = "confirmed".into();
    save(state, r, &v).await
}

pub async fn instructions(state: &Control, who: &Caller, id: &str) -> ApiResult<Vec<Instruction>> {
    Ok(get(state, who, id).await?.instructions)
}

fn check_deps(list: &[Instruction]) -> ApiResult<()> {
    for i in list {
        for d in &i.depends_on {
            if !list.iter().any(|x| &x.id == d) || d == &i.id {
                return Err(ApiError::field(
                    "depends_on",
                    format!("instruction {} depends on unknown instruction {d}", i.id),
                ));
            }
        }
    }
    Ok(())
}

pub async fn edit_instruction(
    state: &Control,
    who: &Caller,
    id: &str,
    iid: &str,
    edit: InstructionEdit,
) -> ApiResult<Instruction> {
    let r = load(state, who, id).await?;
    let mut v = view(&r)?;
    require_state(&v, "confirmed", "editing instructions")?;
    if v.version != edit.version {
        return Err(ApiError::new(
            Code::GenerationConflict,
            format!(
                "plan {id} is at version {}, not {}",
                v.version, edit.version
            ),
        ));
    }
    let Some(pos) = v.instructions.iter().position(|i| i.id == iid) else {
        return Err(ApiError::not_found("instruction", iid));
    };
    let i = &mut v.instructions[pos];
    if let Some(d) = edit.depends_on {
        i.depends_on = d;
    }
    if let Some(d) = edit.description {
        i.description = d;
    }
    if let Some(p) = edit.params {
        if i.kind == "deploy_app"
            && let Some(c) = p.get("command")
            && !c
                .as_array()
                .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_string))
        {
            return Err(ApiError::field(
                "params.command",
                "a non-empty list of strings (argv)",
            ));
        }
        if i.kind == "deploy_app"
            && let Some(r) = p.get("resources")
        {
            resources_of(r).map_err(|e| ApiError::field("params.resources", e))?;
        }
        if let Some(t) = p.get("timeout_s")
            && !t.as_f64().is_some_and(|t| t.is_finite() && t > 0.0)
        {
            return Err(ApiError::field(
                "params.timeout_s",
                "a number of seconds above 0",
            ));
        }
        i.params = p;
    }
    let edited = i.clone();
    check_deps(&v.instructions)?;
    save(state, r, &v).await?;
    Ok(edited)
}

pub async fn delete_instruction(
    state: &Control,
    who: &Caller,
    id: &str,
    iid: &str,
) -> ApiResult<PlanView> {
    let r = load(state, who, id).await?;
    let mut v = view(&r)?;
    require_state(&v, "confirmed", "deleting instructions")?;
    let before = v.instructions.len();
    v.instructions.retain(|i| i.id != iid);
    if v.instructions.len() == before {
        return Err(ApiError::not_found("instruction", iid));
    }
    for i in &mut v.instructions {
        i.depends_on.retain(|d| d != iid);
    }
    save(state, r, &v).await
}

/// The planned resources of a deploy instruction (`params.resources`) as a task's request.
fn resources_of(planned: &Value) -> Result<TaskResources, String> {
    let r: TaskResources = serde_json::from_value(planned.clone())
        .map_err(|e| format!("planned resources {planned}: {e}"))?;
    let ok = |x: f64| x.is_finite() && x >= 0.0;
    if !(ok(r.cpu_cores) && r.cpu_cores > 0.0 && ok(r.memory_gib) && ok(r.storage_gib)) {
        return Err(format!(
            "planned resources {planned}: cpu_cores above 0, memory_gib and storage_gib at least 0"
        ));
    }
    Ok(r)
}

/// The workflow an instruction set runs as (mapping in the module docs). 422 when a
/// deploy instruction's planned resources are not a resource request.
pub fn flow_definition(v: &PlanView) -> ApiResult<FlowDefinition> {
    let mut steps = Vec::new();
    for (n, i) in v.instructions.iter().enumerate() {
        let mut timeout_s = i.params.get("timeout_s").and_then(Value::as_f64);
        let action = match i.kind.as_str() {
            "deploy_app" => {
                let command: Vec<String> = i
                    .params
                    .get("command")
                    .and_then(|c| serde_json::from_value(c.clone()).ok())
                    .unwrap_or_else(|| {
                        vec![
                            "sh".into(),
                            "-c".into(),
                            format!("echo deployed {}", i.node),
                        ]
                    });
                let planned = i.params.get("resources").cloned().unwrap_or(Value::Null);
                let resources = resources_of(&planned).map_err(|e| {
                    ApiError::field(format!("instructions[{n}].params.resources"), e)
                })?;
                let mut env = BTreeMap::new();
                for k in ["cpu_cores", "memory_gib", "gpus", "storage_gib"] {
                    if let Some(x) = planned.get(k) {
                        env.insert(format!("CPN_PLANNED_{}", k.to_uppercase()), x.to_string());
                    }
                }
                env.insert("CPN_PLAN".into(), v.id.clone());
                Action::Task {
                    task: TaskSubmit {
                        name: format!("{}-{}", v.template_name, i.id),
                        command,
                        script: None,
                        env,
                        workdir: None,
                        tenant: None,
                        priority: 0,
                        resources,
                        constraints: TaskConstraints {
                            site: i.site.clone(),
                            ..Default::default()
                        },
                        origin_region: None,
                        deadline: None,
                        start_after: None,
                        replicas: None,
                        retry: Default::default(),
                        policy: None,
                        labels: Default::default(),
                        lease: None,
                    },
                }
            }
            kind => {
                // Nothing is run: no timeout applies.
                timeout_s = None;
                let mut outputs = BTreeMap::new();
                outputs.insert("instruction".into(), json!(kind));
                outputs.insert("node".into(), json!(i.node));
                outputs.insert("site".into(), json!(i.site));
                outputs.insert("params".into(), i.params.clone());
                let reason = match kind {
                    "create_resource" => {
                        "no provisioning controller: the placement is recorded, no capacity was created or held"
                    }
                    "mount_storage" => {
                        "no storage controller: the mount is described, not performed"
                    }
                    "configure_security" => {
                        "no security controller: the policy is described, not applied"
                    }
                    _ => "no SDN controller: the network configuration is described, not applied",
                };
                Action::Simulate {
                    reason: reason.into(),
                    outputs,
                }
            }
        };
        steps.push(StepDef {
            id: i.id.clone(),
            action,
            depends_on: i.depends_on.clone(),
            when: None,
            for_each: None,
            retry: StepRetry::default(),
            timeout_s,
            compensate: None,
        });
    }
    Ok(FlowDefinition {
        name: format!("plan-{}", v.id),
        description: Some(format!("{} ({})", v.template_name, v.objective)),
        inputs: v.inputs.clone(),
        steps,
        max_parallel: None,
    })
}

/// Refuses (409 `invalid_state`) when a site or resource the plan placed on changed or is
/// gone; otherwise starts the instruction set as a workflow.
pub async fn execute(state: &Control, who: &Caller, id: &str) -> ApiResult<Value> {
    let r = load(state, who, id).await?;
    let mut v = view(&r)?;
    require_state(&v, "confirmed", "executing")?;
    let mut changed = Vec::new();
    for g in &v.generations {
        let kind = if g.kind == "site" {
            Kind::Site
        } else {
            Kind::Resource
        };
        match state.store.get_object(kind, &g.id).await? {
            None => changed.push(format!("{} {} is gone", g.kind, g.name)),
            Some(o) if o.generation != g.generation => changed.push(format!(
                "{} {} changed (generation {} -> {})",
                g.kind, g.name, g.generation, o.generation
            )),
            Some(_) => {}
        }
    }
    if !changed.is_empty() {
        return Err(ApiError::new(
            Code::InvalidState,
            format!(
                "the inventory changed since plan {id} was made: {}; re-plan with POST /api/v1/templates/{}/plans",
                changed.join("; "),
                v.template_id
            ),
        ));
    }
    let def = flow_definition(&v)?;
    let flow = execute_plan(state, who, def, v.inputs.clone(), &v.id).await?;
    v.flow_id = flow.get("id").and_then(Value::as_str).map(str::to_string);
    v.state = "executing".into();
    save(state, r, &v).await?;
    Ok(flow)
}

/// Starts the workflow of a plan through the workflow engine.
async fn execute_plan(
    state: &Control,
    who: &Caller,
    def: FlowDefinition,
    inputs: BTreeMap<String, Value>,
    plan_id: &str,
) -> ApiResult<Value> {
    let flow = crate::flows::start(state, who, def, inputs, Some(plan_id.to_string())).await?;
    serde_json::to_value(flow).map_err(internal)
}

/// What a workflow's end makes of its plan's execution.
fn execution_of(f: &FlowView) -> PlanExecution {
    let ids = |want: &[StepState]| -> Vec<String> {
        f.steps
            .iter()
            .filter(|s| want.contains(&s.state))
            .map(|s| s.id.clone())
            .collect()
    };
    let succeeded = ids(&[StepState::Succeeded]);
    let simulated = ids(&[StepState::Simulated]);
    let failed = ids(&[StepState::Failed]);
    let other: Vec<String> = f
        .steps
        .iter()
        .filter(|s| {
            !matches!(
                s.state,
                StepState::Succeeded | StepState::Simulated | StepState::Failed
            )
        })
        .map(|s| s.id.clone())
        .collect();
    let mut summary = format!(
        "{} of {} steps ran for real, {} simulated (no controller behind them: nothing was done)",
        succeeded.len(),
        f.steps.len(),
        simulated.len()
    );
    if !failed.is_empty() {
        summary.push_str(&format!(", {} failed", failed.len()));
    }
    if !other.is_empty() {
        summary.push_str(&format!(", {} did not run to the end", other.len()));
    }
    PlanExecution {
        flow_state: f.state,
        succeeded,
        simulated,
        failed,
        other,
        error: f.error.clone(),
        ended_at: f.updated_at,
        summary,
    }
}

/// The plan state a workflow's end leads to, `None` while it runs.
fn state_after(f: FlowState) -> Option<&'static str> {
    match f {
        FlowState::Succeeded => Some("completed"),
        FlowState::Failed => Some("failed"),
        FlowState::Cancelled => Some("cancelled"),
        FlowState::Running | FlowState::Paused | FlowState::Compensating => None,
    }
}

/// Moves an executing plan to the state its ended workflow (`flow`, the workflow's
/// document) leads to, with its `execution`. Called by the workflow engine when a plan's
/// workflow ends; nothing happens for a workflow still running or a plan not executing it.
pub async fn follow_flow(state: &Control, plan_id: &str, flow: &DocRecord) {
    if let Err(e) = try_follow(state, plan_id, flow).await {
        tracing::warn!(plan = %plan_id, flow = %flow.id, error = %e, "moving a plan to its workflow's end");
    }
}

async fn try_follow(state: &Control, plan_id: &str, flow: &DocRecord) -> ApiResult<()> {
    let f = crate::flows::view_of(flow)?;
    let Some(to) = state_after(f.state) else {
        return Ok(());
    };
    for _ in 0..5 {
        let Some(r) = state.store.get_doc(PLANS, plan_id).await? else {
            return Ok(());
        };
        let mut v = view(&r)?;
        if v.state != "executing" || v.flow_id.as_deref() != Some(flow.id.as_str()) {
            return Ok(());
        }
        v.state = to.into();
        v.execution = Some(execution_of(&f));
        match save(state, r, &v).await {
            Ok(_) => return Ok(()),
            Err(e) if e.code == Code::GenerationConflict => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `r`, moved to its workflow's end first if that workflow ended while the plan still says
/// `executing` (the server stopped between the two writes).
async fn synced(state: &Control, r: DocRecord) -> ApiResult<DocRecord> {
    if r.state != "executing" {
        return Ok(r);
    }
    let Some(flow_id) = r.body.get("flow_id").and_then(Value::as_str) else {
        return Ok(r);
    };
    match state.store.get_doc(crate::flows::FLOWS, flow_id).await? {
        Some(flow) if matches!(flow.state.as_str(), "succeeded" | "failed" | "cancelled") => {
            try_follow(state, &r.id, &flow).await?;
            Ok(state.store.get_doc(PLANS, &r.id).await?.unwrap_or(r))
        }
        _ => Ok(r),
    }
}
