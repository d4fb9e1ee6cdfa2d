//! [`DocStore`] on the embedded SQLite store.

use crate::sqlite::{is_unique_violation, json, parse_ts, ts};
use crate::sqlite_runtime::insert_events;
use crate::{
    DocQuery, DocRecord, DocStore, DocVersion, JournalEntry, NewEvent, Result, SqliteStore,
    StoreError,
};
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};

const COLUMNS: &str =
    "collection, id, tenant, owner, name, state, version, created_at, updated_at, body";

fn bad(what: &str, e: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("{what}: {e}").into(),
    )
}

fn doc_from_row(row: &Row<'_>) -> rusqlite::Result<DocRecord> {
    let body: String = row.get(9)?;
    Ok(DocRecord {
        collection: row.get(0)?,
        id: row.get(1)?,
        tenant: row.get(2)?,
        owner: row.get(3)?,
        name: row.get(4)?,
        state: row.get(5)?,
        version: row.get::<_, i64>(6)? as u64,
        created_at: parse_ts(&row.get::<_, String>(7)?)?,
        updated_at: parse_ts(&row.get::<_, String>(8)?)?,
        body: serde_json::from_str(&body).map_err(|e| bad("body", e))?,
    })
}

fn get_tx(conn: &Connection, collection: &str, id: &str) -> Result<Option<DocRecord>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM docs WHERE collection = ?1 AND id = ?2"
        ))?
        .query_row(params![collection, id], doc_from_row)
        .optional()?)
}

fn history_tx(conn: &Connection, d: &DocRecord) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO doc_history (collection, id, version, at, state, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        d.collection,
        d.id,
        d.version as i64,
        ts(d.updated_at),
        d.state,
        json(&d.body)?
    ])?;
    Ok(())
}

/// Compare-and-set of one document; the answer has the new version.
fn update_tx(conn: &Connection, mut doc: DocRecord) -> Result<DocRecord> {
    let stored = get_tx(conn, &doc.collection, &doc.id)?.ok_or_else(|| StoreError::NotFound {
        kind: doc.collection.clone(),
        id: doc.id.clone(),
    })?;
    if stored.version != doc.version {
        return Err(StoreError::StaleVersion {
            collection: doc.collection,
            id: doc.id,
            expected: doc.version,
            actual: stored.version,
        });
    }
    doc.version += 1;
    doc.created_at = stored.created_at;
    conn.prepare_cached(
        "UPDATE docs SET name = ?3, state = ?4, version = ?5, updated_at = ?6, body = ?7, owner = ?8, tenant = ?9
         WHERE collection = ?1 AND id = ?2",
    )?
    .execute(params![
        doc.collection,
        doc.id,
        doc.name,
        doc.state,
        doc.version as i64,
        ts(doc.updated_at),
        json(&doc.body)?,
        doc.owner,
        doc.tenant
    ])?;
    history_tx(conn, &doc)?;
    Ok(doc)
}

