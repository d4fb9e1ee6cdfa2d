//! The GPU placement policies of the FGD benchmark (Alibaba GPU trace v2023, USENIX ATC '23;
//! `data/alibaba-gpu-v2023/BENCHMARK.md`): Random, DotProd, GpuClustering,
//! GpuPacking, BestFit and FGD (fragmentation gradient descent), each a node score plugin
//! and a [`GpuPicker`] for its within-node GPU choice, plus the fragmentation measure and
//! the target workload FGD descends on. `fgd_plus` is our own FGD refinement, not one of
//! the six (`GpuPolicy::ALL`).
//!
//! They are not in the registry's `ALL`: a benchmark profile is built explicitly with
//! [`profile`], exactly as the paper's runs were configured: the kube-scheduler fit filter
//! and the GPU model filter, every feasible node scored by the one policy plugin (weight
//! 1000), ties to a seeded fixed node priority, the policy's own GPU choice.
//!
//! Scores are the simulator's integers (0..=100), returned as `f64` with `Better::Higher`;
//! the runner's min–max normalisation is monotone, so the argmax and its ties are the ones
//! of the integer scores.

pub mod best_fit;
pub mod dot_prod;
pub mod fgd;
pub mod fgd_plus;
pub mod fragmentation;
pub mod gpu_clustering;
pub mod gpu_packing;
pub mod random;
pub mod workload;

pub use fragmentation::{
    Fragmentation, FragmentationTracker, cluster_fragmentation, node_fragmentation,
    state_fragmentation,
};
pub use workload::{Shape, TargetWorkload};

use crate::cluster::{Cluster, GpuAssignment, GpuPick, Node, NodeIdx};
use crate::framework::{CycleState, GpuPicker, Plugin, Profile, Sampling, TieBreak};
use crate::plugins::{chip_model, resolved, resources_fit};
use crate::task::{Demand, Task};
use std::fmt;
use std::sync::Arc;

/// CPU that normalises the CPU dimension (`MaxSpecCpu`), milli.
pub const MAX_SPEC_CPU: f64 = 128_000.0;
/// GPU milli that normalises the GPU dimension (`MaxSpecGpu`: 8 GPUs).
pub const MAX_SPEC_GPU: f64 = 8_000.0;
/// Weight of the policy's score plugin in a benchmark profile.
pub const WEIGHT: f64 = 1000.0;

/// One of the six policies of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GpuPolicy {
    Random,
    DotProd,
    GpuClustering,
    GpuPacking,
    BestFit,
    Fgd,
    /// Our own FGD refinement ([`fgd_plus`]), not one of the benchmark's six.
    FgdPlus,
}

impl GpuPolicy {
    pub const ALL: [GpuPolicy; 6] = [
        GpuPolicy::Random,
        GpuPolicy::DotProd,
        GpuPolicy::GpuClustering,
        GpuPolicy::GpuPacking,
        GpuPolicy::BestFit,
        GpuPolicy::Fgd,
    ];

