//! Validation on save (SC-POL-05): every problem in a policy document at once, each with the
//! dotted path of the field and, for selectors and CEL expressions, the line and column.

use crate::document::Policy;
use crate::expr;
use cpn_model::{Selector, validate_name};
use std::collections::BTreeSet;

/// One problem in a policy document. Problems are values, not errors: the caller shows all
/// of them and refuses to save while any is present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Dotted path of the field, e.g. `cel_filters[0].expr` or `weights.energy`.
    pub field: String,
    pub message: String,
    /// 1-based (line, column) inside the field's text, where the problem is located.
    pub position: Option<(usize, usize)>,
}

impl Diagnostic {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            field: field.into(),
            message: message.into(),
            position: None,
        }
    }
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.position {
            Some((line, col)) => write!(f, "{}:{line}:{col}: {}", self.field, self.message),
            None => write!(f, "{}: {}", self.field, self.message),
        }
    }
}

/// Checks one policy document. `known` says whether a name is an in-tree plugin (filters and
/// weights must name one). Cross-policy problems (missing parent, cycles) come from
/// [`crate::resolve`].
pub fn validate(policy: &Policy, known: &dyn Fn(&str) -> bool) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if let Err(e) = validate_name(&policy.name) {
        out.push(Diagnostic::new("name", e.to_string()));
    }
    if let Some(parent) = &policy.parent {
        if let Err(e) = validate_name(parent) {
            out.push(Diagnostic::new("parent", e.to_string()));
        } else if *parent == policy.name {
            out.push(Diagnostic::new(
                "parent",
                "a policy cannot be its own parent",
            ));
        }
    }
    let lists = [
        ("scope.regions", &policy.scope.regions),
        ("scope.businesses", &policy.scope.businesses),
        ("scope.tenants", &policy.scope.tenants),
        ("match_rules.tenants", &policy.match_rules.tenants),
        ("match_rules.businesses", &policy.match_rules.businesses),
        (
            "match_rules.origin_regions",
            &policy.match_rules.origin_regions,
        ),
    ];
    for (field, values) in lists {
        for (i, v) in values.iter().enumerate() {
            if v.trim().is_empty() {
                out.push(Diagnostic::new(
                    format!("{field}[{i}]"),
                    "must not be empty; remove it, an empty list already accepts anything",
                ));
            }
        }
    }
    if let Some(text) = &policy.match_rules.labels
        && let Err(e) = Selector::parse(text)
    {
        out.push(Diagnostic {
            field: "match_rules.labels".into(),
            message: e.message,
            position: Some((1, e.position + 1)),
        });
    }
    for (name, &w) in &policy.weights {
        let field = format!("weights.{name}");
        if name.starts_with(expr::PLUGIN_PREFIX) {
            out.push(Diagnostic::new(
                field,
                "set a CEL score's weight in cel_scores[].weight",
            ));
        } else if !known(name) {
            out.push(Diagnostic::new(field, format!("unknown plugin `{name}`")));
        } else if let Some(m) = bad_weight(w) {
            out.push(Diagnostic::new(field, m));
        }
    }
    for (i, name) in policy.filters.iter().flatten().enumerate() {
        if !known(name) {
            out.push(Diagnostic::new(
                format!("filters[{i}]"),
                format!("unknown plugin `{name}`"),
            ));
        }
    }
    let mut names = BTreeSet::new();
    let rules = policy
        .cel_filters
        .iter()
        .map(|r| (&r.name, &r.expr, None))
        .enumerate()
        .map(|(i, r)| ("cel_filters", i, r))
        .chain(
            policy
                .cel_scores
                .iter()
                .map(|r| (&r.name, &r.expr, Some(r.weight)))
                .enumerate()
                .map(|(i, r)| ("cel_scores", i, r)),
        );
    for (list, i, (name, source, weight)) in rules {
        if let Err(e) = validate_name(name) {
            out.push(Diagnostic::new(format!("{list}[{i}].name"), e.to_string()));
        } else if !names.insert(name.as_str()) {
            out.push(Diagnostic::new(
                format!("{list}[{i}].name"),
                format!("another CEL rule of this policy is named `{name}`"),
            ));
        }
        let field = format!("{list}[{i}].expr");
        let problems = match expr::parse(source) {
            Ok(program) => {
                let mut problems = expr::check_references(&program);
                problems.extend(expr::check_limits(&program));
                problems
            }
            Err(problems) => problems,
        };
        out.extend(problems.into_iter().map(|p| Diagnostic {
            field: field.clone(),
            message: p.message,
            position: p.position,
        }));
        if let Some(m) = weight.and_then(bad_weight) {
            out.push(Diagnostic::new(format!("{list}[{i}].weight"), m));
        }
    }
    if let Some(g) = &policy.gpu_policy
        && cpn_sched::plugins::gpu::GpuPolicy::parse(g).is_none()
    {
        out.push(Diagnostic::new(
            "gpu_policy",
            format!(
                "unknown GPU policy {g:?}; use random, dotprod, clustering, packing, bestfit, fgd or fgd_plus"
            ),
        ));
    }
    if let Some(p) = policy.sampling_percent
        && !(p > 0.0 && p <= 100.0)
    {
        out.push(Diagnostic::new(
            "sampling_percent",
            format!("must be above 0 and at most 100, got {p}"),
        ));
    }
    out
}

