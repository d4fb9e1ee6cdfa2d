//! In-tree plugins, one file each, and the registry that turns a profile spec (names and
//! weights, as configured) into a [`Profile`] the runner can use.
//!
//! Filters run cheapest first (see [`FILTERS`]); score plugins take part only when their
//! weight is positive. Unknown names and bad weights are configuration errors, never panics.

pub mod bin_pack;
pub mod carbon;
pub mod chip_model;
pub mod energy;
pub mod free_capacity;
pub mod gpu;
pub mod latency;
pub mod location_affinity;
pub mod model_preference;
pub mod performance;
pub mod price;
pub mod residency;
pub mod resources_fit;
pub mod selector;
pub mod site_health;
pub mod spread;
pub mod tenant_quota;

#[cfg(test)]
mod testkit;

use crate::cluster::{GpuPick, Offer, Site};
use crate::framework::{CycleState, Plugin, Profile, Sampling};
use crate::task::{Chip, Resolved, Task};
use std::fmt;
use std::sync::Arc;

/// Every in-tree plugin: the filters in the order they run, then the scores.
pub const ALL: &[&str] = &[
    site_health::NAME,
    residency::NAME,
    selector::NAME,
    chip_model::NAME,
    resources_fit::NAME,
    tenant_quota::NAME,
    model_preference::NAME,
    performance::NAME,
    energy::NAME,
    carbon::NAME,
    latency::NAME,
    location_affinity::NAME,
    price::NAME,
    free_capacity::NAME,
    bin_pack::NAME,
    spread::NAME,
];

/// The in-tree filters, cheapest first: a profile always runs its filters in this order,
/// whatever order its spec names them in, because the runner stops at the first rejection.
pub const FILTERS: &[&str] = &[
    site_health::NAME,
    residency::NAME,
    selector::NAME,
    chip_model::NAME,
    resources_fit::NAME,
    tenant_quota::NAME,
];

/// Weights of the default profile. Zero-weight entries are listed so every score plugin's
/// default is written down; they are left out of the profile.
pub const DEFAULT_WEIGHTS: &[(&str, f64)] = &[
    (model_preference::NAME, 1.0),
    (performance::NAME, 1.0),
    (energy::NAME, 1.0),
    (carbon::NAME, 0.0),
    (latency::NAME, 2.0),
    (location_affinity::NAME, 1.0),
    (price::NAME, 2.0),
    (free_capacity::NAME, 1.0),
    (bin_pack::NAME, 1.0),
    (spread::NAME, 0.0),
];

/// A new instance of the in-tree plugin called `name`.
pub fn build(name: &str) -> Option<Arc<dyn Plugin>> {
    Some(match name {
        site_health::NAME => Arc::new(site_health::SiteHealth),
        residency::NAME => Arc::new(residency::Residency),
        selector::NAME => Arc::new(selector::SelectorMatch),
        chip_model::NAME => Arc::new(chip_model::ChipModel),
        resources_fit::NAME => Arc::new(resources_fit::ResourcesFit),
        tenant_quota::NAME => Arc::new(tenant_quota::TenantQuota),
        model_preference::NAME => Arc::new(model_preference::ModelPreference),
        performance::NAME => Arc::new(performance::Performance),
        energy::NAME => Arc::new(energy::Energy),
        carbon::NAME => Arc::new(carbon::Carbon),
        latency::NAME => Arc::new(latency::NetworkLatency),
        location_affinity::NAME => Arc::new(location_affinity::LocationAffinity),
        price::NAME => Arc::new(price::Price),
        free_capacity::NAME => Arc::new(free_capacity::FreeCapacity),
        bin_pack::NAME => Arc::new(bin_pack::BinPack),
        spread::NAME => Arc::new(spread::Spread),
        _ => return None,
    })
}

/// A profile as configured: plugin names and weights, checked by [`profile`].
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileSpec {
    pub name: String,
    /// Filters to run; `None` runs every in-tree filter (and every extra one).
    pub filters: Option<Vec<String>>,
    /// Weights of score plugins by name; a score plugin with no positive weight is left out.
    pub weights: Vec<(String, f64)>,
    pub sampling: Sampling,
    pub gpu_pick: GpuPick,
    pub site_attempts: usize,
}

impl Default for ProfileSpec {
    fn default() -> Self {
        ProfileSpec {
            name: "default".to_string(),
            filters: None,
            weights: DEFAULT_WEIGHTS
                .iter()
                .map(|&(n, w)| (n.to_string(), w))
                .collect(),
            sampling: Sampling::Adaptive,
            gpu_pick: GpuPick::BestFit,
            site_attempts: 3,
        }
    }
}

