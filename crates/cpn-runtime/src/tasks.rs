//! Tasks through the API (IF-I1-01/02): submit, read, list, cancel, logs.

use super::lifecycle::{self, Task};
use crate::RuntimeState;
use crate::access::violations_to_error;
use crate::caller::{Actor, Caller};
use crate::error::{ApiError, ApiResult};
use chrono::Utc;
use cpn_api_types::Page;
use cpn_api_types::registry::{Validate, Violations};
use cpn_api_types::schedule::{TaskResources, TaskSpec};
use cpn_api_types::tasks::{LogStream, TaskState, TaskSubmit, TaskSubmitted, TaskView};
use cpn_sched::task::Demand;
use cpn_store::{NewEvent, TaskOrder, TaskQuery, TaskRecord, TaskWrite};
use std::sync::atomic::Ordering;

/// Label every live site carries, so `constraints.site` is a plain site selector.
pub const SITE_NAME_LABEL: &str = "cpn.site/name";

pub fn gpu_milli_of(r: &TaskResources) -> u32 {
    match (r.gpus, r.gpu_share) {
        (0, _) => 0,
        (_, Some(share)) => ((share * 1000.0).round() as u32).clamp(1, 1000),
        (_, None) => 1000,
    }
}

pub fn demand_of(r: &TaskResources) -> Demand {
    Demand {
        cpu_milli: (r.cpu_cores * 1000.0).round() as u64,
        memory_mib: (r.memory_gib * 1024.0).round() as u64,
        gpus: r.gpus,
        gpu_milli: gpu_milli_of(r),
        storage_gib: r.storage_gib.ceil() as u64,
    }
}

/// The scheduler's view of a submission (the same shape explain and dry-run take).
pub fn placement_spec(spec: &TaskSubmit, tenant: &str) -> TaskSpec {
    let c = &spec.constraints;
    let site_selector = match (&c.site_selector, &c.site) {
        (Some(sel), Some(site)) => Some(format!("{sel},{SITE_NAME_LABEL}={site}")),
        (None, Some(site)) => Some(format!("{SITE_NAME_LABEL}={site}")),
        (sel, None) => sel.clone(),
    };
    TaskSpec {
        name: spec.name.clone(),
        tenant: Some(tenant.to_string()),
        origin_region: spec.origin_region.clone(),
        priority: spec.priority,
        resources: spec.resources.clone(),
        chip: c.chip,
        models: c.models.clone(),
        regions_in: c.regions_in.clone(),
        regions_not_in: c.regions_not_in.clone(),
        site_selector,
        node_selector: c.node_selector.clone(),
        labels: spec.labels.clone(),
        ..Default::default()
    }
}

fn new_task_id() -> String {
    format!("task-{}", uuid::Uuid::now_v7().simple())
}

pub async fn submit(
    state: &RuntimeState,
    who: impl Into<Actor>,
    spec: TaskSubmit,
) -> ApiResult<TaskSubmitted> {
    let who: &Actor = &who.into();
    submit_as(state, who, spec, None).await
}

