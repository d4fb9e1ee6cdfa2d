//! The event stream: `GET /api/v1/events` (the edge sends an `EventStream` as Server-Sent
//! Events, `response`) and the event log.
//!
//! Events are rows of the store, written in the same transaction as the change they
//! describe, so their ids are gap-free and in commit order. A stream reads the store from
//! its cursor whenever a commit wakes it; a client that reconnects with `Last-Event-ID`
//! resumes exactly after the last event it saw.

use crate::RuntimeState;
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult};
use cpn_api_types::events::{EventView, Severity, type_matches};
use cpn_store::{EventFilter, EventRecord};
use futures_util::Stream;
use std::pin::Pin;
use std::time::Duration;

/// Events read from the store at once by a stream, and the log's default page.
pub const BATCH: usize = 500;

pub fn view(r: EventRecord) -> EventView {
    let e = r.event;
    EventView {
        id: r.seq,
        at: e.at,
        event_type: e.event_type,
        subject: e.subject,
        tenant: e.tenant,
        severity: match e.severity.as_str() {
            "critical" => Severity::Critical,
            "warning" => Severity::Warning,
            _ => Severity::Info,
        },
        message: e.message,
        data: e.data,
    }
}

/// Who sees what: operators everything; others their tenant's events (node events,
/// which belong to no tenant, are for operators).
fn visible(who: &Caller, e: &EventRecord) -> bool {
    who.is_operator() || e.event.tenant == who.tenant
}

pub struct EventQuery {
    pub types: Vec<String>,
    pub after: Option<u64>,
    pub limit: usize,
    /// Log only: one subject's events (a task id, a node id, a flow id).
    pub subject: Option<String>,
    /// Log only: newest first, paging with `before`.
    pub newest_first: bool,
    pub before: Option<u64>,
}

/// `GET /api/v1/events/log`: one page of past events as JSON.
pub async fn page(state: &RuntimeState, who: &Caller, q: EventQuery) -> ApiResult<Vec<EventView>> {
    let rows = state
        .store
        .find_events(EventFilter {
            cursor: if q.newest_first { q.before } else { q.after },
            newest_first: q.newest_first,
            types: q.types,
            subject: q.subject,
            tenant: (!who.is_operator()).then(|| who.tenant.clone()),
            limit: q.limit,
        })
        .await?;
    // The store filtered by tenant already; `visible` stays the one rule of who sees what.
    Ok(rows
        .into_iter()
        .filter(|e| visible(who, e))
        .map(view)
        .collect())
}

/// The events a client follows, oldest first, until the server stops.
pub struct EventStream(pub Pin<Box<dyn Stream<Item = EventView> + Send>>);

/// How often a quiet stream says it is alive, so proxies keep the connection.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub async fn stream(state: RuntimeState, who: &Caller, q: EventQuery) -> ApiResult<EventStream> {
    if q.newest_first {
        return Err(ApiError::bad_request(
            "a stream runs oldest to newest: order=newest is for /api/v1/events/log",
        ));
    }
    // Without a cursor a stream starts now: only events after the newest stored one.
    let start = match q.after {
        Some(a) => a,
        None => state.store.last_event_seq().await?,
    };
    let reader = Reader {
        wake: state.runtime.events.subscribe(),
        stop: state.runtime.shutdown.subscribe(),
        state,
        who: who.clone(),
        types: q.types,
        subject: q.subject,
        cursor: start,
        queue: std::collections::VecDeque::new(),
    };
    let s =
        futures_util::stream::unfold(
            reader,
            |mut r| async move { r.next().await.map(|ev| (ev, r)) },
        );
    Ok(EventStream(Box::pin(s)))
}

/// One client's position in the event log.
struct Reader {
    state: RuntimeState,
    who: Caller,
    types: Vec<String>,
    subject: Option<String>,
    cursor: u64,
    queue: std::collections::VecDeque<EventView>,
    wake: tokio::sync::watch::Receiver<u64>,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl Reader {
    /// The next event for this client; `None` when the server stops.
    async fn next(&mut self) -> Option<EventView> {
        loop {
            if *self.stop.borrow() {
                return None;
            }
            if let Some(ev) = self.queue.pop_front() {
                return Some(ev);
            }
            // Mark what we have seen before reading, so a commit after the read wakes us.
            self.wake.borrow_and_update();
            let rows = match self.state.store.events_after(self.cursor, BATCH).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "event stream read failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            for r in rows {
                self.cursor = r.seq;
                if visible(&self.who, &r)
                    && type_matches(&self.types, &r.event.event_type)
                    && self.subject.as_ref().is_none_or(|s| *s == r.event.subject)
                {
                    self.queue.push_back(view(r));
                }
            }
            if self.queue.is_empty() {
                // Also re-read now and then: a commit made by a path that did not bump the
                // counter is still delivered.
                tokio::select! {
                    _ = tokio::time::timeout(Duration::from_secs(2), self.wake.changed()) => {}
                    _ = self.stop.changed() => {}
                }
            }
        }
    }
}
