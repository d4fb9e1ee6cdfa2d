//! `FlowRun`: the state machine of one workflow.
//!
//! Every transition is a journal entry (a JSON object with `type` and `at`), applied by one
//! function, `apply`, both when it happens and when a journal is replayed; so
//! `FlowRun::replay(def, journal)` rebuilds exactly the state the run had. Decisions (what
//! to start, whether to retry, when to compensate) are taken only in `next`, `on_result`,
//! `pause`, `resume` and `cancel`, which record entries; `apply` decides nothing.
//!
//! Semantics:
//! - A step is ready when each of its dependencies succeeded, was simulated or was
//!   skipped; then its `when` is evaluated (false: skipped).
//! - A `simulate` step (an operation with no real controller behind it) ends `simulated`
//!   (entry `step_simulated`), never `succeeded`; it counts as done for its dependents and
//!   for the workflow's success, and is never compensated.
//! - The executor may record the timing of a task step's attempt (`on_timing`, entry
//!   `step_timing`): how long its task queued for a node and how long it ran, which the
//!   lean report keeps apart. Ready steps start in definition order, at most
//!   `max_parallel` running at once.
//! - A failed attempt is retried after `backoff_s * 2^(n-1)` (n: failures so far) while
//!   `max_retries` allows; then the workflow fails: no new step starts, running steps are
//!   awaited, and the steps that succeeded and have a `compensate` action are compensated
//!   one at a time in reverse completion order; then the workflow is `failed`. A failing
//!   compensation is recorded and rollback goes on with the next one.
//! - `for_each` runs the action once per item, in order, as one step; its outputs are
//!   `{"items": [outputs of each item]}`.
//! - `cancel` stops running steps (`Command::Stop`) and ends the workflow `cancelled`
//!   without compensation, unless `compensate` is asked, in which case completed steps are
//!   rolled back as for a failure and the workflow then ends `cancelled`.
//! - `pause` starts nothing new (running steps finish and are recorded); `resume` goes on.

use crate::{cond, subst};
use chrono::{DateTime, Utc};
use cpn_api_types::flows::{Action, FlowDefinition, FlowState, StepState, StepView};
use cpn_cel::Stop;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// What the executor must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Run `action` (already substituted) for `step`; report with `on_result`.
    Start {
        step: String,
        attempt: u32,
        item: Option<usize>,
        action: Action,
        timeout_s: Option<f64>,
        /// What the executor recorded with `on_progress` for this attempt (a task id, an
        /// allocation): a resumed command re-attaches to it instead of acting again.
        attach: Value,
    },
    /// Run a step's compensating action; report with `on_result`.
    Compensate {
        step: String,
        action: Action,
        timeout_s: Option<f64>,
        attach: Value,
    },
    /// Stop a running step (cancel); its result, if any, is ignored.
    Stop { step: String, attach: Value },
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepRun {
    pub state: StepState,
    /// Starts of the step (every item and retry counts).
    pub attempts: u32,
    pub failures: u32,
    pub ready_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub retry_at: Option<DateTime<Utc>>,
    /// A command is out for the step (its start or compensation is not answered yet).
    pub in_flight: bool,
    /// The for_each item to run next.
    pub item: usize,
    pub item_outputs: Vec<Value>,
    pub outputs: BTreeMap<String, Value>,
    pub error: Option<String>,
    /// Progress the executor recorded for the command in flight.
    pub attach: Map<String, Value>,
    /// Queue and run time of the task behind each attempt of the step, by attempt.
    pub timings: BTreeMap<u32, TaskTiming>,
}

/// The timing of the task behind one attempt of a step, as the executor saw it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TaskTiming {
    /// From the task's submission to the start of its attempt (or to its end, when it
    /// never started).
    pub queue_s: f64,
    /// When the attempt started running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// How long it ran; `None` while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_s: Option<f64>,
}

