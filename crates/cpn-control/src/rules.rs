//! Ops orchestration rules (DO-OPS-01..04): stored as documents in the collection `rules`,
//! evaluated every second. A metric rule fires when the mean of its metric over the watched
//! nodes has been past the threshold for `for_s`; a cron rule once in each matching
//! minute; an event rule on each matching event. After firing, a rule rests `cooldown_s`.
//! Every firing is kept on the rule with what its action did and published as an
//! `ops.rule` event.

use crate::caller::{Actor, Caller, SystemActor};
use crate::error::{ApiError, ApiResult};
use crate::runtime::operations;
use crate::state::Control;
use chrono::{DateTime, Datelike, Timelike, Utc};
use cpn_api_types::Code;
use cpn_api_types::agent::NodeMetrics;
use cpn_api_types::identity::Role;
use cpn_api_types::operations::{OpKind, OpTarget, OperationRequest, TargetKind};
use cpn_api_types::rules::{MetricName, RuleAction, RuleFiring, RuleSpec, RuleView, Trigger};
use cpn_api_types::tasks::TaskState;
use cpn_store::{DocQuery, DocRecord, NewEvent};
use std::collections::HashMap;
use std::time::Duration;

pub const COLLECTION: &str = "rules";
const KEEP_FIRINGS: usize = 50;

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Body {
    spec: Option<RuleSpec>,
    #[serde(default)]
    firings: Vec<RuleFiring>,
}

/// Checks what serde cannot: names, thresholds, cron syntax.
pub fn validate(spec: &RuleSpec) -> ApiResult<()> {
    if spec.name.trim().is_empty() {
        return Err(ApiError::field("name", "must not be empty"));
    }
    if !(spec.cooldown_s.is_finite() && spec.cooldown_s >= 0.0) {
        return Err(ApiError::field("cooldown_s", "must be a number >= 0"));
    }
    match &spec.trigger {
        Trigger::Metric {
            above,
            below,
            for_s,
            group,
            node,
            site,
            ..
        } => {
            if above.is_some() == below.is_some() {
                return Err(ApiError::field(
                    "trigger.above",
                    "give exactly one of above and below",
                ));
            }
            if !(for_s.is_finite() && *for_s >= 0.0) {
                return Err(ApiError::field("trigger.for_s", "must be a number >= 0"));
            }
            if [group, node, site].iter().filter(|x| x.is_some()).count() != 1 {
                return Err(ApiError::field(
                    "trigger.group",
                    "watch exactly one of group (a service), node or site",
                ));
            }
        }
        Trigger::Cron { schedule } => {
            cpn_model::cron::Cron::parse(schedule)
                .map_err(|e| ApiError::field("trigger.schedule", e.to_string()))?;
        }
        Trigger::Event { event_type, .. } => {
            if event_type.is_empty() {
                return Err(ApiError::field("trigger.event_type", "must not be empty"));
            }
        }
    }
    if let RuleAction::ScaleOut { by: 0, .. } | RuleAction::ScaleIn { by: 0, .. } = spec.action {
        return Err(ApiError::field("action.by", "must be at least 1"));
    }
    Ok(())
}

fn view(d: DocRecord) -> ApiResult<RuleView> {
    let body: Body = serde_json::from_value(d.body)
        .map_err(|e| ApiError::new(Code::Internal, format!("stored rule {}: {e}", d.id)))?;
    Ok(RuleView {
        id: d.id,
        version: d.version,
        spec: body
            .spec
            .ok_or_else(|| ApiError::new(Code::Internal, "stored rule has no spec"))?,
        created_at: d.created_at,
        firings: body.firings,
    })
}

fn require_operator(who: &Caller) -> ApiResult<()> {
    if who.is_operator() {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "ops rules act on the federation: operators only",
        ))
    }
}

pub async fn create(state: &Control, who: &Caller, spec: RuleSpec) -> ApiResult<RuleView> {
    require_operator(who)?;
    validate(&spec)?;
    let now = Utc::now();
    let doc = DocRecord {
        collection: COLLECTION.into(),
        id: format!("rule-{}", uuid::Uuid::now_v7().simple()),
        tenant: who.tenant.clone(),
        owner: who.username.clone(),
        name: spec.name.clone(),
        state: if spec.enabled { "enabled" } else { "disabled" }.into(),
        version: 0,
        created_at: now,
        updated_at: now,
        body: serde_json::to_value(Body {
            spec: Some(spec),
            firings: Vec::new(),
        })
        .map_err(|e| ApiError::new(Code::Internal, e.to_string()))?,
    };
    view(state.store.create_doc(doc, Vec::new()).await?)
}

