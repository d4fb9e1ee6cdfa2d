//! The command-line grammar of `cpn`: every subcommand, flag and environment variable, as
//! clap derive types. Nothing here talks to the network; `commands` does the work.

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use cpn_api_types::identity::Role;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Control plane of a computing power network (CPN): run the server, manage its registry
/// of platforms, clouds, sites, resources, links, tags and scheduling policies, and ask
/// the scheduler where tasks would go.
#[derive(Debug, Parser)]
#[command(name = "cpn", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// The server a client command talks to when neither --server nor CPN_SERVER is set.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// Options of every client command (ignored by `serve`).
#[derive(Debug, Args)]
#[command(next_help_heading = "Client options")]
pub struct GlobalArgs {
    /// Base URL of the cpn server (http:// or https://) [default: http://127.0.0.1:8080;
    /// for `cpn agent`, the URL in the join token or the saved credential].
    #[arg(long, global = true, env = "CPN_SERVER", value_name = "URL")]
    pub server: Option<String>,

    /// A CA certificate (PEM) to trust for https:// besides the system's, e.g. the
    /// server's DATA_DIR/tls/ca.pem. Without it, the local data dir's tls/ca.pem is trusted
    /// when it exists ($CPN_DATA_DIR, else ./cpn-data).
    #[arg(long, global = true, env = "CPN_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,