impl StepRun {
    fn new() -> StepRun {
        StepRun {
            state: StepState::Waiting,
            attempts: 0,
            failures: 0,
            ready_at: None,
            started_at: None,
            ended_at: None,
            retry_at: None,
            in_flight: false,
            item: 0,
            item_outputs: Vec::new(),
            outputs: BTreeMap::new(),
            error: None,
            attach: Map::new(),
            timings: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FlowRun {
    pub def: FlowDefinition,
    /// The definition's defaults overridden by the inputs given at start.
    pub inputs: BTreeMap<String, Value>,
    pub state: FlowState,
    pub steps: Vec<StepRun>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    /// Step indexes in the order they succeeded.
    pub completed: Vec<usize>,
    /// A cancel asked for rollback: the run ends `cancelled`, not `failed`.
    pub cancelling: bool,
    journal: Vec<Value>,
    unsaved: usize,
}

fn at(now: DateTime<Utc>) -> Value {
    serde_json::to_value(now).unwrap_or(Value::Null)
}

fn time_of(e: &Value) -> Result<DateTime<Utc>, String> {
    serde_json::from_value(e["at"].clone()).map_err(|_| format!("entry without a valid `at`: {e}"))
}

fn str_of<'a>(e: &'a Value, k: &str) -> Result<&'a str, String> {
    e[k].as_str()
        .ok_or_else(|| format!("entry without `{k}`: {e}"))
}

impl FlowRun {
    /// A new run, recording `flow_started` with the merged inputs.
    pub fn new(
        def: FlowDefinition,
        inputs: BTreeMap<String, Value>,
        now: DateTime<Utc>,
    ) -> FlowRun {
        let mut merged = def.inputs.clone();
        merged.extend(inputs);
        let mut run = FlowRun::empty(def, now);
        run.record(json!({"type": "flow_started", "at": at(now), "inputs": merged}));
        run
    }

    fn empty(def: FlowDefinition, now: DateTime<Utc>) -> FlowRun {
        FlowRun {
            steps: def.steps.iter().map(|_| StepRun::new()).collect(),
            def,
            inputs: BTreeMap::new(),
            state: FlowState::Running,
            started_at: now,
            ended_at: None,
            error: None,
            completed: Vec::new(),
            cancelling: false,
            journal: Vec::new(),
            unsaved: 0,
        }
    }

    /// Rebuilds a run from its journal (the first entry is `flow_started`).
    pub fn replay(def: FlowDefinition, entries: &[Value]) -> Result<FlowRun, String> {
        let first = entries.first().ok_or("empty journal")?;
        if first["type"] != "flow_started" {
            return Err(format!("journal does not begin with flow_started: {first}"));
        }
        let mut run = FlowRun::empty(def, time_of(first)?);
        for e in entries {
            run.apply(e)?;
            run.journal.push(e.clone());
        }
        // What was replayed is stored already.
        run.unsaved = run.journal.len();
        Ok(run)
    }

    /// The whole journal.
    pub fn journal(&self) -> &[Value] {
        &self.journal
    }

    /// Entries recorded since the last call (to persist).
    pub fn take_unsaved(&mut self) -> Vec<Value> {
        let out = self.journal[self.unsaved..].to_vec();
        self.unsaved = self.journal.len();
        out
    }

    pub fn is_terminal(&self) -> bool {
        matches!(
            self.state,
            FlowState::Succeeded | FlowState::Failed | FlowState::Cancelled
        )
    }

    pub fn index(&self, step: &str) -> Option<usize> {
        self.def.steps.iter().position(|s| s.id == step)
    }

    fn record(&mut self, e: Value) {
        // Entries are built here from known-good values; a failure is a bug.
        if let Err(err) = self.apply(&e) {
            panic!("flow journal entry rejected: {err}");
        }
        self.journal.push(e);
    }

    fn step_of(&self, e: &Value) -> Result<usize, String> {
        let id = str_of(e, "step")?;
        self.index(id).ok_or_else(|| format!("unknown step {id:?}"))
    }

