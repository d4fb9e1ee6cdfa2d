//! The server's notifications (issue #14, deliverable 6): one `cpn_notify::Dispatcher` built
//! at start from the `cpn serve` flags, its delivery log kept in the store's
//! `notification_attempts`, and deliveries run in the background so that no request waits
//! on an SMTP relay's retries.

use async_trait::async_trait;
use cpn_notify::{
    AttemptStatus, DeliveryAttempt, DeliveryLog, Dispatcher, DispatcherConfig, LogError,
    Notification, SmsGatewayConfig, SmtpConfig, SmtpCredentials, SmtpSecurity, Target,
};
use cpn_store::{NotificationAttemptRecord, Store};
use std::sync::Arc;
use std::time::Duration;

/// How `cpn serve` reaches people: an SMTP relay for e-mail and an HTTP SMS gateway. Both
/// optional; what is missing is refused where it is needed, naming the flag.
#[derive(Debug, Clone, Default)]
pub struct NotifyConfig {
    /// `host:port` of the SMTP relay (`--smtp-relay`).
    pub smtp_relay: Option<String>,
    /// The From mailbox (`--smtp-from`).
    pub smtp_from: Option<String>,
    /// Upgrade with STARTTLS and refuse to go on in clear (`--smtp-starttls`).
    pub smtp_starttls: bool,
    /// Relay login (`--smtp-user`, password from `CPN_SMTP_PASSWORD`).
    pub smtp_user: Option<String>,
    pub smtp_password: Option<String>,
    /// The SMS gateway's URL (`--sms-gateway`) and bearer token (`CPN_SMS_TOKEN`).
    pub sms_gateway: Option<String>,
    pub sms_token: Option<String>,
}

/// The From mailbox when `--smtp-from` is not given.
pub const DEFAULT_FROM: &str = "cpn <noreply@localhost>";

impl NotifyConfig {
    fn smtp(&self) -> anyhow::Result<Option<SmtpConfig>> {
        let Some(relay) = &self.smtp_relay else {
            return Ok(None);
        };
        let (host, port) = relay
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?)))
            .filter(|(h, _)| !h.is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--smtp-relay {relay:?}: write it as host:port, e.g. smtp.example.org:587"
                )
            })?;
        let credentials = match (&self.smtp_user, &self.smtp_password) {
            (Some(user), Some(password)) => Some(SmtpCredentials {
                user: user.clone(),
                password: password.clone(),
            }),
            (Some(_), None) => {
                anyhow::bail!("--smtp-user needs CPN_SMTP_PASSWORD in the environment")
            }
            _ => None,
        };
        Ok(Some(SmtpConfig {
            host: host.to_string(),
            port,
            security: if self.smtp_starttls {
                SmtpSecurity::StartTls
            } else {
                SmtpSecurity::Plain
            },
            from: self
                .smtp_from
                .clone()
                .unwrap_or_else(|| DEFAULT_FROM.to_string()),
            credentials,
            extra_root_pem: None,
            timeout: Duration::from_secs(10),
        }))
    }

    fn sms(&self) -> Option<SmsGatewayConfig> {
        self.sms_gateway.as_ref().map(|url| SmsGatewayConfig {
            url: url.clone(),
            token: self.sms_token.clone(),
            timeout: Duration::from_secs(10),
        })
    }
}

/// The server's notification channels.
#[derive(Debug, Clone)]
pub struct Notifier {
    dispatcher: Dispatcher,
    email: bool,
    sms: bool,
}

impl Notifier {
    /// Builds the dispatcher once, so a bad relay address or From mailbox stops the start
    /// rather than the first registration. Must run inside the tokio runtime.
    pub fn new(config: &NotifyConfig, store: Arc<dyn Store>) -> anyhow::Result<Notifier> {
        let smtp = config.smtp()?;
        let sms = config.sms();
        let (email, has_sms) = (smtp.is_some(), sms.is_some());
        let dispatcher = Dispatcher::new(
            DispatcherConfig {
                smtp,
                sms,
                ..DispatcherConfig::new()
            },
            Arc::new(StoreDeliveryLog(store)),
        )
        .map_err(|e| anyhow::anyhow!("notifications: {e}"))?;
        Ok(Notifier {
            dispatcher,
            email,
            sms: has_sms,
        })
    }

    pub fn has_email(&self) -> bool {
        self.email
    }

    pub fn has_sms(&self) -> bool {
        self.sms
    }

    /// Sends `n` to `targets` in the background and returns at once: the dispatcher retries
    /// with backoff for minutes, and every attempt lands in the delivery log. The outcome
    /// is traced with masked targets only.
    pub fn send_in_background(&self, n: Notification, targets: Vec<Target>) {
        let dispatcher = self.dispatcher.clone();
        tokio::spawn(async move {
            let report = dispatcher.deliver(&n, &targets).await;
            if !report.all_delivered() {
                tracing::warn!(key = %report.idempotency_key, targets = ?report.targets, "notification not delivered to every target");
            }
        });
    }
}

/// `cpn_notify`'s delivery log over the store's `notification_attempts`.
struct StoreDeliveryLog(Arc<dyn Store>);

#[async_trait]
impl DeliveryLog for StoreDeliveryLog {
    async fn record(&self, a: &DeliveryAttempt) -> Result<(), LogError> {
        let status = match a.status {
            AttemptStatus::Delivered => "delivered",
            AttemptStatus::Retrying => "retrying",
            AttemptStatus::Failed => "failed",
        };
        self.0
            .record_notification_attempt(NotificationAttemptRecord {
                idempotency_key: a.idempotency_key.clone(),
                kind: a.kind.as_str().to_string(),
                recipient: a.recipient.clone(),
                channel: a.channel.as_str().to_string(),
                target: a.target.clone(),
                target_id: a.target_id.clone(),
                attempt: a.attempt,
                status: status.to_string(),
                error: a.error.clone(),
                permanent: a.permanent,
                at: a.at,
            })
            .await
            .map_err(|e| LogError(e.to_string()))
    }

    async fn delivered(&self, idempotency_key: &str, target_id: &str) -> Result<bool, LogError> {
        self.0
            .notification_delivered(idempotency_key, target_id)
            .await
            .map_err(|e| LogError(e.to_string()))
    }
}
