//! Store errors: categories a caller acts on, not driver details.

use cpn_model::Kind;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{kind} {id} not found")]
    NotFound { kind: String, id: String },
    #[error(
        "{kind} {id} changed: you sent generation {expected}, it is now at {actual}; read it again and reapply your change"
    )]
    Conflict {
        kind: Kind,
        id: String,
        expected: u64,
        actual: u64,
    },
    #[error(
        "{collection} {id} changed: you sent version {expected}, it is now at {actual}; read it again and reapply your change"
    )]
    StaleVersion {
        collection: String,
        id: String,
        expected: u64,
        actual: u64,
    },
    #[error("a {kind} named {name:?} exists already")]
    AlreadyExists { kind: String, name: String },
    #[error("{kind} {id} is still referenced by {by}; delete or change that first")]
    InUse { kind: Kind, id: String, by: String },
    #[error("{field}: no {kind} with id {id:?}")]
    BrokenRef {
        field: String,
        kind: Kind,
        id: String,
    },
    #[error("data dir {path} is in use by another cpn process; stop it or pass another --data-dir")]
    Locked { path: String },
    #[error("store: {0}")]
    Backend(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}
