//! Hand-computed cases for the builder and the path searches, plus a brute-force cross-check
//! against Floyd–Warshall on generated graphs, since proptest would be a new dependency.

use crate::*;
use cpn_model::GeoPoint;
use cpn_model::geo::estimated_rtt_ms;

fn link(latency_ms: f64, bandwidth_gbps: f64) -> LinkAttrs {
    LinkAttrs {
        latency_ms,
        bandwidth_gbps,
        jitter_ms: 0.0,
        loss_pct: 0.0,
        bidirectional: true,
    }
}

fn one_way(latency_ms: f64, bandwidth_gbps: f64) -> LinkAttrs {
    LinkAttrs {
        bidirectional: false,
        ..link(latency_ms, bandwidth_gbps)
    }
}

fn sites(b: &mut TopologyBuilder, keys: &[&str]) -> Vec<SiteIndex> {
    keys.iter().map(|k| b.add_site(*k, None).unwrap()).collect()
}

fn s(i: u32) -> SiteIndex {
    SiteIndex(i)
}

/// a–d direct costs 50 ms; a–b–d costs 10 + 15 = 25 ms; a–c–d costs 20 + 40 = 60 ms.
fn diamond() -> Topology {
    let mut b = TopologyBuilder::new();
    let [a, bb, c, d] = sites(&mut b, &["a", "b", "c", "d"])[..] else {
        unreachable!()
    };
    b.add_link(a, d, link(50.0, 100.0)).unwrap();
    b.add_link(a, bb, link(10.0, 10.0)).unwrap();
    b.add_link(bb, d, link(15.0, 40.0)).unwrap();
    b.add_link(a, c, link(20.0, 100.0)).unwrap();
    b.add_link(c, d, link(40.0, 100.0)).unwrap();
    b.build()
}

#[test]
fn diamond_two_hops_beat_the_direct_link() {
    let t = diamond();
    let (a, b, c, d) = (s(0), s(1), s(2), s(3));
    let p = t.shortest_paths(a);
    assert_eq!(p.latency_ms(d), Some(25.0));
    assert_eq!(p.hops(d), Some(2));
    assert_eq!(p.bottleneck_gbps(d), Some(10.0));
    assert_eq!(p.path_to(d), vec![a, b, d]);
    assert_eq!(p.latency_ms(b), Some(10.0));
    // a–c direct (20) beats a–b–d–c (10 + 15 + 40).
    assert_eq!(p.path_to(c), vec![a, c]);
    assert_eq!(
        p.get(a),
        Some(Reach {
            latency_ms: 0.0,
            bottleneck_gbps: f64::INFINITY,
            hops: 0
        })
    );
    assert_eq!(p.path_to(a), vec![a]);
    // Bidirectional links make the reverse search symmetric.
    assert_eq!(t.shortest_paths(d).path_to(a), vec![d, b, a]);
    assert_eq!(t.estimated_latency(d, a), Latency::Measured(25.0));
    assert_eq!(t.estimated_latency(c, c), Latency::Measured(0.0));
}

#[test]
fn lookup_and_adjacency_keep_insertion_order() {
    let t = diamond();
    assert_eq!(t.len(), 4);
    assert_eq!(t.link_count(), 5);
    assert_eq!(t.site("c"), Some(s(2)));
    assert_eq!(t.site("a"), Some(s(0)));
    assert_eq!(t.site("e"), None);
    assert_eq!(t.sites()[3].key, "d");
    let from_a: Vec<(SiteIndex, LinkIndex)> =
        t.links_of(s(0)).iter().map(|e| (e.to, e.link)).collect();
    assert_eq!(
        from_a,
        vec![
            (s(3), LinkIndex(0)),
            (s(1), LinkIndex(1)),
            (s(2), LinkIndex(3))
        ]
    );
    let from_d: Vec<SiteIndex> = t.links_of(s(3)).iter().map(|e| e.to).collect();
    assert_eq!(from_d, vec![s(0), s(1), s(2)]);
}