    /// Short name: "random", "dotprod", "clustering", "packing", "bestfit", "fgd"; our own
    /// "fgd_plus".
    pub fn name(self) -> &'static str {
        match self {
            GpuPolicy::Random => "random",
            GpuPolicy::DotProd => "dotprod",
            GpuPolicy::GpuClustering => "clustering",
            GpuPolicy::GpuPacking => "packing",
            GpuPolicy::BestFit => "bestfit",
            GpuPolicy::Fgd => "fgd",
            GpuPolicy::FgdPlus => "fgd_plus",
        }
    }

    /// The simulator's `sc_policy` label, as in the expected-results files ("06-FGD");
    /// "07-FGDPlus" for our own, which has no published results.
    pub fn sc_policy(self) -> &'static str {
        match self {
            GpuPolicy::Random => "01-Random",
            GpuPolicy::DotProd => "02-DotProd",
            GpuPolicy::GpuClustering => "03-GpuClustering",
            GpuPolicy::GpuPacking => "04-GpuPacking",
            GpuPolicy::BestFit => "05-BestFit",
            GpuPolicy::Fgd => "06-FGD",
            GpuPolicy::FgdPlus => "07-FGDPlus",
        }
    }

    /// Name of the policy's score plugin.
    pub fn plugin_name(self) -> &'static str {
        match self {
            GpuPolicy::Random => random::NAME,
            GpuPolicy::DotProd => dot_prod::NAME,
            GpuPolicy::GpuClustering => gpu_clustering::NAME,
            GpuPolicy::GpuPacking => gpu_packing::NAME,
            GpuPolicy::BestFit => best_fit::NAME,
            GpuPolicy::Fgd => fgd::NAME,
            GpuPolicy::FgdPlus => fgd_plus::NAME,
        }
    }

    /// Accepts the short names, the `sc_policy` labels ("02-DotProd"), the paper's names
    /// ("GpuPacking", "FGD") and the plugin names ("gpu_best_fit"), in any case.
    pub fn parse(s: &str) -> Option<GpuPolicy> {
        let s = s.trim();
        // Drop an "NN-" prefix of the sc_policy labels.
        let s = match s.split_once('-') {
            Some((num, rest)) if !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit()) => rest,
            _ => s,
        };
        let key: String = s
            .chars()
            .filter(|c| !matches!(c, '_' | '-' | ' '))
            .flat_map(char::to_lowercase)
            .collect();
        let key = key.strip_prefix("gpu").unwrap_or(&key);
        Some(match key {
            "random" => GpuPolicy::Random,
            "dotprod" | "dotproduct" | "tetris" => GpuPolicy::DotProd,
            "clustering" => GpuPolicy::GpuClustering,
            "packing" => GpuPolicy::GpuPacking,
            "bestfit" => GpuPolicy::BestFit,
            "fgd" | "fraggradientdescent" => GpuPolicy::Fgd,
            "fgdplus" => GpuPolicy::FgdPlus,
            _ => return None,
        })
    }
}

impl fmt::Display for GpuPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The benchmark profile of `policy`: filters `chip_model` and `resources_fit`, the policy's
/// score plugin at weight 1000, every node scored, ties to a seeded fixed node priority
/// (`TieBreak::Fixed`, seeded by the `Scheduler`'s seed), one site attempt, and the policy's
/// GPU choice. `workload` is used by FGD only; `seed` drives Random's node and GPU draws.
/// Each call builds fresh plugin instances: give every simulated cluster its own profile.
pub fn profile(policy: GpuPolicy, workload: Arc<TargetWorkload>, seed: u64) -> Profile {
    let (score, picker) = parts(policy, workload, seed);
    Profile {
        name: format!("gpu-{}", policy.name()),
        plugins: vec![
            Arc::new(chip_model::ChipModel),
            Arc::new(resources_fit::ResourcesFit),
            score,
        ],
        weights: vec![(policy.plugin_name().to_string(), WEIGHT)],
        sampling: Sampling::All,
        gpu_pick: GpuPick::BestFit,
        site_attempts: 1,
        gpu_picker: Some(picker),
        tie_break: TieBreak::Fixed,
    }
}

/// Adds `policy`'s node score (at [`WEIGHT`], so it decides among a site's nodes) and its
/// GPU choice to an ordinary profile: how the live scheduler runs a stored policy that
/// names a GPU policy.
pub fn add_to(profile: &mut Profile, policy: GpuPolicy, workload: Arc<TargetWorkload>, seed: u64) {
    let (score, picker) = parts(policy, workload, seed);
    profile.plugins.push(score);
    profile
        .weights
        .push((policy.plugin_name().to_string(), WEIGHT));
    profile.gpu_picker = Some(picker);
}

/// The score plugin and the GPU picker of a policy (one object for most policies).
fn parts(
    policy: GpuPolicy,
    workload: Arc<TargetWorkload>,
    seed: u64,
) -> (Arc<dyn Plugin>, Arc<dyn GpuPicker>) {
    match policy {
        GpuPolicy::Random => {
            let p = Arc::new(random::Random::new(seed));
            (p.clone(), p)
        }
        GpuPolicy::DotProd => (Arc::new(dot_prod::DotProd), Arc::new(dot_prod::DotProd)),
        GpuPolicy::GpuClustering => {
            let p = Arc::new(gpu_clustering::GpuClustering::default());
            (p.clone(), p)
        }
        GpuPolicy::GpuPacking => (
            Arc::new(gpu_packing::GpuPacking),
            Arc::new(gpu_packing::GpuPacking),
        ),
        GpuPolicy::BestFit => (Arc::new(best_fit::BestFit), Arc::new(best_fit::BestFit)),
        GpuPolicy::Fgd => {
            let p = Arc::new(fgd::Fgd::new(workload));
            (p.clone(), p)
        }
        GpuPolicy::FgdPlus => {
            let p = Arc::new(fgd_plus::FgdPlus::new(workload));
            (p.clone(), p)
        }
    }
}

