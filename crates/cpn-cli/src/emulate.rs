//! Emulated nodes for the demo federation (issue #13, "the demo comes alive").
//!
//! The demo registers thousands of GPUs on ten national sites and no machine answers for
//! them, so without help the binder has nothing there to place on. When the data dir holds
//! the demo, `cpn serve` runs one emulated node per CPU and GPU offer of each demo site,
//! scaled down ([`MAX_CORES`], [`MAX_GPUS`]), as in-process agents ([`cpn_agent::spawn`]
//! with [`cpn_agent::EmulatedInventory`]). Each is an ordinary node: it joins through the
//! normal flow (a single-use join token made here, then its own credential kept in
//! `DATA_DIR/emulated/SITE/NODE/`), names its offer with the `cpn.node/resource` label so
//! the live state prices it as that offer, heartbeats at the server's interval and runs
//! its tasks as real processes on this machine under the local agent's isolation (one
//! identities file for all, so a tenant has one uid on this host). What is emulated is the
//! inventory it reports: cores, memory, chip, model and architecture, and GPUs by index
//! only. NPU offers get no node (agents detect NVIDIA GPUs only): they stay planning
//! targets.

use anyhow::Context;
use cpn_api_types::registry::ChipType;
use cpn_server::RunningServer;
use cpn_server::inventory::{DEFAULT_GIB_PER_CORE, RegistryModel};
use cpn_server::runtime::livestate::OFFER_LABEL;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Cores of an emulated node at most.
pub const MAX_CORES: u32 = 32;
/// GPUs of an emulated node at most.
pub const MAX_GPUS: u32 = 8;
/// Host memory of an emulated GPU node.
pub const GPU_NODE_MEMORY_GIB: u64 = 256;
/// Local disk of every emulated node (what tasks' `storage_gib` fits in).
pub const DISK_GIB: f64 = 1024.0;
/// Under the data dir: one state dir per emulated node, `emulated/SITE/NODE`.
pub const DIR: &str = "emulated";

/// One emulated node to run.
#[derive(Debug, Clone, PartialEq)]
pub struct EmulatedNode {
    pub site: String,
    /// `emu-` and the offer's name without its site's (`horinger-a100` → `emu-a100`).
    pub name: String,
    /// The compute resource it stands for.
    pub offer: String,
    pub inventory: cpn_agent::EmulatedInventory,
}

/// One node per CPU or GPU offer of the named sites (those the registry still has), in
/// registry order: a CPU offer becomes `min(count, MAX_CORES)` cores of its model and
/// architecture with its host memory per core; a GPU offer `min(count, MAX_GPUS)` GPUs of
/// its model with [`MAX_CORES`] cores and [`GPU_NODE_MEMORY_GIB`]; each with [`DISK_GIB`].
pub fn plan(model: &RegistryModel, sites: &[String]) -> Vec<EmulatedNode> {
    let mut out = Vec::new();
    for (si, site) in model.sites.iter().enumerate() {
        if !sites.contains(&site.name) {
            continue;
        }
        for (_, o) in model.offers_of(si) {
            let c = &o.compute;
            let count = u32::try_from(c.count).unwrap_or(u32::MAX);
            if count == 0 {
                continue;
            }
            let inventory = match c.chip_type {
                ChipType::Cpu => {
                    let cores = count.min(MAX_CORES);
                    let per_core = if c.memory_gib > 0.0 {
                        c.memory_gib
                    } else {
                        DEFAULT_GIB_PER_CORE
                    };
                    cpn_agent::EmulatedInventory {
                        cpu_model: c.model.clone(),
                        arch: c.architecture.clone(),
                        cpu_cores: cores,
                        memory_mib: (cores as f64 * per_core * 1024.0) as u64,
                        gpus: 0,
                        gpu_model: String::new(),
                        gpu_memory_mib: 0,
                        disk_gib: DISK_GIB,
                    }
                }
                ChipType::Gpu => cpn_agent::EmulatedInventory {
                    cpu_model: "emulated host CPU".into(),
                    arch: "x86_64".into(),
                    cpu_cores: MAX_CORES,
                    memory_mib: GPU_NODE_MEMORY_GIB * 1024,
                    gpus: count.min(MAX_GPUS),
                    gpu_model: c.model.clone(),
                    gpu_memory_mib: (c.memory_gib.max(0.0) * 1024.0) as u64,
                    disk_gib: DISK_GIB,
                },
                ChipType::Npu | ChipType::Dcu | ChipType::Fpga => continue,
            };
            let short = o
                .name
                .strip_prefix(&format!("{}-", site.name))
                .unwrap_or(&o.name);
            out.push(EmulatedNode {
                site: site.name.clone(),
                name: format!("emu-{short}"),
                offer: o.name.clone(),
                inventory,
            });
        }
    }
    out
}

/// The names of the bundled demo's sites.
pub fn demo_sites() -> anyhow::Result<Vec<String>> {
    let scenario = cpn_server::scenario::parse_yaml(cpn_server::scenario::DEMO_SCENARIO)
        .map_err(|e| anyhow::anyhow!("bundled scenario: {e}"))?;
    Ok(scenario.sites.into_iter().map(|s| s.name).collect())
}

