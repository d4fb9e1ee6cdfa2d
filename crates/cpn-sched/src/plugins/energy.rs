//! Energy cost factor (SC-ENG): the electricity bill of running the task at the site, so
//! cheap power and efficient cooling (low PUE) win.
//!
//! Raw score, CNY: `units × watts_per_unit / 1000 × PUE × hours × electricity price`, with
//! the least power-hungry acceptable offer (preferring offers rated in the task's unit, per
//! accelerator or per core). `units` is GPU-equivalents for accelerator tasks and cores for
//! CPU tasks ([`crate::plugins::units`]); `hours` is `est_hours`, 1 when unset; an unset PUE
//! counts as 1. A site that knows no power draw (its machines fulfil no registered offer)
//! gets the mean cost of the sites that do: it neither wins nor loses.

use crate::cluster::{Cluster, Site, SiteIdx};
use crate::framework::{Better, CycleState, Plugin, SiteScore};
use crate::plugins::{MeanOfKnown, est_hours, fold_offers, or_mean, pue, units};
use crate::task::Task;

pub const NAME: &str = "energy";

#[derive(Debug, Clone, Copy, Default)]
pub struct Energy;

/// kWh the task would draw at `site` (facility overhead included), 0 when it offers nothing.
pub fn kwh(state: &CycleState, task: &Task, site: &Site) -> f64 {
    known_kwh(state, task, site).unwrap_or(0.0)
}

/// kWh the task would draw at `site`; `None` when the site knows no power draw. Shared
/// with the carbon factor.
pub(crate) fn known_kwh(state: &CycleState, task: &Task, site: &Site) -> Option<f64> {
    let watts = fold_offers(state, task, site, |o| o.watts_per_unit, f64::min)?;
    Some(units(task) * watts / 1000.0 * pue(site) * est_hours(task)).filter(|e| e.is_finite())
}

/// CNY of electricity for the task at `site`; `None` when the site knows no power draw.
fn cost(state: &CycleState, task: &Task, site: &Site) -> Option<f64> {
    known_kwh(state, task, site)
        .map(|e| e * site.spec.electricity_price)
        .filter(|c| c.is_finite())
}

impl Plugin for Energy {
    fn name(&self) -> &'static str {
        NAME
    }
    fn prepare(&self, _task: &Task, _cluster: &Cluster, state: &mut CycleState) {
        state.put(MeanOfKnown::<Energy>::default());
    }
    fn as_site_score(&self) -> Option<&dyn SiteScore> {
        Some(self)
    }
}

impl SiteScore for Energy {
    fn score_site(&self, state: &CycleState, task: &Task, cluster: &Cluster, site: SiteIdx) -> f64 {
        let known = cost(state, task, cluster.site(site));
        or_mean::<Energy>(state, cluster, known, |s| cost(state, task, s))
    }
    fn better(&self) -> Better {
        Better::Lower
    }
    fn unit(&self) -> &'static str {
        "CNY"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterBuilder;
    use crate::plugins::testkit::{cpu_node, cpu_task, gpu_node, gpu_task, site, state};

    #[test]
    fn cost_of_the_least_power_hungry_acceptable_offer() {
        let mut b = ClusterBuilder::new();
        let s = b.site(crate::SiteSpec {
            pue: 1.5,
            electricity_price: 0.8,
            ..site("s", "east")
        });
        let unset = b.site(crate::SiteSpec {
            pue: 0.0,
            electricity_price: 0.5,
            ..site("u", "east")
        });
        b.node(crate::NodeSpec {
            watts_per_unit: 400.0,
            ..gpu_node("a", s, "A100", 8)
        });
        b.node(crate::NodeSpec {
            watts_per_unit: 700.0,
            ..gpu_node("h", s, "H800", 8)
        });
        b.node(crate::NodeSpec {
            watts_per_unit: 10.0,
            ..cpu_node("c", s, 32)
        });
        b.node(crate::NodeSpec {
            watts_per_unit: 300.0,
            ..gpu_node("u0", unset, "A100", 8)
        });
        let c = b.build().unwrap();

        // 2 GPUs × 400 W = 0.8 kW; × PUE 1.5 = 1.2 kW; × 3 h = 3.6 kWh; × 0.8 CNY = 2.88 CNY.
        // The CPU offer (10 W) is not acceptable for a GPU task.
        let t = Task {
            est_hours: 3.0,
            ..gpu_task(2)
        };
        let st = state(&t, &c, &Energy);
        assert!((Energy.score_site(&st, &t, &c, s) - 2.88).abs() < 1e-12);
        assert!((kwh(&st, &t, c.site(s)) - 3.6).abs() < 1e-12);
        // Unset PUE counts as 1, unset hours as 1: 2 × 0.3 kW × 1 × 1 h × 0.5 = 0.3 CNY.
        let t1 = gpu_task(2);
        let st = state(&t1, &c, &Energy);
        assert!((Energy.score_site(&st, &t1, &c, unset) - 0.3).abs() < 1e-12);

        // Only H800 allowed: 1 GPU × 0.7 kW × 1.5 × 1 h × 0.8 = 0.84 CNY.
        let h = Task {
            models: vec!["H800".into()],
            ..gpu_task(1)
        };
        let st = state(&h, &c, &Energy);
        assert!((Energy.score_site(&st, &h, &c, s) - 0.84).abs() < 1e-12);

        // CPU task of 4 cores: the 10 W-per-core offer is the least hungry:
        // 4 × 0.01 kW × 1.5 × 1 h × 0.8 = 0.048 CNY.
        let cpu = cpu_task(4000);
        let st = state(&cpu, &c, &Energy);
        assert!((Energy.score_site(&st, &cpu, &c, s) - 0.048).abs() < 1e-12);
    }

    #[test]
    fn a_site_of_unknown_power_draw_gets_the_mean_cost() {
        let mut b = ClusterBuilder::new();
        let spec = |name| crate::SiteSpec {
            pue: 1.0,
            electricity_price: 1.0,
            ..site(name, "east")
        };
        let (a, z, unknown) = (b.site(spec("a")), b.site(spec("z")), b.site(spec("u")));
        for (name, s, w) in [("a0", a, 10.0), ("z0", z, 30.0), ("u0", unknown, f64::NAN)] {
            b.node(crate::NodeSpec {
                watts_per_unit: w,
                ..cpu_node(name, s, 8)
            });
        }
        let c = b.build().unwrap();
        // 1000 cores' worth so the numbers read: 1000 × 10 W = 10 kWh, 30 kWh; the mean 20.
        let t = cpu_task(1_000_000);
        let st = state(&t, &c, &Energy);
        let cost = |s| Energy.score_site(&st, &t, &c, s);
        assert!((cost(a) - 10.0).abs() < 1e-9);
        assert!((cost(z) - 30.0).abs() < 1e-9);
        assert!((cost(unknown) - 20.0).abs() < 1e-9, "{}", cost(unknown));
    }
}
