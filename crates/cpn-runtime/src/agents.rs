//! The server side of the agent protocol (see `cpn_api_types::agent`): registration,
//! heartbeats with reconciliation, the assignment long poll, attempt reports and output.
//!
//! Reports are idempotent and checked against the task's current attempt: a report about
//! an attempt that is no longer the task's (cancelled, lost and rescheduled) is answered
//! with `stop`, so a process that outlived its attempt is killed, never counted.

use super::lifecycle::{self, Task};
use crate::RuntimeState;
use crate::error::{ApiError, ApiResult};
use crate::join::{NodeCaller, Registrant};
use chrono::Utc;
use cpn_api_types::Code;
use cpn_api_types::agent::*;
use cpn_api_types::events::types;
use cpn_api_types::tasks::{LogStream, TaskState};
use cpn_model::Kind;
use cpn_store::{
    NewEvent, NodeJoin, NodePatch, NodeRegistration, TaskQuery, TaskRecord, TaskWrite,
};
use std::time::{Duration, Instant};

/// The reason of an attempt the OOM killer ended: it starts with `oom`, as reasons start
/// with their category (`deadline: …`).
pub const OOM_REASON: &str =
    "oom: the attempt went over the memory it requested and the kernel killed it";

/// Longest long poll an agent may ask for.
pub const MAX_WAIT_MS: u64 = 60_000;

/// How long an attempt handed to an agent is left out of its next polls: the agent's
/// "running" report normally ends its `scheduled` state long before, so polls made
/// meanwhile wait for new work instead of getting the same attempts again. Past this, it is
/// handed out again (the answer was lost, or the agent stopped before starting it; the
/// agent never starts an attempt id twice).
pub const REDELIVER_AFTER: Duration = Duration::from_secs(3);

pub fn node_event(node: &cpn_store::NodeRecord, severity: &str, message: String) -> NewEvent {
    NewEvent {
        at: Utc::now(),
        event_type: types::NODE_STATE.into(),
        subject: node.id.clone(),
        tenant: String::new(),
        severity: severity.into(),
        message,
        data: serde_json::json!({
            "node": node.name, "site": node.site, "ready": node.ready,
            "cordoned": node.cordoned, "occupied_by": node.occupied_by,
        }),
    }
}

