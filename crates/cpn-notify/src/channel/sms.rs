//! The SMS gateway interface. cpn does not speak to carriers; it POSTs each message to one
//! configured HTTP gateway, which an operator points at their SMS provider (or a small
//! adapter in front of it). The request is
//!
//! ```text
//! POST <gateway url>
//! Content-Type: application/json
//! Authorization: Bearer <token>          (when a token is configured)
//! X-Cpn-Idempotency-Key: <key>           (the gateway may deduplicate on it)
//!
//! {"to": "+8613800138000", "text": "...", "kind": "account", "id": "<key>"}
//! ```
//!
//! `to` is E.164, `text` is the notification's plain-text body (callers keep it short and
//! self-contained; splitting long texts is the gateway's business). Any 2xx answer means the
//! gateway accepted the message; 4xx but 408/425/429 is a permanent refusal, the rest are
//! retried.

use std::fmt;
use std::time::Duration;

use serde_json::json;

use super::{ConfigError, SendError, http_client, post_json};
use crate::signature::IDEMPOTENCY_HEADER;
use crate::{ChannelKind, Notification};

/// Where the SMS gateway is and how to authenticate to it.
#[derive(Clone)]
pub struct SmsGatewayConfig {
    pub url: String,
    /// Sent as `Authorization: Bearer <token>`; never logged.
    pub token: Option<String>,
    pub timeout: Duration,
}

impl fmt::Debug for SmsGatewayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmsGatewayConfig")
            .field("url", &crate::target::mask_url(&self.url))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Sends SMS through the configured gateway.
#[derive(Debug, Clone)]
pub struct SmsChannel {
    client: reqwest::Client,
    config: SmsGatewayConfig,
    masked_url: String,
}

impl SmsChannel {
    pub fn new(config: SmsGatewayConfig) -> Result<Self, ConfigError> {
        let ok = reqwest::Url::parse(&config.url)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
        if !ok {
            return Err(ConfigError::BadGatewayUrl(config.url));
        }
        if config.timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout);
        }
        Ok(Self {
            // The gateway is the operator's own choice, so private addresses are fine here.
            client: http_client(false)?,
            masked_url: crate::target::mask_url(&config.url),
            config,
        })
    }

    /// The exact body the gateway receives for `n` sent to `phone`.
    pub fn body(n: &Notification, phone: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "to": phone,
            "text": n.body(),
            "kind": n.kind(),
            "id": n.idempotency_key(),
        }))
        .expect("a JSON value always serializes")
    }

    /// One attempt.
    pub async fn send(&self, n: &Notification, phone: &str) -> Result<(), SendError> {
        let mut headers = vec![(IDEMPOTENCY_HEADER, n.idempotency_key().to_owned())];
        if let Some(token) = &self.config.token {
            headers.push(("Authorization", format!("Bearer {token}")));
        }
        post_json(
            &self.client,
            ChannelKind::Sms,
            &self.config.url,
            &self.masked_url,
            &headers,
            Self::body(n, phone),
            self.config.timeout,
        )
        .await
    }
}
