//! Location factor (SC-ENG): soft region preferences. Unlike `residency`, a disliked region
//! stays possible; it only scores lower.
//!
//! Raw score, points: +100 when the site's region is among `affinity_regions`, −100 when it
//! is among `anti_affinity_regions` (both: 0), else 0.

use crate::cluster::{Cluster, SiteIdx};
use crate::framework::{Better, CycleState, Plugin, SiteScore};
use crate::task::Task;

pub const NAME: &str = "location_affinity";

#[derive(Debug, Clone, Copy, Default)]
pub struct LocationAffinity;

impl Plugin for LocationAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_site_score(&self) -> Option<&dyn SiteScore> {
        Some(self)
    }
}

impl SiteScore for LocationAffinity {
    fn score_site(
        &self,
        _state: &CycleState,
        task: &Task,
        cluster: &Cluster,
        site: SiteIdx,
    ) -> f64 {
        let region = &cluster.site(site).spec.region;
        let mut points = 0.0;
        if task.affinity_regions.contains(region) {
            points += 100.0;
        }
        if task.anti_affinity_regions.contains(region) {
            points -= 100.0;
        }
        points
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
    use crate::plugins::testkit::{gpu_task, site, state};

    #[test]
    fn liked_disliked_and_indifferent_regions() {
        let mut b = ClusterBuilder::new();
        let e = b.site(site("e", "east"));
        let w = b.site(site("w", "west"));
        let n = b.site(site("n", "north"));
        let s = b.site(site("s", "south"));
        let c = b.build().unwrap();
        let t = Task {
            affinity_regions: vec!["east".into(), "south".into()],
            anti_affinity_regions: vec!["west".into(), "south".into()],
            ..gpu_task(1)
        };
        let st = state(&t, &c, &LocationAffinity);
        let p = |x| LocationAffinity.score_site(&st, &t, &c, x);
        assert_eq!([p(e), p(w), p(n), p(s)], [100.0, -100.0, 0.0, 0.0]);
    }
}