pub async fn register(
    state: &RuntimeState,
    who: Registrant,
    body: AgentRegister,
) -> ApiResult<AgentRegistered> {
    if body.name.trim().is_empty() {
        return Err(ApiError::field("name", "the node name must not be empty"));
    }
    if body.inventory.cpu_cores == 0 {
        return Err(ApiError::field(
            "inventory.cpu_cores",
            "a node needs at least one CPU",
        ));
    }
    if let Registrant::Join { payload, .. } = &who
        && payload.site != body.site
    {
        return Err(ApiError::forbidden(format!(
            "this join token is for site {:?}, not {:?}",
            payload.site, body.site
        )));
    }
    let site = state
        .store
        .find_object_by_name(Kind::Site, &body.site)
        .await?
        .ok_or_else(|| {
            ApiError::field(
                "site",
                format!(
                    "no site named {:?}; create it first (cpn site create) or pass an existing --site",
                    body.site
                ),
            )
        })?;
    let labels = body.labels.clone().into_iter().collect();
    let registration = NodeRegistration {
        id: format!("node-{}", uuid::Uuid::now_v7().simple()),
        site_id: site.id.clone(),
        site: site.name.clone(),
        name: body.name.clone(),
        executor: "agent".into(),
        labels,
        inventory: serde_json::to_value(&body.inventory)
            .map_err(|e| ApiError::new(Code::Internal, e.to_string()))?,
        now: Utc::now(),
    };
    let (node, credential) = match who {
        Registrant::Join { secret_hash, .. } => {
            let credential = crate::join::new_node_credential();
            let joined = state
                .store
                .join_node(
                    NodeJoin {
                        secret_hash,
                        registration,
                        credential_hash: crate::join::hash_token(&credential),
                        events: Vec::new(),
                    },
                    Utc::now(),
                )
                .await?;
            match joined {
                Ok((node, _token)) => {
                    state.runtime.federation.node_changed(&node);
                    state
                        .store
                        .append_events(vec![node_event(
                            &node,
                            "info",
                            format!("node {}/{} joined with a join token", node.site, node.name),
                        )])
                        .await?;
                    (node, Some(credential))
                }
                Err(refusal) => return Err(crate::join::refused(refusal)),
            }
        }
        Registrant::Node(caller) => {
            let mine = node_of(state, &caller.node_id).await?;
            if mine.site_id != site.id || mine.name != body.name {
                return Err(ApiError::forbidden(format!(
                    "this credential belongs to node {}/{}, not {}/{}: join with a join token to register another node",
                    mine.site, mine.name, body.site, body.name
                )));
            }
            let node = state
                .store
                .register_node(
                    registration,
                    vec![node_event(
                        &mine,
                        "info",
                        format!("node {}/{} registered by its agent", mine.site, mine.name),
                    )],
                )
                .await?;
            state.runtime.federation.node_changed(&node);
            (node, None)
        }
    };
    state.runtime.events_written();
    state.runtime.with_live(&node.id, |l| {
        l.last_heartbeat = Instant::now();
        l.last_heartbeat_at = Some(Utc::now());
        // A (re)started agent gets every attempt it has not started at its first poll.
        l.handed_out.clear();
    });
    state.runtime.capacity_changed();
    let live_leases = Some(state.hooks.live_leases(&node.id));
    Ok(AgentRegistered {
        node_id: node.id,
        site: node.site,
        name: node.name,
        heartbeat_interval_ms: state.runtime.config.heartbeat_interval.as_millis() as u64,
        node_timeout_ms: state.runtime.config.node_timeout.as_millis() as u64,
        credential,
        tenant: Some(site.tenant.clone()),
        live_leases,
    })
}

async fn node_of(state: &RuntimeState, node_id: &str) -> ApiResult<cpn_store::NodeRecord> {
    state.store.get_node(node_id).await?.ok_or_else(|| {
        ApiError::new(
            Code::NotFound,
            format!("node {node_id:?} is not registered; register again"),
        )
    })
}

pub async fn heartbeat(
    state: &RuntimeState,
    who: &NodeCaller,
    node_id: &str,
    body: Heartbeat,
) -> ApiResult<HeartbeatReply> {
    who.check(node_id)?;
    let node = node_of(state, node_id).await?;
    let rt = &state.runtime;
    rt.with_live(node_id, |l| {
        l.last_heartbeat = Instant::now();
        l.last_heartbeat_at = Some(Utc::now());
        l.record_metrics(&body.metrics);
    });
    if !node.ready {
        let mut back = node.clone();
        back.ready = true;
        let event = node_event(
            &back,
            "info",
            format!("node {}/{} is ready again", back.site, back.name),
        );
        let patch = NodePatch {
            ready: Some(true),
            ..Default::default()
        };
        let rec = state
            .store
            .patch_node(node_id, patch, Utc::now(), vec![event])
            .await?;
        rt.federation.node_changed(&rec);
        rt.events_written();
        rt.capacity_changed();
    }
    let mut reply = HeartbeatReply::default();
    let mut held = std::collections::HashSet::new();
    for report in body.attempts {
        held.insert(report.attempt_id.clone());
        let finished = report.state != AttemptState::Running;
        let id = report.attempt_id.clone();
        match apply_report(state, node_id, report).await? {
            AttemptVerdict::Stop => reply.stop.push(id),
            AttemptVerdict::Accepted if finished => reply.acknowledged.push(id),
            AttemptVerdict::Accepted => {}
        }
    }
    // GPU utilization of running tasks' GPUs, for their KPIs.
    record_gpu_samples(state, node_id, &body.metrics).await?;
    // A running attempt the agent no longer holds is lost (its state dir was wiped, say).
    // Grace: the Running report may have overtaken this heartbeat.
    let grace = chrono::Duration::from_std(rt.config.heartbeat_interval * 3)
        .unwrap_or_else(|_| chrono::Duration::seconds(6));
    let now = Utc::now();
    let running = state
        .store
        .list_tasks(TaskQuery {
            node_id: Some(node_id.to_string()),
            states: vec!["running".into()],
            ..Default::default()
        })
        .await?;
    let mut writes = Vec::new();
    for rec in running {
        let mut task = super::tasks::decode(rec)?;
        if held.contains(&task.attempt_id())
            || task.status.started_at.is_some_and(|s| now - s < grace)
            || task.record.updated_at > now - grace
        {
            continue;
        }
        let attempt = task.record.attempt;
        let events = task.lose(now, "the agent no longer knows this attempt");
        writes.push(TaskWrite {
            expect_states: vec!["running".into()],
            expect_attempt: attempt,
            record: task.into_record(),
            events,
        });
    }
    rt.commit(state, writes).await?;
    let pending_stops: Vec<String> = rt.with_live(node_id, |l| l.stops.drain().collect());
    for s in pending_stops {
        if !reply.stop.contains(&s) {
            reply.stop.push(s);
        }
    }
    Ok(reply)
}

