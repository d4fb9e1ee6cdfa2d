//! Executors of workflow actions: tasks (submitted once, then awaited; a known task id is
//! re-attached to), I2 allocate/release operations, sleep, noop, notify (event hook),
//! simulate (publishes its outputs; the state machine ends the step `simulated`) and fail.
//! Each runs under the step's timeout; a timed-out task is cancelled.
//!
//! A task step records its task's queue wait and run time (`Report::Timing`) when it sees
//! the task start and when it ends. A task pinned to a site (`constraints.site`) that has
//! no live node waits for one at most the step's `timeout_s`, or the server's
//! `Limits::flow_node_wait` without one; then its task is cancelled and the step fails
//! with "no live node on site X". A site with live nodes is left to the binder.

use crate::caller::Caller;
use crate::error::ApiError;
use crate::runtime::{operations, tasks};
use crate::state::Control;
use chrono::Utc;
use cpn_api_types::flows::Action;
use cpn_api_types::operations::{OpKind, OpTarget, OperationRequest, TargetKind};
use cpn_api_types::tasks::{TaskState, TaskView};
use cpn_store::NewEvent;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub type Outputs = BTreeMap<String, Value>;

/// What an executor tells its workflow.
#[derive(Debug)]
pub enum Report {
    /// Record this before going on (the task id of a submitted task, say).
    Progress {
        step: String,
        data: Map<String, Value>,
    },
    Done {
        step: String,
        result: Result<Outputs, String>,
    },
    /// The queue wait and run time of the task behind `attempt` of the step.
    Timing {
        step: String,
        attempt: u32,
        timing: cpn_flow::TaskTiming,
    },
}

pub struct Ctx {
    pub state: Control,
    pub who: Caller,
    pub flow: String,
    pub tenant: String,
    pub step: String,
    pub tx: mpsc::UnboundedSender<Report>,
    /// The task this step waits on, for cancellation on timeout or stop.
    pub task: Arc<Mutex<Option<String>>>,
    /// Names this run of the step (`{step}-a{attempt}[-i{item}]`, `{step}-comp`): the id of
    /// a task it submits is derived from it, so a run resumed after a crash between the
    /// submit and the journal write finds its task instead of submitting another.
    pub key: String,
    /// The step's attempt, for a start (not a compensation): its task's timing is recorded.
    pub attempt: Option<u32>,
    /// How long a task pinned to a site waits for a live node there.
    pub node_wait: Duration,
}

fn err(e: ApiError) -> String {
    e.to_string()
}

/// Runs `action` under `timeout_s`, re-attaching to `attach` where it names earlier
/// progress; reports the outcome.
pub async fn run(ctx: Ctx, action: Action, timeout_s: Option<f64>, attach: Value) {
    let fut = execute(&ctx, action, &attach);
    let result = match timeout_s {
        Some(t) => match tokio::time::timeout(Duration::from_secs_f64(t), fut).await {
            Ok(r) => r,
            Err(_) => {
                let dark = match waited_task(&ctx).await {
                    Some(view) if view.state == TaskState::Pending => {
                        dark_site(&ctx.state, &view).await
                    }
                    _ => None,
                };
                cancel_task(&ctx.state, &ctx.who, &ctx.task).await;
                if let Some(view) = waited_task(&ctx).await {
                    send_timing(&ctx, &view);
                }
                Err(match dark {
                    Some(site) => no_live_node(&site, t),
                    None => format!("timed out after {t} s"),
                })
            }
        },
        None => fut.await,
    };
    let _ = ctx.tx.send(Report::Done {
        step: ctx.step.clone(),
        result,
    });
}

fn no_live_node(site: &str, waited_s: f64) -> String {
    format!(
        "no live node on site {site}: waited {waited_s} s for one to join, then cancelled the task"
    )
}

/// The task the step waits on, as it is now.
async fn waited_task(ctx: &Ctx) -> Option<TaskView> {
    let id = ctx.task.lock().ok().and_then(|t| t.clone())?;
    tasks::get(&ctx.state, &ctx.who, &id).await.ok()
}

