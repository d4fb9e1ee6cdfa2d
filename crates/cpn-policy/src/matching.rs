//! Which policy applies to a task (SC-POL-02 multi-dimensional match with priority, SC-POL-04
//! scope), and why: every accepting constraint, the candidates that also matched but lost,
//! and the policies that did not match with the constraint that refused the task.
//!
//! A policy's constraints are its scope and match rules with its ancestors' folded in (see
//! `resolve`): a child that sets no regions inherits its parent's. Among matching policies
//! the highest priority wins, then the most specific (most non-empty constraints), then the
//! first name, so the choice is deterministic.

use crate::document::Policy;
use crate::resolve::chain;
use cpn_model::Selector;
use cpn_sched::Task;

/// The chosen policy and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Match<'a> {
    pub policy: &'a Policy,
    /// Number of non-empty constraints (scope and match rules, inherited ones included).
    pub specificity: usize,
    /// Each constraint that accepted the task, e.g. `tenant lab-a in match_rules.tenants`.
    pub reasons: Vec<String>,
    /// Policies that also matched, best first, with why each lost.
    pub runners_up: Vec<RunnerUp<'a>>,
    /// Policies that did not match, in input order, with the first constraint that refused.
    pub rejected: Vec<Rejected<'a>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunnerUp<'a> {
    pub policy: &'a Policy,
    pub specificity: usize,
    pub reasons: Vec<String>,
    /// Why the winner beat it, e.g. `priority 5 below 10 of lab-a`.
    pub lost: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rejected<'a> {
    pub policy: &'a Policy,
    pub reason: String,
}

/// Reads one list constraint of a policy.
type ListOf = fn(&Policy) -> &Vec<String>;

/// Whether one policy accepts a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The constraints that accepted it (or a note that there are none).
    Matches {
        specificity: usize,
        reasons: Vec<String>,
    },
    /// The first constraint that refused it, or why the policy could not be evaluated.
    Refuses(String),
}

/// The policy that applies to `task`, or `None` when none matches.
pub fn select<'a>(policies: &'a [Policy], task: &Task) -> Option<Match<'a>> {
    let mut matched: Vec<(&Policy, usize, Vec<String>)> = Vec::new();
    let mut rejected = Vec::new();
    for p in policies {
        match check(p, policies, task) {
            Check::Matches {
                specificity,
                reasons,
            } => matched.push((p, specificity, reasons)),
            Check::Refuses(reason) => rejected.push(Rejected { policy: p, reason }),
        }
    }
    matched.sort_by(|a, b| {
        b.0.priority
            .cmp(&a.0.priority)
            .then(b.1.cmp(&a.1))
            .then_with(|| a.0.name.cmp(&b.0.name))
    });
    let mut ranked = matched.into_iter();
    let (winner, specificity, reasons) = ranked.next()?;
    let runners_up = ranked
        .map(|(p, s, reasons)| RunnerUp {
            policy: p,
            specificity: s,
            lost: if p.priority != winner.priority {
                format!(
                    "priority {} below {} of {}",
                    p.priority, winner.priority, winner.name
                )
            } else if s != specificity {
                format!(
                    "same priority {}, but {s} constraint(s) against {specificity} of {}",
                    p.priority, winner.name
                )
            } else {
                format!(
                    "same priority {} and specificity {s} as {}, which comes first by name",
                    p.priority, winner.name
                )
            },
            reasons,
        })
        .collect();
    Some(Match {
        policy: winner,
        specificity,
        reasons,
        runners_up,
        rejected,
    })
}

