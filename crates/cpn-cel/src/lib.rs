//! Bounded CEL: every CEL expression cpn stores (policy filters and scores, workflow `when`
//! conditions) goes through here, so one set of limits holds for all of them.
//!
//! CEL has no loops but its macros (`all`, `exists`, `exists_one`, `map`, `filter`), and
//! nesting them multiplies their cost: two nested `all` over an 8,000-item input is 64
//! million steps, three would run for days, and the interpreter (`cel` 0.15) has no
//! evaluation limit and cannot be interrupted. So:
//!
//! - at save time [`check`] refuses an expression longer than [`Limits::max_source_bytes`],
//!   deeper than [`Limits::max_depth`], or with macros nested more than
//!   [`Limits::max_loop_nesting`] levels;
//! - [`Bounded`] rewrites the compiled expression so that every loop iteration first calls
//!   a hidden function (`@cpn_tick`, a name CEL source cannot spell) that counts against a
//!   [`Budget`] of iterations and looks at a [`Stop`] flag another thread may raise at a
//!   deadline. Either one ends the evaluation with an [`EvalError`] within one iteration.
//!
//! The rewrite keeps the shapes the interpreter optimises (`map`/`filter` append in place),
//! and an exhausted budget is an error even where CEL's error-absorbing `&&`/`||` would have
//! swallowed it, so a stopped evaluation never yields a value. Pure: no clock (the caller
//! owns the deadline and raises the flag), no I/O.

use cel::common::ast::{CallExpr, EntryExpr, Expr, IdedExpr, LiteralValue, operators};
use cel::{Context, ExecutionError, ParseErrors, Program, Value};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// Stack of the parsing thread: the parser's own recursion limit (96 levels) fits.
const PARSER_STACK: usize = 64 << 20;

/// The name of the counting function the rewrite calls; CEL source cannot name it.
const TICK: &str = "@cpn_tick";

/// What an expression may be, checked when it is saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Length of the source text in bytes.
    pub max_source_bytes: usize,
    /// Depth of the expression tree (after macro expansion).
    pub max_depth: usize,
    /// Macros (`all`, `exists`, `exists_one`, `map`, `filter`) inside one another.
    pub max_loop_nesting: usize,
}

/// The limits cpn applies to every stored expression.
pub const LIMITS: Limits = Limits {
    max_source_bytes: 4096,
    // Evaluation recurses once per level, up to ~60 KiB of stack per level in a debug
    // build; 24 levels stay well inside a 2 MiB thread.
    max_depth: 24,
    max_loop_nesting: 2,
};

/// Loop iterations one evaluation of a workflow condition may take (all levels together).
/// A simple loop body costs well under a microsecond, so this is a fraction of a second.
pub const CONDITION_ITERATIONS: u64 = 1_000_000;

/// A problem found when compiling or checking an expression, with its 1-based line and
/// column where known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub message: String,
    pub position: Option<(usize, usize)>,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.position {
            Some((line, col)) => write!(f, "{} at {line}:{col}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Parses `source`, every parse error with its position. Refuses over-long source before
/// parsing it.
pub fn parse(source: &str, limits: &Limits) -> Result<Program, Vec<Problem>> {
    if source.len() > limits.max_source_bytes {
        return Err(vec![Problem {
            message: format!(
                "expression is {} bytes; at most {} are allowed",
                source.len(),
                limits.max_source_bytes
            ),
            position: None,
        }]);
    }
    // The generated parser recurses deeply per nesting level (about 100 KiB of stack per
    // parenthesis in a debug build), so a short expression could overflow a request
    // thread's 2 MiB; it runs on a thread of its own with room for its recursion limit.
    let parsed = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("cel-parse".into())
            .stack_size(PARSER_STACK)
            .spawn_scoped(scope, || Program::compile(source))
            .map(|h| h.join())
    });
    let parsed = match parsed {
        Ok(Ok(p)) => p,
        Ok(Err(_)) => {
            return Err(vec![Problem {
                message: "the parser failed on this expression; simplify it".into(),
                position: None,
            }]);
        }
        Err(e) => {
            return Err(vec![Problem {
                message: format!("cannot start the parsing thread: {e}"),
                position: None,
            }]);
        }
    };
    parsed.map_err(|errors: ParseErrors| {
        errors
            .errors
            .iter()
            .map(|e| Problem {
                message: e.msg.clone(),
                // The parser reports (1-based line, 1-based column); (0, 0) means unknown.
                position: (e.pos.0 > 0 && e.pos.1 > 0)
                    .then_some((e.pos.0 as usize, e.pos.1 as usize)),
            })
            .collect()
    })
}