/// Why a profile spec was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum ProfileError {
    /// No plugin of that name; `valid` lists the names there are.
    UnknownPlugin { name: String, valid: Vec<String> },
    /// Named among the filters but has no filter extension point.
    NotAFilter { name: String },
    /// Given a weight but has no score extension point.
    NotAScore { name: String },
    /// A weight that is negative, NaN or infinite.
    BadWeight { name: String, weight: f64 },
    /// Two weights for one plugin.
    DuplicateWeight { name: String },
    /// An extra plugin whose name is already taken.
    DuplicatePlugin { name: String },
    /// `Sampling::Percent` outside (0, 100].
    BadSampling { percent: f64 },
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProfileError::UnknownPlugin { name, valid } => write!(
                f,
                "unknown scheduler plugin {name:?}; valid plugins are: {}",
                valid.join(", ")
            ),
            ProfileError::NotAFilter { name } => {
                write!(
                    f,
                    "plugin {name:?} is not a filter and cannot be listed among filters"
                )
            }
            ProfileError::NotAScore { name } => write!(
                f,
                "plugin {name:?} is a filter only and cannot have a weight"
            ),
            ProfileError::BadWeight { name, weight } => write!(
                f,
                "weight of {name:?} is {weight}; weights must be finite and not negative"
            ),
            ProfileError::DuplicateWeight { name } => {
                write!(f, "plugin {name:?} is given a weight twice")
            }
            ProfileError::DuplicatePlugin { name } => {
                write!(f, "a scheduler plugin named {name:?} already exists")
            }
            ProfileError::BadSampling { percent } => write!(
                f,
                "sampling percentage is {percent}; it must be above 0 and at most 100"
            ),
        }
    }
}

impl std::error::Error for ProfileError {}

/// The profile `spec` describes, from in-tree plugins only.
pub fn profile(spec: &ProfileSpec) -> Result<Profile, ProfileError> {
    profile_with(spec, &[])
}

/// The profile `spec` describes, from in-tree plugins and `extra` ones (user-defined
/// policies). Extra filters run after the in-tree ones (all of them when `spec.filters` is
/// `None`, else those it names); extra scores take part when `spec.weights` weighs them.
/// An extra plugin that is both filter and score runs its filter whenever it is included.
pub fn profile_with(
    spec: &ProfileSpec,
    extra: &[Arc<dyn Plugin>],
) -> Result<Profile, ProfileError> {
    for (i, p) in extra.iter().enumerate() {
        let name = p.name();
        if ALL.contains(&name) || extra[..i].iter().any(|q| q.name() == name) {
            return Err(ProfileError::DuplicatePlugin {
                name: name.to_string(),
            });
        }
    }
    if let Sampling::Percent(p) = spec.sampling
        && !(p > 0.0 && p <= 100.0)
    {
        return Err(ProfileError::BadSampling { percent: p });
    }
    let unknown = |name: &str| ProfileError::UnknownPlugin {
        name: name.to_string(),
        valid: ALL
            .iter()
            .copied()
            .chain(extra.iter().map(|p| p.name()))
            .map(str::to_string)
            .collect(),
    };
    // Position of a plugin in the canonical order: in-tree first (ALL order), then extras.
    let position = |name: &str| -> Option<usize> {
        ALL.iter().position(|&n| n == name).or_else(|| {
            extra
                .iter()
                .position(|p| p.name() == name)
                .map(|i| ALL.len() + i)
        })
    };
    let plugin_at = |pos: usize| -> Arc<dyn Plugin> {
        match ALL.get(pos) {
            Some(name) => build(name).expect("every name in ALL builds"),
            None => extra[pos - ALL.len()].clone(),
        }
    };
    let is_filter = |p: &dyn Plugin| p.as_site_filter().is_some() || p.as_node_filter().is_some();
    let is_score = |p: &dyn Plugin| p.as_site_score().is_some() || p.as_node_score().is_some();

    let mut chosen: Vec<usize> = Vec::new();
    match &spec.filters {
        None => {
            for pos in 0..ALL.len() + extra.len() {
                if is_filter(plugin_at(pos).as_ref()) {
                    chosen.push(pos);
                }
            }
        }
        Some(names) => {
            for name in names {
                let pos = position(name).ok_or_else(|| unknown(name))?;
                if !is_filter(plugin_at(pos).as_ref()) {
                    return Err(ProfileError::NotAFilter { name: name.clone() });
                }
                if !chosen.contains(&pos) {
                    chosen.push(pos);
                }
            }
        }
    }

    let mut weights: Vec<(String, f64)> = Vec::new();
    for (i, (name, weight)) in spec.weights.iter().enumerate() {
        let pos = position(name).ok_or_else(|| unknown(name))?;
        if !is_score(plugin_at(pos).as_ref()) {
            return Err(ProfileError::NotAScore { name: name.clone() });
        }
        if !weight.is_finite() || *weight < 0.0 {
            return Err(ProfileError::BadWeight {
                name: name.clone(),
                weight: *weight,
            });
        }
        if spec.weights[..i].iter().any(|(n, _)| n == name) {
            return Err(ProfileError::DuplicateWeight { name: name.clone() });
        }
        if *weight > 0.0 {
            weights.push((name.clone(), *weight));
            if !chosen.contains(&pos) {
                chosen.push(pos);
            }
        }
    }

    // Filters in canonical (cheap-first) order, then scores in canonical order.
    chosen.sort_unstable();
    let plugins: Vec<Arc<dyn Plugin>> = chosen.into_iter().map(plugin_at).collect();
    let (filters, scores): (Vec<_>, Vec<_>) =
        plugins.into_iter().partition(|p| is_filter(p.as_ref()));
    Ok(Profile {
        name: spec.name.clone(),
        plugins: filters.into_iter().chain(scores).collect(),
        weights,
        sampling: spec.sampling,
        gpu_pick: spec.gpu_pick,
        site_attempts: spec.site_attempts,
        gpu_picker: None,
        tie_break: crate::framework::TieBreak::PerCycle,
    })
}

