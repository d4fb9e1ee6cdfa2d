//! Checks the shipped scenario files: they parse into `Scenario`, every spec validates,
//! references resolve, labels are in the tag library and link latencies follow geography.

use cpn_api_types::registry::{Labels, Validate, Violations};
use cpn_api_types::scenario::Scenario;
use cpn_model::GeoPoint;
use cpn_model::geo::estimated_rtt_ms;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

fn load(file: &str) -> Scenario {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../scenarios")
        .join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn check_spec(kind: &str, name: &str, spec: &impl Validate, problems: &mut Vec<String>) {
    let mut v = Violations::default();
    spec.validate(&mut v);
    for x in v.list {
        problems.push(format!("{kind} {name}: {}: {}", x.field, x.message));
    }
}

#[test]
fn east_data_west_compute_is_consistent() {
    let s = load("east-data-west-compute.yaml");
    assert_eq!(s.name, "east-data-west-compute");
    assert_eq!(s.platforms.len(), 8, "8 national hub platforms");
    assert_eq!(s.sites.len(), 10, "10 data-centre clusters");
    assert!(!s.resources.is_empty());
    assert!(!s.links.is_empty());

    let mut problems = Vec::new();

    // Names: valid and unique per kind.
    let mut check_names = |kind: &str, names: Vec<&str>, tag: bool| {
        let mut seen = BTreeSet::new();
        for n in names {
            let ok = if tag {
                cpn_model::validate_label_key(n)
            } else {
                cpn_model::validate_name(n)
            };
            if let Err(e) = ok {
                problems.push(format!("{kind} name {n:?}: {e}"));
            }
            if !seen.insert(n) {
                problems.push(format!("{kind} name {n:?} is used twice"));
            }
        }
    };
    check_names(
        "tag",
        s.tags.iter().map(|x| x.name.as_str()).collect(),
        true,
    );
    check_names(
        "platform",
        s.platforms.iter().map(|x| x.name.as_str()).collect(),
        false,
    );
    check_names(
        "cloud",
        s.clouds.iter().map(|x| x.name.as_str()).collect(),
        false,
    );
    check_names(
        "site",
        s.sites.iter().map(|x| x.name.as_str()).collect(),
        false,
    );
    check_names(
        "resource",
        s.resources.iter().map(|x| x.name.as_str()).collect(),
        false,
    );
    check_names(
        "link",
        s.links.iter().map(|x| x.name.as_str()).collect(),
        false,
    );

    // Every spec passes its semantic checks.
    for x in &s.tags {
        check_spec("tag", &x.name, &x.spec, &mut problems);
    }
    for x in &s.platforms {
        check_spec("platform", &x.name, &x.spec, &mut problems);
    }
    for x in &s.clouds {
        check_spec("cloud", &x.name, &x.spec, &mut problems);
    }
    for x in &s.sites {
        check_spec("site", &x.name, &x.spec, &mut problems);
    }
    for x in &s.resources {
        check_spec("resource", &x.name, &x.spec, &mut problems);
    }
    for x in &s.links {
        check_spec("link", &x.name, &x.spec, &mut problems);
    }

    // References resolve by name.
    let platforms: BTreeSet<&str> = s.platforms.iter().map(|x| x.name.as_str()).collect();
    let clouds: BTreeSet<&str> = s.clouds.iter().map(|x| x.name.as_str()).collect();
    let sites: BTreeMap<&str, GeoPoint> = s
        .sites
        .iter()
        .map(|x| {
            let l = x.spec.location;
            (x.name.as_str(), GeoPoint::new(l.lat, l.lon))
        })
        .collect();
    for x in &s.sites {
        match x.spec.platform.as_deref() {
            Some(p) if platforms.contains(p) => {}
            other => problems.push(format!("site {}: platform {other:?} not found", x.name)),
        }
        if let Some(c) = x.spec.cloud.as_deref()
            && !clouds.contains(c)
        {
            problems.push(format!("site {}: cloud {c:?} not found", x.name));
        }
    }
    for x in &s.resources {
        if !sites.contains_key(x.spec.site.as_str()) {
            problems.push(format!(
                "resource {}: site {:?} not found",
                x.name, x.spec.site
            ));
        }
    }

    // Links: ends exist, no pair twice, latency follows great-circle distance.
    let mut pairs = BTreeSet::new();
    for x in &s.links {
        let (from, to) = (x.spec.from.as_str(), x.spec.to.as_str());
        let (Some(a), Some(b)) = (sites.get(from), sites.get(to)) else {
            problems.push(format!("link {}: end {from:?} or {to:?} not found", x.name));
            continue;
        };
        if !pairs.insert((from.min(to), from.max(to))) {
            problems.push(format!("link {}: {from} - {to} is linked twice", x.name));
        }
        let expected = estimated_rtt_ms(a.distance_km(b));
        if (x.spec.latency_ms - expected).abs() > 0.2 {
            problems.push(format!(
                "link {}: latency_ms {} but distance gives {expected:.2}",
                x.name, x.spec.latency_ms
            ));
        }
    }

    // Every label key is in the tag library, and values respect allowed_values.
    let tags: BTreeMap<&str, Option<&Vec<String>>> = s
        .tags
        .iter()
        .map(|t| (t.name.as_str(), t.spec.allowed_values.as_ref()))
        .collect();
    let mut check_labels = |kind: &str, name: &str, labels: &Labels| {
        for (k, v) in labels {
            if let Err(e) = cpn_model::validate_label_value(v) {
                problems.push(format!("{kind} {name}: label {k}={v:?}: {e}"));
            }
            match tags.get(k.as_str()) {
                None => problems.push(format!("{kind} {name}: label key {k:?} is not in tags")),
                Some(Some(allowed)) if !allowed.contains(v) => problems.push(format!(
                    "{kind} {name}: label {k}={v:?} is not among {allowed:?}"
                )),
                Some(_) => {}
            }
        }
    };
    for x in &s.platforms {
        check_labels("platform", &x.name, &x.labels);
    }
    for x in &s.clouds {
        check_labels("cloud", &x.name, &x.labels);
    }
    for x in &s.sites {
        check_labels("site", &x.name, &x.labels);
    }
    for x in &s.resources {
        check_labels("resource", &x.name, &x.labels);
    }
    for x in &s.links {
        check_labels("link", &x.name, &x.labels);
    }

    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
