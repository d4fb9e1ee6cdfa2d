//! [`AccountStore`] on the embedded SQLite store.

use crate::sqlite::{USER_COLUMNS, new_id, parse_ts, ts, user_from_row};
use crate::{
    AccountStore, AuditQuery, AuditRecord, LoginLockout, NewSession, Result, SessionInfo,
    SessionKind, SqliteStore, StoreError, UserRecord,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

const SESSION_COLUMNS: &str =
    "s.id, s.user_id, s.kind, s.name, s.scopes, s.created_at, s.expires_at, s.last_used_at";

fn bad(what: &str, e: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("{what}: {e}").into(),
    )
}

fn session_from_row(r: &Row<'_>) -> rusqlite::Result<SessionInfo> {
    let kind: String = r.get(2)?;
    let scopes: Option<String> = r.get(4)?;
    Ok(SessionInfo {
        id: r.get(0)?,
        user_id: r.get(1)?,
        kind: SessionKind::parse(&kind).ok_or_else(|| bad("session kind", kind))?,
        name: r.get(3)?,
        scopes: scopes
            .map(|s| serde_json::from_str(&s).map_err(|e| bad("scopes", e)))
            .transpose()?,
        created_at: parse_ts(&r.get::<_, String>(5)?)?,
        expires_at: parse_ts(&r.get::<_, String>(6)?)?,
        last_used_at: r
            .get::<_, Option<String>>(7)?
            .map(|s| parse_ts(&s))
            .transpose()?,
    })
}

fn insert_audit(conn: &Connection, e: &AuditRecord) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit (at, actor, tenant, source, action, object_kind, object_id,
                            generation_before, generation_after, result, status, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        ts(e.at),
        e.actor,
        e.tenant,
        e.source,
        e.action,
        e.object_kind,
        e.object_id,
        e.generation_before.map(|g| g as i64),
        e.generation_after.map(|g| g as i64),
        e.result,
        e.status as i64,
        e.detail
    ])?;
    Ok(())
}

const AUDIT_COLUMNS: &str = "seq, at, actor, tenant, source, action, object_kind, object_id, generation_before, generation_after, result, status, detail";

fn audit_from_row(r: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        seq: r.get::<_, i64>(0)? as u64,
        at: parse_ts(&r.get::<_, String>(1)?)?,
        actor: r.get(2)?,
        tenant: r.get(3)?,
        source: r.get(4)?,
        action: r.get(5)?,
        object_kind: r.get(6)?,
        object_id: r.get(7)?,
        generation_before: r.get::<_, Option<i64>>(8)?.map(|g| g as u64),
        generation_after: r.get::<_, Option<i64>>(9)?.map(|g| g as u64),
        result: r.get(10)?,
        status: r.get::<_, i64>(11)? as u16,
        detail: r.get(12)?,
    })
}

fn user_by_name(conn: &Connection, username: &str) -> Result<UserRecord> {
    conn.prepare_cached(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE username = ?1"
    ))?
    .query_row([username], user_from_row)
    .optional()?
    .ok_or_else(|| StoreError::NotFound {
        kind: "user".into(),
        id: username.to_string(),
    })
}

