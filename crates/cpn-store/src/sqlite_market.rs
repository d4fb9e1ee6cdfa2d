//! [`MarketStore`] on the embedded SQLite store. Times are Unix seconds and money minor
//! units, both `INTEGER`, as `cpn_market` counts them; enums are stored by name. The
//! statements are plain SQL (no rowid, no `IS` between values, upserts as `ON CONFLICT`) so
//! a PostgreSQL implementation can take them with only its placeholders changed.

use crate::sqlite::{is_unique_violation, parse_ts, ts};
use crate::sqlite_outbox::enqueue_in;
use crate::{
    Enqueued, MarketRefusal, MarketStore, MarketWrite, NotificationAttemptRecord,
    NotificationLogQuery, Result, SqliteStore, StoreError, StoredInvoice, StoredStatement,
};
use async_trait::async_trait;
use cpn_market::account::lifecycle::Actor;
use cpn_market::account::registration::IDENTIFIER_FIELDS;
use cpn_market::account::{AccountProfile, Contact, Transition};
use cpn_market::billing::{Budget, UsageKind, UsageRecord};
use cpn_market::billing::{BudgetRow, LedgerAccount, MonthClose, Posting, Transaction, TxId};
use cpn_market::lease::OrderState;
use cpn_market::listing::{Approval, Disk, DiskKind, DiskRole, PriceQuote, ResourceType};
use cpn_market::{
    Account, AccountId, AccountKind, AccountState, BillingMode, CardChange, CardId, CardRow,
    Change, ClusterClass, CpcId, EndReason, Evaluation, HashedIdentifier, IdentifierKind, LeaseId,
    LeaseRow, LeaseState, ListingRow, ListingSpec, ListingStatus, MarketState, Money, Monitoring,
    Month, Occupancy, Order, OrderId, PriceSheet, SupplierKind, TenantId, Timestamp, UserKind,
};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

type Refused = std::result::Result<(), MarketRefusal>;

fn corrupt(what: &str, value: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!(
        "market {what}: {value:?}",
        value = value.to_string()
    ))
}

fn conv(e: StoreError) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
}

// ---------------------------------------------------------------- names of enums

fn class_name(c: ClusterClass) -> &'static str {
    match c {
        ClusterClass::A => "A",
        ClusterClass::B => "B",
    }
}

fn parse_class(s: &str) -> Result<ClusterClass> {
    match s {
        "A" => Ok(ClusterClass::A),
        "B" => Ok(ClusterClass::B),
        _ => Err(corrupt("class", s)),
    }
}

fn parse_mode(s: &str) -> Result<BillingMode> {
    BillingMode::ALL
        .into_iter()
        .find(|m| m.as_str() == s)
        .ok_or_else(|| corrupt("billing mode", s))
}

const USAGE_KINDS: [UsageKind; 5] = [
    UsageKind::LeaseCardSeconds,
    UsageKind::PrepaidCardPeriods,
    UsageKind::TaskGpuSeconds,
    UsageKind::TaskCpuSeconds,
    UsageKind::TaskMemoryMibSeconds,
];

fn parse_usage_kind(s: &str) -> Result<UsageKind> {
    USAGE_KINDS
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| corrupt("usage kind", s))
}

fn identifier_kind_name(k: IdentifierKind) -> &'static str {
    match k {
        IdentifierKind::NationalId => "national_id",
        IdentifierKind::CreditCode => "credit_code",
        IdentifierKind::BankAccount => "bank_account",
        IdentifierKind::VerificationCode => "verification_code",
        IdentifierKind::AuthorizationCode => "authorization_code",
    }
}

fn parse_identifier_kind(s: &str) -> Result<IdentifierKind> {
    [
        IdentifierKind::NationalId,
        IdentifierKind::CreditCode,
        IdentifierKind::BankAccount,
        IdentifierKind::VerificationCode,
        IdentifierKind::AuthorizationCode,
    ]
    .into_iter()
    .find(|k| identifier_kind_name(*k) == s)
    .ok_or_else(|| corrupt("identifier kind", s))
}

fn account_kind_name(k: AccountKind) -> &'static str {
    match k {
        AccountKind::User(UserKind::Individual) => "user.individual",
        AccountKind::User(UserKind::University) => "user.university",
        AccountKind::User(UserKind::ResearchInstitution) => "user.research_institution",
        AccountKind::User(UserKind::Enterprise) => "user.enterprise",
        AccountKind::Supplier(SupplierKind::Enterprise) => "supplier.enterprise",
        AccountKind::Supplier(SupplierKind::Individual) => "supplier.individual",
    }
}

fn parse_account_kind(s: &str) -> Result<AccountKind> {
    [
        AccountKind::User(UserKind::Individual),
        AccountKind::User(UserKind::University),
        AccountKind::User(UserKind::ResearchInstitution),
        AccountKind::User(UserKind::Enterprise),
        AccountKind::Supplier(SupplierKind::Enterprise),
        AccountKind::Supplier(SupplierKind::Individual),
    ]
    .into_iter()
    .find(|k| account_kind_name(*k) == s)
    .ok_or_else(|| corrupt("account kind", s))
}

/// A state as (name, reason).
fn account_state_parts(s: &AccountState) -> (&'static str, Option<&str>) {
    let reason = match s {
        AccountState::Rejected { reason } | AccountState::Disabled { reason } => {
            Some(reason.as_str())
        }
        _ => None,
    };
    (s.name(), reason)
}

fn parse_account_state(name: &str, reason: Option<String>) -> Result<AccountState> {
    let reason = || {
        reason
            .clone()
            .ok_or_else(|| corrupt("state without reason", name))
    };
    Ok(match name {
        "pending_activation" => AccountState::PendingActivation,
        "pending_review" => AccountState::PendingReview,
        "active" => AccountState::Active,
        "rejected" => AccountState::Rejected { reason: reason()? },
        "disabled" => AccountState::Disabled { reason: reason()? },
        "deregistered" => AccountState::Deregistered,
        _ => return Err(corrupt("account state", name)),
    })
}

fn actor_name(a: &Actor) -> String {
    match a {
        Actor::Owner => "owner".into(),
        Actor::Operator(name) => format!("operator:{name}"),
    }
}

fn parse_actor(s: &str) -> Result<Actor> {
    match s.split_once(':') {
        None if s == "owner" => Ok(Actor::Owner),
        Some(("operator", name)) => Ok(Actor::Operator(name.to_string())),
        _ => Err(corrupt("actor", s)),
    }
}

/// A ledger account as `kind` or `kind:owner`.
fn ledger_account_name(a: &LedgerAccount) -> String {
    match a {
        LedgerAccount::UserFunds(t) => format!("user_funds:{}", t.0),
        LedgerAccount::UserCredit(t) => format!("user_credit:{}", t.0),
        LedgerAccount::SupplierReceivable(s) => format!("supplier_receivable:{}", s.0),
        LedgerAccount::Clearing => "clearing".into(),
        LedgerAccount::PlatformCommission => "platform_commission".into(),
        LedgerAccount::ExternalCash => "external_cash".into(),
        LedgerAccount::Promotions => "promotions".into(),
    }
}

fn parse_ledger_account(s: &str) -> Result<LedgerAccount> {
    Ok(match s.split_once(':') {
        Some(("user_funds", t)) => LedgerAccount::UserFunds(TenantId(t.into())),
        Some(("user_credit", t)) => LedgerAccount::UserCredit(TenantId(t.into())),
        Some(("supplier_receivable", id)) => LedgerAccount::SupplierReceivable(AccountId(
            id.parse().map_err(|_| corrupt("ledger account", s))?,
        )),
        None if s == "clearing" => LedgerAccount::Clearing,
        None if s == "platform_commission" => LedgerAccount::PlatformCommission,
        None if s == "external_cash" => LedgerAccount::ExternalCash,
        None if s == "promotions" => LedgerAccount::Promotions,
        _ => return Err(corrupt("ledger account", s)),
    })
}

