//! Nesting (SC-POL-03, 策略组合关系): a policy refines its parent. Resolution walks the
//! parent chain from the root down, each level overriding what it sets, and records which
//! policy each effective setting came from so explanations can say so.

use crate::document::{CelRule, CelScoreRule, GpuPickRule, MatchRules, Policy, Scope};
use crate::error::PolicyError;
use std::collections::BTreeMap;

/// A policy with its ancestors folded in: what actually applies.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedPolicy {
    pub name: String,
    /// This policy, then its parent, up to the root.
    pub chain: Vec<String>,
    /// The policy's own priority (not inherited).
    pub priority: i32,
    /// Each list is the nearest non-empty one up the chain.
    pub scope: Scope,
    /// Each list is the nearest non-empty one up the chain; `labels` the nearest `Some`.
    pub match_rules: MatchRules,
    /// Weights merged up the chain, the nearest level winning per plugin.
    pub weights: BTreeMap<String, f64>,
    pub filters: Option<Vec<String>>,
    /// The root's rules first. A rule named like an ancestor's replaces it in place.
    pub cel_filters: Vec<CelRule>,
    pub cel_scores: Vec<CelScoreRule>,
    pub sampling_percent: Option<f64>,
    pub gpu_pick: Option<GpuPickRule>,
    pub gpu_policy: Option<String>,
    /// Field path (`scope.regions`, `weights.energy`, `cel_filters.low-pue`, …) → the policy
    /// of the chain that set it. Fields nobody set are absent.
    pub origin: BTreeMap<String, String>,
}

impl ResolvedPolicy {
    /// The policy that set `field`, when it is not this one (for "from parent X" notes).
    pub fn inherited_from(&self, field: &str) -> Option<&str> {
        self.origin
            .get(field)
            .map(String::as_str)
            .filter(|p| *p != self.name)
    }
}

/// The chain of `name`: the policy itself first, then each parent up to the root.
pub fn chain<'a>(name: &str, policies: &'a [Policy]) -> Result<Vec<&'a Policy>, PolicyError> {
    let find = |n: &str| policies.iter().find(|p| p.name == n);
    let mut out: Vec<&Policy> = Vec::new();
    let mut current = find(name).ok_or_else(|| PolicyError::NotFound {
        name: name.to_string(),
    })?;
    loop {
        if out.iter().any(|p| p.name == current.name) {
            let mut names: Vec<String> = out.iter().map(|p| p.name.clone()).collect();
            names.push(current.name.clone());
            return Err(PolicyError::Cycle { chain: names });
        }
        out.push(current);
        let Some(parent) = &current.parent else {
            return Ok(out);
        };
        current = find(parent).ok_or_else(|| PolicyError::MissingParent {
            policy: current.name.clone(),
            parent: parent.clone(),
        })?;
    }
}