/// The default profile: every in-tree filter and [`DEFAULT_WEIGHTS`].
pub fn default_profile() -> Profile {
    profile(&ProfileSpec::default()).expect("the default profile spec is valid")
}

// Helpers shared by the score plugins.

static ANY: Resolved = Resolved {
    models: None,
    architectures: None,
    preferred: Vec::new(),
};

/// The task's resolved names from the cycle state (the runner always puts them there);
/// "anything goes" when absent.
pub(crate) fn resolved(state: &CycleState) -> &Resolved {
    state.get::<Resolved>().unwrap_or(&ANY)
}

/// Hours the task is expected to run: `est_hours`, or 1 when that is unset or not positive.
pub fn est_hours(task: &Task) -> f64 {
    if task.est_hours.is_finite() && task.est_hours > 0.0 {
        task.est_hours
    } else {
        1.0
    }
}

/// How many units the task occupies, in the unit offers are priced and rated in:
/// GPU-equivalents (total GPU milli / 1000, so half a GPU is 0.5) for accelerator tasks,
/// cores (CPU milli / 1000) for CPU-only tasks.
pub fn units(task: &Task) -> f64 {
    if task.demand.gpus > 0 {
        task.demand.gpu_milli_total() as f64 / 1000.0
    } else {
        task.demand.cpu_milli as f64 / 1000.0
    }
}

/// Folds `key` over the offers the task could run on at `site`, best matched first:
/// acceptable offers priced in the task's unit (accelerator offers for GPU demand, CPU
/// offers for CPU demand, since offers quote per accelerator or per core); else any
/// acceptable offer; else, when a profile without `chip_model` let through a site with none
/// acceptable, every offer. `None` when the site offers nothing. Non-finite keys are
/// skipped so no score becomes NaN.
pub(crate) fn fold_offers(
    state: &CycleState,
    task: &Task,
    site: &Site,
    key: impl Fn(&Offer) -> f64,
    pick: fn(f64, f64) -> f64,
) -> Option<f64> {
    let fold = |it: &mut dyn Iterator<Item = &Offer>| {
        it.map(&key)
            .filter(|x| x.is_finite())
            .fold(None, |acc: Option<f64>, x| {
                Some(acc.map_or(x, |a| pick(a, x)))
            })
    };
    let wants_accelerator = task.demand.gpus > 0;
    let same_unit = |o: &&Offer| o.chip.is_some_and(|c| c != Chip::Cpu) == wants_accelerator;
    let r = resolved(state);
    fold(&mut r.offers(task, site).filter(same_unit))
        .or_else(|| fold(&mut r.offers(task, site)))
        .or_else(|| fold(&mut site.offers.iter()))
}

