//! Join tokens and node credentials (issue #12): what lets an agent become a node of a site
//! without an operator token. Only SHA-256 hashes of secrets are stored.

use crate::{NewEvent, NodeRecord, NodeRegistration, Result};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// A join token issued for a site.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinTokenRecord {
    pub id: String,
    pub site_id: String,
    pub site: String,
    pub secret_hash: String,
    pub description: String,
    /// `None`: any number of nodes until it expires.
    pub max_uses: Option<u32>,
    pub uses: u32,
    pub created_at: DateTime<Utc>,
    /// Username of the operator who issued it.
    pub created_by: String,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl JoinTokenRecord {
    /// Why the token cannot be used at `now`, if it cannot.
    pub fn refusal(&self, now: DateTime<Utc>) -> Option<JoinRefusal> {
        if self.revoked_at.is_some() {
            Some(JoinRefusal::Revoked)
        } else if self.expires_at <= now {
            Some(JoinRefusal::Expired)
        } else if self.max_uses.is_some_and(|m| self.uses >= m) {
            Some(JoinRefusal::UsedUp)
        } else {
            None
        }
    }
}

/// Why a join was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinRefusal {
    Unknown,
    Expired,
    Revoked,
    UsedUp,
    /// The token is for another site than the registration names.
    OtherSite,
}

impl JoinRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            JoinRefusal::Unknown => "unknown",
            JoinRefusal::Expired => "expired",
            JoinRefusal::Revoked => "revoked",
            JoinRefusal::UsedUp => "used up",
            JoinRefusal::OtherSite => "for another site",
        }
    }
}

/// The credential of one node: its agent's bearer token.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeCredentialRecord {
    pub token_hash: String,
    pub node_id: String,
    /// The join token it was issued for.
    pub join_token: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A join: the token's secret hash, the node to register and the new credential's hash.
#[derive(Debug, Clone)]
pub struct NodeJoin {
    pub secret_hash: String,
    pub registration: NodeRegistration,
    pub credential_hash: String,
    pub events: Vec<NewEvent>,
}

#[async_trait]
pub trait JoinStore: Send + Sync + 'static {
    async fn create_join_token(&self, token: JoinTokenRecord) -> Result<()>;
    /// Every join token, newest first.
    async fn list_join_tokens(&self) -> Result<Vec<JoinTokenRecord>>;
    /// Marks a token revoked (a second revoke keeps the first time). `NotFound` if unknown.
    async fn revoke_join_token(&self, id: &str, now: DateTime<Utc>) -> Result<JoinTokenRecord>;
    /// In one transaction: checks the token (known, not revoked, not expired, uses left) and
    /// that it is for the registration's site, counts the use, registers the node, and
    /// makes `credential_hash` the node's only credential. A refusal changes nothing.
    async fn join_node(
        &self,
        join: NodeJoin,
        now: DateTime<Utc>,
    ) -> Result<std::result::Result<(NodeRecord, JoinTokenRecord), JoinRefusal>>;
    async fn node_credential(&self, token_hash: &str) -> Result<Option<NodeCredentialRecord>>;
    /// Deletes every credential of the node; returns how many there were.
    async fn revoke_node_credentials(&self, node_id: &str) -> Result<u64>;
}
