//! API errors: every failure becomes `{"error": {"code", "message", "field"?}}` with the
//! status fixed by the code table in `cpn-api-types`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cpn_api_types::{Code, ErrorBody};
use cpn_store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    pub field: Option<String>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            code: Code::InvalidField,
            message: message.into(),
            field: Some(field.into()),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(Code::BadRequest, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(Code::Forbidden, message)
    }

    pub fn not_found(kind: &str, id: &str) -> Self {
        Self::new(Code::NotFound, format!("{kind} {id:?} not found"))
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(Code::Unauthenticated, message)
    }

    /// Prefixes the field path, for errors inside a larger document (a scenario item).
    pub fn within(mut self, prefix: &str) -> Self {
        if let Some(f) = &self.field {
            self.field = Some(format!("{prefix}.{f}"));
        } else {
            self.message = format!("{prefix}: {}", self.message);
        }
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{field}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let message = e.to_string();
        match e {
            StoreError::NotFound { .. } => ApiError::new(Code::NotFound, message),
            StoreError::Conflict { .. } | StoreError::StaleVersion { .. } => {
                ApiError::new(Code::GenerationConflict, message)
            }
            StoreError::AlreadyExists { .. } => ApiError::new(Code::AlreadyExists, message),
            StoreError::InUse { .. } => ApiError::new(Code::InUse, message),
            StoreError::BrokenRef { field, .. } => ApiError::field(field, message),
            StoreError::Locked { .. } | StoreError::Backend(_) | StoreError::Corrupt(_) => {
                tracing::error!(error = %message, "store failure");
                ApiError::new(Code::Internal, message)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .expect("the code table holds only valid statuses");
        let mut body = ErrorBody::new(self.code, self.message);
        body.error.field = self.field;
        (status, axum::Json(body)).into_response()
    }
}
