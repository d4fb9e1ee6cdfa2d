//! `cpn bench tasks`: the task targets of issues #5 and #13, measured end to end on a
//! private server over a fresh temp data dir.
//!
//! (a) Submit → bound: `--clients` concurrent clients submit `--tasks` tasks through
//!     `POST /api/v1/tasks`; the clock stops when the last one is durably bound to a node
//!     (no task pending). The nodes register through the agent API like real agents but
//!     never start anything, so the figure is the control plane's: HTTP, authentication,
//!     validation, two fsynced commits per task (submit and bind) and the scheduler.
//! (b) Dispatch latency: tasks (`true`, `--cpu` cores each) are submitted at a steady
//!     `--rate` per second to the embedded local agent; a task's dispatch latency is from
//!     its submission to the agent's report that its process started, both stamped by the
//!     server, and its end-to-end time from its submission to `succeeded`.
//! (c) Short tasks: `--short-tasks` tasks (`true`, `--cpu` cores each) submitted at once to
//!     the embedded local agent, which holds only a few of them at a time; the wall time
//!     until all have succeeded, and each task's time per phase (waiting for capacity,
//!     dispatch, run and report), stamped by the server.

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
    /// Submissions per second of all the clients of (a) together; 0 submits as fast as the
    /// server answers. Issue #13 asks for the binder cycle p99 at 2,000 tasks/s: `--pace 2000`
    /// measures it at that rate rather than flat out.
    #[arg(long, default_value_t = 0.0)]
    pub pace: f64,
    /// Nodes registered for (a), 64 cores and 256 GiB each, spread over --sites.
    #[arg(long, default_value_t = 5000)]
    pub nodes: usize,
    /// Sites the nodes of (a) are spread over, round robin.
    #[arg(long, default_value_t = 50)]
    pub sites: usize,
    /// Submissions per second in (b).
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Seconds (b) runs.
    #[arg(long, default_value_t = 15)]
    pub seconds: u64,
    /// CPU cores of each task of (b) and (c).
    #[arg(long, default_value_t = 0.5)]
    pub cpu: f64,
    /// Tasks submitted at once in (c).
    #[arg(long, default_value_t = 100)]
    pub short_tasks: usize,
    /// Run only (a), (b) or (c).
    #[arg(long, value_parser = ["a", "b", "c"])]
    pub only: Option<String>,
}

const TARGET_BOUND_PER_S: f64 = 2_000.0;
/// Issue #13: binder cycle p99 at that rate.
const TARGET_CYCLE_P99_S: f64 = 0.05;
const TARGET_DISPATCH_P99: Duration = Duration::from_millis(200);
/// Issue #13: a trivial task's overhead from submission to `succeeded`, p50.
const TARGET_END_TO_END_P50: Duration = Duration::from_millis(100);

