//! Wire types of the cpn HTTP API. This is the only crate that defines JSON shapes:
//! the server converts its internal and stored types into these, never serializing them
//! directly, so internals can change without breaking clients.

pub mod agent;
pub mod design;
pub mod error;
pub mod events;
pub mod flows;
pub mod identity;
pub mod join;
pub mod market;
pub mod market_accounts;
pub mod notifications;
pub mod operations;
pub mod registry;
pub mod rules;
pub mod scenario;
pub mod schedule;
pub mod simulation;
pub mod ssh_key;
pub mod tasks;
pub mod topology;

pub use error::{Code, ErrorBody, ErrorDetail};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One page of a list. Pass `next_cursor` back as `?cursor=` to get the next page; it is
/// absent on the last page.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Answer of `/healthz` and `/readyz`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
}
