//! Signed webhooks: an HTTP POST of the notification as JSON, signed with HMAC-SHA256 over
//! the timestamp and the body (see [`crate::signature`] for the headers and how a receiver
//! verifies them).
//!
//! The body is one JSON object:
//! `{"id": key, "kind": "alarm", "recipient": "user id", "subject": "...", "text": "...",
//!   "payload": {...}, "created_at": "RFC 3339"}`; `payload` is the notification's
//! structured payload, unchanged. Any 2xx answer counts as delivered.

use std::net::{IpAddr, SocketAddr};
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
    /// Whether webhooks may go to loopback, private, link-local and other non-public
    /// addresses. Off by default: users choose webhook URLs, and every tenant is assumed
    /// hostile, so without this a subscription could make the server POST to its own admin
    /// ports or a cloud metadata service (SSRF). Tests and single-site installs whose
    /// receivers live on the LAN turn it on.
    pub allow_private_addresses: bool,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        // Receivers should answer at once and work later; 10 s spots a hung one.
        Self {
            timeout: Duration::from_secs(10),
            allow_private_addresses: false,
        }
    }
}

/// Posts signed notifications to webhook URLs.
#[derive(Debug, Clone)]
pub struct WebhookChannel {
    client: reqwest::Client,
    timeout: Duration,
    allow_private: bool,
}

/// The address a webhook host resolved to is not public; see
/// [`WebhookConfig::allow_private_addresses`].
#[derive(Debug)]
pub(crate) struct PrivateAddress;

impl std::fmt::Display for PrivateAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the host resolves only to non-public addresses")
    }
}

impl std::error::Error for PrivateAddress {}

/// Resolves like the system does, then drops every non-public address. Filtering after
/// resolution (not on the URL's text) is what stops a public name that points at
/// 127.0.0.1; connecting only to the filtered addresses stops a second, different answer.
pub(crate) struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(Box::new(PrivateAddress) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether `ip` is an ordinary Internet address: not loopback, private (RFC 1918, IPv6
/// ULA), link-local (cloud metadata lives there), shared (CGNAT), unspecified, broadcast or
/// multicast.
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

impl WebhookChannel {
    pub fn new(config: WebhookConfig) -> Result<Self, ConfigError> {
        if config.timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout);
        }
        Ok(Self {
            client: http_client(!config.allow_private_addresses)?,
            timeout: config.timeout,
            allow_private: config.allow_private_addresses,
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
        if !self.allow_private {
            // An IP literal is never resolved, so the resolver's filter does not see it.
            let literal = reqwest::Url::parse(url).ok().and_then(|u| {
                let host = u.host_str()?;
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .ok()
            });
            if literal.is_some_and(|ip| !is_public(ip)) {
                return Err(SendError::PrivateAddress {
                    url: masked_url.to_owned(),
                });
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "ff02::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["1.1.1.1", "8.8.8.8", "100.128.0.1", "2606:4700:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }
}
