//! `cpn explain` and `cpn dry-run`: ask the scheduler where one task would go and why, or
//! place a batch under one or two policies and compare the outcomes. Neither reserves
//! anything; the tables are laid out for an operator asking "why did it go there?".

use super::Ctx;
use super::registry::weights;
use crate::cli::{DryRunArgs, ExplainArgs};
use crate::client::decode;
use crate::input::{self, Input};
use crate::output::{self, num, yes_no};
use anyhow::{Context, Result, bail};
use comfy_table::Table;
use cpn_api_types::schedule::{
    CandidateView, DecisionView, DryRunRequest, DryRunResult, ExplainRequest, Explanation,
    PolicyRun, TaskSpec,
};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};

/// Nodes of the chosen site shown by `explain` (the JSON carries up to 20).
const NODES_SHOWN: usize = 5;
/// Reasons shown per policy for replicas a dry-run could not place.
const UNPLACED_REASONS_SHOWN: usize = 5;

// ---------------------------------------------------------------- explain

pub async fn explain(ctx: &Ctx, args: ExplainArgs) -> Result<()> {
    let input = input::read(&args.file)?;
    let mut req = explain_request(&input)?;
    if args.policy.is_some() {
        req.policy = args.policy;
    }
    let what = if req.task.name.is_empty() {
        "explaining the task".to_owned()
    } else {
        format!("explaining task `{}`", req.task.name)
    };
    let value = ctx
        .client
        .post(&["api", "v1", "schedule", "explain"], &req)
        .await
        .context(what)?;
    if !ctx.table() {
        return output::print_raw(ctx.output, &value);
    }
    let explanation: Explanation = decode(&value, "explanation")?;
    output::emit(&render_explanation(&explanation))
}

/// The request a task file describes: a task spec, or `{task: ..., policy: ...}` as sent
/// to the API.
pub(crate) fn explain_request(input: &Input) -> Result<ExplainRequest> {
    let doc = input::single_object(input)?;
    if doc.contains_key("tasks") {
        bail!(
            "{}: holds `tasks:`, a batch; explain takes one task (`cpn dry-run` takes batches)",
            input.label
        );
    }
    if doc.get("task").is_some_and(Value::is_object) {
        let mut doc = doc;
        let policy = match doc.remove("policy") {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) => Some(p),
            Some(_) => bail!("{}: `policy` must be a policy name", input.label),
        };
        if let Some(key) = doc.keys().find(|k| *k != "task") {
            bail!(
                "{}: unexpected `{key}` next to `task` (expected only `task` and `policy`)",
                input.label
            );
        }
        let task = task_spec(doc.remove("task").unwrap_or_default(), &input.label)?;
        return Ok(ExplainRequest {
            task,
            policy,
            hold_s: None,
        });
    }
    let task = task_spec(Value::Object(doc), &input.label)?;
    Ok(ExplainRequest {
        task,
        policy: None,
        hold_s: None,
    })
}

/// Reads one task spec, naming the file and task in errors (unknown fields are refused,
/// so a misspelt constraint is not silently ignored).
fn task_spec(value: Value, what: &str) -> Result<TaskSpec> {
    if !value.is_object() {
        bail!("{what}: expected a task spec (a mapping with name, resources, ...)");
    }
    serde_json::from_value(value).with_context(|| format!("{what}: invalid task spec"))
}

