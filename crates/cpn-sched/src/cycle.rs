//! The runner: one scheduling cycle per task over the profile's plugins.
//!
//! Site phase: filter every site (aggregates make this O(sites)), score the feasible ones,
//! normalize each factor to 0..=100, weight and sum. Node phase inside the best site: filter
//! nodes from a rotating start until enough feasible ones are found (sampling), score them
//! the same way, pick the best and reserve. If no node of that site holds the task, the next
//! best site is tried, up to `Profile::site_attempts`.

use crate::cluster::{Cluster, GpuAssignment, NodeIdx, SiteIdx};
use crate::explain::{CandidateReport, Decision, FactorScore, VerdictReport};
use crate::framework::{Better, CycleState, NodeFilter, Profile, SiteFilter, Verdict};
use crate::task::Task;

/// Whether to collect the explanation (slower) or only decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Fast,
    /// Decide as `Fast` does, and keep a brief record of why: the best [`BRIEF_SITES`]
    /// feasible sites with their factor contributions, the chosen node, and the rejections
    /// that settled the other sites (the first filter to reject each, as `Fast` counts
    /// them). Costs a few allocations per decision; the live binder stores it with every
    /// binding.
    Brief,
    Explain,
}

/// Sites a brief decision keeps: the winner and its closest alternatives.
pub const BRIEF_SITES: usize = 4;

#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub site: SiteIdx,
    pub node: NodeIdx,
    pub gpus: GpuAssignment,
    /// Weighted site score of the chosen site.
    pub score: f64,
}

/// No site and node can take the task now; `reasons` counts rejections by `plugin/code`.
#[derive(Debug, Clone, PartialEq)]
pub struct Unschedulable {
    pub reasons: Vec<(String, u32)>,
    /// True when every rejection is permanent: waiting will not help.
    pub forever: bool,
}

pub struct Scheduler {
    pub profile: Profile,
    seed: u64,
    cycles: u64,
    // Reused buffers: a cycle allocates nothing in Fast mode once these have grown.
    feasible: Vec<u32>,
    raw: Vec<f64>,
    totals: Vec<f64>,
    order: Vec<usize>,
    ties: Vec<u64>,
    next_node_start: usize,
    /// In `Mode::Brief`: per site factor (outer) and feasible site (inner), the raw and the
    /// normalized score, kept until the ranking says which sites the brief names.
    brief_raw: Vec<f64>,
    brief_norm: Vec<f64>,
}

/// Rejections counted by `plugin/code` during one cycle.
struct Tally {
    reasons: Vec<(String, u32)>,
    /// Stays true while every rejection seen is permanent.
    forever: bool,
}

impl Tally {
    fn new() -> Self {
        Tally {
            reasons: Vec::new(),
            forever: true,
        }
    }

    fn count(&mut self, plugin: &str, code: &str, permanent: bool) {
        self.forever &= permanent;
        match self.reasons.iter_mut().find(|(k, _)| {
            k.len() == plugin.len() + 1 + code.len() && k.starts_with(plugin) && k.ends_with(code)
        }) {
            Some((_, n)) => *n += 1,
            None => self.reasons.push((format!("{plugin}/{code}"), 1)),
        }
    }
}

/// The site, node and site score a decision settled on.
type Chosen = (SiteIdx, NodeIdx, f64);

/// splitmix64: a tiny, well-mixed hash for seeded tie-breaks.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Maps raw scores onto 0..=100 (100 best). All-equal scores all get 100: the factor does
/// not separate the candidates, and every one gets the same contribution. A non-finite raw
/// score (a user-defined plugin gone wrong) counts as the worst, never as a win.
fn normalize(raw: &[f64], better: Better, out: &mut [f64]) {
    let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
    for &x in raw.iter().filter(|x| x.is_finite()) {
        min = min.min(x);
        max = max.max(x);
    }
    let span = max - min;
    for (o, &x) in out.iter_mut().zip(raw) {
        *o = if !x.is_finite() {
            0.0
        } else if span.is_nan() || span <= 1e-12 {
            100.0
        } else {
            match better {
                Better::Higher => 100.0 * (x - min) / span,
                Better::Lower => 100.0 * (max - x) / span,
            }
        };
    }
}

