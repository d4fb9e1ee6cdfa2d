//! The sharing marketplace (issue #14): accounts, listings and their cards, orders, leases,
//! usage, the double-entry ledger, budgets, closed months, and the notification delivery log.
//!
//! The store is the source of truth; the server's `cpn_market::Market` is a cache of it,
//! rebuilt at start from [`MarketStore::load_market`] with `Market::restore`. Every operation
//! on the market is followed by one [`MarketStore::apply_market`] with the operation's
//! effects (`Market::take_changes`) before the server answers, so an acknowledged lease,
//! ledger transaction or card state survives a crash. The write checks what the domain
//! promises in the same transaction, and refuses the whole write otherwise:
//!
//! - the card allocation contract: a card changes only from the state the market last
//!   stored; a reservation is `UPDATE … WHERE state = 'idle'` on a listed listing, with a
//!   row-count check per card, so of two writers reserving the last card exactly one wins;
//! - the ledger: every transaction's postings sum to zero, and its idempotency key is unique;
//! - rows a market created are new (a second writer with the same order number is refused).
//!
//! The trait speaks in `cpn_market`'s own persistence types (the pure core's rows), not in
//! API types, so a PostgreSQL implementation needs only this file's contract.

use crate::Result;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cpn_market::billing::{MonthClose, UsageRecord};
use cpn_market::{Account, AccountId, HashedIdentifier, MarketChanges, MarketState, Month};

/// What one [`MarketStore::apply_market`] writes: the market's changes plus what its
/// operations returned rather than kept (usage records, a month's close).
#[derive(Debug, Clone, Default)]
pub struct MarketWrite {
    pub changes: MarketChanges,
    /// From `LeaseStarted::usage`, `MeterRun::usage` and `Market::record_task_usage`.
    pub usage: Vec<UsageRecord>,
    /// The invoices and statements of `Market::close_month` (its settlement transactions
    /// are in `changes`).
    pub close: Option<MonthClose>,
    /// The notifications the change causes (a lease started or ended, a budget alarm),
    /// written in the same transaction: stored with the change or not at all. One whose key
    /// is in the outbox already, or whose recipient is full, is skipped, not refused.
    pub outbox: Vec<crate::NewOutboxEntry>,
}

/// Why a market write was refused as a whole. Each means the market in memory is not what
/// the store holds: the server drops it, restores it from the store and answers the request
/// from there (for a reservation: the card was taken by someone else).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarketRefusal {
    #[error("card {card} is {found}, not {expected} as this write assumed")]
    CardChanged {
        card: u32,
        expected: String,
        found: String,
    },
    #[error("cluster {cpcid} is not listed; its cards cannot be reserved")]
    NotListed { cpcid: String },
    #[error("{what} {id} exists already")]
    Exists { what: &'static str, id: String },
    #[error("{what} {id} does not exist")]
    Missing { what: &'static str, id: String },
    #[error("ledger transaction {tx} ({key}) sums to {sum} minor units, not zero")]
    Unbalanced { tx: u64, key: String, sum: i64 },
    #[error("the {what} of {month} for {party} was closed already with other figures")]
    ClosedDifferently {
        what: &'static str,
        month: String,
        party: String,
    },
}

/// A stored invoice of a closed month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredInvoice {
    pub month: String,
    pub tenant: String,
    pub total_minor: i64,
    /// `Invoice::to_csv`.
    pub csv: String,
}

/// A stored settlement statement of a closed month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredStatement {
    pub month: String,
    pub supplier: AccountId,
    pub gross_minor: i64,
    pub commission_minor: i64,
    pub net_minor: i64,
    /// `Statement::to_csv`.
    pub csv: String,
}

