//! Signed webhooks: an HTTP POST of the notification as JSON, signed with HMAC-SHA256 over
//! the timestamp and the body (see [`crate::signature`] for the headers and how a receiver
//! verifies them).
//!
//! The body is one JSON object:
//! `{"id": key, "kind": "alarm", "recipient": "user id", "subject": "...", "text": "...",
//!   "payload": {...}, "created_at": "RFC 3339"}`; `payload` is the notification's
//! structured payload, unchanged. Any 2xx answer counts as delivered.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::{ConfigError, SendError, http_client, post_json};
use crate::signature::{
    EVENT_HEADER, IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign,
};
use crate::{ChannelKind, Notification, WebhookSecret};

/// Webhook settings shared by every webhook target.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// How long one attempt may take, connection included.
    pub timeout: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        // Receivers should answer at once and work later; 10 s spots a hung one.
        Self {
            timeout: Duration::from_secs(10),
        }
    }
}

/// Posts signed notifications to webhook URLs.
#[derive(Debug, Clone)]
pub struct WebhookChannel {
    client: reqwest::Client,
    timeout: Duration,
}

impl WebhookChannel {
    pub fn new(config: WebhookConfig) -> Result<Self, ConfigError> {
        if config.timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout);
        }
        Ok(Self {
            client: http_client()?,
            timeout: config.timeout,
        })
    }

    /// The exact body a webhook receives for `n`.
    pub fn body(n: &Notification) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "id": n.idempotency_key(),
            "kind": n.kind(),
            "recipient": n.recipient(),
            "subject": n.subject(),
            "text": n.body(),
            "payload": n.payload(),
            "created_at": n.created_at(),
        }))
        .expect("a JSON value always serializes")
    }

    /// One attempt: sign now and POST.
    pub async fn send(
        &self,
        n: &Notification,
        url: &str,
        masked_url: &str,
        secret: &WebhookSecret,
    ) -> Result<(), SendError> {
        let body = Self::body(n);
        // Signed per attempt, so a retry an hour later still passes the receiver's age check.
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let headers = [
            (TIMESTAMP_HEADER, ts.to_string()),
            (SIGNATURE_HEADER, sign(secret.expose(), ts, &body)),
            (IDEMPOTENCY_HEADER, n.idempotency_key().to_owned()),
            (EVENT_HEADER, n.kind().as_str().to_owned()),
        ];
        post_json(
            &self.client,
            ChannelKind::Webhook,
            url,
            masked_url,
            &headers,
            body,
            self.timeout,
        )
        .await
    }
}
