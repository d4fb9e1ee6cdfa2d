//! Registry behaviour: the demo federation, validation errors that change nothing, tags and
//! selectors with inheritance, the OpenAPI document.

use crate::harness::{Server, site, snapshot};
use reqwest::{Method, StatusCode};
use serde_json::json;

const DEMO_SITES: [&str; 10] = [
    "zhangjiakou",
    "yangtze-delta-demo-zone",
    "wuhu",
    "shaoguan",
    "tianfu",
    "chongqing",
    "horinger",
    "guian",
    "qingyang",
    "zhongwei",
];

#[tokio::test]
async fn fresh_start_serves_the_demo_federation() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), true).await;
    let (status, body) = server.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");

    let out = server.cli(&["site", "list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    for name in DEMO_SITES {
        assert!(table.contains(name), "site {name} missing from:\n{table}");
    }
    for hub in [
        "bth-hub",
        "yrd-hub",
        "gba-hub",
        "chengyu-hub",
        "inner-mongolia-hub",
        "guizhou-hub",
        "gansu-hub",
        "ningxia-hub",
    ] {
        assert!(table.contains(hub), "hub {hub} missing from:\n{table}");
    }
    for region in [
        "Hebei",
        "Anhui",
        "Guangdong",
        "Sichuan",
        "Guizhou",
        "Gansu",
        "Ningxia",
        "Inner Mongolia",
    ] {
        assert!(
            table.contains(region),
            "region {region} missing from:\n{table}"
        );
    }

    let sites = snapshot(&server, "sites").await;
    assert_eq!(sites.as_array().unwrap().len(), 10);
    // West is cheaper and greener than east in the demo, as in the real layout.
    let price = |name: &str| {
        sites
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()["spec"]["electricity_price"]
            .as_f64()
            .unwrap()
    };
    assert!(price("zhongwei") < price("yangtze-delta-demo-zone"));
    // The demo is the server's own doing: recorded as `system:startup`, in the operator's
    // tenant, not as the `admin` user.
    for s in sites.as_array().unwrap() {
        assert_eq!(s["owner"], "system:startup", "{s}");
        assert_eq!(s["tenant"], "system", "{s}");
    }
}

