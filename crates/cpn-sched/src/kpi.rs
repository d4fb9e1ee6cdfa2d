//! What a placement costs: money, power, carbon and latency to the task's origin. The one
//! place this accounting lives; dry-runs, plans, the twins and the live binder's reports all
//! call it, so they cannot disagree on what a unit is or how PUE counts.
//!
//! A task's *units* are what offers are priced in: accelerators for GPU demand (a shared
//! fraction counts as that fraction), cores for CPU demand (see [`crate::plugins::units`]).

use crate::cluster::{Cluster, SiteIdx};
use crate::cycle::Placement;
use crate::task::Task;
use cpn_topology::SiteIndex;

/// The hourly figures of one placed task (per replica).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlacementCost {
    /// Units the task holds: GPUs (or their fraction) for GPU demand, else cores.
    pub units: f64,
    /// The node's unit price × units, CNY per hour.
    pub cost_per_hour: f64,
    /// Units × the node's watts per unit × the site's PUE, kW at the meter.
    pub power_kw: f64,
    /// Power × the site's carbon intensity, kg CO₂ per hour (0 where the site states none).
    pub carbon_kg_per_hour: f64,
    /// Latency from the task's origin region to the site: 0 inside the region, `None` when
    /// the task has no origin or no path and no coordinates say how far it is.
    pub latency_ms: Option<f64>,
}

impl PlacementCost {
    /// The figures of `task` placed as `placement` on `cluster`.
    pub fn of(cluster: &Cluster, task: &Task, placement: &Placement) -> PlacementCost {
        let node = cluster.node(placement.node);
        let site = cluster.site(placement.site);
        let units = crate::plugins::units(task);
        let power_kw = units * node.spec.watts_per_unit * site.spec.pue / 1000.0;
        PlacementCost {
            units,
            cost_per_hour: node.spec.price_per_unit_hour * units,
            power_kw,
            carbon_kg_per_hour: power_kw * site.spec.carbon_intensity.unwrap_or(0.0) / 1000.0,
            latency_ms: latency_ms(cluster, task.origin_region.as_deref(), placement.site),
        }
    }
}

/// The topology vertex a region's latencies are measured from: its first site's.
pub fn origin_vertex(cluster: &Cluster, region: &str) -> Option<SiteIndex> {
    cluster
        .sites
        .iter()
        .find(|s| s.spec.region == region)
        .and_then(|s| s.vertex)
}

/// Latency from `origin` (a region) to `site`: 0 inside the region, else the shortest path
/// from the region's first site (or the estimate from coordinates).
pub fn latency_ms(cluster: &Cluster, origin: Option<&str>, site: SiteIdx) -> Option<f64> {
    let origin = origin?;
    let site = cluster.site(site);
    if site.spec.region == origin {
        return Some(0.0);
    }
    let from = origin_vertex(cluster, origin)?;
    site.vertex
        .and_then(|v| cluster.latencies_from(from)[v.index()].ms())
}

/// Running sums of the KPIs of a batch of placements.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KpiTotals {
    pub placed: u32,
    pub unplaced: u32,
    /// Σ cost per hour × hours run, CNY.
    pub cost_cny: f64,
    /// Σ power × hours run, kWh.
    pub energy_kwh: f64,
    /// Σ carbon per hour × hours run, kg.
    pub carbon_kg: f64,
    latency_sum_ms: f64,
    latency_n: u32,
}

impl KpiTotals {
    /// Counts one placement that ran (or is planned to run) for `hours`.
    pub fn add(&mut self, cost: &PlacementCost, hours: f64) {
        self.placed += 1;
        self.cost_cny += cost.cost_per_hour * hours;
        self.energy_kwh += cost.power_kw * hours;
        self.carbon_kg += cost.carbon_kg_per_hour * hours;
        if let Some(ms) = cost.latency_ms {
            self.latency_sum_ms += ms;
            self.latency_n += 1;
        }
    }