impl Scheduler {
    pub fn new(profile: Profile, seed: u64) -> Self {
        Scheduler {
            profile,
            seed,
            cycles: 0,
            feasible: Vec::new(),
            raw: Vec::new(),
            totals: Vec::new(),
            order: Vec::new(),
            ties: Vec::new(),
            next_node_start: 0,
            brief_raw: Vec::new(),
            brief_norm: Vec::new(),
        }
    }

    fn prepare(&self, task: &Task, cluster: &Cluster, explain: bool) -> CycleState {
        let mut state = CycleState::new(explain);
        state.put(crate::task::Resolved::new(task, cluster));
        for p in &self.profile.plugins {
            p.prepare(task, cluster, &mut state);
        }
        state
    }

    /// Decides where `task` goes and reserves it on `cluster`. In `Mode::Explain` the
    /// decision record is returned too.
    pub fn schedule(
        &mut self,
        task: &Task,
        cluster: &mut Cluster,
        mode: Mode,
    ) -> (Result<Placement, Unschedulable>, Option<Decision>) {
        let (result, decision) = self.decide(task, cluster, mode);
        let result = match result {
            Ok((site, node, score)) => {
                match self.reserve_on(cluster, task, node) {
                    Some(gpus) => Ok(Placement {
                        site,
                        node,
                        gpus,
                        score,
                    }),
                    // A node filter passed what reserve refuses: a plugin bug, reported as a miss.
                    None => Err(Unschedulable {
                        reasons: vec![("reserve/refused".into(), 1)],
                        forever: false,
                    }),
                }
            }
            Err(u) => Err(u),
        };
        (result, decision)
    }

    /// Decides without reserving: what `schedule` would do, with the full explanation.
    pub fn explain(&mut self, task: &Task, cluster: &Cluster) -> Decision {
        self.decide(task, cluster, Mode::Explain)
            .1
            .expect("explain mode returns a decision")
    }

    /// The site phase only: the ranked feasible sites with their totals (for federation-level
    /// choice and benchmarks).
    pub fn rank_sites(&mut self, task: &Task, cluster: &Cluster) -> Vec<(SiteIdx, f64)> {
        let state = self.prepare(task, cluster, false);
        self.cycles += 1;
        let seed = self.tie_seed();
        self.site_phase(&state, task, cluster, None, false, seed, &mut Tally::new())
    }

    /// Places `task` on a node of the given site (the node phase only), reserving it. Used
    /// when replicas are divided across sites first (by weights or free capacity).
    pub fn schedule_in_site(
        &mut self,
        task: &Task,
        cluster: &mut Cluster,
        site: SiteIdx,
    ) -> Result<Placement, Unschedulable> {
        let state = self.prepare(task, cluster, false);
        self.cycles += 1;
        let seed = self.tie_seed();
        let mut tally = Tally::new();
        match self.node_phase(&state, task, cluster, site, None, seed, &mut tally) {
            Some(node) => {
                match cluster.reserve(&task.tenant, node, &task.demand, self.profile.gpu_pick) {
                    Some(gpus) => Ok(Placement {
                        site,
                        node,
                        gpus,
                        score: 0.0,
                    }),
                    None => Err(Unschedulable {
                        reasons: vec![("reserve/refused".into(), 1)],
                        forever: false,
                    }),
                }
            }
            None => Err(Unschedulable {
                reasons: tally.reasons,
                forever: tally.forever,
            }),
        }
    }

    /// Reserves `task` on `node`, the GPUs chosen by the profile's picker if it has one.
    fn reserve_on(
        &self,
        cluster: &mut Cluster,
        task: &Task,
        node: NodeIdx,
    ) -> Option<GpuAssignment> {
        match &self.profile.gpu_picker {
            Some(picker) => picker
                .pick(cluster, node, task)
                .filter(|gpus| cluster.reserve_exact(&task.tenant, node, &task.demand, gpus)),
            None => cluster.reserve(&task.tenant, node, &task.demand, self.profile.gpu_pick),
        }
    }

    /// The seed of a cycle's tie-break order.
    fn tie_seed(&self) -> u64 {
        match self.profile.tie_break {
            crate::framework::TieBreak::PerCycle => mix(self.seed ^ self.cycles),
            crate::framework::TieBreak::Fixed => mix(self.seed),
        }
    }

