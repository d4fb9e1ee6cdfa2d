//! The sharing marketplace's listings, orders, leases and billing (issue #14, deliverables
//! 2, 3 and 5) as a service over the pure core `cpn_market::Market`.
//!
//! **Persistence** (ARCHITECTURE.md, `cpn-store`): one `Market` behind one async lock,
//! restored from the store at start. Every call runs under the lock, takes the call's
//! effects with `Market::take_changes` and writes them with `apply_market` *before* it
//! answers, so an acknowledged lease, card state or ledger transaction survives a crash and
//! writes reach the store in the order the market made them. If the store refuses a write
//! (another writer got there first) or fails, the market in memory is ahead of the truth:
//! it is dropped and restored from the store, and the caller gets the refusal.
//!
//! **Cards follow live nodes**: a card is reported (can be idle) only while the node
//! record of its site says the node is ready and its agent's inventory lists the device
//! index. The metering loop ([`run`]) brings the catalog in step every [`METER_INTERVAL`],
//! and so do a publish and an order, so an order never takes a card whose node the monitor
//! has already marked not ready.
//!
//! **Accounts**: the core names parties by `AccountId`, the id of a marketplace account
//! record (`MarketStore`). A caller acts as the account linked to its platform user
//! (`market_accounts::account_of`: the one it registered, or one made on its first
//! marketplace call for a user an operator created), so leases, orders and ledger entries
//! name real accounts. Orders and listings need an active account (`Account::can_transact`).
//!
//! **Notifications**: lease starts and ends and the core's budget events go to the
//! subscribers (`notify::market_outbox`, kinds `lease` and `billing`) through the outbox
//! rows written in the same store transaction as the change (`MarketWrite::outbox`), so a
//! crash keeps both or neither; their idempotency keys are made of the lease or tenant and
//! month, so a retry or a restart does not send one twice.
//!
//! **Class B** leases hold their share (cards, and CPU and memory in proportion) in the one
//! capacity ledger (`runtime::ledger`) as a `Lease` hold per node, so the binder and
//! `POST /schedule` see it as taken; the lessee's tasks that name the lease run inside it,
//! and end when it ends (`runtime::tasks::end_in_lease`). They are not billed apart: the
//! lease is billed by its time. **Class A**
//! access (an SSH account made by the agent) is not carried by the agent protocol yet: a
//! lease says so in `access` rather than claim an account exists.

use crate::caller::Caller;
use crate::error::{ApiError, ApiResult};
use crate::notify::{Audience, MarketEvent as Announcement};
use crate::runtime::ledger::{Hold, HoldKind, lease_hold_id};
use crate::state::Control;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use chrono::{DateTime, Utc};
use cpn_api_types::Code;
use cpn_api_types::identity::Role;
use cpn_api_types::market as wire;
use cpn_market::billing::{Budget, BudgetEvent, Commission, LedgerAccount, Refusal, UsageRecord};
use cpn_market::catalog::{AllocationError, CatalogError};
use cpn_market::lease::OrderState;
use cpn_market::listing::{self as core_listing, CardSpec};
use cpn_market::market::{LeaseError, OrderError};
use cpn_market::{
    AccountId, CardChoice, CardId, CardState, ClusterClass, CpcId, EndReason, Lease, LeaseId,
    LeaseState, ListingStatus, Market, Money, Month, OrderId, OrderPlaced, OrderRequest, Query,
    SortKey, TenantId, Timestamp,
};
use cpn_model::Kind;
use cpn_notify::EventKind;
use cpn_store::MarketWrite;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

#[path = "market_eval.rs"]
pub mod eval;

/// How often the metering loop runs: lease time is charged up to each run, budgets are
/// checked and card states follow the nodes. Bills do not depend on it (metering is to the
/// second of the lease's start and end); only how soon an exhausted budget ends a lease.
pub const METER_INTERVAL: Duration = Duration::from_secs(5);

/// The platform's commission on suppliers' gross: 5 %.
pub const COMMISSION: Commission = Commission { basis_points: 500 };

/// The marketplace as the server holds it.
#[derive(Default)]
pub struct MarketService {
    inner: tokio::sync::Mutex<Inner>,
    /// Class A lease access per (node id, agent lease id): what the agents are asked and
    /// what they answered. Each entry is also a setting (`ACCESS_SETTING` + node + lease),
    /// loaded at start. Its own lock, so an agent's poll never waits for a market call.
    access: std::sync::Mutex<AccessMap>,
}

type AccessMap = BTreeMap<(String, String), NodeAccess>;

/// One node's part of a class A lease's SSH access (issue #14, SH-CL-14).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct NodeAccess {
    lease: u64,
    node_id: String,
    node: String,
    grant: cpn_api_types::agent::LeaseAccessGrant,
    access: Option<cpn_api_types::agent::LeaseAccess>,
    error: Option<String>,
    /// The lease ended: the account must be locked.
    revoke: bool,
    revoked: Option<cpn_api_types::agent::LeaseRevoked>,
    revoke_error: Option<String>,
}

impl NodeAccess {
    fn grant_pending(&self) -> bool {
        !self.revoke && self.access.is_none() && self.error.is_none()
    }
    fn revoke_pending(&self) -> bool {
        self.revoke && self.revoked.is_none() && self.revoke_error.is_none()
    }
}

const ACCESS_SETTING: &str = "market.lease_access.";
/// A random prefix of this data dir's agent lease ids, so two servers' leases on one host
/// never ask for the same account name.
const PREFIX_SETTING: &str = "market.lease_prefix";

impl MarketService {
    fn access(&self) -> std::sync::MutexGuard<'_, AccessMap> {
        self.access.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Default)]
struct Inner {
    /// `None` until loaded, and after a refused or failed write (restored on next use).
    market: Option<Market>,
    /// Class A authorization codes the supplier has not fetched yet. Shown once, then gone;
    /// in memory only (the store keeps just the keyed hash), so after a restart the
    /// supplier issues a new one.
    codes: HashMap<LeaseId, String>,
}

fn now() -> Timestamp {
    Timestamp::from_unix(Utc::now().timestamp())
}

fn time(t: Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(t.unix(), 0).unwrap_or_default()
}

fn entropy() -> [u8; 32] {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    b
}

fn internal(m: impl Into<String>) -> ApiError {
    ApiError::new(Code::Internal, m)
}

/// Restores the market from the store and puts the running class B leases' holds back in
/// the capacity ledger (which is rebuilt from the store without them).
pub async fn load(state: &Control) -> ApiResult<()> {
    let mut inner = state.market.inner.lock().await;
    inner.market = None;
    ensure(state, &mut inner).await?;
    let market = inner.market.as_ref().expect("just loaded");
    let leases: Vec<Lease> = market
        .leases()
        .filter(|l| l.class == ClusterClass::B && l.is_running())
        .cloned()
        .collect();
    for l in &leases {
        hold_class_b(state, market, l).await?;
    }
    let prefix = lease_prefix(state).await?;
    let class_a: Vec<(LeaseId, String, Vec<String>)> = market
        .leases()
        .filter(|l| {
            l.class == ClusterClass::A
                && !matches!(
                    l.state,
                    LeaseState::AwaitingAccess { .. } | LeaseState::Locked
                )
        })
        .map(|l| {
            let site = market
                .catalog()
                .listing(l.listing)
                .map(|x| x.spec().site.clone())
                .unwrap_or_default();
            (l.id, site, lease_nodes(market, l).into_keys().collect())
        })
        .collect();
    drop(inner);
    let nodes = state.store.list_nodes().await?;
    let mut loaded = AccessMap::new();
    for (lease, site, names) in class_a {
        for name in names {
            let Some(rec) = nodes.iter().find(|n| n.site == site && n.name == name) else {
                continue;
            };
            let agent_lease = format!("{prefix}{}", lease.0);
            let key = format!("{ACCESS_SETTING}{}.{agent_lease}", rec.id);
            if let Some(v) = state.store.get_setting(&key).await?
                && let Ok(a) = serde_json::from_str::<NodeAccess>(&v)
            {
                loaded.insert((rec.id.clone(), agent_lease), a);
            }
        }
    }
    *state.market.access() = loaded;
    Ok(())
}

async fn lease_prefix(state: &Control) -> ApiResult<String> {
    Ok(match state.store.get_setting(PREFIX_SETTING).await? {
        Some(p) => p,
        None => {
            let p = format!("l{}", &hex::encode(entropy())[..6]);
            state.store.put_setting(PREFIX_SETTING, &p).await?;
            p
        }
    })
}

/// A lease's GPU indexes by node name.
fn lease_nodes(market: &Market, l: &Lease) -> BTreeMap<String, Vec<u32>> {
    let mut per_node: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for c in &l.cards {
        if let Some(spec) = market.catalog().card_spec(*c) {
            per_node
                .entry(spec.node.clone())
                .or_default()
                .push(spec.index);
        }
    }
    per_node
}

async fn save_access(state: &Control, a: &NodeAccess) -> ApiResult<()> {
    let key = format!("{ACCESS_SETTING}{}.{}", a.node_id, a.grant.lease_id);
    let value = serde_json::to_string(a).map_err(|e| internal(e.to_string()))?;
    state.store.put_setting(&key, &value).await?;
    Ok(())
}

fn wake(state: &Control, node_id: &str) {
    state
        .runtime
        .with_live(node_id, |l| l.wake.notify_waiters());
}

/// What a node's agent is asked to do for class A leases now: grants not yet answered,
/// and revocations of ended leases. Called by the agent's poll (`runtime::agents`).
pub async fn lease_work(
    market: &MarketService,
    node_id: &str,
) -> (
    Vec<cpn_api_types::agent::LeaseAccessGrant>,
    Vec<cpn_api_types::agent::LeaseAccessRevoke>,
) {
    let access = market.access();
    let mut grants = Vec::new();
    let mut revokes = Vec::new();
    for ((node, _), a) in access.iter() {
        if node != node_id {
            continue;
        }
        if a.grant_pending() {
            grants.push(a.grant.clone());
        } else if a.revoke_pending() {
            revokes.push(cpn_api_types::agent::LeaseAccessRevoke {
                lease_id: a.grant.lease_id.clone(),
            });
        }
    }
    (grants, revokes)
}