/// Checks `policy` (with the ancestors it finds in `policies`) against `task`.
pub fn check(policy: &Policy, policies: &[Policy], task: &Task) -> Check {
    let chain = match chain(&policy.name, policies) {
        Ok(c) => c,
        Err(e) => return Check::Refuses(e.to_string()),
    };
    // The nearest level of the chain that sets a constraint provides it.
    let nearest = |get: &dyn Fn(&Policy) -> bool| chain.iter().find(|p| get(p)).copied();
    let note = |from: &Policy| {
        if from.name == policy.name {
            String::new()
        } else {
            format!(" (from {})", from.name)
        }
    };
    let tests: [(&str, &str, ListOf, Option<&str>); 6] = [
        (
            "scope.regions",
            "origin region",
            |p| &p.scope.regions,
            task.origin_region.as_deref(),
        ),
        (
            "scope.businesses",
            "business",
            |p| &p.scope.businesses,
            task.business.as_deref(),
        ),
        (
            "scope.tenants",
            "tenant",
            |p| &p.scope.tenants,
            Some(task.tenant.as_str()),
        ),
        (
            "match_rules.tenants",
            "tenant",
            |p| &p.match_rules.tenants,
            Some(task.tenant.as_str()),
        ),
        (
            "match_rules.businesses",
            "business",
            |p| &p.match_rules.businesses,
            task.business.as_deref(),
        ),
        (
            "match_rules.origin_regions",
            "origin region",
            |p| &p.match_rules.origin_regions,
            task.origin_region.as_deref(),
        ),
    ];
    let mut reasons = Vec::new();
    for (field, what, get, value) in tests {
        let Some(from) = nearest(&|p| !get(p).is_empty()) else {
            continue;
        };
        let list = get(from);
        match value {
            Some(v) if list.iter().any(|x| x == v) => {
                reasons.push(format!("{what} {v} in {field}{}", note(from)))
            }
            Some(v) => {
                return Check::Refuses(format!(
                    "{what} {v} not in {field} [{}]{}",
                    list.join(", "),
                    note(from)
                ));
            }
            None => {
                return Check::Refuses(format!(
                    "task has no {what}; {field}{} wants one of [{}]",
                    note(from),
                    list.join(", ")
                ));
            }
        }
    }
    if let Some(from) = nearest(&|p| p.match_rules.labels.is_some()) {
        let text = from.match_rules.labels.as_deref().unwrap_or_default();
        match Selector::parse(text) {
            Ok(s) if s.is_empty() => {}
            Ok(s) if s.matches(&task.labels) => reasons.push(format!(
                "labels match `{text}` in match_rules.labels{}",
                note(from)
            )),
            Ok(_) => {
                return Check::Refuses(format!(
                    "labels do not match `{text}` in match_rules.labels{}",
                    note(from)
                ));
            }
            Err(e) => {
                return Check::Refuses(format!(
                    "match_rules.labels{} does not parse: {e}",
                    note(from)
                ));
            }
        }
    }
    let specificity = reasons.len();
    if reasons.is_empty() {
        reasons.push("no scope or match rules: applies to every task".to_string());
    }
    Check::Matches {
        specificity,
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str, priority: i32) -> Policy {
        Policy {
            name: name.into(),
            priority,
            ..Default::default()
        }
    }

    fn task() -> Task {
        Task {
            id: "t1".into(),
            tenant: "lab-a".into(),
            business: Some("training".into()),
            origin_region: Some("east".into()),
            labels: [("team".to_string(), "vision".to_string())].into(),
            ..Default::default()
        }
    }

    #[test]
    fn higher_priority_wins_and_explains() {
        let catch_all = policy("default", 0);
        let mut lab = policy("lab-a", 10);
        lab.match_rules.tenants = vec!["lab-a".into(), "lab-b".into()];
        let mut west = policy("west", 20);
        west.scope.regions = vec!["west".into()];
        let policies = [catch_all, lab, west];
        let m = select(&policies, &task()).unwrap();
        assert_eq!(m.policy.name, "lab-a");
        assert_eq!(m.reasons, ["tenant lab-a in match_rules.tenants"]);
        assert_eq!(m.runners_up.len(), 1);
        assert_eq!(m.runners_up[0].policy.name, "default");
        assert_eq!(m.runners_up[0].lost, "priority 0 below 10 of lab-a");
        assert_eq!(
            m.runners_up[0].reasons,
            ["no scope or match rules: applies to every task"]
        );
        assert_eq!(m.rejected.len(), 1);
        assert_eq!(
            m.rejected[0].reason,
            "origin region east not in scope.regions [west]"
        );
    }

    #[test]
    fn equal_priority_prefers_the_more_specific_then_the_name() {
        let mut broad = policy("broad", 5);
        broad.match_rules.tenants = vec!["lab-a".into()];
        let mut narrow = policy("narrow", 5);
        narrow.scope.businesses = vec!["training".into()];
        narrow.match_rules.labels = Some("team=vision".into());
        let mut twin = policy("a-twin", 5);
        twin.scope.businesses = vec!["training".into()];
        twin.match_rules.origin_regions = vec!["east".into()];
        let policies = [broad, narrow, twin];
        let m = select(&policies, &task()).unwrap();
        assert_eq!(m.policy.name, "a-twin");
        assert_eq!(m.specificity, 2);
        assert_eq!(
            m.reasons,
            [
                "business training in scope.businesses",
                "origin region east in match_rules.origin_regions"
            ]
        );
        let lost: Vec<(&str, &str)> = m
            .runners_up
            .iter()
            .map(|r| (r.policy.name.as_str(), r.lost.as_str()))
            .collect();
        assert_eq!(
            lost,
            [
                (
                    "narrow",
                    "same priority 5 and specificity 2 as a-twin, which comes first by name"
                ),
                (
                    "broad",
                    "same priority 5, but 1 constraint(s) against 2 of a-twin"
                ),
            ]
        );
    }

    #[test]
    fn children_inherit_constraints_and_missing_fields_refuse() {
        let mut base = policy("east-base", 0);
        base.scope.regions = vec!["east".into()];
        let mut child = policy("east-lab", 1);
        child.parent = Some("east-base".into());
        child.match_rules.tenants = vec!["lab-a".into()];
        let policies = [base, child];
        let m = select(&policies, &task()).unwrap();
        assert_eq!(m.policy.name, "east-lab");
        assert_eq!(
            m.reasons,
            [
                "origin region east in scope.regions (from east-base)",
                "tenant lab-a in match_rules.tenants"
            ]
        );
        let mut elsewhere = task();
        elsewhere.origin_region = None;
        assert!(select(&policies, &elsewhere).is_none());
        assert_eq!(
            check(&policies[1], &policies, &elsewhere),
            Check::Refuses(
                "task has no origin region; scope.regions (from east-base) wants one of [east]"
                    .into()
            )
        );
    }

    #[test]
    fn label_selectors_and_broken_chains() {
        let mut gpu = policy("gpu", 0);
        gpu.match_rules.labels = Some("team in (nlp,speech)".into());
        let mut orphan = policy("orphan", 9);
        orphan.parent = Some("ghost".into());
        let policies = [gpu, orphan];
        assert!(select(&policies, &task()).is_none());
        assert_eq!(
            check(&policies[0], &policies, &task()),
            Check::Refuses(
                "labels do not match `team in (nlp,speech)` in match_rules.labels".into()
            )
        );
        assert!(matches!(
            check(&policies[1], &policies, &task()),
            Check::Refuses(r) if r.contains("ghost")
        ));
    }
}