    /// Bearer token. Without it, the admin token of the local data dir is used
    /// ($CPN_DATA_DIR/admin.token, else ./cpn-data/admin.token) when that file exists.
    #[arg(
        long,
        global = true,
        env = "CPN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,

    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    Table,
    /// The server's JSON, pretty-printed.
    Json,
    /// The server's JSON, as YAML.
    Yaml,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control-plane server.
    Serve(Box<ServeArgs>),
    /// Computing-power scheduling platforms (调度平台).
    #[command(subcommand, alias = "platforms")]
    Platform(RegistryCmd),
    /// Cloud platforms sites may belong to.
    #[command(subcommand, alias = "clouds")]
    Cloud(RegistryCmd),
    /// Sites: data centres or clusters offering compute (资源节点), and their real-time
    /// status.
    #[command(subcommand, alias = "sites")]
    Site(SiteCmd),
    /// Compute, network, storage and security resources inside sites.
    #[command(subcommand, alias = "resources")]
    Resource(ResourceCmd),
    /// Network links between sites, and their observed metrics.
    #[command(subcommand, alias = "links")]
    Link(LinkCmd),
    /// The tag library, and applying tags to objects.
    #[command(subcommand, alias = "tags")]
    Tag(TagCmd),
    /// Scheduling policies: which tasks they take, and the weights and rules that place them.
    #[command(subcommand, alias = "policies")]
    Policy(PolicyCmd),
    /// Show where one task would be placed and why: the policy chosen, each site's score
    /// per factor, and what rejected the others.
    ///
    /// Nothing is reserved or stored: the scheduler runs on a snapshot of the federation.
    Explain(ExplainArgs),
    /// Place a batch of tasks under one or two policies and compare the outcomes (placed,
    /// cost, energy, latency, per-site load).
    ///
    /// Nothing is reserved or stored: each policy runs on its own copy of a snapshot of the
    /// federation, so both see the same starting load.
    DryRun(DryRunArgs),
    /// Real decisions: place one task and hold its capacity until released (or for
    /// --hold-s); the binder places nothing else on what a decision holds.
    #[command(subcommand, alias = "decisions")]
    Decision(crate::commands::decision::DecisionCmd),
    /// Show sites and links with the metrics in force at a moment.
    Topology(TopologyArgs),
    /// Load a whole federation from one YAML document.
    #[command(subcommand)]
    Scenario(ScenarioCmd),
    /// Log in and print a bearer token.
    Login(LoginArgs),
    /// Revoke the token in use.
    Logout,
    /// Show who the token in use belongs to.
    Whoami,
    /// Tenants (operators only).
    #[command(subcommand, alias = "tenants")]
    Tenant(TenantCmd),
    /// Users: create, list, disable and enable, passwords, revoke sessions (operators; any
    /// user may change their own password and revoke their own sessions).
    #[command(subcommand, alias = "users")]
    User(UserCmd),
    /// Self-service marketplace accounts: register, activate, profile; the operators'
    /// review of business licences.
    #[command(subcommand, alias = "accounts")]
    Account(crate::commands::account::AccountCmd),
    /// Notification subscriptions: where your alarms and account, lease and billing
    /// events go (e-mail, signed webhook, SMS).
    #[command(subcommand)]
    Notify(crate::commands::notify::NotifyCmd),
    /// API keys for automation: scoped (read, write, metrics:read), with an expiry.
    #[command(subcommand, name = "api-key", alias = "api-keys")]
    ApiKey(crate::commands::identity::ApiKeyCmd),
    /// TOTP multi-factor authentication for your account.
    #[command(subcommand)]
    Mfa(crate::commands::identity::MfaCmd),
    /// Operator chores: rotate the operator token.
    #[command(subcommand)]
    Admin(crate::commands::identity::AdminCmd),
    /// The audit log (operators): every change and every login, newest first.
    Audit(crate::commands::audit::AuditArgs),
    /// Run work: submit tasks, list them, read their output, cancel them.
    #[command(subcommand, alias = "tasks")]
    Task(crate::commands::task::TaskCmd),
    /// Workflows: start process definitions, watch them, read journals and lean reports,
    /// pause / resume / cancel; import, export and run process templates.
    #[command(subcommand, alias = "flows")]
    Flow(crate::commands::flow::FlowCmd),
    /// Design templates: the marketplace (create, version, publish), validation, and plans
    /// made from a template compared side by side.
    #[command(subcommand, alias = "templates")]
    Template(crate::commands::template::TemplateCmd),
    /// Plans made from templates: confirm, view and edit the instruction set, execute.
    #[command(subcommand, alias = "plans")]
    Plan(crate::commands::plan::PlanCmd),
    /// Nodes that run tasks: list and inspect them, cordon, occupy or reclaim them.
    #[command(subcommand, alias = "nodes")]
    Node(crate::commands::node::NodeCmd),
    /// Allocations: resources held on a node outside any task.
    #[command(subcommand, alias = "allocs")]
    Alloc(crate::commands::node::AllocCmd),
    /// The record of south-bound operations (cordon, occupy, reclaim, allocations) and
    /// their traces.
    #[command(subcommand, alias = "ops")]
    Op(crate::commands::node::OpCmd),
    /// Ops rules: scale, redeploy or isolate when a metric crosses a threshold, on a cron
    /// schedule, or on an event.
    #[command(subcommand, alias = "rules")]
    Rule(crate::commands::rule::RuleCmd),
    /// The sharing marketplace: search idle capacity, show a listing's cards; suppliers
    /// publish, edit, delist and relist clusters of their sites.
    #[command(subcommand)]
    Market(crate::commands::market::MarketCmd),
    /// Leases of marketplace cards: order, enter the authorization code, list, release.
    #[command(subcommand, alias = "leases")]
    Lease(crate::commands::market::LeaseCmd),
    /// Marketplace money: balance, top-ups and budgets, usage, invoices and statements.
    #[command(subcommand)]
    Billing(crate::commands::market::BillingCmd),
    /// Task state changes, node state, operations and alarms: the log, or followed live.
    Events(crate::commands::events::EventsArgs),
    /// Run an agent: make this machine a node of a site that runs the tasks bound to it.
    ///
    /// Joins with a join token (--join) the first time, then uses the node's own credential
    /// kept in its state dir; never an operator token. Stops on Ctrl-C or SIGTERM.
    Agent(crate::commands::agent::AgentArgs),
    /// Measure performance and print figures.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Simulations: replay traces through the scheduler, in process (`gpu`) or as jobs
    /// on the server (`run`, `list`, `status`, `results`).
    #[command(subcommand)]
    Sim(crate::commands::sim::SimCmd),
}

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Durable creates per second through the HTTP API with concurrent clients.
    ///
    /// Without --against, starts a private server on a fresh temp data dir (no demo), so
    /// the figure includes HTTP, authentication, validation and the fsync of every commit.
    Registry(BenchRegistryArgs),
    /// Scheduler throughput and latency on synthetic clusters, in the shape of
    /// kube-scheduler's scheduler_perf; runs in process, no server.
    ///
    /// Three cases: (a) one site of --nodes nodes with the default plugins and adaptive node
    /// sampling, (b) the same scoring every node, (c) site choice over a federation of
    /// --sites × --nodes-per-site nodes.
    Schedule(BenchScheduleArgs),
    /// Running work end to end on a private server: (a) submit → durably bound with 64
    /// clients, (b) dispatch latency to the local agent at a steady 20 tasks/s.
    Tasks(crate::commands::bench_tasks::BenchTasksArgs),
    /// Login latency on a private server: --clients concurrent valid logins, each hashing
    /// its password (argon2id) on the server's bounded pool; prints p50/p99/max and any 429.
    Login(crate::commands::bench_login::BenchLoginArgs),
    /// What one event (heartbeat, node join or loss, registry change) costs the binder's
    /// live cluster at 5,000 and 50,000 nodes, against rebuilding it; runs in process.
    Livestate(crate::commands::bench_livestate::BenchLivestateArgs),
    /// Issue #14's metering target on the real store, in process: 10,000 hourly leases
    /// metered into 100,000 usage records, each meter run one durable commit (records/min,
    /// commit p50/p99), then the month's close from the stored records (<= 5 s).
    Metering(crate::commands::bench_metering::BenchMeteringArgs),
}