#[test]
fn site_lookup_is_by_exact_key_whatever_the_insertion_order() {
    let mut b = TopologyBuilder::new();
    let keys = ["zeta", "alpha", "mid", "Alpha", "beta"];
    sites(&mut b, &keys);
    assert_eq!(b.site("mid"), Some(s(2)));
    let t = b.build();
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(t.site(k), Some(s(i as u32)), "{k}");
    }
    assert_eq!(t.site("ALPHA"), None);
    assert_eq!(t.site(""), None);
}

#[test]
fn unreachable_site() {
    let mut b = TopologyBuilder::new();
    let [x, y, z] = sites(&mut b, &["x", "y", "z"])[..] else {
        unreachable!()
    };
    b.add_link(x, y, link(3.0, 1.0)).unwrap();
    let t = b.build();
    let p = t.shortest_paths(x);
    assert!(!p.is_reachable(z));
    assert_eq!(p.latency_ms(z), None);
    assert_eq!(p.hops(z), None);
    assert_eq!(p.bottleneck_gbps(z), None);
    assert_eq!(p.path_to(z), Vec::<SiteIndex>::new());
    assert_eq!(t.links_of(z), &[]);
    // No locations to fall back on.
    assert_eq!(t.estimated_latency(x, z), Latency::Unknown);
    assert_eq!(Latency::Unknown.ms(), None);
    assert_eq!(
        t.latency_matrix(),
        vec![
            vec![Some(0.0), Some(3.0), None],
            vec![Some(3.0), Some(0.0), None],
            vec![None, None, Some(0.0)],
        ]
    );
    // Paths answers None, rather than panicking, for an index it never saw.
    assert_eq!(p.get(s(9)), None);
    assert!(p.path_to(s(9)).is_empty());
}

#[test]
fn one_way_links_are_followed_only_forwards() {
    let mut b = TopologyBuilder::new();
    let [x, y, z] = sites(&mut b, &["x", "y", "z"])[..] else {
        unreachable!()
    };
    b.add_link(x, y, one_way(5.0, 10.0)).unwrap();
    b.add_link(y, z, link(3.0, 10.0)).unwrap();
    b.add_link(z, x, link(4.0, 10.0)).unwrap();
    let t = b.build();
    assert_eq!(t.shortest_paths(x).latency_ms(y), Some(5.0));
    // Back from y cannot use x→y; it goes round through z: 3 + 4.
    let back = t.shortest_paths(y);
    assert_eq!(back.latency_ms(x), Some(7.0));
    assert_eq!(back.path_to(x), vec![y, z, x]);
    assert!(t.links_of(y).iter().all(|e| e.to != x));
    assert_eq!(t.links_of(x).len(), 2);

    // With nothing but the one-way link, the reverse direction is unreachable.
    let mut b = TopologyBuilder::new();
    let [x, y] = sites(&mut b, &["x", "y"])[..] else {
        unreachable!()
    };
    b.add_link(x, y, one_way(5.0, 10.0)).unwrap();
    let t = b.build();
    assert_eq!(t.estimated_latency(x, y), Latency::Measured(5.0));
    assert_eq!(t.estimated_latency(y, x), Latency::Unknown);
    assert_eq!(
        t.latency_matrix(),
        vec![vec![Some(0.0), Some(5.0)], vec![None, Some(0.0)]]
    );
}

#[test]
fn bottleneck_is_the_narrowest_link_on_the_path() {
    let mut b = TopologyBuilder::new();
    let [a, bb, c, d] = sites(&mut b, &["a", "b", "c", "d"])[..] else {
        unreachable!()
    };
    b.add_link(a, bb, link(1.0, 100.0)).unwrap();
    b.add_link(bb, c, link(1.0, 1.0)).unwrap();
    b.add_link(c, d, link(1.0, 40.0)).unwrap();
    let p = b.build().shortest_paths(a);
    assert_eq!(p.bottleneck_gbps(a), Some(f64::INFINITY));
    assert_eq!(p.bottleneck_gbps(bb), Some(100.0));
    assert_eq!(p.bottleneck_gbps(c), Some(1.0));
    assert_eq!(p.bottleneck_gbps(d), Some(1.0));
    assert_eq!(p.hops(d), Some(3));
}