pub(crate) fn render_explanation(e: &Explanation) -> String {
    let d = &e.decision;
    let p = &e.policy;
    let mut text = match &d.chosen_site {
        Some(site) => {
            let node = d.chosen_node.as_deref().unwrap_or("-");
            let score = d
                .score
                .map_or_else(|| "-".to_owned(), |s| format!("{s:.1}"));
            let margin = d
                .margin
                .map_or_else(|| "no runner-up".to_owned(), |m| format!("margin {m:.1}"));
            format!(
                "task {} → site {site} / node {node} (score {score}, {margin}) under policy {}\n",
                e.task, p.name
            )
        }
        None => format!(
            "task {} → not placed: no feasible site under policy {}\n",
            e.task, p.name
        ),
    };

    if let Some(why) = &e.planning_only {
        text.push_str(&format!("planning only: {why}\n"));
    }
    if let Some(at) = e.decided_at {
        text.push_str(&format!(
            "as the binder decided at {} (its best sites only; `--now` explains against the nodes as they are now)\n",
            at.format("%Y-%m-%d %H:%M:%S UTC")
        ));
    }
    text.push('\n');
    match p.generation {
        Some(g) => text.push_str(&format!("policy {} (generation {g}):\n", p.name)),
        None => text.push_str(&format!("policy {}:\n", p.name)),
    }
    for reason in &p.reasons {
        text.push_str(&format!("  - {reason}\n"));
    }
    if !p.also_matched.is_empty() {
        text.push_str("  also matched, but not chosen:\n");
        for other in &p.also_matched {
            text.push_str(&format!("  - {other}\n"));
        }
    }
    text.push_str(&format!("  weights: {}\n", weights(&p.weights)));

    text.push('\n');
    if d.sites.is_empty() {
        text.push_str("no sites to choose from\n");
    } else {
        text.push_str("sites (best first):\n");
        text.push_str(&output::render(&candidates_table("SITE", &d.sites)));
    }

    if !d.nodes.is_empty() {
        let site = d.chosen_site.as_deref().unwrap_or("the chosen site");
        text.push('\n');
        text.push_str(&format!("top nodes in {site}:\n"));
        let (shown, missing) = nodes_shown(d);
        text.push_str(&output::render(&candidates_table("NODE", &shown)));
        if d.nodes.len() > shown.len() {
            text.push_str(&format!(
                "... {} more (-o yaml lists them)\n",
                d.nodes.len() - shown.len()
            ));
        }
        if let Some(node) = missing {
            text.push_str(&format!(
                "the chosen node {node} is not among the {} nodes the server listed\n",
                d.nodes.len()
            ));
        }
    }

    if !d.rejections.is_empty() {
        text.push('\n');
        text.push_str("rejections (sites and nodes):\n");
        let mut t = output::table(&["REASON", "COUNT"]);
        for r in &d.rejections {
            t.add_row(vec![r.reason.clone(), r.count.to_string()]);
        }
        text.push_str(&output::render(&t));
    }
    text
}

/// The first nodes to show, the chosen one first and marked; and the chosen node's name
/// when the server's list does not hold it (it lists the best few only).
fn nodes_shown(d: &DecisionView) -> (Vec<CandidateView>, Option<&str>) {
    let chosen = d.chosen_node.as_deref();
    let mut shown: Vec<CandidateView> = Vec::with_capacity(NODES_SHOWN);
    if let Some(c) = d.nodes.iter().find(|n| Some(n.name.as_str()) == chosen) {
        let mut c = c.clone();
        c.name.push_str(" (chosen)");
        shown.push(c);
    }
    let missing = if shown.is_empty() { chosen } else { None };
    shown.extend(
        d.nodes
            .iter()
            .filter(|n| Some(n.name.as_str()) != chosen)
            .take(NODES_SHOWN - shown.len())
            .cloned(),
    );
    (shown, missing)
}

