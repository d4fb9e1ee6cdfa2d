//! CEL rules as scheduler plugins (SC-POL-06: policy types extended without recompiling).
//!
//! A rule is compiled once (when a policy is compiled into a profile) and evaluated per site,
//! or per node inside the chosen site when the expression mentions `node`. The variables an
//! expression sees are documented in [`VARIABLES`]; `validate` checks references against it.
//!
//! `cel::Program` and `cel::Env` are `Send + Sync` (asserted in the tests), so the plugins
//! hold them directly; every evaluation builds a small `cel::Context` over a shared `Env`.

use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use cel::objects::{Key, Map};
use cel::{Context, Env, Program, Value};
use cpn_cel::line_col;
use cpn_model::Labels;
use cpn_sched::cluster::Offer;
use cpn_sched::framework::{NodeFilter, NodeScore, SiteFilter, SiteScore};
use cpn_sched::{Better, Cluster, CycleState, Plugin, Task, Verdict};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

/// Reason code when a filter expression evaluates to `false`.
pub const CODE_REJECTED: &str = "cel_rejected";
/// Reason code when a filter expression fails at run time or returns a non-bool.
pub const CODE_ERROR: &str = "cel_error";
/// Prefix of every CEL plugin's name: `cel:<rule name>`.
pub const PLUGIN_PREFIX: &str = "cel:";

/// One field of a CEL variable, for validation and documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldDoc {
    pub name: &'static str,
    /// CEL type: `string`, `int`, `double`, `bool`, `list(string)`, `map(string, string)`.
    pub ty: &'static str,
    pub doc: &'static str,
}

const fn f(name: &'static str, ty: &'static str, doc: &'static str) -> FieldDoc {
    FieldDoc { name, ty, doc }
}

/// Fields of `site` (every rule; for node rules, the node's site).
pub const SITE_FIELDS: &[FieldDoc] = &[
    f("name", "string", "site name"),
    f("region", "string", "site region"),
    f("labels", "map(string, string)", "site labels"),
    f("pue", "double", "power usage effectiveness"),
    f("electricity_price", "double", "CNY per kWh"),
    f(
        "carbon_intensity",
        "double",
        "gCO2 per kWh; absent when unknown, test with has(site.carbon_intensity)",
    ),
    f("healthy", "bool", "site health"),
    f("nodes", "int", "number of nodes"),
    f("free_gpus", "int", "whole GPUs free on schedulable nodes"),
    f(
        "total_gpus",
        "int",
        "whole GPUs on schedulable nodes when idle",
    ),
    f(
        "free_gpu_milli",
        "int",
        "free GPU milli, fractions included",
    ),
    f("free_cpu_cores", "double", "free CPU cores"),
    f("free_memory_gib", "double", "free memory, GiB"),
    f("models", "list(string)", "chip models the site offers"),
    f(
        "architectures",
        "list(string)",
        "architectures the site offers",
    ),
];

/// Fields of `node` (node rules only).
pub const NODE_FIELDS: &[FieldDoc] = &[
    f("name", "string", "node name"),
    f("labels", "map(string, string)", "node labels"),
    f(
        "model",
        "string",
        "chip model (CPU model for CPU-only nodes)",
    ),
    f("architecture", "string", "architecture"),
    f(
        "chip",
        "string",
        "cpu, gpu, npu, other, or \"\" when unknown",
    ),
    f("healthy", "bool", "healthy and not cordoned"),
    f("cpu_cores", "double", "CPU cores"),
    f("free_cpu_cores", "double", "free CPU cores"),
    f("memory_gib", "double", "memory, GiB"),
    f("free_memory_gib", "double", "free memory, GiB"),
    f("gpus", "int", "GPUs"),
    f("free_gpus", "int", "whole GPUs free"),
    f(
        "free_gpu_milli",
        "int",
        "free GPU milli, fractions included",
    ),
    f("tflops_per_unit", "double", "peak TFLOPS per accelerator"),
    f("price_per_unit_hour", "double", "CNY per accelerator-hour"),
];

