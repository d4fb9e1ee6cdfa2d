//! Notifications that must survive a crash (issue #14): the outbox the server writes before
//! it answers and delivers from in the background, and the pending verification codes of
//! marketplace registration, kept only as keyed hashes.
//!
//! The outbox holds each message (its notification and targets, as the server serialized
//! them) until it is delivered, then erases the message and keeps the row, so the key still
//! deduplicates a resend and the delivery log (`notification_attempts`) keeps the attempts.
//! A failed entry keeps its message, so an operator can send it again
//! ([`OutboxStore::retry_notification`]) until it is purged. Settled rows are purged after a
//! while ([`OutboxStore::purge_settled_notifications`]), and a recipient has at most a
//! bounded number of pending ones ([`Enqueued::Full`]).
//!
//! An entry is written either alone ([`OutboxStore::enqueue_notification`]) or within the
//! write that causes it (`MarketWrite::outbox`, and the verification codes a message
//! carries, [`OutboxStore::put_pending_codes`]), so the change and its notification are
//! stored together or not at all.

use crate::Result;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// One pending notification, as [`OutboxStore::enqueue_notification`] stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub seq: u64,
    /// The notification's idempotency key: one entry per key.
    pub key: String,
    pub recipient: String,
    /// What the server serialized; opaque to the store.
    pub message: String,
    pub created_at: DateTime<Utc>,
}

/// A notification to store in the outbox, alone or with the market write that causes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutboxEntry {
    /// The notification's idempotency key: one entry per key.
    pub key: String,
    pub recipient: String,
    /// `alarm`, `account`, `lease`, `billing`: what an operator sees of the message.
    pub kind: String,
    /// The targets masked (`al***@example.cn`), never an address.
    pub targets: Vec<String>,
    /// What the server serialized; opaque to the store.
    pub message: String,
    pub created_at: DateTime<Utc>,
    /// Stored only while the recipient has fewer pending entries than this.
    pub max_pending: usize,
}

/// One outbox entry as an operator sees it: no message, which may hold a secret (a
/// verification code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxSummary {
    pub seq: u64,
    pub key: String,
    pub kind: String,
    pub recipient: String,
    pub targets: Vec<String>,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    /// Delivery attempts since it was queued or last retried, over all its targets.
    pub attempts: u32,
    /// While pending: when the next attempt is due (after a retry's backoff, or at once).
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub settled_at: Option<DateTime<Utc>>,
}

/// Which entries [`OutboxStore::outbox`] lists, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxQuery {
    /// `pending`, `delivered` or `failed`.
    pub state: Option<String>,
    pub recipient: Option<String>,
    /// The page after a previous one: only entries with a sequence number below this.
    pub before: Option<u64>,
    /// At most this many, capped at [`OutboxQuery::MAX_LIMIT`].
    pub limit: u32,
}

impl OutboxQuery {
    pub const MAX_LIMIT: u32 = 500;
}

/// What [`OutboxStore::retry_notification`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retried {
    /// Pending again, with no attempts counted: the outbox loop sends it.
    Pending,
    /// No entry has this number (never, or purged).
    Unknown,
    /// The entry is not failed; its state.
    NotFailed(String),
}

/// What [`OutboxStore::enqueue_notification`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Stored; the outbox loop sends it.
    Queued,
    /// An entry with this key exists (pending or settled): the same event again.
    Duplicate,
    /// The recipient has this many pending entries already; nothing stored.
    Full { pending: usize },
}

/// How an entry ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Delivered,
    Failed,
}

impl Settled {
    pub fn as_str(self) -> &'static str {
        match self {
            Settled::Delivered => "delivered",
            Settled::Failed => "failed",
        }
    }
}

/// A one-time code waiting to be entered: its keyed digest (never the code), the unix time
/// it expires, the wrong tries it has left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCode {
    pub account: u64,
    /// What the code proves (`registration`, `activation`): one pending code per purpose.
    pub purpose: String,
    pub digest_hex: String,
    pub issued_at: i64,
    pub expires_at: i64,
    pub attempts_left: u32,
}

#[async_trait]
pub trait OutboxStore {
    /// Stores a notification for delivery, unless its key is there already or its recipient
    /// has `max_pending` pending entries. Durable when it returns.
    async fn enqueue_notification(&self, entry: NewOutboxEntry) -> Result<Enqueued>;

    /// Pending entries after `after_seq`, oldest first, at most `limit`.
    async fn pending_notifications(&self, after_seq: u64, limit: usize)
    -> Result<Vec<OutboxEntry>>;

    /// Marks a pending entry settled; a delivered one loses its message, a failed one keeps
    /// it for [`OutboxStore::retry_notification`]. A settled one stays as it is.
    async fn settle_notification(&self, seq: u64, how: Settled, now: DateTime<Utc>) -> Result<()>;

    /// Puts a failed entry back to pending with no attempts counted, due `now`.
    async fn retry_notification(&self, seq: u64, now: DateTime<Utc>) -> Result<Retried>;

    /// Entries newest first, without their messages.
    async fn outbox(&self, query: OutboxQuery) -> Result<Vec<OutboxSummary>>;

    /// The state of the entry with this key (`pending`, `delivered`, `failed`).
    async fn notification_state(&self, key: &str) -> Result<Option<String>>;

    /// Deletes entries settled before `before`; how many.
    async fn purge_settled_notifications(&self, before: DateTime<Utc>) -> Result<u64>;

    /// Stores `codes` (each replacing the account's earlier code of its purpose) with
    /// `message`, the notification that carries them, in one transaction: the codes are
    /// stored only with their message, so a crash never keeps a code whose message is lost.
    /// When the message is not stored (its key is there already, or its recipient is full)
    /// neither are the codes, and the answer says why.
    async fn put_pending_codes(
        &self,
        codes: Vec<StoredCode>,
        message: NewOutboxEntry,
    ) -> Result<Enqueued>;

    /// The pending code of an account and purpose, unchanged.
    async fn pending_code(&self, account: u64, purpose: &str) -> Result<Option<StoredCode>>;

    /// Uses one try of the pending code: returns it as it was before, and stores it with one
    /// try less (none less at zero). In one write, so concurrent guesses each cost a try.
    async fn take_code_attempt(&self, account: u64, purpose: &str) -> Result<Option<StoredCode>>;

    /// Removes the account's pending codes (of one purpose, or all); whether one was there.
    async fn delete_pending_codes(&self, account: u64, purpose: Option<&str>) -> Result<bool>;

    /// Removes codes that expired before `now_unix`; how many.
    async fn purge_expired_codes(&self, now_unix: i64) -> Result<u64>;
}