    /// Applies one entry to the state. Decides nothing.
    fn apply(&mut self, e: &Value) -> Result<(), String> {
        let t = time_of(e)?;
        match str_of(e, "type")? {
            "flow_started" => {
                self.started_at = t;
                self.inputs = serde_json::from_value(e["inputs"].clone()).unwrap_or_default();
                self.state = FlowState::Running;
            }
            "step_ready" => {
                let i = self.step_of(e)?;
                self.steps[i].ready_at = Some(t);
            }
            "step_skipped" => {
                let i = self.step_of(e)?;
                let s = &mut self.steps[i];
                s.state = StepState::Skipped;
                s.ready_at.get_or_insert(t);
                s.ended_at = Some(t);
                s.error = e["reason"].as_str().map(str::to_string);
            }
            "step_started" => {
                let i = self.step_of(e)?;
                let s = &mut self.steps[i];
                s.state = StepState::Running;
                s.attempts += 1;
                s.retry_at = None;
                s.in_flight = true;
                s.started_at.get_or_insert(t);
                s.attach.clear();
                s.error = None;
            }
            "step_progress" => {
                let i = self.step_of(e)?;
                if let Value::Object(o) = &e["data"] {
                    self.steps[i].attach.extend(o.clone());
                }
            }
            ty @ ("step_succeeded" | "step_simulated") => {
                let i = self.step_of(e)?;
                let done = if ty == "step_simulated" {
                    StepState::Simulated
                } else {
                    StepState::Succeeded
                };
                let outputs: BTreeMap<String, Value> =
                    serde_json::from_value(e["outputs"].clone()).unwrap_or_default();
                let n_items = self.def.steps[i].for_each.as_ref().map(Vec::len);
                let s = &mut self.steps[i];
                s.in_flight = false;
                s.attach.clear();
                match n_items {
                    Some(n) => {
                        s.item_outputs
                            .push(serde_json::to_value(&outputs).unwrap_or_default());
                        s.item += 1;
                        if s.item >= n {
                            s.outputs = BTreeMap::from([(
                                "items".to_string(),
                                Value::Array(s.item_outputs.clone()),
                            )]);
                        }
                    }
                    None => s.outputs = outputs,
                }
                if n_items.is_none_or(|n| s.item >= n) {
                    s.state = done;
                    s.ended_at = Some(t);
                    self.completed.push(i);
                }
            }
            "step_timing" => {
                let i = self.step_of(e)?;
                let attempt = e["attempt"]
                    .as_u64()
                    .ok_or_else(|| format!("entry without `attempt`: {e}"))?;
                let timing: TaskTiming = serde_json::from_value(e["timing"].clone())
                    .map_err(|err| format!("entry with a bad `timing` ({err}): {e}"))?;
                self.steps[i].timings.insert(attempt as u32, timing);
            }
            "step_failed" => {
                let i = self.step_of(e)?;
                let s = &mut self.steps[i];
                s.in_flight = false;
                s.attach.clear();
                s.failures += 1;
                s.error = e["error"].as_str().map(str::to_string);
                match e.get("retry_at").filter(|v| !v.is_null()) {
                    Some(r) => {
                        s.state = StepState::Waiting;
                        s.retry_at = serde_json::from_value(r.clone()).ok();
                    }
                    None => {
                        s.state = StepState::Failed;
                        s.ended_at = Some(t);
                    }
                }
            }
            "step_cancelled" => {
                let i = self.step_of(e)?;
                let s = &mut self.steps[i];
                s.state = StepState::Cancelled;
                s.in_flight = false;
                s.ended_at = Some(t);
            }
            "compensation_started" => {
                let i = self.step_of(e)?;
                let s = &mut self.steps[i];
                s.state = StepState::Compensating;
                s.in_flight = true;
                s.attach.clear();
            }
            "compensation_succeeded" => {
                let i = self.step_of(e)?;
                let s = &mut self.steps[i];
                s.state = StepState::Compensated;
                s.in_flight = false;
            }
            "compensation_failed" => {
                let i = self.step_of(e)?;
                let s = &mut self.steps[i];
                s.state = StepState::Failed;
                s.in_flight = false;
                s.error = Some(format!(
                    "compensation failed: {}",
                    e["error"].as_str().unwrap_or_default()
                ));
            }
            "flow_compensating" => {
                self.state = FlowState::Compensating;
                if self.error.is_none() {
                    self.error = e["error"].as_str().map(str::to_string);
                }
                if e["cancel"] == true {
                    self.cancelling = true;
                }
            }
            "flow_paused" => self.state = FlowState::Paused,
            "flow_resumed" => self.state = FlowState::Running,
            "flow_succeeded" => {
                self.state = FlowState::Succeeded;
                self.ended_at = Some(t);
            }
            "flow_failed" => {
                self.state = FlowState::Failed;
                self.ended_at = Some(t);
                if self.error.is_none() {
                    self.error = e["error"].as_str().map(str::to_string);
                }
            }
            "flow_cancelled" => {
                self.state = FlowState::Cancelled;
                self.ended_at = Some(t);
                self.error.get_or_insert_with(|| "cancelled".into());
            }
            other => return Err(format!("unknown journal entry type {other:?}")),
        }
        Ok(())
    }

    /// The variables of conditions and substitutions: `inputs` and `steps` (each step's
    /// `outputs` and `status`).
    pub fn vars(&self) -> Map<String, Value> {
        let steps: Map<String, Value> = self
            .def
            .steps
            .iter()
            .zip(&self.steps)
            .map(|(d, s)| {
                (
                    d.id.clone(),
                    json!({"outputs": s.outputs, "status": s.state}),
                )
            })
            .collect();
        let mut vars = Map::new();
        vars.insert(
            "inputs".into(),
            serde_json::to_value(&self.inputs).unwrap_or_default(),
        );
        vars.insert("steps".into(), Value::Object(steps));
        vars
    }

