//! The audit layer around the router: every mutating API request is appended to the audit
//! log after the handler answered. It hands the request an `ActorSlot` that
//! `extract::authenticate` fills, and after the handler reads the answer: status → result,
//! `ETag` → generation after, the new object's id from a 201 body. This is the HTTP edge's
//! half of the audit log; `audit` (the service) lists lines and records logins.

use crate::extract::client_addr;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{ETAG, IF_MATCH};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use chrono::Utc;
use cpn_store::AuditRecord;
use std::sync::{Arc, Mutex};

/// Who made the request, filled in by authentication.
#[derive(Clone, Default)]
pub(crate) struct ActorSlot(Arc<Mutex<Option<(String, String)>>>);

impl ActorSlot {
    pub(crate) fn set(&self, username: &str, tenant: &str) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some((username.to_string(), tenant.to_string()));
        }
    }

    fn get(&self) -> Option<(String, String)> {
        self.0.lock().ok().and_then(|s| s.clone())
    }
}

/// Bodies read back for the id of a created object or an error's message; larger ones are
/// not parsed (the line then lacks that detail).
const MAX_INSPECTED_BODY: usize = 256 * 1024;

/// Agent telemetry: a heartbeat every few seconds per node and streamed log chunks would
/// bury the people's actions; the event log keeps the agents' history.
fn is_telemetry(path: &str) -> bool {
    path.starts_with("/api/v1/agents/") && (path.ends_with("/heartbeat") || path.ends_with("/logs"))
}

pub(crate) fn result_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200..=299 => "success",
        401 | 403 => "denied",
        429 => "busy",
        400..=499 => "rejected",
        _ => "error",
    }
}

/// `kind.verb`, object kind and the position of the object's id in the path, from the
/// route template: `/api/v1/sites/{id}` PUT → `sites.update`, `/api/v1/tasks/{id}/cancel`
/// → `tasks.cancel`.
fn describe(method: &Method, template: &str) -> (String, String, Option<usize>) {
    let segments: Vec<&str> = template
        .trim_start_matches("/api/v1/")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let kind = segments.first().copied().unwrap_or("api").to_string();
    let id_at = segments
        .iter()
        .position(|s| s.starts_with('{'))
        .map(|i| i + 3); // past "", "api", "v1"
    // Every fixed segment after the kind names the action (`users.mfa.disable`, not just
    // `disable`); where the path ends in an object, the method says what was done to it.
    let mut parts: Vec<String> = segments
        .iter()
        .skip(1)
        .filter(|s| !s.starts_with('{'))
        .map(|s| s.to_string())
        .collect();
    if parts.is_empty() || segments.last().is_some_and(|s| s.starts_with('{')) {
        parts.push(match *method {
            Method::POST => "create".into(),
            Method::PUT | Method::PATCH => "update".into(),
            Method::DELETE => "delete".into(),
            ref m => m.as_str().to_ascii_lowercase(),
        });
    }
    (format!("{kind}.{}", parts.join(".")), kind, id_at)
}

fn generation_in(header: Option<&axum::http::HeaderValue>) -> Option<u64> {
    let s = header?.to_str().ok()?.trim();
    s.strip_prefix("W/")
        .unwrap_or(s)
        .trim_matches('"')
        .parse()
        .ok()
}

/// The layer: records every POST, PUT, PATCH and DELETE under `/api/v1` but logins.
pub(crate) async fn record_mutations(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mutating = matches!(
        method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    if !mutating
        || !path.starts_with("/api/v1/")
        || path == "/api/v1/auth/login"
        || is_telemetry(&path)
    {
        return next.run(req).await;
    }
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| path.clone());
    let source = client_addr(req.extensions());
    let if_match = generation_in(req.headers().get(IF_MATCH));
    let slot = ActorSlot::default();
    req.extensions_mut().insert(slot.clone());

    let response = next.run(req).await;

    let status = response.status();
    let (action, object_kind, id_at) = describe(&method, &template);
    let mut object_id = id_at
        .and_then(|i| path.split('/').nth(i))
        .unwrap_or_default()
        .to_string();
    let generation_after = generation_in(response.headers().get(ETAG))
        .filter(|_| status.is_success() && method != Method::DELETE);
    let generation_before = match method {
        Method::PUT | Method::PATCH if status.is_success() => {
            generation_after.map(|g| g.saturating_sub(1)).or(if_match)
        }
        Method::POST if status == StatusCode::CREATED => None,
        _ => if_match,
    };
    // Read the body back only when it says something the line needs.
    let wants_body = status == StatusCode::CREATED && object_id.is_empty() || !status.is_success();
    let (response, detail) = if wants_body {
        let (parts, body) = response.into_parts();
        match axum::body::to_bytes(body, MAX_INSPECTED_BODY).await {
            Ok(bytes) => {
                let value: serde_json::Value =
                    serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
                // Objects answer with their id; a new API key nests it (beside its token,
                // which is never recorded).
                let id = value
                    .get("id")
                    .or_else(|| value.get("key").and_then(|k| k.get("id")))
                    .and_then(|v| v.as_str());
                if object_id.is_empty()
                    && let Some(id) = id
                {
                    object_id = id.to_string();
                }
                let detail = value["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                (Response::from_parts(parts, Body::from(bytes)), detail)
            }
            // Too large to inspect: it has been consumed, so answer with what we know.
            Err(_) => (
                Response::from_parts(parts, Body::empty()),
                "response too large to inspect".into(),
            ),
        }
    } else {
        (response, String::new())
    };
    let (actor, tenant) = slot
        .get()
        .unwrap_or_else(|| ("anonymous".into(), String::new()));
    let line = AuditRecord {
        seq: 0,
        at: Utc::now(),
        actor,
        tenant,
        source,
        action,
        object_kind,
        object_id,
        generation_before,
        generation_after,
        result: result_of(status).into(),
        status: status.as_u16(),
        detail,
    };
    if let Err(e) = state.store.append_audit(line).await {
        // The change itself is committed; losing its audit line is logged loudly.
        tracing::error!(error = %e, %path, "cannot append to the audit log");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_come_from_the_route_template() {
        assert_eq!(
            describe(&Method::PUT, "/api/v1/sites/{id}"),
            ("sites.update".into(), "sites".into(), Some(4))
        );
        assert_eq!(
            describe(&Method::POST, "/api/v1/sites"),
            ("sites.create".into(), "sites".into(), None)
        );
        assert_eq!(
            describe(&Method::POST, "/api/v1/users/{name}/disable").0,
            "users.disable"
        );
        assert_eq!(
            describe(&Method::POST, "/api/v1/users/{name}/mfa/disable").0,
            "users.mfa.disable"
        );
        assert_eq!(
            describe(&Method::PUT, "/api/v1/plans/{id}/instructions/{iid}").0,
            "plans.instructions.update"
        );
        assert_eq!(
            describe(&Method::POST, "/api/v1/auth/logout").0,
            "auth.logout"
        );
        assert_eq!(
            describe(&Method::DELETE, "/api/v1/api-keys/{id}").0,
            "api-keys.delete"
        );
    }
}