/// Fields of `task` (every rule).
pub const TASK_FIELDS: &[FieldDoc] = &[
    f("id", "string", "task id"),
    f("tenant", "string", "tenant"),
    f("business", "string", "business type, \"\" when unset"),
    f("origin_region", "string", "origin region, \"\" when unset"),
    f("priority", "int", "task priority"),
    f("gpus", "int", "GPUs per replica"),
    f("gpu_milli", "int", "milli of each GPU (1000 = whole)"),
    f("cpu_cores", "double", "CPU cores per replica"),
    f("memory_gib", "double", "memory per replica, GiB"),
    f("chip", "string", "chip kind wanted, \"\" for any"),
    f(
        "models",
        "list(string)",
        "acceptable chip models, empty for any",
    ),
    f("est_hours", "double", "expected run time, hours"),
    f("labels", "map(string, string)", "task labels"),
];

/// The variables a CEL rule may reference, with their fields.
pub const VARIABLES: &[(&str, &[FieldDoc])] = &[
    ("site", SITE_FIELDS),
    ("node", NODE_FIELDS),
    ("task", TASK_FIELDS),
];

/// Identifiers CEL itself gives meaning to (type names), accepted as references.
const CEL_IDENTS: &[&str] = &[
    "int",
    "uint",
    "double",
    "bool",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
];

/// A problem in a CEL expression, located by 1-based line and column where known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprProblem {
    pub message: String,
    pub position: Option<(usize, usize)>,
}

/// Loop iterations one evaluation of a rule may take. Rules run per site (or node) inside
/// scheduling and read small values (labels, model lists), so this is generous for them
/// and small enough that no rule can stall a scheduling cycle.
pub const RULE_ITERATIONS: u64 = 10_000;

impl From<cpn_cel::Problem> for ExprProblem {
    fn from(p: cpn_cel::Problem) -> Self {
        ExprProblem {
            message: p.message,
            position: p.position,
        }
    }
}

/// Parses `source` within `cpn_cel::LIMITS` (length first); on failure returns every
/// parse error with its position.
pub fn parse(source: &str) -> Result<Program, Vec<ExprProblem>> {
    cpn_cel::parse(source, &cpn_cel::LIMITS)
        .map_err(|problems| problems.into_iter().map(ExprProblem::from).collect())
}

/// The save-time bounds of a parsed rule: depth and macro nesting (`cpn_cel::LIMITS`).
pub fn check_limits(program: &Program) -> Vec<ExprProblem> {
    cpn_cel::check(program, &cpn_cel::LIMITS)
        .into_iter()
        .map(ExprProblem::from)
        .collect()
}

/// Best-effort reference check: variables other than `site`, `node` and `task` (and
/// comprehension variables), and fields those variables do not have.
pub fn check_references(program: &Program) -> Vec<ExprProblem> {
    let source = &program.source_info().source;
    let pos = |id: u64| {
        program
            .source_info()
            .offset_for(id)
            .map(|(start, _)| line_col(source, start as usize))
    };
    let mut out = Vec::new();
    walk(program.expression(), &mut Vec::new(), &mut |r| {
        let (id, message) = match r {
            Ref::Unknown { name, id } => (
                id,
                format!("unknown variable `{name}`; rules may use site, node and task"),
            ),
            Ref::Field { root, field, id } => {
                let fields = fields_of(root);
                if fields.iter().any(|f| f.name == field) {
                    return;
                }
                let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
                (
                    id,
                    format!(
                        "`{root}` has no field `{field}`; it has {}",
                        names.join(", ")
                    ),
                )
            }
            Ref::Whole { .. } => return,
        };
        out.push(ExprProblem {
            message,
            position: pos(id),
        });
    });
    out
}

fn fields_of(root: &str) -> &'static [FieldDoc] {
    VARIABLES
        .iter()
        .find(|(v, _)| *v == root)
        .map_or(&[], |(_, f)| f)
}