/// The class A leases still live on a node (granted or to be granted, not ended), by
/// agent lease id: told to its agent at registration, which revokes the accounts of any
/// other lease (one that ended while the agent was down; the market loads only live
/// leases' access at start, so an ended one's revocation may never be asked again).
pub fn live_leases(market: &MarketService, node_id: &str) -> Vec<String> {
    market
        .access()
        .iter()
        .filter(|((node, _), a)| node == node_id && !a.revoke)
        .map(|((_, lease), _)| lease.clone())
        .collect()
}

/// An agent reports what it did with a grant or revocation.
pub async fn lease_access_report(
    state: &Control,
    who: &crate::join::NodeCaller,
    node_id: &str,
    report: cpn_api_types::agent::LeaseAccessReport,
) -> ApiResult<()> {
    who.check(node_id)?;
    let updated = {
        let mut access = state.market.access();
        let a = access
            .get_mut(&(node_id.to_string(), report.lease_id.clone()))
            .ok_or_else(|| ApiError::not_found("lease access", &report.lease_id))?;
        if a.revoke {
            match (report.revoked, report.error) {
                (Some(r), _) => a.revoked = Some(r),
                (None, Some(e)) => a.revoke_error = Some(e),
                (None, None) => {
                    return Err(ApiError::field(
                        "revoked",
                        "a revocation's report says what was revoked, or the error",
                    ));
                }
            }
        } else {
            match (report.access, report.error) {
                (Some(x), _) => a.access = Some(x),
                (None, Some(e)) => a.error = Some(e),
                (None, None) => {
                    return Err(ApiError::field(
                        "access",
                        "a grant's report gives the access, or the error",
                    ));
                }
            }
        }
        a.clone()
    };
    save_access(state, &updated).await
}

/// Asks the agents of an ended class A lease's nodes to lock its accounts.
async fn revoke_access(state: &Control, lease: LeaseId) {
    let ended: Vec<NodeAccess> = {
        let mut access = state.market.access();
        access
            .values_mut()
            .filter(|a| a.lease == lease.0 && !a.revoke)
            .map(|a| {
                a.revoke = true;
                a.clone()
            })
            .collect()
    };
    for a in ended {
        if let Err(e) = save_access(state, &a).await {
            tracing::warn!(lease = lease.0, error = %e, "could not store the revocation; the agent is asked anyway");
        }
        wake(state, &a.node_id);
    }
}

/// After the code: one grant per node of the lease, with the user's key and that node's
/// leased GPUs, stored and then offered to the node's agent.
async fn grant_access(
    state: &Control,
    market: &Market,
    lease: &Lease,
    public_key: &str,
) -> ApiResult<()> {
    let prefix = lease_prefix(state).await?;
    let nodes = state.store.list_nodes().await?;
    let site = market
        .catalog()
        .listing(lease.listing)
        .map(|l| l.spec().site.clone())
        .unwrap_or_default();
    for (node, gpus) in lease_nodes(market, lease) {
        let Some(rec) = nodes.iter().find(|n| n.site == site && n.name == node) else {
            continue;
        };
        let a = NodeAccess {
            lease: lease.id.0,
            node_id: rec.id.clone(),
            node: node.clone(),
            grant: cpn_api_types::agent::LeaseAccessGrant {
                lease_id: format!("{prefix}{}", lease.id.0),
                public_key: public_key.to_string(),
                gpus,
                cpu_cores: 0.0,
                memory_gib: 0.0,
            },
            access: None,
            error: None,
            revoke: false,
            revoked: None,
            revoke_error: None,
        };
        save_access(state, &a).await?;
        state
            .market
            .access()
            .insert((a.node_id.clone(), a.grant.lease_id.clone()), a.clone());
        wake(state, &a.node_id);
    }
    Ok(())
}

async fn ensure<'a>(state: &Control, inner: &'a mut Inner) -> ApiResult<&'a mut Market> {
    ensure_from(state.store.as_ref(), state.market_accounts.hasher(), inner).await
}

/// [`ensure`] with only what it reads: the store and the identifier key.
async fn ensure_from<'a>(
    store: &dyn cpn_store::Store,
    hasher: &cpn_market::KeyedHasher,
    inner: &'a mut Inner,
) -> ApiResult<&'a mut Market> {
    if inner.market.is_none() {
        let stored = store.load_market().await?;
        let market = Market::restore(hasher.clone(), COMMISSION, stored)
            .map_err(|e| internal(format!("restore the marketplace: {e}")))?;
        inner.market = Some(market);
    }
    Ok(inner.market.as_mut().expect("just set"))
}

/// Writes what the market changed (and the usage records the call returned) before the
/// caller answers, with the notifications it causes in the same transaction, so a crash
/// cannot keep the one without the other. On a refusal or a store error the market is
/// dropped, to be restored.
async fn persist(
    state: &Control,
    inner: &mut Inner,
    usage: Vec<UsageRecord>,
    announcements: Vec<Announcement>,
) -> ApiResult<()> {
    let notifies = !announcements.is_empty();
    persist_to(state.store.as_ref(), inner, usage, announcements).await?;
    if notifies {
        state.market_accounts.notifier().wake();
    }
    Ok(())
}

/// [`persist`] with only what it writes to: the store.
async fn persist_to(
    store: &dyn cpn_store::Store,
    inner: &mut Inner,
    usage: Vec<UsageRecord>,
    announcements: Vec<Announcement>,
) -> ApiResult<()> {
    let Some(market) = inner.market.as_mut() else {
        return Ok(());
    };
    let changes = market.take_changes();
    if changes.is_empty() && usage.is_empty() && announcements.is_empty() {
        return Ok(());
    }
    let outbox = match crate::notify::market_outbox(store, announcements).await {
        Ok(o) => o,
        Err(e) => {
            // The changes are taken: the market is ahead of the store now.
            inner.market = None;
            return Err(e.into());
        }
    };
    let write = MarketWrite {
        changes,
        usage,
        close: None,
        outbox,
    };
    match store.apply_market(write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(refusal)) => {
            inner.market = None;
            Err(ApiError::new(
                Code::InvalidState,
                format!("{refusal}; nothing was changed, try again"),
            ))
        }
        Err(e) => {
            inner.market = None;
            Err(e.into())
        }
    }
}

/// Brings card states in step with the node records: a card is reported while its node
/// is ready and lists the device.
async fn sync_nodes(state: &Control, market: &mut Market) -> ApiResult<()> {
    let nodes = state.store.list_nodes().await?;
    apply_nodes(market, &nodes)
}

