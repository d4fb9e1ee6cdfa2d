//! Samples of the host: CPU, memory, load, disk and network rates, GPUs.

use chrono::Utc;
use cpn_api_types::agent::{GpuMetrics, NodeMetrics};
use nvml_wrapper::Nvml;
use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use std::collections::BTreeMap;
use std::time::Instant;
use sysinfo::{Networks, System};

const MIB: u64 = 1024 * 1024;
const SECTOR_BYTES: f64 = 512.0;

/// Cumulative disk counters of the whole host, summed over whole disks.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct DiskCounters {
    pub reads: u64,
    pub read_sectors: u64,
    pub writes: u64,
    pub write_sectors: u64,
}

/// Takes samples of the host; rates are computed over the interval since the previous
/// sample (zero on the first one).
pub struct MetricsSampler {
    sys: Option<System>,
    networks: Option<Networks>,
    nvml: Option<Nvml>,
    prev: Option<Prev>,
    /// Measures nothing ([`MetricsSampler::emulated`]).
    emulated: bool,
}

struct Prev {
    at: Instant,
    disk: DiskCounters,
    net: BTreeMap<String, (u64, u64)>,
}

impl Default for MetricsSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MetricsSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsSampler")
            .field("nvml", &self.nvml.is_some())
            .finish_non_exhaustive()
    }
}

impl MetricsSampler {
    /// A sampler; NVML is initialized once here (no GPUs where it is not available).
    pub fn new() -> Self {
        let mut sys = System::new().ok();
        if let Some(sys) = sys.as_mut() {
            sys.refresh_cpu_usage();
        }
        let nvml = match Nvml::init() {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::debug!(error = %e, "NVML not available: no GPU metrics");
                None
            }
        };
        MetricsSampler {
            sys,
            networks: Networks::new_with_refreshed_list().ok(),
            nvml,
            prev: None,
            emulated: false,
        }
    }

    /// A sampler for an emulated node: it measures nothing (no host reads, no NVML), and
    /// every sample is zeros with the time.
    pub fn emulated() -> Self {
        MetricsSampler {
            sys: None,
            networks: None,
            nvml: None,
            prev: None,
            emulated: true,
        }
    }

    /// One sample of the host.
    pub fn sample(&mut self) -> NodeMetrics {
        let now = Instant::now();
        let mut m = NodeMetrics {
            at: Utc::now(),
            ..NodeMetrics::default()
        };
        if self.emulated {
            return m;
        }
        if let Some(sys) = self.sys.as_mut() {
            sys.refresh_cpu_usage();
            sys.refresh_memory();
            m.cpu_util_pct = finite_pct(f64::from(sys.global_cpu_usage()));
            let total = sys.total_memory();
            let used = total.saturating_sub(sys.available_memory());
            m.memory_used_mib = used / MIB;
            if total > 0 {
                m.memory_util_pct = finite_pct(used as f64 / total as f64 * 100.0);
            }
        }
        if let Ok(load) = System::load_average() {
            m.load1 = finite(load.one);
            m.load5 = finite(load.five);
            m.load15 = finite(load.fifteen);
        }
        let disk = std::fs::read_to_string("/proc/diskstats")
            .map(|s| parse_diskstats(&s, is_whole_disk))
            .unwrap_or_default();
        let mut net = BTreeMap::new();
        if let Some(networks) = self.networks.as_mut() {
            networks.refresh(true);
            for (name, data) in networks.iter() {
                let name = name.to_string_lossy().into_owned();
                if name != "lo" {
                    net.insert(name, (data.total_received(), data.total_transmitted()));
                }
            }
        }
        if let Some(prev) = &self.prev {
            let secs = now.duration_since(prev.at).as_secs_f64();
            if secs > 0.0 {
                let rate = |a: u64, b: u64| finite(a.saturating_sub(b) as f64 / secs);
                m.disk_read_iops = rate(disk.reads, prev.disk.reads);
                m.disk_write_iops = rate(disk.writes, prev.disk.writes);
                m.disk_read_bytes_per_s =
                    rate(disk.read_sectors, prev.disk.read_sectors) * SECTOR_BYTES;
                m.disk_write_bytes_per_s =
                    rate(disk.write_sectors, prev.disk.write_sectors) * SECTOR_BYTES;
                for (name, (rx, tx)) in &net {
                    if let Some((prx, ptx)) = prev.net.get(name) {
                        m.net_rx_bytes_per_s += rate(*rx, *prx);
                        m.net_tx_bytes_per_s += rate(*tx, *ptx);
                    }
                }
            }
        }
        if let Some(nvml) = &self.nvml {
            m.gpus = gpu_metrics(nvml);
            let watts: Vec<f64> = m.gpus.iter().filter_map(|g| g.power_watts).collect();
            if !watts.is_empty() {
                m.power_watts = Some(watts.iter().sum());
            }
        }
        self.prev = Some(Prev { at: now, disk, net });
        m
    }
}