/// Per cycle, plugin `P`'s stand-in for a site whose value is unknown; see [`or_mean`].
pub(crate) struct MeanOfKnown<P>(
    std::sync::OnceLock<f64>,
    std::marker::PhantomData<fn() -> P>,
);

impl<P> Default for MeanOfKnown<P> {
    fn default() -> Self {
        MeanOfKnown(std::sync::OnceLock::new(), std::marker::PhantomData)
    }
}

/// `value`, or when the site does not know it (every machine of it fulfils no registered
/// offer: NaN economics) the mean of `of` over the cluster's sites that do, so missing data
/// neither wins nor loses (as the carbon factor treats a missing intensity); 0 when no site
/// knows it. The mean is computed at most once per cycle, on first need, when the plugin's
/// `prepare` put a [`MeanOfKnown<P>`] in the state.
pub(crate) fn or_mean<P: 'static>(
    state: &CycleState,
    cluster: &crate::cluster::Cluster,
    value: Option<f64>,
    of: impl Fn(&Site) -> Option<f64>,
) -> f64 {
    if let Some(v) = value.filter(|v| v.is_finite()) {
        return v;
    }
    let mean = || {
        let (sum, n) = cluster
            .sites
            .iter()
            .filter_map(&of)
            .filter(|v| v.is_finite())
            .fold((0.0, 0u32), |(sum, n), v| (sum + v, n + 1));
        if n == 0 { 0.0 } else { sum / n as f64 }
    };
    match state.get::<MeanOfKnown<P>>() {
        Some(m) => *m.0.get_or_init(mean),
        None => mean(),
    }
}