/// [`sync_nodes`] with the node records read already (the metering loop reads them before
/// it takes the market's lock, which task submissions wait on).
fn apply_nodes(market: &mut Market, nodes: &[cpn_store::NodeRecord]) -> ApiResult<()> {
    let mut present: HashMap<(String, String), Vec<u32>> = HashMap::new();
    for n in nodes {
        let gpus = if n.ready {
            crate::runtime::nodes::inventory_of(n)
                .gpus
                .iter()
                .map(|g| g.index)
                .collect()
        } else {
            Vec::new()
        };
        present.insert((n.site.clone(), n.name.clone()), gpus);
    }
    let mut listed: BTreeSet<(String, String)> = BTreeSet::new();
    for l in market.catalog().listings() {
        for c in &l.spec().cards {
            listed.insert((l.spec().site.clone(), c.node.clone()));
        }
    }
    for (site, node) in listed {
        let devices = present
            .get(&(site.clone(), node.clone()))
            .cloned()
            .unwrap_or_default();
        let dropped = market.catalog_mut().report_node(&site, &node, &devices);
        for (card, order) in dropped {
            tracing::warn!(card = card.0, order = order.0, site = %site, node = %node, "a held card dropped off its node");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- conversions

fn class_in(c: wire::ClusterClass) -> ClusterClass {
    match c {
        wire::ClusterClass::A => ClusterClass::A,
        wire::ClusterClass::B => ClusterClass::B,
    }
}
fn class_out(c: ClusterClass) -> wire::ClusterClass {
    match c {
        ClusterClass::A => wire::ClusterClass::A,
        ClusterClass::B => wire::ClusterClass::B,
    }
}
fn rtype_in(t: wire::ResourceType) -> core_listing::ResourceType {
    match t {
        wire::ResourceType::Gpu => core_listing::ResourceType::Gpu,
        wire::ResourceType::Npu => core_listing::ResourceType::Npu,
        wire::ResourceType::Cpu => core_listing::ResourceType::Cpu,
    }
}
fn rtype_out(t: core_listing::ResourceType) -> wire::ResourceType {
    match t {
        core_listing::ResourceType::Gpu => wire::ResourceType::Gpu,
        core_listing::ResourceType::Npu => wire::ResourceType::Npu,
        core_listing::ResourceType::Cpu => wire::ResourceType::Cpu,
    }
}
pub fn mode_in(m: wire::BillingMode) -> core_listing::BillingMode {
    match m {
        wire::BillingMode::Hourly => core_listing::BillingMode::Hourly,
        wire::BillingMode::Monthly => core_listing::BillingMode::Monthly,
        wire::BillingMode::Yearly => core_listing::BillingMode::Yearly,
    }
}
fn mode_out(m: core_listing::BillingMode) -> wire::BillingMode {
    match m {
        core_listing::BillingMode::Hourly => wire::BillingMode::Hourly,
        core_listing::BillingMode::Monthly => wire::BillingMode::Monthly,
        core_listing::BillingMode::Yearly => wire::BillingMode::Yearly,
    }
}
fn prices_in(p: wire::Prices) -> core_listing::PriceSheet {
    core_listing::PriceSheet {
        hourly: p.hourly_minor.map(Money::from_minor),
        monthly: p.monthly_minor.map(Money::from_minor),
        yearly: p.yearly_minor.map(Money::from_minor),
    }
}
fn prices_out(p: core_listing::PriceSheet) -> wire::Prices {
    wire::Prices {
        hourly_minor: p.hourly.map(Money::minor),
        monthly_minor: p.monthly.map(Money::minor),
        yearly_minor: p.yearly.map(Money::minor),
    }
}

fn spec_in(s: wire::ListingSpec) -> core_listing::ListingSpec {
    use core_listing::{Approval, Disk, DiskKind, DiskRole};
    core_listing::ListingSpec {
        class: class_in(s.class),
        resource_type: rtype_in(s.resource_type),
        model: s.model,
        card_memory_gib: s.card_memory_gib,
        memory_gib: s.memory_gib,
        vcpus: s.vcpus,
        prices: prices_in(s.prices),
        vendor: s.vendor,
        region: s.region,
        storage: s
            .storage
            .into_iter()
            .map(|d| Disk {
                kind: match d.kind {
                    wire::DiskKind::NvmeSsd => DiskKind::NvmeSsd,
                    wire::DiskKind::SataSsd => DiskKind::SataSsd,
                    wire::DiskKind::Hdd => DiskKind::Hdd,
                },
                role: match d.role {
                    wire::DiskRole::System => DiskRole::System,
                    wire::DiskRole::Data => DiskRole::Data,
                },
                size_gb: d.size_gb,
            })
            .collect(),
        usage: s.usage,
        approval: match s.approval {
            wire::Approval::Automatic => Approval::Automatic,
            wire::Approval::BySupplier => Approval::BySupplier,
        },
        site: s.site,
        cards: s
            .cards
            .into_iter()
            .map(|c| CardSpec {
                node: c.node,
                index: c.index,
            })
            .collect(),
    }
}

fn spec_out(s: &core_listing::ListingSpec) -> wire::ListingSpec {
    use core_listing::{Approval, DiskKind, DiskRole};
    wire::ListingSpec {
        class: class_out(s.class),
        resource_type: rtype_out(s.resource_type),
        model: s.model.clone(),
        card_memory_gib: s.card_memory_gib,
        memory_gib: s.memory_gib,
        vcpus: s.vcpus,
        prices: prices_out(s.prices),
        vendor: s.vendor.clone(),
        region: s.region.clone(),
        storage: s
            .storage
            .iter()
            .map(|d| wire::Disk {
                kind: match d.kind {
                    DiskKind::NvmeSsd => wire::DiskKind::NvmeSsd,
                    DiskKind::SataSsd => wire::DiskKind::SataSsd,
                    DiskKind::Hdd => wire::DiskKind::Hdd,
                },
                role: match d.role {
                    DiskRole::System => wire::DiskRole::System,
                    DiskRole::Data => wire::DiskRole::Data,
                },
                size_gb: d.size_gb,
            })
            .collect(),
        usage: s.usage.clone(),
        approval: match s.approval {
            Approval::Automatic => wire::Approval::Automatic,
            Approval::BySupplier => wire::Approval::BySupplier,
        },
        site: s.site.clone(),
        cards: s
            .cards
            .iter()
            .map(|c| wire::CardRef {
                node: c.node.clone(),
                index: c.index,
            })
            .collect(),
    }
}

fn card_view(market: &Market, id: CardId) -> wire::CardView {
    let spec = market.catalog().card_spec(id).cloned().unwrap_or(CardSpec {
        node: String::new(),
        index: 0,
    });
    let state = match market.catalog().card_state(id) {
        Some(CardState::Idle) => wire::CardState::Idle,
        Some(CardState::Reserved(_)) => wire::CardState::Reserved,
        Some(CardState::Busy(_)) => wire::CardState::Busy,
        Some(CardState::Offline { .. }) | None => wire::CardState::Offline,
    };
    wire::CardView {
        id: id.0,
        node: spec.node,
        index: spec.index,
        state,
    }
}

/// Usernames by market account, for views: each platform user's linked account (one look-up
/// per user; users without an account yet have nothing in the market to name).
async fn names(state: &Control) -> ApiResult<HashMap<AccountId, String>> {
    let mut names = HashMap::new();
    for u in state.store.list_users(None).await? {
        if let Some(id) = state
            .store
            .find_market_account("username", &u.username.to_lowercase())
            .await?
        {
            names.insert(id, u.username);
        }
    }
    Ok(names)
}

fn name_of(names: &HashMap<AccountId, String>, a: AccountId) -> String {
    names
        .get(&a)
        .cloned()
        .unwrap_or_else(|| format!("account-{}", a.0))
}

fn listing_view(
    market: &Market,
    names: &HashMap<AccountId, String>,
    cpcid: CpcId,
) -> Option<wire::ListingView> {
    let l = market.catalog().listing(cpcid)?;
    let (status, reason) = match l.status() {
        ListingStatus::Listed => (wire::ListingStatus::Listed, None),
        ListingStatus::Delisted { reason, .. } => {
            (wire::ListingStatus::Delisted, Some(reason.clone()))
        }
    };
    Some(wire::ListingView {
        cpcid: cpcid.to_string(),
        supplier: name_of(names, l.supplier()),
        spec: spec_out(l.spec()),
        status,
        delisted_reason: reason,
        price_version: l.price_version(),
        idle_cards: l.idle_cards(),
        reliability: l.reliability(),
        published_at: time(l.published_at()),
        cards: l.card_ids().map(|c| card_view(market, c)).collect(),
    })
}

fn lease_view(
    market: &Market,
    names: &HashMap<AccountId, String>,
    l: &Lease,
    access: &AccessMap,
) -> wire::LeaseView {
    let mine: Vec<&NodeAccess> = access.values().filter(|a| a.lease == l.id.0).collect();
    let (state, ended_at, end_reason) = match &l.state {
        LeaseState::AwaitingAccess { .. } => (wire::LeaseState::AwaitingAccess, None, None),
        LeaseState::Locked => (wire::LeaseState::Locked, None, None),
        LeaseState::Active { .. } => (wire::LeaseState::Active, None, None),
        LeaseState::Ended { at, reason } => (
            wire::LeaseState::Ended,
            Some(time(*at)),
            Some(match reason {
                EndReason::Released => wire::EndReason::Released,
                EndReason::Expired => wire::EndReason::Expired,
                EndReason::BudgetExhausted => wire::EndReason::BudgetExhausted,
                EndReason::FundsDepleted => wire::EndReason::FundsDepleted,
            }),
        ),
    };
    let access = match (l.class, &l.state) {
        (_, LeaseState::Ended { .. }) if mine.is_empty() => "ended".to_string(),
        (_, LeaseState::Ended { .. }) => mine
            .iter()
            .map(|a| match (&a.revoked, &a.revoke_error) {
                (Some(r), _) => format!(
                    "ended: account {} on node {} locked, {} process(es) ended",
                    r.username.as_deref().unwrap_or("(none created)"),
                    a.node,
                    r.processes_killed
                ),
                (None, Some(e)) => format!("ended; revoking on node {} failed: {e}", a.node),
                (None, None) => format!(
                    "ended; waiting for node {}'s agent to lock the account",
                    a.node
                ),
            })
            .collect::<Vec<_>>()
            .join("; "),
        (ClusterClass::A, LeaseState::Active { .. }) if mine.is_empty() => {
            "pending: no SSH account was asked of the node's agent (no public key, or the node is unknown)".to_string()
        }
        (ClusterClass::A, LeaseState::Active { .. }) => mine
            .iter()
            .map(|a| match (&a.access, &a.error) {
                (Some(x), _) => format!(
                    "ssh -p {} {}@{} (GPUs {:?}; GPU limit {}, CPU {}, memory {})",
                    x.port,
                    x.username,
                    x.host,
                    x.gpus,
                    x.isolation.gpus.as_str(),
                    x.isolation.cpu.as_str(),
                    x.isolation.memory.as_str()
                ),
                (None, Some(e)) => format!("failed on node {}: {e}", a.node),
                (None, None) => format!(
                    "pending: waiting for node {}'s agent to create the SSH account",
                    a.node
                ),
            })
            .collect::<Vec<_>>()
            .join("; "),
        (ClusterClass::A, LeaseState::Locked) => {
            "locked after wrong authorization codes: ask the supplier for a new one".to_string()
        }
        (ClusterClass::A, _) => {
            "waiting for the supplier's authorization code (cpn lease code)".to_string()
        }
        (ClusterClass::B, _) => format!(
            "capacity held in the federation's ledger: {} GPU(s) of site {}",
            l.cards.len(),
            market
                .catalog()
                .listing(l.listing)
                .map(|x| x.spec().site.clone())
                .unwrap_or_default()
        ),
    };
    wire::LeaseView {
        id: l.id.0,
        listing: l.listing.to_string(),
        class: class_out(l.class),
        user: name_of(names, l.user),
        tenant: l.tenant.0.clone(),
        supplier: name_of(names, l.supplier),
        cards: l.cards.iter().map(|c| card_view(market, *c)).collect(),
        mode: mode_out(l.quote.mode),
        unit_price_minor: l.quote.unit_price.minor(),
        price_version: l.quote.version,
        started_at: time(l.started_at),
        ends_at: l.ends_at.map(time),
        state,
        ended_at,
        end_reason,
        charged_minor: l.charged().minor(),
        access,
        ssh: if matches!(l.state, LeaseState::Active { .. }) {
            mine.iter().filter_map(|a| a.access.clone()).collect()
        } else {
            Vec::new()
        },
        evaluation: l.evaluation().map(eval::view),
    }
}

fn order_view(o: &cpn_market::Order) -> wire::OrderView {
    let (state, reason, lease) = match &o.state {
        OrderState::AwaitingApproval => (wire::OrderState::AwaitingApproval, None, None),
        OrderState::Leased(l) => (wire::OrderState::Leased, None, Some(l.0)),
        OrderState::Rejected { reason } => (wire::OrderState::Rejected, Some(reason.clone()), None),
        OrderState::Cancelled => (wire::OrderState::Cancelled, None, None),
        OrderState::Lapsed => (wire::OrderState::Lapsed, None, None),
    };
    wire::OrderView {
        id: o.id.0,
        listing: o.listing.to_string(),
        state,
        reason,
        lease,
        placed_at: time(o.placed_at),
    }
}

// ---------------------------------------------------------------- errors

fn catalog_error(e: CatalogError) -> ApiError {
    let m = e.to_string();
    match e {
        CatalogError::Invalid(inv) => {
            let field = inv.0.first().map(|f| f.path.clone()).unwrap_or_default();
            let fixes: Vec<String> = inv
                .0
                .iter()
                .map(|f| format!("{}: {}", f.path, f.fix))
                .collect();
            ApiError::field(field, fixes.join("; "))
        }
        CatalogError::NotFound(_) => ApiError::new(Code::NotFound, m),
        CatalogError::NotYours(_) => ApiError::forbidden(m),
        CatalogError::Duplicate(_) | CatalogError::CardListedTwice { .. } => {
            ApiError::new(Code::AlreadyExists, m)
        }
        CatalogError::CardsChanged => ApiError::field("cards", m),
        CatalogError::AlreadyInStatus(..) => ApiError::new(Code::InvalidState, m),
        CatalogError::BadReliability(_) => ApiError::field("reliability", m),
        CatalogError::ModeNotOffered { .. } => ApiError::field("mode", m),
    }
}

fn order_error(e: OrderError) -> ApiError {
    let m = e.to_string();
    match e {
        OrderError::Catalog(c) => catalog_error(c),
        OrderError::Allocation(a) => match a {
            AllocationError::NotFound(_) => ApiError::new(Code::NotFound, m),
            AllocationError::NotInListing(..) | AllocationError::BadChoice => {
                ApiError::field("cards", m)
            }
            AllocationError::Delisted(_)
            | AllocationError::NotEnoughIdle { .. }
            | AllocationError::CardNotIdle(_) => ApiError::new(Code::InvalidState, m),
        },
        // Budget and funds: new leases are refused with what the tenant can do about it.
        OrderError::Refused(_) => ApiError::new(Code::InvalidState, m),
        OrderError::HourlyHasNoTerm | OrderError::BadTerm { .. } => ApiError::field("periods", m),
        OrderError::UnknownOrder(id) | OrderError::NotYourOrder(id) => {
            ApiError::not_found("order", &id.0.to_string())
        }
        OrderError::NotYourListing(_) => ApiError::forbidden(m),
        OrderError::Lapsed(_) | OrderError::NotAwaitingApproval(_) => {
            ApiError::new(Code::InvalidState, m)
        }
        OrderError::ReasonRequired => ApiError::field("reason", m),
    }
}

fn lease_error(e: LeaseError) -> ApiError {
    let m = e.to_string();
    match e {
        // Another user's lease is reported exactly like a missing one.
        LeaseError::Unknown(id) | LeaseError::NotYours(id) => {
            ApiError::not_found("lease", &id.0.to_string())
        }
        LeaseError::Access(cpn_market::lease::AccessError::NotYours(id)) => {
            ApiError::not_found("lease", &id.0.to_string())
        }
        LeaseError::Access(cpn_market::lease::AccessError::WrongCode { .. }) => {
            ApiError::field("code", m)
        }
        _ => ApiError::new(Code::InvalidState, m),
    }
}

fn parse_cpcid(s: &str) -> ApiResult<CpcId> {
    s.parse::<CpcId>()
        .map_err(|e| ApiError::new(Code::NotFound, e.to_string()))
}

fn supplier_only(who: &Caller) -> ApiResult<()> {
    if matches!(who.role, Role::Supplier | Role::Operator) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "only suppliers publish and manage clusters",
        ))
    }
}

