//! The durable workflow engine (DO-FLOW-01..08): each workflow is a document in collection
//! `flows` whose journal is the `cpn_flow::FlowRun` journal, appended atomically with the
//! document's state and with `flow.state` / `flow.step` events. One tokio task per
//! workflow drives its `FlowRun` and executes its commands (`exec`); on server start,
//! `resume_all` replays every unfinished workflow from its journal and continues it:
//! a step in flight is re-attached (its task id or allocation is in the journal) or run
//! again (sleep, noop, notify, fail, release, and a task whose id was never recorded).
//! Process templates (collection `processes`) are definitions stored for reuse.

pub mod exec;

use crate::caller::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::Control;
use chrono::Utc;
use cpn_api_types::Code;
use cpn_api_types::flows::{
    FlowDefinition, FlowReport, FlowState, FlowView, ProcessView, StepView,
};
use cpn_flow::{Command, FlowRun};
use cpn_store::{DocQuery, DocRecord, NewEvent};
use exec::Report;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex};
use tokio::sync::{mpsc, oneshot};

pub const FLOWS: &str = "flows";
pub const PROCESSES: &str = "processes";

enum FlowCommand {
    Pause(oneshot::Sender<ApiResult<()>>),
    Resume(oneshot::Sender<ApiResult<()>>),
    Cancel(bool, oneshot::Sender<ApiResult<()>>),
}

/// Control channels of the workflows this process drives, by id.
static DRIVEN: LazyLock<Mutex<HashMap<String, mpsc::UnboundedSender<FlowCommand>>>> =
    LazyLock::new(Default::default);

fn driven() -> std::sync::MutexGuard<'static, HashMap<String, mpsc::UnboundedSender<FlowCommand>>> {
    DRIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(Code::Internal, e.to_string())
}

/// Every validation error as one 422: `field` is the first error's path, the message
/// lists them all.
pub fn check(def: &FlowDefinition) -> ApiResult<()> {
    let errs = cpn_flow::validate(def);
    match errs.first() {
        None => Ok(()),
        Some(first) => Err(ApiError::field(
            first.path.clone(),
            errs.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )),
    }
}

/// The starter, stored with the workflow: its steps act as this user, with the rights
/// the user had when starting it (not as the operator), after a restart too.
fn principal_json(who: &Caller) -> Value {
    serde_json::to_value(who).unwrap_or_default()
}

fn principal_of(body: &Value) -> Option<Caller> {
    serde_json::from_value(body["principal"].clone()).ok()
}

fn state_of(s: &str) -> FlowState {
    serde_json::from_value(json!(s)).unwrap_or(FlowState::Failed)
}

/// A workflow as the API shows it, from its document.
pub fn view_of(doc: &DocRecord) -> ApiResult<FlowView> {
    Ok(FlowView {
        id: doc.id.clone(),
        name: doc.name.clone(),
        tenant: doc.tenant.clone(),
        owner: doc.owner.clone(),
        state: state_of(&doc.state),
        steps: serde_json::from_value::<Vec<StepView>>(doc.body["steps"].clone())
            .map_err(internal)?,
        created_at: doc.created_at,
        updated_at: doc.updated_at,
        error: doc.body["error"].as_str().map(str::to_string),
        definition: serde_json::from_value(doc.body["definition"].clone()).map_err(internal)?,
        plan: doc.body["plan"].as_str().map(str::to_string),
    })
}

fn events_of(doc: &DocRecord, entries: &[Value]) -> Vec<NewEvent> {
    entries
        .iter()
        .filter_map(|e| {
            let ty = e["type"].as_str()?;
            let at = serde_json::from_value(e["at"].clone()).unwrap_or_else(|_| Utc::now());
            let (event_type, message) = if let Some(s) = ty.strip_prefix("flow_") {
                ("flow.state", format!("workflow {} {s}", doc.name))
            } else if matches!(ty, "step_progress" | "step_ready" | "step_timing") {
                return None;
            } else {
                (
                    "flow.step",
                    format!(
                        "workflow {} step {}: {}",
                        doc.name,
                        e["step"].as_str().unwrap_or_default(),
                        ty.replace('_', " ")
                    ),
                )
            };
            let severity = if ty.contains("failed") {
                "warning"
            } else {
                "info"
            };
            let mut data = e.clone();
            data["flow"] = json!(doc.id);
            Some(NewEvent {
                at,
                event_type: event_type.into(),
                subject: doc.id.clone(),
                tenant: doc.tenant.clone(),
                severity: severity.into(),
                message,
                data,
            })
        })
        .collect()
}