#[tokio::test]
async fn bad_requests_get_precise_errors_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), false).await;
    let (s, created) = server
        .admin(Method::POST, "/api/v1/sites", Some(site("alpha")))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let before = snapshot(&server, "sites").await;

    // Missing field: 422 naming it.
    let mut missing = site("beta");
    missing["spec"].as_object_mut().unwrap().remove("supplier");
    let (s, b) = server
        .admin(Method::POST, "/api/v1/sites", Some(missing))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["code"], "invalid_field");
    assert_eq!(b["error"]["field"], "spec.supplier");

    // Wrong type: 422 with the full path.
    let mut wrong = site("beta");
    wrong["spec"]["location"]["lat"] = json!("north");
    let (s, b) = server
        .admin(Method::POST, "/api/v1/sites", Some(wrong))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(b["error"]["field"], "spec.location.lat");

    // Out of range: 422 from semantic validation.
    let mut far = site("beta");
    far["spec"]["location"]["lat"] = json!(123.0);
    let (s, b) = server.admin(Method::POST, "/api/v1/sites", Some(far)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(b["error"]["field"], "spec.location.lat");

    // Unknown field: 422 rather than silently dropped.
    let mut extra = site("beta");
    extra["spec"]["colour"] = json!("red");
    let (s, b) = server
        .admin(Method::POST, "/api/v1/sites", Some(extra))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");

    // Not JSON: 400.
    let (s, b) = server
        .raw(
            Method::POST,
            "/api/v1/sites",
            "application/json",
            "{\"name\": ",
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["error"]["code"], "bad_request");

    // Unknown id: 404.
    let (s, b) = server
        .admin(Method::GET, "/api/v1/sites/no-such-site", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(b["error"]["code"], "not_found");

    // Duplicate name: 409.
    let (s, _) = server
        .admin(Method::POST, "/api/v1/sites", Some(site("alpha")))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);

    // Stale generation: 409, whether sent in the body or as If-Match.
    let update = json!({"generation": 1, "spec": {"region": "Gansu", "supplier": "x", "location": {"lat": 35.7, "lon": 107.6}}});
    let (s, b) = server
        .admin(Method::PUT, "/api/v1/sites/alpha", Some(update.clone()))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["generation"], 2);
    let after_good_update = snapshot(&server, "sites").await;
    let (s, b) = server
        .admin(Method::PUT, "/api/v1/sites/alpha", Some(update.clone()))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(b["error"]["code"], "generation_conflict");
    // No generation at all: refused rather than overwriting blindly.
    let mut blind = update.clone();
    blind.as_object_mut().unwrap().remove("generation");
    let (s, _) = server
        .admin(Method::PUT, "/api/v1/sites/alpha", Some(blind))
        .await;
    assert_eq!(s, StatusCode::PRECONDITION_REQUIRED);

    assert_ne!(
        before, after_good_update,
        "the good update changed the site"
    );
    assert_eq!(
        snapshot(&server, "sites").await,
        after_good_update,
        "a failed request changed stored state"
    );

    // Deleting a site that resources still use is refused.
    let res = json!({"name": "alpha-cpu", "spec": {"site": "alpha", "type": "compute", "compute": {
        "supply_mode": "bare_metal", "chip_type": "cpu", "architecture": "x86_64", "model": "Xeon", "count": 64}}});
    let (s, b) = server
        .admin(Method::POST, "/api/v1/resources", Some(res))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(
        b["spec"]["site"], created["id"],
        "references are stored as ids"
    );
    let (s, b) = server
        .admin(Method::DELETE, "/api/v1/sites/alpha", None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(b["error"]["code"], "in_use");
}