fn operator_only(who: &Caller, what: &str) -> ApiResult<()> {
    if who.is_operator() {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!("only operators {what}")))
    }
}

/// The market account the caller acts as: its own (see the module documentation).
async fn me(state: &Control, who: &Caller) -> ApiResult<AccountId> {
    Ok(crate::market_accounts::account_of(state, who).await?.id())
}

/// The caller's market account, for what commits money or capacity (orders, listings):
/// only an active account may (`Account::can_transact`), so one an operator disabled, or
/// an organization still under review, is refused here and not by a failed payment later.
async fn transacting(state: &Control, who: &Caller) -> ApiResult<AccountId> {
    let account = crate::market_accounts::account_of(state, who).await?;
    if !account.can_transact() {
        return Err(ApiError::new(
            Code::InvalidState,
            format!(
                "marketplace account {} is {}; only an active account may order or publish",
                account.username(),
                account.state().name()
            ),
        ));
    }
    Ok(account.id())
}

// ---------------------------------------------------------------- notifications

fn lease_started(market: &Market, names: &HashMap<AccountId, String>, id: LeaseId) -> Announcement {
    lease_event(market, names, id, "started", None)
}

fn lease_ended(
    market: &Market,
    names: &HashMap<AccountId, String>,
    id: LeaseId,
    reason: EndReason,
) -> Announcement {
    let why = match reason {
        EndReason::Released => "released by its user",
        EndReason::Expired => "its prepaid term ran out",
        EndReason::BudgetExhausted => "the tenant's monthly budget is spent",
        EndReason::FundsDepleted => "the tenant's funds and credits are used up",
    };
    let mut a = lease_event(market, names, id, "ended", Some(why));
    // The evaluation is the platform's feedback to both (SH-CL-18).
    if let Some(e) = market.lease(id).and_then(|l| l.evaluation()) {
        a.body.push_str(&eval::feedback(e));
        a.payload["evaluation"] = serde_json::to_value(eval::view(e)).unwrap_or_default();
    }
    a
}

/// A lease's start or end, for its user and its supplier.
fn lease_event(
    market: &Market,
    names: &HashMap<AccountId, String>,
    id: LeaseId,
    what: &str,
    why: Option<&str>,
) -> Announcement {
    let (user, supplier, listing, tenant) = match market.lease(id) {
        Some(l) => (
            name_of(names, l.user),
            name_of(names, l.supplier),
            l.listing.to_string(),
            l.tenant.0.clone(),
        ),
        None => Default::default(),
    };
    let mut body = format!(
        "lease {} of {listing} for {user} (tenant {tenant}) {what}",
        id.0
    );
    if let Some(why) = why {
        body.push_str(&format!(": {why}"));
    }
    Announcement {
        audience: Audience::Users(vec![user.clone(), supplier.clone()]),
        kind: EventKind::Lease,
        subject: format!("[cpn market] lease {} {what}", id.0),
        body,
        payload: serde_json::json!({"lease": id.0, "event": what, "reason": why, "listing": listing, "user": user, "supplier": supplier, "tenant": tenant}),
        key: format!("lease-{}:{what}", id.0),
    }
}

/// The core's budget alarm and exhaustion, for everyone subscribed in the tenant.
fn budget_event(e: &BudgetEvent) -> Announcement {
    let (what, tenant, month, spent, limit) = match e {
        BudgetEvent::ThresholdReached {
            tenant,
            month,
            spent,
            limit,
        } => ("threshold", tenant, month, spent, limit),
        BudgetEvent::Exhausted {
            tenant,
            month,
            spent,
            limit,
        } => ("exhausted", tenant, month, spent, limit),
    };
    let headline = if what == "threshold" {
        format!("budget alarm: tenant {tenant} spent {spent} of {limit} for {month}")
    } else {
        format!(
            "budget exhausted: tenant {tenant} spent {spent} of {limit} for {month}; running hourly leases end"
        )
    };
    Announcement {
        audience: Audience::Tenant(tenant.0.clone()),
        kind: EventKind::Billing,
        subject: format!("[cpn market] {headline}"),
        body: format!("{headline}\n\nAn operator can raise the budget: cpn billing budget."),
        payload: serde_json::json!({"event": format!("budget_{what}"), "tenant": tenant.0, "month": month.to_string(), "spent_minor": spent.minor(), "limit_minor": limit.minor()}),
        key: format!("budget-{}-{month}:{what}", tenant.0),
    }
}

/// What a metering run or a release has to tell: the leases it ended and budget events.
fn meter_announcements(
    market: &Market,
    names: &HashMap<AccountId, String>,
    run: &cpn_market::market::MeterRun,
) -> Vec<Announcement> {
    run.ended
        .iter()
        .map(|(id, reason)| lease_ended(market, names, *id, *reason))
        .chain(run.events.iter().map(budget_event))
        .collect()
}

/// [`meter_announcements`] of a metering run, reading the account names only when there is
/// something to tell (the metering loop runs every few seconds).
async fn run_announcements(
    state: &Control,
    market: &Market,
    run: &cpn_market::market::MeterRun,
) -> ApiResult<Vec<Announcement>> {
    if run.ended.is_empty() && run.events.is_empty() {
        return Ok(Vec::new());
    }
    let names = names(state).await?;
    Ok(meter_announcements(market, &names, run))
}

/// A started lease and the budget events its first charge raised.
fn start_announcements(
    market: &Market,
    names: &HashMap<AccountId, String>,
    lease: LeaseId,
    events: &[BudgetEvent],
) -> Vec<Announcement> {
    let mut list = vec![lease_started(market, names, lease)];
    list.extend(events.iter().map(budget_event));
    list
}

