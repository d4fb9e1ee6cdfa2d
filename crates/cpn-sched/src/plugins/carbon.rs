//! Carbon factor: grams of CO2 the task's run would emit at the site, so clean grids win.
//!
//! Raw score, gCO2: the energy factor's kWh ([`crate::plugins::energy::kwh`]) × the site's
//! carbon intensity (gCO2/kWh). A site without intensity data is given the mean intensity of
//! the sites that have it (computed once per cycle in `prepare`), so missing data neither
//! wins nor loses; when no site has data the factor is 0 everywhere. Likewise a site that
//! knows no power draw (its machines fulfil no registered offer) gets the mean emissions of
//! the sites that do.

use crate::cluster::Site;
use crate::cluster::{Cluster, SiteIdx};
use crate::framework::{Better, CycleState, Plugin, SiteScore};
use crate::plugins::energy::known_kwh;
use crate::plugins::{MeanOfKnown, or_mean};
use crate::task::Task;

pub const NAME: &str = "carbon";

#[derive(Debug, Clone, Copy, Default)]
pub struct Carbon;

/// Mean carbon intensity over the sites that report one (0 when none does).
#[derive(Debug, Clone, Copy, PartialEq)]
struct MeanIntensity(f64);

fn known(intensity: Option<f64>) -> Option<f64> {
    intensity.filter(|x| x.is_finite() && *x >= 0.0)
}

fn mean_intensity(cluster: &Cluster) -> MeanIntensity {
    let (sum, n) = cluster
        .sites
        .iter()
        .filter_map(|s| known(s.spec.carbon_intensity))
        .fold((0.0, 0u32), |(sum, n), x| (sum + x, n + 1));
    MeanIntensity(if n == 0 { 0.0 } else { sum / n as f64 })
}

impl Plugin for Carbon {
    fn name(&self) -> &'static str {
        NAME
    }
    fn prepare(&self, _task: &Task, cluster: &Cluster, state: &mut CycleState) {
        state.put(mean_intensity(cluster));
        state.put(MeanOfKnown::<Carbon>::default());
    }
    fn as_site_score(&self) -> Option<&dyn SiteScore> {
        Some(self)
    }
}

impl SiteScore for Carbon {
    fn score_site(&self, state: &CycleState, task: &Task, cluster: &Cluster, site: SiteIdx) -> f64 {
        let grams = |s: &Site| {
            let intensity = known(s.spec.carbon_intensity).unwrap_or_else(|| {
                state
                    .get::<MeanIntensity>()
                    .copied()
                    .unwrap_or_else(|| mean_intensity(cluster))
                    .0
            });
            known_kwh(state, task, s)
                .map(|e| e * intensity)
                .filter(|g| g.is_finite())
        };
        or_mean::<Carbon>(state, cluster, grams(cluster.site(site)), grams)
    }
    fn better(&self) -> Better {
        Better::Lower
    }
    fn unit(&self) -> &'static str {
        "gCO2"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterBuilder;
    use crate::plugins::testkit::{gpu_node, gpu_task, site, state};

    #[test]
    fn kwh_times_intensity_and_the_mean_for_missing_data() {
        let mut b = ClusterBuilder::new();
        let coal = b.site(crate::SiteSpec {
            carbon_intensity: Some(800.0),
            pue: 1.25,
            ..site("coal", "north")
        });
        let hydro = b.site(crate::SiteSpec {
            carbon_intensity: Some(200.0),
            ..site("hydro", "west")
        });
        let unknown = b.site(site("unknown", "east"));
        for (name, s) in [("c0", coal), ("h0", hydro), ("u0", unknown)] {
            b.node(crate::NodeSpec {
                watts_per_unit: 400.0,
                ..gpu_node(name, s, "A100", 8)
            });
        }
        let c = b.build().unwrap();
        // 2 GPUs × 0.4 kW × 2 h = 1.6 kWh before PUE.
        let t = Task {
            est_hours: 2.0,
            ..gpu_task(2)
        };
        let st = state(&t, &c, &Carbon);
        let g = |s| Carbon.score_site(&st, &t, &c, s);
        assert!((g(coal) - 1600.0).abs() < 1e-9); // 1.6 × 1.25 × 800
        assert!((g(hydro) - 320.0).abs() < 1e-9); // 1.6 × 1 × 200
        assert!((g(unknown) - 800.0).abs() < 1e-9); // 1.6 × 1 × mean(800, 200) = 500

        // No data anywhere: 0 everywhere.
        let mut b = ClusterBuilder::new();
        let s = b.site(site("s", "east"));
        b.node(gpu_node("n", s, "A100", 1));
        let c = b.build().unwrap();
        let st = state(&t, &c, &Carbon);
        assert_eq!(Carbon.score_site(&st, &t, &c, s), 0.0);
    }
}