#[tokio::test]
async fn selectors_match_tagged_objects_including_inherited_tags() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), false).await;
    let post = |path: &'static str, body: serde_json::Value| {
        let server = &server;
        async move {
            let (s, b) = server.admin(Method::POST, path, Some(body)).await;
            assert!(
                s == StatusCode::CREATED || s == StatusCode::OK,
                "{path}: {s} {b}"
            );
            b
        }
    };
    post(
        "/api/v1/tags",
        json!({"name": "zone", "spec": {"group": "location", "inheritable": true}}),
    )
    .await;
    post(
        "/api/v1/tags",
        json!({"name": "gpu.model", "spec": {"group": "resource"}}),
    )
    .await;
    post(
        "/api/v1/tags",
        json!({"name": "deprecated", "spec": {"group": "custom"}}),
    )
    .await;
    post(
        "/api/v1/platforms",
        json!({"name": "west-hub", "labels": {"zone": "west"},
        "spec": {"level": "hub", "compute_types": ["intelligent"]}}),
    )
    .await;
    let mut w = site("w1");
    w["spec"]["platform"] = json!("west-hub");
    post("/api/v1/sites", w).await;
    let mut e = site("e1");
    e["labels"] = json!({"zone": "east"});
    post("/api/v1/sites", e).await;
    let gpu = |name: &str, site: &str, model: &str| {
        json!({"name": name, "labels": {"gpu.model": model}, "spec": {"site": site, "type": "compute", "compute": {
            "supply_mode": "kubernetes", "chip_type": "gpu", "architecture": "ampere", "model": model, "count": 8}}})
    };
    post("/api/v1/resources", gpu("w1-a100", "w1", "A100")).await;
    post("/api/v1/resources", gpu("w1-v100", "w1", "V100")).await;
    post("/api/v1/resources", gpu("e1-a100", "e1", "A100")).await;

    let names = |b: serde_json::Value| {
        let mut v: Vec<String> = b["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    let q = |sel: &str| format!("/api/v1/resources?selector={}", urlencode(sel));

    // zone=west is set on the platform only; the resources inherit it through their site.
    let (s, b) = server.admin(Method::GET, &q("zone=west"), None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(names(b), ["w1-a100", "w1-v100"]);
    let (_, b) = server
        .admin(Method::GET, &q("zone=west,gpu.model in (A100,H800)"), None)
        .await;
    assert_eq!(names(b), ["w1-a100"]);
    let (_, b) = server.admin(Method::GET, &q("gpu.model=A100"), None).await;
    assert_eq!(names(b), ["e1-a100", "w1-a100"]);

    // Batch tagging by selector, then negation.
    let (s, b) = server
        .admin(
            Method::POST,
            "/api/v1/tags/deprecated/apply",
            Some(json!({"kind": "resource", "selector": "gpu.model=V100"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["changed"], 1);
    let (_, b) = server
        .admin(Method::GET, &q("zone=west,!deprecated"), None)
        .await;
    assert_eq!(names(b), ["w1-a100"]);

    // Batch tagging by explicit targets is atomic: one bad target, nothing changes.
    let before = snapshot(&server, "resources").await;
    let (s, _) = server
        .admin(
            Method::POST,
            "/api/v1/tags/deprecated/apply",
            Some(json!({"targets": [
            {"kind": "resource", "id": "e1-a100"}, {"kind": "resource", "id": "missing"}]})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(snapshot(&server, "resources").await, before);

    // A label whose key is not in the tag library is refused.
    let (s, b) = server
        .admin(
            Method::POST,
            "/api/v1/resources",
            Some({
                let mut r = gpu("x", "w1", "A100");
                r["labels"] = json!({"colour": "red"});
                r
            }),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(b["error"]["field"], "labels.colour");

    // A malformed selector is a 400 naming the position.
    let (s, b) = server.admin(Method::GET, &q("zone in west"), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        b["error"]["message"].as_str().unwrap().contains("position"),
        "{b}"
    );
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn openapi_document_describes_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), false).await;
    let (s, doc) = server
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/sites",
        "/api/v1/sites/{id}",
        "/api/v1/resources",
        "/api/v1/topology",
        "/api/v1/tags/{id}/apply",
    ] {
        assert!(doc["paths"].get(path).is_some(), "openapi lacks {path}");
    }
    assert!(doc["components"]["schemas"].get("SiteSpec").is_some());
}

/// The router and the document come from the same declarations (`routes!` over each
/// handler's `#[utoipa::path]`); this holds them to it from outside: every documented
/// operation is served (without a token, so nothing changes: the answer may be 401 or a
/// 4xx of the handler, but never the fallback's "no such endpoint" nor 405), and every
/// other method on a documented path is 405.
#[tokio::test]
async fn the_router_serves_exactly_the_documented_operations() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), false).await;
    let (s, doc) = server
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let unrouted = |status: StatusCode, body: &serde_json::Value| {
        status == StatusCode::METHOD_NOT_ALLOWED
            || (status == StatusCode::NOT_FOUND
                && body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("no such endpoint")))
    };
    // The check itself tells an unrouted request apart.
    let (status, body) = server
        .call(Method::GET, "/api/v1/no-such-thing", None, None)
        .await;
    assert!(unrouted(status, &body), "{status} {body}");

    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        // Path parameters become a name no object has.
        let concrete: String = path
            .split('/')
            .map(|seg| {
                if seg.starts_with('{') {
                    "no-such-object"
                } else {
                    seg
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        for method in ["get", "put", "post", "delete", "patch"] {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (status, body) = server.call(m, &concrete, None, None).await;
            if item.get(method).is_some() {
                operations += 1;
                assert!(
                    !unrouted(status, &body),
                    "{method} {path} is documented but not served: {status} {body}"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is served but not documented: {body}"
                );
            }
        }
    }
    assert!(operations > 100, "{operations}");
}
