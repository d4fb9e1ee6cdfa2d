//! CEL plugins evaluated directly against a test cluster.

use super::*;
use crate::testkit;

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn cel_program_and_env_can_live_in_plugins() {
    assert_send_sync::<Program>();
    assert_send_sync::<Env>();
    assert_send_sync::<Value>();
    assert_send_sync::<CelFilter>();
    assert_send_sync::<CelScore>();
}

#[test]
fn plugin_names_are_interned_once() {
    let a = plugin_name("interned");
    let b = plugin_name("interned");
    assert_eq!(a, "cel:interned");
    assert!(std::ptr::eq(a, b));
}

fn filter(expr: &str) -> CelFilter {
    CelFilter::new("t", expr, env()).expect("rule compiles")
}

fn site_verdict(expr: &str, site: &str) -> Verdict {
    let cluster = testkit::cluster();
    let task = testkit::task();
    let f = filter(expr);
    let mut state = CycleState::new(true);
    f.prepare(&task, &cluster, &mut state);
    let s = cluster.site_by_name(site).unwrap();
    f.filter_site(&state, &task, &cluster, s)
}

#[test]
fn variables_carry_the_documented_fields() {
    let fits = |e: &str| site_verdict(e, "hot").fits();
    assert!(fits("site.name == 'hot' && site.region == 'east'"));
    assert!(fits(
        "site.labels.tier == 'gold' && site.labels['tier'] == 'gold'"
    ));
    assert!(fits("site.pue == 1.5 && site.electricity_price < 0.5"));
    assert!(fits("!has(site.carbon_intensity) && site.healthy"));
    assert!(fits(
        "site.free_gpus == 8 && site.total_gpus == 8 && site.nodes == 2"
    ));
    assert!(fits(
        "site.free_gpu_milli == 8000 && site.free_cpu_cores == 64.0"
    ));
    assert!(fits("site.free_memory_gib == 512.0"));
    assert!(fits(
        "'A100' in site.models && site.architectures == ['x86_64']"
    ));
    assert!(fits(
        "task.id == 't1' && task.tenant == 'lab-a' && task.business == 'training'"
    ));
    assert!(fits(
        "task.origin_region == 'east' && task.priority == 0 && task.gpus == 1"
    ));
    assert!(fits(
        "task.gpu_milli == 1000 && task.cpu_cores == 4.0 && task.memory_gib == 16.0"
    ));
    assert!(fits(
        "task.chip == '' && task.models == [] && task.est_hours == 2.0"
    ));
    assert!(fits("task.labels.team == 'vision'"));
    // Every documented field is present (carbon_intensity only when known).
    for (var, fields) in VARIABLES.iter().filter(|(v, _)| *v != "node") {
        for f in fields.iter().filter(|f| f.name != "carbon_intensity") {
            let e = format!("has({var}.{})", f.name);
            assert!(fits(&e), "{e}");
        }
    }
}

#[test]
fn node_variables() {
    let cluster = testkit::cluster();
    let task = testkit::task();
    let f = filter(
        "node.name == 'hot-1' && node.model == 'A100' && node.architecture == 'x86_64' \
         && node.chip == 'gpu' && node.healthy && node.cpu_cores == 32.0 \
         && node.free_cpu_cores == 32.0 && node.memory_gib == 256.0 \
         && node.free_memory_gib == 256.0 && node.gpus == 4 && node.free_gpus == 4 \
         && node.free_gpu_milli == 4000 && node.tflops_per_unit == 312.0 \
         && node.price_per_unit_hour == 10.0 && node.labels == {} && site.name == 'hot'",
    );
    assert!(f.per_node());
    assert!(f.as_site_filter().is_none() && f.as_node_filter().is_some());
    let state = CycleState::new(true);
    let n = cluster.site(cluster.site_by_name("hot").unwrap()).nodes[0];
    assert_eq!(f.filter_node(&state, &task, &cluster, n), Verdict::Fits);
    for fdoc in NODE_FIELDS {
        let e = format!("has(node.{})", fdoc.name);
        assert!(
            filter(&e).filter_node(&state, &task, &cluster, n).fits(),
            "{e}"
        );
    }
}

