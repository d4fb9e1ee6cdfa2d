//! Performance factor (SC-ENG): sites with faster acceptable chips score higher.
//!
//! Raw score: the best peak TFLOPS per unit among the site's acceptable offers (per
//! accelerator, or per CPU node for CPU offers), 0 when the site offers nothing.

use crate::cluster::{Cluster, SiteIdx};
use crate::framework::{Better, CycleState, Plugin, SiteScore};
use crate::plugins::fold_offers;
use crate::task::Task;

pub const NAME: &str = "performance";

#[derive(Debug, Clone, Copy, Default)]
pub struct Performance;

impl Plugin for Performance {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_site_score(&self) -> Option<&dyn SiteScore> {
        Some(self)
    }
}

impl SiteScore for Performance {
    fn score_site(&self, state: &CycleState, task: &Task, cluster: &Cluster, site: SiteIdx) -> f64 {
        fold_offers(
            state,
            task,
            cluster.site(site),
            |o| o.tflops_per_unit,
            f64::max,
        )
        .unwrap_or(0.0)
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
}
