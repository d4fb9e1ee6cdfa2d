//! The server's notifications (issue #14, deliverable 6): one `cpn_notify::Dispatcher` built
//! at start from the `cpn serve` flags, its delivery log kept in the store's
//! `notification_attempts`, and deliveries run in the background so that no request waits
//! on an SMTP relay's retries.
//!
//! Durability: a notification is written to the store's outbox (`notification_outbox`)
//! before the call that causes it answers ([`Notifier::enqueue`]); a marketplace event is
//! written in the market change's own store transaction ([`market_outbox`],
//! `MarketWrite::outbox`), so a crash keeps both or neither. The supervised outbox loop
//! ([`run_outbox`]) delivers it with the dispatcher's retries and backoff, then marks it
//! delivered (erasing its text) or failed. A crash or restart before that leaves it
//! pending, and the next start sends it again. Delivery is at least once: the delivery log
//! skips a target that already has the key, but a crash between a relay's acceptance and
//! the log row sends that target the message again (receivers deduplicate on the key: the
//! Message-ID, `X-Cpn-Idempotency-Key`). Until it is delivered or purged, an entry holds the
//! message in clear, as any mail spool does (a registration code among them, which expires
//! after 10 minutes): a failed entry keeps it so an operator can send it again ([`retry`],
//! a fresh attempt budget). Operators read the outbox without messages ([`outbox`]): kind,
//! recipient, masked targets, state, attempts, next attempt and last error, the attempts
//! counted in the same write as each delivery-log row.

use crate::caller::Caller;
use crate::error::{ServiceError, ServiceResult};
use crate::state::Control;
use async_trait::async_trait;
use chrono::Utc;
use cpn_api_types::notifications::{
    CreateSubscription, Delivery, NotifyChannel, NotifyKind, OutboxItem, Subscription,
};
use cpn_api_types::{Code, Page};
use cpn_notify::{
    AttemptStatus, DeliveryAttempt, DeliveryLog, Dispatcher, DispatcherConfig, EventKind, LogError,
    Notification, SmsGatewayConfig, SmtpConfig, SmtpCredentials, SmtpSecurity, Target,
    WebhookSecret,
};
use cpn_store::{
    DocQuery, DocRecord, Enqueued, NewOutboxEntry, NotificationAttemptRecord, NotificationLogQuery,
    OutboxEntry, OutboxQuery, OutboxSummary, Retried, Settled, Store, StoreError,
};
use serde::{Deserialize, Serialize};
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
    /// Where users reach the server (`--public-url`), for links in messages.
    pub public_url: Option<String>,
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

    /// `--public-url` checked: an absolute http(s) URL without query or fragment, kept
    /// without its trailing slash so paths can be appended.
    fn public_url(&self) -> anyhow::Result<Option<String>> {
        let Some(url) = &self.public_url else {
            return Ok(None);
        };
        match cpn_notify::public_base_url(url) {
            Some(base) => Ok(Some(base)),
            None => anyhow::bail!(
                "--public-url {url:?}: give the server's absolute http(s) address without a query, e.g. https://cpn.example.org"
            ),
        }
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
    outbox: Outbox,
    public_url: Option<String>,
}

/// Pending notifications one recipient may have in the outbox: an alarm storm or a flood of
/// events for one user waits there, bounded, instead of growing the store without end.
pub const MAX_PENDING_PER_RECIPIENT: usize = 1000;
/// How long a settled outbox entry (its key, without its text) is kept before it is purged.
const KEEP_SETTLED: chrono::TimeDelta = chrono::TimeDelta::days(7);
/// Outbox entries being delivered at once; the dispatcher bounds the connections further.
const MAX_IN_FLIGHT: usize = 500;

/// The store's outbox and the bell that tells the loop a new entry is there.
#[derive(Clone)]
struct Outbox {
    store: Arc<dyn Store>,
    wake: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Outbox")
    }
}

