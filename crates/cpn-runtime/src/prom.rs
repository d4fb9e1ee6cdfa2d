//! `GET /metrics`: the Prometheus text exposition format (version 0.0.4) of task counts,
//! runtime counters and per-node gauges.

use super::load_counter;
use crate::RuntimeState;
use crate::error::ApiResult;
use cpn_api_types::agent::NodeState;
use cpn_api_types::tasks::TaskState;
use std::collections::HashMap;
use std::fmt::Write as _;

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Escapes a label value: backslash, double quote and newline.
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes HELP text: backslash and newline.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A number as the format spells it (`NaN`, `+Inf`, `-Inf`).
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// Writes metric families: each `family` call writes its HELP and TYPE lines once, then
/// `sample` adds lines to it.
#[derive(Debug, Default)]
pub struct Writer {
    out: String,
}

impl Writer {
    pub fn new() -> Writer {
        Writer::default()
    }

    /// Starts a family; `kind` is `gauge` or `counter`.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        self
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", format_value(value));
        self
    }

    /// A family of one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) -> &mut Self {
        self.family(name, kind, help).sample(name, &[], value)
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// The whole exposition.
pub async fn render(state: &RuntimeState) -> ApiResult<String> {
    let rt = &state.runtime;
    let mut w = Writer::new();

    let counts: HashMap<String, u64> = state.store.count_tasks().await?.into_iter().collect();
    w.family("cpn_tasks", "gauge", "Tasks by state.");
    for s in TaskState::ALL {
        let n = counts.get(s.as_str()).copied().unwrap_or(0);
        w.sample("cpn_tasks", &[("state", s.as_str())], n as f64);
    }

    let c = &rt.counters;
    for (name, help, v) in [
        (
            "cpn_tasks_submitted_total",
            "Tasks submitted since the server started.",
            &c.tasks_submitted,
        ),
        (
            "cpn_tasks_bound_total",
            "Tasks bound to a node since the server started.",
            &c.tasks_bound,
        ),
        (
            "cpn_binder_cycles_total",
            "Binding cycles that had pending tasks to consider.",
            &c.binder_cycles,
        ),
        (
            "cpn_unschedulable_total",
            "Binding attempts that found no node.",
            &c.unschedulable,
        ),
        (
            "cpn_nodes_lost_total",
            "Nodes marked NotReady after missing heartbeats.",
            &c.nodes_lost,
        ),
    ] {
        w.single(name, "counter", help, load_counter(v) as f64);
    }
    for (name, help, h) in [
        (
            "cpn_binder_cycle_seconds",
            "How long binding cycles with pending tasks took: reading them, placing them and \
             holding their capacity, up to handing their writes to the store.",
            &c.binder_cycle_seconds,
        ),
        (
            "cpn_binder_commit_seconds",
            "How long the store took to commit a binding cycle's writes (durably, before any \
             agent hears of its bindings); it overlaps the next cycle.",
            &c.binder_commit_seconds,
        ),
    ] {
        let (buckets, sum) = h.snapshot();
        w.family(name, "histogram", help);
        for (le, n) in &buckets {
            let le = if le.is_infinite() {
                "+Inf".to_string()
            } else {
                le.to_string()
            };
            w.sample(&format!("{name}_bucket"), &[("le", &le)], *n as f64);
        }
        w.sample(&format!("{name}_sum"), &[], sum);
        w.sample(
            &format!("{name}_count"),
            &[],
            buckets.last().map_or(0, |b| b.1) as f64,
        );
    }

    let views = super::nodes::views(state).await?;
    let ready = views.iter().filter(|n| n.state == NodeState::Ready).count();
    w.family("cpn_nodes", "gauge", "Nodes by state.");
    w.sample("cpn_nodes", &[("state", "ready")], ready as f64);
    w.sample(
        "cpn_nodes",
        &[("state", "not_ready")],
        (views.len() - ready) as f64,
    );

    type Get = fn(&cpn_api_types::agent::NodeView) -> Option<f64>;
    let per_node: [(&str, &str, Get); 5] = [
        (
            "cpn_node_cpu_util_pct",
            "CPU utilisation of the node, percent (latest heartbeat).",
            |n| n.metrics.as_ref().map(|m| m.cpu_util_pct),
        ),
        (
            "cpn_node_memory_util_pct",
            "Memory utilisation of the node, percent (latest heartbeat).",
            |n| n.metrics.as_ref().map(|m| m.memory_util_pct),
        ),
        (
            "cpn_node_load1",
            "One-minute load average of the node (latest heartbeat).",
            |n| n.metrics.as_ref().map(|m| m.load1),
        ),
        (
            "cpn_node_idle_rate",
            "Fraction of the node's capacity not held by tasks or allocations.",
            |n| Some(n.idle_rate),
        ),
        (
            "cpn_node_tasks_active",
            "Tasks scheduled or running on the node.",
            |n| Some(n.tasks_active as f64),
        ),
    ];
    for (name, help, get) in per_node {
        w.family(name, "gauge", help);
        for n in &views {
            if let Some(v) = get(n) {
                w.sample(name, &[("node", &n.name), ("site", &n.site)], v);
            }
        }
    }
    w.family(
        "cpn_node_gpu_util_pct",
        "gauge",
        "Utilisation of each GPU, percent (latest heartbeat).",
    );
    for n in &views {
        for g in n.metrics.iter().flat_map(|m| &m.gpus) {
            let idx = g.index.to_string();
            w.sample(
                "cpn_node_gpu_util_pct",
                &[("node", &n.name), ("site", &n.site), ("gpu", &idx)],
                g.util_pct,
            );
        }
    }

    let last = state.store.last_event_seq().await?;
    w.single(
        "cpn_events_last_id",
        "gauge",
        "Id of the newest event.",
        last as f64,
    );
    Ok(w.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
        assert_eq!(escape_label("plain-name_1"), "plain-name_1");
    }

    #[test]
    fn values_use_the_format_spelling() {
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn families_have_help_and_type_then_samples() {
        let mut w = Writer::new();
        w.family("cpn_x", "gauge", "An x.\nSecond line.")
            .sample("cpn_x", &[("node", "a\"b"), ("site", "s")], 1.5)
            .sample("cpn_x", &[], 2.0);
        w.single("cpn_y_total", "counter", "A y.", 7.0);
        let text = w.finish();
        assert_eq!(
            text,
            "# HELP cpn_x An x.\\nSecond line.\n\
             # TYPE cpn_x gauge\n\
             cpn_x{node=\"a\\\"b\",site=\"s\"} 1.5\n\
             cpn_x 2\n\
             # HELP cpn_y_total A y.\n\
             # TYPE cpn_y_total counter\n\
             cpn_y_total 7\n"
        );
    }
}
