//! Parameter substitution in actions: every string field of an action (walked as JSON) may
//! name `${inputs.NAME}`, `${steps.ID.outputs.NAME}` or `${item}` (and `${item.FIELD}`).
//! A string that is exactly one reference takes the referenced value as is (a number stays
//! a number); otherwise the value is written into the string.

use serde_json::Value;

/// Every `${...}` reference in the strings of `v`, in order.
pub fn references(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk_refs(v, &mut out);
    out
}

fn walk_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(i) = rest.find("${") {
                match rest[i + 2..].find('}') {
                    Some(j) => {
                        out.push(rest[i + 2..i + 2 + j].trim().to_string());
                        rest = &rest[i + 3 + j..];
                    }
                    None => break,
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| walk_refs(x, out)),
        Value::Object(o) => o.values().for_each(|x| walk_refs(x, out)),
        _ => {}
    }
}

/// Replaces references in every string of `v`; `lookup` resolves a reference.
pub fn substitute(
    v: &Value,
    lookup: &dyn Fn(&str) -> Result<Value, String>,
) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => substitute_str(s, lookup)?,
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| substitute(x, lookup))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| Ok((k.clone(), substitute(x, lookup)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

fn substitute_str(
    s: &str,
    lookup: &dyn Fn(&str) -> Result<Value, String>,
) -> Result<Value, String> {
    let t = s.trim();
    if t.starts_with("${") && t.ends_with('}') && t[2..].find('}') == Some(t.len() - 3) {
        return lookup(t[2..t.len() - 1].trim());
    }
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        let Some(j) = rest[i + 2..].find('}') else {
            break;
        };
        out.push_str(&rest[..i]);
        match lookup(rest[i + 2..i + 2 + j].trim())? {
            Value::String(x) => out.push_str(&x),
            other => out.push_str(&other.to_string()),
        }
        rest = &rest[i + 3 + j..];
    }
    out.push_str(rest);
    Ok(Value::String(out))
}

/// Resolves a dotted reference against a context object (`inputs`, `steps`, `item`).
pub fn resolve(ctx: &Value, reference: &str) -> Result<Value, String> {
    let mut cur = ctx;
    for part in reference.split('.') {
        cur = match cur {
            Value::Object(o) => o.get(part),
            Value::Array(a) => part.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        }
        .ok_or_else(|| format!("unknown reference ${{{reference}}}"))?;
    }
    Ok(cur.clone())
}
