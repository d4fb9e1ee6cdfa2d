//! `cpn site join-token create|list|revoke` and `cpn node revoke`: how operators let agents
//! in, and shut them out.

use super::Ctx;
use crate::client::decode;
use crate::output;
use anyhow::Result;
use chrono::SecondsFormat;
use clap::Subcommand;
use cpn_api_types::join::{JoinTokenCreate, JoinTokenCreated, JoinTokenView, NodeRevoked};

#[derive(Debug, Subcommand)]
pub enum JoinTokenCmd {
    /// Issue a join token for a site. It is printed once: give it to `cpn agent --join`.
    ///
    /// Examples:
    ///   cpn site join-token create edge --uses 1
    ///   cpn site join-token create edge --ttl-hours 168 --description "rack 4"
    #[command(verbatim_doc_comment)]
    Create {
        /// Name or id of the site.
        #[arg(value_name = "SITE")]
        site: String,
        /// How many nodes may join with it [default: any number until it expires].
        #[arg(long, value_name = "N")]
        uses: Option<u32>,
        /// Hours until it expires (at most 720).
        #[arg(long, default_value_t = 24, value_name = "HOURS")]
        ttl_hours: u64,
        #[arg(long, default_value = "", value_name = "TEXT")]
        description: String,
        /// The URL agents reach the server at [default: this command's --server].
        #[arg(long, value_name = "URL")]
        agent_server: Option<String>,
    },
    /// List join tokens (never their secrets).
    #[command(visible_alias = "ls")]
    List {
        /// Only this site's.
        #[arg(long, value_name = "SITE")]
        site: Option<String>,
    },
    /// Revoke a join token: no node joins with it any more (nodes that did keep working).
    Revoke {
        #[arg(value_name = "ID")]
        id: String,
    },
}

pub async fn join_token(ctx: &Ctx, cmd: JoinTokenCmd) -> Result<()> {
    match cmd {
        JoinTokenCmd::Create {
            site,
            uses,
            ttl_hours,
            description,
            agent_server,
        } => {
            let body = JoinTokenCreate {
                max_uses: uses,
                ttl_seconds: Some(ttl_hours.saturating_mul(3600)),
                description,
                server_url: Some(agent_server.unwrap_or_else(|| ctx.client.server())),
            };
            let value = ctx
                .client
                .post(&["api", "v1", "sites", &site, "join-tokens"], &body)
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let created: JoinTokenCreated = decode(&value, "join token")?;
            let uses = created
                .view
                .max_uses
                .map_or("any number of".to_string(), |m| m.to_string());
            eprintln!(
                "join token {} for site {}: {uses} node(s), until {}{}",
                created.view.id,
                created.view.site,
                created
                    .view
                    .expires_at
                    .to_rfc3339_opts(SecondsFormat::Secs, true),
                created
                    .ca_sha256
                    .as_deref()
                    .map(|f| format!("; pins CA sha256 {f}"))
                    .unwrap_or_default()
            );
            eprintln!("on the node: cpn agent --join <the token below>");
            output::emit(&created.token)
        }
        JoinTokenCmd::List { site } => {
            let query: Vec<(&str, String)> = site.map(|s| ("site", s)).into_iter().collect();
            let value = ctx
                .client
                .get(&["api", "v1", "join-tokens"], &query)
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let tokens: Vec<JoinTokenView> = decode(&value, "join tokens")?;
            let mut t = output::table(&[
                "ID",
                "SITE",
                "STATE",
                "USES",
                "EXPIRES",
                "CREATED BY",
                "DESCRIPTION",
            ]);
            for tok in tokens {
                t.add_row(vec![
                    tok.id,
                    tok.site,
                    tok.state,
                    match tok.max_uses {
                        Some(m) => format!("{}/{m}", tok.uses),
                        None => tok.uses.to_string(),
                    },
                    tok.expires_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                    tok.created_by,
                    output::or_dash(Some(&tok.description)),
                ]);
            }
            output::print_table(&t)
        }
        JoinTokenCmd::Revoke { id } => {
            let value = ctx
                .client
                .post_empty(&["api", "v1", "join-tokens", &id, "revoke"])
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let tok: JoinTokenView = decode(&value, "join token")?;
            output::emit(&format!("join token {} revoked", tok.id))
        }
    }
}

pub async fn revoke_node(ctx: &Ctx, node: &str) -> Result<()> {
    let value = ctx
        .client
        .post_empty(&["api", "v1", "nodes", node, "revoke"])
        .await?;
    if !ctx.table() {
        return output::print_raw(ctx.output, &value);
    }
    let r: NodeRevoked = decode(&value, "revocation")?;
    output::emit(&format!(
        "node {}: {} credential(s) revoked; its agent must join again",
        r.node_id, r.credentials_revoked
    ))
}
