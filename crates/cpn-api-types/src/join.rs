//! Join tokens and node credentials: how an agent becomes a node without an operator token.
//!
//! An operator issues a join token for a site (`POST /api/v1/sites/{id}/join-tokens`). The
//! token is self-contained: [`JoinTokenPayload`] carries the site, the secret, when it
//! expires, the server URL the operator used and the SHA-256 fingerprint of the server's CA,
//! so `cpn agent --join TOKEN` needs nothing else and trusts only that CA. The agent sends
//! the token once, to `POST /api/v1/agents/register`, and gets back a credential of its own
//! (`AgentRegistered::credential`) that works only on `/api/v1/agents/{its node id}/…`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every join token starts with this, so it is recognisable in a config file or a log.
pub const JOIN_TOKEN_PREFIX: &str = "cpnjoin_";
/// Every node credential starts with this.
pub const NODE_CREDENTIAL_PREFIX: &str = "cpnnode_";

/// What a join token carries, base64url-encoded JSON after [`JOIN_TOKEN_PREFIX`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinTokenPayload {
    /// Format version, 1.
    pub v: u32,
    /// Site the node joins.
    pub site: String,
    /// The secret; the server keeps only its SHA-256.
    pub secret: String,
    /// When the token stops working.
    pub exp: DateTime<Utc>,
    /// The server URL the token was issued through (agents may override it with --server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// SHA-256 of the DER of the CA that signs the server's certificate, lowercase hex; the
    /// agent trusts that CA and nothing else. Absent when the server is plain HTTP or uses
    /// certificates from elsewhere (then the agent uses the system's roots or --ca-file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_sha256: Option<String>,
}

/// Why a string is not a join token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAJoinToken(pub &'static str);

impl std::fmt::Display for NotAJoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not a cpn join token: {}", self.0)
    }
}

impl std::error::Error for NotAJoinToken {}

impl JoinTokenPayload {
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        format!("{JOIN_TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(json))
    }

    pub fn decode(token: &str) -> Result<JoinTokenPayload, NotAJoinToken> {
        let body = token
            .trim()
            .strip_prefix(JOIN_TOKEN_PREFIX)
            .ok_or(NotAJoinToken("it does not start with cpnjoin_"))?;
        let json = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| NotAJoinToken("it is not base64url"))?;
        let payload: JoinTokenPayload =
            serde_json::from_slice(&json).map_err(|_| NotAJoinToken("its content is not JSON"))?;
        if payload.v != 1 {
            return Err(NotAJoinToken("unknown version; use a newer cpn"));
        }
        Ok(payload)
    }
}

/// Body of `POST /api/v1/sites/{id}/join-tokens`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinTokenCreate {
    /// How many nodes may join with it; absent: any number until it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_uses: Option<u32>,
    /// Lifetime in seconds (default one day, at most 30 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    #[serde(default)]
    pub description: String,
    /// The URL agents should reach the server at; default: the URL of this request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_url: Option<String>,
}

/// A join token as listed: never the secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JoinTokenView {
    pub id: String,
    pub site: String,
    pub description: String,
    pub max_uses: Option<u32>,
    pub uses: u32,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// `active`, `expired`, `used` (all uses taken) or `revoked`.
    pub state: String,
}

/// Answer of `POST /api/v1/sites/{id}/join-tokens`: the only time the token is shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JoinTokenCreated {
    #[serde(flatten)]
    pub view: JoinTokenView,
    /// Give this to `cpn agent --join`.
    pub token: String,
    pub ca_sha256: Option<String>,
}

/// Answer of `POST /api/v1/nodes/{id}/revoke`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeRevoked {
    pub node_id: String,
    /// Credentials that stopped working (0 when the node had none).
    pub credentials_revoked: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_tokens_round_trip_and_refuse_garbage() {
        let p = JoinTokenPayload {
            v: 1,
            site: "edge".into(),
            secret: "ab".repeat(32),
            exp: Utc::now(),
            url: Some("https://10.0.0.1:8443".into()),
            ca_sha256: Some("cd".repeat(32)),
        };
        let t = p.encode();
        assert!(t.starts_with(JOIN_TOKEN_PREFIX));
        assert_eq!(JoinTokenPayload::decode(&format!(" {t}\n")).unwrap(), p);
        assert!(JoinTokenPayload::decode("cpn_abc").is_err());
        assert!(JoinTokenPayload::decode("cpnjoin_!!!").is_err());
        assert!(JoinTokenPayload::decode("cpnjoin_e30").is_err());
    }
}