/// A reference to a free variable, as the AST walk finds it.
enum Ref<'e> {
    /// `site.pue`: one field of a documented variable.
    Field {
        root: &'e str,
        field: &'e str,
        id: u64,
    },
    /// `site` used as a whole (`site['pue']`, `size(site)`).
    Whole { root: &'e str },
    /// A variable that is not documented.
    Unknown { name: &'e str, id: u64 },
}

fn walk<'e>(e: &'e IdedExpr, bound: &mut Vec<&'e str>, visit: &mut dyn FnMut(Ref<'e>)) {
    let free = |name: &str, bound: &[&str]| {
        !name.starts_with('@') && !bound.contains(&name) && !CEL_IDENTS.contains(&name)
    };
    match &e.expr {
        Expr::Unspecified | Expr::Literal(_) => {}
        Expr::Ident(name) if free(name, bound) => {
            if VARIABLES.iter().any(|(v, _)| v == name) {
                visit(Ref::Whole { root: name });
            } else {
                visit(Ref::Unknown { name, id: e.id });
            }
        }
        Expr::Ident(_) => {}
        Expr::Select(select) => match &select.operand.expr {
            Expr::Ident(root) if free(root, bound) && VARIABLES.iter().any(|(v, _)| v == root) => {
                visit(Ref::Field {
                    root,
                    field: &select.field,
                    id: e.id,
                })
            }
            _ => walk(&select.operand, bound, visit),
        },
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                walk(target, bound, visit);
            }
            for arg in &call.args {
                walk(arg, bound, visit);
            }
        }
        Expr::List(list) => {
            for el in &list.elements {
                walk(el, bound, visit);
            }
        }
        Expr::Map(map) => {
            for entry in &map.entries {
                walk_entry(&entry.expr, bound, visit);
            }
        }
        Expr::Struct(s) => {
            for entry in &s.entries {
                walk_entry(&entry.expr, bound, visit);
            }
        }
        Expr::Comprehension(c) => {
            walk(&c.iter_range, bound, visit);
            walk(&c.accu_init, bound, visit);
            let before = bound.len();
            bound.push(&c.iter_var);
            bound.extend(c.iter_var2.as_deref());
            bound.push(&c.accu_var);
            walk(&c.loop_cond, bound, visit);
            walk(&c.loop_step, bound, visit);
            walk(&c.result, bound, visit);
            bound.truncate(before);
        }
    }
}

fn walk_entry<'e>(entry: &'e EntryExpr, bound: &mut Vec<&'e str>, visit: &mut dyn FnMut(Ref<'e>)) {
    match entry {
        EntryExpr::StructField(field) => walk(&field.value, bound, visit),
        EntryExpr::MapEntry(m) => {
            walk(&m.key, bound, visit);
            walk(&m.value, bound, visit);
        }
    }
}

/// Which fields of one variable a program reads, so evaluation builds only those.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Fields {
    /// The variable is not used.
    #[default]
    None,
    /// Used as a whole: build every field.
    All,
    /// Only these fields (documented names).
    Only(Vec<&'static str>),
}

impl Fields {
    fn used(&self) -> bool {
        *self != Fields::None
    }

    fn add(&mut self, doc: &'static [FieldDoc], field: &str) {
        // An undocumented field fails at run time with "no such key"; validation reports it.
        let Some(f) = doc.iter().find(|f| f.name == field) else {
            return;
        };
        match self {
            Fields::All => {}
            Fields::None => *self = Fields::Only(vec![f.name]),
            Fields::Only(names) => {
                if !names.contains(&f.name) {
                    names.push(f.name);
                }
            }
        }
    }

    fn wants(&self, name: &str) -> bool {
        match self {
            Fields::None => false,
            Fields::All => true,
            Fields::Only(names) => names.contains(&name),
        }
    }
}

/// Which variables, and which of their fields, a program reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Uses {
    site: Fields,
    node: Fields,
    task: Fields,
}

impl Uses {
    fn of(program: &Program) -> Uses {
        let mut uses = Uses::default();
        walk(program.expression(), &mut Vec::new(), &mut |r| {
            let (root, field) = match r {
                Ref::Field { root, field, .. } => (root, Some(field)),
                Ref::Whole { root } => (root, None),
                Ref::Unknown { .. } => return,
            };
            let slot = match root {
                "site" => &mut uses.site,
                "node" => &mut uses.node,
                _ => &mut uses.task,
            };
            match field {
                Some(f) => slot.add(fields_of(root), f),
                None => *slot = Fields::All,
            }
        });
        uses
    }
}

/// Plugin names are `&'static str` in the framework. Each distinct `cel:<rule>` name is
/// leaked once and reused afterwards, so the leak is bounded by the number of distinct rule
/// names ever compiled, not by how often policies are recompiled.
static NAMES: Mutex<BTreeMap<String, &'static str>> = Mutex::new(BTreeMap::new());