/// The site `view` is pinned to, when no node there is live (ready).
async fn dark_site(state: &Control, view: &TaskView) -> Option<String> {
    let site = view.spec.constraints.site.as_deref()?;
    let nodes = match state.store.list_nodes().await {
        Ok(n) => n,
        Err(e) => {
            tracing::debug!(error = %e, "listing nodes for a flow step's site");
            return None;
        }
    };
    (!nodes.iter().any(|n| n.site == site && n.ready)).then(|| site.to_string())
}

/// Cancels the task a step waits on, if any.
pub async fn cancel_task(state: &Control, who: &Caller, task: &Arc<Mutex<Option<String>>>) {
    let id = task.lock().ok().and_then(|t| t.clone());
    if let Some(id) = id
        && let Err(e) = tasks::cancel(state, who, &id).await
    {
        tracing::debug!(task = %id, error = %e, "cancelling a flow step's task");
    }
}

async fn execute(ctx: &Ctx, action: Action, attach: &Value) -> Result<Outputs, String> {
    match action {
        Action::Task { task } => {
            let id = match attach["task_id"].as_str() {
                Some(id) => id.to_string(),
                None => {
                    let id = format!("task-{}-{}", ctx.flow, ctx.key);
                    match tasks::submit_as(&ctx.state, &ctx.who, task, Some(id.clone())).await {
                        Ok(_) => {}
                        // Submitted before a crash: wait on that one.
                        Err(e) if e.code == cpn_api_types::Code::AlreadyExists => {}
                        Err(e) => return Err(err(e)),
                    }
                    let mut data = Map::new();
                    data.insert("task_id".into(), json!(id));
                    let _ = ctx.tx.send(Report::Progress {
                        step: ctx.step.clone(),
                        data,
                    });
                    id
                }
            };
            if let Ok(mut t) = ctx.task.lock() {
                *t = Some(id.clone());
            }
            wait_task(ctx, &id).await
        }
        Action::Allocate {
            node,
            resources,
            tenant,
        } => {
            if let Some(a) = attach["allocation"].as_str() {
                return Ok(BTreeMap::from([("allocation".into(), json!(a))]));
            }
            let view = operations::execute(
                &ctx.state,
                &ctx.who,
                OperationRequest {
                    op: OpKind::Allocate,
                    target: Some(OpTarget {
                        kind: TargetKind::Node,
                        name: node,
                    }),
                    resources: Some(resources),
                    allocation: None,
                    tenant,
                    enable: None,
                    reason: Some(format!("workflow {} step {}", ctx.flow, ctx.step)),
                },
            )
            .await
            .map_err(err)?;
            let a = view.allocation.ok_or("the allocation made has no id")?;
            let mut data = Map::new();
            data.insert("allocation".into(), json!(a));
            let _ = ctx.tx.send(Report::Progress {
                step: ctx.step.clone(),
                data,
            });
            Ok(BTreeMap::from([("allocation".into(), json!(a))]))
        }
        Action::Release { allocation } => {
            operations::execute(
                &ctx.state,
                &ctx.who,
                OperationRequest {
                    op: OpKind::Release,
                    target: None,
                    resources: None,
                    allocation: Some(allocation.clone()),
                    tenant: None,
                    enable: None,
                    reason: Some(format!("workflow {} step {}", ctx.flow, ctx.step)),
                },
            )
            .await
            .map_err(err)?;
            Ok(BTreeMap::from([("released".into(), json!(allocation))]))
        }
        Action::Sleep { seconds } => {
            tokio::time::sleep(Duration::from_secs_f64(seconds.max(0.0))).await;
            Ok(BTreeMap::new())
        }
        Action::Noop { outputs } => Ok(outputs),
        Action::Notify { message } => {
            ctx.state
                .store
                .append_events(vec![NewEvent {
                    at: Utc::now(),
                    event_type: "flow.hook".into(),
                    subject: ctx.flow.clone(),
                    tenant: ctx.tenant.clone(),
                    severity: "info".into(),
                    message: message.clone(),
                    data: json!({"flow": ctx.flow, "step": ctx.step, "message": message}),
                }])
                .await
                .map_err(|e| e.to_string())?;
            ctx.state.runtime.events_written();
            Ok(BTreeMap::from([("message".into(), json!(message))]))
        }
        Action::Simulate {
            reason,
            mut outputs,
        } => {
            if !reason.is_empty() {
                outputs.entry("reason".into()).or_insert(json!(reason));
            }
            Ok(outputs)
        }
        Action::Fail { message } => Err(message),
    }
}

