//! The web console (issue #7): served from the binary at `/`, the two endpoints it added
//! ("why here" for a task, a node's metric history), and the console itself driven in
//! headless Chromium by `web/tests/console.test.mjs` (playwright-core), which logs in, finds
//! the 10 demo sites on the topology, submits a task and watches it succeed with its logs,
//! opens the explain views, switches language and saves screenshots under
//! `target/console-screenshots/`; and the marketplace pages (issue #14) by
//! `web/tests/market.test.mjs`: search with filters, the card grid, an order, the lease and
//! its release, billing, in both languages; a class A listing published from the console,
//! its authorization code shown once and entered; the operator's review queue.
//!
//! The browser test needs Node.js, `npm ci` in `web/` and Debian's chromium; without them it
//! is skipped, saying so, except under `CI`, where `.ci/run` installs them and it must run.

use crate::harness::Server;
use reqwest::{Method, StatusCode};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

async fn wait_state(server: &Server, id: &str, want: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, t) = server
            .admin(Method::GET, &format!("/api/v1/tasks/{id}"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{t}");
        if t["state"] == want {
            return t;
        }
        assert!(Instant::now() < deadline, "task never {want}: {t}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_console_is_served_from_the_binary_with_its_libraries_and_licences() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), false).await;
    let http = reqwest::Client::new();
    let index = http.get(format!("{}/", server.base)).send().await.unwrap();
    assert_eq!(index.status(), StatusCode::OK);
    let csp = index.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    let etag = index.headers()["etag"].clone();
    let html = index.text().await.unwrap();
    assert!(html.contains("/assets/js/app.js"), "{html}");

    let again = http
        .get(format!("{}/", server.base))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);

    for (path, kind) in [
        ("/assets/js/app.js", "text/javascript"),
        ("/assets/app.css", "text/css"),
        ("/assets/vendor/echarts.min.js", "text/javascript"),
        (
            "/assets/vendor/LICENSES/echarts.LICENSE",
            "application/octet-stream",
        ),
    ] {
        let r = http
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with(kind), "{path}: {ct}");
    }
    // Compressed for browsers that ask (all do); ECharts is 1.1 MB as it is.
    let gz = http
        .get(format!("{}/assets/vendor/echarts.min.js", server.base))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gz.headers()["content-encoding"], "gzip");
    let size = gz.bytes().await.unwrap().len();
    assert!(size < 600_000, "{size} bytes gzipped");

    // What the policy editor offers comes from the scheduler itself.
    let (st, plugins) = server
        .admin(Method::GET, "/api/v1/schedule/plugins", None)
        .await;
    assert_eq!(st, StatusCode::OK, "{plugins}");
    assert!(
        plugins["scores"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "price" && p["default_weight"] == 2.0),
        "{plugins}"
    );
    assert_eq!(plugins["gpu_policies"][0], "fgd", "{plugins}");
    assert!(
        plugins["filters"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("resources_fit"))
    );

    let missing = http
        .get(format!("{}/assets/js/nope.js", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn a_task_says_why_it_ran_where_it_did_and_nodes_keep_a_metric_history() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), false, &["--heartbeat-ms", "300"]).await;
    let (s, b) = server
        .admin(
            Method::POST,
            "/api/v1/tasks",
            Some(serde_json::json!({
                "name": "why-here", "script": "echo hi",
                "resources": {"cpu_cores": 0.1, "memory_gib": 0.1}
            })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let id = b["id"].as_str().unwrap().to_string();
    let t = wait_state(&server, &id, "succeeded").await;

    let (s, why) = server
        .admin(Method::GET, &format!("/api/v1/tasks/{id}/explain"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{why}");
    assert_eq!(why["task"], id);
    assert_eq!(why["decision"]["chosen_site"], "local");
    assert_eq!(
        why["decision"]["chosen_node"], t["node"],
        "named as people know it"
    );
    assert_eq!(why["policy"]["name"], t["policy"]);
    let site = &why["decision"]["sites"][0];
    assert!(site["feasible"].as_bool().unwrap());
    assert!(!site["factors"].as_array().unwrap().is_empty(), "{site}");

    let (s, e) = server
        .admin(Method::GET, "/api/v1/tasks/task-nope/explain", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");

    // The console's detail and list views: one subject's events newest first, and the
    // newest tasks first, each paged with a cursor.
    let (s, later) = server
        .admin(
            Method::POST,
            "/api/v1/tasks",
            Some(serde_json::json!({"name": "later", "command": ["true"],
                "resources": {"cpu_cores": 0.1, "memory_gib": 0.1}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{later}");
    let (s, evs) = server
        .admin(
            Method::GET,
            &format!("/api/v1/events/log?subject={id}&order=newest&types=task"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{evs}");
    let evs = evs.as_array().unwrap();
    assert!(
        evs.len() >= 3,
        "pending, scheduled, running, succeeded: {evs:?}"
    );
    assert!(evs.iter().all(|e| e["subject"] == id.as_str()), "{evs:?}");
    assert_eq!(
        evs[0]["data"]["state"], "succeeded",
        "newest first: {evs:?}"
    );
    let seqs: Vec<u64> = evs.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "{seqs:?}");
    let (s, older) = server
        .admin(
            Method::GET,
            &format!(
                "/api/v1/events/log?subject={id}&order=newest&before={}&limit=1",
                seqs[0]
            ),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{older}");
    assert_eq!(older[0]["id"].as_u64().unwrap(), seqs[1]);
    let (s, bad) = server
        .admin(Method::GET, "/api/v1/events/log?order=sideways", None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");

    let (s, page) = server
        .admin(Method::GET, "/api/v1/tasks?order=newest&limit=1", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert_eq!(page["items"][0]["id"], later["id"]);
    let cursor = page["next_cursor"]
        .as_str()
        .expect("an older page")
        .to_string();
    let (s, page) = server
        .admin(
            Method::GET,
            &format!("/api/v1/tasks?order=newest&limit=1&cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert_eq!(page["items"][0]["id"], id.as_str());
    assert!(page.get("next_cursor").is_none(), "{page}");

    // The history fills as heartbeats arrive: the first within a few intervals.
    let node = t["node"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let samples = loop {
        let (s, samples) = server
            .admin(Method::GET, &format!("/api/v1/nodes/{node}/metrics"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{samples}");
        let samples = samples.as_array().unwrap().clone();
        if !samples.is_empty() {
            break samples;
        }
        assert!(Instant::now() < deadline, "no metrics recorded for {node}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(samples[0]["cpu_util_pct"].is_number(), "{}", samples[0]);
    let (s, _) = server
        .admin(Method::GET, "/api/v1/nodes/no-such-node/metrics", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// Why the browser test cannot run here, if it cannot.
fn browser_missing(root: &Path) -> Option<String> {
    if Command::new("node").arg("--version").output().is_err() {
        return Some("node is not installed".into());
    }
    if !root.join("web/node_modules/playwright-core").exists() {
        return Some("web/node_modules is missing: run `npm ci` in web/".into());
    }
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Some(format!(
            "{chromium} is missing: apt-get install -y chromium (or set CHROMIUM)"
        ));
    }
    None
}

#[tokio::test]
async fn the_console_works_in_a_real_browser() {
    let root = repo_root();
    if let Some(why) = browser_missing(&root) {
        assert!(
            std::env::var_os("CI").is_none(),
            "browser test cannot run but CI is set: {why}"
        );
        eprintln!("skipping the browser test: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The demo federation, its emulated nodes and the local agent, as `cpn serve` runs by
    // default, with the GPU trace of the repository (data/alibaba-gpu-v2023) for the
    // simulation page.
    let sim_data = root.join("data/alibaba-gpu-v2023");
    let sim_data = sim_data.to_str().expect("a UTF-8 path");
    let server = Server::start_emulated(
        dir.path(),
        &["--heartbeat-ms", "500", "--sim-data", sim_data],
    )
    .await;
    run_node(
        &root,
        "tests/console.test.mjs",
        &[
            ("CPN_URL", server.base.clone()),
            (
                "CPN_PASSWORD_FILE",
                path(&dir.path().join("admin.password")),
            ),
        ],
    )
    .await;
}

fn path(p: &Path) -> String {
    p.to_str().expect("a UTF-8 path").to_string()
}

/// Runs one of `web/tests/` under `node --test` with these variables (and `CPN_SHOTS`), and
/// fails with its output if it fails.
async fn run_node(root: &Path, script: &str, env: &[(&str, String)]) {
    let shots = root.join("target/console-screenshots");
    let mut node = Command::new("node");
    node.args(["--test", "--test-concurrency=1", script])
        .current_dir(root.join("web"))
        .env("CPN_SHOTS", &shots);
    for (k, v) in env {
        node.env(k, v);
    }
    // Blocking, but on its own thread: the server is a separate process anyway.
    let out = tokio::task::spawn_blocking(move || node.output())
        .await
        .unwrap()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser test {script} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    eprintln!("screenshots in {}", shots.display());
}

/// An enterprise supplier registered through the API with a licence and activated with the
/// code mailed to it: it waits in the operator's review queue. Returns its account id.
async fn pending_supplier(
    server: &Server,
    smtp: &crate::market_accounts::Smtp,
    username: &str,
    national_id: &str,
    credit_code: &str,
) -> String {
    let email = format!("ops@{username}.cn");
    let mut body = crate::market_accounts::enterprise_supplier(username, &email);
    body["company_name"] = format!("{username} Computing").into();
    body["legal_representative_id"] = national_id.into();
    body["credit_code"] = credit_code.into();
    let (s, b) = crate::market_accounts::register(server, body).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let id = b["account"]["id"]
        .as_u64()
        .expect("an account id")
        .to_string();
    let code = smtp.code_for(&email, 1);
    let (s, b) = crate::market_accounts::activate(server, username, &code).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["state"], "pending_review", "{b}");
    id
}

/// Issue #14: the marketplace pages, driven by `web/tests/market.test.mjs` against the
/// marketplace tests' federation (supplier `sup` of site acme-sz, node n1 with two GPUs),
/// with a user `bob` of tenant lab who logs in to the console, a second node n2 (one GPU)
/// the supplier lists as class A through the console, and two enterprise suppliers waiting
/// for the operator's review (registered with the real SMTP sink; without aiosmtpd the
/// review part is skipped, saying so, except under `CI`).
#[tokio::test(flavor = "multi_thread")]
async fn the_marketplace_pages_work_in_a_real_browser() {
    let root = repo_root();
    if let Some(why) = browser_missing(&root) {
        assert!(
            std::env::var_os("CI").is_none(),
            "browser test cannot run but CI is set: {why}"
        );
        eprintln!("skipping the browser test: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let smtp = crate::market_accounts::Smtp::start();
    let relay = smtp.as_ref().map(|s| s.relay());
    let flags: Vec<&str> = relay
        .as_deref()
        .map(|r| vec!["--smtp-relay", r])
        .unwrap_or_default();
    let m = crate::market::setup_with(dir.path(), &flags).await;
    // The harness gives its users this password.
    m.server.user("lab", "bob", "user").await;
    let join = m.server.join_token("acme-sz").await;
    let (s, b) = m
        .server
        .call(
            Method::POST,
            "/api/v1/agents/register",
            Some(&join),
            Some(
                serde_json::json!({"site": "acme-sz", "name": "n2", "inventory": {
                "hostname": "n2", "arch": "x86_64", "cpu_model": "AMD EPYC 7763", "cpu_cores": 32,
                "memory_mib": 262144, "gpus": [{"index": 0, "model": "NVIDIA H100 80GB HBM3",
                "memory_mib": 81920}]}}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let mut env = vec![
        ("CPN_URL", m.server.base.clone()),
        (
            "CPN_PASSWORD_FILE",
            path(&dir.path().join("admin.password")),
        ),
        ("CPN_SUPPLIER_TOKEN", m.supplier.clone()),
        ("CPN_USER", "bob".into()),
        ("CPN_USER_PASSWORD", "s3cret-password".into()),
    ];
    if let Some(smtp) = &smtp {
        let approve = pending_supplier(
            &m.server,
            smtp,
            "acmehz",
            crate::market_accounts::NATIONAL_ID,
            crate::market_accounts::CREDIT_CODE,
        )
        .await;
        let reject = pending_supplier(
            &m.server,
            smtp,
            "blurrycloud",
            "110105198001010016",
            "91440300M000200Y5T",
        )
        .await;
        env.push(("CPN_APPROVE", format!("acmehz:{approve}")));
        env.push(("CPN_REJECT", format!("blurrycloud:{reject}")));
    }
    run_node(&root, "tests/market.test.mjs", &env).await;
}