    fn decide(
        &mut self,
        task: &Task,
        cluster: &Cluster,
        mode: Mode,
    ) -> (Result<Chosen, Unschedulable>, Option<Decision>) {
        let explain = mode == Mode::Explain;
        let state = self.prepare(task, cluster, explain);
        self.cycles += 1;
        let seed = self.tie_seed();
        let mut decision = (mode != Mode::Fast).then(|| Decision {
            task: task.id.clone(),
            profile: self.profile.name.clone(),
            seed,
            ..Default::default()
        });
        let mut tally = Tally::new();
        let brief = mode == Mode::Brief;
        if brief {
            self.brief_raw.clear();
            self.brief_norm.clear();
        }
        let ranked_sites = self.site_phase(
            &state,
            task,
            cluster,
            decision.as_mut().filter(|_| explain),
            brief,
            seed,
            &mut tally,
        );
        if let Some(d) = decision.as_mut().filter(|_| brief) {
            d.sites = self.brief_sites(cluster, &ranked_sites);
        }
        let margin = match ranked_sites.as_slice() {
            [a, b, ..] => Some(a.1 - b.1),
            _ => None,
        };
        for &(site, site_total) in ranked_sites.iter().take(self.profile.site_attempts.max(1)) {
            if let Some(node) = self.node_phase(
                &state,
                task,
                cluster,
                site,
                decision.as_mut().filter(|_| explain),
                seed,
                &mut tally,
            ) {
                if let Some(d) = decision.as_mut() {
                    d.chosen_site = Some(cluster.site(site).spec.name.clone());
                    d.chosen_node = Some(cluster.node(node).spec.name.clone());
                    d.score = Some(site_total);
                    d.margin = margin;
                    d.rejections = tally.reasons.clone();
                }
                return (Ok((site, node, site_total)), decision);
            }
        }
        if let Some(d) = decision.as_mut() {
            d.rejections = tally.reasons.clone();
        }
        (
            Err(Unschedulable {
                reasons: tally.reasons,
                forever: tally.forever,
            }),
            decision,
        )
    }

    /// Filters and scores all sites; returns the feasible ones ranked best first. `brief`
    /// keeps every factor's raw and normalized scores for [`Self::brief_sites`].
    #[allow(clippy::too_many_arguments)]
    fn site_phase(
        &mut self,
        state: &CycleState,
        task: &Task,
        cluster: &Cluster,
        decision: Option<&mut Decision>,
        brief: bool,
        seed: u64,
        tally: &mut Tally,
    ) -> Vec<(SiteIdx, f64)> {
        let explain = decision.is_some();
        self.feasible.clear();
        let mut reports: Vec<CandidateReport> = Vec::new();
        // Looked up once per cycle, not once per site: a dynamic call per plugin each time.
        let filters: Vec<&dyn SiteFilter> = self.profile.site_filters().collect();
        for s in 0..cluster.sites.len() as SiteIdx {
            let mut ok = true;
            let mut verdicts = Vec::new();
            for &f in &filters {
                let v = f.filter_site(state, task, cluster, s);
                if let Some(r) = v.reason() {
                    ok = false;
                    tally.count(r.plugin, r.code, matches!(v, Verdict::RejectsForever(_)));
                }
                if explain {
                    verdicts.push(verdict_report(f.name(), &v));
                } else if !ok {
                    break; // cheap filters first; the first rejection settles it
                }
            }
            if ok {
                self.feasible.push(s);
            }
            if explain {
                reports.push(CandidateReport {
                    name: cluster.site(s).spec.name.clone(),
                    feasible: ok,
                    verdicts,
                    factors: Vec::new(),
                    total: 0.0,
                });
            }
        }

        let n = self.feasible.len();
        self.totals.clear();
        self.totals.resize(n, 0.0);
        let mut norm = vec![0.0; n];
        for (scorer, weight) in self.profile.site_scores() {
            self.raw.clear();
            for &s in &self.feasible {
                self.raw.push(scorer.score_site(state, task, cluster, s));
            }
            normalize(&self.raw, scorer.better(), &mut norm);
            if brief {
                self.brief_raw.extend_from_slice(&self.raw);
                self.brief_norm.extend_from_slice(&norm);
            }
            for i in 0..n {
                self.totals[i] += weight * norm[i];
                if explain {
                    reports[self.feasible[i] as usize]
                        .factors
                        .push(FactorScore {
                            plugin: scorer.name(),
                            raw: self.raw[i],
                            unit: scorer.unit(),
                            normalized: norm[i],
                            weight,
                            contribution: weight * norm[i],
                        });
                }
            }
        }
        self.order.clear();
        self.order.extend(0..n);
        // Tie-break keys once per site, not twice per comparison. They are all distinct (mix
        // is a bijection and the sites differ), so the order is total and an unstable sort
        // gives exactly what a stable one would.
        self.ties.clear();
        self.ties
            .extend(self.feasible.iter().map(|&s| mix(seed ^ s as u64)));
        let (totals, ties) = (&self.totals, &self.ties);
        self.order.sort_unstable_by(|&a, &b| {
            totals[b]
                .total_cmp(&totals[a])
                .then_with(|| ties[b].cmp(&ties[a]))
        });
        if let Some(d) = decision {
            for i in 0..n {
                reports[self.feasible[i] as usize].total = self.totals[i];
            }
            // Feasible sites best first, then the rejected ones in site order.
            let mut ordered: Vec<CandidateReport> = self
                .order
                .iter()
                .map(|&i| reports[self.feasible[i] as usize].clone())
                .collect();
            ordered.extend(reports.into_iter().filter(|r| !r.feasible));
            d.sites = ordered;
        }
        self.order
            .iter()
            .map(|&i| (self.feasible[i], self.totals[i]))
            .collect()
    }