/// (occupancy, holder) columns.
fn occupancy_parts(o: Occupancy) -> (&'static str, Option<i64>) {
    match o {
        Occupancy::Free => ("free", None),
        Occupancy::Reserved(h) => ("reserved", Some(h.0 as i64)),
        Occupancy::Busy(h) => ("busy", Some(h.0 as i64)),
    }
}

fn parse_occupancy(name: &str, holder: Option<i64>) -> Result<Occupancy> {
    match (name, holder) {
        ("free", None) => Ok(Occupancy::Free),
        ("reserved", Some(h)) => Ok(Occupancy::Reserved(OrderId(h as u64))),
        ("busy", Some(h)) => Ok(Occupancy::Busy(OrderId(h as u64))),
        _ => Err(corrupt("card occupancy", name)),
    }
}

/// The `state` column: the card's state as users see it (`CardState`), what the allocation
/// contract's `WHERE state = 'idle'` reads.
fn card_state_name(o: Occupancy, reported: bool) -> &'static str {
    match (reported, o) {
        (false, _) => "offline",
        (true, Occupancy::Free) => "idle",
        (true, Occupancy::Reserved(_)) => "reserved",
        (true, Occupancy::Busy(_)) => "busy",
    }
}

fn end_reason_name(r: EndReason) -> &'static str {
    match r {
        EndReason::Released => "released",
        EndReason::Expired => "expired",
        EndReason::BudgetExhausted => "budget_exhausted",
        EndReason::FundsDepleted => "funds_depleted",
    }
}

fn parse_end_reason(s: &str) -> Result<EndReason> {
    [
        EndReason::Released,
        EndReason::Expired,
        EndReason::BudgetExhausted,
        EndReason::FundsDepleted,
    ]
    .into_iter()
    .find(|r| end_reason_name(*r) == s)
    .ok_or_else(|| corrupt("end reason", s))
}

fn parse_month(s: &str) -> Result<Month> {
    let (y, m) = s.split_once('-').ok_or_else(|| corrupt("month", s))?;
    let (y, m) = (
        y.parse().map_err(|_| corrupt("month", s))?,
        m.parse().map_err(|_| corrupt("month", s))?,
    );
    Month::new(y, m).ok_or_else(|| corrupt("month", s))
}

fn money(v: Option<i64>) -> Option<Money> {
    v.map(Money::from_minor)
}

fn ts_of(v: i64) -> Timestamp {
    Timestamp::from_unix(v)
}

fn cards_json(cards: &[CardId]) -> String {
    json!(cards.iter().map(|c| c.0).collect::<Vec<_>>()).to_string()
}

fn parse_cards(s: &str) -> Result<Vec<CardId>> {
    let ids: Vec<u32> = serde_json::from_str(s).map_err(|e| corrupt("card list", e))?;
    Ok(ids.into_iter().map(CardId).collect())
}

// ---------------------------------------------------------------- listing spec as JSON

fn spec_json(s: &ListingSpec) -> String {
    let resource = match s.resource_type {
        ResourceType::Gpu => "gpu",
        ResourceType::Npu => "npu",
        ResourceType::Cpu => "cpu",
    };
    let disks: Vec<Value> = s
        .storage
        .iter()
        .map(|d| {
            json!({
                "kind": match d.kind { DiskKind::NvmeSsd => "nvme_ssd", DiskKind::SataSsd => "sata_ssd", DiskKind::Hdd => "hdd" },
                "role": match d.role { DiskRole::System => "system", DiskRole::Data => "data" },
                "size_gb": d.size_gb,
            })
        })
        .collect();
    json!({
        "class": class_name(s.class),
        "resource_type": resource,
        "model": s.model,
        "card_memory_gib": s.card_memory_gib,
        "memory_gib": s.memory_gib,
        "vcpus": s.vcpus,
        "vendor": s.vendor,
        "region": s.region,
        "storage": disks,
        "usage": s.usage,
        "approval": match s.approval { Approval::Automatic => "automatic", Approval::BySupplier => "by_supplier" },
        "site": s.site,
    })
    .to_string()
}

