//! Wire types of per-user notification subscriptions (issue #14 deliverable 6, SH-CL-23):
//! where a user's alarms and account, lease and billing events go.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotifyChannel {
    /// E-mail through the server's `--smtp-relay`.
    Email,
    /// An HTTP POST signed with HMAC-SHA256 under the subscription's secret.
    Webhook,
    /// A text through the server's `--sms-gateway`.
    Sms,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotifyKind {
    /// Alarms of the caller's tenant (every tenant's for operators): failed, lost or
    /// unschedulable tasks, lost nodes.
    Alarm,
    Account,
    Lease,
    Billing,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateSubscription {
    pub channel: NotifyChannel,
    /// An e-mail address, an http(s) URL, or a phone number in E.164 (`+8613800138000`).
    pub target: String,
    /// Webhooks: the signing secret (at least 16 characters); never shown again.
    #[serde(default)]
    pub secret: Option<String>,
    pub kinds: Vec<NotifyKind>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Subscription {
    pub id: String,
    pub channel: NotifyChannel,
    /// Masked: `al***@example.cn`, `+86*******8000`, a URL without its query.
    pub target: String,
    pub kinds: Vec<NotifyKind>,
    pub created_at: DateTime<Utc>,
}

/// One attempt from the delivery log (`GET /api/v1/notifications/deliveries`), newest
/// first. Only operators see every recipient's; others see those addressed to themselves.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    /// The log's sequence number: `cursor` for the page after it.
    pub id: u64,
    /// Shared by every attempt of one notification (the mail's Message-ID, the webhook's
    /// `X-Cpn-Idempotency-Key`).
    pub idempotency_key: String,
    /// `alarm`, `account`, `lease` or `billing`.
    pub kind: String,
    /// The username the notification is addressed to.
    pub recipient: String,
    /// `email`, `webhook` or `sms`.
    pub channel: String,
    /// Masked, as in a subscription: never the address in clear.
    pub target: String,
    /// 1 for the first try.
    pub attempt: u32,
    /// `delivered`, `retrying` (this try failed, another follows) or `failed` (for good).
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The error is permanent: not retried.
    pub permanent: bool,
    pub at: DateTime<Utc>,
}

/// One notification in the outbox (`GET /api/v1/notifications/outbox`, operators only),
/// newest first. Never its message, which may hold a secret such as a verification code.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OutboxItem {
    /// The outbox's sequence number: `cursor` for the page after it, and the id to retry.
    pub id: u64,
    /// As in the delivery log, whose attempts of this notification share it.
    pub idempotency_key: String,
    /// `alarm`, `account`, `lease` or `billing` (empty for entries older than this field).
    pub kind: String,
    /// The username the notification is addressed to.
    pub recipient: String,
    /// Where it goes, masked as in the delivery log: never an address in clear.
    pub targets: Vec<String>,
    /// `pending` (being delivered), `delivered` or `failed` (every attempt used; an
    /// operator can retry it).
    pub state: String,
    /// Delivery attempts since it was queued or last retried, over all its targets.
    pub attempts: u32,
    /// While pending: when the next attempt is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_at: Option<DateTime<Utc>>,
}
