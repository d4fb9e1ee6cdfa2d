//! Chip filter: the site must offer, and the node must be, an accelerator kind, model and
//! architecture the task accepts (`Resolved::accepts`). Hardware does not change under a
//! task, so a mismatch is permanent.

use crate::cluster::{Cluster, NodeIdx, SiteIdx, Sym};
use crate::framework::{CycleState, NodeFilter, Plugin, SiteFilter, Verdict};
use crate::plugins::resolved;
use crate::task::{Chip, Task};

pub const NAME: &str = "chip_model";

/// Nothing at the site (or on the node) is a chip, model and architecture the task accepts.
pub const NO_MATCHING_CHIP: &str = "no_matching_chip";

#[derive(Debug, Clone, Copy, Default)]
pub struct ChipModel;

impl Plugin for ChipModel {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_site_filter(&self) -> Option<&dyn SiteFilter> {
        Some(self)
    }
    fn as_node_filter(&self) -> Option<&dyn NodeFilter> {
        Some(self)
    }
}

impl SiteFilter for ChipModel {
    fn filter_site(
        &self,
        state: &CycleState,
        task: &Task,
        cluster: &Cluster,
        site: SiteIdx,
    ) -> Verdict {
        let s = cluster.site(site);
        if resolved(state).offers(task, s).next().is_some() {
            return Verdict::Fits;
        }
        Verdict::RejectsForever(state.reason(NAME, NO_MATCHING_CHIP, || {
            let offered: Vec<String> = s
                .offers
                .iter()
                .map(|o| kind(cluster, o.chip, o.model, o.architecture))
                .collect();
            format!(
                "site {} offers [{}]; the task wants {}",
                s.spec.name,
                offered.join(", "),
                wanted(task)
            )
        }))
    }
}

impl NodeFilter for ChipModel {
    fn filter_node(
        &self,
        state: &CycleState,
        task: &Task,
        cluster: &Cluster,
        node: NodeIdx,
    ) -> Verdict {
        let n = cluster.node(node);
        if resolved(state).accepts(task, n.spec.chip, n.model, n.architecture) {
            return Verdict::Fits;
        }
        Verdict::RejectsForever(state.reason(NAME, NO_MATCHING_CHIP, || {
            format!(
                "node {} is {}; the task wants {}",
                n.spec.name,
                kind(cluster, n.spec.chip, n.model, n.architecture),
                wanted(task)
            )
        }))
    }
}

/// `chip/model/architecture` of an offer or node.
fn kind(cluster: &Cluster, chip: Option<Chip>, model: Sym, arch: Sym) -> String {
    format!(
        "{}/{}/{}",
        chip.map_or("none", Chip::as_str),
        cluster.symbols.name(model),
        cluster.symbols.name(arch)
    )
}

/// What the task accepts, in the same shape.
fn wanted(task: &Task) -> String {
    let chip = match task.chip {
        Some(c) => c.as_str(),
        None if task.demand.gpus > 0 => "any accelerator",
        None => "any chip",
    };
    let list = |v: &[String]| {
        if v.is_empty() {
            "*".to_string()
        } else {
            v.join("|")
        }
    };
    format!(
        "{chip}/{}/{}",
        list(&task.models),
        list(&task.architectures)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterBuilder;
    use crate::plugins::testkit::{cpu_node, cpu_task, gpu_node, gpu_task, site, state};

    #[test]
    fn sites_need_one_acceptable_offer_and_nodes_must_be_acceptable() {
        let mut b = ClusterBuilder::new();
        let a100 = b.site(site("a", "east"));
        let cpus = b.site(site("c", "east"));
        b.node(gpu_node("a100", a100, "A100", 8));
        b.node(cpu_node("xeon", a100, 32));
        b.node(cpu_node("xeon2", cpus, 32));
        let c = b.build().unwrap();
        let verdict = |t: &Task, s| ChipModel.filter_site(&state(t, &c, &ChipModel), t, &c, s);
        let node = |t: &Task, n| ChipModel.filter_node(&state(t, &c, &ChipModel), t, &c, n);

        // GPU demand without a named chip needs an accelerator.
        let gpu = gpu_task(1);
        assert_eq!(verdict(&gpu, a100), Verdict::Fits);
        let v = verdict(&gpu, cpus);
        assert!(matches!(&v, Verdict::RejectsForever(r) if r.code == NO_MATCHING_CHIP));
        assert_eq!(
            v.reason().unwrap().detail.as_deref(),
            Some("site c offers [cpu/xeon/x86_64]; the task wants any accelerator/*/*")
        );
        assert_eq!(node(&gpu, 0), Verdict::Fits);
        assert!(matches!(node(&gpu, 1), Verdict::RejectsForever(_)));

        // A named model absent from the site.
        let h800 = Task {
            models: vec!["H800".into()],
            ..gpu_task(1)
        };
        assert!(matches!(verdict(&h800, a100), Verdict::RejectsForever(_)));
        assert!(matches!(node(&h800, 0), Verdict::RejectsForever(_)));

        // CPU tasks take any chip; asking for CPU excludes the GPU node.
        let cpu = cpu_task(1000);
        assert_eq!(verdict(&cpu, cpus), Verdict::Fits);
        assert_eq!(node(&cpu, 0), Verdict::Fits);
        let cpu_only = Task {
            chip: Some(Chip::Cpu),
            ..cpu_task(1000)
        };
        assert!(matches!(node(&cpu_only, 0), Verdict::RejectsForever(_)));
        assert_eq!(node(&cpu_only, 1), Verdict::Fits);

        // Architecture.
        let arm = Task {
            architectures: vec!["aarch64".into()],
            ..cpu_task(1000)
        };
        assert!(matches!(verdict(&arm, cpus), Verdict::RejectsForever(_)));
    }
}
