//! `cpn bench registry`: durable creates per second through the real HTTP API, the figure
//! issue #2 asks for. Every create is validated, authenticated and fsynced before its 201.
//!
//! `cpn bench schedule`: the scheduler benchmark of issue #3, in the shape of
//! kube-scheduler's scheduler_perf, in process on synthetic clusters and workloads.

use crate::cli::{BenchRegistryArgs, BenchScheduleArgs};
use anyhow::{Context, Result, bail};
use cpn_sched::framework::Sampling;
use cpn_sched::synthetic::{self, Mix};
use cpn_sched::{Cluster, Mode, Profile, Scheduler, Task};
use std::io::{IsTerminal, Write};
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
            let server = cpn_server::start(cpn_server::ServeConfig::ephemeral(dir.path())).await?;
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

/// Targets of issue #3.
const TARGET_ADAPTIVE: f64 = 8_100.0;
const STRETCH_ADAPTIVE: f64 = 20_000.0;
const TARGET_ALL_NODES: f64 = 2_000.0;
const TARGET_SITE_CHOICE_P99: Duration = Duration::from_millis(1);

pub fn schedule(args: BenchScheduleArgs) -> Result<()> {
    if args.nodes == 0 || args.tasks == 0 {
        bail!("--nodes and --tasks must be at least 1");
    }
    if args.sites == 0 || args.nodes_per_site == 0 || args.federation_decisions == 0 {
        bail!("--sites, --nodes-per-site and --federation-decisions must be at least 1");
    }
    let started = Instant::now();
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; the figures mean something only with --release");
    }
    // One site cannot meet residency or site-selector constraints aimed at other regions,
    // so (a) and (b) leave hard constraints out, as kube's scheduler_perf pods have none.
    let single_site_mix = Mix {
        constrained: 0.0,
        ..Mix::default()
    };
    let workload = tasks_summary(&single_site_mix);
    println!("cpn bench schedule (seed {})", args.seed);
    println!("workload           {workload}");
    println!(
        "                   hard region/selector constraints off in (a) and (b): one site cannot meet them"
    );
    println!();

    let adaptive = cpn_sched::plugins::default_profile();
    let wanted = adaptive.sampling.nodes_to_find(args.nodes);
    let a = placements(&args, "a", adaptive.clone(), &single_site_mix)?;
    a.print(
        &format!(
            "(a) kube-style: 1 site, {} nodes, default plugins, adaptive sampling ({wanted} of {} nodes)",
            args.nodes, args.nodes
        ),
        &format!(
            "target >= {TARGET_ADAPTIVE:.0}/s (stretch {STRETCH_ADAPTIVE:.0}/s): {}",
            if a.placements_per_s() >= STRETCH_ADAPTIVE {
                "met, stretch met"
            } else if a.placements_per_s() >= TARGET_ADAPTIVE {
                "met, stretch missed"
            } else {
                "MISSED"
            }
        ),
    );

    let all = Profile {
        sampling: Sampling::All,
        ..adaptive
    };
    let b = placements(&args, "b", all, &single_site_mix)?;
    b.print(
        &format!(
            "(b) the same, scoring every node: 1 site, {} nodes, Sampling::All",
            args.nodes
        ),
        &format!(
            "target >= {TARGET_ALL_NODES:.0}/s: {}",
            met(b.placements_per_s() >= TARGET_ALL_NODES)
        ),
    );

    federation(&args)?;
    println!();
    println!(
        "total              {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

/// The task mix in words.
fn tasks_summary(mix: &Mix) -> String {
    let cpu = 1.0 - mix.shared_gpu - mix.whole_gpu;
    format!(
        "{:.0}% CPU tasks of 0.5-4 cores, {:.0}% 1/4 or 1/2 of a GPU, {:.0}% 1/2/4/8 whole GPUs or NPUs \
         (8 cores, 64 GiB each); sized so the cluster does not fill up",
        cpu * 100.0,
        mix.shared_gpu * 100.0,
        mix.whole_gpu * 100.0
    )
}

/// Progress on stderr: rewritten in place on a terminal, phase lines only otherwise.
struct Progress {
    tty: bool,
}

impl Progress {
    fn new() -> Self {
        Progress {
            tty: std::io::stderr().is_terminal(),
        }
    }
    fn phase(&self, case: &str, what: &str) {
        eprintln!("[{case}] {what}");
    }
    fn step(&self, case: &str, done: usize, total: usize) {
        if self.tty && (done.is_multiple_of(1000) || done == total) {
            eprint!("\r[{case}] {done}/{total}");
            if done == total {
                eprintln!();
            }
            let _ = std::io::stderr().flush();
        }
    }
}

/// Figures of one placement case.
struct PlacementFigures {
    nodes: usize,
    init: usize,
    init_failed: usize,
    attempts: usize,
    placed: usize,
    /// Of the misses, those no wait would fix (no chip of the kind asked anywhere).
    forever: usize,
    top_reasons: Vec<(String, u32)>,
    elapsed: Duration,
    /// Per decision, sorted.
    latencies: Vec<Duration>,
    /// Share of CPU, memory and GPU milli in use at the end.
    used: (f64, f64, f64),
}

impl PlacementFigures {
    fn placements_per_s(&self) -> f64 {
        self.placed as f64 / self.elapsed.as_secs_f64()
    }

    fn print(&self, title: &str, verdict: &str) {
        println!("{title}");
        println!(
            "  warm-up          {} tasks placed first, not timed ({} unschedulable)",
            self.init, self.init_failed
        );
        println!(
            "  attempts         {} in {:.2} s ({:.0} attempts/s)",
            self.attempts,
            self.elapsed.as_secs_f64(),
            self.attempts as f64 / self.elapsed.as_secs_f64()
        );
        println!(
            "  unschedulable    {} ({} of them permanently)",
            self.attempts - self.placed,
            self.forever
        );
        if !self.top_reasons.is_empty() {
            let reasons: Vec<String> = self
                .top_reasons
                .iter()
                .map(|(r, n)| format!("{r} x{n}"))
                .collect();
            println!("  top reasons      {}", reasons.join(", "));
        }
        println!(
            "  throughput       {:.0} placements/s    {verdict}",
            self.placements_per_s()
        );
        println!(
            "  latency p50      {}",
            micros(percentile(&self.latencies, 0.50))
        );
        println!(
            "  latency p99      {}",
            micros(percentile(&self.latencies, 0.99))
        );
        println!(
            "  latency max      {}",
            micros(percentile(&self.latencies, 1.0))
        );
        println!(
            "  in use at end    CPU {:.1}%, memory {:.1}%, GPU {:.1}% of {} nodes",
            self.used.0 * 100.0,
            self.used.1 * 100.0,
            self.used.2 * 100.0,
            self.nodes
        );
        println!();
    }
}

/// Nearest-rank percentile of sorted values.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn micros(d: Duration) -> String {
    format!("{:.1} us", d.as_secs_f64() * 1e6)
}

