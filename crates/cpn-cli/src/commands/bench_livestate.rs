//! `cpn bench livestate`: what one event costs the live federation state (issue #13: "a
//! heartbeat or registry change updates the live state in O(changed objects), not
//! O(cluster): measure update cost at 5,000 and 50,000 nodes"). In process, on synthetic
//! clusters of --sites sites, half full, each event applied to the `cpn_sched::Cluster` the
//! binder keeps (the binder adds an O(1) derivation of the node's spec from its record);
//! a full rebuild of the same cluster, what every binder cycle paid before, is the
//! reference.

use anyhow::{Result, bail};
use cpn_sched::cluster::GpuPick;
use cpn_sched::{Cluster, ClusterBuilder, NodeIdx, NodeSpec, SiteIdx, synthetic};
use std::hint::black_box;
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct BenchLivestateArgs {
    /// Cluster sizes (nodes), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "5000,50000")]
    pub nodes: Vec<usize>,
    /// Sites the nodes are spread over.
    #[arg(long, default_value_t = 50)]
    pub sites: usize,
    /// Events timed per kind.
    #[arg(long, default_value_t = 2000)]
    pub events: usize,
    /// Seed of the synthetic clusters.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

pub fn run(args: BenchLivestateArgs) -> Result<()> {
    if args.sites == 0 || args.events == 0 || args.nodes.iter().any(|&n| n < args.sites) {
        bail!("--sites and --events must be at least 1, and every --nodes at least --sites");
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; the figures mean something only with --release");
    }
    println!(
        "cpn bench livestate: one event applied to the live cluster, {} sites (seed {})",
        args.sites, args.seed
    );
    println!(
        "{:<44} {:>8} {:>12} {:>12}",
        "event", "nodes", "mean", "p99"
    );
    for &nodes in &args.nodes {
        size(&args, nodes);
    }
    Ok(())
}

/// Times `f` once per event; prints mean and p99.
fn timed(what: &str, nodes: usize, events: usize, mut f: impl FnMut(usize)) {
    let mut t: Vec<Duration> = Vec::with_capacity(events);
    for i in 0..events {
        let start = Instant::now();
        f(i);
        t.push(start.elapsed());
    }
    t.sort();
    let mean = t.iter().sum::<Duration>() / events as u32;
    let p99 = t[(events * 99 / 100).min(events - 1)];
    println!("{what:<44} {nodes:>8} {:>12} {:>12}", fmt(mean), fmt(p99));
}

fn fmt(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.2} µs")
    }
}

fn specs(c: &Cluster) -> Vec<NodeSpec> {
    c.nodes.iter().map(|n| n.spec.clone()).collect()
}

fn rebuild(c: &Cluster, nodes: &[NodeSpec]) -> Cluster {
    let mut b = ClusterBuilder::new();
    for s in &c.sites {
        b.site(s.spec.clone());
    }
    for n in nodes {
        b.node(n.clone());
    }
    b.build().expect("a synthetic cluster builds")
}

fn size(args: &BenchLivestateArgs, nodes: usize) {
    let per_site = nodes / args.sites;
    let mut c = synthetic::cluster(args.sites, per_site, args.seed);
    let n = c.nodes.len();
    // Half full, as a loaded federation is: reservations spread over every node.
    for (i, t) in synthetic::tasks(n * 2, args.seed).iter().enumerate() {
        let _ = c.reserve(&t.tenant, (i % n) as NodeIdx, &t.demand, GpuPick::BestFit);
    }
    let all = specs(&c);
    let events = args.events;
    let pick = |i: usize| ((i * 7919) % n) as NodeIdx;

    timed("heartbeat, nothing the scheduler sees", n, events, |i| {
        let k = pick(i);
        black_box(c.update_node(k, all[k as usize].clone()).ok());
    });
    timed("heartbeat, node lost (and back)", n, events, |i| {
        let k = pick(i);
        let mut spec = all[k as usize].clone();
        spec.healthy = i % 2 == 1 && spec.healthy;
        black_box(c.update_node(k, spec).ok());
    });
    for (k, spec) in all.iter().enumerate() {
        let _ = c.update_node(k as NodeIdx, spec.clone());
    }
    timed("node joins (at its place by name)", n, events, |i| {
        let mut spec = all[pick(i) as usize].clone();
        spec.name = format!("joined-{i}");
        let pos = c.site(spec.site).nodes.len() / 2;
        black_box(c.add_node_at(spec, pos).ok());
    });
    timed("node leaves", n, events, |_| {
        let last = (c.nodes.len() - 1) as NodeIdx;
        black_box(c.remove_node(last));
    });
    timed("registry: one site's price changes", n, events, |i| {
        let s = (i % c.sites.len()) as SiteIdx;
        let mut spec = c.site(s).spec.clone();
        spec.electricity_price = 0.3 + (i % 7) as f64 * 0.1;
        black_box(c.set_site(s, spec).ok());
    });
    let registry_events = (events / 20).max(1);
    timed(
        "registry: every site, link and quota anew",
        n,
        registry_events,
        |i| {
            let mut b = ClusterBuilder::new();
            for s in &c.sites {
                let mut spec = s.spec.clone();
                spec.pue = 1.1 + (i % 4) as f64 * 0.1;
                b.site(spec);
            }
            // The same links, as a registry read gives them again (vertex i is site i).
            for v in c.sites.iter().filter_map(|s| s.vertex) {
                for e in c.topology.links_of(v) {
                    if e.to.index() > v.index() {
                        b.link(v.index() as SiteIdx, e.to.index() as SiteIdx, e.attrs);
                    }
                }
            }
            black_box(c.set_registry(b).ok());
        },
    );
    timed(
        "reference: rebuild the whole cluster",
        n,
        registry_events,
        |_| {
            black_box(rebuild(&c, &all));
        },
    );
}
