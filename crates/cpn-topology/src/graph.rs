//! Sites, links and the compact adjacency the path searches walk; validation lives in the
//! builder so a built `Topology` never holds a value the searches cannot handle.

use crate::error::TopologyError;
use cpn_model::GeoPoint;
use std::collections::BTreeMap;
use std::fmt;

/// Dense index of a site: the order in which it was added, starting at 0. Indices are only
/// meaningful for the builder that issued them and the topology it built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SiteIndex(pub u32);

impl SiteIndex {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for SiteIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Dense index of a link: the order of the `add_link` call, so callers can map an [`Edge`]
/// back to the object it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkIndex(pub u32);

impl LinkIndex {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    /// The caller's identifier for the site (an id or name); unique within a topology.
    pub key: String,
    pub location: Option<GeoPoint>,
}

/// Nominal metrics of a link. The rules match the registry's `LinkMetrics` validation, so
/// anything the API accepted can be built.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkAttrs {
    /// Round-trip latency in milliseconds; the weight the path searches minimise.
    pub latency_ms: f64,
    pub bandwidth_gbps: f64,
    pub jitter_ms: f64,
    /// Packet loss in percent, 0..=100.
    pub loss_pct: f64,
    /// Usable in both directions; otherwise only from the first site to the second.
    pub bidirectional: bool,
}

/// One usable direction of a link, as seen from the site it leaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Edge {
    pub to: SiteIndex,
    pub link: LinkIndex,
    pub attrs: LinkAttrs,
}

/// Collects sites and links, checking each as it arrives so the error names the call at
/// fault rather than surfacing later from `build`.
#[derive(Debug, Clone, Default)]
pub struct TopologyBuilder {
    sites: Vec<Site>,
    // BTreeMap, not HashMap: its iteration order is the key order `Topology` needs, and it
    // draws no random seed.
    by_key: BTreeMap<String, SiteIndex>,
    links: Vec<(SiteIndex, SiteIndex, LinkAttrs)>,
}