async fn record_gpu_samples(
    state: &RuntimeState,
    node_id: &str,
    metrics: &NodeMetrics,
) -> ApiResult<()> {
    if metrics.gpus.is_empty() {
        return Ok(());
    }
    let running = state
        .store
        .list_tasks(TaskQuery {
            node_id: Some(node_id.to_string()),
            states: vec!["running".into()],
            ..Default::default()
        })
        .await?;
    let mut writes = Vec::new();
    for rec in running {
        let mut task = super::tasks::decode(rec)?;
        let mine: Vec<f64> = metrics
            .gpus
            .iter()
            .filter(|g| task.status.gpus.contains(&g.index))
            .map(|g| g.util_pct)
            .collect();
        if mine.is_empty() {
            continue;
        }
        let mean = mine.iter().sum::<f64>() / mine.len() as f64;
        let (sum, n) = task.status.gpu_util.unwrap_or((0.0, 0));
        task.status.gpu_util = Some((sum + mean, n + 1));
        let attempt = task.record.attempt;
        writes.push(TaskWrite {
            expect_states: vec!["running".into()],
            expect_attempt: attempt,
            record: task.into_record(),
            events: Vec::new(),
        });
    }
    state.runtime.commit(state, writes).await?;
    Ok(())
}

/// Applies one attempt report; shared by the report endpoint, heartbeats and the Slurm
/// back end.
pub async fn apply_report(
    state: &RuntimeState,
    node_id: &str,
    report: AttemptReport,
) -> ApiResult<AttemptVerdict> {
    let Some((task_id, attempt)) = lifecycle::parse_attempt_id(&report.attempt_id) else {
        return Ok(AttemptVerdict::Stop);
    };
    for _ in 0..5 {
        let Some(rec) = state.store.get_task(task_id).await? else {
            return Ok(AttemptVerdict::Stop);
        };
        let mut task = super::tasks::decode(rec)?;
        let current =
            task.record.attempt == attempt && task.record.node_id.as_deref() == Some(node_id);
        let st = task.state();
        if !current {
            // An attempt that is over on the server: a final report is simply taken note of.
            return Ok(if report.state == AttemptState::Running {
                AttemptVerdict::Stop
            } else {
                AttemptVerdict::Accepted
            });
        }
        let now = Utc::now();
        let expect = st.as_str().to_string();
        let events = match (st, report.state) {
            (TaskState::Scheduled, AttemptState::Running) => task.start(
                now,
                report.started_at.unwrap_or(now),
                report.pid.map(|p| p.to_string()),
            ),
            (TaskState::Running, AttemptState::Running) => {
                if let Some(u) = report.usage {
                    task.status.usage = Some(u);
                    Vec::new()
                } else {
                    return Ok(AttemptVerdict::Accepted);
                }
            }
            (TaskState::Scheduled | TaskState::Running, AttemptState::Exited) => {
                if task.status.started_at.is_none() {
                    task.status.started_at = report.started_at.or(Some(now));
                }
                match (report.end_reason, report.exit_code) {
                    (Some(EndReason::Oom), code) => {
                        task.finish(now, code, Some(OOM_REASON.into()), report.usage)
                    }
                    (None, Some(code)) => task.finish(now, Some(code), None, report.usage),
                    (None, None) => task.lose(
                        now,
                        report
                            .error
                            .as_deref()
                            .unwrap_or("the process ended with no exit code"),
                    ),
                }
            }
            (TaskState::Scheduled | TaskState::Running, AttemptState::FailedToStart) => task
                .finish(
                    now,
                    None,
                    Some(format!(
                        "could not start: {}",
                        report.error.as_deref().unwrap_or("unknown error")
                    )),
                    None,
                ),
            (TaskState::Scheduled | TaskState::Running, AttemptState::Killed) => task.finish(
                now,
                report.exit_code,
                Some(match report.end_reason {
                    Some(EndReason::Oom) => OOM_REASON.into(),
                    None => "killed on the node".into(),
                }),
                report.usage,
            ),
            // Cancelled, or finished already: a running process must go; a final report is
            // a duplicate.
            (_, AttemptState::Running) if st.is_terminal() => return Ok(AttemptVerdict::Stop),
            _ => return Ok(AttemptVerdict::Accepted),
        };
        let write = TaskWrite {
            expect_states: vec![expect],
            expect_attempt: attempt,
            record: task.into_record(),
            events,
        };
        if let Some(Some(_)) = state.runtime.commit(state, vec![write]).await?.pop() {
            return Ok(AttemptVerdict::Accepted);
        }
    }
    Err(ApiError::new(
        Code::GenerationConflict,
        format!("task {task_id} kept changing; report again"),
    ))
}

