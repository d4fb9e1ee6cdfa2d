//! [`JoinStore`] on the embedded SQLite store.

use crate::sqlite::{parse_ts, ts};
use crate::sqlite_runtime::{get_node_tx, insert_events, register_node_tx};
use crate::{
    JoinRefusal, JoinStore, JoinTokenRecord, NodeCredentialRecord, NodeJoin, NodeRecord, Result,
    SqliteStore, StoreError,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

const TOKEN_COLUMNS: &str = "id, site_id, site, secret_hash, description, max_uses, uses, created_at, created_by, expires_at, revoked_at";

fn token_from_row(row: &Row<'_>) -> rusqlite::Result<JoinTokenRecord> {
    Ok(JoinTokenRecord {
        id: row.get(0)?,
        site_id: row.get(1)?,
        site: row.get(2)?,
        secret_hash: row.get(3)?,
        description: row.get(4)?,
        max_uses: row.get::<_, Option<i64>>(5)?.map(|m| m as u32),
        uses: row.get::<_, i64>(6)? as u32,
        created_at: parse_ts(&row.get::<_, String>(7)?)?,
        created_by: row.get(8)?,
        expires_at: parse_ts(&row.get::<_, String>(9)?)?,
        revoked_at: row
            .get::<_, Option<String>>(10)?
            .map(|s| parse_ts(&s))
            .transpose()?,
    })
}

fn token_where(conn: &Connection, column: &str, value: &str) -> Result<Option<JoinTokenRecord>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {TOKEN_COLUMNS} FROM join_tokens WHERE {column} = ?1"
        ))?
        .query_row([value], token_from_row)
        .optional()?)
}

#[async_trait]
impl JoinStore for SqliteStore {
    async fn create_join_token(&self, t: JoinTokenRecord) -> Result<()> {
        self.write(move |conn| {
            conn.prepare_cached(&format!(
                "INSERT INTO join_tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
            ))?
            .execute(params![
                t.id,
                t.site_id,
                t.site,
                t.secret_hash,
                t.description,
                t.max_uses.map(i64::from),
                i64::from(t.uses),
                ts(t.created_at),
                t.created_by,
                ts(t.expires_at),
                t.revoked_at.map(ts),
            ])?;
            Ok(())
        })
        .await
    }

    async fn list_join_tokens(&self) -> Result<Vec<JoinTokenRecord>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM join_tokens ORDER BY created_at DESC, id DESC"
            ))?;
            let rows = stmt.query_map([], token_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn revoke_join_token(&self, id: &str, now: DateTime<Utc>) -> Result<JoinTokenRecord> {
        let id = id.to_string();
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE join_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            )?
            .execute(params![id, ts(now)])?;
            token_where(conn, "id", &id)?.ok_or_else(|| StoreError::NotFound {
                kind: "join token".into(),
                id: id.clone(),
            })
        })
        .await
    }

    async fn join_node(
        &self,
        join: NodeJoin,
        now: DateTime<Utc>,
    ) -> Result<std::result::Result<(NodeRecord, JoinTokenRecord), JoinRefusal>> {
        self.write(move |conn| {
            let Some(mut token) = token_where(conn, "secret_hash", &join.secret_hash)? else {
                return Ok(Err(JoinRefusal::Unknown));
            };
            if let Some(refusal) = token.refusal(now) {
                return Ok(Err(refusal));
            }
            if token.site_id != join.registration.site_id {
                return Ok(Err(JoinRefusal::OtherSite));
            }
            token.uses += 1;
            conn.prepare_cached("UPDATE join_tokens SET uses = ?2 WHERE id = ?1")?
                .execute(params![token.id, i64::from(token.uses)])?;
            let node_id = register_node_tx(conn, &join.registration)?;
            // Joining again (a wiped state dir, a reinstalled machine) replaces the node's
            // credential: the old one stops working.
            conn.prepare_cached("DELETE FROM node_credentials WHERE node_id = ?1")?
                .execute([&node_id])?;
            conn.prepare_cached(
                "INSERT INTO node_credentials (token_hash, node_id, join_token, created_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![join.credential_hash, node_id, token.id, ts(now)])?;
            insert_events(conn, &join.events)?;
            let node = get_node_tx(conn, &node_id)?.ok_or_else(|| StoreError::NotFound {
                kind: "node".into(),
                id: node_id.clone(),
            })?;
            Ok(Ok((node, token)))
        })
        .await
    }

    async fn node_credential(&self, token_hash: &str) -> Result<Option<NodeCredentialRecord>> {
        let hash = token_hash.to_string();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT token_hash, node_id, join_token, created_at FROM node_credentials
                     WHERE token_hash = ?1",
                )?
                .query_row([hash], |r| {
                    Ok(NodeCredentialRecord {
                        token_hash: r.get(0)?,
                        node_id: r.get(1)?,
                        join_token: r.get(2)?,
                        created_at: parse_ts(&r.get::<_, String>(3)?)?,
                    })
                })
                .optional()?)
        })
        .await
    }

    async fn revoke_node_credentials(&self, node_id: &str) -> Result<u64> {
        let id = node_id.to_string();
        self.write(move |conn| {
            Ok(conn
                .prepare_cached("DELETE FROM node_credentials WHERE node_id = ?1")?
                .execute([id])? as u64)
        })
        .await
    }
}