/// A site's PUE, 1 when unset or invalid.
pub(crate) fn pue(site: &Site) -> f64 {
    let p = site.spec.pue;
    if p.is_finite() && p > 0.0 { p } else { 1.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_builds_a_plugin_of_that_name() {
        for name in ALL {
            assert_eq!(build(name).unwrap().name(), *name);
        }
        assert!(build("nope").is_none());
        for name in FILTERS {
            let p = build(name).unwrap();
            assert!(p.as_site_filter().is_some() || p.as_node_filter().is_some());
        }
        for (name, _) in DEFAULT_WEIGHTS {
            let p = build(name).unwrap();
            assert!(p.as_site_score().is_some() || p.as_node_score().is_some());
        }
        assert_eq!(FILTERS.len() + DEFAULT_WEIGHTS.len(), ALL.len());
    }

    #[test]
    fn default_profile_has_all_filters_and_positive_weights() {
        let p = default_profile();
        let names: Vec<&str> = p.plugins.iter().map(|p| p.name()).collect();
        assert_eq!(
            names,
            [
                "site_health",
                "residency",
                "selector",
                "chip_model",
                "resources_fit",
                "tenant_quota",
                "model_preference",
                "performance",
                "energy",
                "latency",
                "location_affinity",
                "price",
                "free_capacity",
                "bin_pack",
            ]
        );
        assert_eq!(p.weight("latency"), 2.0);
        assert_eq!(p.weight("carbon"), 0.0);
        assert_eq!(p.site_scores().len(), 7);
        assert_eq!(p.node_scores().len(), 1);
        assert_eq!(p.site_attempts, 3);
        assert_eq!(p.name, "default");
    }

    #[test]
    fn filters_run_cheap_first_whatever_the_spec_order() {
        let spec = ProfileSpec {
            filters: Some(vec!["resources_fit".into(), "site_health".into()]),
            weights: vec![("price".into(), 1.0)],
            ..Default::default()
        };
        let p = profile(&spec).unwrap();
        let names: Vec<&str> = p.plugins.iter().map(|p| p.name()).collect();
        assert_eq!(names, ["site_health", "resources_fit", "price"]);
    }

    #[test]
    fn bad_specs_are_errors_that_name_the_culprit() {
        let with = |filters: Option<Vec<&str>>, weights: Vec<(&str, f64)>| ProfileSpec {
            filters: filters.map(|f| f.into_iter().map(String::from).collect()),
            weights: weights
                .into_iter()
                .map(|(n, w)| (n.to_string(), w))
                .collect(),
            ..Default::default()
        };
        let e = profile(&with(Some(vec!["regoin"]), vec![])).err().unwrap();
        assert!(matches!(&e, ProfileError::UnknownPlugin { name, .. } if name == "regoin"));
        let text = e.to_string();
        assert!(
            text.contains("\"regoin\"") && text.contains("residency, selector"),
            "{text}"
        );
        let e = profile(&with(None, vec![("cost", 1.0)])).err().unwrap();
        assert!(matches!(e, ProfileError::UnknownPlugin { name, .. } if name == "cost"));
        assert_eq!(
            profile(&with(None, vec![("price", -1.0)])).err(),
            Some(ProfileError::BadWeight {
                name: "price".into(),
                weight: -1.0
            })
        );
        assert!(matches!(
            profile(&with(None, vec![("price", f64::NAN)])),
            Err(ProfileError::BadWeight { .. })
        ));
        assert!(matches!(
            profile(&with(None, vec![("price", f64::INFINITY)])),
            Err(ProfileError::BadWeight { .. })
        ));
        assert_eq!(
            profile(&with(None, vec![("residency", 1.0)])).err(),
            Some(ProfileError::NotAScore {
                name: "residency".into()
            })
        );
        assert_eq!(
            profile(&with(Some(vec!["price"]), vec![])).err(),
            Some(ProfileError::NotAFilter {
                name: "price".into()
            })
        );
        assert_eq!(
            profile(&with(None, vec![("price", 1.0), ("price", 2.0)])).err(),
            Some(ProfileError::DuplicateWeight {
                name: "price".into()
            })
        );
        let spec = ProfileSpec {
            sampling: Sampling::Percent(0.0),
            ..Default::default()
        };
        assert_eq!(
            profile(&spec).err(),
            Some(ProfileError::BadSampling { percent: 0.0 })
        );
    }

    #[test]
    fn zero_weights_leave_the_plugin_out() {
        let spec = ProfileSpec {
            filters: Some(vec![]),
            weights: vec![("price".into(), 0.0), ("latency".into(), 3.0)],
            ..Default::default()
        };
        let p = profile(&spec).unwrap();
        let names: Vec<&str> = p.plugins.iter().map(|p| p.name()).collect();
        assert_eq!(names, ["latency"]);
        assert_eq!(p.weights, vec![("latency".to_string(), 3.0)]);
    }

    struct Custom;
    impl Plugin for Custom {
        fn name(&self) -> &'static str {
            "gold_only"
        }
        fn as_site_filter(&self) -> Option<&dyn crate::framework::SiteFilter> {
            Some(self)
        }
        fn as_site_score(&self) -> Option<&dyn crate::framework::SiteScore> {
            Some(self)
        }
    }
    impl crate::framework::SiteFilter for Custom {
        fn filter_site(
            &self,
            _: &CycleState,
            _: &Task,
            _: &crate::Cluster,
            _: crate::SiteIdx,
        ) -> crate::Verdict {
            crate::Verdict::Fits
        }
    }
    impl crate::framework::SiteScore for Custom {
        fn score_site(&self, _: &CycleState, _: &Task, _: &crate::Cluster, _: u32) -> f64 {
            1.0
        }
        fn better(&self) -> crate::Better {
            crate::Better::Higher
        }
    }

    #[test]
    fn extra_plugins_join_after_in_tree_ones_and_take_weights() {
        let extra: Vec<Arc<dyn Plugin>> = vec![Arc::new(Custom)];
        let spec = ProfileSpec {
            filters: Some(vec!["gold_only".into(), "site_health".into()]),
            weights: vec![("gold_only".into(), 2.0), ("price".into(), 1.0)],
            ..Default::default()
        };
        let p = profile_with(&spec, &extra).unwrap();
        let names: Vec<&str> = p.plugins.iter().map(|p| p.name()).collect();
        assert_eq!(names, ["site_health", "gold_only", "price"]);
        assert_eq!(p.weight("gold_only"), 2.0);
        // Unknown names list the extra ones too.
        let e = profile_with(
            &ProfileSpec {
                weights: vec![("x".into(), 1.0)],
                ..Default::default()
            },
            &extra,
        )
        .err()
        .unwrap();
        assert!(
            e.to_string().ends_with("bin_pack, spread, gold_only"),
            "{e}"
        );
        // An extra plugin may not reuse an in-tree name.
        struct Clash;
        impl Plugin for Clash {
            fn name(&self) -> &'static str {
                "price"
            }
        }
        let clash: Vec<Arc<dyn Plugin>> = vec![Arc::new(Clash)];
        assert_eq!(
            profile_with(&ProfileSpec::default(), &clash).err(),
            Some(ProfileError::DuplicatePlugin {
                name: "price".into()
            })
        );
    }
}
