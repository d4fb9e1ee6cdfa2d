//! Chip type preference (SC-ENG "type" factor): sites offering the task's more preferred
//! chip models score higher. A soft rule; `chip_model` holds the hard one.
//!
//! Raw score: `100 · (1 − rank / len)` for the best-ranked preferred model among the site's
//! acceptable offers, where `len` counts the preferred models the federation has (unknown
//! names are dropped when the task is resolved); 0 when the site offers none of them. A task
//! without preferences scores 0 everywhere, so the factor does not separate sites.

use crate::cluster::{Cluster, SiteIdx};
use crate::framework::{Better, CycleState, Plugin, SiteScore};
use crate::plugins::resolved;
use crate::task::Task;

pub const NAME: &str = "model_preference";

#[derive(Debug, Clone, Copy, Default)]
pub struct ModelPreference;

impl Plugin for ModelPreference {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_site_score(&self) -> Option<&dyn SiteScore> {
        Some(self)
    }
}

impl SiteScore for ModelPreference {
    fn score_site(&self, state: &CycleState, task: &Task, cluster: &Cluster, site: SiteIdx) -> f64 {
        let r = resolved(state);
        let len = r.preferred.len();
        if len == 0 {
            return 0.0;
        }
        r.offers(task, cluster.site(site))
            .filter_map(|o| r.preferred.iter().position(|&m| m == o.model))
            .min()
            .map_or(0.0, |rank| 100.0 * (1.0 - rank as f64 / len as f64))
    }
    fn better(&self) -> Better {
        Better::Higher
    }
    fn unit(&self) -> &'static str {
        "points"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterBuilder;
    use crate::plugins::testkit::{gpu_node, gpu_task, site, state};

    #[test]
    fn rank_of_the_best_offered_preferred_model() {
        let mut b = ClusterBuilder::new();
        let h = b.site(site("h", "east"));
        let a = b.site(site("a", "east"));
        let v = b.site(site("v", "east"));
        let mixed = b.site(site("m", "east"));
        b.node(gpu_node("h0", h, "H800", 8));
        b.node(gpu_node("a0", a, "A100", 8));
        b.node(gpu_node("v0", v, "V100", 8));
        b.node(gpu_node("m0", mixed, "V100", 8));
        b.node(gpu_node("m1", mixed, "A100", 8));
        b.node(gpu_node("t0", v, "T4", 8));
        let c = b.build().unwrap();
        // "B200" is not in the federation and is dropped: the list is [H800, A100, V100].
        let t = Task {
            preferred_models: vec!["B200".into(), "H800".into(), "A100".into(), "V100".into()],
            ..gpu_task(1)
        };
        let st = state(&t, &c, &ModelPreference);
        let score = |s| ModelPreference.score_site(&st, &t, &c, s);
        assert_eq!(score(h), 100.0); // rank 0: 100 · (1 − 0/3)
        assert!((score(a) - 200.0 / 3.0).abs() < 1e-12); // rank 1: 100 · 2/3
        assert!((score(v) - 100.0 / 3.0).abs() < 1e-12); // rank 2: 100 · 1/3
        assert!((score(mixed) - 200.0 / 3.0).abs() < 1e-12); // best of V100 and A100

        // Only acceptable offers count: a task restricted to V100 gets nothing from A100.
        let only_v = Task {
            models: vec!["V100".into()],
            preferred_models: vec!["A100".into()],
            ..gpu_task(1)
        };
        let st = state(&only_v, &c, &ModelPreference);
        assert_eq!(ModelPreference.score_site(&st, &only_v, &c, mixed), 0.0);

        // No preference: every site scores the same.
        let none = gpu_task(1);
        let st = state(&none, &c, &ModelPreference);
        for s in [h, a, v, mixed] {
            assert_eq!(ModelPreference.score_site(&st, &none, &c, s), 0.0);
        }
    }
}