fn parse_spec(text: &str, prices: PriceSheet) -> Result<ListingSpec> {
    let v: Value = serde_json::from_str(text).map_err(|e| corrupt("listing spec", e))?;
    let bad = || corrupt("listing spec", text);
    let s = |k: &str| v[k].as_str().map(str::to_string).ok_or_else(bad);
    let n = |k: &str| {
        v[k].as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .ok_or_else(bad)
    };
    let storage = v["storage"]
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|d| {
            Ok(Disk {
                kind: match d["kind"].as_str() {
                    Some("nvme_ssd") => DiskKind::NvmeSsd,
                    Some("sata_ssd") => DiskKind::SataSsd,
                    Some("hdd") => DiskKind::Hdd,
                    _ => return Err(bad()),
                },
                role: match d["role"].as_str() {
                    Some("system") => DiskRole::System,
                    Some("data") => DiskRole::Data,
                    _ => return Err(bad()),
                },
                size_gb: d["size_gb"]
                    .as_u64()
                    .and_then(|x| u32::try_from(x).ok())
                    .ok_or_else(bad)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ListingSpec {
        class: parse_class(&s("class")?)?,
        resource_type: match s("resource_type")?.as_str() {
            "gpu" => ResourceType::Gpu,
            "npu" => ResourceType::Npu,
            "cpu" => ResourceType::Cpu,
            _ => return Err(bad()),
        },
        model: s("model")?,
        card_memory_gib: n("card_memory_gib")?,
        memory_gib: n("memory_gib")?,
        vcpus: n("vcpus")?,
        prices,
        vendor: s("vendor")?,
        region: s("region")?,
        storage,
        usage: v["usage"].as_str().map(str::to_string),
        approval: match s("approval")?.as_str() {
            "automatic" => Approval::Automatic,
            "by_supplier" => Approval::BySupplier,
            _ => return Err(bad()),
        },
        site: s("site")?,
        cards: Vec::new(),
    })
}

// ---------------------------------------------------------------- account profile as JSON

/// Everything of the profile but its identifiers, which have rows of their own (indexed by
/// digest, erased with the profile).
fn profile_json(p: &AccountProfile) -> String {
    json!({
        "display_name": p.display_name,
        "email": p.contact.email,
        "phone": p.contact.phone,
        "organization_name": p.organization_name,
        "licence_document": p.licence_document,
        "address": p.address,
        "affiliation": p.affiliation,
        "registered_capital": p.registered_capital.map(Money::minor),
        "region": p.region,
        "accepted_terms": p.accepted_terms,
    })
    .to_string()
}

fn parse_profile(
    text: &str,
    username: &str,
    kind: AccountKind,
    identifiers: Vec<(&'static str, HashedIdentifier)>,
) -> Result<AccountProfile> {
    let v: Value = serde_json::from_str(text).map_err(|e| corrupt("profile", e))?;
    let opt = |k: &str| v[k].as_str().map(str::to_string);
    Ok(AccountProfile {
        username: username.to_string(),
        kind,
        display_name: opt("display_name").ok_or_else(|| corrupt("profile", "display_name"))?,
        contact: Contact {
            email: opt("email"),
            phone: opt("phone"),
        },
        identifiers,
        organization_name: opt("organization_name"),
        licence_document: opt("licence_document"),
        address: opt("address"),
        affiliation: opt("affiliation"),
        registered_capital: v["registered_capital"].as_i64().map(Money::from_minor),
        region: opt("region"),
        accepted_terms: opt("accepted_terms").unwrap_or_default(),
    })
}

/// The uniqueness keys of an account: the username always (kept after deregistration, so it
/// stays reserved), e-mail and phone while there is a profile. Stored as SHA-256 of
/// `key\0value`, so the index holds no contact in clear.
fn account_keys(account: &Account) -> Vec<(&'static str, String, String)> {
    let mut keys = vec![("username", account.username().to_lowercase())];
    if let Some(p) = account.profile() {
        keys.extend(
            p.uniqueness_keys()
                .into_iter()
                .filter(|(k, _)| *k != "username"),
        );
    }
    keys.into_iter()
        .map(|(k, v)| (k, key_digest(k, &v), v))
        .collect()
}

fn key_digest(key: &str, value: &str) -> String {
    let mut h = Sha256::new();
    h.update(key.as_bytes());
    h.update([0]);
    h.update(value.as_bytes());
    hex::encode(h.finalize())
}

fn write_account_rows(conn: &Connection, account: &Account) -> Result<()> {
    let id = account.id().0 as i64;
    conn.prepare_cached("DELETE FROM market_account_keys WHERE account = ?1")?
        .execute([id])?;
    for (key, digest, value) in account_keys(account) {
        let r = conn
            .prepare_cached(
                "INSERT INTO market_account_keys (key, digest, account) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![key, digest, id]);
        match r {
            Err(e) if is_unique_violation(&e) => {
                let shown = if key == "username" {
                    value
                } else {
                    cpn_market::keyed::mask(&value)
                };
                return Err(StoreError::AlreadyExists {
                    kind: format!("market account with this {key}"),
                    name: shown,
                });
            }
            other => {
                other?;
            }
        }
    }
    conn.prepare_cached("DELETE FROM market_account_identifiers WHERE account = ?1")?
        .execute([id])?;
    if let Some(p) = account.profile() {
        for (seq, (field, h)) in p.identifiers.iter().enumerate() {
            conn.prepare_cached(
                "INSERT INTO market_account_identifiers (account, seq, field, kind, digest,
                 masked) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                id,
                seq as i64,
                field,
                identifier_kind_name(h.kind()),
                h.digest_hex(),
                h.masked()
            ])?;
        }
    }
    // The history is append-only: entries already stored are never rewritten.
    let stored: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM market_account_history WHERE account = ?1")?
        .query_row([id], |r| r.get(0))?;
    let history = account.history();
    if stored as usize > history.len() {
        return Err(StoreError::Corrupt(format!(
            "market account {id}: the new history is shorter than the stored one"
        )));
    }
    for (seq, t) in history.iter().enumerate().skip(stored as usize) {
        let (state, reason) = account_state_parts(&t.to);
        conn.prepare_cached(
            "INSERT INTO market_account_history (account, seq, at, actor, state, reason)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            id,
            seq as i64,
            t.at.unix(),
            actor_name(&t.actor),
            state,
            reason
        ])?;
    }
    Ok(())
}

fn load_account(conn: &Connection, id: AccountId) -> Result<Option<(Account, u64)>> {
    let row = conn
        .prepare_cached(
            "SELECT kind, username, state, state_reason, profile, version
             FROM market_accounts WHERE id = ?1",
        )?
        .query_row([id.0 as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })
        .optional()?;
    let Some((kind, username, state, reason, profile, version)) = row else {
        return Ok(None);
    };
    let kind = parse_account_kind(&kind)?;
    let mut identifiers = Vec::new();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT field, kind, digest, masked FROM market_account_identifiers
             WHERE account = ?1 ORDER BY seq",
        )?;
        let rows = stmt.query_map([id.0 as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        for row in rows {
            let (field, k, digest, masked) = row?;
            let field = IDENTIFIER_FIELDS
                .iter()
                .find(|f| **f == field)
                .ok_or_else(|| corrupt("identifier field", &field))?;
            let h = HashedIdentifier::from_stored(parse_identifier_kind(&k)?, &digest, &masked)
                .ok_or_else(|| corrupt("identifier digest", &digest))?;
            identifiers.push((*field, h));
        }
    }
    let mut history = Vec::new();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT at, actor, state, reason FROM market_account_history
             WHERE account = ?1 ORDER BY seq",
        )?;
        let rows = stmt.query_map([id.0 as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })?;
        for row in rows {
            let (at, actor, state, reason) = row?;
            history.push(Transition {
                at: ts_of(at),
                actor: parse_actor(&actor)?,
                to: parse_account_state(&state, reason)?,
            });
        }
    }
    let profile = profile
        .map(|p| parse_profile(&p, &username, kind, identifiers))
        .transpose()?;
    let state = parse_account_state(&state, reason)?;
    let account = Account::restore(id, kind, username, profile, state, history)
        .ok_or_else(|| corrupt("account history", id.0))?;
    Ok(Some((account, version as u64)))
}

// ---------------------------------------------------------------- market rows

fn order_state_parts(s: &OrderState) -> (&'static str, Option<&str>, Option<i64>) {
    match s {
        OrderState::AwaitingApproval => ("awaiting_approval", None, None),
        OrderState::Leased(l) => ("leased", None, Some(l.0 as i64)),
        OrderState::Rejected { reason } => ("rejected", Some(reason.as_str()), None),
        OrderState::Cancelled => ("cancelled", None, None),
        OrderState::Lapsed => ("lapsed", None, None),
    }
}

fn write_order(conn: &Connection, change: Change, o: &Order) -> Result<Refused> {
    let (state, reason, lease) = order_state_parts(&o.state);
    let values = params![
        o.id.0 as i64,
        o.user.0 as i64,
        o.tenant.0,
        o.supplier.0 as i64,
        o.listing.sequence() as i64,
        class_name(o.class),
        cards_json(&o.cards),
        i64::from(o.quote.version),
        o.quote.mode.as_str(),
        o.quote.unit_price.minor(),
        i64::from(o.periods),
        o.placed_at.unix(),
        state,
        reason,
        lease,
    ];
    match change {
        Change::Created => {
            let r = conn
                .prepare_cached(
                    "INSERT INTO market_orders (id, user_id, tenant, supplier, cpcid, class, cards,
                     price_version, mode, unit_price, periods, placed_at, state, reason, lease)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                )?
                .execute(values);
            match r {
                Err(e) if is_unique_violation(&e) => {
                    return Ok(Err(MarketRefusal::Exists {
                        what: "order",
                        id: o.id.0.to_string(),
                    }));
                }
                other => {
                    other?;
                }
            }
        }
        Change::Updated => {
            // Only the state moves once an order exists; the rest is checked unchanged by
            // matching the row on it.
            let n = conn
                .prepare_cached(
                    "UPDATE market_orders SET state = ?13, reason = ?14, lease = ?15
                     WHERE id = ?1 AND user_id = ?2 AND tenant = ?3 AND supplier = ?4
                       AND cpcid = ?5 AND class = ?6 AND cards = ?7 AND price_version = ?8
                       AND mode = ?9 AND unit_price = ?10 AND periods = ?11 AND placed_at = ?12",
                )?
                .execute(values)?;
            if n != 1 {
                return Ok(Err(MarketRefusal::Missing {
                    what: "order",
                    id: o.id.0.to_string(),
                }));
            }
        }
    }
    Ok(Ok(()))
}