/// The save-time checks of a parsed program: depth and loop nesting.
pub fn check(program: &Program, limits: &Limits) -> Vec<Problem> {
    let mut out = Vec::new();
    let shape = Shape::of(program.expression());
    if shape.depth > limits.max_depth {
        out.push(Problem {
            message: format!(
                "expression is nested {} levels deep; at most {} are allowed",
                shape.depth, limits.max_depth
            ),
            position: None,
        });
    }
    if shape.loops > limits.max_loop_nesting {
        let source = &program.source_info().source;
        out.push(Problem {
            message: format!(
                "macros (all, exists, exists_one, map, filter) are nested {} deep; at most {} \
                 are allowed, since each level multiplies the work by the size of its list",
                shape.loops, limits.max_loop_nesting
            ),
            position: shape
                .deepest_loop
                .and_then(|id| program.source_info().offset_for(id))
                .map(|(start, _)| line_col(source, start as usize)),
        });
    }
    out
}

/// 1-based line and column (in characters) of byte offset `at`.
pub fn line_col(source: &str, at: usize) -> (usize, usize) {
    let (mut line, mut col) = (1, 1);
    for (i, ch) in source.char_indices() {
        if i >= at {
            break;
        }
        if ch == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    (line, col)
}

/// Depth and loop nesting of an expression tree.
#[derive(Debug, Default)]
struct Shape {
    depth: usize,
    loops: usize,
    /// The id of a comprehension at the deepest loop level (its position is the range's).
    deepest_loop: Option<u64>,
}

impl Shape {
    fn of(e: &IdedExpr) -> Shape {
        let mut shape = Shape::default();
        shape.walk(e, 1, 0);
        shape
    }

    fn walk(&mut self, e: &IdedExpr, depth: usize, loops: usize) {
        self.depth = self.depth.max(depth);
        // The parser bounds recursion, so this walk cannot overflow the stack; stop early
        // anyway once the limit is far behind.
        if depth > 4 * LIMITS.max_depth {
            return;
        }
        let d = depth + 1;
        match &e.expr {
            Expr::Unspecified | Expr::Literal(_) | Expr::Ident(_) => {}
            Expr::Select(s) => self.walk(&s.operand, d, loops),
            Expr::Call(c) => {
                if let Some(t) = &c.target {
                    self.walk(t, d, loops);
                }
                for a in &c.args {
                    self.walk(a, d, loops);
                }
            }
            Expr::List(l) => {
                for x in &l.elements {
                    self.walk(x, d, loops);
                }
            }
            Expr::Map(m) => {
                for entry in &m.entries {
                    self.walk_entry(&entry.expr, d, loops);
                }
            }
            Expr::Struct(s) => {
                for entry in &s.entries {
                    self.walk_entry(&entry.expr, d, loops);
                }
            }
            Expr::Comprehension(c) => {
                let inner = loops + 1;
                if inner > self.loops {
                    self.loops = inner;
                    self.deepest_loop = Some(c.iter_range.id);
                }
                // The range and the initial value are evaluated once, outside the loop.
                self.walk(&c.iter_range, d, loops);
                self.walk(&c.accu_init, d, loops);
                self.walk(&c.loop_cond, d, inner);
                self.walk(&c.loop_step, d, inner);
                self.walk(&c.result, d, loops);
            }
        }
    }

    fn walk_entry(&mut self, entry: &EntryExpr, depth: usize, loops: usize) {
        match entry {
            EntryExpr::StructField(f) => self.walk(&f.value, depth, loops),
            EntryExpr::MapEntry(m) => {
                self.walk(&m.key, depth, loops);
                self.walk(&m.value, depth, loops);
            }
        }
    }
}

/// A flag another thread raises to stop evaluations that share it (at their deadline).
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<StopInner>);

#[derive(Debug, Default)]
struct StopInner {
    raised: AtomicBool,
    reason: OnceLock<String>,
}

impl Stop {
    pub fn new() -> Stop {
        Stop::default()
    }

    /// Stops every evaluation using this flag at its next loop iteration; `reason` is what
    /// their error says (the first reason given wins).
    pub fn raise(&self, reason: impl Into<String>) {
        let _ = self.0.reason.set(reason.into());
        self.0.raised.store(true, Ordering::Release);
    }

    pub fn is_raised(&self) -> bool {
        self.0.raised.load(Ordering::Acquire)
    }

    fn reason(&self) -> String {
        self.0
            .reason
            .get()
            .cloned()
            .unwrap_or_else(|| "evaluation was stopped".into())
    }
}

impl PartialEq for Stop {
    /// Flags carry no state worth comparing; any two are equal.
    fn eq(&self, _: &Stop) -> bool {
        true
    }
}