/// The interned plugin name of CEL rule `rule`: `cel:<rule>`.
pub fn plugin_name(rule: &str) -> &'static str {
    let name = format!("{PLUGIN_PREFIX}{rule}");
    // The map is never left half-updated, so a poisoned lock is still consistent.
    let mut names = NAMES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(&s) = names.get(&name) {
        return s;
    }
    let leaked: &'static str = Box::leak(name.clone().into_boxed_str());
    names.insert(name, leaked);
    leaked
}

/// A compiled rule shared by the filter and score plugins.
struct Rule {
    name: &'static str,
    source: String,
    program: cpn_cel::Bounded,
    uses: Uses,
    env: Arc<Env>,
}

impl Rule {
    fn new(rule: &str, source: &str, env: Arc<Env>) -> Result<Rule, Vec<ExprProblem>> {
        let program = parse(source)?;
        let mut problems = check_references(&program);
        problems.extend(check_limits(&program));
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Rule {
            name: plugin_name(rule),
            source: source.to_string(),
            uses: Uses::of(&program),
            program: cpn_cel::Bounded::new(&program),
            env,
        })
    }

    fn eval(
        &self,
        state: &CycleState,
        task: &Task,
        cluster: &Cluster,
        site: u32,
        node: Option<u32>,
    ) -> Result<Value, String> {
        let mut ctx = Context::with_env(self.env.clone());
        if self.uses.site.used() {
            ctx.add_variable_from_value("site", site_value(cluster, site, &self.uses.site));
        }
        if let (true, Some(n)) = (self.uses.node.used(), node) {
            ctx.add_variable_from_value("node", node_value(cluster, n, &self.uses.node));
        }
        if self.uses.task.used() {
            let value = match state.get::<TaskVars>() {
                Some(TaskVars(v)) => v.clone(),
                None => task_value(task, &Fields::All),
            };
            ctx.add_variable_from_value("task", value);
        }
        self.program
            .eval(&mut ctx, &cpn_cel::Budget::new(RULE_ITERATIONS))
            .map_err(|e| e.to_string())
    }
}

/// The `task` variable, built once per cycle in `prepare` and shared by every CEL plugin.
struct TaskVars(Value);

fn prepare_task(task: &Task, state: &mut CycleState) {
    if state.get::<TaskVars>().is_none() {
        state.put(TaskVars(task_value(task, &Fields::All)));
    }
}

/// A CEL filter: the expression must evaluate to `true` for the candidate to fit. It runs on
/// sites, or on nodes when the expression mentions `node`.
pub struct CelFilter {
    rule: Rule,
}

impl CelFilter {
    /// Compiles `expr` for rule `rule` (the plugin is named `cel:<rule>`).
    pub fn new(rule: &str, expr: &str, env: Arc<Env>) -> Result<CelFilter, Vec<ExprProblem>> {
        Ok(CelFilter {
            rule: Rule::new(rule, expr, env)?,
        })
    }

    /// Whether it runs per node (the expression mentions `node`) rather than per site.
    pub fn per_node(&self) -> bool {
        self.rule.uses.node.used()
    }

    fn verdict(&self, state: &CycleState, result: Result<Value, String>) -> Verdict {
        let name = self.rule.name;
        match result {
            Ok(Value::Bool(true)) => Verdict::Fits,
            Ok(Value::Bool(false)) => Verdict::Rejects(state.reason(name, CODE_REJECTED, || {
                format!("`{}` is false", self.rule.source)
            })),
            Ok(other) => Verdict::Rejects(state.reason(name, CODE_ERROR, || {
                format!(
                    "`{}` must evaluate to a bool, got {other:?}",
                    self.rule.source
                )
            })),
            Err(e) => Verdict::Rejects(
                state.reason(name, CODE_ERROR, || format!("`{}`: {e}", self.rule.source)),
            ),
        }
    }
}

impl Plugin for CelFilter {
    fn name(&self) -> &'static str {
        self.rule.name
    }
    fn prepare(&self, task: &Task, _cluster: &Cluster, state: &mut CycleState) {
        if self.rule.uses.task.used() {
            prepare_task(task, state);
        }
    }
    fn as_site_filter(&self) -> Option<&dyn SiteFilter> {
        (!self.per_node()).then_some(self as &dyn SiteFilter)
    }
    fn as_node_filter(&self) -> Option<&dyn NodeFilter> {
        self.per_node().then_some(self as &dyn NodeFilter)
    }
}

