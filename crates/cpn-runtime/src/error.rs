//! The services' errors: a `Code` from the table in `cpn-api-types`, a message for people,
//! and the path of the offending field when there is one. Nothing here knows of HTTP; the
//! edge (`response`) turns a `ServiceError` into `{"error": {"code", "message", "field"?}}`
//! with the status the code table fixes.

use cpn_api_types::Code;
use cpn_store::StoreError;

#[derive(Debug)]
pub struct ServiceError {
    pub code: Code,
    pub message: String,
    pub field: Option<String>,
}

pub type ServiceResult<T> = Result<T, ServiceError>;

/// The name the services used when their errors were HTTP responses; kept while modules move
/// over to `ServiceError`, so the split did not have to touch every file at once.
pub type ApiError = ServiceError;
pub type ApiResult<T> = ServiceResult<T>;

impl ServiceError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ServiceError {
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ServiceError {
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

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{field}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        let message = e.to_string();
        match e {
            StoreError::NotFound { .. } => ServiceError::new(Code::NotFound, message),
            StoreError::Conflict { .. } | StoreError::StaleVersion { .. } => {
                ServiceError::new(Code::GenerationConflict, message)
            }
            StoreError::AlreadyExists { .. } => ServiceError::new(Code::AlreadyExists, message),
            StoreError::InUse { .. } => ServiceError::new(Code::InUse, message),
            StoreError::BrokenRef { field, .. } => ServiceError::field(field, message),
            StoreError::Locked { .. } | StoreError::Backend(_) | StoreError::Corrupt(_) => {
                tracing::error!(error = %message, "store failure");
                ServiceError::new(Code::Internal, message)
            }
        }
    }
}
