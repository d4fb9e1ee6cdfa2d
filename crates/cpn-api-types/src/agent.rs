//! The agent protocol (RM-ACC, IF-I2, IF-I3) and the node views built from it.
//!
//! An agent registers its host as a node of a site, then keeps three conversations with the
//! server, all under `/api/v1/agents/{node_id}/` with the node's own credential (see
//! [`crate::join`]):
//! - `heartbeat`: metrics every few seconds plus every attempt it holds, so the server can
//!   reconcile after either side restarts; the reply lists attempts to kill;
//! - `assignments?wait_ms=`: a long poll that returns as soon as work is bound to the node;
//! - `attempts/{attempt_id}` (state reports) and `attempts/{attempt_id}/logs` (output).
//!
//! Dispatch is idempotent: an agent runs an attempt id at most once, whatever is re-sent.

use crate::schedule::TaskResources;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// What the host is made of, read once at registration (RM-ACC-01).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeInventory {
    pub hostname: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub kernel: String,
    #[serde(default)]
    pub arch: String,
    #[serde(default)]
    pub cpu_model: String,
    /// Logical CPUs the agent may use.
    pub cpu_cores: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical_cores: Option<u32>,
    pub memory_mib: u64,
    #[serde(default)]
    pub disks: Vec<DiskInfo>,
    #[serde(default)]
    pub gpus: Vec<GpuInfo>,
    #[serde(default)]
    pub agent_version: String,
    /// How the agent keeps tasks apart from the platform and from each other; absent for
    /// nodes it does not run (Slurm) and for agents older than isolation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<NodeIsolation>,
    /// Not a machine of its own: an agent of `cpn serve` that reports a scaled-down demo
    /// offer (cores, memory, GPUs) instead of the host's. Its tasks run as real processes
    /// on the server's machine; its GPUs exist by index only (`CUDA_VISIBLE_DEVICES` names
    /// them, no device is behind it) and it reports no measurements (zero metrics).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub emulated: bool,
}

/// The enforcement active on a node, as its agent found it at start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeIsolation {
    /// Each tenant's tasks run as an unprivileged identity of their own (the agent is root).
    pub uid_switch: bool,
    /// Which cgroup hierarchy enforces CPU, memory and process limits.
    pub cgroups: CgroupMode,
    /// The controllers in use (`memory`, `cpu`, `pids`).
    #[serde(default)]
    pub controllers: Vec<String>,
    /// Started with `--single-user`: without `uid_switch`, runs every tenant's tasks as the
    /// agent's own user.
    #[serde(default)]
    pub single_user: bool,
    /// GPUs: `enforced` where each attempt's devices cgroup lets it open only its own
    /// GPUs' device nodes; `simulated` where only `CUDA_VISIBLE_DEVICES` names them.
    /// Absent from older agents (read as `unavailable`).
    #[serde(default)]
    pub gpus: Enforcement,
}

/// The cgroup hierarchy an agent uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CgroupMode {
    /// The unified hierarchy.
    V2,
    /// The per-controller v1 hierarchies.
    V1,
    /// No writable hierarchy: limits are not enforced.
    #[default]
    None,
}

