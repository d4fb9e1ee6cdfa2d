//! Unit tests of the workflow core: validation, substitution, the state machine (parallel
//! DAGs, retries, compensation, cancel, pause, conditions, loops), replay and lean metrics.

use crate::{Command, FlowRun, report, validate};
use chrono::{DateTime, Duration, TimeZone, Utc};
use cpn_api_types::flows::{FlowDefinition, FlowState, StepState};
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn def(v: Value) -> FlowDefinition {
    serde_json::from_value(v).unwrap()
}

fn t(s: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::seconds(s)
}

fn started(cmds: &[Command]) -> Vec<String> {
    cmds.iter()
        .map(|c| match c {
            Command::Start { step, .. } => step.clone(),
            Command::Compensate { step, .. } => format!("undo:{step}"),
            Command::Stop { step, .. } => format!("stop:{step}"),
        })
        .collect()
}

fn ok() -> Result<BTreeMap<String, Value>, String> {
    Ok(BTreeMap::new())
}

fn noop(id: &str, deps: &[&str]) -> Value {
    json!({"id": id, "action": {"kind": "noop"}, "depends_on": deps})
}

fn diamond() -> FlowDefinition {
    def(json!({"name": "diamond", "steps": [
        noop("a", &[]), noop("b", &["a"]), noop("c", &["a"]), noop("d", &["b", "c"])]}))
}

fn assert_replays(run: &FlowRun) {
    let again = FlowRun::replay(run.def.clone(), run.journal()).unwrap();
    let mut saved = run.clone();
    saved.take_unsaved();
    assert_eq!(again, saved);
    assert!(
        again.clone().take_unsaved().is_empty(),
        "a replayed journal is stored"
    );
}

#[test]
fn diamond_runs_b_and_c_in_parallel() {
    let mut run = FlowRun::new(diamond(), BTreeMap::new(), t(0));
    assert_eq!(started(&run.next(t(0))), ["a"]);
    assert!(run.next(t(0)).is_empty());
    run.on_result("a", ok(), t(1));
    assert_eq!(started(&run.next(t(1))), ["b", "c"]);
    run.on_result("c", ok(), t(3));
    assert!(run.next(t(3)).is_empty());
    run.on_result("b", ok(), t(3));
    assert_eq!(started(&run.next(t(3))), ["d"]);
    run.on_result("d", ok(), t(4));
    assert!(run.next(t(4)).is_empty());
    assert_eq!(run.state, FlowState::Succeeded);
    assert_replays(&run);
    let r = report(&run, "f", t(10));
    assert_eq!(r.makespan_s, 4.0);
    assert_eq!(r.work_s, 1.0 + 2.0 + 2.0 + 1.0);
    assert_eq!(r.parallel_rate, 1.5);
    assert_eq!(r.serial_rate, 0.5);
    assert_eq!(r.critical_path, ["a", "b", "d"]);
    assert_eq!(r.critical_path_s, 4.0);
}

#[test]
fn max_parallel_limits_starts_and_wait_is_measured() {
    let mut d = diamond();
    d.max_parallel = Some(1);
    let mut run = FlowRun::new(d, BTreeMap::new(), t(0));
    run.next(t(0));
    run.on_result("a", ok(), t(1));
    assert_eq!(started(&run.next(t(1))), ["b"]);
    run.on_result("b", ok(), t(2));
    assert_eq!(started(&run.next(t(2))), ["c"]);
    run.on_result("c", ok(), t(3));
    run.next(t(3));
    run.on_result("d", ok(), t(4));
    run.next(t(4));
    let r = report(&run, "f", t(4));
    assert_eq!(r.steps[2].wait_s, 1.0);
    assert_eq!(r.serial_rate, 1.0);
    assert_eq!(r.parallel_rate, 1.0);
}