fn bad_weight(w: f64) -> Option<String> {
    (!(w.is_finite() && w >= 0.0))
        .then(|| format!("must be a finite number of at least 0, got {w}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::{CelRule, CelScoreRule, Direction};

    fn known(name: &str) -> bool {
        matches!(name, "resources" | "energy" | "price")
    }

    fn fields(d: &[Diagnostic]) -> Vec<&str> {
        d.iter().map(|d| d.field.as_str()).collect()
    }

    #[test]
    fn a_clean_policy_has_no_diagnostics() {
        let p = Policy {
            name: "green".into(),
            weights: [("energy".to_string(), 2.0)].into(),
            cel_filters: vec![CelRule {
                name: "low-pue".into(),
                expr: "site.pue <= 1.3 && task.gpus <= site.free_gpus".into(),
            }],
            cel_scores: vec![CelScoreRule {
                name: "cheap".into(),
                expr: "[1, 2].map(x, x * site.electricity_price)[0]".into(),
                weight: 1.0,
                better: Direction::Lower,
            }],
            ..Default::default()
        };
        assert_eq!(validate(&p, &known), vec![]);
    }

    #[test]
    fn invalid_cel_is_reported_with_field_and_position() {
        let p = Policy {
            name: "p".into(),
            cel_filters: vec![CelRule {
                name: "broken".into(),
                expr: "site.pue >\n  && true".into(),
            }],
            ..Default::default()
        };
        let d = validate(&p, &known);
        assert!(!d.is_empty(), "{d:?}");
        assert_eq!(d[0].field, "cel_filters[0].expr");
        let (line, col) = d[0].position.expect("parse errors carry a position");
        assert_eq!((line, col), (2, 3), "{d:?}");
    }

    #[test]
    fn unknown_variables_and_fields_are_reported() {
        let p = Policy {
            name: "p".into(),
            cel_filters: vec![CelRule {
                name: "r".into(),
                expr: "site.pue < 2.0 && sitee.pue < 1.0 && site.puee > 0.0".into(),
            }],
            ..Default::default()
        };
        let d = validate(&p, &known);
        assert_eq!(fields(&d), ["cel_filters[0].expr", "cel_filters[0].expr"]);
        assert!(d[0].message.contains("unknown variable `sitee`"), "{d:?}");
        assert_eq!(d[0].position, Some((1, 19)));
        assert!(d[1].message.contains("no field `puee`"), "{d:?}");
    }

    #[test]
    fn names_weights_selectors_and_sampling() {
        let p = Policy {
            name: String::new(),
            parent: Some("base".into()),
            weights: [
                ("energy".to_string(), -1.0),
                ("price".to_string(), f64::NAN),
                ("warp".to_string(), 1.0),
                ("cel:x".to_string(), 1.0),
            ]
            .into(),
            filters: Some(vec!["resources".into(), "nope".into()]),
            match_rules: crate::document::MatchRules {
                labels: Some("team in (a,".into()),
                ..Default::default()
            },
            scope: crate::document::Scope {
                tenants: vec![String::new()],
                ..Default::default()
            },
            cel_filters: vec![
                CelRule {
                    name: "dup".into(),
                    expr: "true".into(),
                },
                CelRule {
                    name: "bad name".into(),
                    expr: "true".into(),
                },
            ],
            cel_scores: vec![CelScoreRule {
                name: "dup".into(),
                expr: "1".into(),
                weight: -2.0,
                better: Direction::Higher,
            }],
            sampling_percent: Some(0.0),
            ..Default::default()
        };
        let d = validate(&p, &known);
        assert_eq!(
            fields(&d),
            [
                "name",
                "scope.tenants[0]",
                "match_rules.labels",
                "weights.cel:x",
                "weights.energy",
                "weights.price",
                "weights.warp",
                "filters[1]",
                "cel_filters[1].name",
                "cel_scores[0].name",
                "cel_scores[0].weight",
                "sampling_percent",
            ]
        );
        assert_eq!(d[2].position, Some((1, 12)));
    }
}