/// One attempt of `cpn_notify`'s dispatcher, as its `DeliveryLog` records it. The store
/// does not depend on `cpn-notify` (a transport crate above it); the server's adapter maps
/// `DeliveryAttempt` to this row, its enums by their snake_case names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationAttemptRecord {
    pub idempotency_key: String,
    pub kind: String,
    pub recipient: String,
    pub channel: String,
    /// Masked, as the dispatcher gives it.
    pub target: String,
    pub target_id: String,
    pub attempt: u32,
    /// `delivered`, `retrying` or `failed`.
    pub status: String,
    pub error: Option<String>,
    pub permanent: bool,
    pub at: DateTime<Utc>,
    /// A `retrying` attempt: when the next one is due. Not kept in the log; it becomes the
    /// outbox entry's next attempt time, written with the attempt.
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// Which delivery attempts [`MarketStore::notification_log`] lists, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotificationLogQuery {
    /// Only attempts of notifications to this recipient (the username the notifier records).
    pub recipient: Option<String>,
    /// `delivered`, `retrying` or `failed`.
    pub status: Option<String>,
    /// Only attempts at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// The page after a previous one: only attempts with a sequence number below this.
    pub before: Option<u64>,
    /// At most this many, capped at [`NotificationLogQuery::MAX_LIMIT`].
    pub limit: u32,
}

impl NotificationLogQuery {
    /// The longest page: a user may ask for many, the store reads no more than this.
    pub const MAX_LIMIT: u32 = 500;
}

#[async_trait]
pub trait MarketStore: Send + Sync + 'static {
    /// The next number of a named sequence, from 1: `account` for account ids, `listing` for
    /// the CPcId sequence `Catalog::publish` takes. Never repeats, even across restarts.
    async fn next_market_sequence(&self, name: &str) -> Result<u64>;

    /// Stores a new account with its history. `AlreadyExists` when its username (compared
    /// case-insensitively), e-mail or phone belongs to another account, or its id is taken.
    async fn create_market_account(&self, account: Account) -> Result<()>;

    /// Replaces an account (profile, state, keys, identifiers; history entries are
    /// appended, never rewritten) if its stored version is `expected_version`, otherwise
    /// `StaleVersion`. Returns the new version. Deregistration erases the identifiers and the
    /// contact keys; the username stays reserved.
    async fn update_market_account(&self, account: Account, expected_version: u64) -> Result<u64>;

    /// An account and its version.
    async fn get_market_account(&self, id: AccountId) -> Result<Option<(Account, u64)>>;

    /// The account holding a uniqueness key (`username`, `contact.email`, `contact.phone`,
    /// as `AccountProfile::uniqueness_keys` normalizes them).
    async fn find_market_account(&self, key: &str, value: &str) -> Result<Option<AccountId>>;

    /// Accounts whose profile holds this identifier (same number registered again).
    async fn market_accounts_with_identifier(
        &self,
        identifier: &HashedIdentifier,
    ) -> Result<Vec<AccountId>>;

    /// Accounts in a state (`AccountState::name`), by id: e.g. the review queue.
    async fn market_accounts_in_state(&self, state: &str) -> Result<Vec<AccountId>>;

    /// Everything `Market::restore` needs.
    async fn load_market(&self) -> Result<MarketState>;

    /// Writes one operation's effects in one transaction, or nothing (see the module
    /// documentation for the checks). `Ok(Err(_))`: refused, nothing written.
    async fn apply_market(
        &self,
        write: MarketWrite,
    ) -> Result<std::result::Result<(), MarketRefusal>>;

    /// The usage records that start in `month`, in the order they were written: the input
    /// of `Market::close_month`.
    async fn market_usage(&self, month: Month) -> Result<Vec<UsageRecord>>;

    async fn market_invoices(&self, month: Month) -> Result<Vec<StoredInvoice>>;
    async fn market_statements(&self, month: Month) -> Result<Vec<StoredStatement>>;

    /// Appends one delivery attempt.
    async fn record_notification_attempt(&self, attempt: NotificationAttemptRecord) -> Result<()>;
    /// Whether an attempt with this key and target id was delivered.
    async fn notification_delivered(&self, idempotency_key: &str, target_id: &str) -> Result<bool>;
    /// The attempts of one notification, oldest first.
    async fn notification_attempts(
        &self,
        idempotency_key: &str,
    ) -> Result<Vec<NotificationAttemptRecord>>;
    /// The delivery log, newest first, each attempt with its sequence number (the cursor
    /// of the next page, `NotificationLogQuery::before`).
    async fn notification_log(
        &self,
        query: NotificationLogQuery,
    ) -> Result<Vec<(u64, NotificationAttemptRecord)>>;
}
