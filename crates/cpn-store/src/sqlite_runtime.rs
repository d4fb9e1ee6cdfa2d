//! [`RuntimeStore`] on the embedded SQLite store: nodes, tasks, events, allocations,
//! operations. Task writes are compare-and-set so that two actors (the binding loop and an
//! agent's report, say) can never both move one task.

use crate::sqlite::{is_unique_violation, json, parse_ts, ts};
use crate::{
    AllocationRecord, EventFilter, EventRecord, NewEvent, NodePatch, NodeRecord, NodeRegistration,
    OperationRecord, Result, RuntimeStore, SqliteStore, StoreError, TaskOrder, TaskQuery,
    TaskRecord, TaskWrite,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

fn bad(what: &str, e: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("{what}: {e}").into(),
    )
}

fn json_col(row: &Row<'_>, i: usize, what: &str) -> rusqlite::Result<serde_json::Value> {
    let text: String = row.get(i)?;
    serde_json::from_str(&text).map_err(|e| bad(what, e))
}

fn opt_ts(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    row.get::<_, Option<String>>(i)?
        .map(|s| parse_ts(&s))
        .transpose()
}

pub(crate) fn insert_events(conn: &Connection, events: &[NewEvent]) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO events (at, type, subject, tenant, severity, message, data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for e in events {
        stmt.execute(params![
            ts(e.at),
            e.event_type,
            e.subject,
            e.tenant,
            e.severity,
            e.message,
            json(&e.data)?
        ])?;
    }
    Ok(())
}

// ---------------------------------------------------------------- nodes

const NODE_COLUMNS: &str = "id, site_id, site, name, executor, labels, inventory, cordoned, occupied_by, ready, registered_at, updated_at";

fn node_from_row(row: &Row<'_>) -> rusqlite::Result<NodeRecord> {
    let labels: String = row.get(5)?;
    Ok(NodeRecord {
        id: row.get(0)?,
        site_id: row.get(1)?,
        site: row.get(2)?,
        name: row.get(3)?,
        executor: row.get(4)?,
        labels: serde_json::from_str(&labels).map_err(|e| bad("labels", e))?,
        inventory: json_col(row, 6, "inventory")?,
        cordoned: row.get::<_, i64>(7)? != 0,
        occupied_by: row.get(8)?,
        ready: row.get::<_, i64>(9)? != 0,
        registered_at: parse_ts(&row.get::<_, String>(10)?)?,
        updated_at: parse_ts(&row.get::<_, String>(11)?)?,
    })
}

pub(crate) fn get_node_tx(conn: &Connection, id: &str) -> Result<Option<NodeRecord>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {NODE_COLUMNS} FROM nodes WHERE id = ?1"))?
        .query_row([id], node_from_row)
        .optional()?)
}

// ---------------------------------------------------------------- tasks

const TASK_COLUMNS: &str = "seq, id, tenant, owner, name, state, priority, attempt, node_id, not_before, submitted_at, updated_at, spec, status";

fn task_from_row(row: &Row<'_>) -> rusqlite::Result<TaskRecord> {
    Ok(TaskRecord {
        seq: row.get(0)?,
        id: row.get(1)?,
        tenant: row.get(2)?,
        owner: row.get(3)?,
        name: row.get(4)?,
        state: row.get(5)?,
        priority: row.get(6)?,
        attempt: row.get::<_, i64>(7)? as u32,
        node_id: row.get(8)?,
        not_before: opt_ts(row, 9)?,
        submitted_at: parse_ts(&row.get::<_, String>(10)?)?,
        updated_at: parse_ts(&row.get::<_, String>(11)?)?,
        spec: json_col(row, 12, "spec")?,
        status: json_col(row, 13, "status")?,
    })
}

fn get_task_tx(conn: &Connection, id: &str) -> Result<Option<TaskRecord>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"))?
        .query_row([id], task_from_row)
        .optional()?)
}

// ---------------------------------------------------------------- events, allocations

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<EventRecord> {
    Ok(EventRecord {
        seq: row.get::<_, i64>(0)? as u64,
        event: NewEvent {
            at: parse_ts(&row.get::<_, String>(1)?)?,
            event_type: row.get(2)?,
            subject: row.get(3)?,
            tenant: row.get(4)?,
            severity: row.get(5)?,
            message: row.get(6)?,
            data: json_col(row, 7, "data")?,
        },
    })
}

const ALLOCATION_COLUMNS: &str = "id, node_id, tenant, resources, created_at, released_at";

fn allocation_from_row(row: &Row<'_>) -> rusqlite::Result<AllocationRecord> {
    Ok(AllocationRecord {
        id: row.get(0)?,
        node_id: row.get(1)?,
        tenant: row.get(2)?,
        resources: json_col(row, 3, "resources")?,
        created_at: parse_ts(&row.get::<_, String>(4)?)?,
        released_at: opt_ts(row, 5)?,
    })
}

