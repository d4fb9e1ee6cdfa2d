//! Data residency filter: a task whose data must stay in (or out of) some regions is never
//! placed at a site elsewhere. The rule holds as long as the task does: rejections are
//! permanent.

use crate::cluster::{Cluster, SiteIdx};
use crate::framework::{CycleState, Plugin, SiteFilter, Verdict};
use crate::task::Task;

pub const NAME: &str = "residency";

/// The task lists allowed regions (`regions_in`) and the site's region is not one.
pub const REGION_NOT_ALLOWED: &str = "region_not_allowed";
/// The site's region is one the task excludes (`regions_not_in`).
pub const REGION_EXCLUDED: &str = "region_excluded";

#[derive(Debug, Clone, Copy, Default)]
pub struct Residency;

impl Plugin for Residency {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_site_filter(&self) -> Option<&dyn SiteFilter> {
        Some(self)
    }
}

impl SiteFilter for Residency {
    fn filter_site(
        &self,
        state: &CycleState,
        task: &Task,
        cluster: &Cluster,
        site: SiteIdx,
    ) -> Verdict {
        let region = &cluster.site(site).spec.region;
        if !task.regions_in.is_empty() && !task.regions_in.contains(region) {
            return Verdict::RejectsForever(state.reason(NAME, REGION_NOT_ALLOWED, || {
                format!(
                    "region {region:?} is not among the allowed regions {:?}",
                    task.regions_in
                )
            }));
        }
        if task.regions_not_in.contains(region) {
            return Verdict::RejectsForever(state.reason(NAME, REGION_EXCLUDED, || {
                format!("region {region:?} is excluded by the task")
            }));
        }
        Verdict::Fits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterBuilder;
    use crate::plugins::testkit::{cpu_task, site, state};

    #[test]
    fn allowed_and_excluded_regions() {
        let mut b = ClusterBuilder::new();
        let east = b.site(site("e", "east"));
        let west = b.site(site("w", "west"));
        let north = b.site(site("n", "north"));
        let c = b.build().unwrap();
        let code = |t: &Task, s| {
            let st = state(t, &c, &Residency);
            match Residency.filter_site(&st, t, &c, s) {
                Verdict::Fits => None,
                Verdict::RejectsForever(r) => Some(r.code),
                Verdict::Rejects(_) => panic!("residency misses are permanent"),
            }
        };

        let anywhere = cpu_task(1000);
        assert_eq!(code(&anywhere, east), None);

        let east_or_west = Task {
            regions_in: vec!["east".into(), "west".into()],
            ..cpu_task(1000)
        };
        assert_eq!(code(&east_or_west, east), None);
        assert_eq!(code(&east_or_west, west), None);
        assert_eq!(code(&east_or_west, north), Some(REGION_NOT_ALLOWED));

        let not_west = Task {
            regions_not_in: vec!["west".into()],
            ..cpu_task(1000)
        };
        assert_eq!(code(&not_west, east), None);
        assert_eq!(code(&not_west, west), Some(REGION_EXCLUDED));

        // Both lists: exclusion still applies inside the allowed set.
        let both = Task {
            regions_in: vec!["east".into(), "west".into()],
            regions_not_in: vec!["west".into()],
            ..cpu_task(1000)
        };
        assert_eq!(code(&both, west), Some(REGION_EXCLUDED));
        assert_eq!(code(&both, east), None);
    }
}
