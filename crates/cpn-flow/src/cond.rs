//! Step conditions (`when`): CEL over `inputs` and `steps` (each finished step's `outputs`
//! and `status`), evaluated in the standard environment without extensions.

use cel::objects::{Key, Map};
use cel::{Context, Program, Value};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::Arc;

/// Compiles a condition; the error lists every parse problem.
pub fn compile(source: &str) -> Result<Program, String> {
    Program::compile(source).map_err(|errors| {
        errors
            .errors
            .iter()
            .map(|e| {
                if e.pos.0 > 0 && e.pos.1 > 0 {
                    format!("{} at {}:{}", e.msg, e.pos.0, e.pos.1)
                } else {
                    e.msg.clone()
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// Evaluates a condition over `vars` (`inputs`, `steps`); anything but a boolean is an error.
pub fn eval(source: &str, vars: &serde_json::Map<String, Json>) -> Result<bool, String> {
    let program = compile(source)?;
    let mut ctx = Context::default();
    for (k, v) in vars {
        ctx.add_variable_from_value(k.clone(), to_cel(v));
    }
    match program.execute(&ctx).map_err(|e| e.to_string())? {
        Value::Bool(b) => Ok(b),
        other => Err(format!("condition gave {other:?}, not a boolean")),
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