#[async_trait]
impl DocStore for SqliteStore {
    async fn create_doc(&self, mut doc: DocRecord, events: Vec<NewEvent>) -> Result<DocRecord> {
        self.write(move |conn| {
            doc.version = 1;
            conn.prepare_cached(&format!(
                "INSERT INTO docs ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ))?
            .execute(params![
                doc.collection,
                doc.id,
                doc.tenant,
                doc.owner,
                doc.name,
                doc.state,
                1i64,
                ts(doc.created_at),
                ts(doc.updated_at),
                json(&doc.body)?
            ])
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::AlreadyExists {
                        kind: doc.collection.clone(),
                        name: doc.id.clone(),
                    }
                } else {
                    e.into()
                }
            })?;
            history_tx(conn, &doc)?;
            insert_events(conn, &events)?;
            Ok(doc)
        })
        .await
    }

    async fn get_doc(&self, collection: &str, id: &str) -> Result<Option<DocRecord>> {
        let (c, i) = (collection.to_string(), id.to_string());
        self.read(move |conn| get_tx(conn, &c, &i)).await
    }

    async fn list_docs(&self, collection: &str, q: DocQuery) -> Result<Vec<DocRecord>> {
        let c = collection.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM docs WHERE collection = ?1
                 AND (?2 IS NULL OR tenant = ?2) AND (?3 IS NULL OR state = ?3)
                 AND (?4 IS NULL OR name = ?4) AND id > ?5
                 ORDER BY id LIMIT ?6"
            ))?;
            let rows = stmt.query_map(
                params![
                    c,
                    q.tenant,
                    q.state,
                    q.name,
                    q.after.unwrap_or_default(),
                    q.limit.map(|l| l as i64).unwrap_or(-1)
                ],
                doc_from_row,
            )?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn update_doc(&self, doc: DocRecord, events: Vec<NewEvent>) -> Result<DocRecord> {
        self.write(move |conn| {
            let doc = update_tx(conn, doc)?;
            insert_events(conn, &events)?;
            Ok(doc)
        })
        .await
    }

    async fn doc_history(&self, collection: &str, id: &str) -> Result<Vec<DocVersion>> {
        let (c, i) = (collection.to_string(), id.to_string());
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT version, at, state, body FROM doc_history
                 WHERE collection = ?1 AND id = ?2 ORDER BY version",
            )?;
            let rows = stmt.query_map(params![c, i], |r| {
                let body: String = r.get(3)?;
                Ok(DocVersion {
                    version: r.get::<_, i64>(0)? as u64,
                    at: parse_ts(&r.get::<_, String>(1)?)?,
                    state: r.get(2)?,
                    body: serde_json::from_str(&body).map_err(|e| bad("body", e))?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn delete_doc(&self, collection: &str, id: &str) -> Result<()> {
        let (c, i) = (collection.to_string(), id.to_string());
        self.write(move |conn| {
            let n = conn
                .prepare_cached("DELETE FROM docs WHERE collection = ?1 AND id = ?2")?
                .execute(params![c, i])?;
            if n == 0 {
                return Err(StoreError::NotFound { kind: c, id: i });
            }
            Ok(())
        })
        .await
    }

    async fn append_journal(
        &self,
        journal: &str,
        entries: Vec<serde_json::Value>,
        update: Option<DocRecord>,
        events: Vec<NewEvent>,
    ) -> Result<Option<DocRecord>> {
        let journal = journal.to_string();
        self.write(move |conn| {
            let updated = update.map(|d| update_tx(conn, d)).transpose()?;
            let last: i64 = conn
                .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM journal WHERE journal = ?1")?
                .query_row([&journal], |r| r.get(0))?;
            let now = ts(chrono::Utc::now());
            for (i, e) in entries.iter().enumerate() {
                conn.prepare_cached(
                    "INSERT INTO journal (journal, seq, at, entry) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![journal, last + 1 + i as i64, now, json(e)?])?;
            }
            insert_events(conn, &events)?;
            Ok(updated)
        })
        .await
    }

    async fn journal(&self, journal: &str) -> Result<Vec<JournalEntry>> {
        let journal = journal.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, at, entry FROM journal WHERE journal = ?1 ORDER BY seq",
            )?;
            let rows = stmt.query_map([journal], |r| {
                let entry: String = r.get(2)?;
                Ok(JournalEntry {
                    seq: r.get::<_, i64>(0)? as u64,
                    at: parse_ts(&r.get::<_, String>(1)?)?,
                    entry: serde_json::from_str(&entry).map_err(|e| bad("entry", e))?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn doc(id: &str) -> DocRecord {
        let now = Utc::now();
        DocRecord {
            collection: "templates".into(),
            id: id.into(),
            tenant: "t".into(),
            owner: "o".into(),
            name: "n".into(),
            state: "draft".into(),
            version: 0,
            created_at: now,
            updated_at: now,
            body: serde_json::json!({"a": 1}),
        }
    }

    #[tokio::test]
    async fn documents_are_versioned_with_compare_and_set_and_journals_append_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let d = store.create_doc(doc("x1"), vec![]).await.unwrap();
        assert_eq!(d.version, 1);
        let mut next = d.clone();
        next.body = serde_json::json!({"a": 2});
        let d2 = store.update_doc(next.clone(), vec![]).await.unwrap();
        assert_eq!(d2.version, 2);
        // Stale: still says version 1.
        assert!(matches!(
            store.update_doc(next.clone(), vec![]).await,
            Err(StoreError::StaleVersion { actual: 2, .. })
        ));
        let h = store.doc_history("templates", "x1").await.unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].body["a"], 1);
        // A stale update in a journal append writes no entry.
        assert!(
            store
                .append_journal(
                    "x1",
                    vec![serde_json::json!({"step": 1})],
                    Some(next),
                    vec![]
                )
                .await
                .is_err()
        );
        assert!(store.journal("x1").await.unwrap().is_empty());
        store
            .append_journal(
                "x1",
                vec![
                    serde_json::json!({"step": 1}),
                    serde_json::json!({"step": 2}),
                ],
                Some(d2),
                vec![],
            )
            .await
            .unwrap();
        let j = store.journal("x1").await.unwrap();
        assert_eq!(j.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(
            store
                .get_doc("templates", "x1")
                .await
                .unwrap()
                .unwrap()
                .version,
            3
        );
        assert_eq!(
            store
                .list_docs("templates", DocQuery::default())
                .await
                .unwrap()
                .len(),
            1
        );
        store.delete_doc("templates", "x1").await.unwrap();
        assert!(store.get_doc("templates", "x1").await.unwrap().is_none());
    }
}
