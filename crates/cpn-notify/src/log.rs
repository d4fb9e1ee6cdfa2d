//! The delivery log: one record per attempt, behind a trait so the server can keep it in its
//! store; `InMemoryDeliveryLog` serves this crate's tests and embedded use. Records hold the
//! masked target and a fingerprint, never an address, phone number or secret.

use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{ChannelKind, EventKind};

/// What one attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptStatus {
    /// The relay, receiver or gateway accepted it.
    Delivered,
    /// It failed and another attempt follows after a backoff.
    Retrying,
    /// It failed for good: a permanent error, or the last attempt allowed.
    Failed,
}

/// One attempt to deliver one notification to one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    pub idempotency_key: String,
    pub kind: EventKind,
    pub recipient: String,
    pub channel: ChannelKind,
    /// The masked target (`al***@example.org`, `+86*******8000`, a URL without its query).
    pub target: String,
    /// [`crate::Target::fingerprint`]: equal for the same key and target, nothing else.
    pub target_id: String,
    /// 1 for the first try.
    pub attempt: u32,
    pub status: AttemptStatus,
    /// What went wrong, when it did; it names no secret.
    pub error: Option<String>,
    /// Whether the error is permanent (not retried).
    pub permanent: bool,
    pub at: DateTime<Utc>,
    /// A `Retrying` attempt: when the next one is due, after the backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// The store behind the delivery log could not be used.
#[derive(Debug, thiserror::Error)]
#[error("delivery log: {0}")]
pub struct LogError(pub String);

/// Where delivery attempts are recorded.
///
/// Contract: `record` is called once per attempt, after it ended, in attempt order per
/// (key, target); it should be cheap (a row insert). `delivered` answers whether an attempt
/// with this key and target id was `Delivered`; the dispatcher asks it before sending, so a
/// notification sent twice (a retry by the caller, a restart) reaches each target once.
/// When the log fails the dispatcher still delivers: losing a log row is better than losing
/// an alarm; the failure is reported through tracing.
#[async_trait]
pub trait DeliveryLog: Send + Sync {
    async fn record(&self, attempt: &DeliveryAttempt) -> Result<(), LogError>;
    async fn delivered(&self, idempotency_key: &str, target_id: &str) -> Result<bool, LogError>;
}

/// A delivery log in memory, for tests and for a process that keeps no store.
#[derive(Debug, Default)]
pub struct InMemoryDeliveryLog {
    attempts: Mutex<Vec<DeliveryAttempt>>,
}

impl InMemoryDeliveryLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every attempt recorded so far, oldest first.
    pub fn attempts(&self) -> Vec<DeliveryAttempt> {
        self.attempts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[async_trait]
impl DeliveryLog for InMemoryDeliveryLog {
    async fn record(&self, attempt: &DeliveryAttempt) -> Result<(), LogError> {
        self.attempts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(attempt.clone());
        Ok(())
    }

    async fn delivered(&self, idempotency_key: &str, target_id: &str) -> Result<bool, LogError> {
        Ok(self
            .attempts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|a| {
                a.status == AttemptStatus::Delivered
                    && a.idempotency_key == idempotency_key
                    && a.target_id == target_id
            }))
    }
}