impl CgroupMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupMode::V2 => "v2",
            CgroupMode::V1 => "v1",
            CgroupMode::None => "none",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DiskInfo {
    pub mount: String,
    #[serde(default)]
    pub device: String,
    #[serde(default)]
    pub filesystem: String,
    pub total_gib: f64,
    pub available_gib: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GpuInfo {
    pub index: u32,
    #[serde(default)]
    pub uuid: String,
    pub model: String,
    pub memory_mib: u64,
}

/// Body of `POST /api/v1/agents/register`. Registering the same (site, name) again updates
/// the inventory and keeps the node id, so a restarted agent is the same node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentRegister {
    /// Site name in the registry.
    pub site: String,
    /// Node name, unique within the site; defaults to the host name on the agent side.
    pub name: String,
    pub inventory: NodeInventory,
    /// Labels for node selectors (`node_selector` of a task).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentRegistered {
    pub node_id: String,
    pub site: String,
    pub name: String,
    /// How often the server expects a heartbeat.
    pub heartbeat_interval_ms: u64,
    /// Silence after which the node is NotReady and its tasks are lost.
    pub node_timeout_ms: u64,
    /// The node's own credential, issued when the agent registered with a join token: the
    /// bearer token of every later request of this node (and of its next registrations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// Tenant of the credential the agent registered with: the only tenant whose tasks an
    /// agent that cannot switch identities runs (unless started single-user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The class A leases (agent lease ids, as in [`LeaseAccessGrant::lease_id`]) that are
    /// still live on this node: the agent revokes every lease account it holds that is not
    /// in the list (a lease that ended while it was down). `None` from a server that does
    /// not say: the agent then revokes nothing on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_leases: Option<Vec<String>>,
}

/// A sample of the host (RM-ACC-02..04, SH-CL visualization fields). Rates are per second
/// over the interval since the previous sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeMetrics {
    pub at: DateTime<Utc>,
    pub cpu_util_pct: f64,
    pub memory_used_mib: u64,
    pub memory_util_pct: f64,
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
    #[serde(default)]
    pub disk_read_iops: f64,
    #[serde(default)]
    pub disk_write_iops: f64,
    #[serde(default)]
    pub disk_read_bytes_per_s: f64,
    #[serde(default)]
    pub disk_write_bytes_per_s: f64,
    #[serde(default)]
    pub net_rx_bytes_per_s: f64,
    #[serde(default)]
    pub net_tx_bytes_per_s: f64,
    #[serde(default)]
    pub gpus: Vec<GpuMetrics>,
    /// Whole-node power where a sensor reports it (GPU boards' sum otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_watts: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GpuMetrics {
    pub index: u32,
    pub util_pct: f64,
    pub memory_used_mib: u64,
    pub memory_total_mib: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature_c: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_watts: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voltage_v: Option<f64>,
}

/// Where an attempt is on the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptState {
    Running,
    /// The process ended by itself; `exit_code` says how (128 + n for signal n).
    Exited,
    /// The agent killed it (cancel or reclaim).
    Killed,
    /// It could not be started (no such program, bad working directory): `error` says why.
    FailedToStart,
}

/// Resource use of one attempt's processes, measured by the agent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AttemptUsage {
    pub cpu_seconds: f64,
    pub cpu_util_pct: f64,
    pub max_rss_mib: f64,
}

/// Body of `POST /api/v1/agents/{node_id}/attempts/{attempt_id}` and an entry of a heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AttemptReport {
    pub attempt_id: String,
    pub state: AttemptState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<AttemptUsage>,
    /// Why the attempt ended, when the agent knows more than the exit code says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<EndReason>,
}

/// A cause of an attempt's end that the agent observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The kernel's OOM killer acted in the attempt's memory cgroup: it went over the
    /// memory it requested. The task fails with reason `oom`.
    Oom,
}

/// What the server says to a state report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptVerdict {
    /// Recorded (or already known).
    Accepted,
    /// The attempt is no longer this node's (cancelled, lost and rescheduled, unknown):
    /// kill it if it still runs, and forget it.
    Stop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AttemptReply {
    pub verdict: AttemptVerdict,
}

/// Body of `POST /api/v1/agents/{node_id}/heartbeat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Heartbeat {
    pub metrics: NodeMetrics,
    /// Every attempt the agent still holds: running, or ended but not yet acknowledged.
    #[serde(default)]
    pub attempts: Vec<AttemptReport>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatReply {
    /// Attempt ids to kill now and forget.
    #[serde(default)]
    pub stop: Vec<String>,
    /// Ended attempts whose final report the server has recorded: the agent may forget them.
    #[serde(default)]
    pub acknowledged: Vec<String>,
}

