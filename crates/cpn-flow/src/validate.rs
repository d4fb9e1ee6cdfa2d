//! Validation of a process definition: every problem, each with the path of the field
//! (`steps[2].depends_on[0]`), in definition order.

use crate::{cond, subst};
use cpn_api_types::flows::{Action, FlowDefinition};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for FlowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Every problem of `def`; empty when it can run.
pub fn validate(def: &FlowDefinition) -> Vec<FlowError> {
    let mut errs = Vec::new();
    let mut err = |path: String, message: String| errs.push(FlowError { path, message });
    if def.name.trim().is_empty() {
        err("name".into(), "must not be empty".into());
    }
    if def.steps.is_empty() {
        err("steps".into(), "a workflow needs at least one step".into());
    }
    if def.max_parallel == Some(0) {
        err("max_parallel".into(), "must be at least 1".into());
    }
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, s) in def.steps.iter().enumerate() {
        if !valid_id(&s.id) {
            err(
                format!("steps[{i}].id"),
                format!("{:?} is not a valid step id ([a-z0-9_-]+)", s.id),
            );
        }
        if let Some(j) = index.get(s.id.as_str()) {
            err(
                format!("steps[{i}].id"),
                format!("duplicate step id {:?} (first at steps[{j}])", s.id),
            );
        } else {
            index.insert(&s.id, i);
        }
    }
    for (i, s) in def.steps.iter().enumerate() {
        for (j, d) in s.depends_on.iter().enumerate() {
            if d == &s.id {
                err(
                    format!("steps[{i}].depends_on[{j}]"),
                    format!("step {:?} depends on itself", s.id),
                );
            } else if !index.contains_key(d.as_str()) {
                err(
                    format!("steps[{i}].depends_on[{j}]"),
                    format!("unknown step {d:?}"),
                );
            }
        }
        if let Some(w) = &s.when
            && let Err(e) = cond::compile(w)
        {
            err(
                format!("steps[{i}].when"),
                format!("invalid condition: {e}"),
            );
        }
        if !(s.retry.backoff_s.is_finite() && s.retry.backoff_s >= 0.0) {
            err(
                format!("steps[{i}].retry.backoff_s"),
                "must be a finite number >= 0".into(),
            );
        }
        if let Some(t) = s.timeout_s
            && !(t.is_finite() && t > 0.0)
        {
            err(format!("steps[{i}].timeout_s"), "must be > 0".into());
        }
        if let Some(items) = &s.for_each
            && items.is_empty()
        {
            err(format!("steps[{i}].for_each"), "must not be empty".into());
        }
        check_action(
            &s.action,
            &format!("steps[{i}].action"),
            &index,
            s.for_each.is_some(),
            &mut err,
        );
        if let Some(c) = &s.compensate {
            check_action(
                c,
                &format!("steps[{i}].compensate"),
                &index,
                false,
                &mut err,
            );
        }
    }
    for (path, message) in cycles(def, &index) {
        err(path, message);
    }
    errs
}

fn check_action(
    a: &Action,
    path: &str,
    index: &HashMap<&str, usize>,
    has_item: bool,
    err: &mut impl FnMut(String, String),
) {
    if let Action::Sleep { seconds } = a
        && !(seconds.is_finite() && *seconds >= 0.0)
    {
        err(
            format!("{path}.seconds"),
            "must be a finite number >= 0".into(),
        );
    }
    let json = serde_json::to_value(a).unwrap_or_default();
    for r in subst::references(&json) {
        let mut parts = r.split('.');
        let ok = match parts.next() {
            Some("inputs") => parts.next().is_some(),
            Some("item") => has_item,
            Some("steps") => {
                let id = parts.next().unwrap_or_default();
                index.contains_key(id) && matches!(parts.next(), Some("outputs") | Some("status"))
            }
            _ => false,
        };
        if !ok {
            err(
                path.to_string(),
                format!(
                    "unknown reference ${{{r}}} (use inputs.NAME, steps.ID.outputs.NAME or item in a for_each step)"
                ),
            );
        }
    }
}

