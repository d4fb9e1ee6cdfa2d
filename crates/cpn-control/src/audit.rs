//! The audit log: every mutating API request and every login attempt, in the store's
//! `audit` table (append-only: the database refuses updates and deletes, and lines outlive
//! the objects they name).
//!
//! Requests are recorded by the edge's layer (`audit_layer::record_mutations`); logins by
//! `identity::login` itself, since they fail before any principal exists. This module lists
//! the lines (operators only) and records logins; it knows nothing of HTTP.

use crate::caller::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use chrono::{DateTime, Utc};
use cpn_api_types::Page;
use cpn_api_types::identity::AuditEntry;
use cpn_store::{AuditQuery, AuditRecord};

/// Appends a login attempt.
pub async fn record_login(
    state: &AppState,
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
    state: &AppState,
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