/// One attempt to run, from `GET /api/v1/agents/{node_id}/assignments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Assignment {
    pub attempt_id: String,
    pub task_id: String,
    pub attempt: u32,
    pub name: String,
    /// The task's tenant: a root agent runs each tenant as an identity of its own; an agent
    /// that cannot switch identities runs only its own tenant's tasks.
    #[serde(default)]
    pub tenant: String,
    /// argv, or empty when `script` is given.
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    pub resources: TaskResources,
    /// GPU indices on the node reserved for the attempt (`CUDA_VISIBLE_DEVICES`).
    #[serde(default)]
    pub gpus: Vec<u32>,
    /// Output (stdout and stderr together) the server keeps of the attempt: the agent keeps
    /// no more of each stream on its disk, cut with the truncation marker. Absent from an
    /// older server: the agent uses the server's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<u64>,
}

/// Output kept per attempt when the operator sets nothing (and what an agent assumes of a
/// server that does not say).
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 64 << 20;

/// The line that ends a capped attempt's output, on the server and on the agent.
pub fn truncation_marker(cap: u64) -> String {
    format!(
        "\n[cpn: output truncated: this attempt wrote more than {} MiB; the rest was dropped]\n",
        cap >> 20
    )
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Assignments {
    pub assignments: Vec<Assignment>,
    /// Attempt ids to kill (cancelled or reclaimed while running).
    #[serde(default)]
    pub stop: Vec<String>,
    /// Class A leases of this node to give SSH access to (issue #14). The agent answers
    /// each with a [`LeaseAccessReport`]; until it does, the next poll carries it again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lease_grants: Vec<LeaseAccessGrant>,
    /// Class A leases whose access ends (release, expiry, budget); answered like grants.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lease_revokes: Vec<LeaseAccessRevoke>,
}

/// Body of `POST /api/v1/agents/{node}/lease-access`: what the agent did with one lease
/// grant or revocation of [`Assignments`]. Exactly one of `access` (granted), `revoked`
/// (revoked) or `error` (why it could not, e.g. the agent does not run as root).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseAccessReport {
    pub lease_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<LeaseAccess>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<LeaseRevoked>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

// ---------------------------------------------------------------- nodes as the API shows them

/// Who runs a node's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Executor {
    /// A cpn agent on the host.
    Agent,
    /// A Slurm cluster; the node is one of its nodes.
    Slurm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    Ready,
    /// No heartbeat within the node timeout; its tasks were lost.
    NotReady,
}

/// Capacity in user units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Capacity {
    pub cpu_cores: f64,
    pub memory_gib: f64,
    pub gpus: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeView {
    pub id: String,
    pub name: String,
    pub site: String,
    pub executor: Executor,
    pub state: NodeState,
    /// Isolated (cordoned): nothing new is placed here; running work continues.
    pub cordoned: bool,
    /// Occupied: held whole for `occupied_by`; nothing is placed here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occupied_by: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// An emulated node (`inventory.emulated`): its capacity is a scaled-down demo offer
    /// and its tasks run on the server's machine.
    #[serde(default)]
    pub emulated: bool,
    pub inventory: NodeInventory,
    pub capacity: Capacity,
    /// Held by tasks and allocations.
    pub allocated: Capacity,
    /// Fraction of capacity not held, by the scarcest dimension the node has (IF-I3-03).
    pub idle_rate: f64,
    pub tasks_active: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<NodeMetrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<DateTime<Utc>>,
    pub registered_at: DateTime<Utc>,
    /// The compute resource of its site this node fulfils (chip, model, architecture), by
    /// name: its TFLOPS, watts and unit price are the node's in the scheduler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<String>,
    /// Why the node fulfils no registered compute resource of its site: it is unregistered
    /// capacity, placed with unknown price, performance and energy (scored as the mean of the
    /// sites that know theirs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unregistered: Option<String>,
}

