//! Policies compiled into profiles and run by the real scheduler on a small cluster.

use super::*;
use crate::document::{CelRule, CelScoreRule, Direction, GpuPickRule};
use crate::testkit;
use cpn_sched::cluster::GpuPick;
use cpn_sched::plugins::DEFAULT_WEIGHTS;
use cpn_sched::{Decision, Scheduler};
use std::collections::BTreeMap;

/// Every default weight set to 0, so only the CEL rules under test decide.
fn silent_weights() -> BTreeMap<String, f64> {
    DEFAULT_WEIGHTS
        .iter()
        .map(|(n, _)| (n.to_string(), 0.0))
        .collect()
}

fn score(name: &str, expr: &str, better: Direction) -> CelScoreRule {
    CelScoreRule {
        name: name.into(),
        expr: expr.into(),
        weight: 1.0,
        better,
    }
}

fn decide(policy: Policy) -> Decision {
    let name = policy.name.clone();
    let profile = compile_named(&name, &[policy]).expect("policy compiles");
    let cluster = testkit::cluster();
    Scheduler::new(profile, 7).explain(&testkit::task(), &cluster)
}

#[test]
fn a_cel_filter_on_pue_changes_the_decision() {
    // Without the filter, most free GPUs wins: `hot` (8 against 2).
    let base = Policy {
        name: "most-free".into(),
        weights: silent_weights(),
        cel_scores: vec![score("free", "site.free_gpus", Direction::Higher)],
        ..Default::default()
    };
    assert_eq!(decide(base.clone()).chosen_site.as_deref(), Some("hot"));

    let green = Policy {
        name: "green".into(),
        cel_filters: vec![CelRule {
            name: "low-pue".into(),
            expr: "!(site.pue > 1.3)".into(),
        }],
        ..base
    };
    let d = decide(green);
    assert_eq!(d.chosen_site.as_deref(), Some("green"));
    let hot = d.sites.iter().find(|s| s.name == "hot").unwrap();
    assert!(!hot.feasible);
    let v = hot
        .verdicts
        .iter()
        .find(|v| v.plugin == "cel:low-pue")
        .unwrap();
    assert_eq!(v.code, Some(expr::CODE_REJECTED));
    assert_eq!(v.detail.as_deref(), Some("`!(site.pue > 1.3)` is false"));
    assert_eq!(d.rejections, [("cel:low-pue/cel_rejected".to_string(), 1)]);
}

#[test]
fn a_cel_score_on_electricity_price_prefers_the_cheaper_site() {
    let cheap = Policy {
        name: "cheap".into(),
        weights: silent_weights(),
        cel_scores: vec![score("power", "site.electricity_price", Direction::Lower)],
        ..Default::default()
    };
    let d = decide(cheap.clone());
    assert_eq!(d.chosen_site.as_deref(), Some("hot"));
    let f = &d.sites[0].factors;
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].plugin, "cel:power");
    assert_eq!((f[0].raw, f[0].normalized), (0.3, 100.0));
    // The same rule the other way round flips the choice: the CEL score decides.
    let dear = Policy {
        cel_scores: vec![score("power", "site.electricity_price", Direction::Higher)],
        ..cheap
    };
    assert_eq!(decide(dear).chosen_site.as_deref(), Some("green"));
}

#[test]
fn node_rules_run_inside_the_chosen_site() {
    let p = Policy {
        name: "avoid-first-node".into(),
        weights: silent_weights(),
        cel_filters: vec![CelRule {
            name: "not-1".into(),
            expr: "!node.name.endsWith('-1') && node.free_gpus >= task.gpus".into(),
        }],
        cel_scores: vec![score(
            "cheap-site",
            "site.electricity_price",
            Direction::Lower,
        )],
        ..Default::default()
    };
    let d = decide(p);
    assert_eq!(d.chosen_site.as_deref(), Some("hot"));
    assert_eq!(d.chosen_node.as_deref(), Some("hot-2"));
    let rejected = d.nodes.iter().find(|n| n.name == "hot-1").unwrap();
    assert!(!rejected.feasible);
}

#[test]
fn spec_overrides_defaults_and_lists_cel_filters() {
    let mut r = resolve(
        "p",
        &[Policy {
            name: "p".into(),
            weights: [("energy".to_string(), 4.0)].into(),
            filters: Some(vec!["resources_fit".into()]),
            cel_filters: vec![CelRule {
                name: "f".into(),
                expr: "true".into(),
            }],
            cel_scores: vec![score("s", "1", Direction::Higher)],
            sampling_percent: Some(25.0),
            gpu_pick: Some(GpuPickRule::FirstFit),
            ..Default::default()
        }],
    )
    .unwrap();
    let s = spec(&r);
    let w: BTreeMap<&str, f64> = s.weights.iter().map(|(n, w)| (n.as_str(), *w)).collect();
    assert_eq!(w["energy"], 4.0);
    assert_eq!(w["latency"], 2.0, "defaults stay for names not overridden");
    assert_eq!(w["cel:s"], 1.0);
    assert_eq!(
        s.filters,
        Some(vec!["resources_fit".to_string(), "cel:f".to_string()])
    );
    assert_eq!(s.sampling, Sampling::Percent(25.0));
    assert_eq!(s.gpu_pick, GpuPick::FirstFit);
    let profile = compile(&r).unwrap();
    let names: Vec<&str> = profile.plugins.iter().map(|p| p.name()).collect();
    assert_eq!(names[..2], ["resources_fit", "cel:f"]);
    assert!(names.contains(&"cel:s"));

    // A weight on a filter-only plugin is a profile error, not a panic.
    r.weights.insert("site_health".into(), 1.0);
    assert!(matches!(compile(&r), Err(PolicyError::Profile { .. })));
}

#[test]
fn bad_rules_fail_to_compile_with_the_rule_named() {
    let policy = |filters: Vec<CelRule>, scores: Vec<CelScoreRule>| Policy {
        name: "p".into(),
        cel_filters: filters,
        cel_scores: scores,
        ..Default::default()
    };
    let e = compile_named(
        "p",
        &[policy(
            vec![CelRule {
                name: "x".into(),
                expr: "site.pue >".into(),
            }],
            vec![],
        )],
    )
    .err()
    .expect("does not compile");
    assert!(
        matches!(&e, PolicyError::Cel { rule, message, .. } if rule == "x" && message.starts_with("1:")),
        "{e}"
    );
    let e = compile_named(
        "p",
        &[policy(
            vec![CelRule {
                name: "same".into(),
                expr: "true".into(),
            }],
            vec![score("same", "1", Direction::Higher)],
        )],
    )
    .err()
    .expect("does not compile");
    assert!(matches!(e, PolicyError::DuplicateRule { .. }), "{e}");
}
