//! Performance factor (SC-ENG): sites with faster acceptable chips score higher.
//!
//! Raw score: the best peak TFLOPS per unit among the site's acceptable offers (per
//! accelerator, or per CPU node for CPU offers), 0 when the site offers nothing. A site
//! that knows no TFLOPS (its machines fulfil no registered offer) gets the mean of the
//! sites that do: it neither wins nor loses.

use crate::cluster::{Cluster, Site, SiteIdx};
use crate::framework::{Better, CycleState, Plugin, SiteScore};
use crate::plugins::{MeanOfKnown, fold_offers, or_mean};
use crate::task::Task;

pub const NAME: &str = "performance";

#[derive(Debug, Clone, Copy, Default)]
pub struct Performance;

impl Plugin for Performance {
    fn name(&self) -> &'static str {
        NAME
    }
    fn prepare(&self, _task: &Task, _cluster: &Cluster, state: &mut CycleState) {
        state.put(MeanOfKnown::<Performance>::default());
    }
    fn as_site_score(&self) -> Option<&dyn SiteScore> {
        Some(self)
    }
}

impl SiteScore for Performance {
    fn score_site(&self, state: &CycleState, task: &Task, cluster: &Cluster, site: SiteIdx) -> f64 {
        let tflops = |s: &Site| fold_offers(state, task, s, |o| o.tflops_per_unit, f64::max);
        match cluster.site(site) {
            s if s.offers.is_empty() => 0.0,
            s => or_mean::<Performance>(state, cluster, tflops(s), tflops),
        }
    }
    fn better(&self) -> Better {
        Better::Higher
    }
    fn unit(&self) -> &'static str {
        "TFLOPS"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterBuilder;
    use crate::plugins::testkit::{gpu_node, gpu_task, site, state};

    #[test]
    fn best_acceptable_tflops() {
        let mut b = ClusterBuilder::new();
        let s = b.site(site("s", "east"));
        let empty = b.site(site("e", "east"));
        b.node(crate::NodeSpec {
            tflops_per_unit: 312.0,
            ..gpu_node("a", s, "A100", 8)
        });
        b.node(crate::NodeSpec {
            tflops_per_unit: 989.0,
            ..gpu_node("h", s, "H800", 8)
        });
        let c = b.build().unwrap();

        let any = gpu_task(1);
        let st = state(&any, &c, &Performance);
        assert_eq!(Performance.score_site(&st, &any, &c, s), 989.0);
        assert_eq!(Performance.score_site(&st, &any, &c, empty), 0.0);

        let a100 = Task {
            models: vec!["A100".into()],
            ..gpu_task(1)
        };
        let st = state(&a100, &c, &Performance);
        assert_eq!(Performance.score_site(&st, &a100, &c, s), 312.0);
    }

    #[test]
    fn a_site_of_unknown_tflops_gets_the_mean() {
        let mut b = ClusterBuilder::new();
        let (a, z, unknown) = (
            b.site(site("a", "east")),
            b.site(site("z", "east")),
            b.site(site("u", "east")),
        );
        for (name, s, tflops) in [
            ("a0", a, 312.0),
            ("z0", z, 988.0),
            ("u0", unknown, f64::NAN),
        ] {
            b.node(crate::NodeSpec {
                tflops_per_unit: tflops,
                ..gpu_node(name, s, "A100", 8)
            });
        }
        let c = b.build().unwrap();
        let t = gpu_task(1);
        let st = state(&t, &c, &Performance);
        assert_eq!(Performance.score_site(&st, &t, &c, unknown), 650.0);
    }
}