/// Real-time state of a site (IF-I3-03): `GET /api/v1/sites/{name}/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SiteStatus {
    pub site: String,
    pub region: String,
    pub location: crate::registry::GeoLocation,
    pub nodes: u32,
    pub nodes_ready: u32,
    pub capacity: Capacity,
    pub allocated: Capacity,
    pub idle_rate: f64,
    /// Mean CPU utilization of the ready nodes, from their last samples.
    pub cpu_util_pct: f64,
    pub load1: f64,
    /// Sum of the last power samples, where nodes report one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_watts: Option<f64>,
    pub tasks_active: u32,
    pub tasks_pending: u32,
    /// Measured health: the registry's (its latest metrics sample, else its spec), and
    /// `down` when every node of the site stopped answering, whatever the registry says.
    #[serde(default)]
    pub health: crate::registry::SiteHealth,
    /// Why the site is not healthy, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_reason: Option<String>,
}

/// What an offer counts in: accelerator chips, or CPU cores for CPU offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OfferUnit {
    Chip,
    Core,
}

impl OfferUnit {
    pub fn as_str(self) -> &'static str {
        match self {
            OfferUnit::Chip => "chip",
            OfferUnit::Core => "core",
        }
    }
}

/// A registered compute resource of a site and the live machines that fulfil it, in the
/// offer's unit (`GET /api/v1/capacity`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OfferCapacity {
    /// The compute resource's name.
    pub resource: String,
    pub id: String,
    pub chip_type: crate::registry::ChipType,
    pub model: String,
    pub architecture: String,
    pub unit: OfferUnit,
    /// What the registry says the site offers (its `count`): a planning target.
    pub registered: f64,
    /// Units on ready nodes that fulfil this offer: what the binder may place on.
    pub live: f64,
    /// Units of those nodes held by tasks and allocations.
    pub allocated: f64,
    /// `live - allocated` on nodes that take new work (not cordoned, not occupied).
    pub free: f64,
    /// Ready nodes fulfilling it.
    pub nodes_live: u32,
    /// Nodes fulfilling it that stopped answering.
    pub nodes_lost: u32,
    /// Of `nodes_live`, the emulated ones (a demo offer scaled down, run by `cpn serve`).
    #[serde(default)]
    pub nodes_emulated: u32,
    pub unit_price: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tflops: Option<f64>,
    pub power_watts: f64,
    /// Isolated by an I2 operation: nothing new is placed on its nodes.
    pub isolated: bool,
}

/// A live node that fulfils no registered offer of its site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UnregisteredNode {
    pub node: String,
    pub node_id: String,
    pub ready: bool,
    #[serde(default)]
    pub emulated: bool,
    pub capacity: Capacity,
    pub reason: String,
}

/// Per site: registered offers against live machines (`GET /api/v1/capacity`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SiteCapacity {
    pub site: String,
    pub region: String,
    /// Measured health, as in [`SiteStatus`].
    pub health: crate::registry::SiteHealth,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_reason: Option<String>,
    pub nodes: u32,
    pub nodes_ready: u32,
    /// Of `nodes`, the emulated ones ([`NodeInventory::emulated`]).
    #[serde(default)]
    pub nodes_emulated: u32,
    /// Whether the binder places work here now: a ready node on a site that is not down.
    /// Registered capacity without a live node is a planning target only (dry-run, plans,
    /// the twin).
    pub binder_target: bool,
    pub offers: Vec<OfferCapacity>,
    pub unregistered: Vec<UnregisteredNode>,
}