fn gpu_metrics(nvml: &Nvml) -> Vec<GpuMetrics> {
    let count = nvml.device_count().unwrap_or(0);
    (0..count)
        .filter_map(|index| {
            let dev = nvml.device_by_index(index).ok()?;
            let mem = dev.memory_info().ok();
            Some(GpuMetrics {
                index,
                util_pct: dev
                    .utilization_rates()
                    .map(|u| f64::from(u.gpu))
                    .unwrap_or(0.0),
                memory_used_mib: mem.as_ref().map(|m| m.used / MIB).unwrap_or(0),
                memory_total_mib: mem.as_ref().map(|m| m.total / MIB).unwrap_or(0),
                temperature_c: dev.temperature(TemperatureSensor::Gpu).ok().map(f64::from),
                power_watts: dev.power_usage().ok().map(|mw| f64::from(mw) / 1000.0),
                voltage_v: None,
            })
        })
        .collect()
}

fn finite(x: f64) -> f64 {
    if x.is_finite() { x.max(0.0) } else { 0.0 }
}

fn finite_pct(x: f64) -> f64 {
    finite(x).min(100.0)
}

/// Whole disks: the names `/sys/block` lists, less loop, RAM, zram, device-mapper and md
/// devices (those would count the same I/O twice or are not disks).
fn is_whole_disk(name: &str) -> bool {
    const SKIP: [&str; 5] = ["loop", "ram", "zram", "dm-", "md"];
    if SKIP.iter().any(|p| name.starts_with(p)) {
        return false;
    }
    let sys_name = name.replace('/', "!");
    std::path::Path::new("/sys/block").join(sys_name).exists()
}

/// Sums the counters of `/proc/diskstats` over the devices `keep` accepts.
pub(crate) fn parse_diskstats(text: &str, keep: impl Fn(&str) -> bool) -> DiskCounters {
    let mut c = DiskCounters::default();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 || !keep(f[2]) {
            continue;
        }
        let n = |i: usize| f[i].parse::<u64>().unwrap_or(0);
        c.reads += n(3);
        c.read_sectors += n(5);
        c.writes += n(7);
        c.write_sectors += n(9);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diskstats_sums_whole_disks() {
        let text = "   8       0 sda 100 0 800 0 50 0 400 0 0 0 0\n\
                    8       1 sda1 90 0 700 0 40 0 300 0 0 0 0\n\
                    7       0 loop0 5 0 10 0 0 0 0 0 0 0 0\n\
                  259       0 nvme0n1 10 0 80 0 5 0 40 0 0 0 0\n";
        let c = parse_diskstats(text, |n| !n.starts_with("loop") && n != "sda1");
        assert_eq!(
            c,
            DiskCounters {
                reads: 110,
                read_sectors: 880,
                writes: 55,
                write_sectors: 440
            }
        );
    }

    #[test]
    fn two_samples_are_finite_and_in_range() {
        let mut s = MetricsSampler::new();
        let a = s.sample();
        // Some work and I/O between the samples.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), vec![1u8; 1 << 20]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let b = s.sample();
        for m in [&a, &b] {
            for v in [
                m.cpu_util_pct,
                m.memory_util_pct,
                m.load1,
                m.load5,
                m.load15,
                m.disk_read_iops,
                m.disk_write_iops,
                m.disk_read_bytes_per_s,
                m.disk_write_bytes_per_s,
                m.net_rx_bytes_per_s,
                m.net_tx_bytes_per_s,
            ] {
                assert!(v.is_finite() && v >= 0.0, "{v} in {m:?}");
            }
            assert!(m.cpu_util_pct <= 100.0);
            assert!(m.memory_util_pct <= 100.0);
        }
        assert!(b.memory_used_mib > 0);
        assert!(b.memory_util_pct > 0.0);
        assert!(b.at >= a.at);
        if s.nvml.is_none() {
            assert!(b.gpus.is_empty());
            assert_eq!(b.power_watts, None);
        }
    }

    #[test]
    fn an_emulated_sampler_measures_nothing() {
        let mut s = MetricsSampler::emulated();
        let m = s.sample();
        assert_eq!(
            NodeMetrics {
                at: m.at,
                ..NodeMetrics::default()
            },
            m
        );
    }
}