/// How much looping one evaluation may do, and the flag that may stop it early.
#[derive(Debug, Clone)]
pub struct Budget {
    pub iterations: u64,
    pub stop: Stop,
}

impl Budget {
    pub fn new(iterations: u64) -> Budget {
        Budget {
            iterations,
            stop: Stop::new(),
        }
    }

    pub fn with_stop(iterations: u64, stop: &Stop) -> Budget {
        Budget {
            iterations,
            stop: stop.clone(),
        }
    }
}

/// Why an evaluation gave no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvalError {
    /// The expression failed (no such key, wrong type, …).
    Failed(String),
    /// It took more loop iterations than its budget.
    OverBudget { iterations: u64 },
    /// Its stop flag was raised (a deadline passed); the string is the reason given.
    Stopped(String),
}

impl std::fmt::Display for EvalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EvalError::Failed(e) => f.write_str(e),
            EvalError::OverBudget { iterations } => write!(
                f,
                "evaluation stopped after {iterations} loop iterations, its limit; \
                 loop over less data or nest fewer macros"
            ),
            EvalError::Stopped(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for EvalError {}

/// A compiled expression whose every loop iteration counts against a [`Budget`].
#[derive(Debug, Clone)]
pub struct Bounded {
    expr: IdedExpr,
    /// Whether it has loops at all: without any, evaluation is bounded by its size and
    /// needs no counting function.
    loops: bool,
}

/// What the counting function reads, shared by one evaluation.
struct Meter {
    left: AtomicU64,
    stop: Stop,
    /// 0: fine; 1: over budget; 2: stopped.
    ended: AtomicU8,
}

impl Bounded {
    /// Instruments a parsed program (run [`check`] on it first when saving).
    pub fn new(program: &Program) -> Bounded {
        let mut expr = program.expression().clone();
        let mut next_id = max_id(&expr) + 1;
        let loops = instrument(&mut expr, &mut next_id);
        Bounded { expr, loops }
    }

    /// Parses, checks against `limits` and instruments `source`.
    pub fn compile(source: &str, limits: &Limits) -> Result<Bounded, Vec<Problem>> {
        let program = parse(source, limits)?;
        let problems = check(&program, limits);
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Bounded::new(&program))
    }

    /// Evaluates in `ctx` (its variables set by the caller) within `budget`.
    pub fn eval(&self, ctx: &mut Context, budget: &Budget) -> Result<Value, EvalError> {
        if !self.loops {
            if budget.stop.is_raised() {
                return Err(EvalError::Stopped(budget.stop.reason()));
            }
            return ctx
                .resolve(&self.expr)
                .map_err(|e| EvalError::Failed(e.to_string()));
        }
        let meter = Arc::new(Meter {
            left: AtomicU64::new(budget.iterations),
            stop: budget.stop.clone(),
            ended: AtomicU8::new(0),
        });
        let m = meter.clone();
        let tick = move |pass: bool| -> Result<bool, ExecutionError> {
            if m.stop.is_raised() {
                m.ended.store(2, Ordering::Relaxed);
                return Err(ExecutionError::function_error(TICK, "stopped"));
            }
            let left = m.left.load(Ordering::Relaxed);
            if left == 0 {
                m.ended.store(1, Ordering::Relaxed);
                return Err(ExecutionError::function_error(TICK, "over budget"));
            }
            m.left.store(left - 1, Ordering::Relaxed);
            Ok(pass)
        };
        ctx.add_function(TICK, tick)
            .map_err(|e| EvalError::Failed(e.to_string()))?;
        let result = ctx.resolve(&self.expr);
        // An exhausted budget wins over whatever CEL's error-absorbing operators made of it.
        match meter.ended.load(Ordering::Relaxed) {
            1 => Err(EvalError::OverBudget {
                iterations: budget.iterations,
            }),
            2 => Err(EvalError::Stopped(budget.stop.reason())),
            _ => result.map_err(|e| EvalError::Failed(e.to_string())),
        }
    }
}

fn max_id(e: &IdedExpr) -> u64 {
    let mut max = e.id;
    visit_children(e, &mut |c| max = max.max(max_id(c)));
    max
}

fn visit_children(e: &IdedExpr, f: &mut dyn FnMut(&IdedExpr)) {
    match &e.expr {
        Expr::Unspecified | Expr::Literal(_) | Expr::Ident(_) => {}
        Expr::Select(s) => f(&s.operand),
        Expr::Call(c) => {
            if let Some(t) = &c.target {
                f(t);
            }
            c.args.iter().for_each(&mut *f);
        }
        Expr::List(l) => l.elements.iter().for_each(&mut *f),
        Expr::Map(m) => m.entries.iter().for_each(|en| entry_children(&en.expr, f)),
        Expr::Struct(s) => s.entries.iter().for_each(|en| entry_children(&en.expr, f)),
        Expr::Comprehension(c) => {
            for x in [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ] {
                f(x);
            }
        }
    }
}

