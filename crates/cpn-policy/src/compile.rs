//! A resolved policy compiled into the `cpn_sched::Profile` the runner uses: in-tree plugins
//! by name with weights over the defaults, plus one plugin per CEL rule.

use crate::document::Policy;
use crate::error::PolicyError;
use crate::expr::{self, CelFilter, CelScore, ExprProblem};
use crate::resolve::{ResolvedPolicy, resolve};
use cpn_sched::framework::Sampling;
use cpn_sched::plugins::{ALL, ProfileSpec, profile_with};
use cpn_sched::{Plugin, Profile};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Whether `name` is an in-tree scheduler plugin: the `known` argument `validate` wants.
pub fn is_plugin(name: &str) -> bool {
    ALL.contains(&name)
}

/// The profile spec a resolved policy describes, without the CEL plugins: weights start from
/// `DEFAULT_WEIGHTS` (via `ProfileSpec::default`) and the policy's override them; CEL scores
/// are weighed under their plugin names; an explicit filter list gets the CEL filters added.
pub fn spec(resolved: &ResolvedPolicy) -> ProfileSpec {
    let mut spec = ProfileSpec {
        name: resolved.name.clone(),
        ..ProfileSpec::default()
    };
    for (name, &w) in &resolved.weights {
        match spec.weights.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = w,
            None => spec.weights.push((name.clone(), w)),
        }
    }
    for rule in &resolved.cel_scores {
        spec.weights
            .push((expr::plugin_name(&rule.name).to_string(), rule.weight));
    }
    spec.filters = resolved.filters.as_ref().map(|names| {
        names
            .iter()
            .cloned()
            .chain(
                resolved
                    .cel_filters
                    .iter()
                    .map(|r| expr::plugin_name(&r.name).to_string()),
            )
            .collect()
    });
    if let Some(p) = resolved.sampling_percent {
        spec.sampling = Sampling::Percent(p);
    }
    if let Some(g) = resolved.gpu_pick {
        spec.gpu_pick = g.into();
    }
    spec
}

/// Compiles `resolved` into a profile named after the policy.
pub fn compile(resolved: &ResolvedPolicy) -> Result<Profile, PolicyError> {
    let mut names = BTreeSet::new();
    for rule in resolved
        .cel_filters
        .iter()
        .map(|r| &r.name)
        .chain(resolved.cel_scores.iter().map(|r| &r.name))
    {
        if !names.insert(rule) {
            return Err(PolicyError::DuplicateRule {
                policy: resolved.name.clone(),
                rule: rule.clone(),
            });
        }
    }
    let cel_error = |rule: &str| {
        let policy = resolved.name.clone();
        let rule = rule.to_string();
        move |problems: Vec<ExprProblem>| PolicyError::Cel {
            policy,
            rule,
            message: problems
                .iter()
                .map(|p| match p.position {
                    Some((line, col)) => format!("{line}:{col}: {}", p.message),
                    None => p.message.clone(),
                })
                .collect::<Vec<_>>()
                .join("; "),
        }
    };
    let env = expr::env();
    let mut extra: Vec<Arc<dyn Plugin>> = Vec::new();
    for rule in &resolved.cel_filters {
        let filter =
            CelFilter::new(&rule.name, &rule.expr, env.clone()).map_err(cel_error(&rule.name))?;
        extra.push(Arc::new(filter));
    }
    for rule in &resolved.cel_scores {
        let score = CelScore::new(&rule.name, &rule.expr, rule.better.into(), env.clone())
            .map_err(cel_error(&rule.name))?;
        extra.push(Arc::new(score));
    }
    profile_with(&spec(resolved), &extra).map_err(|e| PolicyError::Profile {
        policy: resolved.name.clone(),
        message: e.to_string(),
    })
}

/// Resolves policy `name` against `policies` and compiles it.
pub fn compile_named(name: &str, policies: &[Policy]) -> Result<Profile, PolicyError> {
    compile(&resolve(name, policies)?)
}

#[cfg(test)]
mod tests;