pub async fn run(args: BenchTasksArgs) -> Result<()> {
    if args.clients == 0
        || args.tasks == 0
        || args.nodes == 0
        || args.sites == 0
        || args.short_tasks == 0
        || args.rate <= 0.0
        || args.cpu <= 0.0
    {
        bail!(
            "--clients, --tasks, --nodes, --sites, --short-tasks, --rate and --cpu must be above 0"
        );
    }
    if !(args.pace >= 0.0 && args.pace.is_finite()) {
        bail!("--pace must be 0 (flat out) or a number of submissions per second");
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; the figures mean something only with --release");
    }
    let run = |case: &str| args.only.as_deref().is_none_or(|o| o == case);
    if run("a") {
        submit_to_bound(&args).await?;
    }
    if run("b") {
        dispatch_latency(&args).await?;
    }
    if run("c") {
        short_tasks(&args).await?;
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
        ..cpn_server::ServeConfig::ephemeral(dir.path())
    })
    .await?;
    if local_agent {
        super::serve::start_local_agent(&server, "local", &Default::default()).await?;
    }
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
    // The bench nodes join as agents do, with a join token of their site.
    let mut joins = Vec::with_capacity(args.sites);
    for k in 0..args.sites {
        let name = format!("bench-{k:02}");
        let site = serde_json::json!({"name": name, "visibility": "public",
            "spec": {"region": format!("bench-{}", k % 7), "supplier": "bench",
                "location": {"lat": 25.0 + (k % 10) as f64, "lon": 100.0 + (k / 10) as f64}}});
        let r = http
            .post(format!("{base}/api/v1/sites"))
            .bearer_auth(&token)
            .json(&site)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("create bench site {name}: {}", r.text().await?);
        }
        let r = http
            .post(format!("{base}/api/v1/sites/{name}/join-tokens"))
            .bearer_auth(&token)
            .json(&serde_json::json!({}))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("issue a join token: {}", r.text().await?);
        }
        let created: serde_json::Value = r.json().await?;
        joins.push((
            name,
            created["token"].as_str().unwrap_or_default().to_string(),
        ));
    }
    for i in 0..args.nodes {
        let (site, join) = &joins[i % joins.len()];
        let body = serde_json::json!({"site": site, "name": format!("bench-{i:04}"),
            "inventory": {"hostname": format!("bench-{i:04}"), "cpu_cores": 64, "memory_mib": 262144}});
        let r = http
            .post(format!("{base}/api/v1/agents/register"))
            .bearer_auth(join)
            .json(&body)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("register a bench node: {}", r.text().await?);
        }
    }
    println!("cpn bench tasks");
    println!(
        "(a) submit → bound: {} tasks, {} clients{}, {} nodes of 64 cores over {} sites, default profile",
        args.tasks,
        args.clients,
        if args.pace > 0.0 {
            format!(" paced at {} submissions/s", args.pace)
        } else {
            String::new()
        },
        args.nodes,
        args.sites
    );
    let started = Instant::now();
    let start = tokio::time::Instant::now();
    let (clients_n, pace) = (args.clients, args.pace);
    let mut clients = Vec::new();
    for c in 0..args.clients {
        let n = args.tasks / args.clients + usize::from(c < args.tasks % args.clients);
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        clients.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(n);
            for i in 0..n {
                if pace > 0.0 {
                    // Submission i * clients + c of all is due at its place in the pace.
                    let due = ((i * clients_n + c) as f64) / pace;
                    tokio::time::sleep_until(start + Duration::from_secs_f64(due)).await;
                }
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
        if args.pace > 0.0 {
            // A paced run cannot go faster than its pace.
            "not judged when paced"
        } else if rate >= TARGET_BOUND_PER_S {
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
    let metrics = http
        .get(format!("{base}/metrics"))
        .bearer_auth(&token)
        .send()
        .await?
        .text()
        .await?;
    match cycle_p99_bound(&metrics) {
        Some((le, cycles)) => println!(
            "    binder cycle p99   <= {:.1} ms over {cycles} cycles at {rate:.0} tasks/s (target {:.0} ms at {TARGET_BOUND_PER_S:.0}/s: {})",
            le * 1e3,
            TARGET_CYCLE_P99_S * 1e3,
            if le <= TARGET_CYCLE_P99_S {
                "met"
            } else if args.pace == 0.0 && rate > TARGET_BOUND_PER_S * 1.05 {
                // Flat out, every cycle is full and shares the CPU with faster clients.
                "not judged flat out: measure with --pace 2000"
            } else {
                "NOT met"
            }
        ),
        None => println!("    binder cycle p99   (no cycle histogram in /metrics)"),
    }
    server.stop().await?;
    Ok(())
}

/// The upper bound of the histogram bucket that holds the 99th percentile of binding
/// cycles (from `cpn_binder_cycle_seconds` in /metrics), and how many cycles there were.
fn cycle_p99_bound(metrics: &str) -> Option<(f64, u64)> {
    let buckets: Vec<(f64, u64)> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("cpn_binder_cycle_seconds_bucket{le=\""))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse::<f64>().ok()? as u64))
        })
        .collect();
    let total = buckets.last()?.1;
    let rank = (total as f64 * 0.99).ceil() as u64;
    buckets
        .iter()
        .find(|(_, n)| *n >= rank.max(1))
        .map(|&(le, _)| (le, total))
}