pub async fn report(
    state: &RuntimeState,
    who: &NodeCaller,
    node_id: &str,
    attempt_id: &str,
    mut body: AttemptReport,
) -> ApiResult<AttemptReply> {
    who.check(node_id)?;
    node_of(state, node_id).await?;
    body.attempt_id = attempt_id.to_string();
    Ok(AttemptReply {
        verdict: apply_report(state, node_id, body).await?,
    })
}

pub async fn upload_log(
    state: &RuntimeState,
    who: &NodeCaller,
    node_id: &str,
    attempt_id: &str,
    stream: LogStream,
    offset: u64,
    bytes: &[u8],
) -> ApiResult<super::logs::Appended> {
    who.check(node_id)?;
    if stream == LogStream::All {
        return Err(ApiError::bad_request("stream must be stdout or stderr"));
    }
    let (task, attempt) = lifecycle::parse_attempt_id(attempt_id)
        .ok_or_else(|| ApiError::not_found("attempt", attempt_id))?;
    let rec = state
        .store
        .get_task(task)
        .await?
        .ok_or_else(|| ApiError::not_found("task", task))?;
    if attempt == 0 || attempt > rec.attempt {
        return Err(ApiError::not_found("attempt", attempt_id));
    }
    // The current attempt's output comes only from the node it is bound to. (An earlier
    // attempt's node is not recorded; its agent may still be shipping what it had.)
    if attempt == rec.attempt && rec.node_id.as_deref() != Some(node_id) {
        return Err(ApiError::forbidden(format!(
            "attempt {attempt_id} does not run on node {node_id}"
        )));
    }
    state
        .runtime
        .logs
        .append(task, attempt, stream, offset, bytes)
        .map_err(|e| ApiError::new(Code::Internal, format!("store log: {e}")))
}