    /// `action` with its references replaced (`item`: the for_each item, if any).
    pub fn substitute(&self, action: &Action, item: Option<&Value>) -> Result<Action, String> {
        let mut vars = self.vars();
        if let Some(item) = item {
            vars.insert("item".into(), item.clone());
        }
        let ctx = Value::Object(vars);
        let json = serde_json::to_value(action).map_err(|e| e.to_string())?;
        let out = subst::substitute(&json, &|r| subst::resolve(&ctx, r))?;
        serde_json::from_value(out).map_err(|e| format!("action after substitution: {e}"))
    }

    fn deps_met(&self, i: usize) -> bool {
        self.def.steps[i]
            .depends_on
            .iter()
            .all(|d| self.index(d).is_some_and(|j| done(self.steps[j].state)))
    }

    fn running(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| s.state == StepState::Running)
            .count()
    }

    fn start_command(&self, i: usize) -> Result<Command, String> {
        let d = &self.def.steps[i];
        let s = &self.steps[i];
        let item = d.for_each.as_ref().map(|_| s.item);
        let item_value = d.for_each.as_ref().and_then(|items| items.get(s.item));
        Ok(Command::Start {
            step: d.id.clone(),
            attempt: s.attempts,
            item,
            action: self.substitute(&d.action, item_value)?,
            timeout_s: d.timeout_s,
            attach: Value::Object(s.attach.clone()),
        })
    }

    fn compensate_command(&self, i: usize) -> Option<Result<Command, String>> {
        let d = &self.def.steps[i];
        let action = d.compensate.as_ref()?;
        Some(
            self.substitute(action, None)
                .map(|action| Command::Compensate {
                    step: d.id.clone(),
                    action,
                    timeout_s: d.timeout_s,
                    attach: Value::Object(self.steps[i].attach.clone()),
                }),
        )
    }

    /// What to do now: steps to start, or the next compensation. Records the transitions.
    pub fn next(&mut self, now: DateTime<Utc>) -> Vec<Command> {
        self.next_until(now, &Stop::new())
    }

    /// [`FlowRun::next`], with `stop` ending the evaluation of conditions: raised (at a
    /// deadline, by another thread), it fails the step whose condition was running, with
    /// the flag's reason, in the journal like any other failure.
    pub fn next_until(&mut self, now: DateTime<Utc>, stop: &Stop) -> Vec<Command> {
        match self.state {
            FlowState::Running => self.next_running(now, stop),
            FlowState::Compensating => self.next_compensation(now, stop),
            _ => Vec::new(),
        }
    }

    /// Whether `next` may evaluate a condition (some step has a `when`): the caller then
    /// runs it off its request threads.
    pub fn has_conditions(&self) -> bool {
        self.def.steps.iter().any(|s| s.when.is_some())
    }

    fn next_running(&mut self, now: DateTime<Utc>, stop: &Stop) -> Vec<Command> {
        // Readiness and conditions, until nothing changes (a skip can make others ready).
        loop {
            let mut changed = false;
            for i in 0..self.steps.len() {
                if self.steps[i].state != StepState::Waiting
                    || self.steps[i].ready_at.is_some()
                    || !self.deps_met(i)
                {
                    continue;
                }
                let step = self.def.steps[i].id.clone();
                let verdict = match &self.def.steps[i].when {
                    None => Ok(true),
                    Some(w) => cond::eval(w, &self.vars(), stop),
                };
                match verdict {
                    Ok(true) => {
                        self.record(json!({"type": "step_ready", "step": step, "at": at(now)}))
                    }
                    Ok(false) => self
                        .record(json!({"type": "step_skipped", "step": step, "at": at(now),
                        "reason": "condition is false"})),
                    Err(e) => {
                        self.record(json!({"type": "step_ready", "step": step, "at": at(now)}));
                        self.fail_step(i, format!("condition: {e}"), now, false);
                        return self.next_until(now, stop);
                    }
                }
                changed = true;
            }
            if !changed {
                break;
            }
        }
        let limit = self.def.max_parallel.map_or(usize::MAX, |m| m as usize);
        let mut out = Vec::new();
        for i in 0..self.steps.len() {
            let s = &self.steps[i];
            let startable = match s.state {
                StepState::Waiting => s.ready_at.is_some() && s.retry_at.is_none_or(|r| r <= now),
                // A for_each step between items.
                StepState::Running => !s.in_flight,
                _ => false,
            };
            if !startable {
                continue;
            }
            let was_running = s.state == StepState::Running;
            if !was_running && self.running() >= limit {
                break;
            }
            let step = self.def.steps[i].id.clone();
            let item = self.def.steps[i].for_each.as_ref().map(|_| s.item);
            self.record(
                json!({"type": "step_started", "step": step, "attempt": s.attempts + 1,
                "item": item, "at": at(now)}),
            );
            match self.start_command(i) {
                Ok(c) => out.push(c),
                Err(e) => {
                    self.fail_step(i, e, now, false);
                    if self.state != FlowState::Running {
                        out.extend(self.next_until(now, stop));
                        return out;
                    }
                }
            }
        }
        if self.steps.iter().all(|s| done(s.state)) {
            self.record(json!({"type": "flow_succeeded", "at": at(now)}));
        }
        out
    }