fn entry_children(entry: &EntryExpr, f: &mut dyn FnMut(&IdedExpr)) {
    match entry {
        EntryExpr::StructField(field) => f(&field.value),
        EntryExpr::MapEntry(m) => {
            f(&m.key);
            f(&m.value);
        }
    }
}

/// Wraps `e` as `@cpn_tick(e)`, which evaluates to `e` after counting one iteration.
fn tick(e: &mut IdedExpr, next_id: &mut u64) {
    let inner = std::mem::take(e);
    *e = IdedExpr {
        id: *next_id,
        expr: Expr::Call(CallExpr {
            func_name: TICK.into(),
            target: None,
            args: vec![inner],
        }),
    };
    *next_id += 1;
}

/// Puts one tick into every comprehension's loop, where the interpreter evaluates it once
/// per iteration before the iteration's work and propagates its error at once; returns
/// whether there was any comprehension.
fn instrument(e: &mut IdedExpr, next_id: &mut u64) -> bool {
    let mut any = false;
    match &mut e.expr {
        Expr::Unspecified | Expr::Literal(_) | Expr::Ident(_) => {}
        Expr::Select(s) => any |= instrument(&mut s.operand, next_id),
        Expr::Call(c) => {
            if let Some(t) = &mut c.target {
                any |= instrument(t, next_id);
            }
            for a in &mut c.args {
                any |= instrument(a, next_id);
            }
        }
        Expr::List(l) => {
            for x in &mut l.elements {
                any |= instrument(x, next_id);
            }
        }
        Expr::Map(m) => {
            for entry in &mut m.entries {
                any |= instrument_entry(&mut entry.expr, next_id);
            }
        }
        Expr::Struct(s) => {
            for entry in &mut s.entries {
                any |= instrument_entry(&mut entry.expr, next_id);
            }
        }
        Expr::Comprehension(c) => {
            any = true;
            for x in [
                &mut c.iter_range,
                &mut c.accu_init,
                &mut c.loop_cond,
                &mut c.loop_step,
                &mut c.result,
            ] {
                instrument(x, next_id);
            }
            let accu = c.accu_var.clone();
            let is_accu = |x: &IdedExpr| matches!(&x.expr, Expr::Ident(n) if *n == accu);
            let appends = is_accu(&c.result) && matches!(c.loop_cond.expr, Expr::Literal(_));
            // `map`/`filter`: the interpreter appends in place only while the loop condition
            // is a literal and the step is `@result + [x]`, optionally guarded as
            // `g ? @result + [x] : @result`; so the tick goes into the guard, and an
            // unguarded step gets the guard `@cpn_tick(true)`. A guard's error propagates
            // at once, as the loop condition's does.
            enum Slot {
                Guard,
                Unguarded,
                Cond,
            }
            let slot = match &c.loop_step.expr {
                Expr::Call(call)
                    if appends
                        && call.func_name == operators::CONDITIONAL
                        && call.args.len() == 3 =>
                {
                    Slot::Guard
                }
                Expr::Call(call)
                    if appends && call.func_name == operators::ADD && call.args.len() == 2 =>
                {
                    Slot::Unguarded
                }
                _ => Slot::Cond,
            };
            if let Slot::Unguarded = slot {
                let step = std::mem::take(&mut c.loop_step);
                let ids = [*next_id, *next_id + 1, *next_id + 2];
                *next_id += 3;
                c.loop_step = IdedExpr {
                    id: ids[0],
                    expr: Expr::Call(CallExpr {
                        func_name: operators::CONDITIONAL.into(),
                        target: None,
                        args: vec![
                            IdedExpr {
                                id: ids[1],
                                expr: Expr::Literal(LiteralValue::Boolean(true.into())),
                            },
                            step,
                            IdedExpr {
                                id: ids[2],
                                expr: Expr::Ident(accu.clone()),
                            },
                        ],
                    }),
                };
            }
            let slot: &mut IdedExpr = match (slot, &mut c.loop_step.expr) {
                (Slot::Guard | Slot::Unguarded, Expr::Call(call)) => &mut call.args[0],
                _ => &mut c.loop_cond,
            };
            tick(slot, next_id);
        }
    }
    any
}

fn instrument_entry(entry: &mut EntryExpr, next_id: &mut u64) -> bool {
    match entry {
        EntryExpr::StructField(f) => instrument(&mut f.value, next_id),
        EntryExpr::MapEntry(m) => {
            instrument(&mut m.key, next_id) | instrument(&mut m.value, next_id)
        }
    }
}

#[cfg(test)]
mod tests;