    /// The best [`BRIEF_SITES`] of `ranked` with their factor contributions, from what
    /// `site_phase` kept in `Mode::Brief`.
    fn brief_sites(&self, cluster: &Cluster, ranked: &[(SiteIdx, f64)]) -> Vec<CandidateReport> {
        let n = self.feasible.len();
        let scorers = self.profile.site_scores();
        ranked
            .iter()
            .take(BRIEF_SITES)
            .map(|&(site, total)| {
                let i = self
                    .feasible
                    .iter()
                    .position(|&s| s == site)
                    .expect("ranked sites are feasible");
                CandidateReport {
                    name: cluster.site(site).spec.name.clone(),
                    feasible: true,
                    verdicts: Vec::new(),
                    factors: scorers
                        .iter()
                        .enumerate()
                        .map(|(f, (scorer, weight))| FactorScore {
                            plugin: scorer.name(),
                            raw: self.brief_raw[f * n + i],
                            unit: scorer.unit(),
                            normalized: self.brief_norm[f * n + i],
                            weight: *weight,
                            contribution: weight * self.brief_norm[f * n + i],
                        })
                        .collect(),
                    total,
                }
            })
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn node_phase(
        &mut self,
        state: &CycleState,
        task: &Task,
        cluster: &Cluster,
        site: SiteIdx,
        mut decision: Option<&mut Decision>,
        seed: u64,
        tally: &mut Tally,
    ) -> Option<NodeIdx> {
        let explain = decision.is_some();
        let members = &cluster.site(site).nodes;
        let len = members.len();
        if len == 0 {
            tally.count("cycle", "no_nodes", false);
            return None;
        }
        let want = self.profile.sampling.nodes_to_find(len);
        let start = self.next_node_start % len;
        let mut feasible: Vec<NodeIdx> = Vec::with_capacity(want.min(len));
        // Each feasible node's place in site order (`Site::first_ordinal` + position): the
        // tie-break key, the same in a fresh and in an incrementally kept cluster.
        let first = cluster.site(site).first_ordinal;
        let mut ordinals: Vec<u32> = Vec::with_capacity(want.min(len));
        let mut reports: Vec<CandidateReport> = Vec::new();
        let mut scanned = 0;
        // Looked up once per cycle, not once per node: a dynamic call per plugin each time.
        let filters: Vec<&dyn NodeFilter> = self.profile.node_filters().collect();
        while scanned < len && feasible.len() < want {
            let position = (start + scanned) % len;
            let node = members[position];
            scanned += 1;
            let mut ok = true;
            let mut verdicts = Vec::new();
            for &f in &filters {
                let v = f.filter_node(state, task, cluster, node);
                if let Some(r) = v.reason() {
                    ok = false;
                    tally.count(r.plugin, r.code, matches!(v, Verdict::RejectsForever(_)));
                }
                if explain {
                    verdicts.push(verdict_report(f.name(), &v));
                } else if !ok {
                    break;
                }
            }
            if ok {
                feasible.push(node);
                ordinals.push(first + position as u32);
            }
            if explain {
                reports.push(CandidateReport {
                    name: cluster.node(node).spec.name.clone(),
                    feasible: ok,
                    verdicts,
                    factors: Vec::new(),
                    total: 0.0,
                });
            }
        }
        // kube rotates the start so successive cycles spread over the nodes.
        self.next_node_start = (start + scanned) % len;
        if feasible.is_empty() {
            if let Some(d) = decision.as_deref_mut() {
                d.nodes = reports;
            }
            return None;
        }
        let n = feasible.len();
        let mut totals = vec![0.0; n];
        let mut raw = Vec::with_capacity(n);
        let mut norm = vec![0.0; n];
        let report_index: Vec<usize> = if explain {
            let mut idx = Vec::with_capacity(n);
            let mut j = 0;
            for (i, r) in reports.iter().enumerate() {
                if r.feasible {
                    idx.push(i);
                    j += 1;
                }
            }
            debug_assert_eq!(j, n);
            idx
        } else {
            Vec::new()
        };
        for (scorer, weight) in self.profile.node_scores() {
            raw.clear();
            for &node in &feasible {
                raw.push(scorer.score_node(state, task, cluster, node));
            }
            normalize(&raw, scorer.better(), &mut norm);
            for i in 0..n {
                totals[i] += weight * norm[i];
                if explain {
                    reports[report_index[i]].factors.push(FactorScore {
                        plugin: scorer.name(),
                        raw: raw[i],
                        unit: scorer.unit(),
                        normalized: norm[i],
                        weight,
                        contribution: weight * norm[i],
                    });
                }
            }
        }
        let best = (0..n)
            .max_by(|&a, &b| {
                totals[a].total_cmp(&totals[b]).then_with(|| {
                    mix(seed ^ ordinals[a] as u64).cmp(&mix(seed ^ ordinals[b] as u64))
                })
            })
            .expect("feasible is not empty");
        if let Some(d) = decision {
            for i in 0..n {
                reports[report_index[i]].total = totals[i];
            }
            // The chosen node first (ties are broken by the seed, not by position), then
            // the feasible ones best first, then the rejected.
            let chosen = &cluster.node(feasible[best]).spec.name;
            reports.sort_by(|a, b| {
                (&b.name == chosen)
                    .cmp(&(&a.name == chosen))
                    .then(b.feasible.cmp(&a.feasible))
                    .then(b.total.total_cmp(&a.total))
            });
            d.nodes = reports;
        }
        Some(feasible[best])
    }
}

fn verdict_report(plugin: &'static str, v: &Verdict) -> VerdictReport {
    let r = v.reason();
    VerdictReport {
        plugin,
        fits: v.fits(),
        forever: matches!(v, Verdict::RejectsForever(_)),
        code: r.map(|r| r.code),
        detail: r.and_then(|r| r.detail.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_maps_best_to_100() {
        let mut out = [0.0; 3];
        normalize(&[10.0, 20.0, 30.0], Better::Lower, &mut out);
        assert_eq!(out, [100.0, 50.0, 0.0]);
        normalize(&[10.0, 20.0, 30.0], Better::Higher, &mut out);
        assert_eq!(out, [0.0, 50.0, 100.0]);
        normalize(&[5.0, 5.0, 5.0], Better::Higher, &mut out);
        assert_eq!(out, [100.0, 100.0, 100.0]);
        normalize(&[f64::NAN, 1.0, 2.0], Better::Higher, &mut out);
        assert_eq!(out, [0.0, 0.0, 100.0]);
        normalize(&[f64::INFINITY, 1.0, 2.0], Better::Lower, &mut out);
        assert_eq!(out, [0.0, 100.0, 0.0]);
    }
}