fn get_allocation_tx(conn: &Connection, id: &str) -> Result<Option<AllocationRecord>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {ALLOCATION_COLUMNS} FROM allocations WHERE id = ?1"
        ))?
        .query_row([id], allocation_from_row)
        .optional()?)
}

fn operation_from_row(row: &Row<'_>) -> rusqlite::Result<OperationRecord> {
    Ok(OperationRecord {
        id: row.get(0)?,
        at: parse_ts(&row.get::<_, String>(1)?)?,
        tenant: row.get(2)?,
        body: json_col(row, 3, "body")?,
    })
}

fn not_found(kind: &str, id: &str) -> StoreError {
    StoreError::NotFound {
        kind: kind.into(),
        id: id.into(),
    }
}

/// Inserts a node, or refreshes the one with the same (site, name) keeping its id; returns
/// the id. Shared by agent registration and joining.
pub(crate) fn register_node_tx(conn: &Connection, reg: &NodeRegistration) -> Result<String> {
    let existing: Option<String> = conn
        .prepare_cached("SELECT id FROM nodes WHERE site_id = ?1 AND name = ?2")?
        .query_row(params![reg.site_id, reg.name], |r| r.get(0))
        .optional()?;
    let id = match existing {
        Some(id) => {
            conn.prepare_cached(
                "UPDATE nodes SET executor = ?2, labels = ?3, inventory = ?4, ready = 1,
                 updated_at = ?5, site = ?6 WHERE id = ?1",
            )?
            .execute(params![
                id,
                reg.executor,
                json(&reg.labels)?,
                json(&reg.inventory)?,
                ts(reg.now),
                reg.site
            ])?;
            id
        }
        None => {
            conn.prepare_cached(&format!(
                "INSERT INTO nodes ({NODE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, NULL, 1, ?8, ?8)"
            ))?
            .execute(params![
                reg.id,
                reg.site_id,
                reg.site,
                reg.name,
                reg.executor,
                json(&reg.labels)?,
                json(&reg.inventory)?,
                ts(reg.now)
            ])?;
            reg.id.clone()
        }
    };
    Ok(id)
}

#[async_trait]
impl RuntimeStore for SqliteStore {
    async fn register_node(
        &self,
        reg: NodeRegistration,
        events: Vec<NewEvent>,
    ) -> Result<NodeRecord> {
        self.write(move |conn| {
            let id = register_node_tx(conn, &reg)?;
            insert_events(conn, &events)?;
            get_node_tx(conn, &id)?.ok_or_else(|| not_found("node", &id))
        })
        .await
    }

    async fn get_node(&self, id: &str) -> Result<Option<NodeRecord>> {
        let id = id.to_string();
        self.read(move |conn| get_node_tx(conn, &id)).await
    }