fn write_lease(conn: &Connection, change: Change, l: &LeaseRow) -> Result<Refused> {
    let (state, attempts, since, ended_at, reason) = match &l.state {
        LeaseState::AwaitingAccess { attempts_left } => (
            "awaiting_access",
            Some(i64::from(*attempts_left)),
            None,
            None,
            None,
        ),
        LeaseState::Locked => ("locked", None, None, None, None),
        LeaseState::Active { since } => ("active", None, Some(since.unix()), None, None),
        LeaseState::Ended { at, reason } => (
            "ended",
            None,
            None,
            Some(at.unix()),
            Some(end_reason_name(*reason)),
        ),
    };
    let values = params![
        l.id.0 as i64,
        l.user.0 as i64,
        l.tenant.0,
        l.supplier.0 as i64,
        l.listing.sequence() as i64,
        class_name(l.class),
        cards_json(&l.cards),
        i64::from(l.quote.version),
        l.quote.mode.as_str(),
        l.quote.unit_price.minor(),
        l.started_at.unix(),
        l.ends_at.map(Timestamp::unix),
        state,
        attempts,
        since,
        ended_at,
        reason,
        l.authorization.as_ref().map(HashedIdentifier::digest_hex),
        l.authorization.as_ref().map(|h| h.masked().to_string()),
        l.metered_until.unix(),
        l.card_seconds as i64,
        l.charged.minor(),
        monitoring_json(&l.monitoring),
    ];
    let sql = match change {
        Change::Created => {
            "INSERT INTO market_leases (id, user_id, tenant, supplier, cpcid, class, cards,
             price_version, mode, unit_price, started_at, ends_at, state, attempts_left,
             active_since, ended_at, end_reason, code_digest, code_masked, metered_until,
             card_seconds, charged, monitoring)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                     ?17, ?18, ?19, ?20, ?21, ?22, ?23)"
        }
        Change::Updated => {
            "UPDATE market_leases SET state = ?13, attempts_left = ?14, active_since = ?15,
             ended_at = ?16, end_reason = ?17, code_digest = ?18, code_masked = ?19,
             metered_until = ?20, card_seconds = ?21, charged = ?22, monitoring = ?23
             WHERE id = ?1 AND user_id = ?2 AND tenant = ?3 AND supplier = ?4 AND cpcid = ?5
               AND class = ?6 AND cards = ?7 AND price_version = ?8 AND mode = ?9
               AND unit_price = ?10 AND started_at = ?11
               AND (ends_at = ?12 OR (ends_at IS NULL AND ?12 IS NULL))"
        }
    };
    match conn.prepare_cached(sql)?.execute(values) {
        Err(e) if is_unique_violation(&e) => Ok(Err(MarketRefusal::Exists {
            what: "lease",
            id: l.id.0.to_string(),
        })),
        Ok(0) => Ok(Err(MarketRefusal::Missing {
            what: "lease",
            id: l.id.0.to_string(),
        })),
        other => {
            other?;
            if let Some(e) = &l.evaluation {
                write_evaluation(conn, e)?;
            }
            Ok(Ok(()))
        }
    }
}

/// An evaluation is made once, when its lease ends; a later write of the lease leaves it.
fn write_evaluation(conn: &Connection, e: &Evaluation) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO market_evaluations (lease, cpcid, at, samples, availability, cpu_util,
         gpu_util, drop_offs, node_losses, score)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (lease) DO NOTHING",
    )?
    .execute(params![
        e.lease.0 as i64,
        e.listing.sequence() as i64,
        e.at.unix(),
        i64::from(e.samples),
        e.availability.map(i64::from),
        e.cpu_util.map(i64::from),
        e.gpu_util.map(i64::from),
        i64::from(e.drop_offs),
        i64::from(e.node_losses),
        e.score.map(i64::from),
    ])?;
    Ok(())
}

fn evaluation_from_row(r: &Row<'_>) -> rusqlite::Result<Evaluation> {
    let per_mille = |i: usize| -> rusqlite::Result<Option<u16>> {
        Ok(r.get::<_, Option<i64>>(i)?.map(|v| v.clamp(0, 1000) as u16))
    };
    Ok(Evaluation {
        lease: LeaseId(r.get::<_, i64>(0)? as u64),
        listing: cpcid(r.get(1)?).map_err(conv)?,
        at: ts_of(r.get(2)?),
        samples: r.get::<_, i64>(3)? as u32,
        availability: per_mille(4)?,
        cpu_util: per_mille(5)?,
        gpu_util: per_mille(6)?,
        drop_offs: r.get::<_, i64>(7)? as u32,
        node_losses: r.get::<_, i64>(8)? as u32,
        score: per_mille(9)?,
    })
}

/// The monitoring summary as JSON: counters, and the missing cards and down nodes.
fn monitoring_json(m: &Monitoring) -> String {
    json!({
        "samples": m.samples, "answered": m.answered,
        "cpu_util_sum": m.cpu_util_sum, "cpu_readings": m.cpu_readings,
        "gpu_util_sum": m.gpu_util_sum, "gpu_readings": m.gpu_readings,
        "drop_offs": m.drop_offs, "node_losses": m.node_losses,
        "missing": m.missing.iter().map(|c| c.0).collect::<Vec<_>>(),
        "down": m.down,
    })
    .to_string()
}

/// A lease stored before monitoring existed has none: an empty summary.
fn parse_monitoring(s: Option<String>) -> Result<Monitoring> {
    #[derive(serde::Deserialize)]
    struct Stored {
        samples: u32,
        answered: u32,
        cpu_util_sum: u64,
        cpu_readings: u32,
        gpu_util_sum: u64,
        gpu_readings: u32,
        drop_offs: u32,
        node_losses: u32,
        missing: Vec<u32>,
        down: Vec<String>,
    }
    let Some(s) = s else {
        return Ok(Monitoring::default());
    };
    let m: Stored = serde_json::from_str(&s).map_err(|e| corrupt("lease monitoring", e))?;
    Ok(Monitoring {
        samples: m.samples,
        answered: m.answered,
        cpu_util_sum: m.cpu_util_sum,
        cpu_readings: m.cpu_readings,
        gpu_util_sum: m.gpu_util_sum,
        gpu_readings: m.gpu_readings,
        drop_offs: m.drop_offs,
        node_losses: m.node_losses,
        missing: m.missing.into_iter().map(CardId).collect(),
        down: m.down.into_iter().collect(),
    })
}

fn write_listing(conn: &Connection, change: Change, l: &ListingRow) -> Result<Refused> {
    let (status, delisted_at, reason) = match &l.status {
        ListingStatus::Listed => ("listed", None, None),
        ListingStatus::Delisted { at, reason } => ("delisted", Some(at.unix()), Some(reason)),
    };
    let values = params![
        l.cpcid.sequence() as i64,
        l.supplier.0 as i64,
        spec_json(&l.spec),
        status,
        delisted_at,
        reason,
        l.reliability.map(i64::from),
        l.published_at.unix(),
        i64::from(l.first_card),
    ];
    let sql = match change {
        Change::Created => {
            "INSERT INTO market_listings (cpcid, supplier, spec, status, delisted_at,
             delist_reason, reliability, published_at, first_card)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        }
        Change::Updated => {
            "UPDATE market_listings SET spec = ?3, status = ?4, delisted_at = ?5,
             delist_reason = ?6, reliability = ?7
             WHERE cpcid = ?1 AND supplier = ?2 AND published_at = ?8 AND first_card = ?9"
        }
    };
    match conn.prepare_cached(sql)?.execute(values) {
        Err(e) if is_unique_violation(&e) => {
            return Ok(Err(MarketRefusal::Exists {
                what: "cluster",
                id: l.cpcid.to_string(),
            }));
        }
        Ok(0) => {
            return Ok(Err(MarketRefusal::Missing {
                what: "cluster",
                id: l.cpcid.to_string(),
            }));
        }
        other => {
            other?;
        }
    }
    // Price versions are immutable: only those after the stored ones are written.
    let stored: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM market_price_versions WHERE cpcid = ?1")?
        .query_row([l.cpcid.sequence() as i64], |r| r.get(0))?;
    for (i, p) in l.price_history.iter().enumerate().skip(stored as usize) {
        conn.prepare_cached(
            "INSERT INTO market_price_versions (cpcid, version, hourly, monthly, yearly)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            l.cpcid.sequence() as i64,
            i as i64 + 1,
            p.hourly.map(Money::minor),
            p.monthly.map(Money::minor),
            p.yearly.map(Money::minor),
        ])?;
    }
    Ok(Ok(()))
}

