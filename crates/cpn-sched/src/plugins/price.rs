//! Price factor (SC-ENG): what the run would cost the tenant at the site.
//!
//! Raw score, CNY: the cheapest acceptable offer's price per unit-hour (preferring offers
//! priced in the task's unit, per accelerator or per core) × units × hours, with
//! `units` as in [`crate::plugins::units`] (GPU-equivalents or cores) and `hours` the task's
//! `est_hours`, 1 when unset. A site that knows no price (its machines fulfil no
//! registered offer) gets the mean of the sites that do: it neither wins nor loses.

use crate::cluster::{Cluster, Site, SiteIdx};
use crate::framework::{Better, CycleState, Plugin, SiteScore};
use crate::plugins::{MeanOfKnown, est_hours, fold_offers, or_mean, units};
use crate::task::Task;

pub const NAME: &str = "price";

#[derive(Debug, Clone, Copy, Default)]
pub struct Price;

impl Plugin for Price {
    fn name(&self) -> &'static str {
        NAME
    }
    fn prepare(&self, _task: &Task, _cluster: &Cluster, state: &mut CycleState) {
        state.put(MeanOfKnown::<Price>::default());
    }
    fn as_site_score(&self) -> Option<&dyn SiteScore> {
        Some(self)
    }
}

/// CNY for the task at `site`; `None` when the site knows no price.
fn cost(state: &CycleState, task: &Task, site: &Site) -> Option<f64> {
    let per_unit_hour = fold_offers(state, task, site, |o| o.price_per_unit_hour, f64::min)?;
    Some(per_unit_hour * units(task) * est_hours(task)).filter(|c| c.is_finite())
}

impl SiteScore for Price {
    fn score_site(&self, state: &CycleState, task: &Task, cluster: &Cluster, site: SiteIdx) -> f64 {
        let known = cost(state, task, cluster.site(site));
        or_mean::<Price>(state, cluster, known, |s| cost(state, task, s))
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
    use crate::task::Demand;

    #[test]
    fn unknown_prices_are_skipped() {
        let mut b = ClusterBuilder::new();
        let priced = b.site(site("priced", "east"));
        let unknown = b.site(site("unknown", "east"));
        b.node(crate::NodeSpec {
            price_per_unit_hour: 0.5,
            ..cpu_node("p", priced, 8)
        });
        // A live machine that fulfils no registered offer: its economics are unknown.
        let nan = |name, s| crate::NodeSpec {
            price_per_unit_hour: f64::NAN,
            tflops_per_unit: f64::NAN,
            watts_per_unit: f64::NAN,
            model: "unregistered".into(),
            ..cpu_node(name, s, 8)
        };
        b.node(nan("u1", priced));
        b.node(nan("u2", unknown));
        let dear = b.site(site("dear", "east"));
        b.node(crate::NodeSpec {
            price_per_unit_hour: 1.5,
            ..cpu_node("d", dear, 8)
        });
        let c = b.build().unwrap();
        let t = cpu_task(2000);
        let st = state(&t, &c, &Price);
        let cost = |s| Price.score_site(&st, &t, &c, s);
        assert_eq!(cost(priced), 1.0); // 2 cores × 0.5, not 0
        assert_eq!(cost(dear), 3.0);
        // Nothing known: the mean of the sites that know (1 and 3 CNY), so it neither wins
        // nor loses (0 would make it the cheapest), never NaN; the same without `prepare`.
        assert_eq!(cost(unknown), 2.0);
        assert_eq!(cost(unknown), 2.0);
        assert_eq!(
            Price.score_site(&CycleState::new(false), &t, &c, unknown),
            2.0
        );
    }

    #[test]
    fn cheapest_acceptable_offer_times_units_and_hours() {
        let mut b = ClusterBuilder::new();
        let s = b.site(site("s", "east"));
        b.node(crate::NodeSpec {
            price_per_unit_hour: 12.0,
            ..gpu_node("a", s, "A100", 8)
        });
        b.node(crate::NodeSpec {
            price_per_unit_hour: 9.0,
            ..gpu_node("a2", s, "A100", 8)
        });
        b.node(crate::NodeSpec {
            price_per_unit_hour: 30.0,
            ..gpu_node("h", s, "H800", 8)
        });
        b.node(crate::NodeSpec {
            price_per_unit_hour: 0.25,
            ..cpu_node("c", s, 64)
        });
        let c = b.build().unwrap();
        let cost = |t: &Task| Price.score_site(&state(t, &c, &Price), t, &c, s);

        // 2 GPUs × 9 CNY (cheapest A100 node) × 4 h = 72 CNY.
        assert_eq!(
            cost(&Task {
                est_hours: 4.0,
                ..gpu_task(2)
            }),
            72.0
        );
        // H800 only: 1 × 30 × 1 h (unset) = 30 CNY.
        assert_eq!(
            cost(&Task {
                models: vec!["H800".into()],
                ..gpu_task(1)
            }),
            30.0
        );
        // Half a GPU: 0.5 × 9 × 1 = 4.5 CNY.
        let half = Task {
            demand: Demand {
                gpus: 1,
                gpu_milli: 500,
                ..gpu_task(1).demand
            },
            ..gpu_task(1)
        };
        assert_eq!(cost(&half), 4.5);
        // 8 cores × 0.25 CNY × 2 h = 4 CNY.
        assert_eq!(
            cost(&Task {
                est_hours: 2.0,
                ..cpu_task(8000)
            }),
            4.0
        );
    }

    #[test]
    fn cpu_tasks_are_priced_per_core_not_per_accelerator() {
        // The GPU node quotes 2 CNY per GPU-hour, the CPU node 3 CNY per core-hour: a CPU
        // task takes any chip, but only the CPU offer is priced in cores.
        let mut b = ClusterBuilder::new();
        let s = b.site(site("s", "east"));
        let gpus_only = b.site(site("g", "east"));
        b.node(crate::NodeSpec {
            price_per_unit_hour: 2.0,
            ..gpu_node("a", s, "A100", 8)
        });
        b.node(crate::NodeSpec {
            price_per_unit_hour: 3.0,
            ..cpu_node("c", s, 64)
        });
        b.node(crate::NodeSpec {
            price_per_unit_hour: 2.0,
            ..gpu_node("a", gpus_only, "A100", 8)
        });
        let c = b.build().unwrap();
        let t = cpu_task(4000);
        let st = state(&t, &c, &Price);
        assert_eq!(Price.score_site(&st, &t, &c, s), 12.0); // 4 cores × 3 CNY × 1 h
        // With nothing priced in cores, the acceptable offers are used as they are.
        assert_eq!(Price.score_site(&st, &t, &c, gpus_only), 8.0);
    }
}
