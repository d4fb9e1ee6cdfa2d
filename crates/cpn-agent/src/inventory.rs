//! What the host is made of: the inventory an agent sends when it registers.

use cpn_api_types::agent::{DiskInfo, GpuInfo, NodeInventory};
use nvml_wrapper::Nvml;
use std::collections::BTreeSet;
use sysinfo::{Disks, System};

const MIB: u64 = 1024 * 1024;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Reads the host's inventory. Never fails: what cannot be read is left empty or zero
/// (GPUs are empty where NVML is not available).
pub fn inventory() -> NodeInventory {
    let mut sys = System::new().ok();
    if let Some(sys) = sys.as_mut() {
        sys.refresh_memory();
        sys.refresh_cpu_all();
    }
    let cpu_model = sys
        .as_ref()
        .and_then(|s| s.cpus().first().map(|c| c.brand().trim().to_string()))
        .unwrap_or_default();
    let listed_cpus = sys.as_ref().map(|s| s.cpus().len()).unwrap_or(0);
    let cpu_cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(listed_cpus)
        .max(1);
    let memory_mib = sys.as_ref().map(|s| s.total_memory() / MIB).unwrap_or(0);
    NodeInventory {
        hostname: host_name(),
        os: System::long_os_version()
            .or_else(|_| System::name())
            .unwrap_or_default(),
        kernel: System::kernel_version().unwrap_or_default(),
        arch: System::cpu_arch(),
        cpu_model,
        cpu_cores: u32::try_from(cpu_cores).unwrap_or(u32::MAX),
        physical_cores: System::physical_core_count()
            .ok()
            .and_then(|n| u32::try_from(n).ok()),
        memory_mib,
        disks: disks(),
        gpus: gpus(),
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        // Filled by the agent from its runner, which found it at start.
        isolation: None,
        emulated: false,
    }
}

/// The host name, from the kernel; "localhost" where none can be read.
pub fn host_name() -> String {
    System::host_name()
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "localhost".to_string())
}

fn disks() -> Vec<DiskInfo> {
    let Ok(disks) = Disks::new_with_refreshed_list() else {
        return Vec::new();
    };
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for d in disks.iter() {
        let mount = d.mount_point().to_string_lossy().into_owned();
        if d.total_space() == 0 || !seen.insert(mount.clone()) {
            continue;
        }
        out.push(DiskInfo {
            mount,
            device: d.name().to_string_lossy().into_owned(),
            filesystem: d.file_system().to_string_lossy().into_owned(),
            total_gib: d.total_space() as f64 / GIB,
            available_gib: d.available_space() as f64 / GIB,
        });
    }
    out
}

fn gpus() -> Vec<GpuInfo> {
    match Nvml::init() {
        Ok(nvml) => gpu_infos(&nvml),
        Err(e) => {
            tracing::debug!(error = %e, "NVML not available: no GPUs");
            Vec::new()
        }
    }
}

/// The GPUs NVML lists.
pub(crate) fn gpu_infos(nvml: &Nvml) -> Vec<GpuInfo> {
    let count = nvml.device_count().unwrap_or(0);
    (0..count)
        .filter_map(|index| {
            let dev = nvml.device_by_index(index).ok()?;
            Some(GpuInfo {
                index,
                uuid: dev.uuid().unwrap_or_default(),
                model: dev.name().unwrap_or_default(),
                memory_mib: dev.memory_info().map(|m| m.total / MIB).unwrap_or(0),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_reads_the_host() {
        let inv = inventory();
        assert!(inv.cpu_cores > 0);
        assert!(inv.memory_mib > 0);
        assert!(!inv.hostname.is_empty());
        if Nvml::init().is_err() {
            assert!(inv.gpus.is_empty(), "no NVML, so no GPUs");
        }
        assert_eq!(inv.agent_version, env!("CARGO_PKG_VERSION"));
        assert!(!inv.arch.is_empty());
    }
}