/// Each dependency cycle once, reported on the `depends_on` of its first step in
/// definition order.
fn cycles(def: &FlowDefinition, index: &HashMap<&str, usize>) -> Vec<(String, String)> {
    // 0 unvisited, 1 on the stack, 2 done.
    let n = def.steps.len();
    let mut mark = vec![0u8; n];
    let mut found: BTreeMap<usize, String> = BTreeMap::new();
    fn dfs(
        v: usize,
        def: &FlowDefinition,
        index: &HashMap<&str, usize>,
        mark: &mut [u8],
        stack: &mut Vec<usize>,
        found: &mut BTreeMap<usize, String>,
    ) {
        mark[v] = 1;
        stack.push(v);
        for d in &def.steps[v].depends_on {
            let Some(&u) = index.get(d.as_str()) else {
                continue;
            };
            if u == v {
                continue; // reported as a self-dependency
            }
            if mark[u] == 1 {
                let pos = stack.iter().position(|&x| x == u).unwrap_or(0);
                let cycle: Vec<usize> = stack[pos..].to_vec();
                let first = *cycle.iter().min().unwrap_or(&u);
                let mut names: Vec<&str> =
                    cycle.iter().map(|&x| def.steps[x].id.as_str()).collect();
                names.push(&def.steps[u].id);
                found
                    .entry(first)
                    .or_insert_with(|| format!("dependency cycle: {}", names.join(" -> ")));
            } else if mark[u] == 0 {
                dfs(u, def, index, mark, stack, found);
            }
        }
        stack.pop();
        mark[v] = 2;
    }
    for v in 0..n {
        if mark[v] == 0 {
            dfs(v, def, index, &mut mark, &mut Vec::new(), &mut found);
        }
    }
    found
        .into_iter()
        .map(|(i, m)| (format!("steps[{i}].depends_on"), m))
        .collect()
}

/// Most elements one list or object of a workflow's inputs may have. Conditions loop over
/// inputs; with the iteration budget this keeps one loop level far below the budget.
pub const MAX_INPUT_ELEMENTS: usize = 10_000;
/// Most bytes a workflow's inputs may take as JSON.
pub const MAX_INPUT_BYTES: usize = 1 << 20;

/// Problems of the inputs a workflow is started with: a list or object longer than
/// [`MAX_INPUT_ELEMENTS`] (path `inputs.NAME…`), or more than [`MAX_INPUT_BYTES`] in all.
pub fn inputs(inputs: &BTreeMap<String, serde_json::Value>) -> Vec<FlowError> {
    fn walk(path: String, v: &serde_json::Value, errs: &mut Vec<FlowError>) {
        let too_long = |n: usize| FlowError {
            path: path.clone(),
            message: format!("has {n} elements; an input may hold at most {MAX_INPUT_ELEMENTS}"),
        };
        match v {
            serde_json::Value::Array(a) => {
                if a.len() > MAX_INPUT_ELEMENTS {
                    errs.push(too_long(a.len()));
                    return;
                }
                for (i, x) in a.iter().enumerate() {
                    walk(format!("{path}[{i}]"), x, errs);
                }
            }
            serde_json::Value::Object(o) => {
                if o.len() > MAX_INPUT_ELEMENTS {
                    errs.push(too_long(o.len()));
                    return;
                }
                for (k, x) in o {
                    walk(format!("{path}.{k}"), x, errs);
                }
            }
            _ => {}
        }
    }
    let mut errs = Vec::new();
    let bytes = serde_json::to_vec(inputs).map_or(0, |b| b.len());
    if bytes > MAX_INPUT_BYTES {
        errs.push(FlowError {
            path: "inputs".into(),
            message: format!("take {bytes} bytes as JSON; at most {MAX_INPUT_BYTES} are allowed"),
        });
    }
    for (k, v) in inputs {
        walk(format!("inputs.{k}"), v, &mut errs);
    }
    errs
}
