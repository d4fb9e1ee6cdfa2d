//! Notifications for cpn (SH-CL-23; the alarms of I1, IF-I1-03; issue #14's account, lease
//! and billing events): e-mail over SMTP, signed webhooks and an SMS gateway, per user
//! subscriptions, retries with backoff, and a delivery log.
//!
//! The server builds one [`Dispatcher`] at start-up from a [`DispatcherConfig`] and a
//! [`DeliveryLog`] (its store), then for each event builds a [`Notification`] and calls
//! [`Dispatcher::notify`] with the recipient's [`Subscription`]s, or [`Dispatcher::deliver`]
//! with explicit [`Target`]s for messages that ignore subscriptions (registration codes).
//! Webhook receivers check requests with [`verify_signature`]; the headers and the body are
//! documented in [`signature`] and on [`WebhookChannel`], the SMS gateway's request on
//! [`SmsChannel`].
//!
//! Nothing here logs a secret, a password or a full address: targets print masked
//! ([`Target::masked`]) and the log keeps a salted fingerprint instead of the address.

#![warn(unreachable_pub)]

mod channel;
mod dispatcher;
mod log;
mod notification;
mod retry;
pub mod signature;
mod target;

pub use channel::{
    ConfigError, SendError, SmsChannel, SmsGatewayConfig, SmtpChannel, SmtpConfig, SmtpCredentials,
    SmtpSecurity, WebhookChannel, WebhookConfig,
};
pub use dispatcher::{DeliveryReport, DeliveryStatus, Dispatcher, DispatcherConfig, TargetReport};
pub use log::{AttemptStatus, DeliveryAttempt, DeliveryLog, InMemoryDeliveryLog, LogError};
pub use notification::{EventKind, Notification, NotificationError};
pub use retry::{RetryPolicy, RetryPolicyError};
pub use signature::{SignatureError, verify_signature};
pub use target::{ChannelKind, Subscription, Target, TargetError, WebhookSecret};

/// A public base URL for links in messages (`cpn serve --public-url`): an absolute http(s)
/// URL with a host, no credentials, query or fragment. Returned without its trailing slash,
/// so paths can be appended; `None` when it is not one.
pub fn public_base_url(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    let fit = matches!(parsed.scheme(), "http" | "https")
        && parsed.host_str().is_some()
        && parsed.username().is_empty()
        && parsed.password().is_none()
        && parsed.query().is_none()
        && parsed.fragment().is_none();
    fit.then(|| url.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod public_url_tests {
    use super::public_base_url;

    #[test]
    fn only_absolute_http_urls_without_credentials_or_query_pass() {
        assert_eq!(
            public_base_url("https://cpn.example.org/").as_deref(),
            Some("https://cpn.example.org")
        );
        assert!(public_base_url("http://10.0.0.1:8080/cpn").is_some());
        for bad in [
            "cpn.example.org",
            "ftp://x",
            "https://u:p@x",
            "https://x/?a=1",
            "https://x/#f",
            "/rel",
        ] {
            assert!(public_base_url(bad).is_none(), "{bad}");
        }
    }
}
