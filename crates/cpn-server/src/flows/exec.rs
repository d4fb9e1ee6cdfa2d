//! Executors of workflow actions: tasks (submitted once, then awaited; a known task id is
//! re-attached to), I2 allocate/release operations, sleep, noop, notify (event hook) and
//! fail. Each runs under the step's timeout; a timed-out task is cancelled.

use crate::error::ApiError;
use crate::extract::Principal;
use crate::runtime::{operations, tasks};
use crate::state::AppState;
use chrono::Utc;
use cpn_api_types::flows::Action;
use cpn_api_types::operations::{OpKind, OpTarget, OperationRequest, TargetKind};
use cpn_api_types::tasks::TaskState;
use cpn_store::NewEvent;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
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
}

pub struct Ctx {
    pub state: AppState,
    pub who: Principal,
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
                cancel_task(&ctx.state, &ctx.who, &ctx.task).await;
                Err(format!("timed out after {t} s"))
            }
        },
        None => fut.await,
    };
    let _ = ctx.tx.send(Report::Done {
        step: ctx.step.clone(),
        result,
    });
}

/// Cancels the task a step waits on, if any.
pub async fn cancel_task(state: &AppState, who: &Principal, task: &Arc<Mutex<Option<String>>>) {
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

async fn wait_task(ctx: &Ctx, id: &str) -> Result<Outputs, String> {
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
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