/// Candidates with one column per score factor, `contribution (raw unit)`, and for the
/// rejected ones the first verdict that failed.
fn candidates_table(first: &str, candidates: &[CandidateView]) -> Table {
    let mut factors: Vec<&str> = Vec::new();
    for c in candidates {
        for f in &c.factors {
            if !factors.contains(&f.plugin.as_str()) {
                factors.push(&f.plugin);
            }
        }
    }
    let any_rejected = candidates.iter().any(|c| !c.feasible);
    let mut header: Vec<String> = vec![first.to_owned(), "FEASIBLE".into(), "TOTAL".into()];
    header.extend(factors.iter().map(|f| f.to_uppercase()));
    if any_rejected {
        header.push("REJECTED BY".into());
    }
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut t = output::table(&header);
    for c in candidates {
        let mut row = vec![
            c.name.clone(),
            yes_no(c.feasible).to_owned(),
            if c.feasible {
                format!("{:.1}", c.total)
            } else {
                "-".to_owned()
            },
        ];
        for plugin in &factors {
            row.push(c.factors.iter().find(|f| f.plugin == *plugin).map_or_else(
                || "-".to_owned(),
                |f| {
                    let raw = match f.unit.trim() {
                        "" => num(f.raw),
                        unit => format!("{} {unit}", num(f.raw)),
                    };
                    format!("{:.1} ({raw})", f.contribution)
                },
            ));
        }
        if any_rejected {
            row.push(if c.feasible {
                "-".to_owned()
            } else {
                rejected_by(c)
            });
        }
        t.add_row(row);
    }
    t
}

/// `plugin: code (detail)` of the first verdict that failed.
fn rejected_by(c: &CandidateView) -> String {
    let Some(v) = c.verdicts.iter().find(|v| !v.fits) else {
        return "?".to_owned();
    };
    let mut s = v.plugin.clone();
    if let Some(code) = &v.code {
        s.push_str(&format!(": {code}"));
    }
    if let Some(detail) = v.detail.as_deref().filter(|d| !d.is_empty()) {
        s.push_str(&format!(" ({detail})"));
    }
    s
}

// ---------------------------------------------------------------- dry-run

pub async fn dry_run(ctx: &Ctx, args: DryRunArgs) -> Result<()> {
    if args.policies.len() > 2 {
        bail!(
            "--policy was given {} times: a dry-run compares one or two policies",
            args.policies.len()
        );
    }
    let input = input::read(&args.file)?;
    let (tasks, file_seed) = dry_run_tasks(&input)?;
    let req = DryRunRequest {
        policies: args.policies,
        tasks,
        seed: args.seed.or(file_seed).unwrap_or(0),
    };
    let value = ctx
        .client
        .post(&["api", "v1", "schedule", "dry-run"], &req)
        .await
        .with_context(|| format!("dry-running {}", input.label))?;
    if !ctx.table() {
        return output::print_raw(ctx.output, &value);
    }
    let result: DryRunResult = decode(&value, "dry-run result")?;
    output::emit(&render_dry_run(&req, &result))
}

/// The tasks of a dry-run file: task specs as a list, as several YAML documents, or under
/// `tasks:` (optionally with a `seed:`, as in the API's request).
fn dry_run_tasks(input: &Input) -> Result<(Vec<TaskSpec>, Option<u64>)> {
    let mut raw = Vec::new();
    let mut seed = None;
    for doc in input::documents(input)? {
        match doc {
            Value::Array(list) => raw.extend(list),
            Value::Object(map) if map.contains_key("tasks") => {
                let (list, s) = batch(map, &input.label)?;
                raw.extend(list);
                seed = s.or(seed);
            }
            other => raw.push(other),
        }
    }
    if raw.is_empty() {
        bail!("{}: no tasks found", input.label);
    }
    let tasks = raw
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let name = v.get("name").and_then(Value::as_str).unwrap_or_default();
            let what = if name.is_empty() {
                format!("{}: task {}", input.label, i + 1)
            } else {
                format!("{}: task {} (`{name}`)", input.label, i + 1)
            };
            task_spec(v, &what)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((tasks, seed))
}

/// A `{tasks: [...], seed: N}` mapping; `policies`, as in the API's request, is ignored
/// because --policy chooses them.
fn batch(mut map: Map<String, Value>, label: &str) -> Result<(Vec<Value>, Option<u64>)> {
    let tasks = match map.remove("tasks") {
        Some(Value::Array(list)) => list,
        _ => bail!("{label}: `tasks` must be a list of task specs"),
    };
    let seed = match map.remove("seed") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .with_context(|| format!("{label}: `seed` must be a whole number >= 0"))?,
        ),
    };
    if map.remove("policies").is_some() {
        tracing::warn!("{label}: `policies` is ignored; --policy chooses them");
    }
    if let Some(key) = map.keys().next() {
        bail!("{label}: unexpected `{key}` next to `tasks` (expected `tasks` and `seed`)");
    }
    Ok((tasks, seed))
}

