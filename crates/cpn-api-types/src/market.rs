//! The sharing marketplace's listings, orders, leases and billing (issue #14, deliverables
//! 2, 3 and 5). Amounts are integer minor units (fen): `*_minor` fields, never floats, so
//! every sum a client adds up is exact. Times are RFC 3339 UTC, whole seconds (metering is
//! to the second).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// SH-CL-01 item 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClusterClass {
    /// Bare metal, used over SSH after the supplier's authorization code.
    A,
    /// Virtualised, used through the platform; a lease holds capacity in the ledger.
    B,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResourceType {
    Gpu,
    Npu,
    Cpu,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BillingMode {
    /// Postpaid, metered to the second.
    Hourly,
    /// Prepaid by calendar months.
    Monthly,
    /// Prepaid by years.
    Yearly,
}

/// Unit prices per card, minor units, one per offered mode (at least one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    /// Per card-hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourly_minor: Option<i64>,
    /// Per card-month.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_minor: Option<i64>,
    /// Per card-year.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yearly_minor: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiskKind {
    NvmeSsd,
    SataSsd,
    Hdd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiskRole {
    System,
    Data,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    pub kind: DiskKind,
    pub role: DiskRole,
    pub size_gb: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Approval {
    /// An order becomes a lease at once.
    #[default]
    Automatic,
    /// The supplier approves or rejects each order (within a day, or it lapses).
    BySupplier,
}

/// One card: a device index of a node of the listing's site, as its agent reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CardRef {
    pub node: String,
    pub index: u32,
}

/// Body of `POST /api/v1/market/listings` and `PUT …/{cpcid}`: the eleven items of
/// SH-CL-01 and what the platform needs to back the cards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListingSpec {
    pub class: ClusterClass,
    pub resource_type: ResourceType,
    /// e.g. `A100 80GB`.
    pub model: String,
    pub card_memory_gib: u32,
    pub memory_gib: u32,
    pub vcpus: u32,
    pub prices: Prices,
    pub vendor: String,
    pub region: String,
    pub storage: Vec<Disk>,
    /// How a class A cluster is used (required for class A).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<String>,
    #[serde(default)]
    pub approval: Approval,
    /// The site (name) whose nodes back the cards; the supplier must own it.
    pub site: String,
    /// The cards. Empty on publish: every GPU the site's nodes report now.
    #[serde(default)]
    pub cards: Vec<CardRef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CardState {
    Idle,
    /// Held by an order waiting for approval or (class A) for the authorization code.
    Reserved,
    Busy,
    /// No live agent reports the card; it cannot be leased.
    Offline,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CardView {
    /// The platform's card number, for ordering exact cards.
    pub id: u32,
    pub node: String,
    pub index: u32,
    pub state: CardState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ListingStatus {
    Listed,
    Delisted,
}

/// A published cluster with its per-card state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ListingView {
    /// The platform's identifier (SH-CL-08), e.g. `CPC-0000000001-8`.
    pub cpcid: String,
    /// The supplier's username.
    pub supplier: String,
    pub spec: ListingSpec,
    pub status: ListingStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delisted_reason: Option<String>,
    /// Prices change by versions; a lease keeps the version it was made at.
    pub price_version: u32,
    pub idle_cards: u32,
    /// Per mille, from evaluations; absent until evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reliability: Option<u16>,
    pub published_at: DateTime<Utc>,
    pub cards: Vec<CardView>,
}

/// One hit of the marketplace search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ListingHit {
    pub cpcid: String,
    pub class: ClusterClass,
    pub resource_type: ResourceType,
    pub model: String,
    pub region: String,
    pub idle_cards: u32,
    pub card_memory_gib: u32,
    pub prices: Prices,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reliability: Option<u16>,
}

/// A page of the search: `total` hits in all, `items` from `offset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ListingHits {
    pub total: u64,
    pub offset: u64,
    pub items: Vec<ListingHit>,
}

/// Body of `POST …/{cpcid}/delist`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Delist {
    #[serde(default)]
    pub reason: String,
}

/// Body of `POST /api/v1/market/orders`: how many (or which) cards, and the billing mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderCreate {
    pub listing: String,
    /// Any idle cards, this many (default 1 when `card_ids` is absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cards: Option<u32>,
    /// Exactly these cards (`CardView::id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_ids: Option<Vec<u32>>,
    pub mode: BillingMode,
    /// Months or years of a prepaid term; 0 (the default) for hourly.
    #[serde(default)]
    pub periods: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    AwaitingApproval,
    Leased,
    Rejected,
    Cancelled,
    Lapsed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderView {
    pub id: u64,
    pub listing: String,
    pub state: OrderState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The lease it became (same number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<u64>,
    pub placed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LeaseState {
    /// Class A: waiting for the user to enter the supplier's authorization code.
    AwaitingAccess,
    /// Class A: too many wrong codes; the supplier must issue a new one.
    Locked,
    Active,
    Ended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    Released,
    Expired,
    BudgetExhausted,
    FundsDepleted,
}

/// A lease as its user, its supplier or an operator sees it. Never carries the code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LeaseView {
    pub id: u64,
    pub listing: String,
    pub class: ClusterClass,
    pub user: String,
    pub tenant: String,
    pub supplier: String,
    pub cards: Vec<CardView>,
    pub mode: BillingMode,
    pub unit_price_minor: i64,
    pub price_version: u32,
    /// Billing starts here.
    pub started_at: DateTime<Utc>,
    /// End of a prepaid term.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<DateTime<Utc>>,
    pub state: LeaseState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<EndReason>,
    /// Charged so far (metered up to the last metering run, or the end).
    pub charged_minor: i64,
    /// How the lease is used, plainly: for class A whether an SSH account exists; for class
    /// B the capacity hold.
    pub access: String,
    /// Class A, while active: how to log in on each leased node, as its agent set it up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh: Vec<crate::agent::LeaseAccess>,
    /// Class B, once ended: the platform's evaluation of the cluster (SH-CL-18).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<EvaluationView>,
}

/// The evaluation of a class B cluster after one lease (SH-CL-18), from what monitoring
/// recorded while it ran. Per mille figures (0..=1000); absent where nothing was measured.
/// The listing's `reliability` is the exponentially weighted mean of the scores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EvaluationView {
    pub lease: u64,
    pub listing: String,
    pub evaluated_at: DateTime<Utc>,
    /// Monitoring samples taken during the lease (one per metering run, about 5 s).
    pub samples: u32,
    /// Share of samples in which every node of the lease answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<u16>,
    /// Mean CPU utilisation of the lease's nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_util: Option<u16>,
    /// Mean GPU utilisation of the leased cards, where the agent reports GPU metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_util: Option<u16>,
    /// Leased cards that disappeared from their node's report while held (掉卡).
    pub drop_offs: u32,
    /// Errors: times a node of the lease was lost (not ready).
    pub node_losses: u32,
    /// Availability less 200 per drop-off and 100 per node loss, at least 0; absent when no
    /// sample was taken (the reliability is then unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<u16>,
}