/// What the outbox keeps of one notification: the message and where it goes.
#[derive(Serialize, Deserialize)]
struct OutboxMessage {
    notification: Notification,
    targets: Vec<Target>,
}

/// `n` for `targets` as the outbox stores it: the message serialized, and what an operator
/// may see of it (kind, masked targets).
pub(crate) fn outbox_entry(
    n: &Notification,
    targets: Vec<Target>,
) -> Result<NewOutboxEntry, StoreError> {
    let masked = targets.iter().map(Target::masked).collect();
    let message = serde_json::to_string(&OutboxMessage {
        notification: n.clone(),
        targets,
    })
    .map_err(|e| StoreError::Backend(format!("serialize a notification: {e}")))?;
    Ok(NewOutboxEntry {
        key: n.idempotency_key().to_string(),
        recipient: n.recipient().to_string(),
        kind: n.kind().as_str().to_string(),
        targets: masked,
        message,
        created_at: Utc::now(),
        max_pending: MAX_PENDING_PER_RECIPIENT,
    })
}

impl Notifier {
    /// Builds the dispatcher once, so a bad relay address or From mailbox stops the start
    /// rather than the first registration. Must run inside the tokio runtime.
    pub fn new(config: &NotifyConfig, store: Arc<dyn Store>) -> anyhow::Result<Notifier> {
        let smtp = config.smtp()?;
        let sms = config.sms();
        let public_url = config.public_url()?;
        let (email, has_sms) = (smtp.is_some(), sms.is_some());
        let dispatcher = Dispatcher::new(
            DispatcherConfig {
                smtp,
                sms,
                ..DispatcherConfig::new()
            },
            Arc::new(StoreDeliveryLog(store.clone())),
        )
        .map_err(|e| anyhow::anyhow!("notifications: {e}"))?;
        Ok(Notifier {
            dispatcher,
            email,
            sms: has_sms,
            outbox: Outbox {
                store,
                wake: Arc::new(tokio::sync::Notify::new()),
            },
            public_url,
        })
    }

    pub fn has_email(&self) -> bool {
        self.email
    }

    pub fn has_sms(&self) -> bool {
        self.sms
    }

    /// The server's address for links in messages (`--public-url`), without trailing slash.
    pub fn public_url(&self) -> Option<&str> {
        self.public_url.as_deref()
    }

    /// Writes `n` for `targets` to the outbox and returns once it is durable; the outbox
    /// loop sends it (see the module documentation). The same key again is dropped; past
    /// [`MAX_PENDING_PER_RECIPIENT`] the notification is dropped with a warning, not an
    /// error: the event that caused it has happened.
    pub async fn enqueue(&self, n: Notification, targets: Vec<Target>) -> Result<(), StoreError> {
        self.enqueue_entry(outbox_entry(&n, targets)?).await
    }

    async fn enqueue_entry(&self, entry: NewOutboxEntry) -> Result<(), StoreError> {
        let key = entry.key.clone();
        match self.outbox.store.enqueue_notification(entry).await? {
            Enqueued::Queued => self.wake(),
            Enqueued::Duplicate => {}
            Enqueued::Full { pending } => {
                tracing::warn!(
                    key,
                    pending,
                    "notification dropped: its recipient has too many pending in the outbox"
                );
            }
        }
        Ok(())
    }

    /// Tells the outbox loop that entries are waiting (written by another write, such as a
    /// market change's); without it the loop finds them within seconds.
    pub fn wake(&self) {
        self.outbox.wake.notify_one();
    }