fn card_found(conn: &Connection, id: CardId) -> Result<String> {
    Ok(conn
        .prepare_cached("SELECT state, holder FROM market_cards WHERE id = ?1")?
        .query_row([i64::from(id.0)], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?))
        })
        .optional()?
        .map_or("missing".into(), |(s, h)| match h {
            Some(h) => format!("{s} (order {h})"),
            None => s,
        }))
}

fn write_card(conn: &Connection, c: &CardChange) -> Result<Refused> {
    let a = &c.after;
    let (occupancy, holder) = occupancy_parts(a.occupancy);
    let state = card_state_name(a.occupancy, a.reported);
    let id = i64::from(a.id.0);
    let Some((was, was_reported)) = c.before else {
        let r = conn
            .prepare_cached(
                "INSERT INTO market_cards (id, cpcid, node, device_index, state, occupancy,
                 holder, reported) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                id,
                a.listing.sequence() as i64,
                a.spec.node,
                i64::from(a.spec.index),
                state,
                occupancy,
                holder,
                a.reported
            ]);
        return match r {
            Err(e) if is_unique_violation(&e) => Ok(Err(MarketRefusal::Exists {
                what: "card",
                id: a.id.0.to_string(),
            })),
            other => {
                other?;
                Ok(Ok(()))
            }
        };
    };
    // From idle to held is a reservation (class B turns the card busy in the same
    // operation, so the held state may already be busy).
    let n = if card_state_name(was, was_reported) == "idle" && a.occupancy != Occupancy::Free {
        // The allocation contract: a reservation takes an idle card of a listed listing,
        // or nothing. Of two writers racing for the card, the second finds it reserved.
        let listed: Option<String> = conn
            .prepare_cached("SELECT status FROM market_listings WHERE cpcid = ?1")?
            .query_row([a.listing.sequence() as i64], |r| r.get(0))
            .optional()?;
        if listed.as_deref() != Some("listed") {
            return Ok(Err(MarketRefusal::NotListed {
                cpcid: a.listing.to_string(),
            }));
        }
        conn.prepare_cached(
            "UPDATE market_cards SET state = ?2, occupancy = ?3, holder = ?4, reported = ?5
             WHERE id = ?1 AND state = 'idle'",
        )?
        .execute(params![id, state, occupancy, holder, a.reported])?
    } else {
        // Any other change: from exactly the state last stored (compare and set).
        let (was_occupancy, was_holder) = occupancy_parts(was);
        conn.prepare_cached(
            "UPDATE market_cards SET state = ?2, occupancy = ?3, holder = ?4, reported = ?5
             WHERE id = ?1 AND occupancy = ?6 AND reported = ?8
               AND (holder = ?7 OR (holder IS NULL AND ?7 IS NULL))",
        )?
        .execute(params![
            id,
            state,
            occupancy,
            holder,
            a.reported,
            was_occupancy,
            was_holder,
            was_reported
        ])?
    };
    if n != 1 {
        let (o, h) = occupancy_parts(was);
        let expected = match h {
            Some(h) if was_reported => format!("{} (order {h})", card_state_name(was, true)),
            Some(h) => format!("offline, {o} (order {h})"),
            None => card_state_name(was, was_reported).to_string(),
        };
        return Ok(Err(MarketRefusal::CardChanged {
            card: a.id.0,
            expected,
            found: card_found(conn, a.id)?,
        }));
    }
    Ok(Ok(()))
}

fn write_transaction(conn: &Connection, t: &Transaction) -> Result<Refused> {
    let r = conn
        .prepare_cached(
            "INSERT INTO market_transactions (id, key, at, memo) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![t.id.0 as i64, t.key, t.at.unix(), t.memo]);
    match r {
        Err(e) if is_unique_violation(&e) => {
            return Ok(Err(MarketRefusal::Exists {
                what: "ledger transaction",
                id: format!("{} ({})", t.id.0, t.key),
            }));
        }
        other => {
            other?;
        }
    }
    for (seq, p) in t.postings.iter().enumerate() {
        conn.prepare_cached(
            "INSERT INTO market_postings (tx, seq, account, amount) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            t.id.0 as i64,
            seq as i64,
            ledger_account_name(&p.account),
            p.amount.minor()
        ])?;
    }
    // Double entry, checked by the database on what it now holds, in the same transaction:
    // a transaction of fewer than two postings or a non-zero sum is refused whole.
    let (count, sum): (i64, i64) = conn
        .prepare_cached(
            "SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM market_postings WHERE tx = ?1",
        )?
        .query_row([t.id.0 as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
    if count < 2 || sum != 0 {
        return Ok(Err(MarketRefusal::Unbalanced {
            tx: t.id.0,
            key: t.key.clone(),
            sum,
        }));
    }
    Ok(Ok(()))
}

fn write_budget(conn: &Connection, b: &BudgetRow) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO market_budgets (tenant, monthly_limit, alarm_percent, month, spent,
         alarmed, exhausted) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (tenant) DO UPDATE SET monthly_limit = excluded.monthly_limit,
           alarm_percent = excluded.alarm_percent, month = excluded.month,
           spent = excluded.spent, alarmed = excluded.alarmed, exhausted = excluded.exhausted",
    )?
    .execute(params![
        b.tenant.0,
        // A tenant without a budget (spending counted, no limit) is stored with limit 0,
        // which no budget can have (`BudgetError::NotPositive`).
        b.budget.map_or(0, |b| b.monthly_limit.minor()),
        b.budget.map_or(0, |b| i64::from(b.alarm_percent)),
        b.month.to_string(),
        b.spent.minor(),
        b.alarmed,
        b.exhausted
    ])?;
    Ok(())
}

fn write_usage(conn: &Connection, u: &UsageRecord) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO market_usage (lease, tenant, supplier, cpcid, kind, quantity, start_at,
         end_at, price_version, mode, unit_price, amount)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        u.lease.0 as i64,
        u.tenant.0,
        u.supplier.0 as i64,
        u.listing.sequence() as i64,
        u.kind.as_str(),
        i64::try_from(u.quantity).map_err(|_| corrupt("usage quantity", u.quantity))?,
        u.start.unix(),
        u.end.unix(),
        i64::from(u.quote.version),
        u.quote.mode.as_str(),
        u.quote.unit_price.minor(),
        u.amount.minor()
    ])?;
    Ok(())
}

/// A close is idempotent: the same figures again are accepted, other figures refused.
fn write_close(conn: &Connection, close: &MonthClose, at: i64) -> Result<Refused> {
    let month = close.month.to_string();
    for inv in &close.invoices {
        let csv = inv.to_csv();
        conn.prepare_cached(
            "INSERT INTO market_invoices (month, tenant, total, csv, closed_at)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (month, tenant) DO NOTHING",
        )?
        .execute(params![month, inv.tenant.0, inv.total.minor(), csv, at])?;
        let stored: String = conn
            .prepare_cached("SELECT csv FROM market_invoices WHERE month = ?1 AND tenant = ?2")?
            .query_row(params![month, inv.tenant.0], |r| r.get(0))?;
        if stored != csv {
            return Ok(Err(MarketRefusal::ClosedDifferently {
                what: "invoice",
                month,
                party: inv.tenant.0.clone(),
            }));
        }
    }
    for st in &close.statements {
        let csv = st.to_csv();
        conn.prepare_cached(
            "INSERT INTO market_statements (month, supplier, gross, commission, net, csv,
             closed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (month, supplier) DO NOTHING",
        )?
        .execute(params![
            month,
            st.supplier.0 as i64,
            st.gross.minor(),
            st.commission.minor(),
            st.net.minor(),
            csv,
            at
        ])?;
        let stored: String = conn
            .prepare_cached("SELECT csv FROM market_statements WHERE month = ?1 AND supplier = ?2")?
            .query_row(params![month, st.supplier.0 as i64], |r| r.get(0))?;
        if stored != csv {
            return Ok(Err(MarketRefusal::ClosedDifferently {
                what: "statement",
                month,
                party: st.supplier.0.to_string(),
            }));
        }
    }
    Ok(Ok(()))
}

