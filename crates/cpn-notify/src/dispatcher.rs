//! The dispatcher: sends a notification to every target its recipient subscribed to for its
//! kind, one attempt at a time per target with retries and backoff, a bounded number of
//! attempts in flight across all targets, and every attempt written to the delivery log.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::Utc;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::channel::{
    ConfigError, SendError, SmsChannel, SmsGatewayConfig, SmtpChannel, SmtpConfig, WebhookChannel,
    WebhookConfig,
};
use crate::retry::Jitter;
use crate::{
    AttemptStatus, ChannelKind, DeliveryAttempt, DeliveryLog, Notification, RetryPolicy,
    Subscription, Target,
};

/// Everything a dispatcher needs; channels left out (`None`) make deliveries to their
/// targets fail permanently with a message saying so.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    pub smtp: Option<SmtpConfig>,
    pub sms: Option<SmsGatewayConfig>,
    pub webhook: WebhookConfig,
    pub retry: RetryPolicy,
    /// How many attempts may be in flight at once, over all notifications and targets:
    /// an alarm storm must not open thousands of connections to one relay.
    pub max_concurrent: usize,
    /// Seed for the backoff jitter; `None` seeds from the clock. Tests pass one.
    pub jitter_seed: Option<u64>,
}

impl DispatcherConfig {
    /// No channel configured yet, webhook defaults, the standard retry policy, 16 attempts in
    /// flight.
    pub fn new() -> Self {
        Self {
            smtp: None,
            sms: None,
            webhook: WebhookConfig::default(),
            retry: RetryPolicy::standard(),
            max_concurrent: 16,
            jitter_seed: None,
        }
    }
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// How the delivery of one notification to one target ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryStatus {
    Delivered {
        attempts: u32,
    },
    /// The delivery log already had this key delivered to this target; nothing was sent.
    AlreadyDelivered,
    /// Given up: a permanent error, or every attempt failed. `error` is the last error.
    Failed {
        attempts: u32,
        permanent: bool,
        error: String,
    },
}

/// The outcome for one target, named by its masked form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetReport {
    pub channel: ChannelKind,
    pub target: String,
    pub status: DeliveryStatus,
}

/// The outcome of one notification, one entry per distinct target, in subscription order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    pub idempotency_key: String,
    pub targets: Vec<TargetReport>,
}

impl DeliveryReport {
    /// Whether every target has the notification (now or before). False when there was no
    /// target at all: a notification nobody receives is worth noticing.
    pub fn all_delivered(&self) -> bool {
        !self.targets.is_empty()
            && self.targets.iter().all(|t| {
                matches!(
                    t.status,
                    DeliveryStatus::Delivered { .. } | DeliveryStatus::AlreadyDelivered
                )
            })
    }
}

/// Sends notifications. Cheap to clone; clones share channels, connection pools, the
/// concurrency bound and the log.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    smtp: Option<SmtpChannel>,
    sms: Option<SmsChannel>,
    webhook: WebhookChannel,
    retry: RetryPolicy,
    permits: Semaphore,
    jitter: Jitter,
    log: Arc<dyn DeliveryLog>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("smtp", &self.inner.smtp)
            .field("sms", &self.inner.sms)
            .field("retry", &self.inner.retry)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// Builds the channels (parsing the From address, TLS roots, URLs) once, so a
    /// misconfiguration shows at start-up rather than at the first alarm. Must be called
    /// inside a tokio runtime (the SMTP connection pool starts a task).
    pub fn new(config: DispatcherConfig, log: Arc<dyn DeliveryLog>) -> Result<Self, ConfigError> {
        if config.max_concurrent == 0 {
            return Err(ConfigError::ZeroConcurrency);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                smtp: config.smtp.map(SmtpChannel::new).transpose()?,
                sms: config.sms.map(SmsChannel::new).transpose()?,
                webhook: WebhookChannel::new(config.webhook)?,
                retry: config.retry,
                permits: Semaphore::new(config.max_concurrent),
                jitter: Jitter::new(config.jitter_seed),
                log,
            }),
        })
    }

    /// Sends `n` to the targets of `subscriptions` that belong to `n`'s recipient and
    /// include its kind (others are ignored, so the caller may pass all it has). Returns
    /// when every target is delivered or given up, which with retries can take minutes:
    /// a caller that must not wait spawns it.
    pub async fn notify(&self, n: &Notification, subscriptions: &[Subscription]) -> DeliveryReport {
        let targets: Vec<Target> = subscriptions
            .iter()
            .filter(|s| s.matches(n.recipient(), n.kind()))
            .map(|s| s.target.clone())
            .collect();
        self.deliver(n, &targets).await
    }

    /// Sends `n` to explicit targets, whatever the subscriptions say: for messages a user
    /// cannot opt out of, such as the verification code sent at registration. A target
    /// listed twice is sent to once.
    ///
    /// Delivery is at least once: a target that has the key as `Delivered` in the log is
    /// skipped, but two calls with the same key at the same moment may both send, and a
    /// relay may accept a message whose answer is lost. Receivers deduplicate on the key
    /// (`X-Cpn-Idempotency-Key`, the e-mail's Message-ID). Dropping the returned future
    /// cancels the deliveries still running.
    pub async fn deliver(&self, n: &Notification, targets: &[Target]) -> DeliveryReport {
        let mut seen = HashSet::new();
        let mut tasks = JoinSet::new();
        let mut reports: Vec<TargetReport> = Vec::new();
        let mut index_of = HashMap::new();
        for target in targets {
            let id = target.fingerprint(n.idempotency_key());
            if !seen.insert(id.clone()) {
                continue;
            }
            // Filled in when the task ends; stays so only if the task is cancelled (the
            // runtime shutting down), which the report then says.
            reports.push(TargetReport {
                channel: target.channel(),
                target: target.masked(),
                status: DeliveryStatus::Failed {
                    attempts: 0,
                    permanent: false,
                    error: "cancelled: the runtime shut down during the delivery".to_owned(),
                },
            });
            let (inner, n, target) = (Arc::clone(&self.inner), n.clone(), target.clone());
            let handle = tasks.spawn(async move { inner.deliver_one(&n, &target, id).await });
            index_of.insert(handle.id(), reports.len() - 1);
        }
        while let Some(joined) = tasks.join_next_with_id().await {
            match joined {
                Ok((id, report)) => reports[index_of[&id]] = report,
                // deliver_one does not panic; if it ever did, the panic is the bug to see.
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => {}
            }
        }
        DeliveryReport {
            idempotency_key: n.idempotency_key().to_owned(),
            targets: reports,
        }
    }
}