#[test]
fn equal_latency_prefers_the_wider_route_over_the_lower_index() {
    let mut b = TopologyBuilder::new();
    let [a, bb, c, d] = sites(&mut b, &["a", "b", "c", "d"])[..] else {
        unreachable!()
    };
    // a–b–d: 10 + 10 = 20 ms at 1 Gbps; a–c–d: 5 + 15 = 20 ms at 10 Gbps.
    b.add_link(a, bb, link(10.0, 1.0)).unwrap();
    b.add_link(bb, d, link(10.0, 100.0)).unwrap();
    b.add_link(a, c, link(5.0, 10.0)).unwrap();
    b.add_link(c, d, link(15.0, 10.0)).unwrap();
    let p = b.build().shortest_paths(a);
    assert_eq!(p.latency_ms(d), Some(20.0));
    assert_eq!(p.bottleneck_gbps(d), Some(10.0));
    assert_eq!(p.path_to(d), vec![a, c, d]);
}

#[test]
fn equal_latency_and_bandwidth_prefers_fewer_hops() {
    let mut b = TopologyBuilder::new();
    let [a, bb, d] = sites(&mut b, &["a", "b", "d"])[..] else {
        unreachable!()
    };
    b.add_link(a, bb, link(10.0, 10.0)).unwrap();
    b.add_link(bb, d, link(10.0, 10.0)).unwrap();
    b.add_link(a, d, link(20.0, 10.0)).unwrap();
    let p = b.build().shortest_paths(a);
    assert_eq!(p.path_to(d), vec![a, d]);
    assert_eq!(p.hops(d), Some(1));
}

#[test]
fn full_ties_go_to_the_lowest_site_index_whatever_the_link_order() {
    // A square a–b–d, a–c–d with every link equal: d is 20 ms away either way.
    let build = |order: &[usize]| {
        let mut b = TopologyBuilder::new();
        let [a, bb, c, d] = sites(&mut b, &["a", "b", "c", "d"])[..] else {
            unreachable!()
        };
        let links = [(a, bb), (a, c), (bb, d), (c, d)];
        for &i in order {
            b.add_link(links[i].0, links[i].1, link(10.0, 10.0))
                .unwrap();
        }
        b.build()
    };
    let forward = build(&[0, 1, 2, 3]);
    let reversed = build(&[3, 2, 1, 0]);
    let shuffled = build(&[2, 0, 3, 1]);
    assert_eq!(forward, build(&[0, 1, 2, 3]));
    for from in 0..4 {
        let p = forward.shortest_paths(s(from));
        assert_eq!(p, reversed.shortest_paths(s(from)));
        assert_eq!(p, shuffled.shortest_paths(s(from)));
    }
    assert_eq!(
        forward.shortest_paths(s(0)).path_to(s(3)),
        vec![s(0), s(1), s(3)]
    );
    assert_eq!(
        forward.shortest_paths(s(3)).path_to(s(0)),
        vec![s(3), s(1), s(0)]
    );
    // b and c are both 20 ms apart via a or via d; a has the lower index.
    assert_eq!(
        forward.shortest_paths(s(1)).path_to(s(2)),
        vec![s(1), s(0), s(2)]
    );
}

#[test]
fn zero_latency_links_are_fine() {
    let mut b = TopologyBuilder::new();
    let [a, bb, c] = sites(&mut b, &["a", "b", "c"])[..] else {
        unreachable!()
    };
    // -0.0 is accepted as 0; a–b–c at 0 ms beats a–c at 1 ms.
    b.add_link(a, bb, link(-0.0, 5.0)).unwrap();
    b.add_link(bb, c, link(0.0, 5.0)).unwrap();
    b.add_link(a, c, link(1.0, 5.0)).unwrap();
    let t = b.build();
    let p = t.shortest_paths(a);
    assert!(p.latency_ms(c).unwrap().is_sign_positive());
    assert_eq!(p.latency_ms(c), Some(0.0));
    assert_eq!(p.path_to(c), vec![a, bb, c]);
}

