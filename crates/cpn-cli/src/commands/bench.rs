//! `cpn bench registry`: durable creates per second through the real HTTP API, the figure
//! issue #2 asks for. Every create is validated, authenticated and fsynced before its 201.

use crate::cli::BenchRegistryArgs;
use anyhow::{Context, Result, bail};
use std::time::{Duration, Instant};

pub async fn registry(args: BenchRegistryArgs, token: Option<String>) -> Result<()> {
    if args.clients == 0 || args.requests == 0 {
        bail!("--clients and --requests must be at least 1");
    }
    let (base, token, server, _dir) = match &args.against {
        Some(url) => {
            let token = token.context("--against needs a token: pass --token or set CPN_TOKEN")?;
            (url.trim_end_matches('/').to_string(), token, None, None)
        }
        None => {
            let dir = tempfile::tempdir().context("create a temp data dir")?;
            let server = cpn_server::start(cpn_server::ServeConfig {
                data_dir: dir.path().to_path_buf(),
                listen: "127.0.0.1:0".parse().expect("valid address"),
                load_demo: false,
            })
            .await?;
            let token = server.admin_token()?;
            (
                format!("http://{}", server.addr),
                token,
                Some(server),
                Some(dir),
            )
        }
    };

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .build()
        .context("build HTTP client")?;
    let run_id = std::process::id();
    eprintln!(
        "benchmark: {} creates of sites through {base}, {} concurrent clients",
        args.requests, args.clients
    );
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..args.clients {
        // Spread the requests evenly; the first clients take the remainder.
        let n = args.requests / args.clients + usize::from(client < args.requests % args.clients);
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(n);
            for i in 0..n {
                let body = serde_json::json!({
                    "name": format!("bench-{run_id}-{client}-{i}"),
                    "spec": {"region": "bench", "supplier": "bench", "location": {"lat": 37.5, "lon": 105.2}}
                });
                let t = Instant::now();
                let resp = http
                    .post(format!("{base}/api/v1/sites"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                    .context("send create")?;
                let status = resp.status();
                if status.as_u16() != 201 {
                    let text = resp.text().await.unwrap_or_default();
                    bail!("create answered {status}: {text}");
                }
                latencies.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies: Vec<Duration> = Vec::with_capacity(args.requests);
    for t in tasks {
        latencies.extend(t.await.context("client task")??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| {
        latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    println!("creates            {}", latencies.len());
    println!("clients            {}", args.clients);
    println!("elapsed            {:.2} s", elapsed.as_secs_f64());
    println!(
        "throughput         {:.0} durable creates/s",
        latencies.len() as f64 / elapsed.as_secs_f64()
    );
    println!("latency p50        {:.2} ms", pct(0.50).as_secs_f64() * 1e3);
    println!("latency p99        {:.2} ms", pct(0.99).as_secs_f64() * 1e3);
    println!("latency max        {:.2} ms", pct(1.0).as_secs_f64() * 1e3);
    if let Some(server) = server {
        server.stop().await?;
    }
    Ok(())
}
