//! [`OutboxStore`] on SQLite: `notification_outbox` and `market_pending_codes`.

use crate::sqlite::{parse_ts, ts};
use crate::{Enqueued, OutboxEntry, OutboxStore, Result, Settled, SqliteStore, StoredCode};
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
    async fn enqueue_notification(
        &self,
        key: &str,
        recipient: &str,
        message: &str,
        now: DateTime<Utc>,
        max_pending: usize,
    ) -> Result<Enqueued> {
        let (key, recipient, message) =
            (key.to_string(), recipient.to_string(), message.to_string());
        self.write(move |conn| {
            let exists = conn
                .prepare_cached("SELECT 1 FROM notification_outbox WHERE key = ?1")?
                .query_row([&key], |_| Ok(()))
                .optional()?
                .is_some();
            if exists {
                return Ok(Enqueued::Duplicate);
            }
            let pending: i64 = conn
                .prepare_cached(
                    "SELECT count(*) FROM notification_outbox WHERE recipient = ?1 AND state = 'pending'",
                )?
                .query_row([&recipient], |r| r.get(0))?;
            let pending = pending.max(0) as usize;
            if pending >= max_pending {
                return Ok(Enqueued::Full { pending });
            }
            conn.prepare_cached(
                "INSERT INTO notification_outbox (key, recipient, message, state, created_at)
                 VALUES (?1, ?2, ?3, 'pending', ?4)",
            )?
            .execute(params![key, recipient, message, ts(now)])?;
            Ok(Enqueued::Queued)
        })
        .await
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
                "UPDATE notification_outbox SET state = ?2, message = '', settled_at = ?3
                 WHERE seq = ?1 AND state = 'pending'",
            )?
            .execute(params![seq as i64, how.as_str(), ts(now)])?;
            Ok(())
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

    async fn put_pending_code(&self, c: StoredCode) -> Result<()> {
        self.write(move |conn| {
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
            Ok(())
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
    use chrono::Duration;

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn the_outbox_keeps_pending_entries_once_per_key_and_bounded_per_tenant() {
        let (dir, s) = store();
        let now = Utc::now();
        assert_eq!(
            s.enqueue_notification("k1", "lab", "m1", now, 2)
                .await
                .unwrap(),
            Enqueued::Queued
        );
        assert_eq!(
            s.enqueue_notification("k1", "lab", "other", now, 2)
                .await
                .unwrap(),
            Enqueued::Duplicate
        );
        assert_eq!(
            s.enqueue_notification("k2", "lab", "m2", now, 2)
                .await
                .unwrap(),
            Enqueued::Queued
        );
        assert_eq!(
            s.enqueue_notification("k3", "lab", "m3", now, 2)
                .await
                .unwrap(),
            Enqueued::Full { pending: 2 }
        );
        assert_eq!(
            s.enqueue_notification("k3", "other", "m3", now, 2)
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
            s.enqueue_notification("k1", "lab", "again", now, 2)
                .await
                .unwrap(),
            Enqueued::Duplicate
        );
        assert_eq!(
            s.enqueue_notification("k4", "lab", "m4", now, 2)
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
        s.put_pending_code(code("registration", 2)).await.unwrap();
        s.put_pending_code(code("activation", 5)).await.unwrap();
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
        s.put_pending_code(code("registration", 5)).await.unwrap();
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
}