#[derive(Debug, Args)]
pub struct BenchScheduleArgs {
    /// Nodes of the single site of cases (a) and (b).
    #[arg(long, default_value_t = 5000)]
    pub nodes: usize,
    /// Tasks placed before timing starts, in (a) and (b).
    #[arg(long, default_value_t = 5000)]
    pub init_tasks: usize,
    /// Tasks placed and timed, in (a) and (b).
    #[arg(long, default_value_t = 50_000)]
    pub tasks: usize,
    /// Sites of the federation of case (c).
    #[arg(long, default_value_t = 1000)]
    pub sites: usize,
    /// Nodes of each site in case (c).
    #[arg(long, default_value_t = 500)]
    pub nodes_per_site: usize,
    /// Site choices timed in case (c).
    #[arg(long, default_value_t = 2000)]
    pub federation_decisions: usize,
    /// Seed of the synthetic cluster, the workload and the scheduler's tie-breaks.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct BenchRegistryArgs {
    /// Concurrent clients, each sending its next request when the previous one is answered.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Creates in total.
    #[arg(long, default_value_t = 5000)]
    pub requests: usize,
    /// Benchmark an already running server at this URL instead (uses --token / CPN_TOKEN).
    #[arg(long, value_name = "URL")]
    pub against: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Directory of the store, tokens and logs; created when missing.
    #[arg(
        long,
        env = "CPN_DATA_DIR",
        default_value = "./cpn-data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,

    /// Address to listen on.
    #[arg(
        long,
        env = "CPN_LISTEN",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,

    /// Do not load the bundled demo federation into a new data dir.
    #[arg(long)]
    pub no_demo: bool,

    /// Folder of the openb trace CSVs that simulations may name (`--trace`)
    /// [default: data/alibaba-gpu-v2023 when it exists, i.e. when started from the
    /// repository's root; otherwise none, and simulations take uploaded CSVs only].
    #[arg(long, env = "CPN_SIM_DATA", value_name = "DIR")]
    pub sim_data: Option<PathBuf>,

    /// Do not run the local agent: this machine is then not a site that runs tasks
    /// (use `cpn agent` on other machines instead).
    #[arg(long)]
    pub no_local_agent: bool,

    /// Name of the site the local agent registers into; created on first start.
    #[arg(long, default_value = "local", value_name = "SITE")]
    pub local_site: String,

    /// Do not run emulated nodes for the demo's sites. By default, when the data dir holds
    /// the demo federation, one emulated node per CPU and GPU offer of each demo site
    /// joins (at most 32 cores and 8 GPUs, matched to that offer), marked `emulated`;
    /// their tasks run as real processes on this machine with the local agent's
    /// isolation, and their GPUs exist by index only (CUDA_VISIBLE_DEVICES, no device).
    /// Without them the demo's sites are planning targets only.
    #[arg(long)]
    pub no_emulated_nodes: bool,

