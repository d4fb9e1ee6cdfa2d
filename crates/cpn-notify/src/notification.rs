//! What is sent: a `Notification` about one event, validated once when it is built, so every
//! channel can rely on a non-empty idempotency key and a subject that fits in a header.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The kinds of event a user can subscribe to. SH-CL-23 names alarms and status; issue #14
/// adds the account, lease and billing events of the marketplace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// An alarm (I1, IF-I1-03): a task, node or site in trouble.
    Alarm,
    /// Account events: verification codes, activation, review decisions.
    Account,
    /// Lease events: granted, expiring, released, revoked.
    Lease,
    /// Billing events: budget thresholds, invoices, top-ups.
    Billing,
}

impl EventKind {
    /// Every kind, for "subscribe to everything".
    pub const ALL: [EventKind; 4] = [Self::Alarm, Self::Account, Self::Lease, Self::Billing];

    /// The snake_case name used in JSON bodies and in the `X-Cpn-Event` header.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alarm => "alarm",
            Self::Account => "account",
            Self::Lease => "lease",
            Self::Billing => "billing",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a notification could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotificationError {
    #[error(
        "the idempotency key is empty or longer than {max} bytes or has characters outside \
         [A-Za-z0-9._:-]; derive it from the event's id, e.g. \"lease-42:expiring\""
    )]
    BadIdempotencyKey { max: usize },
    #[error("the recipient (a user id) is empty; pass the id of the user the event is for")]
    NoRecipient,
    #[error(
        "the subject is empty, longer than {max} characters or contains a line break; \
         keep it to one short line"
    )]
    BadSubject { max: usize },
}

/// One event for one user. Build it with [`Notification::new`]; the dispatcher sends it to
/// the channels the user subscribed to for its kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    // Invariant: 1..=MAX_KEY bytes of [A-Za-z0-9._:-] (checked in `new`), so the key fits in
    // an HTTP header and an e-mail Message-ID without escaping.
    idempotency_key: String,
    kind: EventKind,
    // Invariant: non-empty.
    recipient: String,
    // Invariant: one line of 1..=MAX_SUBJECT characters.
    subject: String,
    body: String,
    payload: serde_json::Value,
    created_at: DateTime<Utc>,
}

impl Notification {
    /// The longest idempotency key accepted, in bytes.
    pub const MAX_KEY: usize = 200;
    /// The longest subject accepted, in characters.
    pub const MAX_SUBJECT: usize = 200;

    /// Builds a notification. `idempotency_key` identifies the event: sending the same key
    /// again never delivers twice to a target that already has it (see
    /// [`crate::DeliveryLog::delivered`]). `body` is plain text: it is the e-mail body and the
    /// SMS text, so it should stand alone. `payload` is the structured form for webhooks.
    pub fn new(
        kind: EventKind,
        recipient: impl Into<String>,
        subject: impl Into<String>,
        body: impl Into<String>,
        payload: serde_json::Value,
        idempotency_key: impl Into<String>,
    ) -> Result<Self, NotificationError> {
        let idempotency_key = idempotency_key.into();
        if idempotency_key.is_empty()
            || idempotency_key.len() > Self::MAX_KEY
            || !idempotency_key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
        {
            return Err(NotificationError::BadIdempotencyKey { max: Self::MAX_KEY });
        }
        let recipient = recipient.into();
        if recipient.trim().is_empty() {
            return Err(NotificationError::NoRecipient);
        }
        let subject = subject.into();
        if subject.trim().is_empty()
            || subject.chars().count() > Self::MAX_SUBJECT
            || subject.contains(['\r', '\n'])
        {
            return Err(NotificationError::BadSubject {
                max: Self::MAX_SUBJECT,
            });
        }
        Ok(Self {
            idempotency_key,
            kind,
            recipient,
            subject,
            body: body.into(),
            payload,
            created_at: Utc::now(),
        })
    }

    pub fn idempotency_key(&self) -> &str {
        &self.idempotency_key
    }
    pub fn kind(&self) -> EventKind {
        self.kind
    }
    /// The user id the event is for; subscriptions of other users never match.
    pub fn recipient(&self) -> &str {
        &self.recipient
    }
    pub fn subject(&self) -> &str {
        &self.subject
    }
    pub fn body(&self) -> &str {
        &self.body
    }
    pub fn payload(&self) -> &serde_json::Value {
        &self.payload
    }
    pub fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(key: &str, subject: &str) -> Result<Notification, NotificationError> {
        Notification::new(
            EventKind::Alarm,
            "u1",
            subject,
            "b",
            serde_json::json!({}),
            key,
        )
    }

    #[test]
    fn keys_and_subjects_are_validated() {
        assert!(build("lease-42:expiring.v1_x", "ok").is_ok());
        for bad in ["", "has space", "new\nline", &"k".repeat(201)] {
            assert!(
                matches!(
                    build(bad, "ok"),
                    Err(NotificationError::BadIdempotencyKey { .. })
                ),
                "{bad:?} accepted"
            );
        }
        for bad in ["", "  ", "two\r\nlines", &"s".repeat(201)] {
            assert!(
                matches!(build("k", bad), Err(NotificationError::BadSubject { .. })),
                "{bad:?} accepted"
            );
        }
        assert_eq!(
            Notification::new(EventKind::Alarm, " ", "s", "b", serde_json::json!({}), "k"),
            Err(NotificationError::NoRecipient)
        );
    }
}