    /// Counts one task that found no place.
    pub fn add_unplaced(&mut self) {
        self.unplaced += 1;
    }

    /// Mean latency to origin over the placements that had one.
    pub fn mean_latency_ms(&self) -> Option<f64> {
        (self.latency_n > 0).then(|| self.latency_sum_ms / self.latency_n as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{ClusterBuilder, NodeSpec, SiteSpec};
    use crate::task::{Chip, Demand};
    use cpn_model::GeoPoint;

    fn cluster() -> Cluster {
        let mut b = ClusterBuilder::new();
        for (name, region, lon, pue, carbon) in [
            ("east", "east", 121.0, 1.5, Some(600.0)),
            ("west", "west", 105.0, 1.2, None),
        ] {
            let s = b.site(SiteSpec {
                name: name.into(),
                region: region.into(),
                location: Some(GeoPoint::new(31.0, lon)),
                pue,
                carbon_intensity: carbon,
                healthy: true,
                ..Default::default()
            });
            b.node(NodeSpec {
                name: format!("{name}-1"),
                site: s,
                cpu_milli: 64_000,
                memory_mib: 256 << 10,
                gpus: 8,
                chip: Some(Chip::Gpu),
                model: "A100".into(),
                tflops_per_unit: 312.0,
                price_per_unit_hour: 10.0,
                watts_per_unit: 400.0,
                healthy: true,
                ..Default::default()
            });
        }
        b.build().unwrap()
    }

    fn task(gpus: u32, gpu_milli: u32, origin: &str) -> Task {
        Task {
            id: "t".into(),
            tenant: "t".into(),
            origin_region: Some(origin.into()),
            demand: Demand {
                cpu_milli: 4000,
                memory_mib: 1024,
                gpus,
                gpu_milli,
                storage_gib: 0,
            },
            ..Default::default()
        }
    }

    fn placed_on(site: SiteIdx) -> Placement {
        Placement {
            site,
            node: site,
            gpus: Default::default(),
            score: 0.0,
        }
    }

    #[test]
    fn gpu_units_price_power_with_pue_and_carbon() {
        let c = cluster();
        let cost = PlacementCost::of(&c, &task(2, 1000, "east"), &placed_on(0));
        assert_eq!(cost.units, 2.0);
        assert_eq!(cost.cost_per_hour, 20.0);
        assert!((cost.power_kw - 2.0 * 400.0 * 1.5 / 1000.0).abs() < 1e-9);
        assert!((cost.carbon_kg_per_hour - 1.2 * 600.0 / 1000.0).abs() < 1e-9);
        assert_eq!(cost.latency_ms, Some(0.0), "inside its origin region");
    }

    #[test]
    fn a_shared_gpu_counts_its_fraction_and_a_cpu_task_its_cores() {
        let c = cluster();
        assert_eq!(
            PlacementCost::of(&c, &task(1, 250, "east"), &placed_on(0)).units,
            0.25
        );
        assert_eq!(
            PlacementCost::of(&c, &task(0, 0, "east"), &placed_on(0)).units,
            4.0
        );
    }

    #[test]
    fn latency_from_another_region_and_totals() {
        let c = cluster();
        let far = PlacementCost::of(&c, &task(1, 1000, "east"), &placed_on(1));
        let ms = far.latency_ms.expect("estimated from coordinates");
        assert!(ms > 0.0);
        assert_eq!(far.carbon_kg_per_hour, 0.0, "the site states no intensity");
        let mut totals = KpiTotals::default();
        totals.add(&far, 2.0);
        totals.add(
            &PlacementCost::of(&c, &task(1, 1000, "east"), &placed_on(0)),
            1.0,
        );
        totals.add_unplaced();
        assert_eq!((totals.placed, totals.unplaced), (2, 1));
        assert!((totals.cost_cny - 30.0).abs() < 1e-9);
        assert_eq!(totals.mean_latency_ms(), Some(ms / 2.0));
    }
}
