//! Network latency factor (SC-ENG): sites close to where the task's data or users are score
//! higher.
//!
//! The origin is the first site (by index) in the task's `origin_region`. `prepare` runs one
//! shortest-path search from it over the topology and stores the latency to every site:
//! measured along links, else estimated from the sites' locations, else [`UNKNOWN_MS`]. Sites
//! in the origin region count as local (0 ms). A task without an origin, or whose region has
//! no site, scores 0 everywhere: the factor is neutral.

use crate::cluster::{Cluster, SiteIdx};
use crate::framework::{Better, CycleState, Plugin, SiteScore};
use crate::task::Task;

pub const NAME: &str = "latency";

/// Latency charged to a site with no route from the origin and no location to estimate by.
pub const UNKNOWN_MS: f64 = 1000.0;

#[derive(Debug, Clone, Copy, Default)]
pub struct NetworkLatency;

/// Milliseconds from the task's origin to each site, by site index.
#[derive(Debug, Clone, PartialEq)]
struct FromOrigin(Vec<f64>);

fn from_origin(task: &Task, cluster: &Cluster) -> Option<FromOrigin> {
    let region = task.origin_region.as_deref()?;
    let origin = cluster.sites.iter().find(|s| s.spec.region == region)?;
    let lat = origin
        .vertex
        .map(|v| cluster.latencies_from(v))
        .unwrap_or_default();
    Some(FromOrigin(
        cluster
            .sites
            .iter()
            .map(|s| {
                if s.spec.region == region {
                    return 0.0;
                }
                s.vertex
                    .and_then(|v| lat.get(v.index()))
                    .and_then(|l| l.ms())
                    .filter(|ms| ms.is_finite())
                    .unwrap_or(UNKNOWN_MS)
            })
            .collect(),
    ))
}

impl Plugin for NetworkLatency {
    fn name(&self) -> &'static str {
        NAME
    }
    fn prepare(&self, task: &Task, cluster: &Cluster, state: &mut CycleState) {
        if let Some(l) = from_origin(task, cluster) {
            state.put(l);
        }
    }
    fn as_site_score(&self) -> Option<&dyn SiteScore> {
        Some(self)
    }
}

impl SiteScore for NetworkLatency {
    fn score_site(
        &self,
        state: &CycleState,
        _task: &Task,
        _cluster: &Cluster,
        site: SiteIdx,
    ) -> f64 {
        // Absent when the task has no origin (or the plugin was not prepared): neutral.
        state
            .get::<FromOrigin>()
            .and_then(|l| l.0.get(site as usize).copied())
            .unwrap_or(0.0)
    }
    fn better(&self) -> Better {
        Better::Lower
    }
    fn unit(&self) -> &'static str {
        "ms"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterBuilder;
    use crate::plugins::testkit::{gpu_task, site, state};
    use cpn_model::GeoPoint;
    use cpn_topology::LinkAttrs;

    fn link(ms: f64) -> LinkAttrs {
        LinkAttrs {
            latency_ms: ms,
            bandwidth_gbps: 100.0,
            jitter_ms: 0.0,
            loss_pct: 0.0,
            bidirectional: true,
        }
    }

    #[test]
    fn latency_from_the_origin_region() {
        let mut b = ClusterBuilder::new();
        let e1 = b.site(site("e1", "east"));
        let e2 = b.site(site("e2", "east"));
        let w = b.site(site("w", "west"));
        let n = b.site(site("n", "north"));
        let far = b.site(crate::SiteSpec {
            location: Some(GeoPoint::new(0.0, 0.0)),
            ..site("far", "south")
        });
        let lost = b.site(site("lost", "nowhere"));
        b.link(e1, w, link(20.0));
        b.link(w, n, link(15.0));
        b.link(e2, n, link(5.0));
        let c = b.build().unwrap();

        let t = Task {
            origin_region: Some("east".into()),
            ..gpu_task(1)
        };
        let st = state(&t, &c, &NetworkLatency);
        let ms = |s| NetworkLatency.score_site(&st, &t, &c, s);
        assert_eq!(ms(e1), 0.0); // the origin itself
        assert_eq!(ms(e2), 0.0); // same region: local, though 40 ms away by links
        assert_eq!(ms(w), 20.0);
        assert_eq!(ms(n), 35.0); // e1 → w → n
        // `far` has a location but the origin has none: no estimate.
        assert_eq!(ms(far), UNKNOWN_MS);
        assert_eq!(ms(lost), UNKNOWN_MS);

        // From the west: e1 20, e2 via n 15 + 5 = 20, n 15.
        let t = Task {
            origin_region: Some("west".into()),
            ..gpu_task(1)
        };
        let st = state(&t, &c, &NetworkLatency);
        let ms = |s| NetworkLatency.score_site(&st, &t, &c, s);
        assert_eq!([ms(e1), ms(e2), ms(w), ms(n)], [20.0, 20.0, 0.0, 15.0]);

        // No origin, or an origin region without sites: neutral.
        for origin in [None, Some("mars".to_string())] {
            let t = Task {
                origin_region: origin,
                ..gpu_task(1)
            };
            let st = state(&t, &c, &NetworkLatency);
            for s in [e1, w, n, far, lost] {
                assert_eq!(NetworkLatency.score_site(&st, &t, &c, s), 0.0);
            }
        }
    }

    #[test]
    fn located_sites_without_a_route_get_an_estimate() {
        let mut b = ClusterBuilder::new();
        let a = b.site(crate::SiteSpec {
            location: Some(GeoPoint::new(0.0, 0.0)),
            ..site("a", "east")
        });
        let z = b.site(crate::SiteSpec {
            location: Some(GeoPoint::new(0.0, 0.0)),
            ..site("z", "west")
        });
        let c = b.build().unwrap();
        let t = Task {
            origin_region: Some("east".into()),
            ..gpu_task(1)
        };
        let st = state(&t, &c, &NetworkLatency);
        // Same point: 0 km, so only the 2 ms of switching at the ends.
        assert_eq!(NetworkLatency.score_site(&st, &t, &c, a), 0.0);
        assert_eq!(NetworkLatency.score_site(&st, &t, &c, z), 2.0);
    }
}
