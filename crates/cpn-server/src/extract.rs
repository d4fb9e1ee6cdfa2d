//! Request extractors that turn every malformed input into the API's error body:
//! JSON bodies with field paths, bearer-token authentication, query strings.

use crate::caller::{Actor, Caller, SignedIn};
use crate::error::{ApiError, ApiResult};
use crate::join::{NodeCaller, Registrant};
use crate::response::HttpError;
use crate::state::AppState;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use cpn_api_types::Code;
use cpn_api_types::identity::Role;
use serde::de::DeserializeOwned;
use std::collections::HashMap;

/// Largest request body accepted; registry documents are a few KiB, scenarios a few hundred.
pub(crate) const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// A JSON body. Not JSON at all → 400; JSON of the wrong shape → 422 naming the field path.
pub(crate) struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = HttpError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(ct) = req.headers().get(CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
            if !ct.contains("json") {
                return Err(ApiError::new(
                    Code::UnsupportedMediaType,
                    format!(
                        "body must be JSON, got content-type {ct:?}; send Content-Type: application/json"
                    ),
                ).into());
            }
        }
        let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES)
            .await
            .map_err(|_| {
                ApiError::new(
                    Code::PayloadTooLarge,
                    format!("request body is larger than {MAX_BODY_BYTES} bytes"),
                )
            })?;
        Ok(parse_json(&bytes).map(JsonBody)?)
    }
}

/// Parses JSON text into `T`, separating syntax errors (400) from shape errors (422).
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("body is not valid JSON: {e}")))?;
    from_value(value)
}

/// Deserializes a JSON value into `T`, reporting the path of the first bad field.
pub(crate) fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> ApiResult<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let field = if path == "." || path.is_empty() {
            // A missing field is reported at its parent; name it from serde's message.
            missing_field(&inner).unwrap_or_else(|| "body".to_string())
        } else {
            match missing_field(&inner) {
                Some(m) => format!("{path}.{m}"),
                None => path,
            }
        };
        ApiError::field(field, inner)
    })
}

fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_string())
}

/// The authenticated caller, as a handler argument. It dereferences to the domain identity
/// the services take: `SignedIn` (the caller and its session's token hash, for the account
/// calls) and through it `Caller`, so handlers pass `&who` where a service wants either.
#[derive(Debug, Clone)]
pub struct Principal(pub SignedIn);

impl std::ops::Deref for Principal {
    type Target = SignedIn;

    fn deref(&self) -> &SignedIn {
        &self.0
    }
}

/// Services that background code calls too take `impl Into<Actor>`: a request acts as its
/// user.
impl From<&Principal> for Actor {
    fn from(p: &Principal) -> Self {
        Actor::User(p.caller.clone())
    }
}

pub(crate) use crate::auth::hash_token;

/// A bearer token's session and user, as found in the store.
pub(crate) struct Authenticated {
    pub session: cpn_store::SessionInfo,
    pub user: cpn_store::UserRecord,
    pub token_hash: String,
}

/// How often a token's `last_used_at` is written at most: idle expiry needs only this
/// precision, and it keeps reads from turning into a write each. Short idle limits (tests)
/// touch more often, a tenth of the limit.
const TOUCH_EVERY: chrono::Duration = chrono::Duration::seconds(60);

/// Finds the session of the request's bearer token: unknown, expired, idle, revoked and
/// disabled users' tokens all give 401.
pub(crate) async fn authenticate(parts: &Parts, state: &AppState) -> ApiResult<Authenticated> {
    let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
        ApiError::unauthenticated(
            "missing bearer token: send `Authorization: Bearer <token>`; `cpn serve` writes an operator token to <data-dir>/admin.token, and POST /api/v1/auth/login returns one",
        )
    })?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::unauthenticated("Authorization header must be `Bearer <token>`")
        })?;
    let token_hash = hash_token(token);
    let now = chrono::Utc::now();
    let idle_cutoff = now - state.accounts.config.session_idle;
    let (session, user) = state
        .store
        .lookup_session(&token_hash, now, idle_cutoff)
        .await?
        .ok_or_else(|| {
            ApiError::unauthenticated(
                "token is unknown, expired, idle too long or revoked, or its user is disabled; log in again",
            )
        })?;
    let touch_every = TOUCH_EVERY.min(state.accounts.config.session_idle / 10);
    if session.last_used_at.unwrap_or(session.created_at) < now - touch_every {
        state.store.touch_session(&token_hash, now).await?;
    }
    if let Some(slot) = parts.extensions.get::<crate::audit_layer::ActorSlot>() {
        slot.set(&user.username, &user.tenant);
    }
    Ok(Authenticated {
        session,
        user,
        token_hash,
    })
}