fn render_dry_run(req: &DryRunRequest, result: &DryRunResult) -> String {
    let runs = &result.runs;
    let replicas: u64 = req
        .tasks
        .iter()
        .map(|t| u64::from(t.replicas.unwrap_or(1)))
        .sum();
    let mut text = format!(
        "dry-run of {} task{} ({replicas} replica{}), seed {}\n\n",
        req.tasks.len(),
        plural(req.tasks.len() as u64),
        plural(replicas),
        req.seed
    );
    if runs.is_empty() {
        text.push_str("the server returned no runs\n");
        return text;
    }

    let mut header = vec!["KPI"];
    header.extend(runs.iter().map(|r| r.policy.as_str()));
    let mut kpis = output::table(&header);
    let row = |label: &str, cell: &dyn Fn(&PolicyRun) -> String| {
        let mut row = vec![label.to_owned()];
        row.extend(runs.iter().map(cell));
        row
    };
    kpis.add_row(row("placed", &|r| r.kpis.placed.to_string()));
    kpis.add_row(row("unplaced", &|r| r.kpis.unplaced.to_string()));
    kpis.add_row(row("total cost (CNY)", &|r| {
        format!("{:.2}", r.kpis.total_cost_cny)
    }));
    kpis.add_row(row("energy (kWh)", &|r| {
        format!("{:.2}", r.kpis.energy_kwh)
    }));
    kpis.add_row(row("mean latency (ms)", &|r| {
        r.kpis
            .mean_latency_ms
            .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1}"))
    }));
    text.push_str(&output::render(&kpis));

    text.push('\n');
    text.push_str(&output::render(&sites_table(runs)));

    for run in runs.iter().filter(|r| r.kpis.unplaced > 0) {
        text.push('\n');
        text.push_str(&unplaced_summary(run));
    }
    text
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Per site: replicas placed there, then GPU and CPU allocated after the batch, one column
/// per policy for each so the policies sit side by side.
fn sites_table(runs: &[PolicyRun]) -> Table {
    let mut sites: Vec<&str> = Vec::new();
    let mut placed: Vec<HashMap<&str, u32>> = Vec::new();
    let mut util: Vec<HashMap<&str, (f64, f64)>> = Vec::new();
    for run in runs {
        let mut counts = HashMap::new();
        for p in &run.placements {
            if let Some(site) = &p.site {
                *counts.entry(site.as_str()).or_insert(0) += 1;
                if !sites.contains(&site.as_str()) {
                    sites.push(site);
                }
            }
        }
        placed.push(counts);
        util.push(
            run.kpis
                .utilization
                .iter()
                .map(|u| (u.site.as_str(), (u.gpu, u.cpu)))
                .collect(),
        );
    }
    // Sites with placements first (in order of first placement), then the rest as the
    // server lists them.
    for run in runs {
        for u in &run.kpis.utilization {
            if !sites.contains(&u.site.as_str()) {
                sites.push(&u.site);
            }
        }
    }

    let column = |measure: &str, policy: &str| {
        if runs.len() == 1 {
            measure.to_owned()
        } else {
            format!("{measure} ({policy})")
        }
    };
    let mut header = vec!["SITE".to_owned()];
    for measure in ["PLACED", "GPU %", "CPU %"] {
        header.extend(runs.iter().map(|r| column(measure, &r.policy)));
    }
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut t = output::table(&header);
    let pct = |x: f64| format!("{:.1}%", x * 100.0);
    for site in sites {
        let mut row = vec![site.to_owned()];
        row.extend(
            placed
                .iter()
                .map(|c| c.get(site).copied().unwrap_or(0).to_string()),
        );
        row.extend(
            util.iter()
                .map(|u| u.get(site).map_or_else(|| "-".to_owned(), |(g, _)| pct(*g))),
        );
        row.extend(
            util.iter()
                .map(|u| u.get(site).map_or_else(|| "-".to_owned(), |(_, c)| pct(*c))),
        );
        t.add_row(row);
    }
    t
}

