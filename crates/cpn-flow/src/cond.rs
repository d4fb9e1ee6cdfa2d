//! Step conditions (`when`): CEL over `inputs` and `steps` (each finished step's `outputs`
//! and `status`), evaluated in the standard environment without extensions.
//!
//! Conditions are bounded by `cpn_cel`: on save, at most `cpn_cel::LIMITS` (length, depth,
//! two nested macros); when evaluated, at most `cpn_cel::CONDITION_ITERATIONS` loop
//! iterations, and the caller's `Stop` flag ends an evaluation at its deadline.

use cel::objects::{Key, Map};
use cel::{Context, Value};
use cpn_cel::{Bounded, Budget, EvalError, LIMITS, Stop};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::Arc;

/// Compiles a condition within the save-time limits; the error lists every problem.
pub fn compile(source: &str) -> Result<Bounded, String> {
    Bounded::compile(source, &LIMITS).map_err(|problems| {
        problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// Evaluates a condition over `vars` (`inputs`, `steps`) within the iteration budget, until
/// `stop` is raised; anything but a boolean is an error.
pub fn eval(
    source: &str,
    vars: &serde_json::Map<String, Json>,
    stop: &Stop,
) -> Result<bool, String> {
    let program = compile(source)?;
    let mut ctx = Context::default();
    for (k, v) in vars {
        ctx.add_variable_from_value(k.clone(), to_cel(v));
    }
    let budget = Budget::with_stop(cpn_cel::CONDITION_ITERATIONS, stop);
    match program.eval(&mut ctx, &budget) {
        Ok(Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("condition gave {other:?}, not a boolean")),
        Err(e @ (EvalError::OverBudget { .. } | EvalError::Stopped(_))) => {
            Err(format!("{e} (the step fails; it is not retried)"))
        }
        Err(EvalError::Failed(e)) => Err(e),
    }
}

/// A JSON value as a CEL value (integers stay integers).
pub fn to_cel(v: &Json) -> Value {
    match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::UInt(u),
            _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::String(Arc::new(s.clone())),
        Json::Array(a) => Value::List(Arc::new(a.iter().map(to_cel).collect())),
        Json::Object(o) => Value::Map(Map {
            map: Arc::new(
                o.iter()
                    .map(|(k, v)| (Key::from(k.as_str()), to_cel(v)))
                    .collect::<HashMap<_, _>>(),
            ),
        }),
    }
}