/// Submits with a chosen id for the first replica (a workflow step's, derived from the
/// flow, step and attempt): submitting the same id twice fails with `AlreadyExists`, which
/// is how a caller that crashed mid-submit finds out it had submitted already.
pub async fn submit_as(
    state: &RuntimeState,
    who: impl Into<Actor>,
    spec: TaskSubmit,
    id: Option<String>,
) -> ApiResult<TaskSubmitted> {
    let who: &Actor = &who.into();
    let mut v = Violations::default();
    spec.validate(&mut v);
    violations_to_error(v)?;
    let tenant = match &spec.tenant {
        Some(t) if t != who.tenant() && !who.is_operator() => {
            return Err(ApiError::forbidden(
                "only operators may submit tasks for another tenant",
            ));
        }
        Some(t) => {
            if state.store.find_tenant(t).await?.is_none() {
                return Err(ApiError::field("tenant", format!("no tenant named {t:?}")));
            }
            t.clone()
        }
        None => who.tenant().to_string(),
    };
    state.hooks.admit_task(state, &tenant, spec.lease).await?;
    // Selectors and the rest are checked now, not at the first placement try.
    crate::placement::task_from_spec(who, &placement_spec(&spec, &tenant), 0).map_err(
        |e| match e.field {
            Some(f) => ApiError::field(
                f.replace("task.", "constraints.")
                    .replace("constraints.resources", "resources"),
                e.message,
            ),
            None => e,
        },
    )?;
    if let Some(p) = &spec.policy
        && p != crate::policy::DEFAULT_POLICY
        && state
            .store
            .find_object_by_name(cpn_model::Kind::Policy, p)
            .await?
            .is_none()
    {
        return Err(ApiError::field("policy", format!("no policy named {p:?}")));
    }
    let first = id.unwrap_or_else(new_task_id);
    let replicas = spec.replicas.unwrap_or(1);
    let ids: Vec<(String, String)> = (0..replicas)
        .map(|k| {
            let name = if replicas > 1 {
                format!("{}-{k}", spec.name)
            } else {
                spec.name.clone()
            };
            (lifecycle::replica_id(&first, k), name)
        })
        .collect();
    let now = Utc::now();
    let (records, events) = new_records(&spec, &tenant, who.name(), &ids, now)?;
    let stored = state.store.create_tasks(records, events).await?;
    let rt = &state.runtime;
    rt.counters
        .tasks_submitted
        .fetch_add(stored.len() as u64, Ordering::Relaxed);
    rt.events_written();
    rt.binder_wake.notify_one();
    let replica_ids: Vec<String> = stored.iter().map(|r| r.id.clone()).collect();
    let task = decode(stored.into_iter().next().expect("at least one replica"))?.view(now);
    Ok(TaskSubmitted {
        id: task.id.clone(),
        state: task.state,
        replica_ids,
        task,
    })
}

/// Pending task records (with their `task.state` events) for the given (id, name) pairs.
fn new_records(
    spec: &TaskSubmit,
    tenant: &str,
    owner: &str,
    ids: &[(String, String)],
    now: chrono::DateTime<Utc>,
) -> ApiResult<(Vec<TaskRecord>, Vec<NewEvent>)> {
    let spec_json = serde_json::to_value(spec)
        .map_err(|e| ApiError::new(cpn_api_types::Code::Internal, e.to_string()))?;
    let status = lifecycle::TaskStatus {
        history: vec![cpn_api_types::tasks::StateChange {
            state: TaskState::Pending,
            at: now,
            attempt: 0,
            reason: None,
        }],
        ..Default::default()
    };
    let status = serde_json::to_value(&status).expect("status encodes");
    let mut records = Vec::with_capacity(ids.len());
    let mut events = Vec::with_capacity(ids.len());
    for (id, name) in ids {
        events.push(NewEvent {
            at: now,
            event_type: cpn_api_types::events::types::TASK_STATE.into(),
            subject: id.clone(),
            tenant: tenant.to_string(),
            severity: "info".into(),
            message: format!("submitted by {owner}"),
            data: serde_json::json!({"name": name, "state": "pending", "attempt": 0}),
        });
        records.push(TaskRecord {
            seq: 0,
            id: id.clone(),
            tenant: tenant.to_string(),
            owner: owner.to_string(),
            name: name.clone(),
            state: TaskState::Pending.as_str().into(),
            priority: spec.priority,
            attempt: 0,
            node_id: None,
            not_before: spec.start_after.filter(|t| *t > now),
            submitted_at: now,
            updated_at: now,
            spec: spec_json.clone(),
            status: status.clone(),
        });
    }
    Ok((records, events))
}

/// The tasks of a submission (its replicas), by the id of the first one.
pub async fn group(state: &RuntimeState, group: &str) -> ApiResult<Vec<TaskRecord>> {
    let prefix = format!("{group}-r");
    Ok(state
        .store
        .list_tasks(TaskQuery::default())
        .await?
        .into_iter()
        .filter(|t| {
            t.id == group
                || t.id
                    .strip_prefix(&prefix)
                    .is_some_and(|k| k.parse::<u32>().is_ok())
        })
        .collect())
}

