//! Reading object files for `create`, `update` and `scenario load`: a path or `-` for stdin,
//! YAML or JSON, with syntax errors reported as `FILE:LINE:COLUMN`.

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use serde_json::Value;

/// A file's text and the name to use for it in messages.
pub struct Input {
    pub label: String,
    pub text: String,
}

pub fn read(path: &str) -> Result<Input> {
    if path == "-" {
        let text = std::io::read_to_string(std::io::stdin()).context("reading stdin")?;
        return Ok(Input {
            label: "<stdin>".to_owned(),
            text,
        });
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    Ok(Input {
        label: path.to_owned(),
        text,
    })
}

fn yaml_error(label: &str, e: &serde_yaml::Error) -> anyhow::Error {
    match e.location() {
        Some(at) => anyhow!(
            "{label}:{}:{}: invalid YAML/JSON: {e}",
            at.line(),
            at.column()
        ),
        None => anyhow!("{label}: invalid YAML/JSON: {e}"),
    }
}

/// Every YAML document of the input as JSON. Empty documents are dropped.
pub fn documents(input: &Input) -> Result<Vec<Value>> {
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&input.text) {
        let value = Value::deserialize(doc).map_err(|e| yaml_error(&input.label, &e))?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// The one document of a file holding a single mapping (a scenario, an update).
pub fn single_object(input: &Input) -> Result<serde_json::Map<String, Value>> {
    let mut docs = documents(input)?;
    match (docs.len(), docs.pop()) {
        (1, Some(Value::Object(map))) => Ok(map),
        (0, _) => bail!("{}: the file is empty", input.label),
        (1, Some(_)) => bail!("{}: expected a mapping (`key: value` lines)", input.label),
        (n, _) => bail!("{}: expected one document, found {n}", input.label),
    }
}

/// Objects to create: each document is one mapping or a list of mappings.
pub fn objects(input: &Input) -> Result<Vec<Value>> {
    let mut items = Vec::new();
    for (d, doc) in documents(input)?.into_iter().enumerate() {
        let list = match doc {
            Value::Array(list) => list,
            other => vec![other],
        };
        for item in list {
            if !item.is_object() {
                bail!(
                    "{}: document {}: expected a mapping or a list of mappings, found {}",
                    input.label,
                    d + 1,
                    kind_of(&item)
                );
            }
            items.push(item);
        }
    }
    if items.is_empty() {
        bail!("{}: no objects found", input.label);
    }
    Ok(items)
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(text: &str) -> Input {
        Input {
            label: "f.yaml".into(),
            text: text.into(),
        }
    }

    #[test]
    fn lists_and_documents_both_work() {
        let items = objects(&input("- name: a\n- name: b\n---\nname: c\n---\n")).unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[2]["name"], "c");
        let items = objects(&input(r#"{"name": "j", "spec": {"x": 1}}"#)).unwrap();
        assert_eq!(items[0]["spec"]["x"], 1);
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        let e = objects(&input("name: a\nspec:\n  x: [1, 2\n")).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("f.yaml:"), "{msg}");
        assert!(msg.contains("invalid YAML"), "{msg}");
    }

    #[test]
    fn scalars_are_refused() {
        assert!(objects(&input("- 1\n")).is_err());
        assert!(single_object(&input("")).is_err());
    }
}
