//! Design templates (DO-TPL, 表5/表6): a TOSCA-inspired subset in YAML.
//!
//! ```yaml
//! description: …
//! inputs:        # name → {type: string|integer|number|boolean, default, description,
//!                #         constraints: {min, max, allowed_values}}
//! node_templates: # name → {type: compute|vm|container|gpu|storage|network|security|app,
//!                 #         properties: {cores, memory_gib, gpu_model, gpus, storage_gib,
//!                 #                      bandwidth_gbps, image, command, replicas, region,
//!                 #                      deadline_hours},
//!                 #         requirements: {depends_on: [names],
//!                 #                        connects_to: [{node, max_latency_ms, min_bandwidth_gbps}]}}
//! outputs:        # name → {description, value}
//! ```
//!
//! Any property (and a `connects_to` bound) may be `{get_input: NAME}`; an output value may
//! also be `{get_site: NODE}` (the site the node is placed on, filled in by the planner).
//!
//! [`check`] parses and validates, returning **every** error with its path
//! (`node_templates.trainer.properties.gpus`); [`instantiate`] checks given inputs the same
//! way and yields concrete nodes. Pure: no I/O, clock or randomness.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The base templates shipped with cpn: (name, category, tags, YAML).
pub const BASE_TEMPLATES: &[(&str, &str, &[&str], &str)] = &[
    (
        "gpu-training-cluster",
        "ai-training",
        &["gpu", "training", "distributed"],
        include_str!("base/gpu-training.yaml"),
    ),
    (
        "inference-edge-service",
        "ai-inference",
        &["gpu", "inference", "edge", "low-latency"],
        include_str!("base/inference-edge.yaml"),
    ),
    (
        "hpc-batch-job",
        "hpc",
        &["cpu", "mpi", "batch"],
        include_str!("base/hpc-batch.yaml"),
    ),
    (
        "data-pipeline",
        "data",
        &["etl", "storage", "cpu"],
        include_str!("base/data-pipeline.yaml"),
    ),
];

pub const NODE_TYPES: &[&str] = &[
    "compute",
    "vm",
    "container",
    "gpu",
    "storage",
    "network",
    "security",
    "app",
];
pub const INPUT_TYPES: &[&str] = &["string", "integer", "number", "boolean"];

/// One problem, where it is and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Issue {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