impl SiteFilter for CelFilter {
    fn filter_site(
        &self,
        state: &CycleState,
        task: &Task,
        cluster: &Cluster,
        site: u32,
    ) -> Verdict {
        self.verdict(state, self.rule.eval(state, task, cluster, site, None))
    }
}

impl NodeFilter for CelFilter {
    fn filter_node(
        &self,
        state: &CycleState,
        task: &Task,
        cluster: &Cluster,
        node: u32,
    ) -> Verdict {
        let site = cluster.node(node).spec.site;
        self.verdict(
            state,
            self.rule.eval(state, task, cluster, site, Some(node)),
        )
    }
}

/// A CEL score: the expression evaluates to a number (int or double). It scores sites, or
/// nodes when the expression mentions `node`. A run-time error or a non-number scores 0:
/// the framework's score has no error channel, so keep score rules total (use `has()`).
pub struct CelScore {
    rule: Rule,
    better: Better,
}

impl CelScore {
    pub fn new(
        rule: &str,
        expr: &str,
        better: Better,
        env: Arc<Env>,
    ) -> Result<CelScore, Vec<ExprProblem>> {
        Ok(CelScore {
            rule: Rule::new(rule, expr, env)?,
            better,
        })
    }

    pub fn per_node(&self) -> bool {
        self.rule.uses.node.used()
    }

    fn number(result: Result<Value, String>) -> f64 {
        let x = match result {
            Ok(Value::Int(i)) => i as f64,
            Ok(Value::UInt(u)) => u as f64,
            Ok(Value::Float(x)) => x,
            _ => 0.0,
        };
        if x.is_finite() { x } else { 0.0 }
    }
}

impl Plugin for CelScore {
    fn name(&self) -> &'static str {
        self.rule.name
    }
    fn prepare(&self, task: &Task, _cluster: &Cluster, state: &mut CycleState) {
        if self.rule.uses.task.used() {
            prepare_task(task, state);
        }
    }
    fn as_site_score(&self) -> Option<&dyn SiteScore> {
        (!self.per_node()).then_some(self as &dyn SiteScore)
    }
    fn as_node_score(&self) -> Option<&dyn NodeScore> {
        self.per_node().then_some(self as &dyn NodeScore)
    }
}

impl SiteScore for CelScore {
    fn score_site(&self, state: &CycleState, task: &Task, cluster: &Cluster, site: u32) -> f64 {
        CelScore::number(self.rule.eval(state, task, cluster, site, None))
    }
    fn better(&self) -> Better {
        self.better
    }
}

impl NodeScore for CelScore {
    fn score_node(&self, state: &CycleState, task: &Task, cluster: &Cluster, node: u32) -> f64 {
        let site = cluster.node(node).spec.site;
        CelScore::number(self.rule.eval(state, task, cluster, site, Some(node)))
    }
    fn better(&self) -> Better {
        self.better
    }
}

fn string(s: &str) -> Value {
    Value::String(Arc::new(s.to_string()))
}

fn strings<'a>(items: impl IntoIterator<Item = &'a str>) -> Value {
    Value::List(Arc::new(items.into_iter().map(string).collect()))
}

fn map(entries: HashMap<Key, Value>) -> Value {
    Value::Map(Map {
        map: Arc::new(entries),
    })
}

fn labels(labels: &Labels) -> Value {
    map(labels
        .iter()
        .map(|(k, v)| (Key::from(k.as_str()), string(v)))
        .collect())
}

const MIB_PER_GIB: f64 = 1024.0;