    fn next_compensation(&mut self, now: DateTime<Utc>, stop: &Stop) -> Vec<Command> {
        if self.steps.iter().any(|s| s.in_flight) {
            return Vec::new();
        }
        let pending = self.completed.iter().rev().copied().find(|&i| {
            self.steps[i].state == StepState::Succeeded && self.def.steps[i].compensate.is_some()
        });
        let Some(i) = pending else {
            let ty = if self.cancelling {
                "flow_cancelled"
            } else {
                "flow_failed"
            };
            self.record(json!({"type": ty, "at": at(now), "error": self.error}));
            return Vec::new();
        };
        let step = self.def.steps[i].id.clone();
        self.record(json!({"type": "compensation_started", "step": step, "at": at(now)}));
        match self.compensate_command(i) {
            Some(Ok(c)) => vec![c],
            Some(Err(e)) => {
                self.record(
                    json!({"type": "compensation_failed", "step": step, "error": e, "at": at(now)}),
                );
                self.next_until(now, stop)
            }
            None => Vec::new(),
        }
    }

    /// A step's attempt failed: retry later if allowed, else fail the workflow.
    fn fail_step(&mut self, i: usize, error: String, now: DateTime<Utc>, retryable: bool) {
        let d = &self.def.steps[i];
        let s = &self.steps[i];
        let step = d.id.clone();
        let failures = s.failures + 1;
        let retry_at = (retryable && failures <= d.retry.max_retries).then(|| {
            let delay = d.retry.backoff_s * 2f64.powi(failures as i32 - 1);
            now + chrono::Duration::milliseconds((delay * 1000.0).round() as i64)
        });
        self.record(
            json!({"type": "step_failed", "step": step, "attempt": s.attempts,
            "error": error, "retry_at": retry_at, "at": at(now)}),
        );
        if retry_at.is_none() {
            self.record(json!({"type": "flow_compensating", "at": at(now),
                "error": format!("step {step} failed: {error}")}));
        }
    }

    /// The executor's answer for `step`: its outputs or an error. Answers for a step with
    /// nothing in flight (a cancelled one) are ignored.
    pub fn on_result(
        &mut self,
        step: &str,
        result: Result<BTreeMap<String, Value>, String>,
        now: DateTime<Utc>,
    ) {
        let Some(i) = self.index(step) else { return };
        if !self.steps[i].in_flight {
            return;
        }
        match (self.steps[i].state, result) {
            (StepState::Running, Ok(outputs)) => {
                let item = self.def.steps[i]
                    .for_each
                    .as_ref()
                    .map(|_| self.steps[i].item);
                let ty = if matches!(self.def.steps[i].action, Action::Simulate { .. }) {
                    "step_simulated"
                } else {
                    "step_succeeded"
                };
                self.record(json!({"type": ty, "step": step,
                    "attempt": self.steps[i].attempts, "item": item, "outputs": outputs, "at": at(now)}));
            }
            (StepState::Running, Err(e)) => self.fail_step(i, e, now, true),
            (StepState::Compensating, Ok(_)) => {
                self.record(json!({"type": "compensation_succeeded", "step": step, "at": at(now)}))
            }
            (StepState::Compensating, Err(e)) => self.record(
                json!({"type": "compensation_failed", "step": step, "error": e, "at": at(now)}),
            ),
            _ => {}
        }
    }