// ---------------------------------------------------------------- listings

/// Publishes a listing of a site the supplier owns (SH-CL-01, -08). Without cards, every
/// GPU the site's ready nodes report now is listed.
pub async fn publish(
    state: &Control,
    who: &Caller,
    spec: wire::ListingSpec,
) -> ApiResult<wire::ListingView> {
    supplier_only(who)?;
    let me = transacting(state, who).await?;
    let mut spec = spec_in(spec);
    let site = state
        .store
        .find_object_by_name(Kind::Site, &spec.site)
        .await?
        .ok_or_else(|| ApiError::field("site", format!("no site named {:?}", spec.site)))?;
    if !who.is_operator() && site.owner != who.username {
        return Err(ApiError::forbidden(format!(
            "site {:?} belongs to {}; publish only sites you own",
            spec.site, site.owner
        )));
    }
    if spec.cards.is_empty() {
        for n in state.store.list_nodes().await? {
            if n.site == spec.site && n.ready {
                for g in crate::runtime::nodes::inventory_of(&n).gpus {
                    spec.cards.push(CardSpec {
                        node: n.name.clone(),
                        index: g.index,
                    });
                }
            }
        }
        if spec.cards.is_empty() {
            return Err(ApiError::field(
                "cards",
                format!(
                    "site {:?} has no ready node reporting a GPU; list the cards (node and index) or join an agent first",
                    spec.site
                ),
            ));
        }
    }
    // Checked before a CPcId is drawn, so a refused listing does not use up a number.
    spec.validate()
        .map_err(|e| catalog_error(CatalogError::Invalid(e)))?;
    let sequence = state.store.next_market_sequence("listing").await?;
    let names = names(state).await?;
    let mut inner = state.market.inner.lock().await;
    let market = ensure(state, &mut inner).await?;
    let result = market
        .catalog_mut()
        .publish(me, spec, sequence, now())
        .map_err(catalog_error);
    if result.is_ok() {
        sync_nodes(state, market).await?;
    }
    persist(state, &mut inner, Vec::new(), Vec::new()).await?;
    let cpcid = result?;
    let market = inner.market.as_ref().expect("persisted");
    listing_view(market, &names, cpcid).ok_or_else(|| internal("published listing vanished"))
}

/// Edits a listing's information and prices (SH-CL-09, -03); cards and site stay. Running
/// leases keep the price they were made at.
pub async fn edit(
    state: &Control,
    who: &Caller,
    cpcid: &str,
    spec: wire::ListingSpec,
) -> ApiResult<wire::ListingView> {
    supplier_only(who)?;
    let me = me(state, who).await?;
    let cpcid = parse_cpcid(cpcid)?;
    let names = names(state).await?;
    let mut inner = state.market.inner.lock().await;
    let market = ensure(state, &mut inner).await?;
    let mut spec = spec_in(spec);
    let current = market
        .catalog()
        .listing(cpcid)
        .ok_or(CatalogError::NotFound(cpcid))
        .map_err(catalog_error)?;
    if spec.cards.is_empty() {
        spec.cards = current.spec().cards.clone();
    }
    let result = market
        .catalog_mut()
        .edit(cpcid, me, spec)
        .map_err(catalog_error);
    persist(state, &mut inner, Vec::new(), Vec::new()).await?;
    result?;
    let market = inner.market.as_ref().expect("persisted");
    listing_view(market, &names, cpcid).ok_or_else(|| internal("edited listing vanished"))
}

/// Delists (no new orders, hidden from search; running leases go on) or relists.
pub async fn set_listed(
    state: &Control,
    who: &Caller,
    cpcid: &str,
    listed: bool,
    reason: &str,
) -> ApiResult<wire::ListingView> {
    supplier_only(who)?;
    let me = me(state, who).await?;
    let cpcid = parse_cpcid(cpcid)?;
    let names = names(state).await?;
    let mut inner = state.market.inner.lock().await;
    let market = ensure(state, &mut inner).await?;
    let result = if listed {
        market.catalog_mut().relist(cpcid, me)
    } else {
        market.catalog_mut().delist(cpcid, me, reason, now())
    }
    .map_err(catalog_error);
    persist(state, &mut inner, Vec::new(), Vec::new()).await?;
    result?;
    let market = inner.market.as_ref().expect("persisted");
    listing_view(market, &names, cpcid).ok_or_else(|| internal("listing vanished"))
}

/// One listing with its per-card state. Every signed-in user may read listings (the
/// marketplace is public inside the platform).
pub async fn get_listing(state: &Control, cpcid: &str) -> ApiResult<wire::ListingView> {
    let cpcid = parse_cpcid(cpcid)?;
    let names = names(state).await?;
    let mut inner = state.market.inner.lock().await;
    let market = ensure(state, &mut inner).await?;
    listing_view(market, &names, cpcid)
        .ok_or_else(|| ApiError::not_found("listing", &cpcid.to_string()))
}

/// The caller's own listings (suppliers), or all (operators), whatever their state.
pub async fn my_listings(state: &Control, who: &Caller) -> ApiResult<Vec<wire::ListingView>> {
    supplier_only(who)?;
    let names = names(state).await?;
    let mut inner = state.market.inner.lock().await;
    let market = ensure(state, &mut inner).await?;
    let mine = me(state, who).await?;
    let ids: Vec<CpcId> = market
        .catalog()
        .listings()
        .filter(|l| who.is_operator() || l.supplier() == mine)
        .map(|l| l.cpcid())
        .collect();
    Ok(ids
        .into_iter()
        .filter_map(|c| listing_view(market, &names, c))
        .collect())
}

/// The search filters, as the edge parsed them from the query string.
#[derive(Debug, Default, Clone)]
pub struct SearchParams {
    pub class: Option<wire::ClusterClass>,
    pub resource_type: Option<wire::ResourceType>,
    pub model: Option<String>,
    pub region: Option<String>,
    pub min_cards: Option<u32>,
    pub min_card_memory_gib: Option<u32>,
    pub min_memory_gib: Option<u32>,
    pub min_vcpus: Option<u32>,
    pub min_storage_gb: Option<u64>,
    pub mode: Option<wire::BillingMode>,
    pub max_unit_price_minor: Option<i64>,
    pub min_reliability: Option<u16>,
    /// `price`, `idle_cards`, `card_memory`, `memory`, `vcpus`, `storage`, `reliability`,
    /// `cpcid`; a leading `-` sorts descending.
    pub sort: Option<String>,
    pub offset: Option<usize>,
    pub limit: Option<usize>,
}

/// Idle capacity only (SH-CL-12, -13, -15), filtered, sorted and paged.
pub async fn search(state: &Control, p: SearchParams) -> ApiResult<wire::ListingHits> {
    let (descending, key) = match p.sort.as_deref() {
        Some(s) => match s.strip_prefix('-') {
            Some(k) => (true, k),
            None => (false, s),
        },
        None => (false, "cpcid"),
    };
    let sort = match key {
        "price" => SortKey::UnitPrice,
        "idle_cards" => SortKey::IdleCards,
        "card_memory" => SortKey::CardMemory,
        "memory" => SortKey::Memory,
        "vcpus" => SortKey::Vcpus,
        "storage" => SortKey::Storage,
        "reliability" => SortKey::Reliability,
        "cpcid" => SortKey::CpcId,
        other => {
            return Err(ApiError::field(
                "sort",
                format!(
                    "cannot sort by {other:?}: use price, idle_cards, card_memory, memory, vcpus, storage, reliability or cpcid, with - for descending"
                ),
            ));
        }
    };
    let q = Query {
        class: p.class.map(class_in),
        resource_type: p.resource_type.map(rtype_in),
        model: p.model,
        region: p.region,
        min_idle_cards: p.min_cards.unwrap_or(1),
        min_card_memory_gib: p.min_card_memory_gib.unwrap_or(0),
        min_memory_gib: p.min_memory_gib.unwrap_or(0),
        min_vcpus: p.min_vcpus.unwrap_or(0),
        min_storage_gb: p.min_storage_gb.unwrap_or(0),
        billing_mode: p.mode.map(mode_in),
        max_unit_price: p.max_unit_price_minor.map(Money::from_minor),
        min_reliability: p.min_reliability,
        sort,
        descending,
        offset: p.offset.unwrap_or(0),
        limit: p.limit.unwrap_or(20),
    };
    let mut inner = state.market.inner.lock().await;
    let market = ensure(state, &mut inner).await?;
    let hits = market
        .catalog()
        .search(&q)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let items = hits
        .items
        .iter()
        .filter_map(|h| {
            let l = market.catalog().listing(h.cpcid)?;
            let s = l.spec();
            Some(wire::ListingHit {
                cpcid: h.cpcid.to_string(),
                class: class_out(s.class),
                resource_type: rtype_out(s.resource_type),
                model: s.model.clone(),
                region: s.region.clone(),
                idle_cards: h.idle_cards,
                card_memory_gib: s.card_memory_gib,
                prices: prices_out(s.prices),
                reliability: l.reliability(),
            })
        })
        .collect();
    Ok(wire::ListingHits {
        total: hits.total as u64,
        offset: q.offset as u64,
        items,
    })
}

// ---------------------------------------------------------------- orders and leases

