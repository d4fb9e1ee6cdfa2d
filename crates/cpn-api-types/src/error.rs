//! The one error-code table of the API. Every failure a client can see maps to a `Code`,
//! which fixes both the HTTP status and the stable snake_case string in the body.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// The body is not valid JSON, or a query parameter is malformed.
    BadRequest,
    /// No token, or the token is unknown, expired or revoked.
    Unauthenticated,
    /// The caller is authenticated but its role or ownership does not allow this.
    Forbidden,
    NotFound,
    /// The generation sent back is not the stored one: someone else changed the object.
    GenerationConflict,
    /// An object of this kind with this name exists already.
    AlreadyExists,
    /// The object is still referenced by others (a site with resources, say).
    InUse,
    /// No site can take the task now; the message lists the reasons.
    Unschedulable,
    /// The object is not in a state that allows this (cancel a finished task, say).
    InvalidState,
    /// An update was sent without a generation (body field or If-Match).
    PreconditionRequired,
    PayloadTooLarge,
    UnsupportedMediaType,
    /// A field is missing or has an invalid value; `field` names it.
    InvalidField,
    /// A per-tenant limit on concurrent work is reached (running workflows, simulations:
    /// retry when some of it has finished), too many attempts (login lockout) or the server
    /// is busy (password hashing pool full); `Retry-After` says when, where it is known.
    TooManyRequests,
    /// The account has MFA: send the current TOTP code as `totp`.
    MfaRequired,
    Internal,
    /// A part of the server this request needs is not configured (an e-mail relay for
    /// registration codes, say); the message names the `cpn serve` flag that sets it up.
    Unavailable,
}

impl Code {
    pub fn http_status(self) -> u16 {
        match self {
            Code::BadRequest => 400,
            Code::Unauthenticated | Code::MfaRequired => 401,
            Code::Forbidden => 403,
            Code::NotFound => 404,
            Code::GenerationConflict
            | Code::AlreadyExists
            | Code::InUse
            | Code::Unschedulable
            | Code::InvalidState => 409,
            Code::PayloadTooLarge => 413,
            Code::UnsupportedMediaType => 415,
            Code::InvalidField => 422,
            Code::PreconditionRequired => 428,
            Code::TooManyRequests => 429,
            Code::Internal => 500,
            Code::Unavailable => 503,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Code::BadRequest => "bad_request",
            Code::Unauthenticated => "unauthenticated",
            Code::Forbidden => "forbidden",
            Code::NotFound => "not_found",
            Code::GenerationConflict => "generation_conflict",
            Code::AlreadyExists => "already_exists",
            Code::InUse => "in_use",
            Code::Unschedulable => "unschedulable",
            Code::InvalidState => "invalid_state",
            Code::PreconditionRequired => "precondition_required",
            Code::PayloadTooLarge => "payload_too_large",
            Code::UnsupportedMediaType => "unsupported_media_type",
            Code::InvalidField => "invalid_field",
            Code::TooManyRequests => "too_many_requests",
            Code::MfaRequired => "mfa_required",
            Code::Internal => "internal",
            Code::Unavailable => "unavailable",
        }
    }
}

/// `{"error": {"code": "...", "message": "...", "field": "..."}}`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub code: Code,
    pub message: String,
    /// Dotted path of the offending field, for `invalid_field`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ErrorBody {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code,
                message: message.into(),
                field: None,
            },
        }
    }

    pub fn field(code: Code, field: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code,
                message: message.into(),
                field: Some(field.into()),
            },
        }
    }
}
