//! HTTP surface of the marketplace's listings, orders, leases and billing (issue #14).
//! Thin handlers over `market.rs`.

use crate::error::ApiError;
use crate::extract::{JsonBody, Principal, QueryMap};
use crate::join::NodeCaller;
use crate::market::{self, SearchParams};
use crate::response::ApiResult;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use cpn_api_types::ErrorBody;
use cpn_api_types::agent::LeaseAccessReport;
use cpn_api_types::market::{
    AuthorizationCode, Balance, BudgetSet, CodeEntry, Delist, EvaluationView, InvoiceView,
    LeaseMonitoring, LeaseView, LedgerView, ListingHits, ListingSpec, ListingView, MonthClosed,
    OrderCreate, OrderPlaced, OrderView, StatementView, TopUp, UsageView,
};
use serde::de::DeserializeOwned;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

fn parse<T: std::str::FromStr>(q: &mut QueryMap, key: &str) -> crate::error::ApiResult<Option<T>> {
    q.take(key)
        .map(|v| {
            v.parse::<T>().map_err(|_| {
                ApiError::bad_request(format!("query parameter {key}: {v:?} is not valid"))
            })
        })
        .transpose()
}

/// A snake_case enum from the query string, read as the JSON body would be.
fn parse_enum<T: DeserializeOwned>(
    q: &mut QueryMap,
    key: &str,
) -> crate::error::ApiResult<Option<T>> {
    q.take(key)
        .map(|v| {
            serde_json::from_value(serde_json::Value::String(v.clone())).map_err(|_| {
                ApiError::bad_request(format!("query parameter {key}: {v:?} is not valid"))
            })
        })
        .transpose()
}