    /// Delivers one outbox entry and settles it. Cancelled (the server stopping), it stays
    /// pending for the next start.
    async fn deliver_entry(&self, entry: OutboxEntry) {
        let settled = match serde_json::from_str::<OutboxMessage>(&entry.message) {
            Ok(m) => {
                let report = self.dispatcher.deliver(&m.notification, &m.targets).await;
                if report.all_delivered() {
                    Settled::Delivered
                } else {
                    tracing::warn!(key = %report.idempotency_key, targets = ?report.targets, "notification not delivered to every target");
                    Settled::Failed
                }
            }
            Err(e) => {
                tracing::error!(key = %entry.key, error = %e, "outbox entry unreadable; marked failed");
                Settled::Failed
            }
        };
        if let Err(e) = self
            .outbox
            .store
            .settle_notification(entry.seq, settled, Utc::now())
            .await
        {
            // Stays pending: sent again after a restart, where the delivery log skips the
            // targets that have it.
            tracing::warn!(key = %entry.key, error = %e, "outbox: settling an entry failed");
        }
    }
}

/// The outbox loop, supervised with the other background loops: starts every pending entry
/// (those a crash or restart left too), at most [`MAX_IN_FLIGHT`] at once, wakes on each new
/// one, and purges settled entries after [`KEEP_SETTLED`]. Stopping it cancels the
/// deliveries in flight, which stay pending.
pub async fn run_outbox(state: Control) {
    let notifier = state.market_accounts.notifier().clone();
    let store = notifier.outbox.store.clone();
    let mut running: tokio::task::JoinSet<u64> = tokio::task::JoinSet::new();
    let mut in_flight = std::collections::HashSet::new();
    let mut last_purge: Option<std::time::Instant> = None;
    loop {
        while let Some(done) = running.try_join_next() {
            if let Ok(seq) = done {
                in_flight.remove(&seq);
            }
        }
        if in_flight.len() < MAX_IN_FLIGHT {
            match store.pending_notifications(0, MAX_IN_FLIGHT).await {
                Ok(entries) => {
                    for entry in entries {
                        if in_flight.len() >= MAX_IN_FLIGHT {
                            break;
                        }
                        if in_flight.insert(entry.seq) {
                            let (n, seq) = (notifier.clone(), entry.seq);
                            running.spawn(async move {
                                n.deliver_entry(entry).await;
                                seq
                            });
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "outbox: reading pending entries failed"),
            }
        }
        if last_purge.is_none_or(|t| t.elapsed() > Duration::from_secs(3600)) {
            last_purge = Some(std::time::Instant::now());
            if let Err(e) = store
                .purge_settled_notifications(Utc::now() - KEEP_SETTLED)
                .await
            {
                tracing::warn!(error = %e, "outbox: purging settled entries failed");
            }
        }
        tokio::select! {
            _ = notifier.outbox.wake.notified() => {}
            Some(done) = running.join_next(), if !running.is_empty() => {
                if let Ok(seq) = done {
                    in_flight.remove(&seq);
                }
            }
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
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
                next_attempt_at: a.next_attempt_at,
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

/// The store's collection of subscriptions: one document per subscription, in the
/// subscriber's tenant, owned by the subscriber.
pub const SUBSCRIPTIONS: &str = "notification_subscriptions";
/// Subscriptions one user may have.
pub const MAX_SUBSCRIPTIONS_PER_USER: usize = 20;

/// A subscription as stored. The webhook secret is kept because every delivery is signed
/// with it; the API never shows it again.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSubscription {
    channel: NotifyChannel,
    target: String,
    #[serde(default)]
    secret: Option<String>,
    kinds: Vec<NotifyKind>,
}

fn event_kind(k: NotifyKind) -> EventKind {
    match k {
        NotifyKind::Alarm => EventKind::Alarm,
        NotifyKind::Account => EventKind::Account,
        NotifyKind::Lease => EventKind::Lease,
        NotifyKind::Billing => EventKind::Billing,
    }
}

impl StoredSubscription {
    fn target(&self) -> Result<Target, ServiceError> {
        let bad = |e: cpn_notify::TargetError| ServiceError::field("target", e.to_string());
        match self.channel {
            NotifyChannel::Email => Target::email(self.target.clone()).map_err(bad),
            NotifyChannel::Sms => Target::sms(self.target.clone()).map_err(bad),
            NotifyChannel::Webhook => {
                let secret = self.secret.clone().ok_or_else(|| {
                    ServiceError::field("secret", "a webhook needs a signing secret")
                })?;
                let secret = WebhookSecret::new(secret)
                    .map_err(|e| ServiceError::field("secret", e.to_string()))?;
                Target::webhook(self.target.clone(), secret).map_err(bad)
            }
        }
    }
}

fn subscription_view(doc: &DocRecord) -> Option<Subscription> {
    let s: StoredSubscription = serde_json::from_value(doc.body.clone()).ok()?;
    Some(Subscription {
        id: doc.id.clone(),
        channel: s.channel,
        target: s.target().ok()?.masked(),
        kinds: s.kinds,
        created_at: doc.created_at,
    })
}

async fn own_subscriptions(state: &Control, who: &Caller) -> ServiceResult<Vec<DocRecord>> {
    Ok(state
        .store
        .list_docs(
            SUBSCRIPTIONS,
            DocQuery {
                tenant: Some(who.tenant.clone()),
                ..Default::default()
            },
        )
        .await?
        .into_iter()
        .filter(|d| d.owner == who.username)
        .collect())
}

/// Subscribes the caller: the target is checked as the dispatcher will use it, and the
/// channel must be configured on this server (else 503 naming the flag).
pub async fn subscribe(
    state: &Control,
    who: &Caller,
    req: CreateSubscription,
) -> ServiceResult<Subscription> {
    if req.kinds.is_empty() {
        return Err(ServiceError::field(
            "kinds",
            "name at least one of alarm, account, lease, billing",
        ));
    }
    let stored = StoredSubscription {
        channel: req.channel,
        target: req.target.trim().to_string(),
        secret: req.secret,
        kinds: req.kinds,
    };
    stored.target()?;
    let notifier = state.market_accounts.notifier();
    match stored.channel {
        NotifyChannel::Email if !notifier.has_email() => {
            return Err(ServiceError::new(
                Code::Unavailable,
                "this server sends no e-mail: the operator starts cpn serve with --smtp-relay HOST:PORT",
            ));
        }
        NotifyChannel::Sms if !notifier.has_sms() => {
            return Err(ServiceError::new(
                Code::Unavailable,
                "this server sends no SMS: the operator starts cpn serve with --sms-gateway URL",
            ));
        }
        _ => {}
    }
    if own_subscriptions(state, who).await?.len() >= MAX_SUBSCRIPTIONS_PER_USER {
        return Err(ServiceError::new(
            Code::TooManyRequests,
            format!(
                "at most {MAX_SUBSCRIPTIONS_PER_USER} subscriptions per user; delete one first"
            ),
        ));
    }
    let now = Utc::now();
    let id = format!("sub-{}", uuid::Uuid::now_v7().simple());
    let doc = DocRecord {
        collection: SUBSCRIPTIONS.into(),
        id: id.clone(),
        tenant: who.tenant.clone(),
        owner: who.username.clone(),
        name: id,
        state: "active".into(),
        version: 0,
        created_at: now,
        updated_at: now,
        body: serde_json::to_value(&stored)
            .map_err(|e| ServiceError::new(Code::Internal, e.to_string()))?,
    };
    let doc = state.store.create_doc(doc, Vec::new()).await?;
    subscription_view(&doc)
        .ok_or_else(|| ServiceError::new(Code::Internal, "stored subscription does not read back"))
}

/// The caller's subscriptions.
pub async fn subscriptions(state: &Control, who: &Caller) -> ServiceResult<Vec<Subscription>> {
    Ok(own_subscriptions(state, who)
        .await?
        .iter()
        .filter_map(subscription_view)
        .collect())
}

/// Deletes one of the caller's subscriptions (others' are "not found").
pub async fn unsubscribe(state: &Control, who: &Caller, id: &str) -> ServiceResult<()> {
    match state.store.get_doc(SUBSCRIPTIONS, id).await? {
        Some(d) if d.tenant == who.tenant && d.owner == who.username => {
            state.store.delete_doc(SUBSCRIPTIONS, id).await?;
            Ok(())
        }
        _ => Err(ServiceError::not_found("subscription", id)),
    }
}

/// The statuses the delivery log records.
pub const DELIVERY_STATUSES: [&str; 3] = ["delivered", "retrying", "failed"];

/// The delivery log, newest first, in pages of `filter.limit` (at most
/// [`NotificationLogQuery::MAX_LIMIT`]). Operators see every attempt. Anyone else sees the
/// attempts of notifications addressed to themselves: the log records the recipient's
/// username, and usernames are unique across tenants, so no attempt of another tenant's
/// user can match; asking for another recipient is refused. Targets are masked in the log
/// itself, so not even an operator reads an address from it.
pub async fn deliveries(
    state: &Control,
    who: &Caller,
    mut filter: NotificationLogQuery,
) -> ServiceResult<Page<Delivery>> {
    if let Some(status) = &filter.status
        && !DELIVERY_STATUSES.contains(&status.as_str())
    {
        return Err(ServiceError::field(
            "status",
            format!("status must be delivered, retrying or failed, got {status:?}"),
        ));
    }
    if !who.is_operator() {
        match &filter.recipient {
            Some(r) if *r != who.username => {
                return Err(ServiceError::forbidden(
                    "only operators read the deliveries of other users",
                ));
            }
            _ => filter.recipient = Some(who.username.clone()),
        }
    }
    filter.limit = filter.limit.clamp(1, NotificationLogQuery::MAX_LIMIT);
    let limit = filter.limit as usize;
    let items: Vec<Delivery> = state
        .store
        .notification_log(filter)
        .await?
        .into_iter()
        .map(|(id, a)| Delivery {
            id,
            idempotency_key: a.idempotency_key,
            kind: a.kind,
            recipient: a.recipient,
            channel: a.channel,
            target: a.target,
            attempt: a.attempt,
            status: a.status,
            error: a.error,
            permanent: a.permanent,
            at: a.at,
        })
        .collect();
    // A full page may have more behind it; a short one is the last.
    let next_cursor = (items.len() == limit)
        .then(|| items.last().map(|a| a.id.to_string()))
        .flatten();
    Ok(Page { items, next_cursor })
}

/// The states an outbox entry is in.
pub const OUTBOX_STATES: [&str; 3] = ["pending", "delivered", "failed"];

fn operators_only(who: &Caller, what: &str) -> ServiceResult<()> {
    if who.is_operator() {
        Ok(())
    } else {
        Err(ServiceError::forbidden(format!("only operators {what}")))
    }
}

fn outbox_item(e: OutboxSummary) -> OutboxItem {
    OutboxItem {
        id: e.seq,
        idempotency_key: e.key,
        kind: e.kind,
        recipient: e.recipient,
        targets: e.targets,
        state: e.state,
        attempts: e.attempts,
        next_attempt_at: e.next_attempt_at,
        last_error: e.last_error,
        created_at: e.created_at,
        settled_at: e.settled_at,
    }
}

/// The outbox, newest first, in pages of `filter.limit` (at most [`OutboxQuery::MAX_LIMIT`]),
/// operators only. No message is shown: one may hold a verification code; targets are
/// masked as in the delivery log.
pub async fn outbox(
    state: &Control,
    who: &Caller,
    mut filter: OutboxQuery,
) -> ServiceResult<Page<OutboxItem>> {
    operators_only(who, "read the notification outbox")?;
    if let Some(s) = &filter.state
        && !OUTBOX_STATES.contains(&s.as_str())
    {
        return Err(ServiceError::field(
            "state",
            format!("state must be pending, delivered or failed, got {s:?}"),
        ));
    }
    filter.limit = filter.limit.clamp(1, OutboxQuery::MAX_LIMIT);
    let limit = filter.limit as usize;
    let items: Vec<OutboxItem> = state
        .store
        .outbox(filter)
        .await?
        .into_iter()
        .map(outbox_item)
        .collect();
    // A full page may have more behind it; a short one is the last.
    let next_cursor = (items.len() == limit)
        .then(|| items.last().map(|e| e.id.to_string()))
        .flatten();
    Ok(Page { items, next_cursor })
}

/// An operator sends a failed outbox entry again: pending, with a fresh attempt budget (the
/// dispatcher's retries), due now. Targets that had it delivered are skipped by the
/// delivery log. Unknown (or purged): not found; not failed: invalid state.
pub async fn retry(state: &Control, who: &Caller, id: u64) -> ServiceResult<OutboxItem> {
    operators_only(who, "retry notifications")?;
    match state.store.retry_notification(id, Utc::now()).await? {
        Retried::Pending => {}
        Retried::Unknown => return Err(ServiceError::not_found("outbox entry", &id.to_string())),
        Retried::NotFailed(s) => {
            return Err(ServiceError::new(
                Code::InvalidState,
                format!("outbox entry {id} is {s}; only a failed one is retried"),
            ));
        }
    }
    state.market_accounts.notifier().wake();
    tracing::info!(id, by = %who.username, "outbox entry retried");
    // Read back for the answer; the loop may have taken it already, which the state shows.
    let entry = state
        .store
        .outbox(OutboxQuery {
            before: Some(id.saturating_add(1)),
            limit: 1,
            ..Default::default()
        })
        .await?
        .into_iter()
        .find(|e| e.seq == id)
        .ok_or_else(|| ServiceError::not_found("outbox entry", &id.to_string()))?;
    Ok(outbox_item(entry))
}

/// The setting that keeps the last event the alarm delivery has handled, so a restart
/// neither repeats nor skips alarms (the delivery log's idempotency keys catch the rest).
const ALARM_CURSOR: &str = "notify.alarm_cursor";

/// Starts the loop that delivers alarms to the subscribers of the alarm's tenant and to
/// operators' subscriptions (operators see every event). It begins at the log's end on a
/// data dir that never had it, so a new server does not mail out its history. Stops with
/// the runtime.
pub fn spawn_alarm_delivery(state: &Control) {
    let state = state.clone();
    let mut shutdown = state.runtime.shutdown.subscribe();
    tokio::spawn(async move {
        tokio::select! {
            _ = shutdown.wait_for(|&stop| stop) => {}
            _ = deliver_alarms(state) => {}
        }
    });
}

async fn deliver_alarms(state: Control) {
    let mut cursor = loop {
        match alarm_cursor(&state).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(error = %e, "alarm delivery: reading the cursor failed; retrying");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    };
    loop {
        match deliver_batch(&state, cursor).await {
            Ok(Some(next)) => {
                cursor = next;
                if let Err(e) = state
                    .store
                    .put_setting(ALARM_CURSOR, &cursor.to_string())
                    .await
                {
                    tracing::warn!(error = %e, "alarm delivery: saving the cursor failed");
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "alarm delivery failed; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn alarm_cursor(state: &Control) -> ServiceResult<u64> {
    if let Some(c) = state.store.get_setting(ALARM_CURSOR).await?
        && let Ok(c) = c.parse()
    {
        return Ok(c);
    }
    let last = state.store.last_event_seq().await?;
    state
        .store
        .put_setting(ALARM_CURSOR, &last.to_string())
        .await?;
    Ok(last)
}

/// Sends the alarms after `cursor`; the new cursor, or `None` when there was nothing new.
async fn deliver_batch(state: &Control, cursor: u64) -> ServiceResult<Option<u64>> {
    let rows = state.store.events_after(cursor, 500).await?;
    let Some(last) = rows.last().map(|r| r.seq) else {
        return Ok(None);
    };
    let alarms: Vec<_> = rows
        .into_iter()
        .filter(|r| r.event.event_type == cpn_api_types::events::types::ALARM)
        .collect();
    if alarms.is_empty() {
        return Ok(Some(last));
    }
    let operators: std::collections::HashSet<String> = state
        .store
        .list_users(None)
        .await?
        .into_iter()
        .filter(|u| u.role == "operator" && !u.disabled)
        .map(|u| u.username)
        .collect();
    let docs = state
        .store
        .list_docs(SUBSCRIPTIONS, DocQuery::default())
        .await?;
    let notifier = state.market_accounts.notifier();
    for alarm in alarms {
        let e = &alarm.event;
        let by_user = subscribers(&docs, |d| {
            let own_tenant = !e.tenant.is_empty() && d.tenant == e.tenant;
            own_tenant || operators.contains(&d.owner)
        });
        let kind = e.data["kind"].as_str().unwrap_or("alarm");
        let entries = event_entries(
            by_user,
            EventKind::Alarm,
            &format!("[cpn alarm] {kind}: {}", e.subject),
            &format!(
                "{}\n\nseverity: {}\ntenant: {}\nat: {}\nevent: {}",
                e.message,
                e.severity,
                e.tenant,
                e.at.to_rfc3339(),
                alarm.seq
            ),
            serde_json::json!({"event": alarm.seq, "type": e.event_type, "kind": kind, "subject": e.subject, "tenant": e.tenant, "severity": e.severity, "message": e.message, "data": e.data}),
            &format!("alarm-{}", alarm.seq),
        );
        for entry in entries {
            if let Err(e) = notifier.enqueue_entry(entry).await {
                tracing::warn!(error = %e, "alarm not written to the outbox");
            }
        }
    }
    Ok(Some(last))
}

/// The subscriptions of `docs` that `include` keeps, grouped by their owner (the recipient).
fn subscribers(
    docs: &[DocRecord],
    include: impl Fn(&DocRecord) -> bool,
) -> std::collections::BTreeMap<String, Vec<cpn_notify::Subscription>> {
    let mut by_user: std::collections::BTreeMap<String, Vec<cpn_notify::Subscription>> =
        Default::default();
    for d in docs.iter().filter(|d| include(d)) {
        let Ok(s) = serde_json::from_value::<StoredSubscription>(d.body.clone()) else {
            continue;
        };
        let Ok(target) = s.target() else { continue };
        by_user
            .entry(d.owner.clone())
            .or_default()
            .push(cpn_notify::Subscription::new(
                d.owner.clone(),
                s.kinds.iter().copied().map(event_kind),
                target,
            ));
    }
    by_user
}

/// One event as outbox entries, one for each recipient whose subscriptions match it. The
/// idempotency key is `key` and the recipient, so the same event sent again (a retried
/// market call, a restart) is one outbox entry, and the delivery log skips every target
/// that already has it.
fn event_entries(
    by_user: std::collections::BTreeMap<String, Vec<cpn_notify::Subscription>>,
    kind: EventKind,
    subject: &str,
    body: &str,
    payload: serde_json::Value,
    key: &str,
) -> Vec<NewOutboxEntry> {
    let subject: String = subject
        .chars()
        .filter(|c| !c.is_control())
        .take(Notification::MAX_SUBJECT)
        .collect();
    let mut entries = Vec::new();
    for (user, subs) in by_user {
        let key: String = format!("{key}-{user}")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._:-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .take(Notification::MAX_KEY)
            .collect();
        let Ok(n) = Notification::new(kind, user, subject.clone(), body, payload.clone(), key)
        else {
            continue;
        };
        let targets: Vec<Target> = subs
            .iter()
            .filter(|s| s.matches(n.recipient(), n.kind()))
            .map(|s| s.target.clone())
            .collect();
        if targets.is_empty() {
            continue;
        }
        match outbox_entry(&n, targets) {
            Ok(e) => entries.push(e),
            Err(e) => tracing::warn!(error = %e, "notification not written to the outbox"),
        }
    }
    entries
}

/// Who a marketplace event is for.
pub enum Audience {
    /// These users (by username): a lease's user and supplier.
    Users(Vec<String>),
    /// Every subscriber in the tenant: a tenant's budget is everyone's in it.
    Tenant(String),
}

/// One marketplace event (`lease` or `billing`), gathered under the market's lock.
pub struct MarketEvent {
    pub audience: Audience,
    pub kind: EventKind,
    pub subject: String,
    pub body: String,
    pub payload: serde_json::Value,
    /// Names the event, not the call: the same lease start or budget month twice is one
    /// notification (see [`event_entries`]).
    pub key: String,
}

/// The outbox entries of marketplace events for their subscribers, for the market write
/// that causes them (`MarketWrite::outbox`): stored with the change or not at all.
pub async fn market_outbox(
    store: &dyn Store,
    events: Vec<MarketEvent>,
) -> Result<Vec<NewOutboxEntry>, StoreError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let docs = store.list_docs(SUBSCRIPTIONS, DocQuery::default()).await?;
    let mut entries = Vec::new();
    for e in events {
        let by_user = subscribers(&docs, |d| match &e.audience {
            Audience::Users(users) => users.contains(&d.owner),
            Audience::Tenant(t) => d.tenant == *t,
        });
        entries.extend(event_entries(
            by_user, e.kind, &e.subject, &e.body, e.payload, &e.key,
        ));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(cpn_store::SqliteStore::open(dir.path()).unwrap());
        (dir, store)
    }

    #[test]
    fn the_public_url_must_be_an_absolute_http_address() {
        let url = |u: &str| {
            NotifyConfig {
                public_url: Some(u.to_string()),
                ..Default::default()
            }
            .public_url()
        };
        assert_eq!(
            url("https://cpn.example.org/").unwrap().as_deref(),
            Some("https://cpn.example.org")
        );
        assert_eq!(
            url("http://10.0.0.1:8080/cpn").unwrap().as_deref(),
            Some("http://10.0.0.1:8080/cpn")
        );
        for bad in [
            "cpn.example.org",
            "ftp://cpn.example.org",
            "https://cpn.example.org/?a=b",
            "https://user@cpn.example.org",
        ] {
            assert!(url(bad).is_err(), "{bad} accepted");
        }
    }

    #[tokio::test]
    async fn an_outbox_entry_is_kept_until_settled_and_settled_once() {
        let (_dir, store) = store();
        // No relay: the e-mail fails for good at the first attempt, which settles it.
        let notifier = Notifier::new(&NotifyConfig::default(), store.clone()).unwrap();
        let n = Notification::new(
            EventKind::Account,
            "ana",
            "subject",
            "body",
            serde_json::json!({}),
            "key-1",
        )
        .unwrap();
        let target = Target::email("ana@example.cn").unwrap();
        notifier
            .enqueue(n.clone(), vec![target.clone()])
            .await
            .unwrap();
        notifier.enqueue(n, vec![target]).await.unwrap();
        let pending = store.pending_notifications(0, 10).await.unwrap();
        assert_eq!(pending.len(), 1, "one entry per key");
        assert_eq!(pending[0].recipient, "ana");

        notifier.deliver_entry(pending[0].clone()).await;
        assert_eq!(
            store.notification_state("key-1").await.unwrap().as_deref(),
            Some("failed")
        );
        assert!(store.pending_notifications(0, 10).await.unwrap().is_empty());
        let log = store.notification_attempts("key-1").await.unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].status, "failed");
        assert!(log[0].permanent);
    }
}