/// Adds `by` replicas to a submission (scale out): same spec, owner and tenant as its
/// first task, ids `{group}-r{k}` after the highest one.
pub async fn add_replicas(state: &RuntimeState, group_id: &str, by: u32) -> ApiResult<Vec<String>> {
    let members = group(state, group_id).await?;
    let first = members
        .iter()
        .find(|t| t.id == group_id)
        .ok_or_else(|| ApiError::not_found("task", group_id))?;
    let first = decode(first.clone())?;
    let next = members
        .iter()
        .filter_map(|t| lifecycle::split_replica(&t.id).1.checked_add(1))
        .max()
        .unwrap_or(1);
    let mut spec = first.spec.clone();
    spec.replicas = None;
    let ids: Vec<(String, String)> = (next..next + by)
        .map(|k| {
            (
                lifecycle::replica_id(group_id, k),
                format!("{}-{k}", spec.name),
            )
        })
        .collect();
    let (records, events) = new_records(
        &spec,
        &first.record.tenant,
        &first.record.owner,
        &ids,
        Utc::now(),
    )?;
    let stored = state.store.create_tasks(records, events).await?;
    state
        .runtime
        .counters
        .tasks_submitted
        .fetch_add(stored.len() as u64, Ordering::Relaxed);
    state.runtime.events_written();
    state.runtime.binder_wake.notify_one();
    Ok(stored.into_iter().map(|r| r.id).collect())
}

pub fn decode(rec: TaskRecord) -> ApiResult<Task> {
    Task::decode(rec).map_err(|e| ApiError::new(cpn_api_types::Code::Internal, e))
}

/// A task the caller may see (another tenant's answers 404, as for registry objects).
pub async fn load(state: &RuntimeState, who: impl Into<Actor>, id: &str) -> ApiResult<Task> {
    let who: &Actor = &who.into();
    let rec = state
        .store
        .get_task(id)
        .await?
        .filter(|r| who.is_operator() || r.tenant == who.tenant())
        .ok_or_else(|| ApiError::not_found("task", id))?;
    decode(rec)
}

pub async fn get(state: &RuntimeState, who: &Caller, id: &str) -> ApiResult<TaskView> {
    Ok(load(state, who, id).await?.view(Utc::now()))
}

/// Which tasks to list (parsed at the edge, `query`).
pub struct TaskFilter {
    /// Tasks per page, 1 to 1,000.
    pub limit: usize,
    /// The cursor: tasks after this sequence number.
    pub after_seq: Option<i64>,
    /// Any of these states; all when empty.
    pub states: Vec<TaskState>,
    /// Another tenant's tasks (operators only).
    pub tenant: Option<String>,
    /// Tasks on this node (id or `site/name`), among the nodes the caller may see.
    pub node: Option<String>,
    pub name: Option<String>,
    pub newest_first: bool,
}

pub async fn list(
    state: &RuntimeState,
    who: &Caller,
    filter: TaskFilter,
) -> ApiResult<Page<TaskView>> {
    let TaskFilter {
        limit,
        after_seq,
        states,
        tenant,
        node,
        name,
        newest_first,
    } = filter;
    let states = states.iter().map(|s| s.as_str().to_string()).collect();
    let tenant = match tenant {
        Some(t) if !who.is_operator() && t != who.tenant => {
            return Err(ApiError::forbidden(
                "only operators may list other tenants' tasks",
            ));
        }
        Some(t) => Some(t),
        None => (!who.is_operator()).then(|| who.tenant.clone()),
    };
    let node_id = match node {
        Some(n) => Some(super::nodes::resolve_visible(state, who, &n).await?.id),
        None => None,
    };
    let order = if newest_first {
        TaskOrder::Newest
    } else {
        TaskOrder::Seq
    };
    let rows = state
        .store
        .list_tasks(TaskQuery {
            tenant,
            states,
            node_id,
            name,
            after_seq,
            limit: Some(limit + 1),
            order,
            ..Default::default()
        })
        .await?;
    let now = Utc::now();
    let more = rows.len() > limit;
    let mut items = Vec::with_capacity(limit);
    let mut last = None;
    for rec in rows.into_iter().take(limit) {
        last = Some(rec.seq);
        items.push(decode(rec)?.view(now));
    }
    Ok(Page {
        items,
        next_cursor: if more {
            last.map(|s| s.to_string())
        } else {
            None
        },
    })
}