/// Every write of one `apply_market`, in an order where each check sees what the same write
/// did before it (a listing published with its first reservation).
fn apply(conn: &Connection, w: &MarketWrite) -> Result<Refused> {
    macro_rules! check {
        ($e:expr) => {
            if let Err(refusal) = $e? {
                return Ok(Err(refusal));
            }
        };
    }
    let c = &w.changes;
    for (change, l) in &c.listings {
        check!(write_listing(conn, *change, l));
    }
    for card in &c.cards {
        check!(write_card(conn, card));
    }
    for (change, o) in &c.orders {
        check!(write_order(conn, *change, o));
    }
    for (change, l) in &c.leases {
        check!(write_lease(conn, *change, l));
    }
    for t in &c.transactions {
        check!(write_transaction(conn, t));
    }
    for b in &c.budgets {
        write_budget(conn, b)?;
    }
    // The order sequence only moves forward: a market that restored late cannot give a
    // number out again.
    conn.prepare_cached(
        "INSERT INTO market_sequences (name, value) VALUES ('order', ?1)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value
         WHERE excluded.value > market_sequences.value",
    )?
    .execute([c.next_order as i64])?;
    for u in &w.usage {
        write_usage(conn, u)?;
    }
    if let Some(close) = &w.close {
        let at = c.transactions.last().map_or(0, |t| t.at.unix());
        check!(write_close(conn, close, at));
    }
    // Last, so a refusal above never leaves a notification of a change that was not made.
    for e in &w.outbox {
        if let Enqueued::Full { pending } = enqueue_in(conn, e)? {
            tracing::warn!(
                key = %e.key,
                pending,
                "notification dropped: its recipient has too many pending in the outbox"
            );
        }
    }
    Ok(Ok(()))
}

fn quote(version: i64, mode: &str, unit: i64) -> Result<PriceQuote> {
    Ok(PriceQuote {
        version: u32::try_from(version).map_err(|_| corrupt("price version", version))?,
        mode: parse_mode(mode)?,
        unit_price: Money::from_minor(unit),
    })
}

fn order_from_row(r: &Row<'_>) -> rusqlite::Result<Order> {
    let inner = || -> Result<Order> {
        let state: String = r.get(12)?;
        let state = match state.as_str() {
            "awaiting_approval" => OrderState::AwaitingApproval,
            "leased" => OrderState::Leased(LeaseId(r.get::<_, i64>(14)? as u64)),
            "rejected" => OrderState::Rejected {
                reason: r.get::<_, Option<String>>(13)?.unwrap_or_default(),
            },
            "cancelled" => OrderState::Cancelled,
            "lapsed" => OrderState::Lapsed,
            other => return Err(corrupt("order state", other)),
        };
        Ok(Order {
            id: OrderId(r.get::<_, i64>(0)? as u64),
            user: AccountId(r.get::<_, i64>(1)? as u64),
            tenant: TenantId(r.get(2)?),
            supplier: AccountId(r.get::<_, i64>(3)? as u64),
            listing: cpcid(r.get(4)?)?,
            class: parse_class(&r.get::<_, String>(5)?)?,
            cards: parse_cards(&r.get::<_, String>(6)?)?,
            quote: quote(r.get(7)?, &r.get::<_, String>(8)?, r.get(9)?)?,
            periods: r.get::<_, i64>(10)? as u32,
            placed_at: ts_of(r.get(11)?),
            state,
        })
    };
    inner().map_err(conv)
}

fn cpcid(seq: i64) -> Result<CpcId> {
    CpcId::from_sequence(seq as u64).ok_or_else(|| corrupt("cpcid", seq))
}

fn lease_from_row(r: &Row<'_>) -> rusqlite::Result<LeaseRow> {
    let inner = || -> Result<LeaseRow> {
        let state: String = r.get(12)?;
        let state = match state.as_str() {
            "awaiting_access" => LeaseState::AwaitingAccess {
                attempts_left: r.get::<_, i64>(13)? as u32,
            },
            "locked" => LeaseState::Locked,
            "active" => LeaseState::Active {
                since: ts_of(r.get(14)?),
            },
            "ended" => LeaseState::Ended {
                at: ts_of(r.get(15)?),
                reason: parse_end_reason(&r.get::<_, String>(16)?)?,
            },
            other => return Err(corrupt("lease state", other)),
        };
        let authorization = match (
            r.get::<_, Option<String>>(17)?,
            r.get::<_, Option<String>>(18)?,
        ) {
            (Some(d), Some(m)) => Some(
                HashedIdentifier::from_stored(IdentifierKind::AuthorizationCode, &d, &m)
                    .ok_or_else(|| corrupt("authorization digest", &d))?,
            ),
            _ => None,
        };
        Ok(LeaseRow {
            id: LeaseId(r.get::<_, i64>(0)? as u64),
            user: AccountId(r.get::<_, i64>(1)? as u64),
            tenant: TenantId(r.get(2)?),
            supplier: AccountId(r.get::<_, i64>(3)? as u64),
            listing: cpcid(r.get(4)?)?,
            class: parse_class(&r.get::<_, String>(5)?)?,
            cards: parse_cards(&r.get::<_, String>(6)?)?,
            quote: quote(r.get(7)?, &r.get::<_, String>(8)?, r.get(9)?)?,
            started_at: ts_of(r.get(10)?),
            ends_at: r.get::<_, Option<i64>>(11)?.map(ts_of),
            state,
            authorization,
            metered_until: ts_of(r.get(19)?),
            card_seconds: r.get::<_, i64>(20)? as u64,
            charged: Money::from_minor(r.get(21)?),
            monitoring: parse_monitoring(r.get(22)?)?,
            // Attached by `load_state` from `market_evaluations`.
            evaluation: None,
        })
    };
    inner().map_err(conv)
}

const ORDER_COLUMNS: &str = "id, user_id, tenant, supplier, cpcid, class, cards, price_version, \
     mode, unit_price, periods, placed_at, state, reason, lease";
const LEASE_COLUMNS: &str = "id, user_id, tenant, supplier, cpcid, class, cards, price_version, \
     mode, unit_price, started_at, ends_at, state, attempts_left, active_since, ended_at, \
     end_reason, code_digest, code_masked, metered_until, card_seconds, charged, monitoring";