    /// Records the timing of the task behind `attempt` of `step` (what the executor saw:
    /// queue wait, start, run time). A later record for the same attempt replaces the
    /// earlier one, so an executor re-attached after a restart may record it again.
    /// Ignored for a step with nothing in flight.
    pub fn on_timing(&mut self, step: &str, attempt: u32, timing: TaskTiming, now: DateTime<Utc>) {
        let Some(i) = self.index(step) else { return };
        if !self.steps[i].in_flight || self.steps[i].state != StepState::Running {
            return;
        }
        self.record(
            json!({"type": "step_timing", "step": step, "attempt": attempt,
            "timing": timing, "at": at(now)}),
        );
    }

    /// Records progress of the command in flight for `step` (a task id, an allocation), so
    /// that a resumed run re-attaches instead of acting again.
    pub fn on_progress(&mut self, step: &str, data: Map<String, Value>, now: DateTime<Utc>) {
        if self.index(step).is_some() {
            self.record(
                json!({"type": "step_progress", "step": step, "data": data, "at": at(now)}),
            );
        }
    }

    pub fn pause(&mut self, now: DateTime<Utc>) -> Result<(), String> {
        if self.state != FlowState::Running {
            return Err(format!(
                "cannot pause a {} workflow",
                state_name(self.state)
            ));
        }
        self.record(json!({"type": "flow_paused", "at": at(now)}));
        Ok(())
    }

    pub fn resume(&mut self, now: DateTime<Utc>) -> Result<(), String> {
        if self.state != FlowState::Paused {
            return Err(format!(
                "cannot resume a {} workflow",
                state_name(self.state)
            ));
        }
        self.record(json!({"type": "flow_resumed", "at": at(now)}));
        Ok(())
    }

    /// Cancels a running or paused workflow: running steps are cancelled (the answer says
    /// which to stop). With `compensate`, completed steps are then rolled back (see `next`).
    pub fn cancel(&mut self, now: DateTime<Utc>, compensate: bool) -> Result<Vec<Command>, String> {
        if !matches!(self.state, FlowState::Running | FlowState::Paused) {
            return Err(format!(
                "cannot cancel a {} workflow",
                state_name(self.state)
            ));
        }
        let mut out = Vec::new();
        for i in 0..self.steps.len() {
            if self.steps[i].state == StepState::Running {
                let step = self.def.steps[i].id.clone();
                out.push(Command::Stop {
                    step: step.clone(),
                    attach: Value::Object(self.steps[i].attach.clone()),
                });
                self.record(json!({"type": "step_cancelled", "step": step, "at": at(now)}));
            }
        }
        if compensate {
            self.record(
                json!({"type": "flow_compensating", "at": at(now), "error": "cancelled",
                "cancel": true}),
            );
        } else {
            self.record(json!({"type": "flow_cancelled", "at": at(now), "error": "cancelled"}));
        }
        Ok(out)
    }

    /// After a replay: the commands that were in flight when the journal ended, with what
    /// was recorded for them (`attach`), to re-attach to or to run again.
    pub fn in_flight(&self) -> Vec<Command> {
        (0..self.steps.len())
            .filter(|&i| self.steps[i].in_flight)
            .filter_map(|i| match self.steps[i].state {
                StepState::Running => self.start_command(i).ok(),
                StepState::Compensating => self.compensate_command(i).and_then(Result::ok),
                _ => None,
            })
            .collect()
    }

    /// Earliest pending retry, for the executor's wake-up.
    pub fn next_retry(&self) -> Option<DateTime<Utc>> {
        self.steps
            .iter()
            .filter(|s| s.state == StepState::Waiting)
            .filter_map(|s| s.retry_at)
            .min()
    }

    pub fn step_views(&self) -> Vec<StepView> {
        self.def
            .steps
            .iter()
            .zip(&self.steps)
            .map(|(d, s)| StepView {
                id: d.id.clone(),
                state: s.state,
                attempts: s.attempts,
                ready_at: s.ready_at,
                started_at: s.started_at,
                ended_at: s.ended_at,
                outputs: s.outputs.clone(),
                error: s.error.clone(),
            })
            .collect()
    }
}

/// A step in this state lets its dependents start (and the workflow succeed).
fn done(s: StepState) -> bool {
    matches!(
        s,
        StepState::Succeeded | StepState::Skipped | StepState::Simulated
    )
}

pub fn state_name(s: FlowState) -> &'static str {
    match s {
        FlowState::Running => "running",
        FlowState::Paused => "paused",
        FlowState::Compensating => "compensating",
        FlowState::Succeeded => "succeeded",
        FlowState::Failed => "failed",
        FlowState::Cancelled => "cancelled",
    }
}