/// The last 4 KiB of an attempt's stdout, for later steps to read.
fn stdout_tail(ctx: &Ctx, id: &str, attempt: u32) -> String {
    const TAIL: u64 = 4096;
    let logs = &ctx.state.runtime.logs;
    let len = logs.len(id, attempt, cpn_api_types::tasks::LogStream::Stdout);
    let bytes = logs
        .read(
            id,
            attempt,
            cpn_api_types::tasks::LogStream::Stdout,
            len.saturating_sub(TAIL),
            TAIL as usize,
        )
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The queue wait and run time of `view`'s current attempt, as far as they are known.
fn timing_of(view: &TaskView) -> cpn_flow::TaskTiming {
    let k = &view.kpis;
    match k.queue_wait_s {
        Some(q) => cpn_flow::TaskTiming {
            queue_s: q,
            started_at: Some(
                view.submitted_at + chrono::Duration::milliseconds((q * 1000.0).round() as i64),
            ),
            run_s: if view.state == TaskState::Running {
                None
            } else {
                k.run_time_s
            },
        },
        // Never started: all of its life was queue wait.
        None => cpn_flow::TaskTiming {
            queue_s: ((view.updated_at - view.submitted_at).num_milliseconds() as f64 / 1000.0)
                .max(0.0),
            started_at: None,
            run_s: Some(0.0),
        },
    }
}

fn send_timing(ctx: &Ctx, view: &TaskView) {
    if let Some(attempt) = ctx.attempt {
        let _ = ctx.tx.send(Report::Timing {
            step: ctx.step.clone(),
            attempt,
            timing: timing_of(view),
        });
    }
}

async fn wait_task(ctx: &Ctx, id: &str) -> Result<Outputs, String> {
    // Since when the task's site has had no live node, while the task is pending.
    let mut dark_since: Option<Instant> = None;
    let mut last_look: Option<Instant> = None;
    let mut start_seen = false;
    loop {
        let view = tasks::get(&ctx.state, &ctx.who, id).await.map_err(err)?;
        let outputs = || {
            BTreeMap::from([
                ("task_id".to_string(), json!(id)),
                ("exit_code".to_string(), json!(view.exit_code)),
                ("node".to_string(), json!(view.node)),
                ("site".to_string(), json!(view.site)),
                (
                    "stdout".to_string(),
                    json!(stdout_tail(ctx, id, view.attempt)),
                ),
            ])
        };
        if view.state.is_terminal() || (view.state == TaskState::Running && !start_seen) {
            send_timing(ctx, &view);
            start_seen = true;
        }
        match view.state {
            TaskState::Succeeded => return Ok(outputs()),
            TaskState::Failed | TaskState::Cancelled | TaskState::Lost => {
                return Err(format!(
                    "task {id} ended {:?}{}",
                    view.state,
                    view.reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ));
            }
            TaskState::Pending => {
                // Look at the site's nodes about once a second.
                if view.spec.constraints.site.is_some()
                    && last_look.is_none_or(|l| l.elapsed() >= Duration::from_secs(1))
                {
                    last_look = Some(Instant::now());
                    match dark_site(&ctx.state, &view).await {
                        Some(_) => {
                            dark_since.get_or_insert_with(Instant::now);
                        }
                        None => dark_since = None,
                    }
                }
                if let Some(since) = dark_since
                    && since.elapsed() >= ctx.node_wait
                {
                    let site = view.spec.constraints.site.clone().unwrap_or_default();
                    cancel_task(&ctx.state, &ctx.who, &ctx.task).await;
                    if let Ok(v) = tasks::get(&ctx.state, &ctx.who, id).await {
                        send_timing(ctx, &v);
                    }
                    return Err(no_live_node(&site, ctx.node_wait.as_secs_f64()));
                }
            }
            _ => dark_since = None,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
