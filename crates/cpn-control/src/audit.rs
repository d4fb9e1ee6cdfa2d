//! The audit log: every mutating API request and every login attempt, in the store's
//! `audit` table (append-only: the database refuses updates and deletes, and lines outlive
//! the objects they name).
//!
//! Requests are recorded by the edge's layer (`audit_layer::record_mutations`); logins by
//! `identity::login` itself, since they fail before any principal exists. This module lists
//! the lines (operators only) and records logins; it knows nothing of HTTP.
//!
//! Lines are kept forever unless the operator sets a retention (`--audit-retention-days`):
//! then a background loop deletes older lines every hour, in bounded batches, each batch with
//! an `audit.prune` line written in the same transaction (the only delete the database
//! lets through, see `cpn_store::AccountStore::prune_audit`).

use crate::caller::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::Control;
use chrono::{DateTime, Utc};
use cpn_api_types::Page;
use cpn_api_types::identity::AuditEntry;
use cpn_store::{AuditQuery, AuditRecord, Store};
use std::time::Duration;

/// How often the retention runs.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Lines deleted per transaction, so the store's writer is never held long.
const PRUNE_BATCH: usize = 5_000;

/// Appends a login attempt.
pub async fn record_login(
    state: &Control,
    username: &str,
    tenant: &str,
    source: &str,
    result: &str,
    status: u16,
    detail: &str,
) {
    let line = AuditRecord {
        seq: 0,
        at: Utc::now(),
        actor: username.to_string(),
        tenant: tenant.to_string(),
        source: source.to_string(),
        action: "auth.login".into(),
        object_kind: "users".into(),
        object_id: username.to_string(),
        generation_before: None,
        generation_after: None,
        result: result.to_string(),
        status,
        detail: detail.to_string(),
    };
    if let Err(e) = state.store.append_audit(line).await {
        tracing::error!(error = %e, "cannot append a login to the audit log");
    }
}

/// Deletes the lines older than `retention_days` before `now`; returns how many.
pub async fn prune(
    store: &dyn Store,
    retention_days: u32,
    now: DateTime<Utc>,
) -> cpn_store::Result<u64> {
    let before = now - chrono::Duration::days(i64::from(retention_days));
    let record = AuditRecord {
        seq: 0,
        at: now,
        actor: "system".into(),
        tenant: String::new(),
        source: "retention".into(),
        action: "audit.prune".into(),
        object_kind: "audit".into(),
        object_id: String::new(),
        generation_before: None,
        generation_after: None,
        result: "success".into(),
        status: 0,
        detail: format!(
            "retention {retention_days} days: lines before {} deleted: ",
            before.to_rfc3339()
        ),
    };
    let mut total = 0;
    loop {
        let pruned = store
            .prune_audit(before, PRUNE_BATCH, record.clone())
            .await?;
        total += pruned;
        if pruned < PRUNE_BATCH as u64 {
            return Ok(total);
        }
    }
}

/// The retention loop (`runtime::supervise` runs it when a retention is set).
pub async fn retention_loop(state: Control) {
    let Some(days) = state.accounts.config.audit_retention_days else {
        return;
    };
    loop {
        match prune(state.store.as_ref(), days, Utc::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(lines = n, days, "audit lines past the retention deleted"),
            Err(e) => tracing::error!(error = %e, "pruning the audit log failed"),
        }
        tokio::time::sleep(PRUNE_EVERY).await;
    }
}

fn view(r: AuditRecord) -> AuditEntry {
    AuditEntry {
        seq: r.seq,
        at: r.at,
        actor: r.actor,
        tenant: r.tenant,
        source: r.source,
        action: r.action,
        object_kind: r.object_kind,
        object_id: r.object_id,
        generation_before: r.generation_before,
        generation_after: r.generation_after,
        result: r.result,
        status: r.status,
        detail: r.detail,
    }
}

/// `GET /api/v1/audit` (operators): newest first, filtered.
/// Which audit lines to list (parsed at the edge, `query`).
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub object_kind: Option<String>,
    pub object_id: Option<String>,
    pub result: Option<String>,
    pub tenant: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// The cursor: lines older than this sequence number.
    pub before: Option<u64>,
    /// Lines per page, 1 to 1,000.
    pub limit: usize,
}

pub async fn list(
    state: &Control,
    who: &Caller,
    filter: AuditFilter,
) -> ApiResult<Page<AuditEntry>> {
    if !who.is_operator() {
        return Err(ApiError::forbidden("only operators may read the audit log"));
    }
    let limit = filter.limit;
    let query = AuditQuery {
        actor: filter.actor,
        action: filter.action,
        object_kind: filter.object_kind,
        object_id: filter.object_id,
        result: filter.result,
        tenant: filter.tenant,
        since: filter.since,
        until: filter.until,
        before: filter.before,
        // One more than the page, to know whether another follows.
        limit: limit + 1,
    };
    let mut rows = state.store.list_audit(query).await?;
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|r| r.seq.to_string())
    } else {
        None
    };
    Ok(Page {
        items: rows.into_iter().map(view).collect(),
        next_cursor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpn_store::{AccountStore, SqliteStore};

    #[tokio::test]
    async fn retention_deletes_older_lines_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let now = Utc::now();
        for age in [400, 31, 29, 1] {
            store
                .append_audit(AuditRecord {
                    seq: 0,
                    at: now - chrono::Duration::days(age),
                    actor: "alice".into(),
                    tenant: "lab".into(),
                    source: "127.0.0.1".into(),
                    action: "sites.update".into(),
                    object_kind: "sites".into(),
                    object_id: "s1".into(),
                    generation_before: None,
                    generation_after: None,
                    result: "success".into(),
                    status: 200,
                    detail: format!("{age} days old"),
                })
                .await
                .unwrap();
        }
        assert_eq!(prune(&store, 30, now).await.unwrap(), 2);
        assert_eq!(prune(&store, 30, now).await.unwrap(), 0);
        let lines = store
            .list_audit(AuditQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        let details: Vec<&str> = lines.iter().map(|l| l.detail.as_str()).collect();
        assert_eq!(details.len(), 3, "{details:?}");
        assert_eq!(&details[1..], ["1 days old", "29 days old"]);
        let pruning = &lines[0];
        assert_eq!(
            (pruning.action.as_str(), pruning.actor.as_str()),
            ("audit.prune", "system")
        );
        assert!(
            pruning.detail.starts_with("retention 30 days"),
            "{}",
            pruning.detail
        );
        assert!(pruning.detail.ends_with("deleted: 2"), "{}", pruning.detail);
    }
}