/// Cases (a) and (b): one site of `--nodes` nodes; `--init-tasks` placed untimed, then
/// `--tasks` placed one `schedule` call at a time, each call timed.
fn placements(
    args: &BenchScheduleArgs,
    case: &str,
    profile: Profile,
    mix: &Mix,
) -> Result<PlacementFigures> {
    let progress = Progress::new();
    progress.phase(case, &format!("building 1 site of {} nodes", args.nodes));
    let mut cluster = synthetic::cluster(1, args.nodes, args.seed);
    let all = synthetic::tasks_with(args.init_tasks + args.tasks, args.seed, mix);
    let (init, timed) = all.split_at(args.init_tasks);
    let mut scheduler = Scheduler::new(profile, args.seed);
    progress.phase(case, &format!("placing {} warm-up tasks", init.len()));
    let mut init_failed = 0;
    for task in init {
        if scheduler
            .schedule(task, &mut cluster, Mode::Fast)
            .0
            .is_err()
        {
            init_failed += 1;
        }
    }
    progress.phase(case, &format!("placing {} timed tasks", timed.len()));
    let mut latencies = Vec::with_capacity(timed.len());
    let mut placed = 0;
    let mut forever = 0;
    let mut reasons: Vec<(String, u32)> = Vec::new();
    let started = Instant::now();
    for (i, task) in timed.iter().enumerate() {
        let t = Instant::now();
        let (result, _) = scheduler.schedule(task, &mut cluster, Mode::Fast);
        latencies.push(t.elapsed());
        match result {
            Ok(_) => placed += 1,
            Err(u) => {
                forever += usize::from(u.forever);
                for (r, n) in u.reasons {
                    match reasons.iter_mut().find(|(k, _)| *k == r) {
                        Some((_, m)) => *m += n,
                        None => reasons.push((r, n)),
                    }
                }
            }
        }
        progress.step(case, i + 1, timed.len());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    reasons.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    reasons.truncate(3);
    Ok(PlacementFigures {
        nodes: args.nodes,
        init: init.len(),
        init_failed,
        attempts: timed.len(),
        placed,
        forever,
        top_reasons: reasons,
        elapsed,
        latencies,
        used: in_use(&cluster),
    })
}

/// Share of CPU, memory and GPU milli in use over the cluster's healthy nodes.
fn in_use(cluster: &Cluster) -> (f64, f64, f64) {
    let share = |free: u64, total: u64| {
        if total == 0 {
            0.0
        } else {
            1.0 - free as f64 / total as f64
        }
    };
    let (mut free, mut total) = ([0u64; 3], [0u64; 3]);
    for s in &cluster.sites {
        for (i, (f, t)) in [
            (s.free.cpu_milli, s.total.cpu_milli),
            (s.free.memory_mib, s.total.memory_mib),
            (s.free.gpu_milli, s.total.gpu_milli),
        ]
        .into_iter()
        .enumerate()
        {
            free[i] += f;
            total[i] += t;
        }
    }
    (
        share(free[0], total[0]),
        share(free[1], total[1]),
        share(free[2], total[2]),
    )
}

/// Resident memory of this process in bytes (Linux; None elsewhere).
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Case (c): `rank_sites` over a federation of `--sites` × `--nodes-per-site` nodes.
fn federation(args: &BenchScheduleArgs) -> Result<()> {
    let progress = Progress::new();
    let nodes = args.sites * args.nodes_per_site;
    progress.phase(
        "c",
        &format!(
            "building {} sites x {} nodes = {nodes} nodes",
            args.sites, args.nodes_per_site
        ),
    );
    let tasks: Vec<Task> = synthetic::tasks(args.federation_decisions, args.seed);
    let before = rss_bytes();
    let built = Instant::now();
    let cluster = synthetic::cluster(args.sites, args.nodes_per_site, args.seed);
    let build_time = built.elapsed();
    let after = rss_bytes();
    let mut scheduler = Scheduler::new(cpn_sched::plugins::default_profile(), args.seed);
    progress.phase("c", &format!("timing {} site choices", tasks.len()));
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut no_site = 0;
    let mut feasible_sites = 0usize;
    let started = Instant::now();
    for (i, task) in tasks.iter().enumerate() {
        let t = Instant::now();
        let ranked = scheduler.rank_sites(task, &cluster);
        latencies.push(t.elapsed());
        feasible_sites += ranked.len();
        no_site += usize::from(ranked.is_empty());
        progress.step("c", i + 1, tasks.len());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let p99 = percentile(&latencies, 0.99);
    println!(
        "(c) federation: {} sites x {} nodes = {nodes} nodes, {} links; site choice (rank_sites), default plugins",
        args.sites,
        args.nodes_per_site,
        cluster.topology.link_count()
    );
    println!(
        "  workload         default mix with hard constraints on: {:.0}% residency or tier selector, {:.0}% region (anti-)affinity",
        Mix::default().constrained * 100.0,
        Mix::default().affinity * 100.0
    );
    println!("  cluster build    {:.2} s", build_time.as_secs_f64());
    match (before, after) {
        (Some(b), Some(a)) => println!(
            "  memory (VmRSS)   {} before the cluster, {} after: the cluster takes {} ({:.0} bytes per node)",
            mib(b),
            mib(a),
            mib(a.saturating_sub(b)),
            a.saturating_sub(b) as f64 / nodes as f64
        ),
        _ => println!("  memory (VmRSS)   not available on this platform"),
    }
    println!(
        "  site choices     {} in {:.2} s ({:.0}/s), {:.0} feasible sites on average, {no_site} with none",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        feasible_sites as f64 / latencies.len() as f64
    );
    println!(
        "  latency p50      {}",
        micros(percentile(&latencies, 0.50))
    );
    println!(
        "  latency p99      {}    target <= {} ms: {}",
        micros(p99),
        TARGET_SITE_CHOICE_P99.as_millis(),
        met(p99 <= TARGET_SITE_CHOICE_P99)
    );
    println!("  latency max      {}", micros(percentile(&latencies, 1.0)));
    Ok(())
}
