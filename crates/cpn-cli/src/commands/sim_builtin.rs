//! The GPU trace built into `cpn`: the GPU node list, the `default` pod list and the
//! published allocation results of the repository's `data/alibaba-gpu-v2023`, which
//! `cpn sim gpu` replays when no `--data` is given.
//!
//! Embedded rather than looked up at run time: a path relative to the working directory
//! works only from the repository root, and one fixed at build time (`CARGO_MANIFEST_DIR`)
//! breaks once the binary or the checkout moves; embedded, the default run works from any
//! directory with nothing beside the binary. It costs 0.95 MB (42 KB of nodes, 575 KB of
//! pods, 337 KB of results) in a release binary of some 38 MB. The six other traces of the
//! folder (3.3 MB) are not embedded: `--data` reads them, as it reads any other trace.

/// Where the embedded files come from, for messages.
pub const ORIGIN: &str = "data/alibaba-gpu-v2023";

/// `openb_node_list_gpu_node.csv`: the 1213 GPU nodes the paper simulates.
pub const NODES: &str =
    include_str!("../../../../data/alibaba-gpu-v2023/openb_node_list_gpu_node.csv");

/// The embedded pod lists by short trace name (`openb_pod_list_NAME.csv`).
pub const TRACES: &[(&str, &str)] = &[(
    "default",
    include_str!("../../../../data/alibaba-gpu-v2023/openb_pod_list_default.csv"),
)];

/// `fgd-expected-results/analysis_allo_discrete.csv`: the authors' allocation ratios.
pub const PUBLISHED_ALLO: &str = include_str!(
    "../../../../data/alibaba-gpu-v2023/fgd-expected-results/analysis_allo_discrete.csv"
);

/// The embedded pod list of a trace, `None` when it is not built in.
pub fn trace(name: &str) -> Option<&'static str> {
    TRACES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
}

/// The names of the embedded traces, comma separated.
pub fn names() -> String {
    TRACES
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_files_parse_and_are_the_papers_cluster() {
        let nodes = cpn_sim::trace::parse_nodes("nodes", NODES).unwrap();
        assert_eq!(nodes.len(), 1213);
        assert_eq!(cpn_sim::trace::gpu_capacity_milli(&nodes), 6_212_000);
        let pods = cpn_sim::trace::parse_pods("default", trace("default").unwrap()).unwrap();
        assert_eq!(pods.len(), 8152);
        let published = cpn_sim::published::Published::parse("allo", PUBLISHED_ALLO).unwrap();
        assert_eq!(published.values_at("default", "fgd", 100).len(), 10);
        assert!(trace("cpu050").is_none());
    }
}