pub async fn cancel(state: &RuntimeState, who: impl Into<Actor>, id: &str) -> ApiResult<TaskView> {
    let who: &Actor = &who.into();
    let by = who.name().to_string();
    stop(state, who, id, |task, now| task.cancel(now, &by)).await
}

/// A lease ended (released, expired, its budget spent): its tasks end with it. A scheduled
/// or running one is cancelled (its node's agent stops its processes), a waiting one fails
/// with reason "lease ended". Reads the tenant's unfinished tasks once; a task that fails to
/// end is logged (the binder fails a waiting one whose lease holds nothing).
pub async fn end_in_lease(state: &RuntimeState, lease: u64, tenant: &str) {
    let unfinished = state
        .store
        .list_tasks(TaskQuery {
            tenant: Some(tenant.to_string()),
            states: ["pending", "scheduled", "running"]
                .map(String::from)
                .to_vec(),
            ..Default::default()
        })
        .await;
    let recs = match unfinished {
        Ok(recs) => recs,
        Err(e) => {
            tracing::warn!(lease, error = %e, "listing the tasks of an ended lease failed");
            return;
        }
    };
    let who = Actor::System(crate::caller::SystemActor::Binder {
        tenant: tenant.to_string(),
    });
    let by = format!("the end of lease {lease}");
    let why = format!("lease {lease} ended");
    for rec in recs {
        let id = rec.id.clone();
        if decode(rec).ok().and_then(|t| t.spec.lease) != Some(lease) {
            continue;
        }
        let ended = stop(state, &who, &id, |task, now| {
            if task.state() == TaskState::Pending {
                task.abandon(now, "lease ended", &why)
            } else {
                task.cancel(now, &by)
            }
        })
        .await;
        if let Err(e) = ended {
            tracing::warn!(lease, task = %id, error = %e, "ending a task of an ended lease failed");
        }
    }
}

/// Ends a task that has not ended: `end` makes its last step (a cancel, a failure); an
/// active one's processes are stopped on its node.
async fn stop(
    state: &RuntimeState,
    who: &Actor,
    id: &str,
    end: impl Fn(&mut Task, chrono::DateTime<Utc>) -> Vec<NewEvent>,
) -> ApiResult<TaskView> {
    for _ in 0..5 {
        let mut task = load(state, who, id).await?;
        if !who.is_operator()
            && task.record.owner != who.name()
            && task.record.tenant != who.tenant()
        {
            return Err(ApiError::forbidden(
                "you may cancel only your tenant's tasks",
            ));
        }
        let st = task.state();
        if st.is_terminal() {
            return Err(ApiError::new(
                cpn_api_types::Code::InvalidState,
                format!(
                    "task {id} is already {}; only pending, scheduled or running tasks can be cancelled",
                    st.as_str()
                ),
            ));
        }
        let node = task.record.node_id.clone();
        let attempt_id = task.attempt_id();
        let expect_attempt = task.record.attempt;
        let now = Utc::now();
        let events = end(&mut task, now);
        let write = TaskWrite {
            expect_states: vec![st.as_str().into()],
            expect_attempt,
            record: task.into_record(),
            events,
        };
        if let Some(Some(rec)) = state.runtime.commit(state, vec![write]).await?.pop() {
            if let Some(node) = node
                && st.is_active()
            {
                super::agents::stop_on_executor(state, &node, &rec, attempt_id).await;
            }
            return Ok(decode(rec)?.view(now));
        }
        // Lost a race with the executor or the binder: read again and retry.
    }
    Err(ApiError::new(
        cpn_api_types::Code::GenerationConflict,
        format!("task {id} kept changing while being cancelled; try again"),
    ))
}

