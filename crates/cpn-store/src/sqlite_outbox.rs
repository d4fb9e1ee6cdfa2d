//! [`OutboxStore`] on SQLite: `notification_outbox` and `market_pending_codes`.

use crate::sqlite::{parse_ts, ts};
use crate::{
    Enqueued, NewOutboxEntry, OutboxEntry, OutboxQuery, OutboxStore, OutboxSummary, Result,
    Retried, Settled, SqliteStore, StoredCode,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

fn entry_from_row(r: &Row<'_>) -> rusqlite::Result<OutboxEntry> {
    Ok(OutboxEntry {
        seq: r.get::<_, i64>(0)? as u64,
        key: r.get(1)?,
        recipient: r.get(2)?,
        message: r.get(3)?,
        created_at: parse_ts(&r.get::<_, String>(4)?)?,
    })
}

fn summary_from_row(r: &Row<'_>) -> rusqlite::Result<OutboxSummary> {
    let targets: String = r.get(4)?;
    let time = |i: usize| -> rusqlite::Result<Option<DateTime<Utc>>> {
        r.get::<_, Option<String>>(i)?
            .map(|t| parse_ts(&t))
            .transpose()
    };
    Ok(OutboxSummary {
        seq: r.get::<_, i64>(0)? as u64,
        key: r.get(1)?,
        kind: r.get(2)?,
        recipient: r.get(3)?,
        // Rows from before the column hold '': no targets recorded.
        targets: serde_json::from_str(&targets).unwrap_or_default(),
        state: r.get(5)?,
        attempts: r.get::<_, i64>(6)?.max(0) as u32,
        next_attempt_at: time(7)?,
        last_error: r.get(8)?,
        created_at: parse_ts(&r.get::<_, String>(9)?)?,
        settled_at: time(10)?,
    })
}

/// Stores `e` in the transaction of `conn`, unless its key is there already or its
/// recipient is full: the one insert of both a lone enqueue and a market write's outbox.
pub(crate) fn enqueue_in(conn: &Connection, e: &NewOutboxEntry) -> Result<Enqueued> {
    let exists = conn
        .prepare_cached("SELECT 1 FROM notification_outbox WHERE key = ?1")?
        .query_row([&e.key], |_| Ok(()))
        .optional()?
        .is_some();
    if exists {
        return Ok(Enqueued::Duplicate);
    }
    let pending: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM notification_outbox WHERE recipient = ?1 AND state = 'pending'",
        )?
        .query_row([&e.recipient], |r| r.get(0))?;
    let pending = pending.max(0) as usize;
    if pending >= e.max_pending {
        return Ok(Enqueued::Full { pending });
    }
    let targets = serde_json::to_string(&e.targets)
        .map_err(|err| crate::StoreError::Backend(format!("outbox targets: {err}")))?;
    conn.prepare_cached(
        "INSERT INTO notification_outbox (key, recipient, message, state, created_at, kind,
         targets, attempts, next_attempt_at)
         VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?6, 0, ?4)",
    )?
    .execute(params![
        e.key,
        e.recipient,
        e.message,
        ts(e.created_at),
        e.kind,
        targets
    ])?;
    Ok(Enqueued::Queued)
}

fn code_from_row(r: &Row<'_>) -> rusqlite::Result<StoredCode> {
    Ok(StoredCode {
        account: r.get::<_, i64>(0)? as u64,
        purpose: r.get(1)?,
        digest_hex: r.get(2)?,
        issued_at: r.get(3)?,
        expires_at: r.get(4)?,
        attempts_left: r.get::<_, i64>(5)?.max(0) as u32,
    })
}