/// Holds a class B lease's share in the capacity ledger, one `Lease` hold per node, so the
/// binder and `POST /schedule` treat it as taken by everyone but the lease's own tasks
/// (`TaskSubmit::lease`), which the binder places inside it. The share of a node is its
/// leased cards and the listing's vCPUs and host memory (at most what the node reports) in
/// proportion to the cards leased of the listing's.
async fn hold_class_b(state: &Control, market: &Market, lease: &Lease) -> ApiResult<()> {
    let Some(listing) = market.catalog().listing(lease.listing) else {
        return Ok(());
    };
    let site = listing.spec().site.clone();
    let listed = listing.card_ids().count().max(1) as u64;
    let (vcpus, memory_gib) = (
        u64::from(listing.spec().vcpus),
        u64::from(listing.spec().memory_gib),
    );
    let mut per_node: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for c in &lease.cards {
        if let Some(spec) = market.catalog().card_spec(*c) {
            per_node
                .entry(spec.node.clone())
                .or_default()
                .push(spec.index);
        }
    }
    let nodes = state.store.list_nodes().await?;
    let rt = &state.runtime;
    let _capacity = rt.capacity_lock.lock().await;
    for (node, gpus) in per_node {
        let Some(rec) = nodes.iter().find(|n| n.site == site && n.name == node) else {
            tracing::warn!(lease = lease.id.0, node = %node, "class B lease names an unknown node; it holds nothing there");
            continue;
        };
        let cards = gpus.len() as u64;
        // What the listing says, at most what the node reports, shared by its cards.
        let reported = |key: &str| rec.inventory.get(key).and_then(|v| v.as_u64());
        let cpu_milli = (vcpus * 1000)
            .min(reported("cpu_cores").map_or(u64::MAX, |c| c.saturating_mul(1000)))
            * cards
            / listed;
        let memory_mib =
            (memory_gib * 1024).min(reported("memory_mib").unwrap_or(u64::MAX)) * cards / listed;
        let hold = Hold {
            target: rec.id.clone(),
            tenant: lease.tenant.0.clone(),
            demand: cpn_sched::task::Demand {
                cpu_milli,
                memory_mib,
                gpus: u32::try_from(gpus.len()).unwrap_or(u32::MAX),
                gpu_milli: 1000,
                storage_gib: 0,
            },
            gpus: gpus.iter().map(|&g| (g, 1000)).collect(),
            expires_at: None,
            lease: Some(lease.id.0),
        };
        rt.ledger()
            .hold(HoldKind::Lease, &lease_hold_id(lease.id.0, &node), hold);
    }
    rt.capacity_changed();
    Ok(())
}

async fn release_class_b(state: &Control, market: &Market, id: LeaseId) {
    let Some(lease) = market.lease(id) else {
        return;
    };
    if lease.class != ClusterClass::B {
        return;
    }
    let nodes: BTreeSet<String> = lease
        .cards
        .iter()
        .filter_map(|c| market.catalog().card_spec(*c).map(|s| s.node.clone()))
        .collect();
    let rt = &state.runtime;
    {
        let _capacity = rt.capacity_lock.lock().await;
        for node in nodes {
            rt.ledger()
                .release(HoldKind::Lease, &lease_hold_id(id.0, &node));
        }
        rt.capacity_changed();
    }
    // The lease's share is gone: so are its tasks (cancelled, or failed while waiting).
    crate::runtime::tasks::end_in_lease(state, id.0, &lease.tenant.0).await;
}

/// An attempt of a task inside class B lease `lease` ended: its GPU-, CPU- and
/// memory-seconds are recorded as the lease's task usage (`Market::record_task_usage`), for
/// the usage view and the evaluation. Their amount is zero: the lease is billed by its time,
/// which includes its tasks. Kept inside the lease's time and split at month ends, as the
/// core requires; a failure is logged (the record informs, it bills nothing).
pub async fn record_lease_task(
    store: &dyn cpn_store::Store,
    service: &MarketService,
    hasher: &cpn_market::KeyedHasher,
    lease: u64,
    demand: cpn_sched::task::Demand,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) {
    use cpn_market::billing::UsageKind;
    let mut inner = service.inner.lock().await;
    let Ok(market) = ensure_from(store, hasher, &mut inner).await else {
        return;
    };
    let Some(l) = market.lease(LeaseId(lease)) else {
        return;
    };
    let mut until = Timestamp::from_unix(end.timestamp());
    if let LeaseState::Ended { at, .. } = l.state {
        until = until.min(at);
    }
    let mut from = Timestamp::from_unix(start.timestamp()).max(l.started_at);
    let mut records = Vec::new();
    while from < until {
        let to = until.min(from.month().end());
        let secs = to.seconds_since(from);
        for (kind, quantity) in [
            (
                UsageKind::TaskGpuSeconds,
                demand.gpu_milli_total() * secs / 1000,
            ),
            (UsageKind::TaskCpuSeconds, demand.cpu_milli * secs / 1000),
            (UsageKind::TaskMemoryMibSeconds, demand.memory_mib * secs),
        ] {
            if quantity == 0 {
                continue;
            }
            match market.record_task_usage(LeaseId(lease), kind, quantity, from, to) {
                Ok(r) => records.push(r),
                Err(e) => {
                    tracing::warn!(lease, error = %e, "a lease task's usage was not recorded")
                }
            }
        }
        from = to;
    }
    if let Err(e) = persist_to(store, &mut inner, records, Vec::new()).await {
        tracing::warn!(lease, error = %e, "writing a lease task's usage failed");
    }
}

/// Whether `tenant` may submit a task now (`TaskSubmit`): not once its monthly budget is
/// spent (issue #14: "no new leases or tasks when exhausted"; funds are not asked, as tasks
/// outside leases are not billed by the marketplace), and, when the task names lease `id`,
/// the lease exists and is `tenant`'s (another tenant's lease is reported missing, as if
/// absent), is class B, and has not ended.
pub async fn admit_task(
    store: &dyn cpn_store::Store,
    service: &MarketService,
    hasher: &cpn_market::KeyedHasher,
    tenant: &str,
    lease: Option<u64>,
) -> ApiResult<()> {
    let mut inner = service.inner.lock().await;
    let market = ensure_from(store, hasher, &mut inner).await?;
    let tenant_id = TenantId(tenant.to_string());
    if let Err(refusal @ Refusal::BudgetExhausted { .. }) =
        market
            .budgets()
            .admit(market.ledger(), &tenant_id, Money::ZERO, now())
    {
        return Err(ApiError::new(
            Code::InvalidState,
            format!(
                "{refusal}; new tasks are refused until next month or until an operator raises the budget (cpn billing budget)"
            ),
        ));
    }
    let Some(id) = lease else {
        return Ok(());
    };
    let lease = market
        .lease(LeaseId(id))
        .filter(|l| l.tenant.0 == tenant)
        .ok_or_else(|| ApiError::not_found("lease", &id.to_string()))?;
    if lease.class != ClusterClass::B {
        return Err(ApiError::field(
            "lease",
            format!(
                "lease {id} is class A (its cards are reached over SSH); tasks run only inside class B leases"
            ),
        ));
    }
    if !lease.is_running() {
        return Err(ApiError::new(
            Code::InvalidState,
            format!("lease {id} has ended; tasks can no longer run in it"),
        ));
    }
    Ok(())
}

/// A user orders cards of a listing with a billing mode (SH-CL-16). Automatic approval
/// starts the lease at once: class B holds capacity now; class A waits for the code.
pub async fn place_order(
    state: &Control,
    who: &Caller,
    req: wire::OrderCreate,
) -> ApiResult<wire::OrderPlaced> {
    let me = transacting(state, who).await?;
    let listing = parse_cpcid(&req.listing)?;
    let cards = match (req.cards, req.card_ids) {
        (Some(_), Some(_)) => {
            return Err(ApiError::field(
                "cards",
                "give either a number of cards or card_ids, not both",
            ));
        }
        (_, Some(ids)) => CardChoice::Cards(ids.into_iter().map(CardId).collect()),
        (n, None) => CardChoice::Count(n.unwrap_or(1)),
    };
    let order = OrderRequest {
        user: me,
        tenant: TenantId(who.tenant.clone()),
        listing,
        cards,
        mode: mode_in(req.mode),
        periods: req.periods,
    };
    let names = names(state).await?;
    let mut inner = state.market.inner.lock().await;
    let market = ensure(state, &mut inner).await?;
    sync_nodes(state, market).await?;
    let result = market.place_order(order, entropy(), now());
    let (usage, announcements) = match &result {
        Ok(OrderPlaced::Leased(s)) => (
            s.usage.clone(),
            start_announcements(market, &names, s.lease, &s.events),
        ),
        _ => (Vec::new(), Vec::new()),
    };
    persist(state, &mut inner, usage, announcements).await?;
    let placed = result.map_err(order_error)?;
    let (order_id, lease) = match &placed {
        OrderPlaced::AwaitingApproval(o) => (*o, None),
        OrderPlaced::Leased(s) => (s.lease.order(), Some(s.lease)),
    };
    if let OrderPlaced::Leased(s) = &placed
        && let Some(code) = &s.authorization_code
    {
        inner.codes.insert(s.lease, code.clone());
    }
    let market = inner.market.as_ref().expect("persisted");
    if let Some(id) = lease
        && let Some(l) = market.lease(id)
        && l.class == ClusterClass::B
    {
        hold_class_b(state, market, l).await?;
    }
    let order = market
        .order(order_id)
        .map(order_view)
        .ok_or_else(|| internal("placed order vanished"))?;
    Ok(wire::OrderPlaced {
        order,
        lease: lease
            .and_then(|id| market.lease(id))
            .map(|l| lease_view(market, &names, l, &state.market.access())),
    })
}

/// The supplier approves an order waiting for it; the lease starts.
pub async fn approve_order(state: &Control, who: &Caller, id: u64) -> ApiResult<wire::LeaseView> {
    supplier_only(who)?;
    let me = me(state, who).await?;
    let names = names(state).await?;
    let mut inner = state.market.inner.lock().await;
    let market = ensure(state, &mut inner).await?;
    let result = market.approve_order(me, OrderId(id), entropy(), now());
    let (usage, announcements) = match &result {
        Ok(s) => (
            s.usage.clone(),
            start_announcements(market, &names, s.lease, &s.events),
        ),
        Err(_) => (Vec::new(), Vec::new()),
    };
    persist(state, &mut inner, usage, announcements).await?;
    let started = result.map_err(order_error)?;
    if let Some(code) = &started.authorization_code {
        inner.codes.insert(started.lease, code.clone());
    }
    let market = inner.market.as_ref().expect("persisted");
    let lease = market
        .lease(started.lease)
        .ok_or_else(|| internal("started lease vanished"))?;
    if lease.class == ClusterClass::B {
        hold_class_b(state, market, lease).await?;
    }
    Ok(lease_view(market, &names, lease, &state.market.access()))
}