/// Appends the run's new entries with the document's new state, atomically.
async fn persist(state: &Control, doc: &mut DocRecord, run: &mut FlowRun) {
    let entries = run.take_unsaved();
    if entries.is_empty() {
        return;
    }
    let events = events_of(doc, &entries);
    for _ in 0..3 {
        let mut update = doc.clone();
        update.state = cpn_flow::run::state_name(run.state).to_string();
        update.updated_at = Utc::now();
        update.body["steps"] = json!(run.step_views());
        update.body["error"] = json!(run.error);
        match state
            .store
            .append_journal(&doc.id, entries.clone(), Some(update), events.clone())
            .await
        {
            Ok(Some(d)) => {
                *doc = d;
                state.runtime.events_written();
                return;
            }
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(flow = %doc.id, error = %e, "persisting a workflow's journal");
                if let Ok(Some(d)) = state.store.get_doc(FLOWS, &doc.id).await {
                    doc.version = d.version;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
    tracing::error!(flow = %doc.id, "workflow journal entries lost");
}

/// Starts a workflow of `definition` with `inputs` (over the definition's defaults) as
/// `who`, for `plan` if it executes one. 422 (field: the first error's path, message:
/// every error) on an invalid definition, with nothing stored.
pub async fn start(
    state: &Control,
    who: &Caller,
    definition: FlowDefinition,
    inputs: BTreeMap<String, Value>,
    plan: Option<String>,
) -> ApiResult<FlowView> {
    check(&definition)?;
    check_inputs(&inputs)?;
    // One start at a time, so two concurrent starts cannot both pass the tenant's limit.
    static STARTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _starting = STARTING.lock().await;
    check_tenant_limit(state, &who.tenant).await?;
    let now = Utc::now();
    let mut run = FlowRun::new(definition.clone(), inputs, now);
    let id = format!("flow-{}", uuid::Uuid::now_v7().simple());
    let doc = DocRecord {
        collection: FLOWS.into(),
        id: id.clone(),
        tenant: who.tenant.clone(),
        owner: who.username.clone(),
        name: definition.name.clone(),
        state: "running".into(),
        version: 1,
        created_at: now,
        updated_at: now,
        body: json!({
            "definition": definition,
            "inputs": run.inputs,
            "plan": plan,
            "principal": principal_json(who),
            "steps": run.step_views(),
            "error": null,
        }),
    };
    let mut doc = state.store.create_doc(doc, Vec::new()).await?;
    persist(state, &mut doc, &mut run).await;
    let view = view_of(&doc)?;
    spawn(state.clone(), doc, run, who.clone(), Vec::new());
    Ok(view)
}

/// 422 (field `inputs.NAME…`) for inputs past the size limits of `cpn_flow::validate::inputs`.
pub fn check_inputs(inputs: &BTreeMap<String, Value>) -> ApiResult<()> {
    let problems = cpn_flow::validate::inputs(inputs);
    match problems.first() {
        None => Ok(()),
        Some(first) => Err(ApiError::field(
            first.path.clone(),
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )),
    }
}

/// 429 when `tenant` has as many unfinished workflows as the limit allows.
async fn check_tenant_limit(state: &Control, tenant: &str) -> ApiResult<()> {
    let limit = state.runtime.config.limits.max_running_flows_per_tenant;
    let mut unfinished = 0;
    for s in ["running", "compensating", "paused"] {
        let q = DocQuery {
            tenant: Some(tenant.to_string()),
            state: Some(s.into()),
            ..Default::default()
        };
        unfinished += state.store.list_docs(FLOWS, q).await?.len();
    }
    if unfinished >= limit {
        return Err(ApiError::new(
            Code::TooManyRequests,
            format!(
                "tenant {tenant} has {unfinished} unfinished workflows, the most it may have at once ({limit}); \
                 start this one when one of them has ended, or cancel one"
            ),
        ));
    }
    Ok(())
}

fn spawn(state: Control, doc: DocRecord, run: FlowRun, who: Caller, resumed: Vec<Command>) {
    let (tx, rx) = mpsc::unbounded_channel();
    driven().insert(doc.id.clone(), tx);
    tokio::spawn(async move {
        let id = doc.id.clone();
        drive(state, doc, run, who, rx, resumed).await;
        driven().remove(&id);
    });
}

type Running = HashMap<String, (tokio::task::AbortHandle, Arc<Mutex<Option<String>>>)>;

struct Driver {
    state: Control,
    who: Caller,
    flow: String,
    tenant: String,
    tx: mpsc::UnboundedSender<Report>,
    running: Running,
}

impl Driver {
    fn dispatch(&mut self, cmd: Command) {
        let (step, action, timeout_s, attach, key, attempt) = match cmd {
            Command::Start {
                step,
                attempt,
                item,
                action,
                timeout_s,
                attach,
            } => {
                let key = match item {
                    Some(i) => format!("{step}-a{attempt}-i{i}"),
                    None => format!("{step}-a{attempt}"),
                };
                (step, action, timeout_s, attach, key, Some(attempt))
            }
            Command::Compensate {
                step,
                action,
                timeout_s,
                attach,
            } => {
                let key = format!("{step}-comp");
                (step, action, timeout_s, attach, key, None)
            }
            Command::Stop { step, attach } => {
                let (cell, handle) = match self.running.remove(&step) {
                    Some((h, cell)) => (cell, Some(h)),
                    None => (
                        Arc::new(Mutex::new(attach["task_id"].as_str().map(str::to_string))),
                        None,
                    ),
                };
                if let Some(h) = handle {
                    h.abort();
                }
                let (state, who) = (self.state.clone(), self.who.clone());
                tokio::spawn(async move { exec::cancel_task(&state, &who, &cell).await });
                return;
            }
        };
        let cell = Arc::new(Mutex::new(None));
        let ctx = exec::Ctx {
            state: self.state.clone(),
            who: self.who.clone(),
            flow: self.flow.clone(),
            tenant: self.tenant.clone(),
            step: step.clone(),
            tx: self.tx.clone(),
            task: cell.clone(),
            key,
            attempt,
            node_wait: timeout_s
                .filter(|t| t.is_finite() && *t >= 0.0)
                .map(std::time::Duration::from_secs_f64)
                .unwrap_or(self.state.runtime.config.limits.flow_node_wait),
        };
        let h = tokio::spawn(exec::run(ctx, action, timeout_s, attach));
        self.running.insert(step, (h.abort_handle(), cell));
    }
}

async fn drive(
    state: Control,
    mut doc: DocRecord,
    mut run: FlowRun,
    who: Caller,
    mut ctl: mpsc::UnboundedReceiver<FlowCommand>,
    resumed: Vec<Command>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut d = Driver {
        state: state.clone(),
        who,
        flow: doc.id.clone(),
        tenant: doc.tenant.clone(),
        tx,
        running: HashMap::new(),
    };
    for c in resumed {
        d.dispatch(c);
    }
    let mut ended = false;
    loop {
        let cmds = match next_bounded(&state, run).await {
            Some((r, cmds)) => {
                run = r;
                cmds
            }
            None => {
                tracing::error!(flow = %doc.id, "evaluating a workflow's conditions panicked; the workflow is left to the next start");
                break;
            }
        };
        persist(&state, &mut doc, &mut run).await;
        for c in cmds {
            d.dispatch(c);
        }
        if run.is_terminal() {
            ended = true;
            break;
        }
        let wait = run
            .next_retry()
            .and_then(|t| (t - Utc::now()).to_std().ok())
            .unwrap_or(std::time::Duration::from_secs(3600));
        tokio::select! {
            Some(r) = rx.recv() => match r {
                Report::Progress { step, data } => run.on_progress(&step, data, Utc::now()),
                Report::Timing { step, attempt, timing } => {
                    run.on_timing(&step, attempt, timing, Utc::now())
                }
                Report::Done { step, result } => {
                    d.running.remove(&step);
                    run.on_result(&step, result, Utc::now());
                }
            },
            Some(c) = ctl.recv() => {
                let now = Utc::now();
                let invalid = |e: String| ApiError::new(Code::InvalidState, e);
                let (res, reply) = match c {
                    FlowCommand::Pause(r) => (run.pause(now).map_err(invalid), r),
                    FlowCommand::Resume(r) => (run.resume(now).map_err(invalid), r),
                    FlowCommand::Cancel(compensate, r) => match run.cancel(now, compensate) {
                        Ok(stops) => {
                            for s in stops {
                                d.dispatch(s);
                            }
                            (Ok(()), r)
                        }
                        Err(e) => (Err(invalid(e)), r),
                    },
                };
                persist(&state, &mut doc, &mut run).await;
                let _ = reply.send(res);
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
    // Whatever still runs (a cancelled step) is no longer wanted.
    for (_, (h, _)) in d.running.drain() {
        h.abort();
    }
    // A plan's state follows its workflow to the end.
    if ended && let Some(plan) = doc.body["plan"].as_str() {
        crate::design::plans::follow_flow(&state, plan, &doc).await;
    }
}

/// `FlowRun::next`, with the workflow's conditions evaluated off the request threads: on
/// the blocking pool, at most `CONDITION_SLOTS` at once server-wide, and stopped at the
/// configured deadline, which fails the step with that reason in the journal (so a
/// restart does not evaluate it again). `None` if the evaluation panicked.
async fn next_bounded(state: &Control, mut run: FlowRun) -> Option<(FlowRun, Vec<Command>)> {
    if !run.has_conditions() {
        let cmds = run.next(Utc::now());
        return Some((run, cmds));
    }
    let deadline = state.runtime.config.limits.condition_deadline;
    let _slot = crate::limits::CONDITION_SLOTS.acquire().await.ok()?;
    let stop = cpn_cel::Stop::new();
    let flag = stop.clone();
    let mut job = tokio::task::spawn_blocking(move || {
        let cmds = run.next_until(Utc::now(), &flag);
        (run, cmds)
    });
    let done = tokio::select! {
        r = &mut job => r,
        _ = tokio::time::sleep(deadline) => {
            stop.raise(format!(
                "ran past its deadline of {} ms and was stopped",
                deadline.as_millis()
            ));
            job.await
        }
    };
    done.ok()
}

/// Continues every unfinished workflow of the store (server start).
pub fn resume_all(state: &Control) {
    let state = state.clone();
    tokio::spawn(async move {
        for s in ["running", "compensating", "paused"] {
            let q = DocQuery {
                state: Some(s.into()),
                ..Default::default()
            };
            let docs = match state.store.list_docs(FLOWS, q).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %e, "listing workflows to resume");
                    continue;
                }
            };
            for doc in docs {
                if driven().contains_key(&doc.id) {
                    continue;
                }
                if let Err(e) = resume_one(&state, doc.clone()).await {
                    tracing::error!(flow = %doc.id, error = %e, "cannot resume workflow");
                }
            }
        }
    });
}

async fn resume_one(state: &Control, doc: DocRecord) -> ApiResult<()> {
    let def: FlowDefinition =
        serde_json::from_value(doc.body["definition"].clone()).map_err(internal)?;
    let who = principal_of(&doc.body).ok_or_else(|| internal("workflow without its principal"))?;
    let entries: Vec<Value> = state
        .store
        .journal(&doc.id)
        .await?
        .into_iter()
        .map(|e| e.entry)
        .collect();
    let run = FlowRun::replay(def, &entries).map_err(internal)?;
    let in_flight = run.in_flight();
    tracing::info!(flow = %doc.id, steps_in_flight = in_flight.len(), "resuming workflow");
    spawn(state.clone(), doc, run, who, in_flight);
    Ok(())
}

fn visible(who: &Caller, doc: &DocRecord) -> bool {
    who.is_operator() || doc.tenant == who.tenant
}

async fn load(state: &Control, who: &Caller, id: &str) -> ApiResult<DocRecord> {
    state
        .store
        .get_doc(FLOWS, id)
        .await?
        .filter(|d| visible(who, d))
        .ok_or_else(|| ApiError::not_found("workflow", id))
}

pub async fn get(state: &Control, who: &Caller, id: &str) -> ApiResult<FlowView> {
    view_of(&load(state, who, id).await?)
}

/// Workflows, oldest first; non-operators see their tenant's. Filter: `state`.
pub async fn list(
    state: &Control,
    who: &Caller,
    state_filter: Option<String>,
) -> ApiResult<Vec<FlowView>> {
    let q = DocQuery {
        tenant: (!who.is_operator()).then(|| who.tenant.clone()),
        state: state_filter,
        ..Default::default()
    };
    state
        .store
        .list_docs(FLOWS, q)
        .await?
        .iter()
        .map(view_of)
        .collect()
}

pub async fn journal(state: &Control, who: &Caller, id: &str) -> ApiResult<Vec<Value>> {
    load(state, who, id).await?;
    Ok(state
        .store
        .journal(id)
        .await?
        .into_iter()
        .map(|e| {
            let mut v = e.entry;
            v["seq"] = json!(e.seq);
            v
        })
        .collect())
}

async fn replayed(state: &Control, doc: &DocRecord) -> ApiResult<FlowRun> {
    let def: FlowDefinition =
        serde_json::from_value(doc.body["definition"].clone()).map_err(internal)?;
    let entries: Vec<Value> = state
        .store
        .journal(&doc.id)
        .await?
        .into_iter()
        .map(|e| e.entry)
        .collect();
    FlowRun::replay(def, &entries).map_err(internal)
}

pub async fn report(state: &Control, who: &Caller, id: &str) -> ApiResult<FlowReport> {
    let doc = load(state, who, id).await?;
    let run = replayed(state, &doc).await?;
    Ok(cpn_flow::report(&run, id, Utc::now()))
}

/// What `control` asks of a workflow.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    Pause,
    Resume,
    Cancel { compensate: bool },
}

/// Pause, resume or cancel; 409 `invalid_state` when the workflow's state does not allow it.
pub async fn control(state: &Control, who: &Caller, id: &str, op: Op) -> ApiResult<FlowView> {
    let doc = load(state, who, id).await?;
    if !who.is_operator() && doc.tenant != who.tenant {
        return Err(ApiError::forbidden(
            "you may control only your tenant's workflows",
        ));
    }
    let sender = driven().get(id).cloned();
    let Some(sender) = sender else {
        return Err(ApiError::new(
            Code::InvalidState,
            format!(
                "workflow {id} is {} and not driven by this server",
                doc.state
            ),
        ));
    };
    let (tx, rx) = oneshot::channel();
    let msg = match op {
        Op::Pause => FlowCommand::Pause(tx),
        Op::Resume => FlowCommand::Resume(tx),
        Op::Cancel { compensate } => FlowCommand::Cancel(compensate, tx),
    };
    sender
        .send(msg)
        .map_err(|_| ApiError::new(Code::InvalidState, format!("workflow {id} has ended")))?;
    rx.await
        .map_err(|_| ApiError::new(Code::InvalidState, format!("workflow {id} has ended")))??;
    get(state, who, id).await
}

// ------------------------------------------------------------------ process templates

/// A stored process template as the API shows it.
fn process_view(doc: &DocRecord) -> ApiResult<ProcessView> {
    Ok(ProcessView {
        id: doc.id.clone(),
        name: doc.name.clone(),
        tenant: doc.tenant.clone(),
        owner: doc.owner.clone(),
        version: doc.version,
        created_at: doc.created_at,
        updated_at: doc.updated_at,
        definition: serde_json::from_value(doc.body.clone()).map_err(internal)?,
    })
}

/// Stores a process definition for reuse (validated as a workflow would be).
pub async fn create_process(
    state: &Control,
    who: &Caller,
    def: FlowDefinition,
) -> ApiResult<ProcessView> {
    check(&def)?;
    let now = Utc::now();
    let doc = DocRecord {
        collection: PROCESSES.into(),
        id: format!("proc-{}", uuid::Uuid::now_v7().simple()),
        tenant: who.tenant.clone(),
        owner: who.username.clone(),
        name: def.name.clone(),
        state: "published".into(),
        version: 1,
        created_at: now,
        updated_at: now,
        body: serde_json::to_value(&def).map_err(internal)?,
    };
    process_view(&state.store.create_doc(doc, Vec::new()).await?)
}

/// Process templates are shared: every caller sees them all.
pub async fn list_processes(state: &Control) -> ApiResult<Vec<ProcessView>> {
    state
        .store
        .list_docs(PROCESSES, DocQuery::default())
        .await?
        .iter()
        .map(process_view)
        .collect()
}

pub async fn process_definition(
    state: &Control,
    id: &str,
) -> ApiResult<(ProcessView, FlowDefinition)> {
    let doc = state
        .store
        .get_doc(PROCESSES, id)
        .await?
        .ok_or_else(|| ApiError::not_found("process", id))?;
    let view = process_view(&doc)?;
    let def = view.definition.clone();
    Ok((view, def))
}