/// `GET /api/v1/market/leases/{id}/monitoring`: the live state of a class B lease's
/// nodes, cards and site links (SH-CL-20, -21, -27), with what the evaluation has counted
/// so far. A figure the hardware does not report is absent, never 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LeaseMonitoring {
    pub lease: u64,
    pub listing: String,
    pub site: String,
    pub state: LeaseState,
    pub at: DateTime<Utc>,
    pub nodes: Vec<NodeMonitoring>,
    /// The site's links with their latest measurements.
    pub links: Vec<LinkMonitoring>,
    /// The evaluation's counts so far (for an ended lease: its evaluation's).
    pub so_far: EvaluationView,
}

/// One node of a lease as its agent last reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeMonitoring {
    pub node: String,
    pub ready: bool,
    /// When the agent's latest report was taken; absent if none since the server started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_util_pct: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_util_pct: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load1: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_rx_bytes_per_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_tx_bytes_per_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_watts: Option<f64>,
    /// The leased cards on this node.
    pub cards: Vec<CardMonitoring>,
}

/// One leased card as its node's agent last reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CardMonitoring {
    pub card: u32,
    pub index: u32,
    pub state: CardState,
    /// The node's latest report lists GPU metrics but not this card: it dropped off (掉卡),
    /// as the evaluation counts it. False when the agent reports no GPU metrics at all.
    pub missing: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub util_pct: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_used_mib: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_total_mib: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature_c: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_watts: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voltage_v: Option<f64>,
}

/// A link of the lease's site with its latest measurements (the topology's metrics).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LinkMonitoring {
    pub link: String,
    /// The site at the other end.
    pub peer: String,
    pub latency_ms: f64,
    pub loss_pct: f64,
    pub bandwidth_gbps: f64,
    pub measured_at: DateTime<Utc>,
}

/// Answer of `POST /api/v1/market/orders`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderPlaced {
    pub order: OrderView,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseView>,
}

/// Answer of `GET …/leases/{id}/authorization-code` for the supplier: the code, once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuthorizationCode {
    pub lease: u64,
    pub code: String,
}

/// Body of `POST …/leases/{id}/code`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeEntry {
    pub code: String,
    /// One OpenSSH public key line (e.g. `~/.ssh/id_ed25519.pub`): the lease's SSH account
    /// on the leased node lets in this key only. Required for class A.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

/// Body of `POST /api/v1/billing/topups` (operators).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopUp {
    pub tenant: String,
    pub amount_minor: i64,
    /// Idempotency key: the same key tops up once. Default: a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default)]
    pub memo: String,
}

/// Body of `PUT /api/v1/billing/budgets/{tenant}` (operators).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetSet {
    pub monthly_limit_minor: i64,
    /// Alarm at this share of the limit, 1..=100.
    pub alarm_percent: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Balance {
    pub tenant: String,
    /// Funds plus credit: what new leases are admitted against.
    pub available_minor: i64,
    pub funds_minor: i64,
    pub credit_minor: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_limit_minor: Option<i64>,
    pub spent_this_month_minor: i64,
}

/// One usage record (lease time or a prepaid term).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsageView {
    pub lease: u64,
    pub tenant: String,
    pub listing: String,
    /// `lease_card_seconds`, `prepaid_card_periods`, `task_…`.
    pub kind: String,
    pub quantity: u64,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub amount_minor: i64,
}

/// Body of `POST /api/v1/billing/months/{month}/close` answers: what was closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MonthClosed {
    pub month: String,
    pub invoices: u32,
    pub statements: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InvoiceView {
    pub month: String,
    pub tenant: String,
    pub total_minor: i64,
    pub csv: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatementView {
    pub month: String,
    pub supplier: String,
    pub gross_minor: i64,
    pub commission_minor: i64,
    pub net_minor: i64,
    pub csv: String,
}

/// One ledger account's balance (operators).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LedgerBalance {
    pub account: String,
    pub balance_minor: i64,
}

/// The whole ledger (operators): every account's balance and their sum, which is zero.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LedgerView {
    pub trial_balance_minor: i64,
    pub transactions: u64,
    pub accounts: Vec<LedgerBalance>,
}