#[test]
fn estimated_latency_from_coordinates() {
    let beijing = GeoPoint::new(39.9042, 116.4074);
    let shanghai = GeoPoint::new(31.2304, 121.4737);
    let mut b = TopologyBuilder::new();
    let bj = b.add_site("beijing", Some(beijing)).unwrap();
    let sh = b.add_site("shanghai", Some(shanghai)).unwrap();
    let nowhere = b.add_site("nowhere", None).unwrap();
    let t = b.build();

    // ≈ 1067 km: 2 × 1.5 × 1067 / 200 + 2 ≈ 18.0 ms.
    let Latency::Estimated(ms) = t.estimated_latency(bj, sh) else {
        panic!(
            "expected an estimate, got {:?}",
            t.estimated_latency(bj, sh)
        )
    };
    assert!((ms - 18.0).abs() < 0.2, "{ms}");
    assert_eq!(ms, estimated_rtt_ms(beijing.distance_km(&shanghai)));
    assert_eq!(t.estimated_latency(sh, bj), Latency::Estimated(ms));
    assert_eq!(t.estimated_latency(bj, nowhere), Latency::Unknown);
    assert_eq!(
        t.latencies_from(bj),
        vec![
            Latency::Measured(0.0),
            Latency::Estimated(ms),
            Latency::Unknown
        ]
    );
    assert_eq!(Latency::Estimated(ms).ms(), Some(ms));

    // A real link wins even when it is slower than the estimate.
    let mut b = TopologyBuilder::new();
    let bj = b.add_site("beijing", Some(beijing)).unwrap();
    let sh = b.add_site("shanghai", Some(shanghai)).unwrap();
    b.add_link(bj, sh, link(30.0, 10.0)).unwrap();
    assert_eq!(b.build().estimated_latency(bj, sh), Latency::Measured(30.0));
}

#[test]
fn builder_rejects_bad_sites() {
    let mut b = TopologyBuilder::new();
    b.add_site("a", None).unwrap();
    let err = b.add_site("a", None).unwrap_err();
    assert_eq!(err, TopologyError::DuplicateSite { key: "a".into() });
    assert_eq!(err.to_string(), "site \"a\" is already defined");
    assert_eq!(
        b.add_site("", None).unwrap_err().to_string(),
        "site key must not be empty"
    );
    let err = b
        .add_site("north", Some(GeoPoint::new(91.0, 0.0)))
        .unwrap_err();
    assert!(err.to_string().contains("lat=91"), "{err}");
    let err = b
        .add_site("nan", Some(GeoPoint::new(f64::NAN, 0.0)))
        .unwrap_err();
    assert!(
        matches!(err, TopologyError::InvalidLocation { .. }),
        "{err}"
    );
    // Refused sites take no index.
    assert_eq!(b.len(), 1);
    assert_eq!(b.add_site("b", None).unwrap(), s(1));
}