/// The supplier rejects an order waiting for approval, with a reason; its cards are
/// freed. Or the user who placed it withdraws it (`reason` is then not needed).
pub async fn close_order(
    state: &Control,
    who: &Caller,
    id: u64,
    reject_reason: Option<&str>,
) -> ApiResult<wire::OrderView> {
    let me = me(state, who).await?;
    let mut inner = state.market.inner.lock().await;
    let market = ensure(state, &mut inner).await?;
    let result = match reject_reason {
        Some(reason) => {
            supplier_only(who)?;
            market.reject_order(me, OrderId(id), reason)
        }
        None => market.cancel_order(me, OrderId(id)),
    };
    persist(state, &mut inner, Vec::new(), Vec::new()).await?;
    result.map_err(order_error)?;
    let market = inner.market.as_ref().expect("persisted");
    market
        .order(OrderId(id))
        .map(order_view)
        .ok_or_else(|| internal("order vanished"))
}

/// Orders the caller placed (users), received (suppliers), or all (operators).
pub async fn list_orders(state: &Control, who: &Caller) -> ApiResult<Vec<wire::OrderView>> {
    let mine = me(state, who).await?;
    let mut inner = state.market.inner.lock().await;
    let market = ensure(state, &mut inner).await?;
    Ok(market
        .orders()
        .filter(|o| who.is_operator() || o.user == mine || o.supplier == mine)
        .map(order_view)
        .collect())
}

fn visible(who: &Caller, mine: AccountId, l: &Lease) -> bool {
    who.is_operator() || l.user == mine || l.supplier == mine
}

/// Leases the caller holds (users), supplies (suppliers), or all (operators).
pub async fn list_leases(state: &Control, who: &Caller) -> ApiResult<Vec<wire::LeaseView>> {
    let mine = me(state, who).await?;
    let names = names(state).await?;
    let mut inner = state.market.inner.lock().await;
    let market = ensure(state, &mut inner).await?;
    Ok(market
        .leases()
        .filter(|l| visible(who, mine, l))
        .map(|l| lease_view(market, &names, l, &state.market.access()))
        .collect())
}

/// One lease, if the caller may see it; others' leases are reported missing.
pub async fn get_lease(state: &Control, who: &Caller, id: u64) -> ApiResult<wire::LeaseView> {
    let mine = me(state, who).await?;
    let names = names(state).await?;
    let mut inner = state.market.inner.lock().await;
    let market = ensure(state, &mut inner).await?;
    market
        .lease(LeaseId(id))
        .filter(|l| visible(who, mine, l))
        .map(|l| lease_view(market, &names, l, &state.market.access()))
        .ok_or_else(|| ApiError::not_found("lease", &id.to_string()))
}

/// The supplier fetches a class A lease's authorization code: once (SH-CL-06). After a
/// restart, or once fetched, it is gone; `reissue` makes a new one.
pub async fn take_code(
    state: &Control,
    who: &Caller,
    id: u64,
    reissue: bool,
) -> ApiResult<wire::AuthorizationCode> {
    supplier_only(who)?;
    let me = me(state, who).await?;
    let mut inner = state.market.inner.lock().await;
    let market = ensure(state, &mut inner).await?;
    let lease = LeaseId(id);
    match market.lease(lease) {
        Some(l) if l.supplier == me || who.is_operator() => {}
        _ => return Err(ApiError::not_found("lease", &id.to_string())),
    }
    if reissue {
        let supplier = market.lease(lease).map(|l| l.supplier).unwrap_or(me);
        let result = market.reissue_authorization_code(supplier, lease, entropy());
        persist(state, &mut inner, Vec::new(), Vec::new()).await?;
        let code = result.map_err(lease_error)?;
        return Ok(wire::AuthorizationCode { lease: id, code });
    }
    let code = inner.codes.remove(&lease).ok_or_else(|| {
        ApiError::new(
            Code::InvalidState,
            format!("lease {id}'s code was shown already (or the server restarted); issue a new one with reissue"),
        )
    })?;
    Ok(wire::AuthorizationCode { lease: id, code })
}

/// The user enters the supplier's code (SH-CL-06): the cards turn busy.
pub async fn enter_code(
    state: &Control,
    who: &Caller,
    id: u64,
    entry: wire::CodeEntry,
) -> ApiResult<wire::LeaseView> {
    let me = me(state, who).await?;
    let names = names(state).await?;
    let mut inner = state.market.inner.lock().await;
    let market = ensure(state, &mut inner).await?;
    // The key is checked before the code, so a bad key costs no attempt.
    let class_a = market
        .lease(LeaseId(id))
        .is_some_and(|l| l.class == ClusterClass::A && l.user == me);
    let key = match (&entry.public_key, class_a) {
        (Some(k), _) => {
            cpn_api_types::ssh_key::public_key_fingerprint(k.trim())
                .map_err(|e| ApiError::field("public_key", e.to_string()))?;
            Some(k.trim().to_string())
        }
        (None, true) => {
            return Err(ApiError::field(
                "public_key",
                "give your SSH public key (one line, e.g. of ~/.ssh/id_ed25519.pub): the lease's account lets in only that key",
            ));
        }
        (None, false) => None,
    };
    let result = market.enter_authorization_code(me, LeaseId(id), &entry.code, now());
    persist(state, &mut inner, Vec::new(), Vec::new()).await?;
    result.map_err(lease_error)?;
    let market = inner.market.as_ref().expect("persisted");
    let lease = market
        .lease(LeaseId(id))
        .ok_or_else(|| internal("lease vanished"))?;
    if let Some(key) = key {
        grant_access(state, market, lease, &key).await?;
    }
    Ok(lease_view(market, &names, lease, &state.market.access()))
}

/// The user releases a lease: billing stops now, the cards are freed, a class B hold goes.
pub async fn release(state: &Control, who: &Caller, id: u64) -> ApiResult<wire::LeaseView> {
    let me = me(state, who).await?;
    let names = names(state).await?;
    let mut inner = state.market.inner.lock().await;
    let market = ensure(state, &mut inner).await?;
    // A last monitoring sample, so even a short lease is evaluated on a measurement.
    let nodes = state.store.list_nodes().await?;
    eval::observe(state, market, &nodes, Some((LeaseId(id), me)));
    let result = market.release(me, LeaseId(id), now());
    let (usage, announcements) = match &result {
        Ok(run) => (run.usage.clone(), meter_announcements(market, &names, run)),
        Err(_) => (Vec::new(), Vec::new()),
    };
    persist(state, &mut inner, usage, announcements).await?;
    let run = result.map_err(lease_error)?;
    let market = inner.market.as_ref().expect("persisted");
    leases_ended(state, market, &run.ended).await;
    let lease = market
        .lease(LeaseId(id))
        .ok_or_else(|| internal("lease vanished"))?;
    Ok(lease_view(market, &names, lease, &state.market.access()))
}

/// One metering run: card states follow the nodes, lease time is charged up to now,
/// expired and budget-exhausted leases end (their class B holds go).
pub async fn meter_once(state: &Control) -> ApiResult<()> {
    // Read before the lock: every market call and task submission waits on it, and a
    // federation's node list is long.
    let nodes = state.store.list_nodes().await?;
    let mut inner = state.market.inner.lock().await;
    let market = ensure(state, &mut inner).await?;
    apply_nodes(market, &nodes)?;
    eval::observe(state, market, &nodes, None);
    meter_to_now(state, &mut inner).await
}

/// Charges the running leases up to now and ends those whose term ran out or whose
/// tenant's budget or funds are spent, stored with what that announces; then what their
/// end does outside the market ([`leases_ended`]). The metering loop's run and a month's
/// close both meter through here, so a lease ended by either loses its hold, its tasks and
/// its access alike.
async fn meter_to_now(state: &Control, inner: &mut Inner) -> ApiResult<()> {
    let market = ensure(state, inner).await?;
    let run = market.meter(now());
    let announcements = match run_announcements(state, market, &run).await {
        Ok(a) => a,
        Err(e) => {
            // The run's changes are not written: restore rather than keep them.
            inner.market = None;
            return Err(e);
        }
    };
    persist(state, inner, run.usage.clone(), announcements).await?;
    let market = inner.market.as_ref().expect("persisted");
    leases_ended(state, market, &run.ended).await;
    Ok(())
}

/// What the end of leases does outside the market, once the end is stored: a class B
/// lease's capacity holds are released and its tasks end with it (`release_class_b`), a
/// class A lease's SSH access is revoked on its nodes (`revoke_access`). The one place for
/// it: every path that ends leases (metering, a month's close, a release) comes here with
/// the ended leases of its run.
async fn leases_ended(state: &Control, market: &Market, ended: &[(LeaseId, EndReason)]) {
    for &(id, reason) in ended {
        tracing::info!(lease = id.0, ?reason, "lease ended");
        release_class_b(state, market, id).await;
        revoke_access(state, id).await;
    }
}

/// The metering loop, supervised with the other background loops; stops on shutdown.
pub async fn run(state: Control) {
    let mut shutdown = state.runtime.shutdown.subscribe();
    loop {
        if let Err(e) = meter_once(&state).await {
            tracing::warn!(error = %e, "marketplace metering failed; retrying next round");
        }
        tokio::select! {
            _ = tokio::time::sleep(METER_INTERVAL) => {}
            _ = shutdown.wait_for(|&stop| stop) => return,
        }
    }
}