    async fn list_nodes(&self) -> Result<Vec<NodeRecord>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {NODE_COLUMNS} FROM nodes ORDER BY site, name"
            ))?;
            let rows = stmt.query_map([], node_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn patch_node(
        &self,
        id: &str,
        patch: NodePatch,
        now: DateTime<Utc>,
        events: Vec<NewEvent>,
    ) -> Result<NodeRecord> {
        let id = id.to_string();
        self.write(move |conn| {
            let mut node = get_node_tx(conn, &id)?.ok_or_else(|| not_found("node", &id))?;
            if let Some(r) = patch.ready {
                node.ready = r;
            }
            if let Some(c) = patch.cordoned {
                node.cordoned = c;
            }
            if let Some(o) = patch.occupied_by {
                node.occupied_by = o;
            }
            node.updated_at = now;
            conn.prepare_cached(
                "UPDATE nodes SET ready = ?2, cordoned = ?3, occupied_by = ?4, updated_at = ?5 WHERE id = ?1",
            )?
            .execute(params![
                id,
                node.ready as i64,
                node.cordoned as i64,
                node.occupied_by,
                ts(now)
            ])?;
            insert_events(conn, &events)?;
            Ok(node)
        })
        .await
    }

    async fn create_tasks(
        &self,
        tasks: Vec<TaskRecord>,
        events: Vec<NewEvent>,
    ) -> Result<Vec<TaskRecord>> {
        self.write(move |conn| {
            let mut out = Vec::with_capacity(tasks.len());
            let mut stmt = conn.prepare_cached(
                "INSERT INTO tasks (id, tenant, owner, name, state, priority, attempt, node_id, not_before, submitted_at, updated_at, spec, status)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?;
            for mut t in tasks {
                stmt.execute(params![
                    t.id,
                    t.tenant,
                    t.owner,
                    t.name,
                    t.state,
                    t.priority,
                    t.attempt as i64,
                    t.node_id,
                    t.not_before.map(ts),
                    ts(t.submitted_at),
                    ts(t.updated_at),
                    json(&t.spec)?,
                    json(&t.status)?
                ])
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        StoreError::AlreadyExists {
                            kind: "task".into(),
                            name: t.id.clone(),
                        }
                    } else {
                        e.into()
                    }
                })?;
                t.seq = conn.last_insert_rowid();
                out.push(t);
            }
            insert_events(conn, &events)?;
            Ok(out)
        })
        .await
    }

    async fn get_task(&self, id: &str) -> Result<Option<TaskRecord>> {
        let id = id.to_string();
        self.read(move |conn| get_task_tx(conn, &id)).await
    }

    async fn list_tasks(&self, q: TaskQuery) -> Result<Vec<TaskRecord>> {
        self.read(move |conn| {
            // The cursor continues in the order of the listing: past it, whichever way.
            let (mut sql, start) = match q.order {
                TaskOrder::Newest => (
                    format!("SELECT {TASK_COLUMNS} FROM tasks WHERE seq < ?1"),
                    q.after_seq.unwrap_or(i64::MAX),
                ),
                TaskOrder::Seq | TaskOrder::Queue => (
                    format!("SELECT {TASK_COLUMNS} FROM tasks WHERE seq > ?1"),
                    q.after_seq.unwrap_or(0),
                ),
            };
            let mut args: Vec<rusqlite::types::Value> = vec![start.into()];
            let mut arg = |sql: &mut String, clause: &str, v: rusqlite::types::Value| {
                args.push(v);
                sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
            };
            if let Some(t) = &q.tenant {
                arg(&mut sql, " AND tenant = ?", t.clone().into());
            }
            if let Some(n) = &q.node_id {
                arg(&mut sql, " AND node_id = ?", n.clone().into());
            }
            if let Some(n) = &q.name {
                arg(&mut sql, " AND name = ?", n.clone().into());
            }
            if let Some(at) = q.due_at {
                arg(
                    &mut sql,
                    " AND (not_before IS NULL OR not_before <= ?)",
                    ts(at).into(),
                );
            }
            if !q.states.is_empty() {
                let mut list = Vec::new();
                for s in &q.states {
                    args.push(s.clone().into());
                    list.push(format!("?{}", args.len()));
                }
                sql.push_str(&format!(" AND state IN ({})", list.join(", ")));
            }
            sql.push_str(match q.order {
                TaskOrder::Seq => " ORDER BY seq",
                TaskOrder::Queue => " ORDER BY priority DESC, seq",
                TaskOrder::Newest => " ORDER BY seq DESC",
            });
            if let Some(l) = q.limit {
                sql.push_str(&format!(" LIMIT {l}"));
            }
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args), task_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn write_tasks(&self, writes: Vec<TaskWrite>) -> Result<Vec<Option<TaskRecord>>> {
        self.write(move |conn| {
            let mut out = Vec::with_capacity(writes.len());
            for w in writes {
                let current: Option<(String, i64)> = conn
                    .prepare_cached("SELECT state, attempt FROM tasks WHERE id = ?1")?
                    .query_row([&w.record.id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                let holds = current.is_some_and(|(state, attempt)| {
                    w.expect_states.contains(&state) && attempt as u32 == w.expect_attempt
                });
                if !holds {
                    out.push(None);
                    continue;
                }
                let t = &w.record;
                conn.prepare_cached(
                    "UPDATE tasks SET state = ?2, attempt = ?3, node_id = ?4, not_before = ?5,
                     updated_at = ?6, status = ?7, priority = ?8 WHERE id = ?1",
                )?
                .execute(params![
                    t.id,
                    t.state,
                    t.attempt as i64,
                    t.node_id,
                    t.not_before.map(ts),
                    ts(t.updated_at),
                    json(&t.status)?,
                    t.priority
                ])?;
                insert_events(conn, &w.events)?;
                // The row now holds exactly the written values; no need to read it back.
                out.push(Some(w.record));
            }
            Ok(out)
        })
        .await
    }

    async fn count_tasks(&self) -> Result<Vec<(String, u64)>> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT state, COUNT(*) FROM tasks GROUP BY state")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn count_tenant_tasks(&self, tenant: &str) -> Result<Vec<(String, u64)>> {
        let tenant = tenant.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT state, COUNT(*) FROM tasks WHERE tenant = ?1 GROUP BY state",
            )?;
            let rows =
                stmt.query_map([&tenant], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn append_events(&self, events: Vec<NewEvent>) -> Result<()> {
        self.write(move |conn| insert_events(conn, &events)).await
    }

    async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<EventRecord>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, at, type, subject, tenant, severity, message, data FROM events
                 WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after as i64, limit as i64], event_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn find_events(&self, f: EventFilter) -> Result<Vec<EventRecord>> {
        self.read(move |conn| {
            let mut sql = String::from(
                "SELECT seq, at, type, subject, tenant, severity, message, data FROM events WHERE ",
            );
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            let mut param = |v: rusqlite::types::Value| {
                args.push(v);
                format!("?{}", args.len())
            };
            let cursor = match (f.newest_first, f.cursor) {
                (false, c) => format!("seq > {}", param((c.unwrap_or(0) as i64).into())),
                (true, Some(c)) => format!("seq < {}", param((c as i64).into())),
                (true, None) => "1 = 1".to_string(),
            };
            sql.push_str(&cursor);
            if let Some(s) = &f.subject {
                sql.push_str(&format!(" AND subject = {}", param(s.clone().into())));
            }
            if let Some(t) = &f.tenant {
                sql.push_str(&format!(" AND tenant = {}", param(t.clone().into())));
            }
            if !f.types.is_empty() {
                // A type itself, or anything under it (`task` → `task.state`); no LIKE, whose
                // `_` would be a wildcard.
                let alternatives: Vec<String> = f
                    .types
                    .iter()
                    .map(|t| {
                        let exact = param(t.clone().into());
                        let len = param(((t.len() + 1) as i64).into());
                        let prefix = param(format!("{t}.").into());
                        format!("type = {exact} OR substr(type, 1, {len}) = {prefix}")
                    })
                    .collect();
                sql.push_str(&format!(" AND ({})", alternatives.join(" OR ")));
            }
            sql.push_str(if f.newest_first {
                " ORDER BY seq DESC"
            } else {
                " ORDER BY seq"
            });
            sql.push_str(&format!(" LIMIT {}", f.limit));
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args), event_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn last_event_seq(&self) -> Result<u64> {
        self.read(|conn| {
            Ok(
                conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| {
                    r.get::<_, i64>(0)
                })? as u64,
            )
        })
        .await
    }

    async fn create_allocation(&self, a: AllocationRecord) -> Result<AllocationRecord> {
        self.write(move |conn| {
            conn.prepare_cached(&format!(
                "INSERT INTO allocations ({ALLOCATION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, NULL)"
            ))?
            .execute(params![
                a.id,
                a.node_id,
                a.tenant,
                json(&a.resources)?,
                ts(a.created_at)
            ])?;
            Ok(a)
        })
        .await
    }

    async fn get_allocation(&self, id: &str) -> Result<Option<AllocationRecord>> {
        let id = id.to_string();
        self.read(move |conn| get_allocation_tx(conn, &id)).await
    }

    async fn list_allocations(&self, active_only: bool) -> Result<Vec<AllocationRecord>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {ALLOCATION_COLUMNS} FROM allocations WHERE (?1 = 0 OR released_at IS NULL) ORDER BY id"
            ))?;
            let rows = stmt.query_map([active_only as i64], allocation_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn adjust_allocation(
        &self,
        id: &str,
        resources: serde_json::Value,
    ) -> Result<AllocationRecord> {
        let id = id.to_string();
        self.write(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE allocations SET resources = ?2 WHERE id = ?1 AND released_at IS NULL",
                )?
                .execute(params![id, json(&resources)?])?;
            if n == 0 {
                return Err(not_found("active allocation", &id));
            }
            get_allocation_tx(conn, &id)?.ok_or_else(|| not_found("allocation", &id))
        })
        .await
    }

    async fn release_allocation(&self, id: &str, now: DateTime<Utc>) -> Result<AllocationRecord> {
        let id = id.to_string();
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE allocations SET released_at = ?2 WHERE id = ?1 AND released_at IS NULL",
            )?
            .execute(params![id, ts(now)])?;
            get_allocation_tx(conn, &id)?.ok_or_else(|| not_found("allocation", &id))
        })
        .await
    }

    async fn create_operation(
        &self,
        op: OperationRecord,
        events: Vec<NewEvent>,
    ) -> Result<OperationRecord> {
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO operations (id, at, tenant, body) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![op.id, ts(op.at), op.tenant, json(&op.body)?])?;
            insert_events(conn, &events)?;
            Ok(op)
        })
        .await
    }

    async fn get_operation(&self, id: &str) -> Result<Option<OperationRecord>> {
        let id = id.to_string();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT id, at, tenant, body FROM operations WHERE id = ?1")?
                .query_row([id], operation_from_row)
                .optional()?)
        })
        .await
    }

    async fn list_operations(&self, limit: usize) -> Result<Vec<OperationRecord>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, at, tenant, body FROM operations ORDER BY at DESC, id DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit as i64], operation_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }
}