#[test]
fn builder_rejects_bad_links() {
    let mut b = TopologyBuilder::new();
    let [x, y] = sites(&mut b, &["x", "y"])[..] else {
        unreachable!()
    };

    let err = b.add_link(x, y, link(f64::NAN, 1.0)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "link \"x\" -> \"y\": latency_ms must be a finite number >= 0, got NaN"
    );
    let err = b.add_link(x, y, link(-1.0, 1.0)).unwrap_err();
    assert_eq!(
        err,
        TopologyError::InvalidLinkAttr {
            from: "x".into(),
            to: "y".into(),
            field: "latency_ms",
            value: -1.0
        }
    );
    let err = b.add_link(x, y, link(f64::INFINITY, 1.0)).unwrap_err();
    assert!(err.to_string().contains("latency_ms"), "{err}");
    let err = b.add_link(x, y, link(1.0, -2.0)).unwrap_err();
    assert!(err.to_string().contains("bandwidth_gbps"), "{err}");
    let bad_loss = LinkAttrs {
        loss_pct: 101.0,
        ..link(1.0, 1.0)
    };
    assert_eq!(
        b.add_link(x, y, bad_loss).unwrap_err().to_string(),
        "link \"x\" -> \"y\": loss_pct must be between 0 and 100, got 101"
    );
    let bad_jitter = LinkAttrs {
        jitter_ms: -0.5,
        ..link(1.0, 1.0)
    };
    assert!(b.add_link(x, y, bad_jitter).is_err());

    let err = b.add_link(x, x, link(1.0, 1.0)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "link from site \"x\" to itself: a link must join two different sites"
    );
    let err = b.add_link(x, s(7), link(1.0, 1.0)).unwrap_err();
    assert_eq!(
        err,
        TopologyError::UnknownSite {
            site: s(7),
            sites: 2
        }
    );
    assert_eq!(
        err.to_string(),
        "link endpoint #7 is not a site of this topology (it has 2 sites)"
    );

    // Every refusal left the builder unchanged; zero bandwidth is allowed, as in the API.
    assert_eq!(b.add_link(x, y, link(1.0, 0.0)).unwrap(), LinkIndex(0));
    let t = b.build();
    assert_eq!(t.link_count(), 1);
    assert_eq!(t.shortest_paths(x).bottleneck_gbps(y), Some(0.0));
    let boxed: Box<dyn std::error::Error> = Box::new(err);
    assert!(boxed.to_string().contains("#7"));
}

#[test]
#[should_panic(expected = "not a site of this topology")]
fn queries_with_a_foreign_index_panic() {
    diamond().shortest_paths(s(4));
}

#[test]
fn empty_topology() {
    let t = TopologyBuilder::new().build();
    assert!(t.is_empty());
    assert_eq!(t.latency_matrix(), Vec::<Vec<Option<f64>>>::new());
    assert_eq!(t.site("a"), None);
}

// ---------------------------------------------------------------- brute force

/// Numerical Recipes' LCG: deterministic, and good enough to vary graph shapes.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Generated {
    topology: Topology,
    links: Vec<(usize, usize, LinkAttrs)>,
}

/// Latencies are multiples of 0.25 ms (0 included) so every path sum is exact in f64, and
/// results can be compared with `==` whatever order they were added in. Parallel links,
/// one-way links and zero bandwidth all occur.
fn generate(seed: u64, reverse_links: bool) -> Generated {
    let mut rng = Lcg(seed);
    let n = 2 + rng.below(11) as usize;
    let m = rng.below(3 * n as u64 + 1) as usize;
    let mut links = Vec::new();
    while links.len() < m {
        let a = rng.below(n as u64) as usize;
        let b = rng.below(n as u64) as usize;
        let attrs = LinkAttrs {
            latency_ms: rng.below(40) as f64 * 0.25,
            bandwidth_gbps: rng.below(6) as f64,
            jitter_ms: 0.0,
            loss_pct: 0.0,
            bidirectional: rng.below(3) != 0,
        };
        if a != b {
            links.push((a, b, attrs));
        }
    }
    let mut b = TopologyBuilder::new();
    for i in 0..n {
        b.add_site(format!("site-{i}"), None).unwrap();
    }
    let order: Vec<usize> = if reverse_links {
        (0..links.len()).rev().collect()
    } else {
        (0..links.len()).collect()
    };
    for i in order {
        let (a, c, attrs) = links[i];
        b.add_link(s(a as u32), s(c as u32), attrs).unwrap();
    }
    Generated {
        topology: b.build(),
        links,
    }
}

fn directed(links: &[(usize, usize, LinkAttrs)]) -> Vec<(usize, usize, f64, f64)> {
    let mut out = Vec::new();
    for &(a, b, l) in links {
        out.push((a, b, l.latency_ms, l.bandwidth_gbps));
        if l.bidirectional {
            out.push((b, a, l.latency_ms, l.bandwidth_gbps));
        }
    }
    out
}