/// A map of the documented fields `fields` wants, each computed by `field`.
fn object(
    doc: &'static [FieldDoc],
    fields: &Fields,
    field: impl Fn(&'static str) -> Option<Value>,
) -> Value {
    map(doc
        .iter()
        .filter(|f| fields.wants(f.name))
        .filter_map(|f| field(f.name).map(|v| (Key::from(f.name), v)))
        .collect())
}

/// The `site` variable with the fields `fields` asks for (see [`SITE_FIELDS`]).
pub fn site_value(cluster: &Cluster, site: u32, fields: &Fields) -> Value {
    let s = cluster.site(site);
    let names = |of: fn(&Offer) -> u32| {
        let mut v: Vec<&str> = s
            .offers
            .iter()
            .map(|o| cluster.symbols.name(of(o)))
            .collect();
        v.sort_unstable();
        v.dedup();
        strings(v)
    };
    object(SITE_FIELDS, fields, |name| {
        Some(match name {
            "name" => string(&s.spec.name),
            "region" => string(&s.spec.region),
            "labels" => labels(&s.spec.labels),
            "pue" => Value::Float(s.spec.pue),
            "electricity_price" => Value::Float(s.spec.electricity_price),
            "carbon_intensity" => Value::Float(s.spec.carbon_intensity?),
            "healthy" => Value::Bool(s.spec.healthy),
            "nodes" => Value::Int(s.nodes.len() as i64),
            "free_gpus" => Value::Int(s.free.whole_gpus as i64),
            "total_gpus" => Value::Int(s.total.whole_gpus as i64),
            "free_gpu_milli" => Value::Int(s.free.gpu_milli as i64),
            "free_cpu_cores" => Value::Float(s.free.cpu_milli as f64 / 1000.0),
            "free_memory_gib" => Value::Float(s.free.memory_mib as f64 / MIB_PER_GIB),
            "models" => names(|o| o.model),
            "architectures" => names(|o| o.architecture),
            _ => return None,
        })
    })
}

/// The `node` variable with the fields `fields` asks for (see [`NODE_FIELDS`]).
pub fn node_value(cluster: &Cluster, node: u32, fields: &Fields) -> Value {
    let n = cluster.node(node);
    object(NODE_FIELDS, fields, |name| {
        Some(match name {
            "name" => string(&n.spec.name),
            "labels" => labels(&n.spec.labels),
            "model" => string(cluster.symbols.name(n.model)),
            "architecture" => string(cluster.symbols.name(n.architecture)),
            "chip" => string(n.spec.chip.map(|c| c.as_str()).unwrap_or("")),
            "healthy" => Value::Bool(n.schedulable()),
            "cpu_cores" => Value::Float(n.spec.cpu_milli as f64 / 1000.0),
            "free_cpu_cores" => Value::Float(n.cpu_free() as f64 / 1000.0),
            "memory_gib" => Value::Float(n.spec.memory_mib as f64 / MIB_PER_GIB),
            "free_memory_gib" => Value::Float(n.memory_free() as f64 / MIB_PER_GIB),
            "gpus" => Value::Int(n.spec.gpus as i64),
            "free_gpus" => Value::Int(n.whole_gpus_free() as i64),
            "free_gpu_milli" => Value::Int(n.gpu_milli_free() as i64),
            "tflops_per_unit" => Value::Float(n.spec.tflops_per_unit),
            "price_per_unit_hour" => Value::Float(n.spec.price_per_unit_hour),
            _ => return None,
        })
    })
}

/// The `task` variable with the fields `fields` asks for (see [`TASK_FIELDS`]).
pub fn task_value(task: &Task, fields: &Fields) -> Value {
    let d = &task.demand;
    object(TASK_FIELDS, fields, |name| {
        Some(match name {
            "id" => string(&task.id),
            "tenant" => string(&task.tenant),
            "business" => string(task.business.as_deref().unwrap_or("")),
            "origin_region" => string(task.origin_region.as_deref().unwrap_or("")),
            "priority" => Value::Int(task.priority as i64),
            "gpus" => Value::Int(d.gpus as i64),
            "gpu_milli" => Value::Int(if d.gpus == 0 { 0 } else { d.gpu_milli as i64 }),
            "cpu_cores" => Value::Float(d.cpu_milli as f64 / 1000.0),
            "memory_gib" => Value::Float(d.memory_mib as f64 / MIB_PER_GIB),
            "chip" => string(task.chip.map(|c| c.as_str()).unwrap_or("")),
            "models" => strings(task.models.iter().map(String::as_str)),
            "est_hours" => Value::Float(task.est_hours),
            "labels" => labels(&task.labels),
            _ => return None,
        })
    })
}

/// The standard CEL environment the plugins evaluate in (no extensions: no regex, no clock).
pub fn env() -> Arc<Env> {
    Arc::new(Env::stdlib())
}

#[cfg(test)]
mod tests;