fn load_state(conn: &Connection) -> Result<MarketState> {
    let mut prices: std::collections::BTreeMap<i64, Vec<PriceSheet>> = Default::default();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT cpcid, hourly, monthly, yearly FROM market_price_versions
             ORDER BY cpcid, version",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                PriceSheet {
                    hourly: money(r.get(1)?),
                    monthly: money(r.get(2)?),
                    yearly: money(r.get(3)?),
                },
            ))
        })?;
        for row in rows {
            let (id, sheet) = row?;
            prices.entry(id).or_default().push(sheet);
        }
    }
    let mut listings = Vec::new();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT cpcid, supplier, spec, status, delisted_at, delist_reason, reliability,
             published_at, first_card FROM market_listings ORDER BY first_card",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Option<i64>>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, i64>(8)?,
            ))
        })?;
        for row in rows {
            let (id, supplier, spec, status, at, reason, reliability, published, first) = row?;
            let history = prices.remove(&id).unwrap_or_default();
            let current = *history
                .last()
                .ok_or_else(|| corrupt("listing without prices", id))?;
            listings.push(ListingRow {
                cpcid: cpcid(id)?,
                supplier: AccountId(supplier as u64),
                spec: parse_spec(&spec, current)?,
                price_history: history,
                status: match (status.as_str(), at) {
                    ("listed", _) => ListingStatus::Listed,
                    ("delisted", Some(at)) => ListingStatus::Delisted {
                        at: ts_of(at),
                        reason: reason.unwrap_or_default(),
                    },
                    _ => return Err(corrupt("listing status", status)),
                },
                reliability: reliability.map(|r| r as u16),
                published_at: ts_of(published),
                first_card: first as u32,
            });
        }
    }
    let mut cards = Vec::new();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT id, cpcid, node, device_index, occupancy, holder, reported
             FROM market_cards ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<i64>>(5)?,
                r.get::<_, bool>(6)?,
            ))
        })?;
        for row in rows {
            let (id, listing, node, index, occupancy, holder, reported) = row?;
            cards.push(CardRow {
                id: CardId(id as u32),
                listing: cpcid(listing)?,
                spec: cpn_market::listing::CardSpec {
                    node,
                    index: index as u32,
                },
                occupancy: parse_occupancy(&occupancy, holder)?,
                reported,
            });
        }
    }
    let orders = conn
        .prepare_cached(&format!(
            "SELECT {ORDER_COLUMNS} FROM market_orders ORDER BY id"
        ))?
        .query_map([], order_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut evaluations: std::collections::BTreeMap<LeaseId, Evaluation> = conn
        .prepare_cached(
            "SELECT lease, cpcid, at, samples, availability, cpu_util, gpu_util, drop_offs,
             node_losses, score FROM market_evaluations",
        )?
        .query_map([], evaluation_from_row)?
        .map(|e| e.map(|e| (e.lease, e)))
        .collect::<rusqlite::Result<_>>()?;
    let mut leases = conn
        .prepare_cached(&format!(
            "SELECT {LEASE_COLUMNS} FROM market_leases ORDER BY id"
        ))?
        .query_map([], lease_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for l in &mut leases {
        l.evaluation = evaluations.remove(&l.id);
    }
    let mut transactions: Vec<Transaction> = Vec::new();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT t.id, t.key, t.at, t.memo, p.account, p.amount
             FROM market_transactions t JOIN market_postings p ON p.tx = t.id
             ORDER BY t.id, p.seq",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })?;
        for row in rows {
            let (id, key, at, memo, account, amount) = row?;
            let posting = Posting {
                account: parse_ledger_account(&account)?,
                amount: Money::from_minor(amount),
            };
            match transactions.last_mut() {
                Some(t) if t.id.0 == id as u64 => t.postings.push(posting),
                _ => transactions.push(Transaction {
                    id: TxId(id as u64),
                    key,
                    at: ts_of(at),
                    memo,
                    postings: vec![posting],
                }),
            }
        }
    }
    let mut budgets = Vec::new();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT tenant, monthly_limit, alarm_percent, month, spent, alarmed, exhausted
             FROM market_budgets ORDER BY tenant",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, bool>(5)?,
                r.get::<_, bool>(6)?,
            ))
        })?;
        for row in rows {
            let (tenant, limit, percent, month, spent, alarmed, exhausted) = row?;
            budgets.push(BudgetRow {
                tenant: TenantId(tenant),
                budget: (limit > 0).then(|| Budget {
                    monthly_limit: Money::from_minor(limit),
                    alarm_percent: percent as u8,
                }),
                month: parse_month(&month)?,
                spent: Money::from_minor(spent),
                alarmed,
                exhausted,
            });
        }
    }
    let next_order: Option<i64> = conn
        .prepare_cached("SELECT value FROM market_sequences WHERE name = 'order'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(MarketState {
        listings,
        cards,
        orders,
        leases,
        transactions,
        budgets,
        next_order: next_order.map_or(1, |n| n as u64),
    })
}

fn usage_from_row(r: &Row<'_>) -> rusqlite::Result<UsageRecord> {
    let inner = || -> Result<UsageRecord> {
        Ok(UsageRecord {
            lease: LeaseId(r.get::<_, i64>(0)? as u64),
            tenant: TenantId(r.get(1)?),
            supplier: AccountId(r.get::<_, i64>(2)? as u64),
            listing: cpcid(r.get(3)?)?,
            kind: parse_usage_kind(&r.get::<_, String>(4)?)?,
            quantity: r.get::<_, i64>(5)? as u64,
            start: ts_of(r.get(6)?),
            end: ts_of(r.get(7)?),
            quote: quote(r.get(8)?, &r.get::<_, String>(9)?, r.get(10)?)?,
            amount: Money::from_minor(r.get(11)?),
        })
    };
    inner().map_err(conv)
}

/// The delivery log's page, newest first. A NULL filter matches everything, so one cached
/// statement serves each shape. A recipient is `recipient = ?1`, which the index
/// `notification_attempts_by_recipient` serves in `seq` order; `?1 IS NULL OR recipient =
/// ?1` could use no index and would scan every attempt.
fn log_sql(by_recipient: bool) -> String {
    let recipient = if by_recipient {
        "recipient = ?1"
    } else {
        "?1 IS NULL"
    };
    format!(
        "SELECT idempotency_key, kind, recipient, channel, target, target_id, attempt,
         status, error, permanent, at, seq FROM notification_attempts
         WHERE {recipient} AND (?2 IS NULL OR status = ?2)
         AND (?3 IS NULL OR at >= ?3) AND (?4 IS NULL OR seq < ?4)
         ORDER BY seq DESC LIMIT ?5"
    )
}

fn attempt_from_row(r: &Row<'_>) -> rusqlite::Result<NotificationAttemptRecord> {
    Ok(NotificationAttemptRecord {
        idempotency_key: r.get(0)?,
        kind: r.get(1)?,
        recipient: r.get(2)?,
        channel: r.get(3)?,
        target: r.get(4)?,
        target_id: r.get(5)?,
        attempt: r.get::<_, i64>(6)? as u32,
        status: r.get(7)?,
        error: r.get(8)?,
        permanent: r.get(9)?,
        at: parse_ts(&r.get::<_, String>(10)?)?,
        next_attempt_at: None,
    })
}