#[test]
fn false_errors_and_non_bools_reject_with_codes() {
    let code = |v: Verdict| {
        v.reason()
            .map(|r| (r.code, r.detail.clone().unwrap_or_default()))
    };
    let (c, d) = code(site_verdict("site.pue < 1.3", "hot")).unwrap();
    assert_eq!(
        (c, d.as_str()),
        (CODE_REJECTED, "`site.pue < 1.3` is false")
    );
    let (c, d) = code(site_verdict("site.pue + 1.0", "hot")).unwrap();
    assert_eq!(c, CODE_ERROR);
    assert!(d.contains("must evaluate to a bool"), "{d}");
    let (c, d) = code(site_verdict("site.carbon_intensity < 100.0", "hot")).unwrap();
    assert_eq!(c, CODE_ERROR);
    assert!(d.contains("carbon_intensity"), "{d}");
}

#[test]
fn numbers_mix_int_and_double() {
    // CEL compares int and double across types; arithmetic needs one type.
    assert!(site_verdict("site.pue > 1", "hot").fits());
    assert!(site_verdict("site.free_gpus > 1.5", "hot").fits());
    assert!(site_verdict("double(site.free_gpus) * site.pue == 12.0", "hot").fits());
}

#[test]
fn scores_read_numbers_and_fall_back_to_zero() {
    let cluster = testkit::cluster();
    let task = testkit::task();
    let state = CycleState::new(false);
    let hot = cluster.site_by_name("hot").unwrap();
    let score = |e: &str| {
        CelScore::new("s", e, Better::Higher, env())
            .unwrap()
            .score_site(&state, &task, &cluster, hot)
    };
    assert_eq!(score("site.free_gpus"), 8.0);
    assert_eq!(score("site.pue * 2.0"), 3.0);
    assert_eq!(score("'text'"), 0.0);
    assert_eq!(score("site.carbon_intensity"), 0.0);
    assert_eq!(score("1.0 / 0.0"), 0.0);
}

#[test]
fn reference_problems_block_plugin_creation() {
    let e = CelFilter::new("r", "site.nope > 1", env()).err().unwrap();
    assert!(e[0].message.contains("no field `nope`"), "{e:?}");
    assert!(
        CelFilter::new(
            "r",
            "[1, 2].all(x, x > 0) && task.labels.exists(k, k == 'a') || true",
            env()
        )
        .is_ok()
    );
}

#[test]
fn only_the_fields_a_rule_reads_are_built() {
    let uses = |e: &str| Uses::of(&parse(e).unwrap());
    let u = uses("site.pue > 1.0 && has(site.labels.x) && task.gpus > 0 && site.pue < 3.0");
    assert_eq!(u.site, Fields::Only(vec!["pue", "labels"]));
    assert_eq!(u.task, Fields::Only(vec!["gpus"]));
    assert_eq!(u.node, Fields::None);
    assert_eq!(uses("size(site) > 0").site, Fields::All);
    // Comprehension variables shadow the documented ones.
    assert_eq!(uses("[1].all(node, node > 0)").node, Fields::None);
    let cluster = testkit::cluster();
    let v = site_value(&cluster, 0, &u.site);
    let Value::Map(m) = v else { panic!("a map") };
    assert_eq!(m.map.len(), 2);
}

#[test]
fn rules_are_bounded_on_save_and_when_evaluated() {
    let nested3 = "[1, 2].all(a, [1, 2].all(b, [1, 2].all(c, a + b + c > 0)))";
    let e = CelFilter::new("r", nested3, env()).err().unwrap();
    assert!(e[0].message.contains("nested 3 deep"), "{e:?}");
    let long = format!("site.name == '{}'", "x".repeat(5000));
    let e = CelFilter::new("r", &long, env()).err().unwrap();
    assert!(e[0].message.contains("at most 4096"), "{e:?}");

    // Two levels over 200 items each is 40,000 iterations: past a rule's budget.
    let list = format!(
        "[{}]",
        (0..200)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let heavy = format!("{list}.all(a, {list}.all(b, a + b >= 0))");
    let v = site_verdict(&heavy, "hot");
    let r = v.reason().expect("rejected");
    assert_eq!(r.code, CODE_ERROR);
    assert!(
        r.detail
            .as_deref()
            .unwrap_or("")
            .contains("loop iterations"),
        "{r:?}"
    );
}
