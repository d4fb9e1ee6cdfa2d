//! `cpn bench tasks`: the two targets of issue #5, measured end to end on a private server
//! over a fresh temp data dir.
//!
//! (a) Submit → bound: `--clients` concurrent clients submit `--tasks` tasks through
//!     `POST /api/v1/tasks`; the clock stops when the last one is durably bound to a node
//!     (no task pending). The nodes register through the agent API like real agents but
//!     never start anything, so the figure is the control plane's: HTTP, authentication,
//!     validation, two fsynced commits per task (submit and bind) and the scheduler.
//! (b) Dispatch latency: tasks (`true`) are submitted at a steady `--rate` per second to
//!     the embedded local agent; a task's dispatch latency is from its submission to the
//!     agent's report that its process started, both stamped by the server.

use anyhow::{Context, Result, bail};
use clap::Args;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct BenchTasksArgs {
    /// Concurrent submitting clients in (a).
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Tasks submitted in (a).
    #[arg(long, default_value_t = 20_000)]
    pub tasks: usize,
    /// Nodes registered for (a), 64 cores and 256 GiB each.
    #[arg(long, default_value_t = 50)]
    pub nodes: usize,
    /// Submissions per second in (b).
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Seconds (b) runs.
    #[arg(long, default_value_t = 15)]
    pub seconds: u64,
    /// Run only (a) or (b).
    #[arg(long, value_parser = ["a", "b"])]
    pub only: Option<String>,
}

const TARGET_BOUND_PER_S: f64 = 2_000.0;
const TARGET_DISPATCH_P99: Duration = Duration::from_millis(200);

pub async fn run(args: BenchTasksArgs) -> Result<()> {
    if args.clients == 0 || args.tasks == 0 || args.nodes == 0 || args.rate <= 0.0 {
        bail!("--clients, --tasks, --nodes and --rate must be above 0");
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; the figures mean something only with --release");
    }
    if args.only.as_deref() != Some("b") {
        submit_to_bound(&args).await?;
    }
    if args.only.as_deref() != Some("a") {
        dispatch_latency(&args).await?;
    }
    Ok(())
}