fn principal(auth: Authenticated) -> ApiResult<Principal> {
    let role = Role::parse(&auth.user.role).ok_or_else(|| {
        ApiError::new(
            Code::Internal,
            format!(
                "user {} has unknown role {}",
                auth.user.username, auth.user.role
            ),
        )
    })?;
    Ok(Principal(SignedIn {
        caller: Caller {
            user_id: auth.user.id,
            username: auth.user.username,
            tenant: auth.user.tenant,
            role,
        },
        token_hash: auth.token_hash,
    }))
}

/// Whether a token limited to `scopes` may make this request: `read` allows safe methods,
/// `write` everything; `metrics:read` alone allows only `/metrics` (see `MetricsReader`).
fn scope_allows(scopes: &[String], method: &axum::http::Method) -> bool {
    let safe = matches!(
        *method,
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );
    scopes.iter().any(|s| s == "write" || (safe && s == "read"))
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let auth = authenticate(parts, state).await?;
        if let Some(scopes) = &auth.session.scopes
            && !scope_allows(scopes, &parts.method)
        {
            return Err(ApiError::forbidden(format!(
                "this API key has scopes [{}], which do not allow {} requests; create a key with the `write` scope",
                scopes.join(", "),
                parts.method
            )).into());
        }
        Ok(principal(auth)?)
    }
}

/// The caller of `GET /metrics`: an operator, or an API key with the `metrics:read` scope.
pub(crate) struct MetricsReader;

impl FromRequestParts<AppState> for MetricsReader {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let auth = authenticate(parts, state).await?;
        let scoped_for_metrics = auth
            .session
            .scopes
            .as_ref()
            .is_some_and(|s| s.iter().any(|s| s == "metrics:read"));
        let operator = auth.user.role == Role::Operator.as_str()
            && auth
                .session
                .scopes
                .as_ref()
                .is_none_or(|s| scope_allows(s, &parts.method));
        if scoped_for_metrics || operator {
            Ok(MetricsReader)
        } else {
            Err(ApiError::forbidden(
                "/metrics needs an operator or an API key with the `metrics:read` scope (cpn api-key create --scope metrics:read)",
            ).into())
        }
    }
}

/// The client's address as the listener saw it; `unknown` when the server was not started
/// with connection info (tests that call the router directly).
pub(crate) struct ClientAddr(pub String);

pub(crate) fn client_addr(extensions: &axum::http::Extensions) -> String {
    extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(client_addr(&parts.extensions)))
    }
}

/// Query parameters as a map; unknown parameters are refused so typos do not silently
/// return unfiltered lists.
pub(crate) struct QueryMap(pub HashMap<String, String>);

impl QueryMap {
    pub(crate) fn take(&mut self, key: &str) -> Option<String> {
        self.0.remove(key)
    }

    /// A `true`/`false` parameter; absent is false.
    pub(crate) fn take_bool(&mut self, key: &str) -> ApiResult<bool> {
        match self.0.remove(key).as_deref() {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(ApiError {
                code: Code::BadRequest,
                message: format!("{key} must be true or false, got {other:?}"),
                field: Some(key.to_string()),
            }),
        }
    }

    pub(crate) fn finish(self) -> ApiResult<()> {
        match self.0.keys().next() {
            None => Ok(()),
            Some(k) => Err(ApiError {
                code: Code::BadRequest,
                message: format!("unknown query parameter {k:?}"),
                field: Some(k.clone()),
            }),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueryMap {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let pairs: Vec<(String, String)> = serde_urlencoded_pairs(query)?;
        Ok(QueryMap(pairs.into_iter().collect()))
    }
}

fn serde_urlencoded_pairs(query: &str) -> ApiResult<Vec<(String, String)>> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(
        &format!("/?{query}")
            .parse()
            .map_err(|_| ApiError::bad_request("malformed query string"))?,
    )
    .map(|q| q.0)
    .map_err(|e| ApiError::bad_request(format!("malformed query string: {e}")))
}

/// The bearer token of an agent's request (a join token or a node credential).
fn agent_bearer(parts: &Parts) -> ApiResult<&str> {
    parts
        .headers
        .get(AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::unauthenticated(format!(
                "missing bearer token; {}",
                crate::join::USE_A_JOIN_TOKEN
            ))
        })?
        .to_str()
        .ok()
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthenticated("Authorization header must be `Bearer <token>`"))
}

/// An agent's request, authenticated by its node's credential.
impl FromRequestParts<AppState> for NodeCaller {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, HttpError> {
        let token = agent_bearer(parts)?.to_string();
        Ok(crate::join::node_caller(state, &token).await?)
    }
}

/// A node's registration: a join token or the node's credential.
impl FromRequestParts<AppState> for Registrant {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, HttpError> {
        let token = agent_bearer(parts)?.to_string();
        Ok(crate::join::registrant(state, &token).await?)
    }
}