/// The state dir of an emulated node.
pub fn state_dir(data_dir: &Path, node: &EmulatedNode) -> PathBuf {
    data_dir.join(DIR).join(&node.site).join(&node.name)
}

/// Starts the emulated nodes of the demo when the data dir holds it; none otherwise.
/// `server` is the loopback URL the local agent uses; `isolation` the local agent's (its
/// identities file is then shared).
pub async fn start(
    server: &RunningServer,
    isolation: &cpn_agent::IsolationConfig,
) -> anyhow::Result<Vec<cpn_agent::AgentHandle>> {
    if !server.holds_demo().await? {
        return Ok(Vec::new());
    }
    let data_dir = server.data_dir.as_path();
    let model = server.registry_model().await?;
    let nodes = plan(&model, &demo_sites()?);
    let mut isolation = isolation.clone();
    isolation
        .identities_file
        .get_or_insert_with(|| data_dir.join("agent").join("identities.json"));
    let mut handles = Vec::with_capacity(nodes.len());
    let mut sites = std::collections::BTreeSet::new();
    for node in nodes {
        let dir = state_dir(data_dir, &node);
        let saved = cpn_agent::saved_credential(&dir);
        let join_token = server
            .in_process_agent_token(
                &node.site,
                saved.as_ref().map(|s| s.credential.as_str()),
                &format!("emulated node {} of cpn serve", node.name),
            )
            .await
            .with_context(|| format!("issue the join token of emulated node {}", node.name))?;
        let mut agent = cpn_agent::AgentConfig::new(&server.url, node.site.clone(), dir);
        agent.join_token = join_token;
        agent.ca_pem = server.ca_pem();
        agent.name = Some(node.name.clone());
        agent.labels = BTreeMap::from([(OFFER_LABEL.to_string(), node.offer.clone())]);
        agent.isolation = isolation.clone();
        agent.emulate = Some(node.inventory);
        sites.insert(node.site);
        handles.push(
            cpn_agent::spawn(agent)
                .with_context(|| format!("start emulated node {}", node.name))?,
        );
    }
    if !handles.is_empty() {
        eprintln!(
            "emulated nodes: {} for the {} demo sites, running their tasks on this machine (turn off with --no-emulated-nodes)",
            handles.len(),
            sites.len()
        );
    }
    Ok(handles)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpn_server::inventory::{RegOffer, RegSite};
    use cpn_server::runtime::livestate::fulfils;

    /// The bundled demo as the registry model would hold it (sites and compute offers).
    fn demo_model() -> RegistryModel {
        let scenario =
            cpn_server::scenario::parse_yaml(cpn_server::scenario::DEMO_SCENARIO).unwrap();
        let mut m = RegistryModel::default();
        for s in &scenario.sites {
            m.site_index.insert(s.name.clone(), m.sites.len());
            m.sites.push(RegSite {
                id: s.name.clone(),
                name: s.name.clone(),
                public: true,
                tenant: "t".into(),
                health: Default::default(),
                spec: Default::default(),
            });
            m.site_offers.push(Vec::new());
        }
        for r in &scenario.resources {
            let Some(compute) = r.spec.compute.clone() else {
                continue;
            };
            let site = m.site_index[&r.spec.site];
            m.site_offers[site].push(m.offers.len());
            m.offers.push(RegOffer {
                id: r.name.clone(),
                name: r.name.clone(),
                public: true,
                tenant: "t".into(),
                site,
                labels: Default::default(),
                compute,
                isolated: false,
            });
        }
        m
    }

    #[test]
    fn every_cpu_and_gpu_offer_of_the_demo_gets_one_small_node_that_fulfils_it() {
        let model = demo_model();
        let sites = demo_sites().unwrap();
        let nodes = plan(&model, &sites);
        let cpu_gpu: Vec<&RegOffer> = model
            .offers
            .iter()
            .filter(|o| matches!(o.compute.chip_type, ChipType::Cpu | ChipType::Gpu))
            .collect();
        assert_eq!(nodes.len(), cpu_gpu.len());
        assert!(nodes.len() >= 10, "{nodes:?}");
        for site in &sites {
            assert!(
                nodes.iter().any(|n| &n.site == site),
                "demo site {site} has no emulated node"
            );
        }
        let mut names = std::collections::BTreeSet::new();
        for n in &nodes {
            let o = model.offers.iter().find(|o| o.name == n.offer).unwrap();
            let inv = n.inventory.inventory();
            assert!(inv.emulated);
            assert!(inv.cpu_cores <= MAX_CORES && inv.gpus.len() as u32 <= MAX_GPUS);
            assert!(
                fulfils(&o.compute, &inv).is_ok(),
                "{n:?}: {:?}",
                fulfils(&o.compute, &inv)
            );
            cpn_model::validate_name(&n.name).unwrap();
            assert!(
                names.insert((n.site.clone(), n.name.clone())),
                "{n:?} twice"
            );
        }
        let a100 = nodes.iter().find(|n| n.offer == "horinger-a100").unwrap();
        assert_eq!(
            (a100.site.as_str(), a100.name.as_str()),
            ("horinger", "emu-a100")
        );
        assert_eq!(a100.inventory.gpus, 8);
        // Other sites than the demo's get nothing.
        assert!(plan(&model, &["elsewhere".to_string()]).is_empty());
    }
}
