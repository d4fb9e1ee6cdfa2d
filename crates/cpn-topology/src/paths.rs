//! Lowest-latency routes over a `Topology`, which the scheduler turns into network scores.

use crate::graph::{SiteIndex, Topology};
use cpn_model::geo::estimated_rtt_ms;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// The best route found to one site.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reach {
    /// Sum of link latencies along the route; 0 for the source.
    pub latency_ms: f64,
    /// Smallest link bandwidth along the route. Infinite for the source, because no link
    /// limits it, and that keeps `min` over routes correct without a special case.
    pub bottleneck_gbps: f64,
    /// Links on the route; 0 for the source.
    pub hops: u32,
}

/// Network latency between two sites, saying where the number came from so a scorer can
/// trust a measured path more than a guess.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Latency {
    /// Sum of the link latencies along the best route.
    Measured(f64),
    /// No route, but both sites have locations: `geo::estimated_rtt_ms` of their distance.
    Estimated(f64),
    /// No route and at least one site without a location.
    Unknown,
}

impl Latency {
    pub fn ms(self) -> Option<f64> {
        match self {
            Latency::Measured(ms) | Latency::Estimated(ms) => Some(ms),
            Latency::Unknown => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Label {
    reach: Reach,
    /// Previous site on the route; `None` only for the source.
    prev: Option<SiteIndex>,
}

/// Orders routes best first: lower latency; then, among equal latencies, the wider
/// bottleneck, because the scheduler would rather ship data over it; then fewer hops;
/// then the lower predecessor index, so the result does not depend on link order.
fn cmp_labels(a: &Label, b: &Label) -> Ordering {
    cmp_reach(&a.reach, &b.reach).then_with(|| a.prev.cmp(&b.prev))
}

fn cmp_reach(a: &Reach, b: &Reach) -> Ordering {
    a.latency_ms
        .total_cmp(&b.latency_ms)
        .then_with(|| b.bottleneck_gbps.total_cmp(&a.bottleneck_gbps))
        .then_with(|| a.hops.cmp(&b.hops))
}

/// A heap entry. Ordered so the max-heap `BinaryHeap` pops the best route first, and
/// among equal routes the lowest site index.
#[derive(Debug, Clone, Copy)]
struct Queued {
    reach: Reach,
    site: SiteIndex,
}

impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_reach(&other.reach, &self.reach).then_with(|| other.site.cmp(&self.site))
    }
}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Queued {}

/// Best routes from one source to every site of a topology.
#[derive(Debug, Clone, PartialEq)]
pub struct Paths {
    from: SiteIndex,
    labels: Vec<Option<Label>>,
}

impl Paths {
    pub fn from(&self) -> SiteIndex {
        self.from
    }

    /// The best route to `to`; `None` if unreachable or not a site of the topology.
    pub fn get(&self, to: SiteIndex) -> Option<Reach> {
        self.label(to).map(|l| l.reach)
    }

    pub fn latency_ms(&self, to: SiteIndex) -> Option<f64> {
        self.get(to).map(|r| r.latency_ms)
    }

    pub fn bottleneck_gbps(&self, to: SiteIndex) -> Option<f64> {
        self.get(to).map(|r| r.bottleneck_gbps)
    }

    pub fn hops(&self, to: SiteIndex) -> Option<u32> {
        self.get(to).map(|r| r.hops)
    }

    pub fn is_reachable(&self, to: SiteIndex) -> bool {
        self.label(to).is_some()
    }

    /// Latency to every site, indexed by site; one row of [`Topology::latency_matrix`].
    pub fn latencies(&self) -> Vec<Option<f64>> {
        self.labels
            .iter()
            .map(|l| l.map(|l| l.reach.latency_ms))
            .collect()
    }

    /// Sites on the best route, source first and `to` last; empty if `to` is unreachable.
    pub fn path_to(&self, to: SiteIndex) -> Vec<SiteIndex> {
        let mut path = Vec::new();
        let mut at = self.label(to).map(|_| to);
        while let Some(site) = at {
            path.push(site);
            at = self.label(site).and_then(|l| l.prev);
        }
        path.reverse();
        path
    }