    /// The local agent isolates tasks as `cpn agent` does.
    #[command(flatten)]
    pub isolation: crate::commands::agent::IsolationArgs,

    /// How often agents report, in milliseconds.
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    pub heartbeat_ms: u64,

    /// Silence after which a node is NotReady and its tasks are rescheduled, in milliseconds.
    #[arg(
        long,
        env = "CPN_NODE_TIMEOUT_MS",
        default_value_t = 15000,
        value_name = "MS"
    )]
    pub node_timeout_ms: u64,

    /// Output (stdout and stderr together) kept per task attempt, in MiB; what follows is
    /// dropped after a truncation marker.
    #[arg(
        long,
        env = "CPN_MAX_TASK_OUTPUT_MIB",
        default_value_t = 64,
        value_name = "MIB"
    )]
    pub max_task_output_mib: u64,

    /// Unfinished workflows one tenant may have at once; more are refused with 429.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub max_running_workflows: usize,

    /// Queued and running simulations one tenant may have at once; more are refused with 429.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub max_active_simulations: usize,

    /// Finished simulations kept per tenant; its oldest beyond this are deleted.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub kept_simulations: usize,

    /// How long one evaluation of a workflow condition may run, in milliseconds; then the
    /// step fails.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub condition_deadline_ms: u64,

    /// How long a workflow's task step (a plan's deploy step among them) pinned to a site
    /// with no live node waits for one, in seconds, unless the step sets its own
    /// `timeout_s`; then its task is cancelled and the step fails with "no live node on
    /// site X".
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub flow_node_wait_s: u64,

    /// How long a task that no site can ever take (no live node with its chip, no site its
    /// tenant may see, …) waits for capacity to appear, in seconds; then it fails with the
    /// reason. Tasks that only wait for busy capacity to free up wait until their deadline.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub unplaceable_wait_s: u64,

    /// Seed the binder's tie-breaks with N instead of a new draw per cycle, so placements
    /// are reproducible: the federation twin run with `seed: N` on the live nodes places a
    /// batch of tasks due at once exactly as the binder does.
    #[arg(long, value_name = "N")]
    pub scheduler_seed: Option<u64>,

    /// A login session unused this long stops working: a number with s, m, h or d (API keys
    /// and the operator token have their own expiry instead).
    #[arg(
        long,
        env = "CPN_SESSION_IDLE",
        default_value = "12h",
        value_name = "DURATION",
        value_parser = parse_duration
    )]
    pub session_idle: std::time::Duration,

    /// Operators must have TOTP MFA to log in with a password (enrol with `cpn mfa enroll`
    /// using the operator token first).
    #[arg(long, env = "CPN_REQUIRE_MFA_FOR_OPERATORS")]
    pub require_mfa_for_operators: bool,

    /// Threads hashing passwords at once (argon2id, ~19 MiB each); 0: one per core. Logins
    /// beyond them wait in a short queue, then get 429 with Retry-After.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub hash_workers: usize,

    /// Delete audit lines older than this many days (checked hourly; each deletion is itself
    /// an audit line). Unset: the audit log is kept forever.
    #[arg(long, env = "CPN_AUDIT_RETENTION_DAYS", value_name = "DAYS",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub audit_retention_days: Option<u32>,

    /// HTTPS: `auto` serves plain HTTP on a loopback address and HTTPS with a CA generated
    /// in the data dir on any other; `on` always HTTPS; `off` plain HTTP (on a non-loopback
    /// address only with --insecure-http).
    #[arg(long, env = "CPN_TLS", value_enum, default_value_t = TlsMode::Auto)]
    pub tls: TlsMode,

    /// Certificate chain (PEM) to serve instead of the generated one; needs --tls-key.
    #[arg(long, env = "CPN_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = "CPN_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Another name or address for the generated certificate (repeatable); localhost, the
    /// host name and the listen address are always in it.
    #[arg(long = "tls-san", value_name = "NAME")]
    pub tls_sans: Vec<String>,

    /// Serve plain HTTP on an address that is not loopback: tokens and passwords then
    /// cross the network in clear.
    #[arg(long)]
    pub insecure_http: bool,

    /// Connections served at once; past it the longest idle one is closed.
    #[arg(long, default_value_t = cpn_server::DEFAULT_MAX_CONNECTIONS, value_name = "N")]
    pub max_connections: usize,

    /// SMTP relay for e-mail (registration codes, account and alarm notifications), as
    /// HOST:PORT. Without it, registrations that give only an e-mail address are refused
    /// with 503 (codes are never written to the log instead).
    #[arg(long, env = "CPN_SMTP_RELAY", value_name = "HOST:PORT")]
    pub smtp_relay: Option<String>,

    /// The From mailbox of the platform's e-mail.
    #[arg(long, env = "CPN_SMTP_FROM", value_name = "MAILBOX", default_value = cpn_server::notify::DEFAULT_FROM)]
    pub smtp_from: String,

    /// Upgrade the relay connection with STARTTLS and refuse to send in clear (port 587).
    /// Without it the connection is plain, for a relay on loopback.
    #[arg(long, env = "CPN_SMTP_STARTTLS")]
    pub smtp_starttls: bool,

    /// Log in to the relay as this user; the password is read from CPN_SMTP_PASSWORD.
    #[arg(
        long,
        env = "CPN_SMTP_USER",
        value_name = "USER",
        requires = "smtp_relay"
    )]
    pub smtp_user: Option<String>,

    /// HTTP SMS gateway: codes go to phone numbers through it (JSON POST; bearer token
    /// from CPN_SMS_TOKEN).
    #[arg(long, env = "CPN_SMS_GATEWAY", value_name = "URL")]
    pub sms_gateway: Option<String>,

    /// The address users reach this server at (https://cpn.example.org). With it the
    /// registration e-mail also carries a one-time activation link; without it, only the
    /// code to enter.
    #[arg(long, env = "CPN_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
}

