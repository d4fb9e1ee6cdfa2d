//! Notifications that must survive a crash (issue #14): the outbox the server writes before
//! it answers and delivers from in the background, and the pending verification codes of
//! marketplace registration, kept only as keyed hashes.
//!
//! The outbox holds each message (its notification and targets, as the server serialized
//! them) until it is settled, then erases the message and keeps the row, so the key still
//! deduplicates a resend and the delivery log (`notification_attempts`) keeps the attempts.
//! Settled rows are purged after a while ([`OutboxStore::purge_settled_notifications`]), and
//! a recipient has at most a bounded number of pending ones ([`Enqueued::Full`]).

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
    /// Stores a notification for delivery, unless its key is there already or `recipient` has
    /// `max_pending` pending entries. Durable when it returns.
    async fn enqueue_notification(
        &self,
        key: &str,
        recipient: &str,
        message: &str,
        now: DateTime<Utc>,
        max_pending: usize,
    ) -> Result<Enqueued>;

    /// Pending entries after `after_seq`, oldest first, at most `limit`.
    async fn pending_notifications(&self, after_seq: u64, limit: usize)
    -> Result<Vec<OutboxEntry>>;

    /// Marks a pending entry settled and erases its message; a settled one stays as it is.
    async fn settle_notification(&self, seq: u64, how: Settled, now: DateTime<Utc>) -> Result<()>;

    /// The state of the entry with this key (`pending`, `delivered`, `failed`).
    async fn notification_state(&self, key: &str) -> Result<Option<String>>;

    /// Deletes entries settled before `before`; how many.
    async fn purge_settled_notifications(&self, before: DateTime<Utc>) -> Result<u64>;

    /// Stores `code`, replacing the account's earlier code of the same purpose.
    async fn put_pending_code(&self, code: StoredCode) -> Result<()>;

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