/// Work bound to the node and not yet started, plus attempts to kill.
pub async fn assignments(
    state: &RuntimeState,
    who: &NodeCaller,
    node_id: &str,
    wait_ms: u64,
) -> ApiResult<Assignments> {
    who.check(node_id)?;
    node_of(state, node_id).await?;
    let deadline = Instant::now() + Duration::from_millis(wait_ms.min(MAX_WAIT_MS));
    let wake = state.runtime.with_live(node_id, |l| l.wake.clone());
    loop {
        // Register interest before looking, so a bind between the look and the wait wakes us.
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let stop: Vec<String> = state
            .runtime
            .with_live(node_id, |l| l.stops.drain().collect());
        let scheduled = state
            .store
            .list_tasks(TaskQuery {
                node_id: Some(node_id.to_string()),
                states: vec!["scheduled".into()],
                ..Default::default()
            })
            .await?;
        let scheduled = scheduled
            .into_iter()
            .map(super::tasks::decode)
            .collect::<ApiResult<Vec<Task>>>()?;
        let now = Instant::now();
        let max_output = state.runtime.config.limits.max_task_output_bytes;
        let (fresh, redeliver_at) = state.runtime.with_live(node_id, |l| {
            let ids: std::collections::HashSet<String> =
                scheduled.iter().map(Task::attempt_id).collect();
            // Started (or gone) since: forgotten.
            l.handed_out.retain(|id, _| ids.contains(id));
            let mut fresh = Vec::new();
            for task in scheduled {
                let id = task.attempt_id();
                let due = l
                    .handed_out
                    .get(&id)
                    .is_none_or(|at| now.duration_since(*at) >= REDELIVER_AFTER);
                if due {
                    l.handed_out.insert(id, now);
                    fresh.push(assignment_of(task, max_output));
                }
            }
            let redeliver_at = l.handed_out.values().min().map(|at| *at + REDELIVER_AFTER);
            (fresh, redeliver_at)
        });
        // Class A lease access the marketplace wants of this node (`ControlHooks::lease_work`).
        let (lease_grants, lease_revokes) = state.hooks.lease_work(node_id).await;
        if !fresh.is_empty()
            || !stop.is_empty()
            || !lease_grants.is_empty()
            || !lease_revokes.is_empty()
            || now >= deadline
        {
            return Ok(Assignments {
                assignments: fresh,
                stop,
                lease_grants,
                lease_revokes,
            });
        }
        let mut stop = state.runtime.shutdown.subscribe();
        if *stop.borrow_and_update() {
            return Ok(Assignments::default());
        }
        let until = redeliver_at.map_or(deadline, |r| r.min(deadline));
        tokio::select! {
            _ = tokio::time::timeout_at(until.into(), notified) => {}
            _ = stop.changed() => {}
        }
    }
}

pub fn assignment_of(task: Task, max_output_bytes: u64) -> Assignment {
    Assignment {
        attempt_id: task.attempt_id(),
        task_id: task.record.id.clone(),
        attempt: task.record.attempt,
        name: task.record.name.clone(),
        tenant: task.record.tenant.clone(),
        command: task.spec.command.clone(),
        script: task.spec.script.clone(),
        env: task.spec.env.clone(),
        workdir: task.spec.workdir.clone(),
        resources: task.spec.resources.clone(),
        gpus: task.status.gpus.clone(),
        max_output_bytes: Some(max_output_bytes),
    }
}

/// Tells whoever runs `node_id` to kill the attempt (agents poll; Slurm gets scancel).
pub async fn stop_on_executor(
    state: &RuntimeState,
    node_id: &str,
    rec: &TaskRecord,
    attempt_id: String,
) {
    if let Ok(Some(node)) = state.store.get_node(node_id).await
        && node.executor == "slurm"
    {
        let job = rec
            .status
            .get("external_id")
            .and_then(|j| j.as_str())
            .map(String::from);
        match job {
            Some(job) => super::slurm::cancel(state, &node.site_id, &job).await,
            None => {
                tracing::info!(attempt = %attempt_id, "not submitted to Slurm yet; nothing to cancel")
            }
        }
        return;
    }
    state.runtime.stop_attempt(node_id, attempt_id);
}