#[async_trait]
impl MarketStore for SqliteStore {
    async fn next_market_sequence(&self, name: &str) -> Result<u64> {
        let name = name.to_string();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO market_sequences (name, value) VALUES (?1, 1)
                 ON CONFLICT (name) DO UPDATE SET value = market_sequences.value + 1",
            )?
            .execute([&name])?;
            let v: i64 = conn
                .prepare_cached("SELECT value FROM market_sequences WHERE name = ?1")?
                .query_row([&name], |r| r.get(0))?;
            Ok(v as u64)
        })
        .await
    }

    async fn create_market_account(&self, account: Account) -> Result<()> {
        self.write(move |conn| {
            let (state, reason) = account_state_parts(account.state());
            let r = conn
                .prepare_cached(
                    "INSERT INTO market_accounts (id, kind, username, state, state_reason,
                     profile, version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1)",
                )?
                .execute(params![
                    account.id().0 as i64,
                    account_kind_name(account.kind()),
                    account.username(),
                    state,
                    reason,
                    account.profile().map(profile_json)
                ]);
            match r {
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::AlreadyExists {
                        kind: "market account".into(),
                        name: account.id().0.to_string(),
                    });
                }
                other => {
                    other?;
                }
            }
            write_account_rows(conn, &account)
        })
        .await
    }

    async fn update_market_account(&self, account: Account, expected_version: u64) -> Result<u64> {
        self.write(move |conn| {
            let id = account.id().0 as i64;
            let stored: Option<(i64, String, String)> = conn
                .prepare_cached(
                    "SELECT version, kind, username FROM market_accounts WHERE id = ?1",
                )?
                .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            let Some((version, kind, username)) = stored else {
                return Err(StoreError::NotFound {
                    kind: "market account".into(),
                    id: id.to_string(),
                });
            };
            if version as u64 != expected_version {
                return Err(StoreError::StaleVersion {
                    collection: "market account".into(),
                    id: id.to_string(),
                    expected: expected_version,
                    actual: version as u64,
                });
            }
            if kind != account_kind_name(account.kind()) || username != account.username() {
                return Err(StoreError::Corrupt(format!(
                    "market account {id}: kind and username never change"
                )));
            }
            let (state, reason) = account_state_parts(account.state());
            conn.prepare_cached(
                "UPDATE market_accounts SET state = ?2, state_reason = ?3, profile = ?4,
                 version = version + 1 WHERE id = ?1",
            )?
            .execute(params![
                id,
                state,
                reason,
                account.profile().map(profile_json)
            ])?;
            write_account_rows(conn, &account)?;
            Ok(version as u64 + 1)
        })
        .await
    }

    async fn get_market_account(&self, id: AccountId) -> Result<Option<(Account, u64)>> {
        self.read(move |conn| load_account(conn, id)).await
    }

    async fn find_market_account(&self, key: &str, value: &str) -> Result<Option<AccountId>> {
        let digest = key_digest(key, value);
        let key = key.to_string();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT account FROM market_account_keys WHERE key = ?1 AND digest = ?2",
                )?
                .query_row(params![key, digest], |r| r.get::<_, i64>(0))
                .optional()?
                .map(|id| AccountId(id as u64)))
        })
        .await
    }

    async fn market_accounts_with_identifier(
        &self,
        identifier: &HashedIdentifier,
    ) -> Result<Vec<AccountId>> {
        let (kind, digest) = (
            identifier_kind_name(identifier.kind()),
            identifier.digest_hex(),
        );
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT DISTINCT account FROM market_account_identifiers
                 WHERE digest = ?1 AND kind = ?2 ORDER BY account",
            )?;
            let rows = stmt.query_map(params![digest, kind], |r| r.get::<_, i64>(0))?;
            Ok(rows
                .map(|r| r.map(|id| AccountId(id as u64)))
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn market_accounts_in_state(&self, state: &str) -> Result<Vec<AccountId>> {
        let state = state.to_string();
        self.read(move |conn| {
            let mut stmt =
                conn.prepare_cached("SELECT id FROM market_accounts WHERE state = ?1 ORDER BY id")?;
            let rows = stmt.query_map([state], |r| r.get::<_, i64>(0))?;
            Ok(rows
                .map(|r| r.map(|id| AccountId(id as u64)))
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn load_market(&self) -> Result<MarketState> {
        self.read(|conn| {
            // One read transaction: the rows of all tables are of the same moment.
            conn.execute_batch("BEGIN")?;
            let state = load_state(conn);
            // Ended either way: the connection goes back to the pool.
            conn.execute_batch(if state.is_ok() { "COMMIT" } else { "ROLLBACK" })?;
            state
        })
        .await
    }

    async fn apply_market(
        &self,
        write: MarketWrite,
    ) -> Result<std::result::Result<(), MarketRefusal>> {
        self.write(move |conn| {
            // A refusal is an answer, not an error, so the writer would commit what the
            // write did before it: its own savepoint undoes that.
            conn.execute_batch("SAVEPOINT market_write")?;
            match apply(conn, &write) {
                Ok(Ok(())) => {
                    conn.execute_batch("RELEASE market_write")?;
                    Ok(Ok(()))
                }
                Ok(Err(refusal)) => {
                    conn.execute_batch("ROLLBACK TO market_write; RELEASE market_write")?;
                    Ok(Err(refusal))
                }
                Err(e) => Err(e),
            }
        })
        .await
    }

    async fn market_usage(&self, month: Month) -> Result<Vec<UsageRecord>> {
        let (start, end) = (month.start().unix(), month.end().unix());
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT lease, tenant, supplier, cpcid, kind, quantity, start_at, end_at,
                 price_version, mode, unit_price, amount FROM market_usage
                 WHERE start_at >= ?1 AND start_at < ?2 ORDER BY seq",
            )?;
            let rows = stmt.query_map(params![start, end], usage_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn market_invoices(&self, month: Month) -> Result<Vec<StoredInvoice>> {
        let month = month.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT month, tenant, total, csv FROM market_invoices WHERE month = ?1
                 ORDER BY tenant",
            )?;
            let rows = stmt.query_map([month], |r| {
                Ok(StoredInvoice {
                    month: r.get(0)?,
                    tenant: r.get(1)?,
                    total_minor: r.get(2)?,
                    csv: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn market_statements(&self, month: Month) -> Result<Vec<StoredStatement>> {
        let month = month.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT month, supplier, gross, commission, net, csv FROM market_statements
                 WHERE month = ?1 ORDER BY supplier",
            )?;
            let rows = stmt.query_map([month], |r| {
                Ok(StoredStatement {
                    month: r.get(0)?,
                    supplier: AccountId(r.get::<_, i64>(1)? as u64),
                    gross_minor: r.get(2)?,
                    commission_minor: r.get(3)?,
                    net_minor: r.get(4)?,
                    csv: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn record_notification_attempt(&self, a: NotificationAttemptRecord) -> Result<()> {
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO notification_attempts (idempotency_key, kind, recipient, channel,
                 target, target_id, attempt, status, error, permanent, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                a.idempotency_key,
                a.kind,
                a.recipient,
                a.channel,
                a.target,
                a.target_id,
                i64::from(a.attempt),
                a.status,
                a.error,
                a.permanent,
                ts(a.at)
            ])?;
            // The pending outbox entry counts the attempt in the same write, so its view
            // never disagrees with the log.
            conn.prepare_cached(
                "UPDATE notification_outbox SET attempts = attempts + 1,
                 last_error = COALESCE(?2, last_error),
                 next_attempt_at = COALESCE(?3, next_attempt_at)
                 WHERE key = ?1 AND state = 'pending'",
            )?
            .execute(params![
                a.idempotency_key,
                a.error,
                a.next_attempt_at.map(ts)
            ])?;
            Ok(())
        })
        .await
    }

    async fn notification_delivered(&self, idempotency_key: &str, target_id: &str) -> Result<bool> {
        let (key, target) = (idempotency_key.to_string(), target_id.to_string());
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT 1 FROM notification_attempts WHERE idempotency_key = ?1
                     AND target_id = ?2 AND status = 'delivered' LIMIT 1",
                )?
                .query_row(params![key, target], |_| Ok(()))
                .optional()?
                .is_some())
        })
        .await
    }

    async fn notification_attempts(
        &self,
        idempotency_key: &str,
    ) -> Result<Vec<NotificationAttemptRecord>> {
        let key = idempotency_key.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT idempotency_key, kind, recipient, channel, target, target_id, attempt,
                 status, error, permanent, at FROM notification_attempts
                 WHERE idempotency_key = ?1 ORDER BY seq",
            )?;
            let rows = stmt.query_map([key], attempt_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn notification_log(
        &self,
        q: NotificationLogQuery,
    ) -> Result<Vec<(u64, NotificationAttemptRecord)>> {
        let limit = q.limit.min(NotificationLogQuery::MAX_LIMIT);
        let before = q.before.map(|b| i64::try_from(b).unwrap_or(i64::MAX));
        let since = q.since.map(ts);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&log_sql(q.recipient.is_some()))?;
            let rows = stmt.query_map(
                params![q.recipient, q.status, since, before, i64::from(limit)],
                |r| Ok((r.get::<_, i64>(11)? as u64, attempt_from_row(r)?)),
            )?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delivery_log_of_one_recipient_is_read_by_its_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let conn = rusqlite::Connection::open(store.path()).unwrap();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", log_sql(true)))
            .unwrap()
            .query_map(
                params!["ana", None::<String>, None::<String>, None::<i64>, 100],
                |r| r.get::<_, String>(3),
            )
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(
            plan.iter()
                .any(|p| p.contains("USING INDEX notification_attempts_by_recipient")),
            "{plan:?}"
        );
        assert!(
            !plan.iter().any(|p| p.contains("TEMP B-TREE")),
            "the index gives the order too: {plan:?}"
        );
    }
}
