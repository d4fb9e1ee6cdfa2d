//! HTTP surface of join tokens, node revocation and the server's CA (issue #12). Thin
//! handlers over `join.rs`.

use crate::error::ApiError;
use crate::extract::{JsonBody, Principal, QueryMap};
use crate::join;
use crate::response::ApiResult;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cpn_api_types::ErrorBody;
use cpn_api_types::join::{JoinTokenCreate, JoinTokenCreated, JoinTokenView, NodeRevoked};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Issue a join token for a site (operators). The answer is the only time the token is
/// shown; `cpn agent --join TOKEN` exchanges it for the node's own credential.
#[utoipa::path(post, path = "/api/v1/sites/{id}/join-tokens", tag = "agents", security(("bearer" = [])),
    params(("id" = String, Path, description = "Site name or id")), request_body = JoinTokenCreate,
    responses((status = 201, body = JoinTokenCreated), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 415, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub(crate) async fn create_join_token(
    State(s): State<AppState>,
    who: Principal,
    Path(site): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<JoinTokenCreate>,
) -> ApiResult<(StatusCode, Json<JoinTokenCreated>)> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    Ok((
        StatusCode::CREATED,
        Json(join::create_token(&s, &who, &site, body, host).await?),
    ))
}

/// Join tokens, newest first, without their secrets (operators). `site` filters.
#[utoipa::path(get, path = "/api/v1/join-tokens", tag = "agents", security(("bearer" = [])),
    params(("site" = Option<String>, Query, description = "Site name or id")),
    responses((status = 200, body = Vec<JoinTokenView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn list_join_tokens(
    State(s): State<AppState>,
    who: Principal,
    mut q: QueryMap,
) -> ApiResult<Json<Vec<JoinTokenView>>> {
    let site = q.take("site");
    q.finish()?;
    Ok(Json(join::list_tokens(&s, &who, site.as_deref()).await?))
}

/// Revoke a join token (operators): no node joins with it any more. Nodes that joined with
/// it keep their credentials.
#[utoipa::path(post, path = "/api/v1/join-tokens/{id}/revoke", tag = "agents", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = JoinTokenView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn revoke_join_token(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<JoinTokenView>> {
    Ok(Json(join::revoke_token(&s, &who, &id).await?))
}

/// Revoke a node's credentials (operators): its agent's next request is answered 401.
#[utoipa::path(post, path = "/api/v1/nodes/{id}/revoke", tag = "nodes", security(("bearer" = [])),
    params(("id" = String, Path, description = "Node id, name, or site/name")),
    responses((status = 200, body = NodeRevoked), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn revoke_node(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<NodeRevoked>> {
    Ok(Json(join::revoke_node(&s, &who, &id).await?))
}

/// The CA that signs this server's certificate, when the server generated it (PEM). No
/// token needed: agents fetch it and check it against the fingerprint in their join token.
#[utoipa::path(get, path = "/api/v1/ca.pem", tag = "agents",
    responses((status = 200, content_type = "application/x-pem-file", body = String), (status = 404, body = ErrorBody)))]
pub(crate) async fn ca_pem(State(s): State<AppState>) -> ApiResult<Response> {
    match &s.transport.ca_pem {
        Some(pem) => Ok((
            [(header::CONTENT_TYPE, "application/x-pem-file")],
            pem.clone(),
        )
            .into_response()),
        None => Err(ApiError::new(
            cpn_api_types::Code::NotFound,
            "this server has no generated CA: it serves plain HTTP or a certificate given by --tls-cert",
        ).into()),
    }
}

/// The module's endpoints: each handler's `#[utoipa::path]` is the one declaration of its
/// method and path, for the router and the OpenAPI document alike. One `routes!` per path.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(create_join_token))
        .routes(routes!(list_join_tokens))
        .routes(routes!(revoke_join_token))
        .routes(routes!(revoke_node))
        .routes(routes!(ca_pem))
}