/// Query of `GET /tasks/{id}/logs` (parsed at the edge, `query`).
pub struct LogQuery {
    pub stream: LogStream,
    pub attempt: Option<u32>,
    pub follow: bool,
}

/// A task's log: everything so far, or (follow) a stream of chunks that ends when the
/// attempt does. The edge sends either as a plain-text body (`response`).
pub enum LogBody {
    Whole(Vec<u8>),
    Follow(std::pin::Pin<Box<dyn futures_util::Stream<Item = std::io::Result<Vec<u8>>> + Send>>),
}

/// The log body: everything so far, or (follow) a stream that ends when the attempt does.
pub async fn logs(
    state: &RuntimeState,
    who: &Caller,
    id: &str,
    query: LogQuery,
) -> ApiResult<LogBody> {
    let task = load(state, who, id).await?;
    let attempt = query.attempt.unwrap_or(task.record.attempt);
    if attempt > task.record.attempt {
        return Err(ApiError::not_found("attempt", &format!("{id}.{attempt}")));
    }
    const CHUNK: usize = 1 << 20;
    if !query.follow {
        let mut out = Vec::new();
        loop {
            let part = state
                .runtime
                .logs
                .read(id, attempt, query.stream, out.len() as u64, CHUNK)
                .map_err(|e| {
                    ApiError::new(cpn_api_types::Code::Internal, format!("read log: {e}"))
                })?;
            if part.is_empty() {
                break;
            }
            out.extend_from_slice(&part);
        }
        return Ok(LogBody::Whole(out));
    }
    let state = state.clone();
    let id = id.to_string();
    let stream = async_stream(state, id, attempt, query.stream);
    Ok(LogBody::Follow(Box::pin(stream)))
}

fn async_stream(
    state: RuntimeState,
    id: String,
    attempt: u32,
    stream: LogStream,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    let init = (state, id, 0u64, false);
    futures_util::stream::unfold(init, move |(state, id, offset, done)| async move {
        if done {
            return None;
        }
        let mut offset = offset;
        loop {
            let part = match state
                .runtime
                .logs
                .read(&id, attempt, stream, offset, 1 << 16)
            {
                Ok(p) => p,
                Err(e) => return Some((Err(e), (state, id, offset, true))),
            };
            if !part.is_empty() {
                offset += part.len() as u64;
                return Some((Ok(part), (state, id, offset, false)));
            }
            // Nothing new: stop once the attempt is over (its output is complete then).
            let over = match state.store.get_task(&id).await {
                Ok(Some(rec)) => {
                    rec.attempt != attempt
                        || TaskState::parse(&rec.state)
                            .is_none_or(|s| s.is_terminal() || s == TaskState::Pending)
                }
                _ => true,
            };
            if over || *state.runtime.shutdown.borrow() {
                // One last read: bytes may have landed between the read and the check.
                let tail = state
                    .runtime
                    .logs
                    .read(&id, attempt, stream, offset, 1 << 20)
                    .unwrap_or_default();
                if tail.is_empty() {
                    return None;
                }
                let n = tail.len() as u64;
                return Some((Ok(tail), (state, id, offset + n, true)));
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    })
}

/// Tasks per state (every state named, zero included) over what `who` may see: its
/// tenant's, or all for operators.
pub async fn counts(
    state: &RuntimeState,
    who: &Caller,
) -> ApiResult<std::collections::BTreeMap<String, u64>> {
    let rows = if who.is_operator() {
        state.store.count_tasks().await?
    } else {
        state.store.count_tenant_tasks(&who.tenant).await?
    };
    let mut out: std::collections::BTreeMap<String, u64> = TaskState::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), 0))
        .collect();
    for (s, n) in rows {
        out.insert(s, n);
    }
    Ok(out)
}