// ---------------------------------------------------------------- billing

fn tenant_allowed(who: &Caller, tenant: &str) -> ApiResult<()> {
    if who.is_operator() || who.tenant == tenant {
        Ok(())
    } else {
        // Another tenant's money is reported like a missing tenant.
        Err(ApiError::not_found("tenant", tenant))
    }
}

/// An operator tops up a tenant's prepaid funds.
pub async fn top_up(state: &Control, who: &Caller, req: wire::TopUp) -> ApiResult<wire::Balance> {
    operator_only(who, "top up funds")?;
    if req.amount_minor <= 0 {
        return Err(ApiError::field(
            "amount_minor",
            "a top-up is a positive amount in minor units (fen)",
        ));
    }
    if state.store.find_tenant(&req.tenant).await?.is_none() {
        return Err(ApiError::field(
            "tenant",
            format!("no tenant named {:?}", req.tenant),
        ));
    }
    let key = format!(
        "topup:{}",
        req.key
            .clone()
            .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string())
    );
    let memo = if req.memo.trim().is_empty() {
        format!("top-up by {}", who.username)
    } else {
        req.memo.trim().to_string()
    };
    let mut inner = state.market.inner.lock().await;
    let market = ensure(state, &mut inner).await?;
    let tenant = TenantId(req.tenant.clone());
    let result = market.ledger_mut().top_up(
        &tenant,
        Money::from_minor(req.amount_minor),
        &key,
        now(),
        &memo,
    );
    persist(state, &mut inner, Vec::new(), Vec::new()).await?;
    result.map_err(|e| ApiError::field("amount_minor", e.to_string()))?;
    Ok(balance_of(
        inner.market.as_ref().expect("persisted"),
        &tenant,
    ))
}

/// An operator sets a tenant's monthly budget.
pub async fn set_budget(
    state: &Control,
    who: &Caller,
    tenant: &str,
    req: wire::BudgetSet,
) -> ApiResult<wire::Balance> {
    operator_only(who, "set budgets")?;
    if state.store.find_tenant(tenant).await?.is_none() {
        return Err(ApiError::not_found("tenant", tenant));
    }
    let mut inner = state.market.inner.lock().await;
    let market = ensure(state, &mut inner).await?;
    let t = TenantId(tenant.to_string());
    let result = market.budgets_mut().set(
        t.clone(),
        Budget {
            monthly_limit: Money::from_minor(req.monthly_limit_minor),
            alarm_percent: req.alarm_percent,
        },
        now(),
    );
    persist(state, &mut inner, Vec::new(), Vec::new()).await?;
    result.map_err(|e| ApiError::field("monthly_limit_minor", e.to_string()))?;
    Ok(balance_of(inner.market.as_ref().expect("persisted"), &t))
}

fn balance_of(market: &Market, tenant: &TenantId) -> wire::Balance {
    let ledger = market.ledger();
    let limit = market
        .budgets()
        .rows()
        .into_iter()
        .find(|r| &r.tenant == tenant)
        .and_then(|r| r.budget.map(|b| b.monthly_limit.minor()));
    wire::Balance {
        tenant: tenant.0.clone(),
        available_minor: ledger.available(tenant).minor(),
        funds_minor: ledger
            .balance(&LedgerAccount::UserFunds(tenant.clone()))
            .minor(),
        credit_minor: ledger
            .balance(&LedgerAccount::UserCredit(tenant.clone()))
            .minor(),
        budget_limit_minor: limit,
        spent_this_month_minor: market.budgets().spent(tenant, now()).minor(),
    }
}

/// A tenant's balance: its own (users, suppliers), any (operators).
pub async fn balance(
    state: &Control,
    who: &Caller,
    tenant: Option<&str>,
) -> ApiResult<wire::Balance> {
    let tenant = tenant.unwrap_or(&who.tenant).to_string();
    tenant_allowed(who, &tenant)?;
    let mut inner = state.market.inner.lock().await;
    let market = ensure(state, &mut inner).await?;
    Ok(balance_of(market, &TenantId(tenant)))
}

fn parse_month(s: &str) -> ApiResult<Month> {
    let bad = || ApiError::field("month", format!("{s:?} is not a month: write YYYY-MM"));
    let (y, m) = s.trim().split_once('-').ok_or_else(bad)?;
    let (y, m) = (
        y.parse::<i32>().map_err(|_| bad())?,
        m.parse::<u32>().map_err(|_| bad())?,
    );
    Month::new(y, m).ok_or_else(bad)
}

/// The usage records of a month: the caller's tenant's (operators: all, or `tenant`).
pub async fn usage(
    state: &Control,
    who: &Caller,
    month: &str,
    tenant: Option<&str>,
) -> ApiResult<Vec<wire::UsageView>> {
    let month = parse_month(month)?;
    let tenant = match tenant {
        Some(t) => {
            tenant_allowed(who, t)?;
            Some(t.to_string())
        }
        None => (!who.is_operator()).then(|| who.tenant.clone()),
    };
    Ok(state
        .store
        .market_usage(month)
        .await?
        .into_iter()
        .filter(|r| tenant.as_ref().is_none_or(|t| &r.tenant.0 == t))
        .map(|r| wire::UsageView {
            lease: r.lease.0,
            tenant: r.tenant.0.clone(),
            listing: r.listing.to_string(),
            kind: r.kind.as_str().to_string(),
            quantity: r.quantity,
            start: time(r.start),
            end: time(r.end),
            amount_minor: r.amount.minor(),
        })
        .collect())
}

/// An operator closes a month: invoices per tenant, statements per supplier, settlements
/// in the ledger. The usage records come from the store, so the close covers exactly what
/// was durably metered.
pub async fn close_month(
    state: &Control,
    who: &Caller,
    month: &str,
) -> ApiResult<wire::MonthClosed> {
    operator_only(who, "close months")?;
    let m = parse_month(month)?;
    let mut inner = state.market.inner.lock().await;
    // Charge the running leases up to now first, so the month's records are complete up
    // to this moment; a lease this ends ends as it would in the metering loop.
    meter_to_now(state, &mut inner).await?;
    let records = state.store.market_usage(m).await?;
    let market = ensure(state, &mut inner).await?;
    let closed = market
        .close_month(m, &records, now())
        .map_err(|e| ApiError::new(Code::InvalidState, e.to_string()));
    let changes = market.take_changes();
    let closed = match closed {
        Ok(c) => c,
        Err(e) => {
            inner.market = None;
            return Err(e);
        }
    };
    let answer = wire::MonthClosed {
        month: m.to_string(),
        invoices: u32::try_from(closed.invoices.len()).unwrap_or(u32::MAX),
        statements: u32::try_from(closed.statements.len()).unwrap_or(u32::MAX),
    };
    let write = MarketWrite {
        changes,
        usage: Vec::new(),
        close: Some(closed),
        outbox: Vec::new(),
    };
    match state.store.apply_market(write).await {
        Ok(Ok(())) => Ok(answer),
        Ok(Err(refusal)) => {
            inner.market = None;
            Err(ApiError::new(Code::InvalidState, refusal.to_string()))
        }
        Err(e) => {
            inner.market = None;
            Err(e.into())
        }
    }
}

/// Invoices of a closed month: the caller's tenant's (operators: all).
pub async fn invoices(
    state: &Control,
    who: &Caller,
    month: &str,
) -> ApiResult<Vec<wire::InvoiceView>> {
    let m = parse_month(month)?;
    Ok(state
        .store
        .market_invoices(m)
        .await?
        .into_iter()
        .filter(|i| who.is_operator() || i.tenant == who.tenant)
        .map(|i| wire::InvoiceView {
            month: i.month,
            tenant: i.tenant,
            total_minor: i.total_minor,
            csv: i.csv,
        })
        .collect())
}

/// Settlement statements of a closed month: the caller's own (suppliers; operators: all).
pub async fn statements(
    state: &Control,
    who: &Caller,
    month: &str,
) -> ApiResult<Vec<wire::StatementView>> {
    let m = parse_month(month)?;
    let names = names(state).await?;
    let mine = me(state, who).await?;
    Ok(state
        .store
        .market_statements(m)
        .await?
        .into_iter()
        .filter(|s| who.is_operator() || s.supplier == mine)
        .map(|s| wire::StatementView {
            month: s.month,
            supplier: name_of(&names, s.supplier),
            gross_minor: s.gross_minor,
            commission_minor: s.commission_minor,
            net_minor: s.net_minor,
            csv: s.csv,
        })
        .collect())
}

/// Every ledger account's balance and their sum (operators): the sum is zero.
pub async fn ledger(state: &Control, who: &Caller) -> ApiResult<wire::LedgerView> {
    operator_only(who, "read the whole ledger")?;
    let names = names(state).await?;
    let mut inner = state.market.inner.lock().await;
    let market = ensure(state, &mut inner).await?;
    let l = market.ledger();
    Ok(wire::LedgerView {
        trial_balance_minor: l.trial_balance().minor(),
        transactions: l.transactions().len() as u64,
        accounts: l
            .balances()
            .map(|(a, b)| wire::LedgerBalance {
                account: match a {
                    LedgerAccount::UserFunds(t) => format!("user_funds:{}", t.0),
                    LedgerAccount::UserCredit(t) => format!("user_credit:{}", t.0),
                    LedgerAccount::SupplierReceivable(s) => {
                        format!("supplier_receivable:{}", name_of(&names, *s))
                    }
                    LedgerAccount::Clearing => "clearing".into(),
                    LedgerAccount::PlatformCommission => "platform_commission".into(),
                    LedgerAccount::ExternalCash => "external_cash".into(),
                    LedgerAccount::Promotions => "promotions".into(),
                },
                balance_minor: b.minor(),
            })
            .collect(),
    })
}
