//! `cpn task submit|list|get|logs|cancel`: running work on the federation's nodes (I1).
//! Submits a process (argv or script) or a full task document, optionally waits for the
//! end or streams its output, and shows tasks with their state, attempts and KPIs.

use super::{Ctx, ExitWith};
use crate::client::decode;
use crate::input;
use crate::output;
use anyhow::{Context, Result, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Args, Subcommand, ValueEnum};
use cpn_api_types::tasks::{LogStream, TaskState, TaskSubmit, TaskSubmitted, TaskView};
use serde_json::Value;
use std::io::Write;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum TaskCmd {
    /// Submit a task: a program with its arguments (after `--`), a script, or a whole task
    /// document (`-f`).
    ///
    /// Prints the task id (all replica ids with --replicas). With --wait, waits for the
    /// task to end and exits with its exit code (1 when it failed without one, was lost or
    /// cancelled); --follow streams its output meanwhile.
    ///
    /// Examples:
    ///   cpn task submit -- python3 train.py --epochs 3
    ///   cpn task submit --gpus 1 --memory-gib 16 --env SEED=7 --wait -- ./bench
    ///   cpn task submit --script job.sh --site ningxia-zw-1 --follow
    ///   cpn task submit -f task.yaml --priority 5
    ///   cpn task submit --origin Shanghai --policy nearest --wait -- hostname
    #[command(verbatim_doc_comment)]
    Submit(Box<SubmitArgs>),
    /// List tasks, oldest first (all pages unless --limit is given).
    ///
    /// Examples:
    ///   cpn task list --state running,pending
    ///   cpn task list --node local/myhost -o json
    #[command(visible_alias = "ls", verbatim_doc_comment)]
    List(TaskListArgs),
    /// Show one task: placement, state history, attempts and KPIs (-o json: the raw view).
    ///
    /// Example:
    ///   cpn task get 0192f7c4-...
    #[command(verbatim_doc_comment)]
    Get {
        /// Task id.
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Write a task's output to stdout, as it arrives with --follow.
    ///
    /// Without --attempt, the last attempt; with --follow, later attempts (retries,
    /// reschedules) are followed too until the task ends.
    ///
    /// Examples:
    ///   cpn task logs ID
    ///   cpn task logs ID --stream stderr --attempt 1
    ///   cpn task logs ID -f
    #[command(verbatim_doc_comment)]
    Logs(LogsArgs),
    /// Why here: the binder's own record of why it put the task where it did (the best
    /// sites with their factor contributions, and what ruled the others out), as it decided
    /// when it bound the current attempt. With --now, or while the task waits, the full
    /// explanation against the nodes as they are now.
    ///
    /// Examples:
    ///   cpn task why ID
    ///   cpn task why ID --now
    #[command(verbatim_doc_comment)]
    Why {
        /// Task id.
        #[arg(value_name = "ID")]
        id: String,
        /// Explain against the nodes as they are now instead of showing the stored decision.
        #[arg(long)]
        now: bool,
    },
    /// Cancel tasks: a waiting one is dropped, a running one is killed.
    ///
    /// Example:
    ///   cpn task cancel ID1 ID2
    #[command(verbatim_doc_comment)]
    Cancel {
        /// Task ids.
        #[arg(value_name = "ID", required = true)]
        ids: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// A whole task as YAML or JSON (the body of POST /api/v1/tasks), or `-` for stdin.
    /// Flags given as well override its fields.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<String>,
    /// Task name [default: the program's file name, or `script`].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// CPU cores [default: 1].
    #[arg(long, value_name = "N")]
    pub cpu: Option<f64>,
    /// Memory in GiB [default: 1].
    #[arg(long, value_name = "GIB")]
    pub memory_gib: Option<f64>,
    /// Whole GPUs [default: 0].
    #[arg(long, value_name = "N")]
    pub gpus: Option<u32>,
    /// Higher runs first [default: 0].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub priority: Option<i32>,
    /// Run only on this site.
    #[arg(long, value_name = "SITE")]
    pub site: Option<String>,
    /// Run only on nodes whose labels match, e.g. `gpu.model=A100`.
    #[arg(long, value_name = "SEL")]
    pub node_selector: Option<String>,
    /// An environment variable of the process (repeatable).
    #[arg(long = "env", value_name = "K=V", value_parser = parse_key_value)]
    pub env: Vec<(String, String)>,
    /// Working directory on the node [default: a fresh directory per attempt].
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// Further attempts after a failed one [default: 0].
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    /// Run this many independent copies, each its own task [default: 1].
    #[arg(long, value_name = "N")]
    pub replicas: Option<u32>,
    /// Fail the task if it has not started by then (RFC 3339).
    #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
    pub deadline: Option<DateTime<Utc>>,
    /// Do not start the task before then (RFC 3339), like `sbatch --begin`.
    #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
    pub start_after: Option<DateTime<Utc>>,
    /// Scheduling policy by name [default: the one whose match rules select the task].
    #[arg(long, value_name = "POLICY")]
    pub policy: Option<String>,
    /// Region the task's data or users are in (a site's `region`, e.g. `Shanghai`): the
    /// latency factor scores sites from there.
    #[arg(long, value_name = "REGION")]
    pub origin: Option<String>,
    /// Tenant to run for (operators only) [default: the caller's].
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,
    /// Run inside your class B marketplace lease ID (`cpn lease list`): only on its
    /// node(s), within the cards, CPU and memory it holds; the task waits while the lease's
    /// share is full and ends with the lease.
    #[arg(long, value_name = "ID")]
    pub lease: Option<u64>,
    /// A script run by /bin/sh instead of a program: a file, or `-` for stdin.
    #[arg(long, value_name = "FILE", conflicts_with = "command")]
    pub script: Option<String>,
    /// Wait until the task ends and exit with its exit code.
    #[arg(long)]
    pub wait: bool,
    /// Stream the task's output until it ends, then exit like --wait.
    #[arg(long)]
    pub follow: bool,
    /// The program and its arguments; put them after `--`.
    #[arg(
        value_name = "PROGRAM",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TaskListArgs {
    /// Only tasks in these states (comma-separated): pending, scheduled, running,
    /// succeeded, failed, cancelled, lost.
    #[arg(long, value_name = "STATES")]
    pub state: Option<String>,
    /// Only tasks on this node (id, or site/name).
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
    /// Only tasks of this name.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Only tasks of this tenant.
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,
    /// Page size. With it, only one page is fetched unless --all-pages is given too.
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
    /// Fetch every page (the default when --limit is not given).
    #[arg(long, alias = "all")]
    pub all_pages: bool,
    /// Start at this page cursor (the `next_cursor` of an earlier page).
    #[arg(long, value_name = "CURSOR")]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StreamArg {
    /// Both streams, interleaved as they arrived.
    All,
    Stdout,
    Stderr,
}

impl From<StreamArg> for LogStream {
    fn from(s: StreamArg) -> LogStream {
        match s {
            StreamArg::All => LogStream::All,
            StreamArg::Stdout => LogStream::Stdout,
            StreamArg::Stderr => LogStream::Stderr,
        }
    }
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Task id.
    #[arg(value_name = "ID")]
    pub id: String,
    /// Which output stream.
    #[arg(long, value_enum, default_value_t = StreamArg::All)]
    pub stream: StreamArg,
    /// This attempt (1, 2, ...) instead of the last.
    #[arg(long, value_name = "N")]
    pub attempt: Option<u32>,
    /// Keep writing output as it arrives, until the task ends.
    #[arg(short = 'f', long)]
    pub follow: bool,
}

pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got `{s}`")),
    }
}

fn parse_rfc3339(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{e} (expected e.g. 2025-06-01T08:00:00Z)"))
}

pub async fn run(ctx: &Ctx, cmd: TaskCmd) -> Result<()> {
    match cmd {
        TaskCmd::Submit(args) => submit(ctx, *args).await,
        TaskCmd::List(args) => list(ctx, args).await,
        TaskCmd::Get { id } => get(ctx, &id).await,
        TaskCmd::Why { id, now } => why(ctx, &id, now).await,
        TaskCmd::Logs(args) => logs(ctx, args).await,
        TaskCmd::Cancel { ids } => cancel(ctx, &ids).await,
    }
}

// ------------------------------------------------------------------------------- submit

/// The task document the flags (and the file, when given) describe.
fn build_submit(args: &SubmitArgs) -> Result<TaskSubmit> {
    let mut task = match &args.file {
        Some(path) => {
            let input = input::read(path)?;
            let mut map = input::single_object(&input)?;
            // The name may come from the flags or the program, so it may be missing here.
            map.entry("name")
                .or_insert_with(|| Value::String(String::new()));
            serde_json::from_value::<TaskSubmit>(Value::Object(map))
                .with_context(|| format!("{}: not a task document", input.label))?
        }
        None => serde_json::from_value::<TaskSubmit>(serde_json::json!({"name": ""}))
            .context("building the task")?,
    };
    if !args.command.is_empty() {
        task.command = args.command.clone();
        task.script = None;
    }
    if let Some(path) = &args.script {
        task.script = Some(input::read(path)?.text);
        task.command.clear();
    }
    if task.command.is_empty() && task.script.is_none() {
        bail!(
            "nothing to run: give the program after `--` (e.g. `cpn task submit -- echo hi`), \
             --script FILE, or -f TASK.yaml"
        );
    }
    if let Some(name) = &args.name {
        task.name = name.clone();
    }
    if task.name.is_empty() {
        task.name = default_name(&task);
    }
    if let Some(cpu) = args.cpu {
        task.resources.cpu_cores = cpu;
    }
    if let Some(mem) = args.memory_gib {
        task.resources.memory_gib = mem;
    }
    if let Some(gpus) = args.gpus {
        task.resources.gpus = gpus;
    }
    if let Some(p) = args.priority {
        task.priority = p;
    }
    if let Some(site) = &args.site {
        task.constraints.site = Some(site.clone());
    }
    if let Some(sel) = &args.node_selector {
        task.constraints.node_selector = Some(sel.clone());
    }
    task.env.extend(args.env.iter().cloned());
    if let Some(dir) = &args.workdir {
        task.workdir = Some(dir.clone());
    }
    if let Some(n) = args.retries {
        task.retry.max_retries = n;
    }
    if let Some(n) = args.replicas {
        task.replicas = Some(n);
    }
    if let Some(d) = args.deadline {
        task.deadline = Some(d);
    }
    if let Some(t) = args.start_after {
        task.start_after = Some(t);
    }
    if let Some(p) = &args.policy {
        task.policy = Some(p.clone());
    }
    if let Some(o) = &args.origin {
        task.origin_region = Some(o.clone());
    }
    if let Some(t) = &args.tenant {
        task.tenant = Some(t.clone());
    }
    if let Some(l) = args.lease {
        task.lease = Some(l);
    }
    Ok(task)
}

/// The program's file name, or `script`.
fn default_name(task: &TaskSubmit) -> String {
    task.command
        .first()
        .and_then(|p| p.rsplit('/').find(|s| !s.is_empty()))
        .map(str::to_owned)
        .unwrap_or_else(|| "script".to_owned())
}

async fn submit(ctx: &Ctx, args: SubmitArgs) -> Result<()> {
    let task = build_submit(&args)?;
    let value = ctx
        .client
        .post(&["api", "v1", "tasks"], &task)
        .await
        .with_context(|| format!("submitting task `{}`", task.name))?;
    let submitted: TaskSubmitted = decode(&value, "submitted task")?;
    let ids = if submitted.replica_ids.is_empty() {
        vec![submitted.id.clone()]
    } else {
        submitted.replica_ids.clone()
    };
    if !(args.wait || args.follow) {
        if !ctx.table() {
            return output::print_raw(ctx.output, &value);
        }
        return output::emit(&ids.join("\n"));
    }
    if args.follow {
        eprintln!("submitted task {}", ids.join(" "));
        follow_logs(ctx, &ids[0], LogStream::All).await?;
    } else if ctx.table() {
        output::emit(&ids.join("\n"))?;
    }
    let mut finals = Vec::new();
    for id in &ids {
        finals.push(wait_for_end(ctx, id).await?);
    }
    if !ctx.table() {
        let values: Vec<Value> = finals.iter().map(|(v, _)| v.clone()).collect();
        match values.as_slice() {
            [one] => output::print_raw(ctx.output, one)?,
            _ => output::print_raw(ctx.output, &Value::Array(values))?,
        }
    }
    let mut code = 0u8;
    for (_, view) in &finals {
        eprintln!("{}", end_line(view));
        let c = exit_code_of(view);
        if code == 0 {
            code = c;
        }
    }
    if code == 0 {
        Ok(())
    } else {
        Err(ExitWith(code).into())
    }
}

/// `task X succeeded (exit 0)`-like summary for stderr.
fn end_line(view: &TaskView) -> String {
    let mut line = format!("task {} {}", view.id, view.state.as_str());
    if let Some(code) = view.exit_code {
        line.push_str(&format!(" (exit {code})"));
    }
    if let Some(reason) = view.reason.as_deref().filter(|r| !r.is_empty()) {
        line.push_str(&format!(": {reason}"));
    }
    line
}

/// The process exit code `--wait` ends with: the task's, or 1 when it has none to give.
fn exit_code_of(view: &TaskView) -> u8 {
    match (view.state, view.exit_code) {
        (TaskState::Succeeded, _) => 0,
        (_, Some(code)) if code != 0 => u8::try_from(code).unwrap_or(1),
        _ => 1,
    }
}

async fn fetch(ctx: &Ctx, id: &str) -> Result<(Value, TaskView)> {
    let value = ctx
        .client
        .get(&["api", "v1", "tasks", id], &[])
        .await
        .with_context(|| format!("reading task {id}"))?;
    let view = decode(&value, "task")?;
    Ok((value, view))
}

/// Polls a task until it reaches a terminal state.
async fn wait_for_end(ctx: &Ctx, id: &str) -> Result<(Value, TaskView)> {
    let mut delay = Duration::from_millis(200);
    loop {
        let (value, view) = fetch(ctx, id).await?;
        if view.state.is_terminal() {
            return Ok((value, view));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

// --------------------------------------------------------------------------------- logs

async fn logs(ctx: &Ctx, args: LogsArgs) -> Result<()> {
    let stream = LogStream::from(args.stream);
    match (args.follow, args.attempt) {
        (true, None) => follow_logs(ctx, &args.id, stream).await,
        (follow, attempt) => {
            let mut query = vec![("stream", stream.as_str().to_owned())];
            if let Some(a) = attempt {
                query.push(("attempt", a.to_string()));
            }
            if follow {
                query.push(("follow", "true".to_owned()));
            }
            copy_log(ctx, &args.id, &query).await
        }
    }
}

/// Writes one log request's body to stdout as it arrives.
async fn copy_log(ctx: &Ctx, id: &str, query: &[(&str, String)]) -> Result<()> {
    let mut resp = ctx
        .client
        .get_stream(&["api", "v1", "tasks", id, "logs"], query, &[])
        .await
        .with_context(|| format!("reading the output of task {id}"))?;
    let mut out = std::io::stdout();
    while let Some(chunk) = resp.chunk().await.map_err(|e| ctx.client.stream_error(e))? {
        let written = out.write_all(&chunk).and_then(|()| out.flush());
        match written {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            other => other.context("writing to stdout")?,
        }
    }
    Ok(())
}

/// Follows a task's output attempt by attempt until the task ends: waits while it is
/// pending, streams the current attempt, and moves on when a retry starts another.
async fn follow_logs(ctx: &Ctx, id: &str, stream: LogStream) -> Result<()> {
    let mut done_attempt = 0u32;
    let mut delay = Duration::from_millis(200);
    loop {
        let (_, view) = fetch(ctx, id).await?;
        let startable = view.attempt > done_attempt && view.state != TaskState::Pending;
        if startable || (view.state.is_terminal() && view.attempt > done_attempt) {
            let attempt = view.attempt;
            let query = [
                ("stream", stream.as_str().to_owned()),
                ("attempt", attempt.to_string()),
                ("follow", "true".to_owned()),
            ];
            copy_log(ctx, id, &query).await?;
            done_attempt = attempt;
            delay = Duration::from_millis(200);
            continue;
        }
        if view.state.is_terminal() {
            return Ok(());
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

// ------------------------------------------------------------------------- list and get

async fn list(ctx: &Ctx, args: TaskListArgs) -> Result<()> {
    let mut query = Vec::new();
    if let Some(states) = &args.state {
        for s in states.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if TaskState::parse(s).is_none() {
                let all: Vec<&str> = TaskState::ALL.iter().map(|s| s.as_str()).collect();
                bail!(
                    "unknown task state `{s}`: expected one of {}",
                    all.join(", ")
                );
            }
        }
        query.push(("state", states.clone()));
    }
    for (key, value) in [
        ("node", &args.node),
        ("name", &args.name),
        ("tenant", &args.tenant),
    ] {
        if let Some(v) = value {
            query.push((key, v.clone()));
        }
    }
    if let Some(limit) = args.limit {
        query.push(("limit", limit.to_string()));
    }
    let all = args.all_pages || args.limit.is_none();
    let (items, next) = ctx
        .client
        .list(&["api", "v1", "tasks"], query, args.cursor.clone(), all)
        .await
        .context("listing tasks")?;
    if !ctx.table() {
        let value = if args.limit.is_some() && !args.all_pages {
            serde_json::json!({"items": items, "next_cursor": next})
        } else {
            Value::Array(items)
        };
        return output::print_raw(ctx.output, &value);
    }
    let tasks: Vec<TaskView> = decode(&Value::Array(items), "tasks")?;
    if tasks.is_empty() {
        eprintln!("no tasks");
    } else {
        output::print_table(&list_table(&tasks, Utc::now()))?;
    }
    if let Some(next) = next {
        eprintln!("more tasks: --cursor {next}");
    }
    Ok(())
}

fn list_table(tasks: &[TaskView], now: DateTime<Utc>) -> comfy_table::Table {
    let mut t = output::table(&[
        "ID",
        "NAME",
        "STATE",
        "ATTEMPT",
        "SITE/NODE",
        "EXIT",
        "AGE",
        "RUNTIME",
        "REASON",
    ]);
    for task in tasks {
        t.add_row(vec![
            task.id.clone(),
            task.name.clone(),
            task.state.as_str().to_owned(),
            task.attempt.to_string(),
            placement(task),
            task.exit_code
                .map_or_else(|| "-".to_owned(), |c| c.to_string()),
            duration((now - task.submitted_at).num_milliseconds() as f64 / 1000.0),
            task.kpis
                .run_time_s
                .map_or_else(|| "-".to_owned(), duration),
            truncate(task.reason.as_deref().unwrap_or("-"), 48),
        ]);
    }
    t
}

fn placement(task: &TaskView) -> String {
    match (&task.site, &task.node) {
        (Some(site), Some(node)) => format!("{site}/{node}"),
        (Some(site), None) => site.clone(),
        (None, Some(node)) => node.clone(),
        (None, None) => "-".to_owned(),
    }
}

/// `42s`, `3m10s`, `2h5m`, `3d4h`.
pub fn duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "-".to_owned();
    }
    if secs < 10.0 {
        return format!("{secs:.1}s");
    }
    let s = secs as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

/// At most `max` characters, the cut marked with `…`; one line.
pub fn truncate(s: &str, max: usize) -> String {
    let s = s.replace('\n', " ");
    if s.chars().count() <= max {
        return s;
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

async fn get(ctx: &Ctx, id: &str) -> Result<()> {
    let (value, view) = fetch(ctx, id).await?;
    if !ctx.table() {
        return output::print_raw(ctx.output, &value);
    }
    output::emit(&details(&view))
}

async fn why(ctx: &Ctx, id: &str, now: bool) -> Result<()> {
    let query = if now {
        vec![("now", "true".to_string())]
    } else {
        Vec::new()
    };
    let value = ctx
        .client
        .get(&["api", "v1", "tasks", id, "explain"], &query)
        .await
        .with_context(|| format!("explaining task {id}"))?;
    if !ctx.table() {
        return output::print_raw(ctx.output, &value);
    }
    let explanation: cpn_api_types::schedule::Explanation = decode(&value, "explanation")?;
    output::emit(&super::schedule::render_explanation(&explanation))
}

fn details(task: &TaskView) -> String {
    let spec = &task.spec;
    let run = if let Some(script) = &spec.script {
        format!("script ({} lines)", script.lines().count())
    } else {
        spec.command.join(" ")
    };
    let r = &spec.resources;
    let mut rows: Vec<(&str, String)> = vec![
        ("ID", task.id.clone()),
        ("Name", task.name.clone()),
        ("Tenant", format!("{} (owner {})", task.tenant, task.owner)),
        ("State", task.state.as_str().to_owned()),
        ("Reason", output::or_dash(task.reason.as_deref())),
        (
            "Exit code",
            task.exit_code.map_or("-".into(), |c| c.to_string()),
        ),
        ("Attempt", output::or_dash(task.attempt_id.as_deref())),
        ("Site/node", placement(task)),
        ("External id", output::or_dash(task.external_id.as_deref())),
        ("Priority", task.priority.to_string()),
        ("Command", run),
        (
            "Resources",
            format!(
                "cpu {}, memory {} GiB, gpus {}",
                output::num(r.cpu_cores),
                output::num(r.memory_gib),
                r.gpus
            ),
        ),
        ("Submitted", ts(&task.submitted_at)),
        ("Updated", ts(&task.updated_at)),
    ];
    if let Some(nb) = &task.not_before {
        rows.push(("Not before", ts(nb)));
    }
    if task.group != task.id || task.replica != 0 {
        rows.push((
            "Group",
            format!("{} (replica {})", task.group, task.replica),
        ));
    }
    let mut text = output::fields(&rows);

    let k = &task.kpis;
    let opt = |x: Option<f64>| x.map_or("-".to_owned(), output::num);
    text.push_str("\nKPIs:\n");
    let mut kt = output::table(&[
        "ATTEMPTS",
        "QUEUE WAIT",
        "RUN TIME",
        "CPU S",
        "CPU %",
        "MAX RSS MiB",
        "GPU %",
    ]);
    kt.add_row(vec![
        k.attempts.to_string(),
        k.queue_wait_s.map_or("-".into(), duration),
        k.run_time_s.map_or("-".into(), duration),
        opt(k.cpu_seconds),
        opt(k.cpu_util_pct),
        opt(k.max_rss_mib),
        opt(k.gpu_util_pct),
    ]);
    text.push_str(&output::indent(&output::render(&kt)));

    text.push_str("\nHistory:\n");
    let mut ht = output::table(&["AT", "ATTEMPT", "STATE", "REASON"]);
    for change in &task.history {
        ht.add_row(vec![
            change.at.to_rfc3339_opts(SecondsFormat::Millis, true),
            change.attempt.to_string(),
            change.state.as_str().to_owned(),
            output::or_dash(change.reason.as_deref()),
        ]);
    }
    text.push_str(&output::indent(&output::render(&ht)));
    text
}

// ------------------------------------------------------------------------------- cancel

async fn cancel(ctx: &Ctx, ids: &[String]) -> Result<()> {
    let mut values = Vec::new();
    let mut failed = 0;
    for id in ids {
        match ctx
            .client
            .post_empty(&["api", "v1", "tasks", id, "cancel"])
            .await
        {
            Ok(value) => {
                if ctx.table() {
                    let view: TaskView = decode(&value, "task")?;
                    output::emit(&format!("task {} {}", view.id, view.state.as_str()))?;
                }
                values.push(value);
            }
            Err(e) => {
                eprintln!("error: cancelling task {id}: {e:#}");
                failed += 1;
            }
        }
    }
    if !ctx.table() {
        match values.as_slice() {
            [one] => output::print_raw(ctx.output, one)?,
            _ => output::print_raw(ctx.output, &Value::Array(values))?,
        }
    }
    if failed > 0 {
        return Err(ExitWith(1).into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn submit_args(args: &[&str]) -> SubmitArgs {
        let mut argv = vec!["cpn", "task", "submit"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            crate::cli::Command::Task(TaskCmd::Submit(a)) => *a,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn flags_and_program_make_a_task() {
        let a = submit_args(&[
            "--cpu",
            "2",
            "--env",
            "A=1",
            "--env",
            "B=x=y",
            "--priority",
            "-3",
            "--origin",
            "Shanghai",
            "--wait",
            "--",
            "/usr/bin/python3",
            "-c",
            "print(1)",
        ]);
        assert!(a.wait);
        let t = build_submit(&a).unwrap();
        assert_eq!(t.name, "python3");
        assert_eq!(t.command, ["/usr/bin/python3", "-c", "print(1)"]);
        assert_eq!(t.resources.cpu_cores, 2.0);
        assert_eq!(t.resources.memory_gib, 1.0);
        assert_eq!(t.priority, -3);
        assert_eq!(t.env["B"], "x=y");
        assert_eq!(t.origin_region.as_deref(), Some("Shanghai"));
    }

    #[test]
    fn a_task_needs_something_to_run() {
        assert!(build_submit(&submit_args(&["--name", "x"])).is_err());
    }

    #[test]
    fn exit_codes_follow_the_task() {
        let view = |state: &str, code: Option<i32>| -> TaskView {
            serde_json::from_value(serde_json::json!({
                "id": "t", "name": "n", "tenant": "x", "owner": "o", "state": state,
                "priority": 0, "attempt": 1, "exit_code": code,
                "submitted_at": "2025-06-01T08:00:00Z", "updated_at": "2025-06-01T08:00:00Z",
                "history": [], "kpis": {"attempts": 1}, "group": "t", "replica": 0,
                "spec": {"name": "n", "command": ["true"]}
            }))
            .unwrap()
        };
        assert_eq!(exit_code_of(&view("succeeded", Some(0))), 0);
        assert_eq!(exit_code_of(&view("failed", Some(3))), 3);
        assert_eq!(exit_code_of(&view("failed", None)), 1);
        assert_eq!(exit_code_of(&view("cancelled", None)), 1);
        assert_eq!(exit_code_of(&view("failed", Some(300))), 1);
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(duration(1.25), "1.2s");
        assert_eq!(duration(75.0), "1m15s");
        assert_eq!(duration(7300.0), "2h1m");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }
}