/// Waits until the embedded local agent has registered its node.
async fn local_node(http: &reqwest::Client, base: &str, token: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let nodes: serde_json::Value = http
            .get(format!("{base}/api/v1/nodes"))
            .bearer_auth(token)
            .send()
            .await?
            .json()
            .await?;
        if nodes.as_array().is_some_and(|n| !n.is_empty()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the local agent did not register");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn submit_true(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    name: String,
    cpu: f64,
) -> Result<String> {
    let body = serde_json::json!({"name": name, "command": ["true"],
        "resources": {"cpu_cores": cpu, "memory_gib": 0.01}});
    let r = http
        .post(format!("{base}/api/v1/tasks"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?;
    if r.status().as_u16() != 201 {
        bail!("submit answered {}: {}", r.status(), r.text().await?);
    }
    let r: serde_json::Value = r.json().await?;
    Ok(r["id"]
        .as_str()
        .context("submit answered no id")?
        .to_string())
}

/// When a task entered each state of its first attempt, as the server stamped it.
#[derive(Debug, Default)]
struct Stamps {
    pending: Option<chrono::DateTime<chrono::FixedOffset>>,
    scheduled: Option<chrono::DateTime<chrono::FixedOffset>>,
    running: Option<chrono::DateTime<chrono::FixedOffset>>,
    succeeded: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// A state that is not the way of a task that succeeded at the first try.
    other: Option<String>,
}

impl Stamps {
    fn of(task: &serde_json::Value) -> Stamps {
        let mut s = Stamps::default();
        for h in task["history"].as_array().into_iter().flatten() {
            let at = h["at"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
            let slot = match h["state"].as_str().unwrap_or_default() {
                "pending" => &mut s.pending,
                "scheduled" => &mut s.scheduled,
                "running" => &mut s.running,
                "succeeded" => &mut s.succeeded,
                other => {
                    s.other.get_or_insert_with(|| other.to_string());
                    continue;
                }
            };
            slot.get_or_insert(at.unwrap_or_default());
        }
        s
    }
}

fn span(
    from: Option<chrono::DateTime<chrono::FixedOffset>>,
    to: Option<chrono::DateTime<chrono::FixedOffset>>,
) -> Option<Duration> {
    Some((to? - from?).to_std().unwrap_or_default())
}

async fn get_task(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    id: &str,
) -> Result<serde_json::Value> {
    Ok(http
        .get(format!("{base}/api/v1/tasks/{id}"))
        .bearer_auth(token)
        .send()
        .await?
        .json()
        .await?)
}

/// Waits until every task has ended, then reads their stamps.
async fn ended_stamps(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    ids: &[String],
    within: Duration,
) -> Result<Vec<Stamps>> {
    let deadline = Instant::now() + within;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        loop {
            let t = get_task(http, base, token, id).await?;
            let state = t["state"].as_str().unwrap_or_default();
            if ["succeeded", "failed", "cancelled", "lost"].contains(&state) {
                out.push(Stamps::of(&t));
                break;
            }
            if Instant::now() > deadline {
                bail!("task {id} did not end in {within:?}: {t}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(out)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// p50 / p99 / max of one phase over the tasks that went through it.
fn phase_line(what: &str, mut values: Vec<Duration>) {
    if values.is_empty() {
        println!("    {what:<26} none");
        return;
    }
    values.sort();
    println!(
        "    {what:<26} p50 {} / p99 {} / max {}",
        ms(pct(&values, 0.5)),
        ms(pct(&values, 0.99)),
        ms(pct(&values, 1.0))
    );
}

fn met_or_not(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

async fn dispatch_latency(args: &BenchTasksArgs) -> Result<()> {
    let (server, _dir) = server(true).await?;
    let base = format!("http://{}", server.addr);
    let token = server.admin_token()?;
    let http = reqwest::Client::new();
    local_node(&http, &base, &token).await?;
    let total = (args.rate * args.seconds as f64).round() as usize;
    println!(
        "(b) dispatch latency: {total} tasks (`true`, {} CPU each) at {} per second on the local agent",
        args.cpu, args.rate
    );
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let mut ticker = tokio::time::interval(interval);
    // Submissions overlap when one is slow, so the rate holds.
    let mut submits = Vec::with_capacity(total);
    for i in 0..total {
        ticker.tick().await;
        let (http, base, token, cpu) = (http.clone(), base.clone(), token.clone(), args.cpu);
        submits.push(tokio::spawn(async move {
            submit_true(&http, &base, &token, format!("d-{i}"), cpu).await
        }));
    }
    let mut ids = Vec::with_capacity(total);
    for s in submits {
        ids.push(s.await??);
    }
    let stamps = ended_stamps(&http, &base, &token, &ids, Duration::from_secs(120)).await?;
    let mut dispatch: Vec<Duration> = stamps
        .iter()
        .filter_map(|s| span(s.pending, s.running))
        .collect();
    let mut end_to_end: Vec<Duration> = stamps
        .iter()
        .filter_map(|s| span(s.pending, s.succeeded))
        .collect();
    if dispatch.len() < total {
        bail!(
            "{} of {total} tasks never ran (first other state: {:?})",
            total - dispatch.len(),
            stamps.iter().find_map(|s| s.other.clone())
        );
    }
    dispatch.sort();
    end_to_end.sort();
    let p99 = pct(&dispatch, 0.99);
    println!("    dispatch p50       {}", ms(pct(&dispatch, 0.5)));
    println!(
        "    dispatch p99       {} (target {} ms: {})",
        ms(p99),
        TARGET_DISPATCH_P99.as_millis(),
        met_or_not(p99 <= TARGET_DISPATCH_P99)
    );
    println!("    dispatch max       {}", ms(pct(&dispatch, 1.0)));
    let phase = |from: fn(&Stamps) -> _, to: fn(&Stamps) -> _| -> Vec<Duration> {
        stamps.iter().filter_map(|s| span(from(s), to(s))).collect()
    };
    phase_line(
        "  of which pending→bound",
        phase(|s| s.pending, |s| s.scheduled),
    );
    phase_line(
        "  of which bound→running",
        phase(|s| s.scheduled, |s| s.running),
    );
    phase_line(
        "run+report (running→done)",
        phase(|s| s.running, |s| s.succeeded),
    );
    if end_to_end.len() < total {
        println!(
            "    succeeded          {} of {total} (first other state: {:?})",
            end_to_end.len(),
            stamps.iter().find_map(|s| s.other.clone())
        );
    }
    if !end_to_end.is_empty() {
        let p50 = pct(&end_to_end, 0.5);
        println!(
            "    submit → succeeded p50 {} (target {} ms: {}) / p99 {} / max {}",
            ms(p50),
            TARGET_END_TO_END_P50.as_millis(),
            met_or_not(p50 <= TARGET_END_TO_END_P50),
            ms(pct(&end_to_end, 0.99)),
            ms(pct(&end_to_end, 1.0))
        );
    }
    server.stop().await?;
    Ok(())
}

async fn short_tasks(args: &BenchTasksArgs) -> Result<()> {
    let (server, _dir) = server(true).await?;
    let base = format!("http://{}", server.addr);
    let token = server.admin_token()?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.short_tasks)
        .build()?;
    local_node(&http, &base, &token).await?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let n = args.short_tasks;
    println!(
        "(c) short tasks: {n} tasks (`true`, {} CPU each) submitted at once on the local agent ({cores} cores: {} at a time)",
        args.cpu,
        (cores as f64 / args.cpu).floor()
    );
    let started = Instant::now();
    let submits: Vec<_> = (0..n)
        .map(|i| {
            let (http, base, token, cpu) = (http.clone(), base.clone(), token.clone(), args.cpu);
            tokio::spawn(
                async move { submit_true(&http, &base, &token, format!("s-{i}"), cpu).await },
            )
        })
        .collect();
    let mut ids = Vec::with_capacity(n);
    for s in submits {
        ids.push(s.await??);
    }
    let submitted = started.elapsed();
    // Counts are cheap to read; the tasks themselves are read once all have ended.
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let counts: std::collections::BTreeMap<String, u64> = http
            .get(format!("{base}/api/v1/tasks/counts"))
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        let active: u64 = ["pending", "scheduled", "running"]
            .iter()
            .filter_map(|s| counts.get(*s))
            .sum();
        if active == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("tasks still active after 15 minutes: {counts:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_ended = started.elapsed();
    let stamps = ended_stamps(&http, &base, &token, &ids, Duration::from_secs(10)).await?;
    let succeeded = stamps.iter().filter(|s| s.succeeded.is_some()).count();
    let phase = |from: fn(&Stamps) -> _, to: fn(&Stamps) -> _| -> Vec<Duration> {
        stamps.iter().filter_map(|s| span(from(s), to(s))).collect()
    };
    println!(
        "    all submitted            {:.2} s",
        submitted.as_secs_f64()
    );
    println!(
        "    all ended                {:.2} s ({succeeded} of {n} succeeded; {:.1} tasks/s)",
        all_ended.as_secs_f64(),
        n as f64 / all_ended.as_secs_f64()
    );
    phase_line(
        "waiting (pending→bound)",
        phase(|s| s.pending, |s| s.scheduled),
    );
    phase_line(
        "dispatch (bound→running)",
        phase(|s| s.scheduled, |s| s.running),
    );
    phase_line(
        "run+report (running→done)",
        phase(|s| s.running, |s| s.succeeded),
    );
    phase_line(
        "overhead (bound→done)",
        phase(|s| s.scheduled, |s| s.succeeded),
    );
    phase_line("submit → succeeded", phase(|s| s.pending, |s| s.succeeded));
    if succeeded < n {
        bail!(
            "{} of {n} tasks did not succeed (first other state: {:?})",
            n - succeeded,
            stamps.iter().find_map(|s| s.other.clone())
        );
    }
    server.stop().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::cycle_p99_bound;

    #[test]
    fn the_p99_bucket_of_the_cycle_histogram() {
        let metrics = "# TYPE cpn_binder_cycle_seconds histogram\n\
            cpn_binder_cycle_seconds_bucket{le=\"0.001\"} 50\n\
            cpn_binder_cycle_seconds_bucket{le=\"0.005\"} 98\n\
            cpn_binder_cycle_seconds_bucket{le=\"0.05\"} 99\n\
            cpn_binder_cycle_seconds_bucket{le=\"+Inf\"} 100\n\
            cpn_binder_cycle_seconds_sum 0.4\n";
        assert_eq!(cycle_p99_bound(metrics), Some((0.05, 100)));
        assert_eq!(cycle_p99_bound("nothing"), None);
    }
}