/// Search idle capacity (SH-CL-12, -13, -15): filters, sort (`price` needs `mode`; `-`
/// for descending) and paging.
#[utoipa::path(get, path = "/api/v1/market/listings", tag = "market", security(("bearer" = [])),
    params(("class" = Option<String>, Query, description = "a or b"),
           ("resource_type" = Option<String>, Query, description = "gpu, npu or cpu"),
           ("model" = Option<String>, Query), ("region" = Option<String>, Query),
           ("min_cards" = Option<u32>, Query, description = "at least this many idle cards"),
           ("min_card_memory_gib" = Option<u32>, Query), ("min_memory_gib" = Option<u32>, Query),
           ("min_vcpus" = Option<u32>, Query), ("min_storage_gb" = Option<u64>, Query),
           ("mode" = Option<String>, Query, description = "hourly, monthly or yearly"),
           ("max_unit_price_minor" = Option<i64>, Query), ("min_reliability" = Option<u16>, Query),
           ("sort" = Option<String>, Query), ("offset" = Option<usize>, Query), ("limit" = Option<usize>, Query)),
    responses((status = 200, body = ListingHits), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn search_listings(
    State(s): State<AppState>,
    _who: Principal,
    mut q: QueryMap,
) -> ApiResult<Json<ListingHits>> {
    let p = SearchParams {
        class: parse_enum(&mut q, "class")?,
        resource_type: parse_enum(&mut q, "resource_type")?,
        model: q.take("model"),
        region: q.take("region"),
        min_cards: parse(&mut q, "min_cards")?,
        min_card_memory_gib: parse(&mut q, "min_card_memory_gib")?,
        min_memory_gib: parse(&mut q, "min_memory_gib")?,
        min_vcpus: parse(&mut q, "min_vcpus")?,
        min_storage_gb: parse(&mut q, "min_storage_gb")?,
        mode: parse_enum(&mut q, "mode")?,
        max_unit_price_minor: parse(&mut q, "max_unit_price_minor")?,
        min_reliability: parse(&mut q, "min_reliability")?,
        sort: q.take("sort"),
        offset: parse(&mut q, "offset")?,
        limit: parse(&mut q, "limit")?,
    };
    q.finish()?;
    Ok(Json(market::search(&s, p).await?))
}

/// Publish a cluster of a site the supplier owns (SH-CL-01, -08): the platform assigns the
/// CPcId; cards start offline until their node's agent reports them.
#[utoipa::path(post, path = "/api/v1/market/listings", tag = "market", security(("bearer" = [])), request_body = ListingSpec,
    responses((status = 201, body = ListingView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn publish(
    State(s): State<AppState>,
    who: Principal,
    JsonBody(body): JsonBody<ListingSpec>,
) -> ApiResult<(StatusCode, Json<ListingView>)> {
    Ok((
        StatusCode::CREATED,
        Json(market::publish(&s, &who, body).await?),
    ))
}

/// The caller's own listings in every state (suppliers; operators: all).
#[utoipa::path(get, path = "/api/v1/market/my-listings", tag = "market", security(("bearer" = [])),
    responses((status = 200, body = Vec<ListingView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn my_listings(
    State(s): State<AppState>,
    who: Principal,
) -> ApiResult<Json<Vec<ListingView>>> {
    Ok(Json(market::my_listings(&s, &who).await?))
}

/// One listing with its per-card state.
#[utoipa::path(get, path = "/api/v1/market/listings/{cpcid}", tag = "market", security(("bearer" = [])),
    params(("cpcid" = String, Path)),
    responses((status = 200, body = ListingView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_listing(
    State(s): State<AppState>,
    _who: Principal,
    Path(cpcid): Path<String>,
) -> ApiResult<Json<ListingView>> {
    Ok(Json(market::get_listing(&s, &cpcid).await?))
}

/// Edit a listing's information and prices (its site and cards stay); leases keep their
/// price.
#[utoipa::path(put, path = "/api/v1/market/listings/{cpcid}", tag = "market", security(("bearer" = [])),
    params(("cpcid" = String, Path)), request_body = ListingSpec,
    responses((status = 200, body = ListingView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn edit(
    State(s): State<AppState>,
    who: Principal,
    Path(cpcid): Path<String>,
    JsonBody(body): JsonBody<ListingSpec>,
) -> ApiResult<Json<ListingView>> {
    Ok(Json(market::edit(&s, &who, &cpcid, body).await?))
}

/// Delist: no new orders, hidden from search; running leases go on (SH-CL-11).
#[utoipa::path(post, path = "/api/v1/market/listings/{cpcid}/delist", tag = "market", security(("bearer" = [])),
    params(("cpcid" = String, Path)), request_body = Delist,
    responses((status = 200, body = ListingView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub(crate) async fn delist(
    State(s): State<AppState>,
    who: Principal,
    Path(cpcid): Path<String>,
    JsonBody(body): JsonBody<Delist>,
) -> ApiResult<Json<ListingView>> {
    Ok(Json(
        market::set_listed(&s, &who, &cpcid, false, &body.reason).await?,
    ))
}

/// Relist a delisted cluster.
#[utoipa::path(post, path = "/api/v1/market/listings/{cpcid}/relist", tag = "market", security(("bearer" = [])),
    params(("cpcid" = String, Path)),
    responses((status = 200, body = ListingView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn relist(
    State(s): State<AppState>,
    who: Principal,
    Path(cpcid): Path<String>,
) -> ApiResult<Json<ListingView>> {
    Ok(Json(market::set_listed(&s, &who, &cpcid, true, "").await?))
}

/// Order cards with a billing mode (SH-CL-16). With automatic approval the answer carries
/// the lease. 409 when the cards are taken, the cluster is delisted, or the budget or funds
/// do not allow it (the message says which).
#[utoipa::path(post, path = "/api/v1/market/orders", tag = "market", security(("bearer" = [])), request_body = OrderCreate,
    responses((status = 201, body = OrderPlaced), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn place_order(
    State(s): State<AppState>,
    who: Principal,
    JsonBody(body): JsonBody<OrderCreate>,
) -> ApiResult<(StatusCode, Json<OrderPlaced>)> {
    Ok((
        StatusCode::CREATED,
        Json(market::place_order(&s, &who, body).await?),
    ))
}

/// Orders the caller placed or received (operators: all).
#[utoipa::path(get, path = "/api/v1/market/orders", tag = "market", security(("bearer" = [])),
    responses((status = 200, body = Vec<OrderView>), (status = 401, body = ErrorBody)))]
pub(crate) async fn list_orders(
    State(s): State<AppState>,
    who: Principal,
) -> ApiResult<Json<Vec<OrderView>>> {
    Ok(Json(market::list_orders(&s, &who).await?))
}

/// The supplier approves an order waiting for it.
#[utoipa::path(post, path = "/api/v1/market/orders/{id}/approve", tag = "market", security(("bearer" = [])),
    params(("id" = u64, Path)),
    responses((status = 200, body = LeaseView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn approve_order(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<LeaseView>> {
    Ok(Json(market::approve_order(&s, &who, number(&id)?).await?))
}

/// The supplier rejects an order waiting for approval; the reason reaches the user.
#[utoipa::path(post, path = "/api/v1/market/orders/{id}/reject", tag = "market", security(("bearer" = [])),
    params(("id" = u64, Path)), request_body = Delist,
    responses((status = 200, body = OrderView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn reject_order(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Delist>,
) -> ApiResult<Json<OrderView>> {
    Ok(Json(
        market::close_order(&s, &who, number(&id)?, Some(&body.reason)).await?,
    ))
}

/// The user withdraws an order still waiting for approval.
#[utoipa::path(post, path = "/api/v1/market/orders/{id}/cancel", tag = "market", security(("bearer" = [])),
    params(("id" = u64, Path)),
    responses((status = 200, body = OrderView), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn cancel_order(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<OrderView>> {
    Ok(Json(
        market::close_order(&s, &who, number(&id)?, None).await?,
    ))
}

fn number(id: &str) -> crate::error::ApiResult<u64> {
    id.parse()
        .map_err(|_| ApiError::not_found("lease or order", id))
}

/// Leases the caller holds or supplies (operators: all).
#[utoipa::path(get, path = "/api/v1/market/leases", tag = "market", security(("bearer" = [])),
    responses((status = 200, body = Vec<LeaseView>), (status = 401, body = ErrorBody)))]
pub(crate) async fn list_leases(
    State(s): State<AppState>,
    who: Principal,
) -> ApiResult<Json<Vec<LeaseView>>> {
    Ok(Json(market::list_leases(&s, &who).await?))
}

/// One lease (another user's is reported missing).
#[utoipa::path(get, path = "/api/v1/market/leases/{id}", tag = "market", security(("bearer" = [])),
    params(("id" = u64, Path)),
    responses((status = 200, body = LeaseView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_lease(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<LeaseView>> {
    Ok(Json(market::get_lease(&s, &who, number(&id)?).await?))
}

/// The evaluations of a listing's ended class B leases, newest first (SH-CL-18): score and
/// components (availability, utilisation, GPU drop-offs, node losses).
#[utoipa::path(get, path = "/api/v1/market/listings/{cpcid}/evaluations", tag = "market", security(("bearer" = [])),
    params(("cpcid" = String, Path), ("offset" = Option<usize>, Query),
           ("limit" = Option<usize>, Query, description = "1..=100, default 20")),
    responses((status = 200, body = Vec<EvaluationView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn listing_evaluations(
    State(s): State<AppState>,
    _who: Principal,
    Path(cpcid): Path<String>,
    mut q: QueryMap,
) -> ApiResult<Json<Vec<EvaluationView>>> {
    let offset = parse(&mut q, "offset")?.unwrap_or(0);
    let limit = parse(&mut q, "limit")?.unwrap_or(20);
    q.finish()?;
    Ok(Json(
        market::eval::listing_evaluations(&s, &cpcid, offset, limit).await?,
    ))
}

/// Live state of a class B lease's nodes, cards and site links (SH-CL-20, -21, -27): CPU
/// and GPU utilisation, temperature, power and voltage where reported, traffic, latency
/// and loss; with the evaluation's counts so far. Lessee, supplier and operators only.
#[utoipa::path(get, path = "/api/v1/market/leases/{id}/monitoring", tag = "market", security(("bearer" = [])),
    params(("id" = u64, Path)),
    responses((status = 200, body = LeaseMonitoring), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub(crate) async fn lease_monitoring(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<LeaseMonitoring>> {
    Ok(Json(
        market::eval::lease_monitoring(&s, &who, number(&id)?).await?,
    ))
}

/// The supplier takes a class A lease's authorization code: shown once. `reissue=true`
/// makes a new one (the old stops working).
#[utoipa::path(post, path = "/api/v1/market/leases/{id}/authorization-code", tag = "market", security(("bearer" = [])),
    params(("id" = u64, Path), ("reissue" = Option<bool>, Query)),
    responses((status = 200, body = AuthorizationCode), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn take_code(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    mut q: QueryMap,
) -> ApiResult<Json<AuthorizationCode>> {
    let reissue = q.take_bool("reissue")?;
    q.finish()?;
    Ok(Json(
        market::take_code(&s, &who, number(&id)?, reissue).await?,
    ))
}

/// The user enters the supplier's authorization code (class A); the cards turn busy.
#[utoipa::path(post, path = "/api/v1/market/leases/{id}/code", tag = "market", security(("bearer" = [])),
    params(("id" = u64, Path)), request_body = CodeEntry,
    responses((status = 200, body = LeaseView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn enter_code(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<CodeEntry>,
) -> ApiResult<Json<LeaseView>> {
    Ok(Json(
        market::enter_code(&s, &who, number(&id)?, body).await?,
    ))
}

/// Release a lease: billing stops now and the cards are freed.
#[utoipa::path(post, path = "/api/v1/market/leases/{id}/release", tag = "market", security(("bearer" = [])),
    params(("id" = u64, Path)),
    responses((status = 200, body = LeaseView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn release(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<LeaseView>> {
    Ok(Json(market::release(&s, &who, number(&id)?).await?))
}

/// Agent: what it did with a class A lease's grant or revocation (its own node only).
#[utoipa::path(post, path = "/api/v1/agents/{node}/lease-access", tag = "agents", security(("bearer" = [])),
    params(("node" = String, Path)), request_body = LeaseAccessReport,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn lease_access_report(
    State(s): State<AppState>,
    who: NodeCaller,
    Path(node): Path<String>,
    JsonBody(body): JsonBody<LeaseAccessReport>,
) -> ApiResult<StatusCode> {
    market::lease_access_report(&s, &who, &node, body).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Top up a tenant's prepaid funds (operators).
#[utoipa::path(post, path = "/api/v1/billing/topups", tag = "billing", security(("bearer" = [])), request_body = TopUp,
    responses((status = 200, body = Balance), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn top_up(
    State(s): State<AppState>,
    who: Principal,
    JsonBody(body): JsonBody<TopUp>,
) -> ApiResult<Json<Balance>> {
    Ok(Json(market::top_up(&s, &who, body).await?))
}

/// Set a tenant's monthly budget (operators).
#[utoipa::path(put, path = "/api/v1/billing/budgets/{tenant}", tag = "billing", security(("bearer" = [])),
    params(("tenant" = String, Path)), request_body = BudgetSet,
    responses((status = 200, body = Balance), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn set_budget(
    State(s): State<AppState>,
    who: Principal,
    Path(tenant): Path<String>,
    JsonBody(body): JsonBody<BudgetSet>,
) -> ApiResult<Json<Balance>> {
    Ok(Json(market::set_budget(&s, &who, &tenant, body).await?))
}

/// A tenant's balance and budget: the caller's own; operators may name any `tenant`.
#[utoipa::path(get, path = "/api/v1/billing/balance", tag = "billing", security(("bearer" = [])),
    params(("tenant" = Option<String>, Query)),
    responses((status = 200, body = Balance), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn balance(
    State(s): State<AppState>,
    who: Principal,
    mut q: QueryMap,
) -> ApiResult<Json<Balance>> {
    let tenant = q.take("tenant");
    q.finish()?;
    Ok(Json(market::balance(&s, &who, tenant.as_deref()).await?))
}

/// Usage records of a month (`YYYY-MM`): the caller's tenant's (operators: all or `tenant`).
#[utoipa::path(get, path = "/api/v1/billing/usage", tag = "billing", security(("bearer" = [])),
    params(("month" = String, Query), ("tenant" = Option<String>, Query)),
    responses((status = 200, body = Vec<UsageView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn usage(
    State(s): State<AppState>,
    who: Principal,
    mut q: QueryMap,
) -> ApiResult<Json<Vec<UsageView>>> {
    let month = q
        .take("month")
        .ok_or_else(|| ApiError::field("month", "give the month as ?month=YYYY-MM"))?;
    let tenant = q.take("tenant");
    q.finish()?;
    Ok(Json(
        market::usage(&s, &who, &month, tenant.as_deref()).await?,
    ))
}

/// Close a month (operators): invoices, supplier statements, settlements in the ledger.
#[utoipa::path(post, path = "/api/v1/billing/months/{month}/close", tag = "billing", security(("bearer" = [])),
    params(("month" = String, Path, description = "YYYY-MM")),
    responses((status = 200, body = MonthClosed), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn close_month(
    State(s): State<AppState>,
    who: Principal,
    Path(month): Path<String>,
) -> ApiResult<Json<MonthClosed>> {
    Ok(Json(market::close_month(&s, &who, &month).await?))
}

/// Invoices of a closed month, each with its CSV: the caller's tenant's (operators: all).
#[utoipa::path(get, path = "/api/v1/billing/months/{month}/invoices", tag = "billing", security(("bearer" = [])),
    params(("month" = String, Path, description = "YYYY-MM")),
    responses((status = 200, body = Vec<InvoiceView>), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn invoices(
    State(s): State<AppState>,
    who: Principal,
    Path(month): Path<String>,
) -> ApiResult<Json<Vec<InvoiceView>>> {
    Ok(Json(market::invoices(&s, &who, &month).await?))
}

/// Settlement statements of a closed month, each with its CSV: the supplier's own
/// (operators: all).
#[utoipa::path(get, path = "/api/v1/billing/months/{month}/statements", tag = "billing", security(("bearer" = [])),
    params(("month" = String, Path, description = "YYYY-MM")),
    responses((status = 200, body = Vec<StatementView>), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn statements(
    State(s): State<AppState>,
    who: Principal,
    Path(month): Path<String>,
) -> ApiResult<Json<Vec<StatementView>>> {
    Ok(Json(market::statements(&s, &who, &month).await?))
}

/// Every ledger account's balance and their sum, which is zero (operators).
#[utoipa::path(get, path = "/api/v1/billing/ledger", tag = "billing", security(("bearer" = [])),
    responses((status = 200, body = LedgerView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn ledger(
    State(s): State<AppState>,
    who: Principal,
) -> ApiResult<Json<LedgerView>> {
    Ok(Json(market::ledger(&s, &who).await?))
}

/// The module's endpoints, one `routes!` per path.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(search_listings, publish))
        .routes(routes!(my_listings))
        .routes(routes!(get_listing, edit))
        .routes(routes!(delist))
        .routes(routes!(relist))
        .routes(routes!(place_order, list_orders))
        .routes(routes!(approve_order))
        .routes(routes!(reject_order))
        .routes(routes!(cancel_order))
        .routes(routes!(list_leases))
        .routes(routes!(get_lease))
        .routes(routes!(listing_evaluations))
        .routes(routes!(lease_monitoring))
        .routes(routes!(take_code))
        .routes(routes!(enter_code))
        .routes(routes!(release))
        .routes(routes!(lease_access_report))
        .routes(routes!(top_up))
        .routes(routes!(set_budget))
        .routes(routes!(balance))
        .routes(routes!(usage))
        .routes(routes!(close_month))
        .routes(routes!(invoices))
        .routes(routes!(statements))
        .routes(routes!(ledger))
}
