//! Query strings parsed at the edge into the services' typed queries. Every parser refuses
//! parameters it does not know (`QueryMap::finish`), so a typo does not silently return an
//! unfiltered list; the services receive only values of the right type.

use crate::audit::AuditFilter;
use crate::error::{ApiError, ApiResult};
use crate::extract::QueryMap;
use crate::registry::{DEFAULT_PAGE, ListFilter, ListParams, MAX_PAGE, RegistryKind};
use crate::runtime::events::{BATCH, EventQuery};
use crate::runtime::tasks::{LogQuery, TaskFilter};
use crate::schedule::DecisionFilter;
use chrono::{DateTime, Utc};
use cpn_api_types::Code;
use cpn_api_types::tasks::{LogStream, TaskState};
use cpn_model::{Kind, Selector};
use cpn_store::{NotificationLogQuery, OutboxQuery};

fn bad(field: &str, message: String) -> ApiError {
    ApiError {
        code: Code::BadRequest,
        message,
        field: Some(field.into()),
    }
}

/// `limit`: a page size from 1 to `max`, `default` when absent.
fn limit_param(q: &mut QueryMap, max: usize, default: usize) -> ApiResult<usize> {
    match q.take("limit") {
        None => Ok(default),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(bad(
                "limit",
                format!("limit must be a whole number from 1 to {max}, got {s:?}"),
            )),
        },
    }
}

/// `cursor`: the `next_cursor` of an earlier page, a sequence number.
fn cursor_param(q: &mut QueryMap) -> ApiResult<Option<u64>> {
    q.take("cursor")
        .map(|c| {
            c.parse::<u64>().map_err(|_| {
                bad(
                    "cursor",
                    format!("cursor must be the next_cursor of an earlier page, got {c:?}"),
                )
            })
        })
        .transpose()
}

/// The paging and selector parameters every registry list shares.
fn list_params(q: &mut QueryMap) -> ApiResult<ListParams> {
    let limit = limit_param(q, MAX_PAGE, DEFAULT_PAGE)?;
    let selector = match q.take("selector") {
        None => Selector::default(),
        Some(s) => Selector::parse(&s).map_err(|e| bad("selector", format!("{e} in {s:?}")))?,
    };
    Ok(ListParams {
        limit,
        cursor: q.take("cursor").filter(|c| !c.is_empty()),
        selector,
    })
}

/// `GET /api/v1/{kind}`: paging, selector, and the kind's own filters (the parent an object
/// hangs under, a resource's type).
pub(crate) fn registry_list<K: RegistryKind>(mut q: QueryMap) -> ApiResult<ListFilter> {
    let page = list_params(&mut q)?;
    let parent = match K::KIND {
        Kind::Resource | Kind::Link => q.take("site").map(|s| (Kind::Site, s)),
        Kind::Site => q
            .take("platform")
            .map(|p| (Kind::Platform, p))
            .or_else(|| q.take("cloud").map(|c| (Kind::Cloud, c))),
        _ => None,
    };
    let resource_type = if K::KIND == Kind::Resource {
        q.take("type")
    } else {
        None
    };
    q.finish()?;
    Ok(ListFilter {
        page,
        parent,
        resource_type,
    })
}

/// `GET /api/v1/schedule/decisions`.
pub(crate) fn decisions(mut q: QueryMap) -> ApiResult<DecisionFilter> {
    let page = list_params(&mut q)?;
    let active_only = match q.take("active").as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::field(
                "active",
                format!("must be true or false, got {other:?}"),
            ));
        }
    };
    q.finish()?;
    Ok(DecisionFilter { page, active_only })
}

/// `?at=` of the topology: an RFC 3339 time; absent means now (the service decides).
pub(crate) fn topology_at(mut q: QueryMap) -> ApiResult<Option<DateTime<Utc>>> {
    let at = q
        .take("at")
        .map(|s| {
            DateTime::parse_from_rfc3339(&s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    bad(
                        "at",
                        format!(
                            "at must be an RFC 3339 time such as 2026-11-23T10:00:00Z, got {s:?}: {e}"
                        ),
                    )
                })
        })
        .transpose()?;
    q.finish()?;
    Ok(at)
}

/// `?limit=` of a metric history: 1 to 10,000 samples, 100 by default.
pub(crate) fn metric_limit(mut q: QueryMap) -> ApiResult<usize> {
    let limit = match q.take("limit") {
        None => 100,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| {
                bad(
                    "limit",
                    format!("limit must be a whole number from 1 to 10000, got {s:?}"),
                )
            })?,
    };
    q.finish()?;
    Ok(limit)
}

fn time_param(q: &mut QueryMap, name: &str) -> ApiResult<Option<DateTime<Utc>>> {
    q.take(name)
        .map(|s| {
            DateTime::parse_from_rfc3339(&s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    bad(
                        name,
                        format!(
                            "{name} must be an RFC 3339 time such as 2026-01-02T03:04:05Z: {e}"
                        ),
                    )
                })
        })
        .transpose()
}

/// `GET /api/v1/audit`.
pub(crate) fn audit(mut q: QueryMap) -> ApiResult<AuditFilter> {
    let limit = limit_param(&mut q, 1000, 100)?;
    let before = cursor_param(&mut q)?;
    let filter = AuditFilter {
        actor: q.take("actor"),
        action: q.take("action"),
        object_kind: q.take("kind"),
        object_id: q.take("object"),
        result: q.take("result"),
        tenant: q.take("tenant"),
        since: time_param(&mut q, "since")?,
        until: time_param(&mut q, "until")?,
        before,
        limit,
    };
    q.finish()?;
    Ok(filter)
}

