//! Row types of the store. They are deliberately separate from the API's wire types.

use chrono::{DateTime, Utc};
use cpn_model::{Kind, Labels};

/// A registry object as stored: the envelope plus the kind-specific spec as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectRecord {
    pub id: String,
    pub kind: Kind,
    pub name: String,
    /// Owning tenant's name.
    pub tenant: String,
    /// Owning user's username.
    pub owner: String,
    pub public: bool,
    pub labels: Labels,
    pub generation: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub spec: serde_json::Value,
    /// Outgoing references, sorted by field.
    pub refs: Vec<Reference>,
}

impl ObjectRecord {
    pub fn reference(&self, field: &str) -> Option<&str> {
        self.refs
            .iter()
            .find(|r| r.field == field)
            .map(|r| r.id.as_str())
    }
}

/// A reference from one object to another, kept so that deleting a referenced object is
/// refused and so that a dangling reference can never be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The field that holds it, e.g. `spec.site`.
    pub field: String,
    pub kind: Kind,
    pub id: String,
}

#[derive(Debug, Clone)]
pub struct NewObject {
    pub kind: Kind,
    pub name: String,
    pub tenant: String,
    pub owner: String,
    pub public: bool,
    pub labels: Labels,
    pub spec: serde_json::Value,
    pub refs: Vec<Reference>,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct ObjectUpdate {
    pub kind: Kind,
    pub id: String,
    pub expected_generation: u64,
    pub labels: Labels,
    pub public: bool,
    pub spec: serde_json::Value,
    pub refs: Vec<Reference>,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only objects of this tenant or public ones; `None` lists everything (operators).
    pub visible_to_tenant: Option<String>,
    /// Only objects referencing this id (e.g. resources of a site).
    pub referencing: Option<String>,
    /// Start after this id.
    pub after: Option<String>,
    pub limit: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct LabelChange {
    pub kind: Kind,
    pub id: String,
    pub key: String,
    /// `None` removes the label.
    pub value: Option<String>,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LabelChangeSummary {
    pub changed: u64,
    pub unchanged: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricRecord {
    pub object_id: String,
    pub at: DateTime<Utc>,
    pub value: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TenantRecord {
    pub id: String,
    pub name: String,
    pub display_name: String,
    pub created_at: DateTime<Utc>,
    /// Resource ceiling, as JSON the server defines (`{}` when unlimited).
    pub quota: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    /// PHC string (argon2id); the store never sees a password.
    pub password_hash: String,
    pub tenant: String,
    pub role: String,
    pub display_name: String,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub tenant: String,
    pub role: String,
    pub display_name: String,
    pub created_at: DateTime<Utc>,
    /// A disabled user cannot log in, and its sessions and API keys stop working at once.
    pub disabled: bool,
    /// Confirmed TOTP secret (hex); login then needs a code.
    pub totp_secret: Option<String>,
    /// Enrolled but not yet confirmed TOTP secret (hex).
    pub totp_pending: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SessionRecord {
    /// SHA-256 of the token; the token itself is never stored.
    pub token_hash: String,
    pub user_id: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// One version of an object.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRecord {
    pub generation: u64,
    pub at: DateTime<Utc>,
    pub labels: Labels,
    pub spec: serde_json::Value,
}

/// A placement made for real: it holds the capacity in `demand` on `node` until released.
/// `demand` and `body` are JSON the server defines (the demand and the explanation).
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRecord {
    pub id: String,
    pub tenant: String,
    pub task: String,
    pub site_id: String,
    pub node: String,
    pub demand: serde_json::Value,
    pub body: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub released_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct NewDecision {
    pub tenant: String,
    pub task: String,
    pub site_id: String,
    pub node: String,
    pub demand: serde_json::Value,
    pub body: serde_json::Value,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, Default)]
pub struct DecisionQuery {
    /// Only this tenant's decisions; `None` for all (operators).
    pub tenant: Option<String>,
    pub active_only: bool,
    pub after: Option<String>,
    pub limit: Option<usize>,
}