/// Class A lease access (issue #14, SH-CL-14): the server asks the agent of the leased node
/// to create a dedicated SSH account for one lease, with the user's public key and the
/// leased GPUs and share. The agent derives the account's name from `lease_id` (`cpnl-…`),
/// refuses a key line with options (`command=`, `environment=`, …) or more than one line,
/// and answers with a [`LeaseAccess`]. Granting the same lease again with the same key
/// answers the same access; a revoked lease is never granted again.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LeaseAccessGrant {
    /// The lease's id: 1 to 64 of ASCII letters, digits, `.`, `_` and `-`.
    pub lease_id: String,
    /// One OpenSSH public key line, `TYPE BASE64 [COMMENT]`, of type `ssh-ed25519`,
    /// `ecdsa-sha2-nistp256/384/521`, `sk-ssh-ed25519@openssh.com`,
    /// `sk-ecdsa-sha2-nistp256@openssh.com` or `ssh-rsa` of at least 2048 bits. The comment
    /// is dropped.
    pub public_key: String,
    /// Indices of the leased GPUs on the node (as in [`GpuInfo::index`]).
    #[serde(default)]
    pub gpus: Vec<u32>,
    /// The leased CPU share in cores (0: no CPU limit).
    #[serde(default)]
    pub cpu_cores: f64,
    /// The leased memory in GiB (0: no memory limit).
    #[serde(default)]
    pub memory_gib: f64,
}

/// The server asks the agent to end a lease's access: on release by the user, expiry or
/// budget exhaustion. Idempotent: revoking a revoked or unknown lease reports what is there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LeaseAccessRevoke {
    pub lease_id: String,
}

/// How a user reaches a class A lease, as the agent set it up. Shown to the user once the
/// lease is active; nothing in it is secret.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LeaseAccess {
    pub lease_id: String,
    /// Where to connect: the node's SSH host name or address, as the agent is configured.
    pub host: String,
    pub port: u16,
    /// The lease's own local account (`cpnl-…`).
    pub username: String,
    /// The SSH host key's fingerprint as `ssh-keygen -l -E sha256` prints it
    /// (`SHA256:…`), so the user can check the first connection.
    pub host_key_fingerprint: String,
    /// The algorithm of that host key (`ssh-ed25519`).
    pub host_key_type: String,
    /// The leased GPUs' indices, the only ones the session's `CUDA_VISIBLE_DEVICES` names.
    pub gpus: Vec<u32>,
    /// What the node actually enforces for this account; read it before promising more.
    pub isolation: LeaseIsolation,
}

/// How far a lease's limits are enforced on its node, stated plainly.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LeaseIsolation {
    /// GPUs: `enforced` only where a device controller denies the other GPUs' device
    /// nodes; `simulated` where only `CUDA_VISIBLE_DEVICES`/`NVIDIA_VISIBLE_DEVICES` name the
    /// leased GPUs (CUDA honours them, but the account could still open other GPUs'
    /// devices); `unavailable` where not even that applies.
    pub gpus: Enforcement,
    /// The leased CPU share (a cgroup's CPU quota).
    pub cpu: Enforcement,
    /// The leased memory (a cgroup's memory limit).
    pub memory: Enforcement,
    /// Which cgroup hierarchy holds the lease's processes.
    pub cgroup: CgroupMode,
    /// One line per limit that is not `enforced`, saying why.
    #[serde(default)]
    pub notes: Vec<String>,
}

/// Whether a limit holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Enforcement {
    /// The kernel holds it.
    Enforced,
    /// Only advisory (an environment variable a program may honour or ignore).
    Simulated,
    /// Not applied on this node.
    #[default]
    Unavailable,
}

impl Enforcement {
    pub fn as_str(self) -> &'static str {
        match self {
            Enforcement::Enforced => "enforced",
            Enforcement::Simulated => "simulated",
            Enforcement::Unavailable => "unavailable",
        }
    }
}

/// What revoking a lease's access did, for the lease's record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LeaseRevoked {
    pub lease_id: String,
    /// The account, when the agent ever created one for the lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The account is locked (no password, expired, no login shell): no new logins.
    pub locked: bool,
    /// Processes of the account that were killed now (sessions included).
    pub processes_killed: u32,
    /// `authorized_keys` was removed now (false when it was already gone).
    pub authorized_keys_removed: bool,
    /// The lease was already revoked before this request.
    pub already_revoked: bool,
}
