//! Join tokens and node credentials (issue #12): agents authenticate as their node, never
//! as an operator.
//!
//! An operator issues a join token for a site; `POST /api/v1/agents/register` with it as
//! the bearer token registers the node and answers the node's own credential, of which
//! only the SHA-256 is stored. Every other agent endpoint takes that credential
//! ([`NodeCaller`]) and only for its own node: another node's path is 403. Revoking the node
//! (`POST /api/v1/nodes/{id}/revoke`) deletes its credentials, so its next request is 401.
//!
//! This is separate from the users' identity (`caller::Caller`): a node is not a user, and a user's
//! token (an operator's included) opens no agent endpoint.

use crate::RuntimeState;
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult};
use argon2::password_hash::rand_core::{OsRng, RngCore};
use chrono::{DateTime, Duration, Utc};
use cpn_api_types::join::{
    JOIN_TOKEN_PREFIX, JoinTokenCreate, JoinTokenCreated, JoinTokenPayload, JoinTokenView,
    NODE_CREDENTIAL_PREFIX, NodeRevoked,
};
use cpn_model::Kind;
use cpn_store::{JoinRefusal, JoinTokenRecord};
use sha2::{Digest, Sha256};

/// What the store keeps of a bearer token, an API key or a node credential: its SHA-256, so
/// a leaked database does not hand out working tokens.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Join tokens live a day unless asked otherwise, and at most 30 days.
pub const DEFAULT_JOIN_TTL: Duration = Duration::days(1);
pub const MAX_JOIN_TTL: Duration = Duration::days(30);

pub const USE_A_JOIN_TOKEN: &str = "agents authenticate as their node: join with `cpn agent --join TOKEN`, \
     a join token from `cpn site join-token create SITE` (user and operator tokens open no agent endpoint)";

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A fresh node credential (256 random bits).
pub fn new_node_credential() -> String {
    format!("{NODE_CREDENTIAL_PREFIX}{}", random_hex())
}

/// An agent, authenticated by its node's credential.
#[derive(Debug, Clone)]
pub struct NodeCaller {
    pub node_id: String,
}

impl NodeCaller {
    /// 403 unless the request is about the caller's own node.
    pub fn check(&self, node_id: &str) -> ApiResult<()> {
        if self.node_id == node_id {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this credential belongs to node {}, not {node_id}: a node acts only for itself",
                self.node_id
            )))
        }
    }
}

/// The node whose credential `token` is (the edge reads it from the bearer header).
pub async fn node_caller(state: &RuntimeState, token: &str) -> ApiResult<NodeCaller> {
    if !token.starts_with(NODE_CREDENTIAL_PREFIX) {
        return Err(ApiError::unauthenticated(format!(
            "not a node credential; {USE_A_JOIN_TOKEN}"
        )));
    }
    let cred = state
        .store
        .node_credential(&hash_token(token))
        .await?
        .ok_or_else(|| {
            ApiError::unauthenticated(
                "this node credential is unknown or revoked; join again with a new join token",
            )
        })?;
    Ok(NodeCaller {
        node_id: cred.node_id,
    })
}

/// Who registers a node: a join token (first registration) or a node's credential (a
/// restarted agent refreshing its inventory).
#[derive(Debug, Clone)]
pub enum Registrant {
    Join {
        payload: JoinTokenPayload,
        secret_hash: String,
    },
    Node(NodeCaller),
}

/// Who presents `token` to register: a join token's payload, or a node's credential.
pub async fn registrant(state: &RuntimeState, token: &str) -> ApiResult<Registrant> {
    if token.starts_with(JOIN_TOKEN_PREFIX) {
        let payload = JoinTokenPayload::decode(token)
            .map_err(|e| ApiError::unauthenticated(e.to_string()))?;
        let secret_hash = hash_token(&payload.secret);
        return Ok(Registrant::Join {
            payload,
            secret_hash,
        });
    }
    Ok(Registrant::Node(node_caller(state, token).await?))
}

/// The 401 for a join token that cannot be used.
pub fn refused(refusal: JoinRefusal) -> ApiError {
    if refusal == JoinRefusal::OtherSite {
        return ApiError::forbidden("this join token is for another site");
    }
    ApiError::unauthenticated(format!(
        "the join token is {}: ask an operator for a new one (cpn site join-token create SITE)",
        refusal.as_str()
    ))
}

fn require_operator(who: &Caller) -> ApiResult<()> {
    if who.is_operator() {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "only operators issue join tokens and revoke nodes",
        ))
    }
}

fn view(t: &JoinTokenRecord, now: DateTime<Utc>) -> JoinTokenView {
    let state = match t.refusal(now) {
        None => "active",
        Some(JoinRefusal::Revoked) => "revoked",
        Some(JoinRefusal::Expired) => "expired",
        Some(JoinRefusal::UsedUp) => "used",
        Some(JoinRefusal::Unknown | JoinRefusal::OtherSite) => "unknown",
    };
    JoinTokenView {
        id: t.id.clone(),
        site: t.site.clone(),
        description: t.description.clone(),
        max_uses: t.max_uses,
        uses: t.uses,
        created_at: t.created_at,
        created_by: t.created_by.clone(),
        expires_at: t.expires_at,
        revoked_at: t.revoked_at,
        state: state.into(),
    }
}