pub async fn list(state: &Control, who: &Caller) -> ApiResult<Vec<RuleView>> {
    require_operator(who)?;
    state
        .store
        .list_docs(COLLECTION, DocQuery::default())
        .await?
        .into_iter()
        .map(view)
        .collect()
}

async fn load(state: &Control, id: &str) -> ApiResult<DocRecord> {
    state
        .store
        .get_doc(COLLECTION, id)
        .await?
        .ok_or_else(|| ApiError::not_found("rule", id))
}

pub async fn get(state: &Control, who: &Caller, id: &str) -> ApiResult<RuleView> {
    require_operator(who)?;
    view(load(state, id).await?)
}

pub async fn delete(state: &Control, who: &Caller, id: &str) -> ApiResult<()> {
    require_operator(who)?;
    Ok(state.store.delete_doc(COLLECTION, id).await?)
}

pub async fn set_enabled(
    state: &Control,
    who: &Caller,
    id: &str,
    enabled: bool,
) -> ApiResult<RuleView> {
    require_operator(who)?;
    for _ in 0..5 {
        let mut doc = load(state, id).await?;
        let mut body: Body = serde_json::from_value(doc.body.clone()).unwrap_or_default();
        if let Some(s) = body.spec.as_mut() {
            s.enabled = enabled;
        }
        doc.state = if enabled { "enabled" } else { "disabled" }.into();
        doc.updated_at = Utc::now();
        doc.body = serde_json::to_value(&body)
            .map_err(|e| ApiError::new(Code::Internal, e.to_string()))?;
        match state.store.update_doc(doc, Vec::new()).await {
            Ok(d) => return view(d),
            Err(cpn_store::StoreError::StaleVersion { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::new(
        Code::GenerationConflict,
        "the rule kept changing; try again",
    ))
}

// ---------------------------------------------------------------- evaluation

/// What the evaluator remembers between ticks (not persisted: a restart re-arms timers).
#[derive(Default)]
struct Memory {
    /// Since when each metric rule's condition has held.
    holding_since: HashMap<String, DateTime<Utc>>,
    last_fired: HashMap<String, DateTime<Utc>>,
    /// The minute a cron rule last fired in.
    cron_minute: HashMap<String, i64>,
    /// Event id the event rules have looked at.
    event_cursor: Option<u64>,
}

pub async fn run(state: Control) {
    let mut memory = Memory::default();
    loop {
        if let Err(e) = tick(&state, &mut memory).await {
            tracing::warn!(error = %e, "ops rule evaluation failed");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn metric_of(m: &NodeMetrics, name: MetricName) -> Option<f64> {
    match name {
        MetricName::CpuUtilPct => Some(m.cpu_util_pct),
        MetricName::MemoryUtilPct => Some(m.memory_util_pct),
        MetricName::Load1 => Some(m.load1),
        MetricName::GpuUtilPct => (!m.gpus.is_empty())
            .then(|| m.gpus.iter().map(|g| g.util_pct).sum::<f64>() / m.gpus.len() as f64),
    }
}

/// Node ids a metric rule watches.
async fn watched(state: &Control, trigger: &Trigger) -> ApiResult<Vec<String>> {
    let Trigger::Metric {
        group, node, site, ..
    } = trigger
    else {
        return Ok(Vec::new());
    };
    if let Some(g) = group {
        let mut nodes: Vec<String> = crate::runtime::tasks::group(state, g)
            .await?
            .into_iter()
            .filter(|t| t.state == TaskState::Running.as_str())
            .filter_map(|t| t.node_id)
            .collect();
        nodes.sort();
        nodes.dedup();
        return Ok(nodes);
    }
    if let Some(n) = node {
        return Ok(vec![crate::runtime::nodes::resolve(state, n).await?.id]);
    }
    let site = site.as_deref().unwrap_or_default();
    Ok(state
        .store
        .list_nodes()
        .await?
        .into_iter()
        .filter(|n| n.site == site && n.ready)
        .map(|n| n.id)
        .collect())
}

async fn tick(state: &Control, memory: &mut Memory) -> ApiResult<()> {
    let now = Utc::now();
    let rules = state
        .store
        .list_docs(
            COLLECTION,
            DocQuery {
                state: Some("enabled".into()),
                ..Default::default()
            },
        )
        .await?;
    // New events since the last tick, for event rules (none replayed at start).
    let last = state.store.last_event_seq().await?;
    let cursor = *memory.event_cursor.get_or_insert(last);
    let events = if last > cursor {
        state.store.events_after(cursor, 1000).await?
    } else {
        Vec::new()
    };
    memory.event_cursor = Some(events.last().map_or(last, |e| e.seq));
    for doc in rules {
        let Ok(rule) = view(doc.clone()) else {
            continue;
        };
        let spec = &rule.spec;
        let resting = memory
            .last_fired
            .get(&rule.id)
            .is_some_and(|t| (now - *t).num_milliseconds() as f64 / 1000.0 < spec.cooldown_s);
        let fired: Option<(String, Option<String>)> = match &spec.trigger {
            Trigger::Metric {
                metric,
                above,
                below,
                for_s,
                ..
            } => {
                let nodes = watched(state, &spec.trigger).await?;
                let values: Vec<(String, f64)> = nodes
                    .iter()
                    .filter_map(|id| {
                        state
                            .runtime
                            .with_live(id, |l| {
                                l.metrics.as_ref().and_then(|m| metric_of(m, *metric))
                            })
                            .map(|v| (id.clone(), v))
                    })
                    .collect();
                let mean = (!values.is_empty())
                    .then(|| values.iter().map(|(_, v)| v).sum::<f64>() / values.len() as f64);
                let holds = mean
                    .is_some_and(|m| above.is_some_and(|a| m > a) || below.is_some_and(|b| m < b));
                if !holds {
                    memory.holding_since.remove(&rule.id);
                    None
                } else {
                    let since = *memory.holding_since.entry(rule.id.clone()).or_insert(now);
                    let held = (now - since).num_milliseconds() as f64 / 1000.0;
                    (held >= *for_s).then(|| {
                        let m = mean.unwrap_or_default();
                        let (op, t) = match (above, below) {
                            (Some(a), _) => (">", *a),
                            (_, Some(b)) => ("<", *b),
                            _ => ("?", 0.0),
                        };
                        let hottest = values
                            .iter()
                            .max_by(|a, b| a.1.total_cmp(&b.1))
                            .map(|(id, _)| id.clone());
                        (
                            format!(
                                "{metric:?} {m:.1} {op} {t} over {} node(s) for {held:.0} s",
                                values.len()
                            ),
                            hottest,
                        )
                    })
                }
            }
            Trigger::Cron { schedule } => {
                let cron = cpn_model::cron::Cron::parse(schedule).ok();
                let minute = now.timestamp() / 60;
                let due = cron.is_some_and(|c| {
                    c.matches(
                        now.minute(),
                        now.hour(),
                        now.day(),
                        now.month(),
                        now.weekday().num_days_from_sunday(),
                    )
                }) && memory.cron_minute.get(&rule.id) != Some(&minute);
                due.then(|| {
                    memory.cron_minute.insert(rule.id.clone(), minute);
                    (format!("cron {schedule} at {}", now.format("%H:%M")), None)
                })
            }
            Trigger::Event { event_type, alarm } => events
                .iter()
                .find(|e| {
                    e.event.event_type == *event_type
                        && alarm
                            .as_ref()
                            .is_none_or(|a| e.event.data["kind"].as_str() == Some(a.as_str()))
                })
                .map(|e| {
                    let node = e.event.data["node_id"].as_str().map(String::from);
                    (
                        format!(
                            "event {} #{}: {}",
                            e.event.event_type, e.seq, e.event.message
                        ),
                        node,
                    )
                }),
        };
        let Some((reason, node)) = fired else {
            continue;
        };
        if resting {
            continue;
        }
        memory.last_fired.insert(rule.id.clone(), now);
        memory.holding_since.remove(&rule.id);
        let (ok, result) = match act(state, &doc, &spec.action, node.as_deref()).await {
            Ok(r) => (true, r),
            Err(e) => (false, e.to_string()),
        };
        tracing::info!(rule = %spec.name, %reason, ok, %result, "ops rule fired");
        record(
            state,
            &rule.id,
            RuleFiring {
                at: now,
                reason,
                ok,
                result,
            },
        )
        .await?;
    }
    Ok(())
}

/// Runs a rule's action as the rules engine (`system:rules`), with operator rights in the
/// rule's tenant, and only while the rule's owner is still an enabled operator: a rule
/// must not keep acting for someone who lost the right to create it.
async fn act(
    state: &Control,
    doc: &DocRecord,
    action: &RuleAction,
    node: Option<&str>,
) -> ApiResult<String> {
    let owner = state.store.find_user(&doc.owner).await?;
    if !owner
        .as_ref()
        .is_some_and(|u| !u.disabled && u.role == Role::Operator.as_str())
    {
        return Err(ApiError::forbidden(format!(
            "the rule's owner {:?} is no longer an enabled operator; the rule does not act",
            doc.owner
        )));
    }
    let who = Actor::System(SystemActor::Rules {
        tenant: doc.tenant.clone(),
    });
    let active = |recs: Vec<cpn_store::TaskRecord>| -> Vec<cpn_store::TaskRecord> {
        recs.into_iter()
            .filter(|t| TaskState::parse(&t.state).is_some_and(|s| !s.is_terminal()))
            .collect()
    };
    match action {
        RuleAction::ScaleOut {
            group,
            by,
            max_replicas,
        } => {
            let now_active = active(crate::runtime::tasks::group(state, group).await?).len() as u32;
            let add = (*by).min(max_replicas.saturating_sub(now_active));
            if add == 0 {
                return Ok(format!(
                    "{group} already has {now_active} replicas (max {max_replicas})"
                ));
            }
            let ids = crate::runtime::tasks::add_replicas(state, group, add).await?;
            Ok(format!(
                "scaled {group} out from {now_active} to {} replicas: {}",
                now_active + add,
                ids.join(", ")
            ))
        }
        RuleAction::ScaleIn {
            group,
            by,
            min_replicas,
        } => {
            let mut live = active(crate::runtime::tasks::group(state, group).await?);
            live.sort_by_key(|t| t.seq);
            let n = live.len() as u32;
            let remove = (*by).min(n.saturating_sub(*min_replicas));
            let mut cancelled = Vec::new();
            for t in live.iter().rev().take(remove as usize) {
                crate::runtime::tasks::cancel(state, &who, &t.id).await?;
                cancelled.push(t.id.clone());
            }
            Ok(format!(
                "scaled {group} in from {n} to {} replicas: cancelled {}",
                n - remove,
                cancelled.join(", ")
            ))
        }
        RuleAction::Redeploy { group } => {
            let live = active(crate::runtime::tasks::group(state, group).await?);
            for t in &live {
                crate::runtime::tasks::cancel(state, &who, &t.id).await?;
            }
            let ids =
                crate::runtime::tasks::add_replicas(state, group, live.len().max(1) as u32).await?;
            Ok(format!(
                "redeployed {group}: {} replaced by {}",
                live.len(),
                ids.join(", ")
            ))
        }
        RuleAction::IsolateNode { node: named } => {
            let target = named.as_deref().or(node).ok_or_else(|| {
                ApiError::bad_request("no node to isolate: the trigger named none")
            })?;
            let mut done = Vec::new();
            for op in [OpKind::Isolate, OpKind::Reclaim] {
                let view = operations::execute(
                    state,
                    &who,
                    OperationRequest {
                        op,
                        target: Some(OpTarget {
                            kind: TargetKind::Node,
                            name: target.to_string(),
                        }),
                        resources: None,
                        allocation: None,
                        tenant: None,
                        enable: None,
                        reason: Some("ops rule".into()),
                    },
                )
                .await?;
                done.push(format!("{} ({})", view.id, op.as_str()));
            }
            Ok(format!(
                "isolated {target} and moved its work: {}",
                done.join(", ")
            ))
        }
        RuleAction::RunTask { task } => {
            let t = crate::runtime::tasks::submit(state, &who, (**task).clone()).await?;
            Ok(format!("submitted {}", t.id))
        }
    }
}

async fn record(state: &Control, id: &str, firing: RuleFiring) -> ApiResult<()> {
    for _ in 0..5 {
        let Some(mut doc) = state.store.get_doc(COLLECTION, id).await? else {
            return Ok(());
        };
        let mut body: Body = serde_json::from_value(doc.body.clone()).unwrap_or_default();
        body.firings.push(firing.clone());
        if body.firings.len() > KEEP_FIRINGS {
            let extra = body.firings.len() - KEEP_FIRINGS;
            body.firings.drain(..extra);
        }
        doc.body = serde_json::to_value(&body)
            .map_err(|e| ApiError::new(Code::Internal, e.to_string()))?;
        doc.updated_at = Utc::now();
        let event = NewEvent {
            at: firing.at,
            event_type: "ops.rule".into(),
            subject: id.to_string(),
            tenant: doc.tenant.clone(),
            severity: if firing.ok { "info" } else { "warning" }.into(),
            message: format!(
                "rule {} fired: {} → {}",
                doc.name, firing.reason, firing.result
            ),
            data: serde_json::to_value(&firing).unwrap_or_default(),
        };
        match state.store.update_doc(doc, vec![event]).await {
            Ok(_) => {
                state.runtime.events_written();
                return Ok(());
            }
            Err(cpn_store::StoreError::StaleVersion { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
