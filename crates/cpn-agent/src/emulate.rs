//! Emulated nodes: an agent that reports a given inventory instead of the host's.
//!
//! `cpn serve` runs a few of them for the demo federation's sites, so that its national
//! sites have live machines; `cpn agent --emulate-gpus N` makes one of a real agent (the
//! host's CPUs, memory and disk, N GPUs that do not exist), for marketplace tests and
//! demonstrations on machines without GPUs. Everything else is real: the node joins with its own
//! credential, heartbeats, and runs its tasks as processes on this host under the same
//! isolation as any agent. What is emulated is only what the node says it has: cores,
//! memory, CPU model and architecture, and GPUs, which exist by index only (a task bound to
//! GPU 3 gets `CUDA_VISIBLE_DEVICES=3`; no device is behind it). Emulated nodes report no
//! measurements: their metrics are zeros.

use crate::inventory::host_name;
use cpn_api_types::agent::{DiskInfo, GpuInfo, NodeInventory};

/// What an emulated node says it is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct EmulatedInventory {
    /// CPU model, as a registered offer names it (`Xeon-8358`).
    pub cpu_model: String,
    /// Instruction set (`x86_64`, `arm64`).
    pub arch: String,
    pub cpu_cores: u32,
    pub memory_mib: u64,
    /// GPUs, numbered 0..gpus.
    pub gpus: u32,
    /// Model of every GPU (`A100-80G`).
    pub gpu_model: String,
    pub gpu_memory_mib: u64,
    /// Local disk in GiB, reported as one disk mounted at `/emulated` (tasks asking for
    /// storage fit by it; nothing is reserved on the host).
    pub disk_gib: f64,
}

impl EmulatedInventory {
    /// The inventory the node registers with: marked `emulated`, the host's name (its
    /// tasks run here).
    pub fn inventory(&self) -> NodeInventory {
        NodeInventory {
            hostname: host_name(),
            os: "emulated".into(),
            kernel: String::new(),
            arch: self.arch.clone(),
            cpu_model: self.cpu_model.clone(),
            cpu_cores: self.cpu_cores.max(1),
            physical_cores: None,
            memory_mib: self.memory_mib,
            disks: (self.disk_gib > 0.0)
                .then(|| DiskInfo {
                    mount: "/emulated".into(),
                    device: "emulated".into(),
                    filesystem: "emulated".into(),
                    total_gib: self.disk_gib,
                    available_gib: self.disk_gib,
                })
                .into_iter()
                .collect(),
            gpus: (0..self.gpus)
                .map(|index| GpuInfo {
                    index,
                    uuid: format!("emulated-{index}"),
                    model: self.gpu_model.clone(),
                    memory_mib: self.gpu_memory_mib,
                })
                .collect(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            isolation: None,
            emulated: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emulated_inventory_says_so_and_numbers_its_gpus() {
        let inv = EmulatedInventory {
            cpu_model: "Xeon-8358".into(),
            arch: "x86_64".into(),
            cpu_cores: 32,
            memory_mib: 256 * 1024,
            gpus: 8,
            gpu_model: "A100-80G".into(),
            gpu_memory_mib: 80 * 1024,
            disk_gib: 1024.0,
        }
        .inventory();
        assert!(inv.emulated);
        assert_eq!(inv.cpu_cores, 32);
        assert_eq!(inv.gpus.len(), 8);
        assert_eq!(inv.gpus[3].index, 3);
        assert!(inv.gpus.iter().all(|g| g.model == "A100-80G"));
        assert_eq!(inv.disks[0].available_gib, 1024.0);
        let json = serde_json::to_value(&inv).unwrap();
        assert_eq!(json["emulated"], true);
        // A real host's inventory does not carry the field at all.
        let real = serde_json::to_value(NodeInventory::default()).unwrap();
        assert!(real.get("emulated").is_none());
    }
}