/// `90s`, `15m`, `12h`, `7d`: a positive whole number and a unit.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 90s, 15m, 12h or 7d"))?;
    let seconds = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("{s:?}: the unit must be s, m, h or d")),
    };
    if seconds == 0 || seconds > 366 * 86400 {
        return Err(format!("{s:?}: must be between 1s and 366d"));
    }
    Ok(std::time::Duration::from_secs(seconds))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TlsMode {
    Auto,
    On,
    Off,
}

/// Where `cpn serve` looks for shipped traces without --sim-data: the repository's copy,
/// relative to the working directory (the server reads trace files by name, so it needs a
/// folder; `cpn sim gpu` has its default trace built in instead).
pub const DEFAULT_SIM_DATA: &str = "data/alibaba-gpu-v2023";

/// The verbs every registry kind has.
#[derive(Debug, Subcommand)]
pub enum RegistryCmd {
    /// List objects (all pages unless --limit is given).
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show one object.
    Get {
        /// Name or id of the object.
        #[arg(value_name = "NAME_OR_ID")]
        name: String,
    },
    /// Create objects from a YAML or JSON file (one object, a list, or several YAML documents).
    Create {
        /// File to read, or `-` for stdin.
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: String,
    },
    /// Replace the labels, visibility and spec of an object. The file holds an update
    /// (generation, labels, visibility, spec) or a full object as printed by `get -o yaml`.
    Update {
        /// Name or id of the object.
        #[arg(value_name = "NAME_OR_ID")]
        name: String,
        /// File to read, or `-` for stdin.
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: String,
    },
    /// Delete an object.
    #[command(visible_alias = "rm")]
    Delete {
        /// Name or id of the object.
        #[arg(value_name = "NAME_OR_ID")]
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Label selector, e.g. `region=Ningxia,gpu.model in (A100,H800)`.
    #[arg(short = 'l', long, value_name = "SEL")]
    pub selector: Option<String>,
    /// Page size. With it, only one page is fetched unless --all is given too.
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
    /// Fetch every page (the default when --limit is not given).
    #[arg(long)]
    pub all: bool,
    /// Start at this page cursor (the `next_cursor` of an earlier page).
    #[arg(long, value_name = "CURSOR")]
    pub cursor: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SiteCmd {
    #[command(flatten)]
    Registry(RegistryCmd),
    /// Real-time state of a site: nodes ready, capacity held, idle rate, load, tasks.
    ///
    /// Example:
    ///   cpn site status ningxia-zw-1
    #[command(verbatim_doc_comment)]
    Status {
        /// Name or id of the site.
        #[arg(value_name = "NAME_OR_ID")]
        name: String,
    },
    /// Registered offers against live machines: per site and compute resource, the units
    /// registered, live (on answering nodes that fulfil it), allocated and free; the nodes
    /// that fulfil no offer, with the reason; the site's measured health and whether the
    /// binder places work there now.
    ///
    /// Example:
    ///   cpn site capacity
    ///   cpn site capacity ningxia-zw-1 -o json
    #[command(verbatim_doc_comment)]
    Capacity {
        /// Name or id of one site [default: every site you may read].
        #[arg(value_name = "NAME_OR_ID")]
        name: Option<String>,
    },
    /// Join tokens: what agents join a site with (`cpn agent --join TOKEN`); operators only.
    #[command(subcommand, name = "join-token", alias = "join-tokens")]
    JoinToken(crate::commands::join::JoinTokenCmd),
}

#[derive(Debug, Subcommand)]
pub enum ResourceCmd {
    #[command(flatten)]
    Registry(RegistryCmd),
    /// Isolate a compute resource: nothing new is placed on it (an I2 operation).
    ///
    /// Example:
    ///   cpn resource isolate zw1-gpu-pool --reason maintenance
    #[command(verbatim_doc_comment)]
    Isolate {
        /// Name or id of the resource.
        #[arg(value_name = "NAME")]
        name: String,
        /// Why, for the operation record.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Lift the isolation of a compute resource.
    ///
    /// Example:
    ///   cpn resource unisolate zw1-gpu-pool
    #[command(verbatim_doc_comment)]
    Unisolate {
        /// Name or id of the resource.
        #[arg(value_name = "NAME")]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum LinkCmd {
    #[command(flatten)]
    Registry(RegistryCmd),
    /// Record an observed metrics sample of a link; fields not given keep the link's
    /// nominal values.
    Metrics(LinkMetricsArgs),
}

#[derive(Debug, Args)]
pub struct LinkMetricsArgs {
    /// Name or id of the link.
    #[arg(value_name = "LINK")]
    pub link: String,
    #[command(flatten)]
    pub values: MetricValues,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
pub struct MetricValues {
    /// Round-trip latency in milliseconds.
    #[arg(long, value_name = "MS")]
    pub latency_ms: Option<f64>,
    /// Bandwidth in Gbit/s.
    #[arg(long, value_name = "GBPS")]
    pub bandwidth_gbps: Option<f64>,
    /// Jitter in milliseconds.
    #[arg(long, value_name = "MS")]
    pub jitter_ms: Option<f64>,
    /// Packet loss in percent (0..100).
    #[arg(long, value_name = "PCT")]
    pub loss_pct: Option<f64>,
}

#[derive(Debug, Subcommand)]
pub enum TagCmd {
    #[command(flatten)]
    Registry(RegistryCmd),
    /// Set a tag (label) on objects, atomically.
    Apply(TagApplyArgs),
    /// Remove a tag (label) from objects, atomically.
    Remove(TagRemoveArgs),
}

#[derive(Debug, Args)]
pub struct TagApplyArgs {
    /// The tag, i.e. the label key (e.g. `gpu.model`).
    #[arg(value_name = "TAG")]
    pub tag: String,
    /// The label value.
    #[arg(long, default_value = "", value_name = "V")]
    pub value: String,
    #[command(flatten)]
    pub selection: TagSelection,
}

#[derive(Debug, Args)]
pub struct TagRemoveArgs {
    /// The tag, i.e. the label key.
    #[arg(value_name = "TAG")]
    pub tag: String,
    #[command(flatten)]
    pub selection: TagSelection,
}

/// Which objects a tag operation touches: listed targets and/or a kind with a selector.
#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
pub struct TagSelection {
    /// An object as KIND/NAME, e.g. `site/ningxia-zw-1` (repeatable).
    #[arg(long = "target", value_name = "KIND/NAME")]
    pub targets: Vec<String>,
    /// Kind of the objects matched by --selector (platform, cloud, site, resource, link,
    /// policy).
    #[arg(long, requires = "selector", value_name = "KIND")]
    pub kind: Option<String>,
    /// Label selector choosing objects of --kind.
    #[arg(long, requires = "kind", value_name = "SEL")]
    pub selector: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    #[command(flatten)]
    Registry(RegistryCmd),
    /// List the stored versions of a policy, oldest first.
    Versions {
        /// Name or id of the policy.
        #[arg(value_name = "NAME_OR_ID")]
        name: String,
    },
    /// Restore the spec of an earlier generation; it is saved as a new generation.
    Rollback {
        /// Name or id of the policy.
        #[arg(value_name = "NAME_OR_ID")]
        name: String,
        /// The generation whose spec to restore (see `cpn policy versions`).
        #[arg(long = "to", value_name = "GEN")]
        to: u64,
    },
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The task: a YAML or JSON file holding one task spec (name, tenant, resources,
    /// chip, regions_in, ...), or `-` for stdin.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: String,
    /// Schedule under this policy instead of the one the task's attributes select
    /// (`default` is the built-in one).
    #[arg(long, value_name = "NAME")]
    pub policy: Option<String>,
}

#[derive(Debug, Args)]
pub struct DryRunArgs {
    /// The tasks: a YAML or JSON file holding a list of task specs (or `tasks: [...]`),
    /// or `-` for stdin. A task's `replicas` places it that many times.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: String,
    /// A policy to run the batch under; give it twice to compare two (`default` is the
    /// built-in one).
    #[arg(long = "policy", value_name = "NAME", required = true)]
    pub policies: Vec<String>,
    /// Seed of the tie-breaks: the same seed gives the same placements. Default: the
    /// file's `seed`, else 0.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
}

#[derive(Debug, Args)]
pub struct TopologyArgs {
    /// Show the metrics in force at this moment (RFC 3339) instead of now.
    #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
    pub at: Option<DateTime<Utc>>,
}

fn parse_rfc3339(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{e} (expected e.g. 2025-06-01T08:00:00Z)"))
}

#[derive(Debug, Subcommand)]
pub enum ScenarioCmd {
    /// Create every object of a scenario file; objects whose name exists are skipped.
    Load {
        /// The scenario YAML (or JSON) file, or `-` for stdin.
        #[arg(value_name = "FILE")]
        file: String,
    },
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    #[arg(short, long, value_name = "USER")]
    pub username: String,
    /// The password; prefer the CPN_PASSWORD environment variable.
    #[arg(
        short,
        long,
        env = "CPN_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub password: String,
    /// The current 6-digit code of your authenticator, once MFA is on.
    #[arg(long, value_name = "CODE")]
    pub totp: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TenantCmd {
    /// List tenants.
    #[command(visible_alias = "ls")]
    List,
    /// Create a tenant.
    Create {
        #[arg(value_name = "NAME")]
        name: String,
        #[arg(long, default_value = "", value_name = "TEXT")]
        display_name: String,
        #[command(flatten)]
        quota: QuotaArgs,
    },
    /// Set a tenant's quota: the most its scheduled work may hold at once.
    Quota {
        #[arg(value_name = "NAME")]
        name: String,
        #[command(flatten)]
        quota: QuotaArgs,
    },
}

/// A tenant quota; a limit left out is unlimited.
#[derive(Debug, Clone, Copy, Args)]
pub struct QuotaArgs {
    /// Most GPUs at once (fractions count).
    #[arg(long, value_name = "N")]
    pub gpus: Option<f64>,
    /// Most CPU cores at once.
    #[arg(long, value_name = "N")]
    pub cpu_cores: Option<f64>,
    /// Most memory at once, GiB.
    #[arg(long, value_name = "GIB")]
    pub memory_gib: Option<f64>,
}

impl QuotaArgs {
    pub fn to_quota(self) -> cpn_api_types::identity::TenantQuota {
        cpn_api_types::identity::TenantQuota {
            gpus: self.gpus,
            cpu_cores: self.cpu_cores,
            memory_gib: self.memory_gib,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// List users.
    #[command(visible_alias = "ls")]
    List,
    /// Create a user.
    Create(UserCreateArgs),
    /// Disable a user: it cannot log in and its sessions and API keys stop working at once.
    Disable {
        #[arg(value_name = "USER")]
        username: String,
    },
    /// Enable a disabled user again.
    Enable {
        #[arg(value_name = "USER")]
        username: String,
    },
    /// Change your own password (your other login sessions end).
    Passwd {
        /// The current password; prefer CPN_PASSWORD.
        #[arg(
            long,
            env = "CPN_PASSWORD",
            hide_env_values = true,
            value_name = "PASSWORD"
        )]
        old: String,
        /// The new password: 10 characters or more, not guessable; prefer CPN_NEW_PASSWORD.
        #[arg(
            long,
            env = "CPN_NEW_PASSWORD",
            hide_env_values = true,
            value_name = "PASSWORD"
        )]
        new: String,
    },
    /// Set a new password for a user (operators); all of its tokens are revoked.
    ResetPassword {
        #[arg(value_name = "USER")]
        username: String,
        /// Prefer CPN_NEW_PASSWORD.
        #[arg(
            long,
            env = "CPN_NEW_PASSWORD",
            hide_env_values = true,
            value_name = "PASSWORD"
        )]
        new: String,
    },
    /// Revoke every login session and API key of a user.
    RevokeSessions {
        #[arg(value_name = "USER")]
        username: String,
    },
    /// Turn a user's MFA off (operators), e.g. after a lost authenticator.
    MfaOff {
        #[arg(value_name = "USER")]
        username: String,
    },
}

#[derive(Debug, Args)]
pub struct UserCreateArgs {
    #[arg(long, value_name = "USER")]
    pub username: String,
    /// At least 10 characters and not guessable (zxcvbn strength 3 of 4).
    #[arg(long, value_name = "PASSWORD")]
    pub password: String,
    /// Name of an existing tenant.
    #[arg(long, value_name = "TENANT")]
    pub tenant: String,
    #[arg(long, value_enum)]
    pub role: RoleArg,
    #[arg(long, default_value = "", value_name = "TEXT")]
    pub display_name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Runs the platform: sees and changes everything.
    Operator,
    /// Offers compute: registers sites and resources.
    Supplier,
    /// Uses compute: reads what is public or in its tenant.
    User,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Operator => Role::Operator,
            RoleArg::Supplier => Role::Supplier,
            RoleArg::User => Role::User,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn tag_apply_needs_a_selection() {
        assert!(Cli::try_parse_from(["cpn", "tag", "apply", "gpu.model"]).is_err());
        assert!(
            Cli::try_parse_from(["cpn", "tag", "apply", "x", "--kind", "site"]).is_err(),
            "--kind without --selector"
        );
        let ok = Cli::try_parse_from([
            "cpn", "tag", "apply", "x", "--value", "y", "--target", "site/a", "--target", "site/b",
        ]);
        assert!(ok.is_ok());
    }

    #[test]
    fn scheduling_commands_parse() {
        let cli = Cli::try_parse_from([
            "cpn", "dry-run", "-f", "t.yaml", "--policy", "a", "--policy", "b", "--seed", "7",
        ])
        .unwrap();
        match cli.command {
            Command::DryRun(args) => {
                assert_eq!(args.policies, ["a", "b"]);
                assert_eq!(args.seed, Some(7));
            }
            other => panic!("parsed as {other:?}"),
        }
        assert!(
            Cli::try_parse_from(["cpn", "dry-run", "-f", "t.yaml"]).is_err(),
            "--policy is required"
        );
        let cli = Cli::try_parse_from(["cpn", "policy", "rollback", "p", "--to", "3"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Policy(PolicyCmd::Rollback { to: 3, .. })
        ));
        assert!(Cli::try_parse_from(["cpn", "policies", "ls"]).is_ok());
        assert!(Cli::try_parse_from(["cpn", "explain", "-f", "t.yaml", "--policy", "p"]).is_ok());
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = Cli::try_parse_from([
            "cpn",
            "site",
            "list",
            "-o",
            "json",
            "--server",
            "http://x:1",
        ])
        .unwrap();
        assert_eq!(cli.global.output, OutputFormat::Json);
        assert_eq!(cli.global.server.as_deref(), Some("http://x:1"));
    }
}