impl TopologyBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a site and returns its index, which is the number of sites added before it.
    pub fn add_site(
        &mut self,
        key: impl Into<String>,
        location: Option<GeoPoint>,
    ) -> Result<SiteIndex, TopologyError> {
        let key = key.into();
        if key.is_empty() {
            return Err(TopologyError::EmptySiteKey);
        }
        if self.by_key.contains_key(&key) {
            return Err(TopologyError::DuplicateSite { key });
        }
        if let Some(location) = location.filter(|l| !l.is_valid()) {
            return Err(TopologyError::InvalidLocation { key, location });
        }
        let index = u32::try_from(self.sites.len())
            .map(SiteIndex)
            .map_err(|_| TopologyError::TooMany { what: "sites" })?;
        self.by_key.insert(key.clone(), index);
        self.sites.push(Site { key, location });
        Ok(index)
    }

    /// Adds a link from `a` to `b` (and back, if `attrs.bidirectional`). Parallel links
    /// are allowed: a federation may have both an internet path and a private line.
    pub fn add_link(
        &mut self,
        a: SiteIndex,
        b: SiteIndex,
        attrs: LinkAttrs,
    ) -> Result<LinkIndex, TopologyError> {
        for site in [a, b] {
            if site.index() >= self.sites.len() {
                return Err(TopologyError::UnknownSite {
                    site,
                    sites: self.sites.len(),
                });
            }
        }
        if a == b {
            return Err(TopologyError::SelfLink {
                key: self.sites[a.index()].key.clone(),
            });
        }
        let checks = [
            ("latency_ms", attrs.latency_ms, f64::INFINITY),
            ("bandwidth_gbps", attrs.bandwidth_gbps, f64::INFINITY),
            ("jitter_ms", attrs.jitter_ms, f64::INFINITY),
            ("loss_pct", attrs.loss_pct, 100.0),
        ];
        for (field, value, max) in checks {
            // Stated as what is allowed, so NaN, which fails every comparison, is refused.
            let ok = value.is_finite() && value >= 0.0 && value <= max;
            if !ok {
                return Err(TopologyError::InvalidLinkAttr {
                    from: self.sites[a.index()].key.clone(),
                    to: self.sites[b.index()].key.clone(),
                    field,
                    value,
                });
            }
        }
        let index = u32::try_from(self.links.len())
            .map(LinkIndex)
            .map_err(|_| TopologyError::TooMany { what: "links" })?;
        // -0.0 passes `>= 0.0` but sorts below 0.0 under total_cmp, which would make a
        // zero-latency link look better than another; abs() folds it into 0.0.
        let attrs = LinkAttrs {
            latency_ms: attrs.latency_ms.abs(),
            bandwidth_gbps: attrs.bandwidth_gbps.abs(),
            jitter_ms: attrs.jitter_ms.abs(),
            loss_pct: attrs.loss_pct.abs(),
            ..attrs
        };
        self.links.push((a, b, attrs));
        Ok(index)
    }

    /// Looks up a site added earlier, so links given by site key can be resolved.
    pub fn site(&self, key: &str) -> Option<SiteIndex> {
        self.by_key.get(key).copied()
    }

    pub fn len(&self) -> usize {
        self.sites.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sites.is_empty()
    }

    /// Freezes the graph. Each site's edges keep the order their links were added in, so
    /// the same calls always build the same topology.
    pub fn build(self) -> Topology {
        let mut directed: Vec<(SiteIndex, Edge)> = Vec::with_capacity(self.links.len() * 2);
        for (i, &(a, b, attrs)) in self.links.iter().enumerate() {
            // Cannot truncate: add_link refused any index that does not fit in u32.
            let link = LinkIndex(i as u32);
            directed.push((a, Edge { to: b, link, attrs }));
            if attrs.bidirectional {
                directed.push((b, Edge { to: a, link, attrs }));
            }
        }
        // Stable, so edges of one site stay in link order.
        directed.sort_by_key(|&(from, _)| from);

        let mut offsets = vec![0usize; self.sites.len() + 1];
        for &(from, _) in &directed {
            offsets[from.index() + 1] += 1;
        }
        for i in 1..offsets.len() {
            offsets[i] += offsets[i - 1];
        }
        Topology {
            sites: self.sites,
            by_key: self.by_key.into_values().collect(),
            offsets,
            edges: directed.into_iter().map(|(_, e)| e).collect(),
            link_count: self.links.len(),
        }
    }
}

/// An immutable site/link graph in compressed adjacency form: one edge array, sliced per
/// site by `offsets`, which keeps the searches cache-friendly for large federations.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    sites: Vec<Site>,
    /// Site indices sorted by key, for lookup by binary search without a second copy of
    /// every key.
    by_key: Vec<SiteIndex>,
    /// Edges of site `i` are `edges[offsets[i]..offsets[i + 1]]`.
    offsets: Vec<usize>,
    edges: Vec<Edge>,
    link_count: usize,
}

impl Topology {
    pub fn site(&self, key: &str) -> Option<SiteIndex> {
        self.by_key
            .binary_search_by(|i| self.sites[i.index()].key.as_str().cmp(key))
            .ok()
            .map(|pos| self.by_key[pos])
    }

    /// All sites; a site's position in the slice is its [`SiteIndex`].
    pub fn sites(&self) -> &[Site] {
        &self.sites
    }

    /// Edges leaving site `i`, in the order their links were added.
    ///
    /// # Panics
    /// If `i` is not a site of this topology.
    pub fn links_of(&self, i: SiteIndex) -> &[Edge] {
        self.check(i);
        &self.edges[self.offsets[i.index()]..self.offsets[i.index() + 1]]
    }

    /// Number of sites.
    pub fn len(&self) -> usize {
        self.sites.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sites.is_empty()
    }

    /// Number of links added, counting a bidirectional link once.
    pub fn link_count(&self) -> usize {
        self.link_count
    }

    pub(crate) fn check(&self, i: SiteIndex) {
        assert!(
            i.index() < self.sites.len(),
            "site {i} is not a site of this topology (it has {} sites)",
            self.sites.len()
        );
    }
}