/// Runs an UPDATE on one user by name and reads the row back.
fn update_user(
    conn: &Connection,
    username: &str,
    sql: &str,
    values: &[&dyn rusqlite::ToSql],
) -> Result<UserRecord> {
    let changed = conn.prepare_cached(sql)?.execute(values)?;
    if changed == 0 {
        return Err(StoreError::NotFound {
            kind: "user".into(),
            id: username.to_string(),
        });
    }
    user_by_name(conn, username)
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn open_session(&self, new: NewSession) -> Result<SessionInfo> {
        self.write(move |conn| {
            let scopes = new
                .scopes
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(|e| StoreError::Backend(format!("encode scopes: {e}")))?;
            let info = SessionInfo {
                id: new_id("ses"),
                user_id: new.user_id.clone(),
                kind: new.kind,
                name: new.name.clone(),
                scopes: new.scopes.clone(),
                created_at: new.now,
                expires_at: new.expires_at,
                last_used_at: None,
            };
            conn.prepare_cached(
                "INSERT INTO sessions (token_hash, user_id, created_at, expires_at, id, kind, name, scopes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                new.token_hash,
                info.user_id,
                ts(info.created_at),
                ts(info.expires_at),
                info.id,
                info.kind.as_str(),
                info.name,
                scopes
            ])?;
            Ok(info)
        })
        .await
    }

    async fn lookup_session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
        idle_cutoff: DateTime<Utc>,
    ) -> Result<Option<(SessionInfo, UserRecord)>> {
        let token_hash = token_hash.to_string();
        self.read(move |conn| {
            let user_cols = USER_COLUMNS
                .split(", ")
                .map(|c| format!("u.{c}"))
                .collect::<Vec<_>>()
                .join(", ");
            let row = conn
                .prepare_cached(&format!(
                    "SELECT {SESSION_COLUMNS}, {user_cols} FROM sessions s JOIN users u ON u.id = s.user_id
                     WHERE s.token_hash = ?1 AND s.revoked = 0 AND s.expires_at > ?2 AND u.disabled = 0
                       AND (s.kind != 'session' OR COALESCE(s.last_used_at, s.created_at) > ?3)"
                ))?
                .query_row(params![token_hash, ts(now), ts(idle_cutoff)], |r| {
                    let session = session_from_row(r)?;
                    // The user's columns follow the session's eight.
                    let user = UserRecord {
                        id: r.get(8)?,
                        username: r.get(9)?,
                        password_hash: r.get(10)?,
                        tenant: r.get(11)?,
                        role: r.get(12)?,
                        display_name: r.get(13)?,
                        created_at: parse_ts(&r.get::<_, String>(14)?)?,
                        disabled: r.get::<_, i64>(15)? != 0,
                        totp_secret: r.get(16)?,
                        totp_pending: r.get(17)?,
                    };
                    Ok((session, user))
                })
                .optional()?;
            Ok(row)
        })
        .await
    }

    async fn touch_session(&self, token_hash: &str, now: DateTime<Utc>) -> Result<()> {
        let token_hash = token_hash.to_string();
        self.write(move |conn| {
            conn.prepare_cached("UPDATE sessions SET last_used_at = ?2 WHERE token_hash = ?1")?
                .execute(params![token_hash, ts(now)])?;
            Ok(())
        })
        .await
    }

    async fn list_sessions(
        &self,
        user_id: &str,
        kind: SessionKind,
        now: DateTime<Utc>,
    ) -> Result<Vec<SessionInfo>> {
        let user_id = user_id.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions s
                 WHERE s.user_id = ?1 AND s.kind = ?2 AND s.revoked = 0 AND s.expires_at > ?3
                 ORDER BY s.created_at"
            ))?;
            let rows =
                stmt.query_map(params![user_id, kind.as_str(), ts(now)], session_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn revoke_session_id(&self, user_id: &str, id: &str) -> Result<bool> {
        let (user_id, id) = (user_id.to_string(), id.to_string());
        self.write(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE sessions SET revoked = 1 WHERE id = ?1 AND user_id = ?2 AND revoked = 0",
                )?
                .execute(params![id, user_id])?;
            Ok(n > 0)
        })
        .await
    }

    async fn revoke_user_sessions(&self, user_id: &str, kind: Option<SessionKind>) -> Result<u64> {
        let user_id = user_id.to_string();
        self.write(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE sessions SET revoked = 1
                     WHERE user_id = ?1 AND revoked = 0 AND (?2 IS NULL OR kind = ?2)",
                )?
                .execute(params![user_id, kind.map(SessionKind::as_str)])?;
            Ok(n as u64)
        })
        .await
    }

    async fn set_user_disabled(&self, username: &str, disabled: bool) -> Result<UserRecord> {
        let username = username.to_string();
        self.write(move |conn| {
            update_user(
                conn,
                &username,
                "UPDATE users SET disabled = ?2 WHERE username = ?1",
                &[&username, &(disabled as i64)],
            )
        })
        .await
    }

    async fn set_password_hash(&self, username: &str, password_hash: &str) -> Result<UserRecord> {
        let (username, hash) = (username.to_string(), password_hash.to_string());
        self.write(move |conn| {
            update_user(
                conn,
                &username,
                "UPDATE users SET password_hash = ?2 WHERE username = ?1",
                &[&username, &hash],
            )
        })
        .await
    }

    async fn set_totp(
        &self,
        username: &str,
        pending: Option<String>,
        secret: Option<String>,
    ) -> Result<UserRecord> {
        let username = username.to_string();
        self.write(move |conn| {
            update_user(
                conn,
                &username,
                "UPDATE users SET totp_pending = ?2, totp_secret = ?3 WHERE username = ?1",
                &[&username, &pending, &secret],
            )
        })
        .await
    }

    async fn save_login_lockout(&self, l: LoginLockout) -> Result<()> {
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO login_lockouts (username, failures, locked_until)
                 SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM users WHERE username = ?1)
                 ON CONFLICT (username) DO UPDATE SET
                     failures = excluded.failures, locked_until = excluded.locked_until
                 WHERE excluded.locked_until > login_lockouts.locked_until",
            )?
            .execute(params![l.username, l.failures as i64, ts(l.locked_until)])?;
            Ok(())
        })
        .await
    }

    async fn clear_login_lockout(&self, username: &str) -> Result<()> {
        let username = username.to_string();
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM login_lockouts WHERE username = ?1")?
                .execute(params![username])?;
            Ok(())
        })
        .await
    }

    async fn login_lockouts(&self, now: DateTime<Utc>) -> Result<Vec<LoginLockout>> {
        self.write(move |conn| {
            let now = ts(now);
            conn.prepare_cached("DELETE FROM login_lockouts WHERE locked_until <= ?1")?
                .execute(params![now])?;
            let mut stmt = conn.prepare_cached(
                "SELECT username, failures, locked_until FROM login_lockouts ORDER BY username",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(LoginLockout {
                    username: r.get(0)?,
                    failures: r.get::<_, i64>(1)?.clamp(0, u32::MAX as i64) as u32,
                    locked_until: parse_ts(&r.get::<_, String>(2)?)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn append_audit(&self, e: AuditRecord) -> Result<()> {
        self.write(move |conn| insert_audit(conn, &e)).await
    }

    async fn prune_audit(
        &self,
        before: DateTime<Utc>,
        limit: usize,
        mut record: AuditRecord,
    ) -> Result<u64> {
        self.write(move |conn| {
            let before = ts(before);
            // The delete trigger lets through only lines older than a row of this table,
            // which lives inside this job's savepoint.
            conn.execute(
                "INSERT INTO audit_prune_before (at) VALUES (?1)",
                params![before],
            )?;
            let pruned = conn.execute(
                "DELETE FROM audit WHERE seq IN
                     (SELECT seq FROM audit WHERE at < ?1 ORDER BY seq LIMIT ?2)",
                params![before, limit as i64],
            )? as u64;
            conn.execute("DELETE FROM audit_prune_before", [])?;
            if pruned > 0 {
                record.detail = format!("{}{pruned}", record.detail);
                insert_audit(conn, &record)?;
            }
            Ok(pruned)
        })
        .await
    }

    async fn list_audit(&self, q: AuditQuery) -> Result<Vec<AuditRecord>> {
        self.read(move |conn| {
            // A trailing `.` asks for every action under that prefix (`auth.`).
            let (action_exact, action_prefix) = match &q.action {
                Some(a) if a.ends_with('.') => (None, Some(format!("{a}%"))),
                Some(a) => (Some(a.clone()), None),
                None => (None, None),
            };
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {AUDIT_COLUMNS} FROM audit
                 WHERE (?1 IS NULL OR actor = ?1)
                   AND (?2 IS NULL OR action = ?2)
                   AND (?3 IS NULL OR action LIKE ?3)
                   AND (?4 IS NULL OR object_kind = ?4)
                   AND (?5 IS NULL OR object_id = ?5)
                   AND (?6 IS NULL OR result = ?6)
                   AND (?7 IS NULL OR tenant = ?7)
                   AND (?8 IS NULL OR at >= ?8)
                   AND (?9 IS NULL OR at < ?9)
                   AND (?10 IS NULL OR seq < ?10)
                 ORDER BY seq DESC LIMIT ?11"
            ))?;
            let rows = stmt.query_map(
                params![
                    q.actor,
                    action_exact,
                    action_prefix,
                    q.object_kind,
                    q.object_id,
                    q.result,
                    q.tenant,
                    q.since.map(ts),
                    q.until.map(ts),
                    q.before.map(|b| b as i64),
                    q.limit as i64
                ],
                audit_from_row,
            )?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }
}
