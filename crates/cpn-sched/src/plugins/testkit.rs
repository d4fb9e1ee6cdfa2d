//! Fixtures shared by the plugin unit tests: specs for tiny clusters and the cycle state the
//! runner would build, so each test reads as its hand-computed numbers.

use crate::Cluster;
use crate::cluster::{NodeSpec, SiteIdx, SiteSpec};
use crate::framework::{CycleState, Plugin};
use crate::task::{Chip, Demand, Resolved, Task};

/// A healthy site with PUE 1 and no prices.
pub fn site(name: &str, region: &str) -> SiteSpec {
    SiteSpec {
        name: name.into(),
        region: region.into(),
        healthy: true,
        pue: 1.0,
        ..Default::default()
    }
}

/// A healthy GPU node: 16 cores, 64 GiB, 100 GiB disk.
pub fn gpu_node(name: &str, site: SiteIdx, model: &str, gpus: u32) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        site,
        healthy: true,
        cpu_milli: 16_000,
        memory_mib: 65_536,
        storage_gib: 100,
        chip: Some(Chip::Gpu),
        model: model.into(),
        architecture: "x86_64".into(),
        gpus,
        ..Default::default()
    }
}

/// A healthy CPU-only node with `cores` cores and 4 GiB per core.
pub fn cpu_node(name: &str, site: SiteIdx, cores: u64) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        site,
        healthy: true,
        cpu_milli: cores * 1000,
        memory_mib: cores * 4096,
        storage_gib: 100,
        chip: Some(Chip::Cpu),
        model: "xeon".into(),
        architecture: "x86_64".into(),
        ..Default::default()
    }
}

/// A task asking for `gpus` whole GPUs and one core.
pub fn gpu_task(gpus: u32) -> Task {
    Task {
        id: "t".into(),
        tenant: "acme".into(),
        demand: Demand {
            cpu_milli: 1000,
            memory_mib: 1024,
            gpus,
            gpu_milli: 1000,
            storage_gib: 0,
        },
        ..Default::default()
    }
}

/// A CPU-only task asking for `cpu_milli`.
pub fn cpu_task(cpu_milli: u64) -> Task {
    Task {
        id: "t".into(),
        tenant: "acme".into(),
        demand: Demand {
            cpu_milli,
            memory_mib: 1024,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The state the runner builds before filtering: explaining, `Resolved` in, `plugin`
/// prepared.
pub fn state(task: &Task, cluster: &Cluster, plugin: &dyn Plugin) -> CycleState {
    let mut state = CycleState::new(true);
    state.put(Resolved::new(task, cluster));
    plugin.prepare(task, cluster, &mut state);
    state
}