fn issue(path: impl Into<String>, message: impl Into<String>) -> Issue {
    Issue {
        path: path.into(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub inputs: BTreeMap<String, InputDef>,
    pub node_templates: BTreeMap<String, NodeTemplate>,
    #[serde(default)]
    pub outputs: BTreeMap<String, OutputDef>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputDef {
    #[serde(rename = "type")]
    pub ty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub constraints: Constraints,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constraints {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_values: Option<Vec<Value>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeTemplate {
    #[serde(rename = "type")]
    pub ty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub properties: BTreeMap<String, Value>,
    #[serde(default)]
    pub requirements: Requirements,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirements {
    #[serde(default)]
    pub depends_on: Vec<String>,
    #[serde(default)]
    pub connects_to: Vec<ConnectsTo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectsTo {
    pub node: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency_ms: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_bandwidth_gbps: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputDef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub value: Value,
}

/// What a property holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PropKind {
    /// A number ≥ 0 (`positive`: > 0).
    Number {
        positive: bool,
    },
    /// A whole number ≥ `min`.
    Integer {
        min: i64,
    },
    Str,
    Argv,
}

/// Every known property and what it holds.
const PROPERTIES: &[(&str, PropKind)] = &[
    ("cores", PropKind::Number { positive: true }),
    ("memory_gib", PropKind::Number { positive: false }),
    ("gpu_model", PropKind::Str),
    ("gpus", PropKind::Integer { min: 0 }),
    ("storage_gib", PropKind::Number { positive: false }),
    ("bandwidth_gbps", PropKind::Number { positive: false }),
    ("image", PropKind::Str),
    ("command", PropKind::Argv),
    ("replicas", PropKind::Integer { min: 1 }),
    ("region", PropKind::Str),
    ("deadline_hours", PropKind::Number { positive: true }),
];

fn prop_kind(name: &str) -> Option<PropKind> {
    PROPERTIES.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
}

/// `{get_input: NAME}` → NAME.
pub fn get_input(v: &Value) -> Option<&str> {
    match v {
        Value::Object(m) if m.len() == 1 => m.get("get_input").and_then(Value::as_str),
        _ => None,
    }
}

fn get_site(v: &Value) -> Option<&str> {
    match v {
        Value::Object(m) if m.len() == 1 => m.get("get_site").and_then(Value::as_str),
        _ => None,
    }
}

/// Parses YAML (or JSON) into a template; a structural error is one issue with its path.
pub fn parse(source: &str) -> Result<Template, Vec<Issue>> {
    let de = serde_yaml::Deserializer::from_str(source);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        vec![issue(path, e.into_inner().to_string())]
    })
}

/// Parses and validates; every issue, sorted by path.
pub fn check(source: &str) -> Result<Template, Vec<Issue>> {
    let t = parse(source)?;
    let issues = validate(&t);
    if issues.is_empty() {
        Ok(t)
    } else {
        Err(issues)
    }
}

/// Checks a value against an input's type and constraints.
fn check_value(def: &InputDef, v: &Value, path: &str, out: &mut Vec<Issue>) {
    let ok = match def.ty.as_str() {
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => return,
    };
    if !ok {
        out.push(issue(path, format!("expected {}, got {v}", def.ty)));
        return;
    }
    let c = &def.constraints;
    if let Some(x) = v.as_f64() {
        if let Some(min) = c.min
            && x < min
        {
            out.push(issue(path, format!("{x} is below the minimum {min}")));
        }
        if let Some(max) = c.max
            && x > max
        {
            out.push(issue(path, format!("{x} is above the maximum {max}")));
        }
    }
    if let Some(allowed) = &c.allowed_values
        && !allowed.iter().any(|a| same_value(a, v))
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        out.push(issue(
            path,
            format!("{v} is not one of the allowed values [{}]", list.join(", ")),
        ));
    }
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Does an input of type `ty` fit a property of kind `k`?
fn input_fits(ty: &str, k: PropKind) -> bool {
    match k {
        PropKind::Number { .. } => ty == "number" || ty == "integer",
        PropKind::Integer { .. } => ty == "integer",
        PropKind::Str => ty == "string",
        PropKind::Argv => false,
    }
}

fn check_literal(k: PropKind, v: &Value, path: &str, out: &mut Vec<Issue>) {
    let bad = |m: &str| issue(path, format!("{m}, got {v}"));
    match k {
        PropKind::Number { positive } => match v.as_f64() {
            Some(x) if x.is_finite() && (x > 0.0 || (!positive && x == 0.0)) => {}
            Some(_) if positive => out.push(bad("expected a number above 0")),
            _ => out.push(bad("expected a number of at least 0")),
        },
        PropKind::Integer { min } => match v.as_i64() {
            Some(x) if x >= min => {}
            _ => out.push(bad(&format!("expected a whole number of at least {min}"))),
        },
        PropKind::Str => {
            if !v.is_string() {
                out.push(bad("expected a string"));
            }
        }
        PropKind::Argv => match v.as_array() {
            Some(a) if !a.is_empty() && a.iter().all(Value::is_string) => {}
            _ => out.push(bad("expected a non-empty list of strings (argv)")),
        },
    }
}

/// A property value: a literal of its kind or a `get_input` of a fitting input.
fn check_prop(t: &Template, k: PropKind, v: &Value, path: &str, out: &mut Vec<Issue>) {
    if let Some(name) = get_input(v) {
        match t.inputs.get(name) {
            None => out.push(issue(path, format!("get_input of unknown input {name:?}"))),
            Some(def) if INPUT_TYPES.contains(&def.ty.as_str()) && !input_fits(&def.ty, k) => out
                .push(issue(
                    path,
                    format!("input {name:?} is a {}, which does not fit here", def.ty),
                )),
            Some(_) => {}
        }
    } else {
        check_literal(k, v, path, out);
    }
}

/// Every problem of a parsed template, sorted by path.
pub fn validate(t: &Template) -> Vec<Issue> {
    let mut out = Vec::new();
    for (name, def) in &t.inputs {
        let p = format!("inputs.{name}");
        if !INPUT_TYPES.contains(&def.ty.as_str()) {
            out.push(issue(
                format!("{p}.type"),
                format!(
                    "unknown input type {:?}; valid: {}",
                    def.ty,
                    INPUT_TYPES.join(", ")
                ),
            ));
        }
        if let (Some(min), Some(max)) = (def.constraints.min, def.constraints.max)
            && min > max
        {
            out.push(issue(
                format!("{p}.constraints"),
                format!("min {min} is above max {max}"),
            ));
        }
        if let Some(d) = &def.default {
            check_value(def, d, &format!("{p}.default"), &mut out);
        }
    }
    if t.node_templates.is_empty() {
        out.push(issue(
            "node_templates",
            "a template needs at least one node",
        ));
    }
    for (name, n) in &t.node_templates {
        let p = format!("node_templates.{name}");
        if !valid_name(name) {
            out.push(issue(
                p.clone(),
                "node names are lowercase letters, digits, '_' and '-', starting with a letter",
            ));
        }
        if !NODE_TYPES.contains(&n.ty.as_str()) {
            out.push(issue(
                format!("{p}.type"),
                format!(
                    "unknown node type {:?}; valid: {}",
                    n.ty,
                    NODE_TYPES.join(", ")
                ),
            ));
        }
        for (prop, v) in &n.properties {
            let pp = format!("{p}.properties.{prop}");
            match prop_kind(prop) {
                None => out.push(issue(
                    pp,
                    format!(
                        "unknown property; valid: {}",
                        PROPERTIES
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )),
                Some(k) => check_prop(t, k, v, &pp, &mut out),
            }
        }
        for (i, d) in n.requirements.depends_on.iter().enumerate() {
            let pp = format!("{p}.requirements.depends_on[{i}]");
            if !t.node_templates.contains_key(d) {
                out.push(issue(pp, format!("unknown node template {d:?}")));
            } else if d == name {
                out.push(issue(pp, "a node cannot depend on itself"));
            }
        }
        for (i, c) in n.requirements.connects_to.iter().enumerate() {
            let pp = format!("{p}.requirements.connects_to[{i}]");
            if !t.node_templates.contains_key(&c.node) {
                out.push(issue(
                    format!("{pp}.node"),
                    format!("unknown node template {:?}", c.node),
                ));
            }
            if let Some(v) = &c.max_latency_ms {
                check_prop(
                    t,
                    PropKind::Number { positive: true },
                    v,
                    &format!("{pp}.max_latency_ms"),
                    &mut out,
                );
            }
            if let Some(v) = &c.min_bandwidth_gbps {
                check_prop(
                    t,
                    PropKind::Number { positive: false },
                    v,
                    &format!("{pp}.min_bandwidth_gbps"),
                    &mut out,
                );
            }
        }
    }
    if let Some(cycle) = find_cycle(t) {
        out.push(issue(
            format!("node_templates.{}.requirements.depends_on", cycle[0]),
            format!("dependency cycle: {}", cycle.join(" -> ")),
        ));
    }
    for (name, o) in &t.outputs {
        let p = format!("outputs.{name}.value");
        if let Some(i) = get_input(&o.value)
            && !t.inputs.contains_key(i)
        {
            out.push(issue(p, format!("get_input of unknown input {i:?}")));
        } else if let Some(n) = get_site(&o.value)
            && !t.node_templates.contains_key(n)
        {
            out.push(issue(p, format!("get_site of unknown node template {n:?}")));
        }
    }
    out.sort();
    out
}

fn valid_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_lowercase())
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// A cycle of `depends_on` (known nodes only), as the names along it, first repeated last.
pub fn find_cycle(t: &Template) -> Option<Vec<String>> {
    // 0 unvisited, 1 on the stack, 2 done.
    let mut mark: BTreeMap<&str, u8> = BTreeMap::new();
    fn visit<'a>(
        t: &'a Template,
        n: &'a str,
        mark: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match mark.get(n) {
            Some(2) => return None,
            Some(1) => {
                let at = stack.iter().position(|s| *s == n).unwrap_or(0);
                let mut c: Vec<String> = stack[at..].iter().map(|s| s.to_string()).collect();
                c.push(n.to_string());
                return Some(c);
            }
            _ => {}
        }
        mark.insert(n, 1);
        stack.push(n);
        for d in &t.node_templates[n].requirements.depends_on {
            if d != n
                && t.node_templates.contains_key(d)
                && let Some(c) = visit(t, d, mark, stack)
            {
                return Some(c);
            }
        }
        stack.pop();
        mark.insert(n, 2);
        None
    }
    for n in t.node_templates.keys() {
        let mut stack = Vec::new();
        if let Some(c) = visit(t, n, &mut mark, &mut stack) {
            return Some(c);
        }
    }
    None
}

/// A node template with every property resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConcreteNode {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub cores: f64,
    pub memory_gib: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_model: Option<String>,
    pub gpus: u32,
    pub storage_gib: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_gbps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    pub replicas: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_hours: Option<f64>,
    pub depends_on: Vec<String>,
    pub connects_to: Vec<ConcreteLink>,
}

impl ConcreteNode {
    /// Nodes that take capacity on a site: everything but network and security nodes,
    /// which are configuration of the sites their peers are placed on.
    pub fn is_placed(&self) -> bool {
        !matches!(self.ty.as_str(), "network" | "security")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConcreteLink {
    pub node: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_bandwidth_gbps: Option<f64>,
}

/// A template instantiated with inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// Every input's value (given or default).
    pub inputs: BTreeMap<String, Value>,
    /// In dependency order (a node after everything it depends on), ties by name.
    pub nodes: Vec<ConcreteNode>,
    /// Outputs with `get_input` resolved; `get_site` is left for the planner.
    pub outputs: BTreeMap<String, Value>,
}

/// Checks `given` (unknown names, types, constraints, missing values) and resolves every
/// node. The template must be valid ([`validate`] empty); issues otherwise.
pub fn instantiate(t: &Template, given: &BTreeMap<String, Value>) -> Result<Instance, Vec<Issue>> {
    let mut out = validate(t);
    if !out.is_empty() {
        return Err(out);
    }
    let mut inputs = BTreeMap::new();
    for name in given.keys() {
        if !t.inputs.contains_key(name) {
            out.push(issue(
                format!("inputs.{name}"),
                "not an input of this template",
            ));
        }
    }
    for (name, def) in &t.inputs {
        let p = format!("inputs.{name}");
        match given.get(name).or(def.default.as_ref()) {
            Some(v) => {
                // A string given where a number is declared (`--input n=3` from a shell)
                // is accepted when it parses.
                let v = coerce(&def.ty, v);
                check_value(def, &v, &p, &mut out);
                inputs.insert(name.clone(), v);
            }
            None => out.push(issue(p, "required: no value given and no default")),
        }
    }
    if !out.is_empty() {
        out.sort();
        return Err(out);
    }
    let resolve = |v: &Value| -> Value {
        match get_input(v) {
            Some(i) => inputs.get(i).cloned().unwrap_or(Value::Null),
            None => v.clone(),
        }
    };
    let mut nodes = Vec::new();
    for name in topo_order(t) {
        let n = &t.node_templates[&name];
        let prop = |k: &str| n.properties.get(k).map(&resolve);
        let num = |k: &str| prop(k).and_then(|v| v.as_f64());
        let text = |k: &str| {
            prop(k)
                .and_then(|v| v.as_str().map(str::to_string))
                .filter(|s| !s.is_empty())
        };
        let (dc, dm) = match n.ty.as_str() {
            "gpu" => (4.0, 16.0),
            "storage" => (0.5, 1.0),
            "network" | "security" => (0.0, 0.0),
            _ => (1.0, 2.0),
        };
        let gpus = num("gpus")
            .map(|g| g as u32)
            .unwrap_or(match n.ty.as_str() {
                "gpu" => 1,
                _ => 0,
            });
        nodes.push(ConcreteNode {
            name: name.clone(),
            ty: n.ty.clone(),
            cores: num("cores").unwrap_or(dc),
            memory_gib: num("memory_gib").unwrap_or(dm),
            gpu_model: text("gpu_model"),
            gpus,
            storage_gib: num("storage_gib").unwrap_or(if n.ty == "storage" { 100.0 } else { 0.0 }),
            bandwidth_gbps: num("bandwidth_gbps"),
            image: text("image"),
            command: prop("command")
                .and_then(|v| serde_json::from_value(v).ok())
                .unwrap_or_default(),
            replicas: num("replicas").map(|r| r.max(1.0) as u32).unwrap_or(1),
            region: text("region"),
            deadline_hours: num("deadline_hours"),
            depends_on: n.requirements.depends_on.clone(),
            connects_to: n
                .requirements
                .connects_to
                .iter()
                .map(|c| ConcreteLink {
                    node: c.node.clone(),
                    max_latency_ms: c.max_latency_ms.as_ref().and_then(|v| resolve(v).as_f64()),
                    min_bandwidth_gbps: c
                        .min_bandwidth_gbps
                        .as_ref()
                        .and_then(|v| resolve(v).as_f64()),
                })
                .collect(),
        });
    }
    let outputs = t
        .outputs
        .iter()
        .map(|(k, o)| (k.clone(), resolve(&o.value)))
        .collect();
    Ok(Instance {
        inputs,
        nodes,
        outputs,
    })
}

fn coerce(ty: &str, v: &Value) -> Value {
    let Some(s) = v.as_str() else {
        return v.clone();
    };
    match ty {
        "integer" => s.parse::<i64>().map(Value::from).unwrap_or(v.clone()),
        "number" => s
            .parse::<f64>()
            .ok()
            .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
            .unwrap_or(v.clone()),
        "boolean" => s.parse::<bool>().map(Value::from).unwrap_or(v.clone()),
        _ => v.clone(),
    }
}

/// Node names so that each comes after its dependencies (Kahn's algorithm, ties by name).
/// Assumes no cycle.
pub fn topo_order(t: &Template) -> Vec<String> {
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut order = Vec::new();
    while order.len() < t.node_templates.len() {
        let next = t.node_templates.iter().find(|(n, nt)| {
            !done.contains(n.as_str())
                && nt
                    .requirements
                    .depends_on
                    .iter()
                    .all(|d| done.contains(d.as_str()) || !t.node_templates.contains_key(d))
        });
        match next {
            Some((n, _)) => {
                done.insert(n);
                order.push(n.clone());
            }
            None => break,
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_templates_are_valid_and_instantiate_with_defaults() {
        for (name, _, _, src) in BASE_TEMPLATES {
            let t = check(src).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            let inst =
                instantiate(&t, &BTreeMap::new()).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert!(!inst.nodes.is_empty());
            for (i, d) in t.inputs.values().enumerate() {
                assert!(d.default.is_some(), "{name}: input {i} has no default");
            }
        }
    }

    #[test]
    fn every_error_is_reported_with_its_path() {
        let src = r#"
inputs:
  nodes: {type: integer, default: 0, constraints: {min: 1}}
  kind: {type: colour}
node_templates:
  trainer:
    type: gpu
    properties:
      gpus: "many"
      replicas: {get_input: missing}
      flavour: big
    requirements:
      depends_on: [web]
  web:
    type: app
    requirements:
      depends_on: [ghost, trainer]
      connects_to: [{node: nowhere, max_latency_ms: -3}]
  db:
    type: database
outputs:
  x: {value: {get_site: nobody}}
"#;
        let issues = check(src).unwrap_err();
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        for want in [
            "inputs.nodes.default",
            "inputs.kind.type",
            "node_templates.trainer.properties.gpus",
            "node_templates.trainer.properties.replicas",
            "node_templates.trainer.properties.flavour",
            "node_templates.web.requirements.depends_on[0]",
            "node_templates.web.requirements.connects_to[0].node",
            "node_templates.web.requirements.connects_to[0].max_latency_ms",
            "node_templates.db.type",
            "outputs.x.value",
        ] {
            assert!(paths.contains(&want), "missing {want} in {paths:?}");
        }
        assert!(
            issues
                .iter()
                .any(|i| i.message.contains("dependency cycle")),
            "{issues:?}"
        );
    }

    #[test]
    fn structural_errors_have_a_path() {
        let e = check("node_templates:\n  a:\n    type: app\n    bogus: 1\n").unwrap_err();
        assert_eq!(e.len(), 1);
        assert!(e[0].path.starts_with("node_templates.a"), "{e:?}");
    }

    #[test]
    fn given_inputs_are_checked_and_resolved() {
        let (_, _, _, src) = BASE_TEMPLATES[0];
        let t = check(src).unwrap();
        let mut given = BTreeMap::new();
        given.insert("gpus_per_worker".to_string(), Value::from(3));
        given.insert("workers".to_string(), Value::from(100));
        given.insert("colour".to_string(), Value::from("red"));
        let e = instantiate(&t, &given).unwrap_err();
        let paths: Vec<&str> = e.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            ["inputs.colour", "inputs.gpus_per_worker", "inputs.workers"]
        );
        let mut given = BTreeMap::new();
        given.insert("workers".to_string(), Value::from("3"));
        given.insert("gpus_per_worker".to_string(), Value::from(2));
        let inst = instantiate(&t, &given).unwrap();
        let trainer = inst.nodes.iter().find(|n| n.name == "trainer").unwrap();
        assert_eq!((trainer.replicas, trainer.gpus), (3, 2));
        // Dependencies come first.
        let pos = |n: &str| inst.nodes.iter().position(|x| x.name == n).unwrap();
        assert!(pos("dataset") < pos("trainer") && pos("fabric") < pos("trainer"));
        assert_eq!(inst.outputs["workers"], Value::from(3));
    }

    #[test]
    fn cycles_are_found() {
        let src = "node_templates:\n  a: {type: app, requirements: {depends_on: [b]}}\n  b: {type: app, requirements: {depends_on: [c]}}\n  c: {type: app, requirements: {depends_on: [a]}}\n";
        let e = check(src).unwrap_err();
        assert_eq!(e.len(), 1);
        assert!(e[0].message.contains("a -> b -> c -> a"), "{e:?}");
    }
}