/// The tasks a policy left unplaced and the rejections behind them, summed over replicas.
fn unplaced_summary(run: &PolicyRun) -> String {
    let mut tasks: Vec<(&str, u32)> = Vec::new();
    let mut reasons: BTreeMap<&str, u64> = BTreeMap::new();
    for p in run.placements.iter().filter(|p| p.site.is_none()) {
        match tasks.iter_mut().find(|(t, _)| *t == p.task) {
            Some((_, n)) => *n += 1,
            None => tasks.push((p.task.as_str(), 1)),
        }
        for r in &p.unplaced {
            *reasons.entry(r.reason.as_str()).or_insert(0) += u64::from(r.count);
        }
    }
    let tasks: Vec<String> = tasks
        .iter()
        .map(|(t, n)| {
            if *n == 1 {
                (*t).to_owned()
            } else {
                format!("{t} x{n}")
            }
        })
        .collect();
    let mut text = format!(
        "unplaced under {} ({}): {}\n",
        run.policy,
        run.kpis.unplaced,
        tasks.join(", ")
    );
    let mut reasons: Vec<(&str, u64)> = reasons.into_iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    if !reasons.is_empty() {
        let mut t = output::table(&["REASON", "REJECTIONS"]);
        for (reason, count) in reasons.iter().take(UNPLACED_REASONS_SHOWN) {
            t.add_row(vec![(*reason).to_owned(), count.to_string()]);
        }
        text.push_str(&output::render(&t));
        if reasons.len() > UNPLACED_REASONS_SHOWN {
            text.push_str(&format!(
                "... {} more reasons (-o yaml lists them)\n",
                reasons.len() - UNPLACED_REASONS_SHOWN
            ));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(text: &str) -> Input {
        Input {
            label: "t.yaml".into(),
            text: text.into(),
        }
    }

    fn explanation() -> Explanation {
        serde_json::from_value(json!({
            "task": "train-1",
            "policy": {
                "name": "lab-a-cheap", "generation": 3,
                "reasons": ["match_rules.tenants contains lab-a"],
                "also_matched": ["default-gpu (priority 0 < 10)"],
                "weights": {"price": 3, "latency": 1}
            },
            "decision": {
                "chosen_site": "ningxia-1", "chosen_node": "nx-gpu-03",
                "score": 81.44, "margin": 12.06, "seed": 0,
                "sites": [
                    {"name": "ningxia-1", "feasible": true, "total": 81.44, "verdicts": [],
                     "factors": [
                        {"plugin": "price", "raw": 0.3, "unit": "CNY", "normalized": 12.73,
                         "weight": 3, "contribution": 38.2},
                        {"plugin": "latency", "raw": 21.5, "unit": "ms", "normalized": 43.24,
                         "weight": 1, "contribution": 43.24}]},
                    {"name": "beijing-1", "feasible": true, "total": 69.38, "verdicts": [],
                     "factors": [
                        {"plugin": "price", "raw": 0.9, "unit": "CNY", "normalized": 0,
                         "weight": 3, "contribution": 0},
                        {"plugin": "latency", "raw": 2, "unit": "", "normalized": 69.38,
                         "weight": 1, "contribution": 69.38}]},
                    {"name": "guizhou-1", "feasible": false, "total": 0,
                     "verdicts": [
                        {"plugin": "site_health", "fits": true, "permanent": false},
                        {"plugin": "resources_fit", "fits": false, "permanent": false,
                         "code": "insufficient_gpu", "detail": "needs 8, 2 free"},
                        {"plugin": "regions", "fits": false, "permanent": true,
                         "code": "region_excluded"}],
                     "factors": []}
                ],
                "nodes": [
                    {"name": "nx-gpu-03", "feasible": true, "total": 90, "verdicts": [],
                     "factors": [{"plugin": "gpu_fit", "raw": 0.5, "unit": "fraction",
                                  "normalized": 90, "weight": 1, "contribution": 90}]}
                ],
                "rejections": [{"reason": "resources_fit/insufficient_gpu", "count": 7}]
            }
        }))
        .unwrap()
    }

    #[test]
    fn explain_says_where_and_why() {
        let text = render_explanation(&explanation());
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            "task train-1 → site ningxia-1 / node nx-gpu-03 (score 81.4, margin 12.1) \
             under policy lab-a-cheap"
        );
        for part in [
            "policy lab-a-cheap (generation 3):",
            "  - match_rules.tenants contains lab-a",
            "  - default-gpu (priority 0 < 10)",
            "  weights: latency=1,price=3",
            "38.2 (0.3 CNY)",
            "43.2 (21.5 ms)",
            "69.4 (2)",
            "resources_fit: insufficient_gpu (needs 8, 2 free)",
            "top nodes in ningxia-1:",
            "nx-gpu-03 (chosen)",
            "90.0 (0.5 fraction)",
            "resources_fit/insufficient_gpu",
        ] {
            assert!(text.contains(part), "`{part}` missing in\n{text}");
        }
        let header = text.lines().find(|l| l.starts_with("SITE")).unwrap();
        for col in ["FEASIBLE", "TOTAL", "PRICE", "LATENCY", "REJECTED BY"] {
            assert!(header.contains(col), "{col} missing in {header}");
        }
        let rejected = text.lines().find(|l| l.starts_with("guizhou-1")).unwrap();
        assert!(
            !rejected.contains("region_excluded"),
            "only the first failure"
        );
    }

    #[test]
    fn explain_shows_the_chosen_node_first_or_says_it_is_missing() {
        let mut e = explanation();
        let node = e.decision.nodes[0].clone();
        e.decision.nodes = (1..=7)
            .map(|i| CandidateView {
                name: format!("n{i}"),
                ..node.clone()
            })
            .collect();
        e.decision.chosen_node = Some("n6".into());
        let (shown, missing) = nodes_shown(&e.decision);
        let names: Vec<&str> = shown.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["n6 (chosen)", "n1", "n2", "n3", "n4"]);
        assert_eq!(missing, None);
        e.decision.chosen_node = Some("n99".into());
        let text = render_explanation(&e);
        assert!(text.contains("... 2 more"), "{text}");
        assert!(
            text.contains("the chosen node n99 is not among the 7 nodes the server listed"),
            "{text}"
        );
    }

    #[test]
    fn explain_without_a_feasible_site_says_so() {
        let mut e = explanation();
        e.decision.chosen_site = None;
        e.decision.chosen_node = None;
        e.decision.nodes.clear();
        e.decision.sites.retain(|s| !s.feasible);
        let text = render_explanation(&e);
        assert!(
            text.starts_with(
                "task train-1 → not placed: no feasible site under policy lab-a-cheap\n"
            ),
            "{text}"
        );
        assert!(!text.contains("top nodes"), "{text}");
    }

    #[test]
    fn explain_files_hold_a_task_or_a_request() {
        let req = explain_request(&input("name: t\nresources: {gpus: 1}\n")).unwrap();
        assert_eq!(req.task.name, "t");
        assert_eq!(req.task.resources.gpus, 1);
        assert!(req.policy.is_none());
        let req = explain_request(&input("task: {name: t}\npolicy: p\n")).unwrap();
        assert_eq!(req.policy.as_deref(), Some("p"));
        assert!(explain_request(&input("tasks: [{name: t}]\n")).is_err());
        let e = explain_request(&input("name: t\ngpus: 1\n")).unwrap_err();
        assert!(format!("{e:#}").contains("gpus"), "{e:#}");
    }

    #[test]
    fn dry_run_files_hold_a_list_or_tasks() {
        let (tasks, seed) = dry_run_tasks(&input("- name: a\n- name: b\n")).unwrap();
        assert_eq!(tasks.len(), 2);
        assert_eq!(seed, None);
        let (tasks, seed) =
            dry_run_tasks(&input("tasks:\n  - name: a\n    replicas: 3\nseed: 9\n")).unwrap();
        assert_eq!(tasks[0].replicas, Some(3));
        assert_eq!(seed, Some(9));
        let e = dry_run_tasks(&input("- name: a\n- name: b\n  cpus: 2\n")).unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.contains("task 2 (`b`)") && msg.contains("cpus"),
            "{msg}"
        );
        assert!(dry_run_tasks(&input("")).is_err());
        assert!(dry_run_tasks(&input("tasks: 3\n")).is_err());
    }

    #[test]
    fn dry_run_compares_policies_side_by_side() {
        let req = DryRunRequest {
            policies: vec!["default".into(), "cheap".into()],
            tasks: vec![
                TaskSpec {
                    name: "a".into(),
                    replicas: Some(2),
                    ..TaskSpec::default()
                },
                TaskSpec {
                    name: "b".into(),
                    ..TaskSpec::default()
                },
            ],
            seed: 4,
        };
        let placement = |task: &str, replica: u32, site: Option<&str>| {
            json!({"task": task, "replica": replica, "site": site, "node": site.map(|_| "n1"),
                   "score": site.map(|_| 50.0),
                   "unplaced": if site.is_none() {
                       json!([{"reason": "resources_fit/insufficient_gpu", "count": 4}])
                   } else { json!([]) }})
        };
        let util = |gpu: f64| {
            json!([{"site": "ningxia-1", "gpu": gpu, "cpu": 0.125},
                   {"site": "beijing-1", "gpu": 0.0, "cpu": 0.0}])
        };
        let result: DryRunResult = serde_json::from_value(json!({"runs": [
            {"policy": "default",
             "placements": [placement("a", 0, Some("ningxia-1")), placement("a", 1, Some("ningxia-1")),
                            placement("b", 0, Some("beijing-1"))],
             "kpis": {"placed": 3, "unplaced": 0, "total_cost_cny": 12.346, "energy_kwh": 1.5,
                      "mean_latency_ms": 10.26, "utilization": util(0.5)}},
            {"policy": "cheap",
             "placements": [placement("a", 0, Some("ningxia-1")), placement("a", 1, Some("ningxia-1")),
                            placement("b", 0, None)],
             "kpis": {"placed": 2, "unplaced": 1, "total_cost_cny": 8, "energy_kwh": 1,
                      "utilization": util(0.25)}}
        ]}))
        .unwrap();
        let text = render_dry_run(&req, &result);
        assert!(
            text.starts_with("dry-run of 2 tasks (3 replicas), seed 4\n"),
            "{text}"
        );
        let cells = |prefix: &str| -> Vec<String> {
            let line = text.lines().find(|l| l.starts_with(prefix)).unwrap();
            line.split("   ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(cells("KPI"), ["KPI", "default", "cheap"]);
        assert_eq!(cells("placed"), ["placed", "3", "2"]);
        assert_eq!(cells("total cost"), ["total cost (CNY)", "12.35", "8.00"]);
        assert_eq!(cells("mean latency"), ["mean latency (ms)", "10.3", "-"]);
        assert_eq!(
            cells("SITE"),
            [
                "SITE",
                "PLACED (default)",
                "PLACED (cheap)",
                "GPU % (default)",
                "GPU % (cheap)",
                "CPU % (default)",
                "CPU % (cheap)"
            ]
        );
        assert_eq!(
            cells("ningxia-1"),
            ["ningxia-1", "2", "2", "50.0%", "25.0%", "12.5%", "12.5%"]
        );
        assert_eq!(
            cells("beijing-1"),
            ["beijing-1", "1", "0", "0.0%", "0.0%", "0.0%", "0.0%"]
        );
        assert!(text.contains("unplaced under cheap (1): b\n"), "{text}");
        assert_eq!(
            cells("resources_fit"),
            ["resources_fit/insufficient_gpu", "4"]
        );
    }
}