#[test]
fn retries_back_off_exponentially() {
    let d = def(json!({"name": "r", "steps": [
        {"id": "a", "action": {"kind": "noop"}, "retry": {"max_retries": 2, "backoff_s": 2.0}}]}));
    let mut run = FlowRun::new(d, BTreeMap::new(), t(0));
    assert_eq!(started(&run.next(t(0))), ["a"]);
    run.on_result("a", Err("boom".into()), t(1));
    assert_eq!(run.next_retry(), Some(t(3)));
    assert!(run.next(t(2)).is_empty());
    assert_eq!(started(&run.next(t(3))), ["a"]);
    run.on_result("a", Err("boom".into()), t(4));
    assert_eq!(run.next_retry(), Some(t(8)));
    assert!(run.next(t(7)).is_empty());
    assert_eq!(started(&run.next(t(8))), ["a"]);
    assert_replays(&run);
    run.on_result("a", Err("boom".into()), t(9));
    assert!(run.next(t(9)).is_empty());
    assert_eq!(run.state, FlowState::Failed);
    assert_eq!(run.steps[0].attempts, 3);
    assert!(run.error.as_deref().unwrap().contains("boom"));
    assert_replays(&run);
}

#[test]
fn failure_at_step_k_compensates_completed_steps_in_reverse() {
    let d = def(json!({"name": "chain", "steps": [
        {"id": "a", "action": {"kind": "noop"}, "compensate": {"kind": "notify", "message": "undo a"}},
        {"id": "b", "action": {"kind": "noop"}, "depends_on": ["a"], "compensate": {"kind": "noop"}},
        {"id": "x", "action": {"kind": "noop"}, "depends_on": ["b"]},
        {"id": "c", "action": {"kind": "fail", "message": "injected"}, "depends_on": ["x"]},
        {"id": "d", "action": {"kind": "noop"}, "depends_on": ["c"], "compensate": {"kind": "noop"}}]}));
    let mut run = FlowRun::new(d, BTreeMap::new(), t(0));
    for (i, s) in ["a", "b", "x"].iter().enumerate() {
        assert_eq!(started(&run.next(t(i as i64))), [*s]);
        run.on_result(s, ok(), t(i as i64));
    }
    assert_eq!(started(&run.next(t(3))), ["c"]);
    run.on_result("c", Err("injected".into()), t(4));
    assert_eq!(run.state, FlowState::Compensating);
    assert_eq!(started(&run.next(t(4))), ["undo:b"]);
    assert!(run.next(t(4)).is_empty(), "one compensation at a time");
    assert_replays(&run);
    run.on_result("b", ok(), t(5));
    assert_eq!(started(&run.next(t(5))), ["undo:a"]);
    run.on_result("a", ok(), t(6));
    assert!(run.next(t(6)).is_empty());
    assert_eq!(run.state, FlowState::Failed);
    let states: Vec<StepState> = run.steps.iter().map(|s| s.state).collect();
    use StepState::*;
    assert_eq!(
        states,
        [Compensated, Compensated, Succeeded, Failed, Waiting]
    );
    let order: Vec<&str> = run
        .journal()
        .iter()
        .filter(|e| e["type"] == "compensation_succeeded")
        .map(|e| e["step"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["b", "a"]);
    assert!(
        !run.journal()
            .iter()
            .any(|e| e["type"] == "step_started" && e["step"] == "d")
    );
    assert_replays(&run);
}

#[test]
fn failure_waits_for_running_branches_before_compensating() {
    let d = def(json!({"name": "p", "steps": [
        {"id": "a", "action": {"kind": "noop"}, "compensate": {"kind": "noop"}},
        {"id": "b", "action": {"kind": "noop"}, "compensate": {"kind": "noop"}}]}));
    let mut run = FlowRun::new(d, BTreeMap::new(), t(0));
    assert_eq!(started(&run.next(t(0))), ["a", "b"]);
    run.on_result("a", Err("x".into()), t(1));
    assert!(run.next(t(1)).is_empty());
    run.on_result("b", ok(), t(2));
    assert_eq!(started(&run.next(t(2))), ["undo:b"]);
}

#[test]
fn cancel_stops_running_steps_without_rollback_unless_asked() {
    let mut run = FlowRun::new(diamond(), BTreeMap::new(), t(0));
    run.next(t(0));
    run.on_result("a", ok(), t(1));
    run.next(t(1));
    let stops = run.cancel(t(2), false).unwrap();
    assert_eq!(started(&stops), ["stop:b", "stop:c"]);
    assert_eq!(run.state, FlowState::Cancelled);
    run.on_result("b", ok(), t(3));
    assert_eq!(run.steps[1].state, StepState::Cancelled);
    assert!(run.cancel(t(3), false).is_err());
    assert_replays(&run);

    let d = def(json!({"name": "c", "steps": [
        {"id": "a", "action": {"kind": "noop"}, "compensate": {"kind": "noop"}},
        {"id": "b", "action": {"kind": "noop"}, "depends_on": ["a"]}]}));
    let mut run = FlowRun::new(d, BTreeMap::new(), t(0));
    run.next(t(0));
    run.on_result("a", ok(), t(1));
    run.next(t(1));
    run.cancel(t(2), true).unwrap();
    assert_eq!(started(&run.next(t(2))), ["undo:a"]);
    run.on_result("a", ok(), t(3));
    run.next(t(3));
    assert_eq!(run.state, FlowState::Cancelled);
    assert_replays(&run);
}

#[test]
fn pause_holds_new_starts_until_resume() {
    let mut run = FlowRun::new(diamond(), BTreeMap::new(), t(0));
    run.next(t(0));
    run.pause(t(0)).unwrap();
    run.on_result("a", ok(), t(1));
    assert!(run.next(t(1)).is_empty());
    assert!(run.pause(t(1)).is_err());
    run.resume(t(2)).unwrap();
    assert_eq!(started(&run.next(t(2))), ["b", "c"]);
    assert_replays(&run);
}

#[test]
fn conditions_skip_steps_and_data_flows_between_steps() {
    let d = def(
        json!({"name": "w", "inputs": {"env": "prod", "n": 2}, "steps": [
        {"id": "a", "action": {"kind": "noop", "outputs": {"size": 3}}},
        {"id": "b", "action": {"kind": "notify", "message": "size ${steps.a.outputs.size} in ${inputs.env}"},
         "depends_on": ["a"], "when": "steps.a.outputs.size > inputs.n"},
        {"id": "c", "action": {"kind": "noop"}, "depends_on": ["a"], "when": "inputs.env == 'dev'"},
        {"id": "d", "action": {"kind": "noop"}, "depends_on": ["c"]}]}),
    );
    let mut run = FlowRun::new(d, BTreeMap::new(), t(0));
    run.next(t(0));
    run.on_result("a", Ok(BTreeMap::from([("size".into(), json!(3))])), t(1));
    let cmds = run.next(t(1));
    assert_eq!(started(&cmds), ["b", "d"]);
    match &cmds[0] {
        Command::Start { action, .. } => assert_eq!(
            serde_json::to_value(action).unwrap()["message"],
            "size 3 in prod"
        ),
        c => panic!("{c:?}"),
    }
    assert_eq!(run.steps[2].state, StepState::Skipped);
    assert_replays(&run);
}

#[test]
fn inputs_given_at_start_override_defaults() {
    let d = def(json!({"name": "w", "inputs": {"msg": "a"}, "steps": [
        {"id": "a", "action": {"kind": "notify", "message": "${inputs.msg}!"}}]}));
    let mut run = FlowRun::new(d, BTreeMap::from([("msg".into(), json!("b"))]), t(0));
    match &run.next(t(0))[0] {
        Command::Start { action, .. } => {
            assert_eq!(serde_json::to_value(action).unwrap()["message"], "b!")
        }
        c => panic!("{c:?}"),
    }
}

#[test]
fn for_each_runs_items_in_order() {
    let d = def(json!({"name": "l", "steps": [
        {"id": "a", "action": {"kind": "notify", "message": "item ${item.n}"},
         "for_each": [{"n": 1}, {"n": 2}, {"n": 3}]},
        noop("b", &["a"])]}));
    let mut run = FlowRun::new(d, BTreeMap::new(), t(0));
    let mut seen = Vec::new();
    for i in 0..3 {
        let cmds = run.next(t(i));
        assert_eq!(cmds.len(), 1);
        if let Command::Start { action, item, .. } = &cmds[0] {
            assert_eq!(*item, Some(i as usize));
            seen.push(serde_json::to_value(action).unwrap()["message"].clone());
        }
        assert_replays(&run);
        run.on_result("a", Ok(BTreeMap::from([("i".into(), json!(i))])), t(i));
    }
    assert_eq!(seen, [json!("item 1"), json!("item 2"), json!("item 3")]);
    assert_eq!(
        run.steps[0].outputs["items"],
        json!([{"i": 0}, {"i": 1}, {"i": 2}])
    );
    assert_eq!(started(&run.next(t(3))), ["b"]);
}

#[test]
fn progress_is_kept_for_reattach_after_replay() {
    let mut run = FlowRun::new(diamond(), BTreeMap::new(), t(0));
    run.next(t(0));
    let mut data = serde_json::Map::new();
    data.insert("task_id".into(), json!("task-1"));
    run.on_progress("a", data, t(0));
    let again = FlowRun::replay(run.def.clone(), run.journal()).unwrap();
    let cmds = again.in_flight();
    assert_eq!(cmds.len(), 1);
    match &cmds[0] {
        Command::Start { step, attach, .. } => {
            assert_eq!(step, "a");
            assert_eq!(attach["task_id"], "task-1");
        }
        c => panic!("{c:?}"),
    }
}

#[test]
fn unsaved_entries_are_handed_out_once() {
    let mut run = FlowRun::new(diamond(), BTreeMap::new(), t(0));
    assert_eq!(run.take_unsaved().len(), 1);
    run.next(t(0));
    let e = run.take_unsaved();
    assert_eq!(e[0]["type"], "step_ready");
    assert_eq!(e[1]["type"], "step_started");
    assert_eq!(e[1]["attempt"], 1);
    assert!(run.take_unsaved().is_empty());
}

#[test]
fn validation_reports_every_error_with_its_path() {
    let d = def(json!({"name": "bad", "steps": [
        noop("a", &["c"]), noop("a", &[]), noop("b", &["zz"]), noop("c", &["b2"]),
        noop("b2", &["c"]),
        {"id": "w", "action": {"kind": "notify", "message": "${steps.nope.outputs.x}"}, "when": "1 +"}]}));
    let errs = validate(&d);
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "steps[1].id",
            "steps[2].depends_on[0]",
            "steps[5].when",
            "steps[5].action",
            "steps[3].depends_on"
        ],
        "{errs:?}"
    );
    assert!(
        errs[4].message.contains("c -> b2 -> c"),
        "{}",
        errs[4].message
    );
    assert!(validate(&diamond()).is_empty());
    let cyc = def(json!({"name": "x", "steps": [noop("a", &["b"]), noop("b", &["a"])]}));
    assert_eq!(validate(&cyc)[0].path, "steps[0].depends_on");
}

