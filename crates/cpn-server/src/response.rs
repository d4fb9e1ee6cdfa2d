//! The HTTP edge's answers for what the services return: a `ServiceError` (wrapped in
//! [`HttpError`], the edge's own type, as the orphan rule wants) becomes the API's error body
//! with the status of its code, a refused login a 429 with `Retry-After`, an
//! event stream Server-Sent Events, a task's log a plain-text body. The services return
//! these domain values and know nothing of HTTP; only the handlers and extractors use this.

use crate::error::ServiceError;
use crate::runtime::events::{EventStream, KEEP_ALIVE};
use crate::runtime::tasks::LogBody;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use cpn_api_types::{Code, ErrorBody};
use cpn_control::identity::LoginRefused;
use futures_util::StreamExt;
use std::convert::Infallible;

/// A service's error on its way out of the edge: handlers and extractors return it, `?`
/// turns a service's `ServiceError` into it.
#[derive(Debug)]
pub struct HttpError(pub ServiceError);

/// What a handler returns.
pub(crate) type ApiResult<T> = Result<T, HttpError>;

impl From<ServiceError> for HttpError {
    fn from(e: ServiceError) -> Self {
        HttpError(e)
    }
}

impl From<cpn_store::StoreError> for HttpError {
    fn from(e: cpn_store::StoreError) -> Self {
        HttpError(e.into())
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let HttpError(e) = self;
        e.into_http()
    }
}

/// The answers of domain values the edge does not own (the orphan rule keeps
/// `IntoResponse` off them): handlers call `into_http`.
pub(crate) trait IntoHttp {
    fn into_http(self) -> Response;
}

impl IntoHttp for ServiceError {
    fn into_http(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .expect("the code table holds only valid statuses");
        let mut body = ErrorBody::new(self.code, self.message);
        body.error.field = self.field;
        (status, axum::Json(body)).into_response()
    }
}

impl IntoHttp for LoginRefused {
    fn into_http(self) -> Response {
        match self {
            LoginRefused::Api(e) => HttpError(e).into_response(),
            LoginRefused::Throttled {
                message,
                retry_after,
            } => {
                let mut r =
                    HttpError(ServiceError::new(Code::TooManyRequests, message)).into_response();
                r.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from(retry_after.max(1)),
                );
                r
            }
        }
    }
}

/// Each event as an SSE event: its id (what a reconnecting client sends back as
/// `Last-Event-ID`), its type as the event name, its JSON as the data.
impl IntoHttp for EventStream {
    fn into_http(self) -> Response {
        let events = self.0.map(|v| {
            let data = serde_json::to_string(&v).unwrap_or_default();
            Ok::<_, Infallible>(
                Event::default()
                    .id(v.id.to_string())
                    .event(v.event_type.clone())
                    .data(data),
            )
        });
        Sse::new(events)
            .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
            .into_response()
    }
}

impl IntoHttp for LogBody {
    fn into_http(self) -> Response {
        match self {
            LogBody::Whole(bytes) => axum::body::Body::from(bytes).into_response(),
            LogBody::Follow(chunks) => axum::body::Body::from_stream(chunks).into_response(),
        }
    }
}