impl Inner {
    async fn deliver_one(
        &self,
        n: &Notification,
        target: &Target,
        target_id: String,
    ) -> TargetReport {
        let channel = target.channel();
        let masked = target.masked();
        let report = |status| TargetReport {
            channel,
            target: masked.clone(),
            status,
        };
        match self.log.delivered(n.idempotency_key(), &target_id).await {
            Ok(true) => return report(DeliveryStatus::AlreadyDelivered),
            Ok(false) => {}
            // Without the log we cannot tell; sending twice beats not sending an alarm.
            Err(e) => tracing::warn!(key = n.idempotency_key(), "{e}; delivering anyway"),
        }
        let max = self.retry.max_attempts();
        let mut attempt = 1;
        loop {
            let result = {
                // The permit is held only while the attempt runs, not during the backoff,
                // so a slow retry schedule does not starve other deliveries.
                let _permit = self
                    .permits
                    .acquire()
                    .await
                    .expect("the semaphore is never closed");
                self.send_once(n, target).await
            };
            // Relays and gateways echo the recipient in their answers ("550 <bob@…>:
            // mailbox unavailable"); the log and tracing get the masked form instead.
            let (status, error, permanent) = match &result {
                Ok(()) => (AttemptStatus::Delivered, None, false),
                Err(e) if e.is_permanent() || attempt == max => (
                    AttemptStatus::Failed,
                    Some(target.scrub(&e.to_string())),
                    e.is_permanent(),
                ),
                Err(e) => (
                    AttemptStatus::Retrying,
                    Some(target.scrub(&e.to_string())),
                    false,
                ),
            };
            // Drawn before the record, so the log can say when the next attempt is due.
            let delay = (status == AttemptStatus::Retrying)
                .then(|| self.retry.delay(attempt, &self.jitter));
            let at = Utc::now();
            let record = DeliveryAttempt {
                idempotency_key: n.idempotency_key().to_owned(),
                kind: n.kind(),
                recipient: n.recipient().to_owned(),
                channel,
                target: masked.clone(),
                target_id: target_id.clone(),
                attempt,
                status,
                error: error.clone(),
                permanent,
                at,
                next_attempt_at: delay
                    .and_then(|d| chrono::TimeDelta::from_std(d).ok())
                    .map(|d| at + d),
            };
            if let Err(e) = self.log.record(&record).await {
                tracing::warn!(key = n.idempotency_key(), target = %masked, "{e}");
            }
            match status {
                AttemptStatus::Delivered => {
                    tracing::info!(key = n.idempotency_key(), %channel, target = %masked, attempt, "notification delivered");
                    return report(DeliveryStatus::Delivered { attempts: attempt });
                }
                AttemptStatus::Failed => {
                    let error = error.unwrap_or_default();
                    tracing::warn!(key = n.idempotency_key(), %channel, target = %masked, attempt, permanent, "notification not delivered: {error}");
                    return report(DeliveryStatus::Failed {
                        attempts: attempt,
                        permanent,
                        error,
                    });
                }
                AttemptStatus::Retrying => {
                    let delay = delay.unwrap_or_default();
                    tracing::debug!(key = n.idempotency_key(), %channel, target = %masked, attempt, ?delay, "retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn send_once(&self, n: &Notification, target: &Target) -> Result<(), SendError> {
        match target {
            Target::Email { address } => match &self.smtp {
                Some(smtp) => smtp.send(n, address).await,
                None => Err(SendError::NotConfigured {
                    channel: ChannelKind::Email,
                    hint: "set DispatcherConfig::smtp (relay host, port, TLS mode, From address)",
                }),
            },
            Target::Sms { phone } => match &self.sms {
                Some(sms) => sms.send(n, phone).await,
                None => Err(SendError::NotConfigured {
                    channel: ChannelKind::Sms,
                    hint: "set DispatcherConfig::sms (the SMS gateway's URL and token)",
                }),
            },
            Target::Webhook { url, secret } => {
                self.webhook.send(n, url, &target.masked(), secret).await
            }
        }
    }
}