/// Resolves policy `name` against `policies` (the first policy of a name wins).
pub fn resolve(name: &str, policies: &[Policy]) -> Result<ResolvedPolicy, PolicyError> {
    let chain = chain(name, policies)?;
    let leaf = chain[0];
    let mut r = ResolvedPolicy {
        name: leaf.name.clone(),
        chain: chain.iter().map(|p| p.name.clone()).collect(),
        priority: leaf.priority,
        scope: Scope::default(),
        match_rules: MatchRules::default(),
        weights: BTreeMap::new(),
        filters: None,
        cel_filters: Vec::new(),
        cel_scores: Vec::new(),
        sampling_percent: None,
        gpu_pick: None,
        gpu_policy: None,
        origin: BTreeMap::new(),
    };
    for p in chain.iter().rev() {
        // Fields this level sets, recorded in `origin` once the level is folded in.
        let mut touched: Vec<String> = Vec::new();
        let mut set = |field: &str| touched.push(field.to_string());
        let lists = [
            ("scope.regions", &p.scope.regions, &mut r.scope.regions),
            (
                "scope.businesses",
                &p.scope.businesses,
                &mut r.scope.businesses,
            ),
            ("scope.tenants", &p.scope.tenants, &mut r.scope.tenants),
            (
                "match_rules.tenants",
                &p.match_rules.tenants,
                &mut r.match_rules.tenants,
            ),
            (
                "match_rules.businesses",
                &p.match_rules.businesses,
                &mut r.match_rules.businesses,
            ),
            (
                "match_rules.origin_regions",
                &p.match_rules.origin_regions,
                &mut r.match_rules.origin_regions,
            ),
        ];
        for (field, own, effective) in lists {
            if !own.is_empty() {
                effective.clone_from(own);
                set(field);
            }
        }
        if p.match_rules.labels.is_some() {
            r.match_rules.labels.clone_from(&p.match_rules.labels);
            set("match_rules.labels");
        }
        for (plugin, &w) in &p.weights {
            r.weights.insert(plugin.clone(), w);
            set(&format!("weights.{plugin}"));
        }
        if p.filters.is_some() {
            r.filters.clone_from(&p.filters);
            set("filters");
        }
        if p.sampling_percent.is_some() {
            r.sampling_percent = p.sampling_percent;
            set("sampling_percent");
        }
        if p.gpu_policy.is_some() {
            r.gpu_policy = p.gpu_policy.clone();
            set("gpu_policy");
        }
        if p.gpu_pick.is_some() {
            r.gpu_pick = p.gpu_pick;
            set("gpu_pick");
        }
        for rule in &p.cel_filters {
            match r.cel_filters.iter_mut().find(|x| x.name == rule.name) {
                Some(existing) => *existing = rule.clone(),
                None => r.cel_filters.push(rule.clone()),
            }
            set(&format!("cel_filters.{}", rule.name));
        }
        for rule in &p.cel_scores {
            match r.cel_scores.iter_mut().find(|x| x.name == rule.name) {
                Some(existing) => *existing = rule.clone(),
                None => r.cel_scores.push(rule.clone()),
            }
            set(&format!("cel_scores.{}", rule.name));
        }
        for field in touched {
            r.origin.insert(field, p.name.clone());
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::Direction;

    fn policy(name: &str, parent: Option<&str>) -> Policy {
        Policy {
            name: name.into(),
            parent: parent.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn child_overrides_parent_and_rules_accumulate() {
        let mut base = policy("base", None);
        base.scope.regions = vec!["east".into()];
        base.weights = [("energy".to_string(), 1.0), ("price".to_string(), 2.0)].into();
        base.sampling_percent = Some(50.0);
        base.gpu_pick = Some(GpuPickRule::BestFit);
        base.cel_filters = vec![
            CelRule {
                name: "healthy".into(),
                expr: "site.healthy".into(),
            },
            CelRule {
                name: "pue".into(),
                expr: "site.pue < 1.5".into(),
            },
        ];
        let mut child = policy("green", Some("base"));
        child.priority = 7;
        child.match_rules.tenants = vec!["lab-a".into()];
        child.weights = [("energy".to_string(), 5.0)].into();
        child.gpu_pick = Some(GpuPickRule::WorstFit);
        child.filters = Some(vec!["resources".into()]);
        child.cel_filters = vec![
            CelRule {
                name: "pue".into(),
                expr: "site.pue < 1.3".into(),
            },
            CelRule {
                name: "carbon".into(),
                expr: "true".into(),
            },
        ];
        child.cel_scores = vec![CelScoreRule {
            name: "cheap".into(),
            expr: "site.electricity_price".into(),
            weight: 1.0,
            better: Direction::Lower,
        }];
        let policies = [child, base];
        let r = resolve("green", &policies).unwrap();
        assert_eq!(r.chain, ["green", "base"]);
        assert_eq!(r.priority, 7);
        assert_eq!(r.scope.regions, ["east"]);
        assert_eq!(r.match_rules.tenants, ["lab-a"]);
        assert_eq!(r.weights["energy"], 5.0);
        assert_eq!(r.weights["price"], 2.0);
        assert_eq!(r.sampling_percent, Some(50.0));
        assert_eq!(r.gpu_pick, Some(GpuPickRule::WorstFit));
        assert_eq!(r.filters, Some(vec!["resources".to_string()]));
        let rules: Vec<(&str, &str)> = r
            .cel_filters
            .iter()
            .map(|c| (c.name.as_str(), c.expr.as_str()))
            .collect();
        assert_eq!(
            rules,
            [
                ("healthy", "site.healthy"),
                ("pue", "site.pue < 1.3"),
                ("carbon", "true")
            ]
        );
        assert_eq!(r.cel_scores.len(), 1);
        assert_eq!(r.inherited_from("scope.regions"), Some("base"));
        assert_eq!(r.inherited_from("weights.price"), Some("base"));
        assert_eq!(r.inherited_from("weights.energy"), None);
        assert_eq!(r.inherited_from("cel_filters.healthy"), Some("base"));
    }

    #[test]
    fn cycles_and_missing_parents_are_errors_naming_the_chain() {
        let policies = [
            policy("a", Some("b")),
            policy("b", Some("c")),
            policy("c", Some("a")),
            policy("orphan", Some("ghost")),
        ];
        let e = resolve("a", &policies).unwrap_err();
        assert_eq!(
            e,
            PolicyError::Cycle {
                chain: vec!["a".into(), "b".into(), "c".into(), "a".into()]
            }
        );
        assert_eq!(e.to_string(), "policies form a cycle: a -> b -> c -> a");
        let e = resolve("orphan", &policies).unwrap_err();
        assert!(matches!(e, PolicyError::MissingParent { .. }), "{e}");
        assert!(matches!(
            resolve("nobody", &policies),
            Err(PolicyError::NotFound { .. })
        ));
        let self_parent = [policy("me", Some("me"))];
        assert_eq!(
            resolve("me", &self_parent).unwrap_err().to_string(),
            "policies form a cycle: me -> me"
        );
    }
}
