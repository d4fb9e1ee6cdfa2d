//! HTTP surface of per-user notification subscriptions (issue #14 deliverable 6). The
//! service is `notify`.

use crate::extract::{JsonBody, Principal, QueryMap};
use crate::notify;
use crate::response::ApiResult;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use cpn_api_types::notifications::{CreateSubscription, Delivery, OutboxItem, Subscription};
use cpn_api_types::{ErrorBody, Page};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The caller's subscriptions (targets masked).
#[utoipa::path(get, path = "/api/v1/notifications/subscriptions", tag = "notifications", security(("bearer" = [])),
    responses((status = 200, body = Vec<Subscription>), (status = 401, body = ErrorBody)))]
pub(crate) async fn list_subscriptions(
    State(s): State<AppState>,
    who: Principal,
) -> ApiResult<Json<Vec<Subscription>>> {
    Ok(Json(notify::subscriptions(&s, &who).await?))
}

/// Subscribe to alarms and account, lease or billing events by e-mail, signed webhook or
/// SMS. 503 when the channel is not configured on this server (the message names the
/// flag); 429 past 20 subscriptions.
#[utoipa::path(post, path = "/api/v1/notifications/subscriptions", tag = "notifications", security(("bearer" = [])),
    request_body = CreateSubscription,
    responses((status = 201, body = Subscription), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn subscribe(
    State(s): State<AppState>,
    who: Principal,
    JsonBody(body): JsonBody<CreateSubscription>,
) -> ApiResult<(StatusCode, Json<Subscription>)> {
    Ok((
        StatusCode::CREATED,
        Json(notify::subscribe(&s, &who, body).await?),
    ))
}

/// Delete one of the caller's subscriptions.
#[utoipa::path(delete, path = "/api/v1/notifications/subscriptions/{id}", tag = "notifications", security(("bearer" = [])),
    params(("id" = String, Path, description = "Subscription id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn unsubscribe(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    notify::unsubscribe(&s, &who, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The delivery log, newest first: every attempt for operators, the caller's own for
/// anyone else (403 when asking for another recipient). Targets are masked.
#[utoipa::path(get, path = "/api/v1/notifications/deliveries", tag = "notifications", security(("bearer" = [])),
    params(
        ("recipient" = Option<String>, Query, description = "Username the notifications are addressed to; others than the caller's for operators only"),
        ("status" = Option<String>, Query, description = "delivered, retrying or failed"),
        ("since" = Option<String>, Query, description = "RFC 3339; at or after"),
        ("limit" = Option<u32>, Query, description = "Page size, 1..=500, default 100"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses((status = 200, body = Page<Delivery>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn list_deliveries(
    State(s): State<AppState>,
    who: Principal,
    q: QueryMap,
) -> ApiResult<Json<Page<Delivery>>> {
    Ok(Json(
        notify::deliveries(&s, &who, crate::query::deliveries(q)?).await?,
    ))
}

/// The notification outbox, newest first (operators only): each notification with its kind,
/// recipient, masked targets, state, attempts, next attempt and last error; never its
/// message, which may hold a verification code.
#[utoipa::path(get, path = "/api/v1/notifications/outbox", tag = "notifications", security(("bearer" = [])),
    params(
        ("state" = Option<String>, Query, description = "pending, delivered or failed"),
        ("recipient" = Option<String>, Query, description = "Username the notifications are addressed to"),
        ("limit" = Option<u32>, Query, description = "Page size, 1..=500, default 100"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses((status = 200, body = Page<OutboxItem>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn list_outbox(
    State(s): State<AppState>,
    who: Principal,
    q: QueryMap,
) -> ApiResult<Json<Page<OutboxItem>>> {
    Ok(Json(
        notify::outbox(&s, &who, crate::query::outbox(q)?).await?,
    ))
}

/// Send a failed notification again (operators only): back to pending with a fresh attempt
/// budget; targets that have it already are skipped. 404 for an unknown (or purged) id,
/// 409 when the entry is not failed.
#[utoipa::path(post, path = "/api/v1/notifications/outbox/{id}/retry", tag = "notifications", security(("bearer" = [])),
    params(("id" = u64, Path, description = "Outbox entry id (`id` in the outbox list)")),
    responses((status = 200, body = OutboxItem), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn retry_outbox(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<OutboxItem>> {
    Ok(Json(
        notify::retry(&s, &who, crate::query::outbox_id(&id)?).await?,
    ))
}

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_subscriptions, subscribe))
        .routes(routes!(unsubscribe))
        .routes(routes!(list_deliveries))
        .routes(routes!(list_outbox))
        .routes(routes!(retry_outbox))
}
