//! The three channels and the one error type they share. Each channel makes exactly one
//! attempt per call; retrying is the dispatcher's job, and it relies on
//! [`SendError::is_permanent`] to know when retrying cannot help.

mod sms;
mod smtp;
mod webhook;

pub use sms::{SmsChannel, SmsGatewayConfig};
pub use smtp::{SmtpChannel, SmtpConfig, SmtpCredentials, SmtpSecurity};
pub use webhook::{WebhookChannel, WebhookConfig};

use std::time::Duration;

use crate::ChannelKind;

/// Why a channel's configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("SMTP From address {0:?} is not a mailbox (e.g. \"cpn <noreply@example.org>\")")]
    BadFrom(String),
    #[error("SMTP relay host is empty; set the relay's host name (e.g. smtp.example.org)")]
    NoRelay,
    #[error(
        "SMTP credentials would go in clear to {0}; use SmtpSecurity::StartTls or Tls, or a \
         relay on loopback"
    )]
    PlainCredentials(String),
    #[error("SMTP TLS setup failed: {0}; check the extra root certificate (PEM)")]
    SmtpTls(String),
    #[error("SMS gateway URL {0:?} is not an absolute http(s) URL")]
    BadGatewayUrl(String),
    #[error("HTTP client setup failed: {0}")]
    HttpClient(String),
    #[error("a timeout of zero would fail every attempt; give a few seconds")]
    ZeroTimeout,
    #[error(
        "max_concurrent is 0, so nothing would ever be sent; allow at least 1 attempt in flight"
    )]
    ZeroConcurrency,
}

/// Why one delivery attempt failed. [`SendError::is_permanent`] says whether another attempt
/// could succeed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{channel} is not configured in this dispatcher: {hint}")]
    NotConfigured {
        channel: ChannelKind,
        hint: &'static str,
    },
    #[error("could not build the e-mail: {0}")]
    BadMessage(String),
    #[error(
        "SMTP relay {relay} refused the message ({detail}); check the recipient address and \
         that the relay accepts mail from the configured From address"
    )]
    SmtpRejected { relay: String, detail: String },
    #[error("SMTP relay {relay} deferred the message ({detail}); it is retried")]
    SmtpDeferred { relay: String, detail: String },
    #[error(
        "could not talk to SMTP relay {relay}: {detail}; check its host, port and TLS mode and \
         that it is up"
    )]
    SmtpConnection { relay: String, detail: String },
    #[error("{channel} endpoint {url} answered HTTP {status}: {hint}{body}")]
    HttpStatus {
        channel: ChannelKind,
        url: String,
        status: u16,
        hint: &'static str,
        body: String,
    },
    #[error(
        "webhook {url} points at a loopback, private or link-local address, which webhooks may \
         not reach; use a public receiver, or set WebhookConfig::allow_private_addresses for \
         an install whose receivers are on its own network"
    )]
    PrivateAddress { url: String },
    #[error("{channel} endpoint {url} did not answer within {timeout:?}; it is retried")]
    Timeout {
        channel: ChannelKind,
        url: String,
        timeout: Duration,
    },
    #[error(
        "could not reach {channel} endpoint {url}: {detail}; check the URL and that the \
         receiver is up"
    )]
    Connection {
        channel: ChannelKind,
        url: String,
        detail: String,
    },
}

impl SendError {
    /// Whether retrying cannot help: a refused request (HTTP 4xx but 408/425/429, SMTP 5xx),
    /// a message that cannot be built, a channel that is not configured. Everything else
    /// (5xx, SMTP 4xx, timeouts, refused connections) may pass later and is retried.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::NotConfigured { .. }
            | Self::BadMessage(_)
            | Self::SmtpRejected { .. }
            | Self::PrivateAddress { .. } => true,
            Self::HttpStatus { status, .. } => http_status_is_permanent(*status),
            Self::SmtpDeferred { .. }
            | Self::SmtpConnection { .. }
            | Self::Timeout { .. }
            | Self::Connection { .. } => false,
        }
    }
}

/// 4xx means "this request is wrong" and sending it again gives the same answer, except
/// 408 (request timeout), 425 (too early) and 429 (too many requests), which ask for a
/// later retry. 5xx and anything unexpected (1xx, 3xx: redirects are not followed, since a
/// signed body must not be re-posted to wherever a receiver points) are retried, bounded.
pub(crate) fn http_status_is_permanent(status: u16) -> bool {
    (400..500).contains(&status) && !matches!(status, 408 | 425 | 429)
}

fn http_hint(status: u16) -> &'static str {
    if http_status_is_permanent(status) {
        "the receiver refused the request, so it is not retried; fix the subscription \
         (URL, secret) or the receiver"
    } else {
        "the receiver failed or is busy; it is retried"
    }
}

/// POSTs a JSON body with extra headers; shared by the webhook and SMS channels so both
/// classify answers and errors the same way.
pub(crate) async fn post_json(
    client: &reqwest::Client,
    channel: ChannelKind,
    url: &str,
    masked_url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<(), SendError> {
    let mut req = client
        .post(url)
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    let resp = req.send().await.map_err(|e| {
        if caused_by::<webhook::PrivateAddress>(&e) {
            SendError::PrivateAddress {
                url: masked_url.to_owned(),
            }
        } else if e.is_timeout() {
            SendError::Timeout {
                channel,
                url: masked_url.to_owned(),
                timeout,
            }
        } else {
            SendError::Connection {
                channel,
                url: masked_url.to_owned(),
                // without_url: reqwest prints the URL, and its query may hold a token.
                detail: error_chain(&e.without_url()),
            }
        }
    })?;
    let status = resp.status().as_u16();
    if resp.status().is_success() {
        return Ok(());
    }
    // A short excerpt of the answer helps whoever runs the receiver; more is noise, and
    // reading all of a hostile receiver's endless answer would hold memory and a permit.
    let mut resp = resp;
    let mut head = Vec::new();
    while head.len() < 1024 {
        match resp.chunk().await {
            Ok(Some(chunk)) => head.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&head);
    let excerpt: String = text.chars().take(200).collect();
    Err(SendError::HttpStatus {
        channel,
        url: masked_url.to_owned(),
        status,
        hint: http_hint(status),
        body: if excerpt.trim().is_empty() {
            String::new()
        } else {
            format!(" (answer: {})", excerpt.trim())
        },
    })
}

/// Whether `E` is somewhere in `e`'s chain of sources.
fn caused_by<E: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<E>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// An error and its sources on one line, as reqwest's top-level message alone ("error
/// sending request") does not say what failed.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The HTTP client of a channel; `public_only` resolves names through the webhook
/// channel's filter of non-public addresses.
pub(crate) fn http_client(public_only: bool) -> Result<reqwest::Client, ConfigError> {
    let mut builder = reqwest::Client::builder()
        // A redirect would re-post a signed body to wherever the receiver points, and
        // around the address filter.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("cpn-notify/", env!("CARGO_PKG_VERSION")));
    if public_only {
        // A proxy would resolve the name itself, around the filter.
        builder = builder
            .dns_resolver(std::sync::Arc::new(webhook::PublicOnly))
            .no_proxy();
    }
    builder
        .build()
        .map_err(|e| ConfigError::HttpClient(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses_are_classified() {
        for s in [400, 401, 403, 404, 410, 422] {
            assert!(http_status_is_permanent(s), "{s}");
        }
        for s in [301, 408, 425, 429, 500, 502, 503, 504] {
            assert!(!http_status_is_permanent(s), "{s}");
        }
    }
}