fn code_of(conn: &Connection, account: u64, purpose: &str) -> Result<Option<StoredCode>> {
    Ok(conn
        .prepare_cached(
            "SELECT account_id, purpose, digest, issued_at, expires_at, attempts_left
             FROM market_pending_codes WHERE account_id = ?1 AND purpose = ?2",
        )?
        .query_row(params![account as i64, purpose], code_from_row)
        .optional()?)
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn enqueue_notification(&self, entry: NewOutboxEntry) -> Result<Enqueued> {
        self.write(move |conn| enqueue_in(conn, &entry)).await
    }

    async fn pending_notifications(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, key, recipient, message, created_at FROM notification_outbox
                 WHERE state = 'pending' AND seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after_seq as i64, limit as i64], entry_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn settle_notification(&self, seq: u64, how: Settled, now: DateTime<Utc>) -> Result<()> {
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE notification_outbox SET state = ?2, settled_at = ?3, next_attempt_at = NULL,
                 message = CASE WHEN ?2 = 'delivered' THEN '' ELSE message END
                 WHERE seq = ?1 AND state = 'pending'",
            )?
            .execute(params![seq as i64, how.as_str(), ts(now)])?;
            Ok(())
        })
        .await
    }

    async fn retry_notification(&self, seq: u64, now: DateTime<Utc>) -> Result<Retried> {
        self.write(move |conn| {
            let state: Option<String> = conn
                .prepare_cached("SELECT state FROM notification_outbox WHERE seq = ?1")?
                .query_row([seq as i64], |r| r.get(0))
                .optional()?;
            match state.as_deref() {
                None => return Ok(Retried::Unknown),
                Some("failed") => {}
                Some(other) => return Ok(Retried::NotFailed(other.to_string())),
            }
            // The last error stays, so the list still says why it failed before.
            conn.prepare_cached(
                "UPDATE notification_outbox SET state = 'pending', attempts = 0,
                 settled_at = NULL, next_attempt_at = ?2 WHERE seq = ?1 AND state = 'failed'",
            )?
            .execute(params![seq as i64, ts(now)])?;
            Ok(Retried::Pending)
        })
        .await
    }

    async fn outbox(&self, q: OutboxQuery) -> Result<Vec<OutboxSummary>> {
        let limit = q.limit.min(OutboxQuery::MAX_LIMIT);
        let before = q.before.map(|b| i64::try_from(b).unwrap_or(i64::MAX));
        self.read(move |conn| {
            // A NULL filter matches everything, so one cached statement serves every query;
            // the outbox is bounded per recipient and purged, so a scan stays short.
            let mut stmt = conn.prepare_cached(
                "SELECT seq, key, kind, recipient, targets, state, attempts, next_attempt_at,
                 last_error, created_at, settled_at FROM notification_outbox
                 WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR recipient = ?2)
                 AND (?3 IS NULL OR seq < ?3) ORDER BY seq DESC LIMIT ?4",
            )?;
            let rows = stmt.query_map(
                params![q.state, q.recipient, before, i64::from(limit)],
                summary_from_row,
            )?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn notification_state(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_string();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT state FROM notification_outbox WHERE key = ?1")?
                .query_row([key], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    async fn purge_settled_notifications(&self, before: DateTime<Utc>) -> Result<u64> {
        self.write(move |conn| {
            let n = conn
                .prepare_cached(
                    "DELETE FROM notification_outbox WHERE state != 'pending' AND settled_at < ?1",
                )?
                .execute([ts(before)])?;
            Ok(n as u64)
        })
        .await
    }

    async fn put_pending_codes(
        &self,
        codes: Vec<StoredCode>,
        message: NewOutboxEntry,
    ) -> Result<Enqueued> {
        self.write(move |conn| {
            // The message first: a code goes in only once its message is in.
            let enqueued = enqueue_in(conn, &message)?;
            if enqueued != Enqueued::Queued {
                return Ok(enqueued);
            }
            for c in &codes {
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO market_pending_codes
                     (account_id, purpose, digest, issued_at, expires_at, attempts_left)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    c.account as i64,
                    c.purpose,
                    c.digest_hex,
                    c.issued_at,
                    c.expires_at,
                    i64::from(c.attempts_left)
                ])?;
            }
            Ok(Enqueued::Queued)
        })
        .await
    }

    async fn pending_code(&self, account: u64, purpose: &str) -> Result<Option<StoredCode>> {
        let purpose = purpose.to_string();
        self.read(move |conn| code_of(conn, account, &purpose))
            .await
    }

    async fn take_code_attempt(&self, account: u64, purpose: &str) -> Result<Option<StoredCode>> {
        let purpose = purpose.to_string();
        self.write(move |conn| {
            let before = code_of(conn, account, &purpose)?;
            if before.as_ref().is_some_and(|c| c.attempts_left > 0) {
                conn.prepare_cached(
                    "UPDATE market_pending_codes SET attempts_left = attempts_left - 1
                     WHERE account_id = ?1 AND purpose = ?2",
                )?
                .execute(params![account as i64, purpose])?;
            }
            Ok(before)
        })
        .await
    }

    async fn delete_pending_codes(&self, account: u64, purpose: Option<&str>) -> Result<bool> {
        let purpose = purpose.map(str::to_string);
        self.write(move |conn| {
            let n = match &purpose {
                Some(p) => conn
                    .prepare_cached(
                        "DELETE FROM market_pending_codes WHERE account_id = ?1 AND purpose = ?2",
                    )?
                    .execute(params![account as i64, p])?,
                None => conn
                    .prepare_cached("DELETE FROM market_pending_codes WHERE account_id = ?1")?
                    .execute([account as i64])?,
            };
            Ok(n > 0)
        })
        .await
    }

    async fn purge_expired_codes(&self, now_unix: i64) -> Result<u64> {
        self.write(move |conn| {
            let n = conn
                .prepare_cached("DELETE FROM market_pending_codes WHERE expires_at <= ?1")?
                .execute([now_unix])?;
            Ok(n as u64)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MarketStore;
    use chrono::Duration;

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        (dir, store)
    }

    fn entry(
        key: &str,
        recipient: &str,
        message: &str,
        now: DateTime<Utc>,
        max_pending: usize,
    ) -> NewOutboxEntry {
        NewOutboxEntry {
            key: key.into(),
            recipient: recipient.into(),
            kind: "account".into(),
            targets: vec!["an***@example.cn".into()],
            message: message.into(),
            created_at: now,
            max_pending,
        }
    }

    #[tokio::test]
    async fn a_failed_entry_keeps_its_message_and_an_operator_can_retry_it_once() {
        use chrono::SubsecRound;
        let (_dir, s) = store();
        // The store keeps microseconds.
        let now = Utc::now().trunc_subsecs(6);
        s.enqueue_notification(entry("k1", "ana", "the code 123456", now, 10))
            .await
            .unwrap();
        s.enqueue_notification(entry("k2", "ana", "m2", now, 10))
            .await
            .unwrap();
        let pending = s.pending_notifications(0, 10).await.unwrap();
        let (failed, delivered) = (pending[0].seq, pending[1].seq);
        assert_eq!(
            s.retry_notification(failed, now).await.unwrap(),
            Retried::NotFailed("pending".into())
        );
        s.record_notification_attempt(crate::NotificationAttemptRecord {
            idempotency_key: "k1".into(),
            kind: "account".into(),
            recipient: "ana".into(),
            channel: "email".into(),
            target: "an***@example.cn".into(),
            target_id: "t1".into(),
            attempt: 1,
            status: "retrying".into(),
            error: Some("relay down".into()),
            permanent: false,
            at: now,
            next_attempt_at: Some(now + Duration::seconds(2)),
        })
        .await
        .unwrap();
        let listed = s
            .outbox(OutboxQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[1].key, "k1", "newest first");
        assert_eq!(listed[1].attempts, 1, "the attempt counts on its entry");
        assert_eq!(listed[1].last_error.as_deref(), Some("relay down"));
        assert_eq!(listed[1].next_attempt_at, Some(now + Duration::seconds(2)));
        assert_eq!(listed[1].targets, ["an***@example.cn"]);
        assert_eq!(
            listed[0].attempts, 0,
            "another key's attempt is not its own"
        );

        s.settle_notification(failed, Settled::Failed, now)
            .await
            .unwrap();
        s.settle_notification(delivered, Settled::Delivered, now)
            .await
            .unwrap();
        assert_eq!(
            s.retry_notification(delivered, now).await.unwrap(),
            Retried::NotFailed("delivered".into())
        );
        assert_eq!(
            s.retry_notification(9_999, now).await.unwrap(),
            Retried::Unknown
        );
        let failed_only = s
            .outbox(OutboxQuery {
                state: Some("failed".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(failed_only.len(), 1);
        assert_eq!(failed_only[0].next_attempt_at, None);

        let later = now + Duration::seconds(60);
        assert_eq!(
            s.retry_notification(failed, later).await.unwrap(),
            Retried::Pending
        );
        let pending = s.pending_notifications(0, 10).await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(
            pending[0].message, "the code 123456",
            "a failed entry keeps its message to be sent again"
        );
        let retried = &s
            .outbox(OutboxQuery {
                state: Some("pending".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap()[0];
        assert_eq!(retried.attempts, 0, "a fresh attempt budget");
        assert_eq!(retried.next_attempt_at, Some(later));
        assert_eq!(retried.settled_at, None);
        assert_eq!(
            s.retry_notification(failed, later).await.unwrap(),
            Retried::NotFailed("pending".into()),
            "retried once: it is pending now"
        );
        // Paged: the second page starts below the first's last sequence number.
        let first = s
            .outbox(OutboxQuery {
                limit: 1,
                ..Default::default()
            })
            .await
            .unwrap();
        let second = s
            .outbox(OutboxQuery {
                before: Some(first[0].seq),
                limit: 1,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!((first[0].seq, second[0].seq), (delivered, failed));
    }

    #[tokio::test]
    async fn the_outbox_keeps_pending_entries_once_per_key_and_bounded_per_tenant() {
        let (dir, s) = store();
        let now = Utc::now();
        assert_eq!(
            s.enqueue_notification(entry("k1", "lab", "m1", now, 2))
                .await
                .unwrap(),
            Enqueued::Queued
        );
        assert_eq!(
            s.enqueue_notification(entry("k1", "lab", "other", now, 2))
                .await
                .unwrap(),
            Enqueued::Duplicate
        );
        assert_eq!(
            s.enqueue_notification(entry("k2", "lab", "m2", now, 2))
                .await
                .unwrap(),
            Enqueued::Queued
        );
        assert_eq!(
            s.enqueue_notification(entry("k3", "lab", "m3", now, 2))
                .await
                .unwrap(),
            Enqueued::Full { pending: 2 }
        );
        assert_eq!(
            s.enqueue_notification(entry("k3", "other", "m3", now, 2))
                .await
                .unwrap(),
            Enqueued::Queued,
            "another recipient has its own bound"
        );

        // Pending entries survive reopening the store: a restart resumes them.
        drop(s);
        let s = SqliteStore::open(dir.path()).unwrap();
        let pending = s.pending_notifications(0, 10).await.unwrap();
        let keys: Vec<&str> = pending.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["k1", "k2", "k3"]);
        assert_eq!(pending[0].message, "m1");
        assert_eq!(
            s.pending_notifications(pending[0].seq, 1).await.unwrap()[0].key,
            "k2"
        );

        // Settling erases the message, frees the recipient's bound and keeps the key.
        s.settle_notification(pending[0].seq, Settled::Delivered, now)
            .await
            .unwrap();
        s.settle_notification(pending[0].seq, Settled::Failed, now)
            .await
            .unwrap();
        assert_eq!(
            s.notification_state("k1").await.unwrap().as_deref(),
            Some("delivered"),
            "a settled entry does not change again"
        );
        assert_eq!(
            s.enqueue_notification(entry("k1", "lab", "again", now, 2))
                .await
                .unwrap(),
            Enqueued::Duplicate
        );
        assert_eq!(
            s.enqueue_notification(entry("k4", "lab", "m4", now, 2))
                .await
                .unwrap(),
            Enqueued::Queued
        );
        let keys: Vec<String> = s
            .pending_notifications(0, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(keys, ["k2", "k3", "k4"]);

        // Settled entries age out; pending ones never do.
        assert_eq!(
            s.purge_settled_notifications(now - Duration::seconds(1))
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            s.purge_settled_notifications(now + Duration::seconds(1))
                .await
                .unwrap(),
            1
        );
        assert_eq!(s.notification_state("k1").await.unwrap(), None);
        assert_eq!(s.pending_notifications(0, 10).await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_pending_code_counts_its_tries_and_is_removed_once() {
        let (_dir, s) = store();
        let code = |purpose: &str, attempts_left| StoredCode {
            account: 7,
            purpose: purpose.into(),
            digest_hex: "ab".repeat(32),
            issued_at: 1_000,
            expires_at: 1_600,
            attempts_left,
        };
        let now = Utc::now();
        let mail = |key: &str| entry(key, "ana", "the codes", now, 10);
        let stored = s
            .put_pending_codes(
                vec![code("registration", 2), code("activation", 5)],
                mail("k1"),
            )
            .await
            .unwrap();
        assert_eq!(stored, Enqueued::Queued);
        assert_eq!(
            s.take_code_attempt(7, "registration").await.unwrap(),
            Some(code("registration", 2))
        );
        assert_eq!(
            s.take_code_attempt(7, "registration").await.unwrap(),
            Some(code("registration", 1))
        );
        assert_eq!(
            s.take_code_attempt(7, "registration").await.unwrap(),
            Some(code("registration", 0)),
            "no try left: it stays at zero"
        );
        assert_eq!(
            s.pending_code(7, "registration").await.unwrap(),
            Some(code("registration", 0))
        );
        // A new code replaces the old one.
        s.put_pending_codes(vec![code("registration", 5)], mail("k2"))
            .await
            .unwrap();
        assert_eq!(
            s.pending_code(7, "registration").await.unwrap(),
            Some(code("registration", 5))
        );
        assert!(
            s.delete_pending_codes(7, Some("registration"))
                .await
                .unwrap()
        );
        assert!(
            !s.delete_pending_codes(7, Some("registration"))
                .await
                .unwrap(),
            "a code is removed once: a second user of it sees it gone"
        );
        assert_eq!(s.take_code_attempt(7, "registration").await.unwrap(), None);
        assert_eq!(s.purge_expired_codes(1_599).await.unwrap(), 0);
        assert_eq!(s.purge_expired_codes(1_600).await.unwrap(), 1);
        assert_eq!(s.pending_code(7, "activation").await.unwrap(), None);
    }

    /// A code and the message that carries it are stored together or not at all: a
    /// message the outbox refuses stores no code, and a write that fails after the message
    /// went in takes the message back out.
    #[tokio::test]
    async fn a_code_is_stored_only_with_its_message() {
        let (_dir, s) = store();
        let now = Utc::now();
        let code = |account: u64| StoredCode {
            account,
            purpose: "registration".into(),
            digest_hex: "cd".repeat(32),
            issued_at: 1_000,
            expires_at: 1_600,
            attempts_left: 5,
        };
        // Together.
        assert_eq!(
            s.put_pending_codes(vec![code(1)], entry("code-1", "ana", "code 1", now, 2))
                .await
                .unwrap(),
            Enqueued::Queued
        );
        assert_eq!(
            s.pending_code(1, "registration").await.unwrap(),
            Some(code(1))
        );
        assert_eq!(
            s.notification_state("code-1").await.unwrap().as_deref(),
            Some("pending")
        );
        // The recipient is full: no message, so no code.
        s.enqueue_notification(entry("other", "ana", "m", now, 2))
            .await
            .unwrap();
        assert_eq!(
            s.put_pending_codes(vec![code(2)], entry("code-2", "ana", "code 2", now, 2))
                .await
                .unwrap(),
            Enqueued::Full { pending: 2 }
        );
        assert_eq!(s.pending_code(2, "registration").await.unwrap(), None);
        assert_eq!(s.notification_state("code-2").await.unwrap(), None);
        // The same key again is not a new message: the code is not replaced either.
        let mut replacing = code(1);
        replacing.digest_hex = "ef".repeat(32);
        assert_eq!(
            s.put_pending_codes(vec![replacing], entry("code-1", "ana", "again", now, 10))
                .await
                .unwrap(),
            Enqueued::Duplicate
        );
        assert_eq!(
            s.pending_code(1, "registration").await.unwrap(),
            Some(code(1))
        );
        // The code's insert fails after the message's (as a full disk would): neither stays.
        s.write(|conn| {
            conn.execute_batch(
                "CREATE TEMP TRIGGER refuse_codes BEFORE INSERT ON market_pending_codes
                 BEGIN SELECT RAISE(ABORT, 'disk full'); END",
            )?;
            Ok(())
        })
        .await
        .unwrap();
        assert!(
            s.put_pending_codes(vec![code(3)], entry("code-3", "bob", "code 3", now, 10))
                .await
                .is_err()
        );
        assert_eq!(s.pending_code(3, "registration").await.unwrap(), None);
        assert_eq!(s.notification_state("code-3").await.unwrap(), None);
        let pending = s.pending_notifications(0, 10).await.unwrap();
        assert!(pending.iter().all(|e| e.recipient != "bob"), "{pending:?}");
    }
}