#[test]
fn a_condition_over_its_budget_fails_its_step_for_good() {
    let d = def(json!({"name": "loops", "steps": [
        {"id": "a", "action": {"kind": "noop"},
         "when": "inputs.xs.all(a, inputs.xs.all(b, a + b >= 0))"},
        noop("b", &["a"])]}));
    assert!(validate(&d).is_empty());
    let xs: Vec<i64> = (0..8000).collect();
    let inputs = BTreeMap::from([("xs".to_string(), json!(xs))]);
    assert!(crate::validate::inputs(&inputs).is_empty());
    let mut run = FlowRun::new(d, inputs, t(0));
    let started_at = std::time::Instant::now();
    assert!(run.next(t(0)).is_empty());
    assert!(started_at.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(run.state, FlowState::Failed);
    let error = run.steps[0].error.clone().unwrap_or_default();
    assert!(error.contains("loop iterations"), "{error}");
    assert_replays(&run);
}

#[test]
fn a_raised_stop_fails_the_step_with_its_reason() {
    let d = def(json!({"name": "loops", "steps": [
        {"id": "a", "action": {"kind": "noop"}, "when": "inputs.xs.all(a, a >= 0)"}]}));
    let inputs = BTreeMap::from([("xs".to_string(), json!([1, 2, 3]))]);
    let mut run = FlowRun::new(d, inputs, t(0));
    let stop = cpn_cel::Stop::new();
    stop.raise("condition ran past its deadline of 1 s");
    run.next_until(t(0), &stop);
    assert_eq!(run.state, FlowState::Failed);
    assert!(
        run.steps[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("deadline")
    );
}

#[test]
fn three_nested_loops_and_huge_inputs_are_refused_up_front() {
    let d = def(json!({"name": "loops", "steps": [
        {"id": "a", "action": {"kind": "noop"},
         "when": "inputs.xs.all(a, inputs.xs.all(b, inputs.xs.all(c, a + b + c >= 0)))"}]}));
    let errs = validate(&d);
    assert_eq!(errs[0].path, "steps[0].when");
    assert!(errs[0].message.contains("nested 3 deep"), "{}", errs[0]);
    let xs: Vec<i64> = (0..10_001).collect();
    let errs = crate::validate::inputs(&BTreeMap::from([("xs".to_string(), json!(xs))]));
    assert_eq!(errs[0].path, "inputs.xs");
}

fn simulate(id: &str, deps: &[&str]) -> Value {
    json!({"id": id, "depends_on": deps,
        "action": {"kind": "simulate", "reason": "no controller", "outputs": {"site": "s1"}}})
}

#[test]
fn a_simulated_step_ends_simulated_lets_dependents_run_and_survives_replay() {
    let d = def(json!({"name": "sim", "steps": [
        simulate("provision", &[]),
        {"id": "deploy", "action": {"kind": "noop"}, "depends_on": ["provision"],
         "when": "steps.provision.status == 'simulated'"},
        noop("after", &["deploy"])]}));
    assert!(validate(&d).is_empty());
    let mut run = FlowRun::new(d, BTreeMap::new(), t(0));
    assert_eq!(started(&run.next(t(0))), ["provision"]);
    // The executor answers a simulate action like any other; the state machine knows it
    // did nothing real.
    run.on_result(
        "provision",
        Ok(BTreeMap::from([("site".into(), json!("s1"))])),
        t(1),
    );
    assert_eq!(run.steps[0].state, StepState::Simulated);
    assert_eq!(run.steps[0].outputs["site"], "s1");
    assert_eq!(run.steps[0].ended_at, Some(t(1)));
    assert!(
        run.journal()
            .iter()
            .any(|e| e["type"] == "step_simulated" && e["step"] == "provision")
    );
    assert!(
        !run.journal()
            .iter()
            .any(|e| e["type"] == "step_succeeded" && e["step"] == "provision"),
        "a simulated step is never recorded as succeeded"
    );
    assert_replays(&run);
    let again = FlowRun::replay(run.def.clone(), run.journal()).unwrap();
    assert_eq!(again.steps[0].state, StepState::Simulated);
    // Dependents see it as done (and can tell it was simulated).
    assert_eq!(started(&run.next(t(1))), ["deploy"]);
    run.on_result("deploy", ok(), t(2));
    assert_eq!(started(&run.next(t(2))), ["after"]);
    run.on_result("after", ok(), t(3));
    run.next(t(3));
    assert_eq!(run.state, FlowState::Succeeded);
    assert_eq!(run.steps[1].state, StepState::Succeeded);
    assert_replays(&run);
    let r = report(&run, "f", t(3));
    assert_eq!(r.simulated_steps, ["provision"]);
    assert_eq!(r.steps[0].state, StepState::Simulated);
}

#[test]
fn a_simulated_step_is_not_compensated() {
    let d = def(json!({"name": "sim", "steps": [
        {"id": "a", "action": {"kind": "simulate"}, "compensate": {"kind": "noop"}},
        {"id": "b", "action": {"kind": "noop"}, "compensate": {"kind": "noop"}},
        {"id": "c", "action": {"kind": "fail", "message": "x"}, "depends_on": ["a", "b"]}]}));
    let mut run = FlowRun::new(d, BTreeMap::new(), t(0));
    assert_eq!(started(&run.next(t(0))), ["a", "b"]);
    run.on_result("a", ok(), t(1));
    run.on_result("b", ok(), t(1));
    assert_eq!(started(&run.next(t(1))), ["c"]);
    run.on_result("c", Err("x".into()), t(2));
    assert_eq!(started(&run.next(t(2))), ["undo:b"]);
    run.on_result("b", ok(), t(3));
    assert!(run.next(t(3)).is_empty());
    assert_eq!(run.state, FlowState::Failed);
    assert_eq!(run.steps[0].state, StepState::Simulated);
    assert_replays(&run);
}

fn task(id: &str, deps: &[&str]) -> Value {
    json!({"id": id, "depends_on": deps, "action": {"kind": "task", "task": {
        "name": id, "command": ["true"]}}})
}

#[test]
fn the_report_separates_a_tasks_queue_wait_from_its_run_time() {
    let d =
        def(json!({"name": "q", "steps": [task("a", &[]), task("b", &["a"]), noop("c", &["b"])]}));
    let mut run = FlowRun::new(d, BTreeMap::new(), t(0));
    assert_eq!(started(&run.next(t(0))), ["a"]);
    // Still queued, nothing recorded: all of it so far is queue wait.
    let r = report(&run, "f", t(30));
    assert_eq!((r.steps[0].queue_s, r.steps[0].run_s), (30.0, 0.0));
    // The task started at 80 s: 80 s queued, running since.
    let timing = crate::TaskTiming {
        queue_s: 80.0,
        started_at: Some(t(80)),
        run_s: None,
    };
    run.on_timing("a", 1, timing.clone(), t(80));
    let r = report(&run, "f", t(85));
    assert_eq!((r.steps[0].queue_s, r.steps[0].run_s), (80.0, 5.0));
    assert_replays(&run);
    // It ended at 90 s: recorded again for the same attempt, replacing the first record.
    run.on_timing(
        "a",
        1,
        crate::TaskTiming {
            run_s: Some(10.0),
            ..timing
        },
        t(90),
    );
    run.on_result("a", ok(), t(90));
    assert_eq!(started(&run.next(t(90))), ["b"]);
    // b: 2 s queued, 3 s run.
    run.on_timing(
        "b",
        1,
        crate::TaskTiming {
            queue_s: 2.0,
            started_at: Some(t(92)),
            run_s: Some(3.0),
        },
        t(95),
    );
    run.on_result("b", ok(), t(95));
    run.next(t(95));
    run.on_result("c", ok(), t(95));
    run.next(t(95));
    assert_eq!(run.state, FlowState::Succeeded);
    assert_replays(&run);
    let again = FlowRun::replay(run.def.clone(), run.journal()).unwrap();
    let r = report(&again, "f", t(200));
    assert_eq!(r.steps[0].duration_s, 90.0);
    assert_eq!((r.steps[0].queue_s, r.steps[0].run_s), (80.0, 10.0));
    assert_eq!((r.steps[1].queue_s, r.steps[1].run_s), (2.0, 3.0));
    assert_eq!((r.steps[2].queue_s, r.steps[2].run_s), (0.0, 0.0));
    assert_eq!(r.queue_s, 82.0);
    assert_eq!(r.work_s, 13.0, "queue wait is not work");
    assert_eq!(r.makespan_s, 95.0);
    // A timing for a step with nothing in flight is ignored.
    let mut run = again;
    let n = run.journal().len();
    run.on_timing("a", 1, crate::TaskTiming::default(), t(300));
    assert_eq!(run.journal().len(), n);
}
