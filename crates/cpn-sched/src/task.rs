//! What a task asks of the federation: per-replica demand and the constraints and
//! preferences the plugins read.

use crate::cluster::{Cluster, Offer, Site, Sym};
use cpn_model::{Labels, Selector};

/// Per-replica demand. GPUs follow the sharing model of the GPU trace work: a node has N
/// GPUs of 1000 milli each; a task asks for `gpus` GPUs with `gpu_milli` of each. A share
/// below 1000 is only meaningful for a single GPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Demand {
    pub cpu_milli: u64,
    pub memory_mib: u64,
    pub gpus: u32,
    /// Milli of each GPU, 1..=1000; ignored when `gpus` is 0.
    pub gpu_milli: u32,
    pub storage_gib: u64,
}

impl Demand {
    /// Total GPU milli asked for.
    pub fn gpu_milli_total(&self) -> u64 {
        if self.gpus == 0 {
            0
        } else {
            self.gpus as u64 * self.gpu_milli.clamp(1, 1000) as u64
        }
    }

    /// True when the task needs whole GPUs (or none), false for a shared fraction.
    pub fn whole_gpus(&self) -> bool {
        self.gpus == 0 || self.gpu_milli >= 1000
    }
}

/// Kinds of chip a task may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Chip {
    Cpu,
    Gpu,
    Npu,
    Other,
}

impl Chip {
    pub fn parse(s: &str) -> Option<Chip> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Some(Chip::Cpu),
            "gpu" => Some(Chip::Gpu),
            "npu" => Some(Chip::Npu),
            "dcu" | "fpga" | "other" => Some(Chip::Other),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Chip::Cpu => "cpu",
            Chip::Gpu => "gpu",
            Chip::Npu => "npu",
            Chip::Other => "other",
        }
    }
}

/// A task as the scheduler sees it. Strings are resolved against the cluster's symbols at
/// the start of each cycle.
#[derive(Debug, Clone, Default)]
pub struct Task {
    pub id: String,
    pub tenant: String,
    /// Business type (业务类型), matched by policies.
    pub business: Option<String>,
    /// Region the task's data or users are in; latency is measured from there.
    pub origin_region: Option<String>,
    pub priority: i32,
    pub demand: Demand,
    /// Accelerator kind wanted; `None` takes whatever fits (CPU-only when `gpus` is 0).
    pub chip: Option<Chip>,
    /// Acceptable chip models; empty accepts any.
    pub models: Vec<String>,
    /// Acceptable architectures; empty accepts any.
    pub architectures: Vec<String>,
    /// Data residency: the site's region must be one of these (empty: anywhere).
    pub regions_in: Vec<String>,
    /// Data residency: the site's region must not be one of these.
    pub regions_not_in: Vec<String>,
    /// Sites must match this selector over their labels.
    pub site_selector: Selector,
    /// Nodes must match this selector over their labels.
    pub node_selector: Selector,
    /// Preferred regions (soft).
    pub affinity_regions: Vec<String>,
    /// Regions to avoid (soft).
    pub anti_affinity_regions: Vec<String>,
    /// Preferred chip models, most preferred first (soft).
    pub preferred_models: Vec<String>,
    /// Expected run time, for cost and energy estimates.
    pub est_hours: f64,
    pub labels: Labels,
}

/// A task's strings resolved against the cluster's symbols, computed once per cycle by the
/// runner and put in the cycle state before any plugin runs.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    /// `None`: any model. `Some(empty)`: the task named only models no node has.
    pub models: Option<Vec<Sym>>,
    pub architectures: Option<Vec<Sym>>,
    /// Preferred models, most preferred first; unknown names are dropped.
    pub preferred: Vec<Sym>,
}

impl Resolved {
    pub fn new(task: &Task, cluster: &Cluster) -> Resolved {
        let resolve = |names: &[String]| -> Option<Vec<Sym>> {
            (!names.is_empty()).then(|| {
                names
                    .iter()
                    .filter_map(|n| cluster.symbols.get(n))
                    .collect()
            })
        };
        Resolved {
            models: resolve(&task.models),
            architectures: resolve(&task.architectures),
            preferred: task
                .preferred_models
                .iter()
                .filter_map(|n| cluster.symbols.get(n))
                .collect(),
        }
    }

    /// Whether an offer's chip, model and architecture are acceptable to the task.
    pub fn accepts(&self, task: &Task, chip: Option<Chip>, model: Sym, architecture: Sym) -> bool {
        let chip_ok = match task.chip {
            Some(want) => chip == Some(want),
            // No chip named: GPU demand needs an accelerator, CPU demand takes anything.
            None => {
                task.demand.gpus == 0 || matches!(chip, Some(Chip::Gpu | Chip::Npu | Chip::Other))
            }
        };
        chip_ok
            && self.models.as_ref().is_none_or(|m| m.contains(&model))
            && self
                .architectures
                .as_ref()
                .is_none_or(|a| a.contains(&architecture))
    }

    /// The site's offers acceptable to the task.
    pub fn offers<'a>(
        &'a self,
        task: &'a Task,
        site: &'a Site,
    ) -> impl Iterator<Item = &'a Offer> + 'a {
        site.offers
            .iter()
            .filter(move |o| self.accepts(task, o.chip, o.model, o.architecture))
    }
}