fn floyd_warshall(n: usize, edges: &[(usize, usize, f64, f64)]) -> Vec<Vec<Option<f64>>> {
    let mut d = vec![vec![None::<f64>; n]; n];
    for (i, row) in d.iter_mut().enumerate() {
        row[i] = Some(0.0);
    }
    for &(a, b, lat, _) in edges {
        if d[a][b].is_none_or(|old| lat < old) {
            d[a][b] = Some(lat);
        }
    }
    for k in 0..n {
        for i in 0..n {
            for j in 0..n {
                let through = match (d[i][k], d[k][j]) {
                    (Some(ik), Some(kj)) => ik + kj,
                    _ => continue,
                };
                if d[i][j].is_none_or(|old| through < old) {
                    d[i][j] = Some(through);
                }
            }
        }
    }
    d
}

/// Widest bottleneck over all minimum-latency routes, by relaxing the tight edges to a
/// fixpoint, which copes with the cycles zero-latency links make.
fn widest_shortest(
    from: usize,
    dist: &[Option<f64>],
    edges: &[(usize, usize, f64, f64)],
) -> Vec<Option<f64>> {
    let mut w: Vec<Option<f64>> = vec![None; dist.len()];
    w[from] = Some(f64::INFINITY);
    loop {
        let mut changed = false;
        for &(a, b, lat, bw) in edges {
            let (Some(da), Some(db), Some(wa)) = (dist[a], dist[b], w[a]) else {
                continue;
            };
            let through = wa.min(bw);
            if da + lat == db && w[b].is_none_or(|old| through > old) {
                w[b] = Some(through);
                changed = true;
            }
        }
        if !changed {
            return w;
        }
    }
}

#[test]
fn dijkstra_agrees_with_floyd_warshall_on_generated_graphs() {
    for seed in 0..300 {
        let g = generate(seed, false);
        let t = &g.topology;
        let n = t.len();
        let edges = directed(&g.links);
        let expected = floyd_warshall(n, &edges);
        assert_eq!(t.latency_matrix(), expected, "seed {seed}");

        let reversed = generate(seed, true).topology;
        for (from, dist) in expected.iter().enumerate() {
            let p = t.shortest_paths(s(from as u32));
            assert_eq!(
                p,
                reversed.shortest_paths(s(from as u32)),
                "seed {seed} from {from}"
            );
            let widest = widest_shortest(from, dist, &edges);
            for to in 0..n {
                let to_i = s(to as u32);
                assert_eq!(
                    p.bottleneck_gbps(to_i),
                    widest[to],
                    "seed {seed} {from}->{to}"
                );
                let est = t.estimated_latency(s(from as u32), to_i);
                match dist[to] {
                    Some(ms) => assert_eq!(est, Latency::Measured(ms)),
                    None => assert_eq!(est, Latency::Unknown),
                }

                // The reported route exists, and its links give the reported figures.
                let path = p.path_to(to_i);
                let Some(reach) = p.get(to_i) else {
                    assert!(path.is_empty());
                    continue;
                };
                assert_eq!(path.first(), Some(&s(from as u32)));
                assert_eq!(path.last(), Some(&to_i));
                assert_eq!(path.len(), reach.hops as usize + 1);
                let (mut lat, mut bw) = (0.0, f64::INFINITY);
                for hop in path.windows(2) {
                    let next = dist[hop[1].index()].unwrap();
                    let best_bw = t
                        .links_of(hop[0])
                        .iter()
                        .filter(|e| e.to == hop[1] && lat + e.attrs.latency_ms == next)
                        .map(|e| e.attrs.bandwidth_gbps)
                        .fold(None, |m: Option<f64>, b| Some(m.map_or(b, |m| m.max(b))))
                        .unwrap_or_else(|| panic!("seed {seed}: no tight link {hop:?}"));
                    lat = next;
                    bw = f64::min(bw, best_bw);
                }
                assert_eq!(
                    (lat, bw),
                    (reach.latency_ms, reach.bottleneck_gbps),
                    "seed {seed}"
                );
            }
        }
    }
}
