//! Persistence for cpn.
//!
//! [`Store`] is what the server sees; [`SqliteStore`] is the embedded default (one file under
//! the data dir, WAL, group commit). The trait speaks in records of this crate, never in API
//! wire types, so a PostgreSQL implementation can be added without touching the API layer.
//!
//! Invariants every implementation keeps:
//! - a call that returns `Ok` is durable: it has been committed and synced;
//! - a call that returns `Err` changed nothing;
//! - every object write checks the caller's generation and bumps it by one.

mod accounts;
mod docs;
mod error;
mod join;
mod market;
mod outbox;
mod records;
mod runtime;
mod sqlite;
mod sqlite_accounts;
mod sqlite_docs;
mod sqlite_join;
mod sqlite_market;
mod sqlite_outbox;
mod sqlite_runtime;

pub use accounts::*;
pub use docs::*;
pub use error::StoreError;
pub use join::*;
pub use market::*;
pub use outbox::*;
pub use records::*;
pub use runtime::*;
pub use sqlite::SqliteStore;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cpn_model::Kind;

pub type Result<T> = std::result::Result<T, StoreError>;

#[async_trait]
pub trait Store:
    RuntimeStore
    + DocStore
    + AccountStore
    + JoinStore
    + MarketStore
    + OutboxStore
    + Send
    + Sync
    + 'static
{
    // ------------------------------------------------------------ registry objects

    /// Creates an object. Fails with `AlreadyExists` when the kind already has this name and
    /// with `BrokenRef` when a reference names no object of the expected kind.
    async fn create_object(&self, new: NewObject) -> Result<ObjectRecord>;

    async fn get_object(&self, kind: Kind, id: &str) -> Result<Option<ObjectRecord>>;

    async fn find_object_by_name(&self, kind: Kind, name: &str) -> Result<Option<ObjectRecord>>;

    /// Objects of one kind in id order (ids are time-ordered), after `query.after`.
    async fn list_objects(&self, kind: Kind, query: &ListQuery) -> Result<Vec<ObjectRecord>>;

    /// Replaces labels, visibility, spec and references if the stored generation equals
    /// `update.expected_generation`; otherwise `Conflict`.
    async fn update_object(&self, update: ObjectUpdate) -> Result<ObjectRecord>;

    /// Deletes an object unless another object references it (`InUse`). With
    /// `expected_generation`, a stale generation gives `Conflict`.
    async fn delete_object(
        &self,
        kind: Kind,
        id: &str,
        expected_generation: Option<u64>,
    ) -> Result<()>;

    /// Sets or removes one label on many objects in one transaction; each changed object's
    /// generation is bumped. Either every change is applied or none.
    async fn change_labels(&self, changes: Vec<LabelChange>) -> Result<LabelChangeSummary>;

    /// Every stored version of an object, oldest first (deleted objects have none).
    async fn object_history(&self, id: &str) -> Result<Vec<HistoryRecord>>;

    // ------------------------------------------------------------ metric history

    /// Appends one sample; samples are never updated, so any past state can be read back.
    async fn record_metric(
        &self,
        object_id: &str,
        at: DateTime<Utc>,
        value: serde_json::Value,
    ) -> Result<()>;

    /// The latest sample at or before `at` for every object of `kind` that has one.
    async fn metrics_at(&self, kind: Kind, at: DateTime<Utc>) -> Result<Vec<MetricRecord>>;

    /// Samples of one object, newest first.
    async fn metric_history(&self, object_id: &str, limit: usize) -> Result<Vec<MetricRecord>>;

    // ------------------------------------------------------------ identity

    async fn create_tenant(&self, name: &str, display_name: &str) -> Result<TenantRecord>;
    async fn find_tenant(&self, name: &str) -> Result<Option<TenantRecord>>;
    async fn list_tenants(&self) -> Result<Vec<TenantRecord>>;
    /// Replaces a tenant's quota (JSON the server defines).
    async fn set_tenant_quota(&self, name: &str, quota: serde_json::Value) -> Result<TenantRecord>;

    async fn create_user(&self, new: NewUser) -> Result<UserRecord>;
    async fn find_user(&self, username: &str) -> Result<Option<UserRecord>>;
    /// All users, or those of one tenant.
    async fn list_users(&self, tenant: Option<&str>) -> Result<Vec<UserRecord>>;

    async fn create_session(&self, session: SessionRecord) -> Result<()>;
    /// The user of a live session: not revoked and not expired at `now`.
    async fn session_user(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<UserRecord>>;
    async fn revoke_session(&self, token_hash: &str) -> Result<()>;

    // ------------------------------------------------------------ scheduling decisions

    /// Stores a placement with its explanation; it holds capacity until released.
    async fn create_decision(&self, new: NewDecision) -> Result<DecisionRecord>;
    async fn get_decision(&self, id: &str) -> Result<Option<DecisionRecord>>;
    async fn list_decisions(&self, query: DecisionQuery) -> Result<Vec<DecisionRecord>>;
    /// Marks a decision released (idempotent); `NotFound` when there is no such decision.
    async fn release_decision(&self, id: &str, now: DateTime<Utc>) -> Result<DecisionRecord>;

    // ------------------------------------------------------------ small settings

    async fn get_setting(&self, key: &str) -> Result<Option<String>>;
    async fn put_setting(&self, key: &str, value: &str) -> Result<()>;
}