/// Issues a join token for a site (by name or id). `host` is the request's Host header, for
/// the URL the token carries when the body names none.
pub async fn create_token(
    state: &RuntimeState,
    who: &Caller,
    site: &str,
    body: JoinTokenCreate,
    host: Option<&str>,
) -> ApiResult<JoinTokenCreated> {
    require_operator(who)?;
    let site = match state.store.get_object(Kind::Site, site).await? {
        Some(s) => s,
        None => state
            .store
            .find_object_by_name(Kind::Site, site)
            .await?
            .ok_or_else(|| ApiError::not_found("site", site))?,
    };
    let ttl = match body.ttl_seconds {
        None => DEFAULT_JOIN_TTL,
        Some(0) => return Err(ApiError::field("ttl_seconds", "must be at least 1")),
        Some(s) => Duration::seconds(
            i64::try_from(s)
                .unwrap_or(i64::MAX)
                .min(MAX_JOIN_TTL.num_seconds()),
        ),
    };
    if body.max_uses == Some(0) {
        return Err(ApiError::field(
            "max_uses",
            "must be at least 1 (leave it out for any number of uses)",
        ));
    }
    let url = match body.server_url {
        Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
            Some(u.trim_end_matches('/').to_string())
        }
        Some(_) => {
            return Err(ApiError::field(
                "server_url",
                "must be an http:// or https:// URL",
            ));
        }
        None => host.map(|h| {
            let scheme = if state.transport.https {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{h}")
        }),
    };
    let now = Utc::now();
    let secret = random_hex();
    let record = JoinTokenRecord {
        id: format!("jt-{}", uuid::Uuid::now_v7().simple()),
        site_id: site.id.clone(),
        site: site.name.clone(),
        secret_hash: hash_token(&secret),
        description: body.description,
        max_uses: body.max_uses,
        uses: 0,
        created_at: now,
        created_by: who.username.clone(),
        expires_at: now + ttl,
        revoked_at: None,
    };
    state.store.create_join_token(record.clone()).await?;
    let payload = JoinTokenPayload {
        v: 1,
        site: site.name,
        secret,
        exp: record.expires_at,
        url,
        ca_sha256: state.transport.ca_sha256.clone(),
    };
    Ok(JoinTokenCreated {
        view: view(&record, now),
        token: payload.encode(),
        ca_sha256: state.transport.ca_sha256.clone(),
    })
}

/// Join tokens, newest first; `site` (a name) filters.
pub async fn list_tokens(
    state: &RuntimeState,
    who: &Caller,
    site: Option<&str>,
) -> ApiResult<Vec<JoinTokenView>> {
    require_operator(who)?;
    let now = Utc::now();
    Ok(state
        .store
        .list_join_tokens()
        .await?
        .iter()
        .filter(|t| site.is_none_or(|s| t.site == s || t.site_id == s))
        .map(|t| view(t, now))
        .collect())
}

pub async fn revoke_token(
    state: &RuntimeState,
    who: &Caller,
    id: &str,
) -> ApiResult<JoinTokenView> {
    require_operator(who)?;
    let t = state.store.revoke_join_token(id, Utc::now()).await?;
    Ok(view(&t, Utc::now()))
}

/// Cuts a node off: its credentials stop working at once. Its agent must join again.
pub async fn revoke_node(state: &RuntimeState, who: &Caller, key: &str) -> ApiResult<NodeRevoked> {
    require_operator(who)?;
    let node = crate::nodes::resolve(state, key).await?;
    let n = state.store.revoke_node_credentials(&node.id).await?;
    state
        .store
        .append_events(vec![crate::agents::node_event(
            &node,
            "warning",
            format!(
                "node {}/{}: credentials revoked by {}",
                node.site, node.name, who.username
            ),
        )])
        .await?;
    state.runtime.events_written();
    Ok(NodeRevoked {
        node_id: node.id,
        credentials_revoked: n,
    })
}

/// A single-use join token for an agent `cpn serve` runs in-process (the local agent, an
/// emulated node), made only when the credential saved in its state dir (read by the
/// composing side, `saved_credential`) is not one the store knows; it
/// joins through the ordinary flow and gets the node's own credential. `None`: the saved
/// credential is good.
pub async fn in_process_agent_token(
    state: &RuntimeState,
    site: &str,
    saved_credential: Option<&str>,
    description: &str,
) -> ApiResult<Option<String>> {
    if let Some(saved) = saved_credential
        && state
            .store
            .node_credential(&hash_token(saved))
            .await?
            .is_some()
    {
        return Ok(None);
    }
    let site = state
        .store
        .find_object_by_name(Kind::Site, site)
        .await?
        .ok_or_else(|| ApiError::not_found("site", site))?;
    let now = Utc::now();
    let secret = random_hex();
    let record = JoinTokenRecord {
        id: format!("jt-{}", uuid::Uuid::now_v7().simple()),
        site_id: site.id.clone(),
        site: site.name.clone(),
        secret_hash: hash_token(&secret),
        description: description.into(),
        max_uses: Some(1),
        uses: 0,
        created_at: now,
        // Made by the server for its own in-process agents, not by the operator.
        created_by: crate::caller::SystemActor::Startup.name().into(),
        expires_at: now + Duration::hours(1),
        revoked_at: None,
    };
    state.store.create_join_token(record.clone()).await?;
    Ok(Some(
        JoinTokenPayload {
            v: 1,
            site: site.name,
            secret,
            exp: record.expires_at,
            url: None,
            ca_sha256: state.transport.ca_sha256.clone(),
        }
        .encode(),
    ))
}