/// The benchmark's node filter (§3 step 8), as the profile's `chip_model` and
/// `resources_fit` node filters apply it: CPU, memory (and storage) fit; for GPU tasks an
/// accelerator node of an allowed model with `gpus` GPUs each holding `gpu_milli`.
/// Policies that look at every feasible node in `prepare` (Random, BestFit) use it.
pub fn feasible(state: &CycleState, task: &Task, cluster: &Cluster, node: NodeIdx) -> bool {
    let n = cluster.node(node);
    n.fits(&task.demand) && resolved(state).accepts(task, n.spec.chip, n.model, n.architecture)
}

/// The per-GPU share a demand asks for (1..=1000), 0 for CPU-only demand.
pub fn share(d: &Demand) -> u32 {
    if d.gpus == 0 {
        0
    } else {
        d.gpu_milli.clamp(1, 1000)
    }
}

/// Whether the demand is a GPU-sharing one (a fraction of a GPU per GPU).
pub fn is_sharing(d: &Demand) -> bool {
    d.gpus > 0 && d.gpu_milli < 1000
}

/// The `k` lowest-index fully free GPUs, None if the node has fewer.
pub fn lowest_free_gpus(node: &Node, k: u32) -> Option<GpuAssignment> {
    let gpus: GpuAssignment = node
        .gpu_free
        .iter()
        .enumerate()
        .filter(|&(_, &m)| m == 1000)
        .take(k as usize)
        .map(|(i, _)| (i as u32, 1000))
        .collect();
    (gpus.len() == k as usize).then_some(gpus)
}

/// The baselines' GPU choice: whole-GPU demand takes the lowest-index fully free GPUs; each
/// share goes on the GPU with the least free milli that holds it (lowest index on ties), a
/// different GPU per share. CPU-only demand gets no GPUs.
pub fn best_fit_gpus(node: &Node, d: &Demand) -> Option<GpuAssignment> {
    if d.gpus == 0 {
        return Some(GpuAssignment::new());
    }
    if !is_sharing(d) {
        return lowest_free_gpus(node, d.gpus);
    }
    let want = share(d);
    let mut view = node.gpu_free.clone();
    let mut gpus = GpuAssignment::with_capacity(d.gpus as usize);
    for _ in 0..d.gpus {
        let i = GpuPick::BestFit.choose(&view, want)?;
        view[i] = 0;
        gpus.push((i as u32, want));
    }
    Some(gpus)
}

