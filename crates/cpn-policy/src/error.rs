//! What can go wrong turning policy documents into something the scheduler runs. Problems
//! inside one document are `Diagnostic`s (see `validate`); these are the cross-document and
//! compile-time failures a caller acts on.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyError {
    #[error("policy {name:?} not found")]
    NotFound { name: String },
    #[error(
        "policy {policy:?} names parent {parent:?}, which does not exist; create it or remove the parent"
    )]
    MissingParent { policy: String, parent: String },
    #[error("policies form a cycle: {}", chain.join(" -> "))]
    Cycle { chain: Vec<String> },
    #[error("CEL rule {rule:?} of policy {policy:?}: {message}")]
    Cel {
        policy: String,
        rule: String,
        message: String,
    },
    #[error("policy {policy:?} has two CEL rules named {rule:?}; rename one")]
    DuplicateRule { policy: String, rule: String },
    #[error("policy {policy:?} does not make a valid profile: {message}")]
    Profile { policy: String, message: String },
    #[error("version {version} is not in the history; it has {available}")]
    VersionNotFound { version: u32, available: String },
}
