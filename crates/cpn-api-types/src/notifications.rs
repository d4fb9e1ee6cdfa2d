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
