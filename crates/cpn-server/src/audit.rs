//! The audit log: every mutating API request and every login attempt, in the store's
//! `audit` table (append-only: the database refuses updates and deletes, and lines outlive
//! the objects they name).
//!
//! Requests are recorded by the edge's layer (`audit_layer::record_mutations`); logins by
//! `identity::login` itself, since they fail before any principal exists. This module lists
//! the lines (operators only) and records logins; it knows nothing of HTTP.

use crate::caller::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::QueryMap;
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

fn time_param(q: &mut QueryMap, name: &str) -> ApiResult<Option<DateTime<Utc>>> {
    q.take(name)
        .map(|s| {
            DateTime::parse_from_rfc3339(&s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| ApiError {
                    code: cpn_api_types::Code::BadRequest,
                    message: format!(
                        "{name} must be an RFC 3339 time such as 2026-01-02T03:04:05Z: {e}"
                    ),
                    field: Some(name.into()),
                })
        })
        .transpose()
}

/// `GET /api/v1/audit` (operators): newest first, filtered.
pub async fn list(state: &AppState, who: &Caller, mut q: QueryMap) -> ApiResult<Page<AuditEntry>> {
    if !who.is_operator() {
        return Err(ApiError::forbidden("only operators may read the audit log"));
    }
    let limit = match q.take("limit") {
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| ApiError {
                code: cpn_api_types::Code::BadRequest,
                message: format!("limit must be 1..=1000, got {l:?}"),
                field: Some("limit".into()),
            })?,
        None => 100,
    };
    let before = match q.take("cursor") {
        Some(c) => Some(c.parse::<u64>().map_err(|_| ApiError {
            code: cpn_api_types::Code::BadRequest,
            message: format!("cursor must be the next_cursor of an earlier page, got {c:?}"),
            field: Some("cursor".into()),
        })?),
        None => None,
    };
    let query = AuditQuery {
        actor: q.take("actor"),
        action: q.take("action"),
        object_kind: q.take("kind"),
        object_id: q.take("object"),
        result: q.take("result"),
        tenant: q.take("tenant"),
        since: time_param(&mut q, "since")?,
        until: time_param(&mut q, "until")?,
        before,
        limit: limit + 1,
    };
    q.finish()?;
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
