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
