//! How results reach stdout: borderless tables for people, or the server's JSON as pretty
//! JSON or YAML for scripts. Also the small formatters the tables share.

use crate::cli::OutputFormat;
use anyhow::{Context, Result};
use comfy_table::{ContentArrangement, Table, presets};
use cpn_api_types::registry::Labels;
use serde::Serialize;
use serde_json::Value;
use std::io::{ErrorKind, Write};

/// Writes text to stdout; a closed pipe (`cpn site list | head`) is not an error.
pub fn emit(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let result = out
        .write_all(text.as_bytes())
        .and_then(|()| {
            if text.ends_with('\n') {
                Ok(())
            } else {
                out.write_all(b"\n")
            }
        })
        .and_then(|()| out.flush());
    match result {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}

/// Prints a server value as pretty JSON or YAML. Not for `OutputFormat::Table`.
pub fn print_raw(format: OutputFormat, value: &Value) -> Result<()> {
    let text = match format {
        OutputFormat::Yaml => serde_yaml::to_string(value).context("formatting YAML")?,
        OutputFormat::Json | OutputFormat::Table => {
            serde_json::to_string_pretty(value).context("formatting JSON")?
        }
    };
    emit(&text)
}

/// A table without borders, columns three spaces apart, never wrapped.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.to_vec());
    for column in t.column_iter_mut() {
        column.set_padding((0, 3));
    }
    t
}

/// Renders a table without trailing blanks.
pub fn render(table: &Table) -> String {
    let mut text = String::new();
    for line in table.lines() {
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

pub fn print_table(table: &Table) -> Result<()> {
    emit(&render(table))
}

/// `Key:   value` lines, the values aligned, for one object's details.
pub fn fields(rows: &[(&str, String)]) -> String {
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0)
        + 1;
    let mut text = String::new();
    for (key, value) in rows {
        let key = format!("{key}:");
        text.push_str(format!("{key:<width$}   {value}").trim_end());
        text.push('\n');
    }
    text
}

/// Every line indented by two spaces.
pub fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

/// `k=v,k2=v2`, or `-` when empty.
pub fn labels(labels: &Labels) -> String {
    if labels.is_empty() {
        return "-".to_owned();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The wire spelling of an enum (`private_line`), as the API and the docs write it.
pub fn wire<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".to_owned(),
    }
}

/// Wire spellings joined with commas, or `-`.
pub fn wire_list<T: Serialize>(values: &[T]) -> String {
    if values.is_empty() {
        return "-".to_owned();
    }
    values.iter().map(wire).collect::<Vec<_>>().join(",")
}

/// A number without needless digits: `1.5`, `10`, `0.333`.
pub fn num(x: f64) -> String {
    if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else if x.is_finite() {
        let s = format!("{x:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        x.to_string()
    }
}

pub fn or_dash(s: Option<&str>) -> String {
    match s {
        Some(s) if !s.is_empty() => s.to_owned(),
        _ => "-".to_owned(),
    }
}

pub fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short() {
        assert_eq!(num(10.0), "10");
        assert_eq!(num(1.25), "1.25");
        assert_eq!(num(0.1 + 0.2), "0.3");
        assert_eq!(num(1.0 / 3.0), "0.333");
    }

    #[test]
    fn tables_have_no_borders_or_trailing_blanks() {
        let mut t = table(&["NAME", "GEN"]);
        t.add_row(vec!["a-long-name", "1"]);
        t.add_row(vec!["b", "12"]);
        assert_eq!(
            render(&t),
            "NAME          GEN\na-long-name   1\nb             12\n"
        );
    }

    #[test]
    fn enums_print_as_on_the_wire() {
        use cpn_api_types::registry::LinkType;
        assert_eq!(wire(&LinkType::PrivateLine), "private_line");
    }
}
