//! A workflow condition with nested loops over a large input is refused at save (three
//! levels) or stopped by its budget or deadline (two), with `/healthz` answering in under
//! 100 ms throughout, also after a `kill -9` and restart (unfinished workflows resume).

use crate::harness::{Server, free_port, login};
use crate::{ALONE, HEALTHZ_BOUND};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The slowest `/healthz` answer seen while probing every 20 ms until `stop` is raised,
/// and how many probes were made.
async fn probe_healthz(base: String, stop: Arc<AtomicBool>) -> (Duration, usize) {
    let http = reqwest::Client::new();
    let (mut worst, mut n) = (Duration::ZERO, 0);
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let r = http
            .get(format!("{base}/healthz"))
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .expect("healthz answers");
        assert_eq!(r.status(), StatusCode::OK);
        worst = worst.max(started.elapsed());
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (worst, n)
}

fn looping_flow(nesting: usize) -> Value {
    let when = match nesting {
        2 => "inputs.xs.all(a, inputs.xs.all(b, a + b >= 0))",
        _ => "inputs.xs.all(a, inputs.xs.all(b, inputs.xs.all(c, a + b + c >= 0)))",
    };
    let xs: Vec<u32> = (0..8000).collect();
    json!({"definition": {"name": "loops", "steps": [
        {"id": "check", "when": when, "action": {"kind": "noop"}},
        {"id": "after", "depends_on": ["check"], "action": {"kind": "noop"}}]},
        "inputs": {"xs": xs}})
}

async fn flow(server: &Server, token: &str, id: &str) -> Value {
    let (s, b) = server
        .call(
            Method::GET,
            &format!("/api/v1/flows/{id}"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b
}

async fn wait_flows_failed(server: &Server, token: &str, ids: &[String]) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut out = Vec::new();
        for id in ids {
            out.push(flow(server, token, id).await);
        }
        if out.iter().all(|f| f["state"] == "failed") {
            return out;
        }
        assert!(Instant::now() < deadline, "workflows did not fail: {out:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn assert_stopped(f: &Value) {
    let error = f["steps"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("deadline") || error.contains("loop iterations"),
        "the step says why it stopped: {f}"
    );
    assert_eq!(
        f["steps"][1]["state"], "waiting",
        "nothing after it ran: {f}"
    );
}

#[tokio::test]
async fn a_runaway_condition_is_refused_or_stopped_and_healthz_stays_fast_across_a_restart() {
    let _alone = ALONE.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let flags = ["--no-local-agent", "--listen", listen.as_str()];
    let mut server = Server::start_with(dir.path(), false, &flags).await;
    let user = server.user("acme", "ada", "user").await;

    // Three nested loops: refused at save, nothing stored.
    let (s, b) = server
        .call(
            Method::POST,
            "/api/v1/flows",
            Some(&user),
            Some(looping_flow(3)),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "definition.steps[0].when", "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nested 3 deep"),
        "{b}"
    );
    // An input list past the element limit: refused too.
    let mut huge = looping_flow(2);
    huge["inputs"]["xs"] = json!(vec![1; 10_001]);
    let (s, b) = server
        .call(Method::POST, "/api/v1/flows", Some(&user), Some(huge))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "inputs.xs", "{b}");

    // Policies' CEL rules have the same save-time limits.
    let (s, b) = server
        .admin(
            Method::POST,
            "/api/v1/policies",
            Some(
                json!({"name": "loopy", "spec": {"cel_filters": [{"name": "loops",
                "expr": "site.models.all(a, site.models.all(b, site.models.all(c, a != '')))"}]}}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "spec.cel_filters[0].expr", "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nested 3 deep"),
        "{b}"
    );

    // Two nested loops over 8,000 items (64 million steps unbounded): stopped, while the
    // server keeps answering.
    let stop = Arc::new(AtomicBool::new(false));
    let prober = tokio::spawn(probe_healthz(server.base.clone(), stop.clone()));
    let mut ids = Vec::new();
    for _ in 0..4 {
        let (s, b) = server
            .call(
                Method::POST,
                "/api/v1/flows",
                Some(&user),
                Some(looping_flow(2)),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        ids.push(b["id"].as_str().unwrap().to_string());
    }
    let failed = wait_flows_failed(&server, &user, &ids).await;
    failed.iter().for_each(assert_stopped);
    stop.store(true, Ordering::Relaxed);
    let (worst, probes) = prober.await.unwrap();
    assert!(probes > 10, "{probes} probes");
    assert!(
        worst < HEALTHZ_BOUND,
        "/healthz took {worst:?} while conditions ran"
    );

    // Two more, and the server killed while they evaluate: the restarted server resumes
    // them, stops them again, and answers fast from its first request on.
    for _ in 0..2 {
        let (s, b) = server
            .call(
                Method::POST,
                "/api/v1/flows",
                Some(&user),
                Some(looping_flow(2)),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        ids.push(b["id"].as_str().unwrap().to_string());
    }
    server.kill9();
    server = Server::start_with(dir.path(), false, &flags).await;
    let stop = Arc::new(AtomicBool::new(false));
    let prober = tokio::spawn(probe_healthz(server.base.clone(), stop.clone()));
    let user = login(&server, "ada").await;
    let after = wait_flows_failed(&server, &user, &ids).await;
    after.iter().for_each(assert_stopped);
    // Those that had failed before the restart are as they were: failed, not run again.
    for (before, now) in failed.iter().zip(&after) {
        assert_eq!(before["steps"], now["steps"]);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let (worst, probes) = prober.await.unwrap();
    assert!(probes > 10, "{probes} probes");
    assert!(
        worst < HEALTHZ_BOUND,
        "/healthz took {worst:?} after the restart"
    );
}