async fn server(local_agent: bool) -> Result<(cpn_server::RunningServer, tempfile::TempDir)> {
    let dir = tempfile::tempdir().context("create a temp data dir")?;
    let server = cpn_server::start(cpn_server::ServeConfig {
        runtime: cpn_server::runtime::RuntimeConfig {
            heartbeat_interval: Duration::from_secs(2),
            // Bench nodes of (a) never heartbeat; keep them ready for the whole run.
            node_timeout: Duration::from_secs(3600),
            ..Default::default()
        },
        local_agent: local_agent.then(|| "local".to_string()),
        ..cpn_server::ServeConfig::ephemeral(dir.path())
    })
    .await?;
    Ok((server, dir))
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

async fn pending(http: &reqwest::Client, base: &str, token: &str) -> Result<usize> {
    let page: serde_json::Value = http
        .get(format!("{base}/api/v1/tasks?state=pending&limit=1000"))
        .bearer_auth(token)
        .send()
        .await?
        .json()
        .await?;
    Ok(page["items"].as_array().map_or(0, Vec::len))
}

async fn submit_to_bound(args: &BenchTasksArgs) -> Result<()> {
    let (server, _dir) = server(false).await?;
    let base = format!("http://{}", server.addr);
    let token = server.admin_token()?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .build()?;
    let site = serde_json::json!({"name": "bench", "visibility": "public",
        "spec": {"region": "bench", "supplier": "bench", "location": {"lat": 37.5, "lon": 105.2}}});
    let r = http
        .post(format!("{base}/api/v1/sites"))
        .bearer_auth(&token)
        .json(&site)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("create the bench site: {}", r.text().await?);
    }
    // The bench nodes join as agents do, with a join token.
    let r = http
        .post(format!("{base}/api/v1/sites/bench/join-tokens"))
        .bearer_auth(&token)
        .json(&serde_json::json!({}))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("issue a join token: {}", r.text().await?);
    }
    let created: serde_json::Value = r.json().await?;
    let join = created["token"].as_str().unwrap_or_default().to_string();
    for i in 0..args.nodes {
        let body = serde_json::json!({"site": "bench", "name": format!("bench-{i:04}"),
            "inventory": {"hostname": format!("bench-{i:04}"), "cpu_cores": 64, "memory_mib": 262144}});
        let r = http
            .post(format!("{base}/api/v1/agents/register"))
            .bearer_auth(&join)
            .json(&body)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("register a bench node: {}", r.text().await?);
        }
    }
    println!("cpn bench tasks");
    println!(
        "(a) submit → bound: {} tasks, {} clients, {} nodes of 64 cores",
        args.tasks, args.clients, args.nodes
    );
    let started = Instant::now();
    let mut clients = Vec::new();
    for c in 0..args.clients {
        let n = args.tasks / args.clients + usize::from(c < args.tasks % args.clients);
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        clients.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(n);
            for i in 0..n {
                let body = serde_json::json!({"name": format!("b-{c}-{i}"), "command": ["true"],
                    "resources": {"cpu_cores": 0.1, "memory_gib": 0.01}});
                let t = Instant::now();
                let r = http
                    .post(format!("{base}/api/v1/tasks"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await?;
                if r.status().as_u16() != 201 {
                    bail!("submit answered {}: {}", r.status(), r.text().await?);
                }
                lat.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut lat = Vec::with_capacity(args.tasks);
    for c in clients {
        lat.extend(c.await??);
    }
    let submitted = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(600);
    while pending(&http, &base, &token).await? > 0 {
        if Instant::now() > deadline {
            bail!("tasks still pending after 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let bound = started.elapsed();
    lat.sort();
    let rate = args.tasks as f64 / bound.as_secs_f64();
    println!(
        "    all submitted      {:.2} s ({:.0} submits/s)",
        submitted.as_secs_f64(),
        args.tasks as f64 / submitted.as_secs_f64()
    );
    println!("    all bound          {:.2} s", bound.as_secs_f64());
    println!(
        "    throughput         {rate:.0} tasks/s submitted and durably bound (target {TARGET_BOUND_PER_S:.0}: {})",
        if rate >= TARGET_BOUND_PER_S {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "    submit p50 / p99   {:.2} / {:.2} ms",
        pct(&lat, 0.5).as_secs_f64() * 1e3,
        pct(&lat, 0.99).as_secs_f64() * 1e3
    );
    server.stop().await?;
    Ok(())
}

async fn dispatch_latency(args: &BenchTasksArgs) -> Result<()> {
    let (server, _dir) = server(true).await?;
    let base = format!("http://{}", server.addr);
    let token = server.admin_token()?;
    let http = reqwest::Client::new();
    // Wait for the local agent.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let nodes: serde_json::Value = http
            .get(format!("{base}/api/v1/nodes"))
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        if nodes.as_array().is_some_and(|n| !n.is_empty()) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the local agent did not register");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let total = (args.rate * args.seconds as f64).round() as usize;
    println!(
        "(b) dispatch latency: {total} tasks at {} per second on the local agent",
        args.rate
    );
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let mut ticker = tokio::time::interval(interval);
    let mut ids = Vec::with_capacity(total);
    for i in 0..total {
        ticker.tick().await;
        let body = serde_json::json!({"name": format!("d-{i}"), "command": ["true"],
            "resources": {"cpu_cores": 0.01, "memory_gib": 0.01}});
        let r: serde_json::Value = http
            .post(format!("{base}/api/v1/tasks"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await?
            .json()
            .await?;
        ids.push(
            r["id"]
                .as_str()
                .context("submit answered no id")?
                .to_string(),
        );
    }
    let mut latencies = Vec::with_capacity(total);
    let deadline = Instant::now() + Duration::from_secs(120);
    for id in &ids {
        loop {
            let t: serde_json::Value = http
                .get(format!("{base}/api/v1/tasks/{id}"))
                .bearer_auth(&token)
                .send()
                .await?
                .json()
                .await?;
            let history = t["history"].as_array().cloned().unwrap_or_default();
            let at = |state: &str| {
                history
                    .iter()
                    .find(|h| h["state"] == state)
                    .and_then(|h| h["at"].as_str())
                    .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            };
            if let (Some(sub), Some(run)) = (at("pending"), at("running")) {
                latencies.push((run - sub).to_std().unwrap_or_default());
                break;
            }
            if Instant::now() > deadline {
                bail!("task {id} did not start: {t}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    latencies.sort();
    let p99 = pct(&latencies, 0.99);
    println!(
        "    dispatch p50       {:.1} ms",
        pct(&latencies, 0.5).as_secs_f64() * 1e3
    );
    println!(
        "    dispatch p99       {:.1} ms (target {} ms: {})",
        p99.as_secs_f64() * 1e3,
        TARGET_DISPATCH_P99.as_millis(),
        if p99 <= TARGET_DISPATCH_P99 {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "    dispatch max       {:.1} ms",
        pct(&latencies, 1.0).as_secs_f64() * 1e3
    );
    server.stop().await?;
    Ok(())
}