/// splitmix64: the seeded stream of the Random policy.
pub(crate) fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform index below `n` (n > 0) from a 64-bit draw (Lemire's multiply-shift).
pub(crate) fn below(draw: u64, n: usize) -> usize {
    ((draw as u128 * n as u128) >> 64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterBuilder;
    use crate::cycle::{Mode, Scheduler};
    use crate::plugins::testkit::{gpu_node, site};
    use crate::task::Chip;

    pub(crate) fn task(cpu: u64, gpus: u32, milli: u32) -> Task {
        Task {
            id: "t".into(),
            tenant: "acme".into(),
            demand: Demand {
                cpu_milli: cpu,
                memory_mib: 1024,
                gpus,
                gpu_milli: if gpus == 0 { 0 } else { milli },
                storage_gib: 0,
            },
            ..Default::default()
        }
    }

    /// Sets node `n`'s free GPU milli and refreshes its site's aggregates.
    pub(crate) fn set_gpus(c: &mut Cluster, n: NodeIdx, gpus: &[u32]) {
        c.nodes[n as usize].gpu_free = gpus.to_vec();
        let s = c.node(n).spec.site;
        c.refresh_site(s);
    }

    #[test]
    fn policy_names_parse_every_way_they_are_written() {
        for p in GpuPolicy::ALL {
            assert_eq!(GpuPolicy::parse(p.name()), Some(p));
            assert_eq!(GpuPolicy::parse(p.sc_policy()), Some(p));
            assert_eq!(GpuPolicy::parse(p.plugin_name()), Some(p));
            assert_eq!(GpuPolicy::parse(&format!("{p:?}")), Some(p));
        }
        assert_eq!(GpuPolicy::parse("FGD"), Some(GpuPolicy::Fgd));
        assert_eq!(GpuPolicy::parse("GpuPacking"), Some(GpuPolicy::GpuPacking));
        assert_eq!(GpuPolicy::parse("best_fit"), Some(GpuPolicy::BestFit));
        assert_eq!(GpuPolicy::parse("dot_prod"), Some(GpuPolicy::DotProd));
        assert_eq!(
            GpuPolicy::parse("gpu_clustering"),
            Some(GpuPolicy::GpuClustering)
        );
        let own = GpuPolicy::FgdPlus;
        assert_eq!(GpuPolicy::parse(own.name()), Some(own));
        assert_eq!(GpuPolicy::parse(own.plugin_name()), Some(own));
        assert_eq!(GpuPolicy::parse(own.sc_policy()), Some(own));
        assert_eq!(GpuPolicy::parse("FGDPlus"), Some(own));
        assert!(!GpuPolicy::ALL.contains(&own));
        assert_eq!(GpuPolicy::parse("worstfit"), None);
    }

    #[test]
    fn gpu_choice_helpers() {
        let mut b = ClusterBuilder::new();
        let s = b.site(site("s", "east"));
        b.node(gpu_node("n", s, "G2", 4));
        let mut c = b.build().unwrap();
        set_gpus(&mut c, 0, &[1000, 300, 600, 1000]);
        let n = c.node(0);
        assert_eq!(lowest_free_gpus(n, 2), Some(vec![(0, 1000), (3, 1000)]));
        assert_eq!(lowest_free_gpus(n, 3), None);
        assert_eq!(
            best_fit_gpus(n, &task(1, 1, 250).demand),
            Some(vec![(1, 250)])
        );
        assert_eq!(
            best_fit_gpus(n, &task(1, 1, 500).demand),
            Some(vec![(2, 500)])
        );
        assert_eq!(
            best_fit_gpus(n, &task(1, 2, 500).demand),
            Some(vec![(2, 500), (0, 500)])
        );
        assert_eq!(
            best_fit_gpus(n, &task(1, 1, 1000).demand),
            Some(vec![(0, 1000)])
        );
        assert_eq!(best_fit_gpus(n, &task(1, 0, 0).demand), Some(vec![]));
    }

    #[test]
    fn every_profile_places_a_task_with_its_own_gpu_choice() {
        let mut b = ClusterBuilder::new();
        let s = b.site(site("s", "east"));
        b.node(gpu_node("a", s, "G2", 2));
        b.node(gpu_node("b", s, "T4", 2));
        let cluster = b.build().unwrap();
        let w = Arc::new(TargetWorkload::from_counts([(
            Shape::new(1000, 500, 1, ""),
            1,
        )]));
        for policy in GpuPolicy::ALL.into_iter().chain([GpuPolicy::FgdPlus]) {
            let mut c = cluster.clone();
            let p = profile(policy, w.clone(), 7);
            assert_eq!(p.weight(policy.plugin_name()), WEIGHT);
            assert_eq!(p.node_scores().len(), 1);
            let mut sched = Scheduler::new(p, 7);
            let t = Task {
                models: vec!["T4".into()],
                ..task(1000, 1, 500)
            };
            let (r, _) = sched.schedule(&t, &mut c, Mode::Fast);
            let placed = r.unwrap();
            assert_eq!(placed.node, 1, "{policy}: only the T4 node is allowed");
            assert_eq!(placed.gpus.len(), 1);
            // A CPU-only task fits any node; a GPU task for a model nobody has fits none.
            let (r, _) = sched.schedule(&task(1000, 0, 0), &mut c, Mode::Fast);
            assert!(r.is_ok(), "{policy}");
            let h800 = Task {
                models: vec!["H800".into()],
                ..task(1000, 1, 1000)
            };
            assert!(sched.schedule(&h800, &mut c, Mode::Fast).0.is_err());
            // GPU demand needs an accelerator node.
            assert_eq!(c.node(0).spec.chip, Some(Chip::Gpu));
        }
    }
}