/// `GET /api/v1/notifications/deliveries`. The service checks `status` and who may read
/// which recipient.
pub(crate) fn deliveries(mut q: QueryMap) -> ApiResult<NotificationLogQuery> {
    let limit = limit_param(&mut q, NotificationLogQuery::MAX_LIMIT as usize, 100)? as u32;
    let filter = NotificationLogQuery {
        recipient: q.take("recipient"),
        status: q.take("status"),
        since: time_param(&mut q, "since")?,
        before: cursor_param(&mut q)?,
        limit,
    };
    q.finish()?;
    Ok(filter)
}

/// `GET /api/v1/notifications/outbox`. The service checks `state` and who may read it.
pub(crate) fn outbox(mut q: QueryMap) -> ApiResult<OutboxQuery> {
    let limit = limit_param(&mut q, OutboxQuery::MAX_LIMIT as usize, 100)? as u32;
    let filter = OutboxQuery {
        state: q.take("state"),
        recipient: q.take("recipient"),
        before: cursor_param(&mut q)?,
        limit,
    };
    q.finish()?;
    Ok(filter)
}

/// An outbox entry's id in a path: its sequence number.
pub(crate) fn outbox_id(id: &str) -> ApiResult<u64> {
    id.parse::<u64>().map_err(|_| {
        bad(
            "id",
            format!("an outbox id is the number in the outbox list, got {id:?}"),
        )
    })
}

/// `GET /api/v1/tasks`.
pub(crate) fn tasks(mut q: QueryMap) -> ApiResult<TaskFilter> {
    let limit = match q.take("limit") {
        None => 100,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| ApiError::bad_request("limit must be a number from 1 to 1000"))?,
    };
    let after_seq = match q.take("cursor") {
        None => None,
        Some(c) => Some(c.parse::<i64>().map_err(|_| {
            ApiError::bad_request("cursor must be a next_cursor from a previous page")
        })?),
    };
    let mut states = Vec::new();
    if let Some(s) = q.take("state") {
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let st = TaskState::parse(part).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "unknown state {part:?}; use pending, scheduled, running, succeeded, failed, cancelled or lost"
                ))
            })?;
            states.push(st);
        }
    }
    let tenant = q.take("tenant");
    let node = q.take("node");
    let name = q.take("name");
    let newest_first = match q.take("order").as_deref() {
        None | Some("oldest") => false,
        Some("newest") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "order must be oldest or newest, not {other:?}"
            )));
        }
    };
    q.finish()?;
    Ok(TaskFilter {
        limit,
        after_seq,
        states,
        tenant,
        node,
        name,
        newest_first,
    })
}

/// `GET /api/v1/tasks/{id}/logs`.
pub(crate) fn task_logs(mut q: QueryMap) -> ApiResult<LogQuery> {
    let stream = match q.take("stream").as_deref() {
        None | Some("all") => LogStream::All,
        Some("stdout") => LogStream::Stdout,
        Some("stderr") => LogStream::Stderr,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "stream must be all, stdout or stderr, not {other:?}"
            )));
        }
    };
    let attempt = q
        .take("attempt")
        .map(|a| {
            a.parse::<u32>()
                .map_err(|_| ApiError::bad_request("attempt must be a number"))
        })
        .transpose()?;
    let follow = match q.take("follow").as_deref() {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") | Some("") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "follow must be true or false, not {other:?}"
            )));
        }
    };
    q.finish()?;
    Ok(LogQuery {
        stream,
        attempt,
        follow,
    })
}

/// `GET /api/v1/events` and `/events/log`; a stream's `Last-Event-ID` header wins over
/// `after`.
pub(crate) fn events(mut q: QueryMap, last_event_id: Option<&str>) -> ApiResult<EventQuery> {
    let types = q
        .take("types")
        .map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let parse = |s: &str, what: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request(format!("{what} must be an event id (a number)")))
    };
    let mut after = q.take("after").map(|a| parse(&a, "after")).transpose()?;
    if let Some(id) = last_event_id {
        after = Some(parse(id, "Last-Event-ID")?);
    }
    let limit = match q.take("limit") {
        None => BATCH,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=10_000).contains(l))
            .ok_or_else(|| ApiError::bad_request("limit must be from 1 to 10000"))?,
    };
    let subject = q.take("subject").filter(|s| !s.is_empty());
    let newest_first = match q.take("order").as_deref() {
        None | Some("oldest") => false,
        Some("newest") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "order must be oldest or newest, not {other:?}"
            )));
        }
    };
    let before = q.take("before").map(|b| parse(&b, "before")).transpose()?;
    if before.is_some() && !newest_first {
        return Err(ApiError::bad_request(
            "before pages a newest-first log: add order=newest (or use after)",
        ));
    }
    if after.is_some() && newest_first {
        return Err(ApiError::bad_request(
            "after pages an oldest-first log; with order=newest use before",
        ));
    }
    q.finish()?;
    Ok(EventQuery {
        types,
        after,
        limit,
        subject,
        newest_first,
        before,
    })
}