    fn label(&self, i: SiteIndex) -> Option<&Label> {
        self.labels.get(i.index()).and_then(Option::as_ref)
    }
}

impl Topology {
    /// Dijkstra from `from` over link latency. Among routes of equal latency it keeps the
    /// widest, then the shortest in hops, then the one through the lowest site index, so
    /// the result depends only on the graph and not on the order links were added.
    ///
    /// # Panics
    /// If `from` is not a site of this topology.
    pub fn shortest_paths(&self, from: SiteIndex) -> Paths {
        self.dijkstra(from, None)
    }

    /// Latency from every site to every site (`[from][to]`), by one Dijkstra per site:
    /// O(n · m log n), meant for federations of tens to hundreds of sites.
    pub fn latency_matrix(&self) -> Vec<Vec<Option<f64>>> {
        (0..self.len())
            .map(|i| self.shortest_paths(SiteIndex(i as u32)).latencies())
            .collect()
    }

    /// Latency from `a` to `b` along links as directed; a geographic estimate when no
    /// route exists but both sites are located.
    ///
    /// # Panics
    /// If `a` or `b` is not a site of this topology.
    pub fn estimated_latency(&self, a: SiteIndex, b: SiteIndex) -> Latency {
        self.check(b);
        let paths = self.dijkstra(a, Some(b));
        self.latency_or_estimate(&paths, b)
    }

    /// [`Topology::estimated_latency`] from `from` to every site, with one search: what
    /// the scheduler needs to score all candidate sites for a task's origin.
    ///
    /// # Panics
    /// If `from` is not a site of this topology.
    pub fn latencies_from(&self, from: SiteIndex) -> Vec<Latency> {
        let paths = self.shortest_paths(from);
        (0..self.len())
            .map(|i| self.latency_or_estimate(&paths, SiteIndex(i as u32)))
            .collect()
    }

    fn latency_or_estimate(&self, paths: &Paths, to: SiteIndex) -> Latency {
        if let Some(ms) = paths.latency_ms(to) {
            return Latency::Measured(ms);
        }
        let a = self.sites()[paths.from().index()].location;
        let b = self.sites()[to.index()].location;
        match (a, b) {
            (Some(a), Some(b)) => Latency::Estimated(estimated_rtt_ms(a.distance_km(&b))),
            _ => Latency::Unknown,
        }
    }

    /// With `stop_at`, returns as soon as that site is settled: only its label is then
    /// final, which is all `estimated_latency` reads.
    fn dijkstra(&self, from: SiteIndex, stop_at: Option<SiteIndex>) -> Paths {
        self.check(from);
        let n = self.len();
        let mut labels: Vec<Option<Label>> = vec![None; n];
        let mut settled = vec![false; n];
        let mut heap = BinaryHeap::new();

        let start = Reach {
            latency_ms: 0.0,
            bottleneck_gbps: f64::INFINITY,
            hops: 0,
        };
        labels[from.index()] = Some(Label {
            reach: start,
            prev: None,
        });
        heap.push(Queued {
            reach: start,
            site: from,
        });

        while let Some(Queued { site: u, .. }) = heap.pop() {
            // Lazy deletion: a site improved after being queued leaves stale entries.
            if std::mem::replace(&mut settled[u.index()], true) {
                continue;
            }
            if stop_at == Some(u) {
                break;
            }
            // Present: a site is queued only after its label is set.
            let here = labels[u.index()].expect("queued site has a label").reach;
            for edge in self.links_of(u) {
                let v = edge.to.index();
                // Latencies are >= 0 and bottlenecks only shrink, so nothing popped later
                // can beat a settled label in latency, bandwidth or hops.
                if settled[v] {
                    continue;
                }
                let candidate = Label {
                    reach: Reach {
                        latency_ms: here.latency_ms + edge.attrs.latency_ms,
                        bottleneck_gbps: here.bottleneck_gbps.min(edge.attrs.bandwidth_gbps),
                        hops: here.hops + 1,
                    },
                    prev: Some(u),
                };
                let better = labels[v]
                    .as_ref()
                    .is_none_or(|old| cmp_labels(&candidate, old) == Ordering::Less);
                if better {
                    labels[v] = Some(candidate);
                    heap.push(Queued {
                        reach: candidate.reach,
                        site: edge.to,
                    });
                }
            }
        }
        Paths { from, labels }
    }
}
