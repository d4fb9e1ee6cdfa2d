//! `cpn tenant` and `cpn user`: list and create tenants and users (operators only).

use super::Ctx;
use crate::cli::{TenantCmd, UserCmd};
use crate::client::decode;
use crate::output::{self, or_dash};
use anyhow::Result;
use chrono::SecondsFormat;
use cpn_api_types::identity::{
    AdminTokenRotated, ApiKey, ChangePassword, CreateApiKey, CreateTenant, CreateUser,
    CreatedApiKey, MfaCode, MfaEnrollment, ResetPassword, Revoked, Scope, Tenant, User,
};
use serde_json::{Map, Value};

pub async fn tenant(ctx: &Ctx, cmd: TenantCmd) -> Result<()> {
    match cmd {
        TenantCmd::List => {
            let items = list(ctx, "tenants").await?;
            if !ctx.table() {
                return print_items(ctx, items);
            }
            let mut t = output::table(&["NAME", "DISPLAY NAME", "QUOTA", "CREATED"]);
            for item in &items {
                let tenant: Tenant = decode(item, "tenant")?;
                t.add_row(vec![
                    tenant.name,
                    or_dash(Some(&tenant.display_name)),
                    quota_text(&tenant.quota),
                    tenant.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                ]);
            }
            output::print_table(&t)
        }
        TenantCmd::Quota { name, quota } => {
            let value = ctx
                .client
                .put(&["api", "v1", "tenants", &name, "quota"], &quota.to_quota())
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let tenant: Tenant = decode(&value, "tenant")?;
            output::emit(&format!(
                "tenant/{} quota: {}",
                tenant.name,
                quota_text(&tenant.quota)
            ))
        }
        TenantCmd::Create {
            name,
            display_name,
            quota,
        } => {
            let quota = quota.to_quota();
            let body = CreateTenant {
                name,
                display_name,
                quota: (quota != Default::default()).then_some(quota),
            };
            let value = ctx.client.post(&["api", "v1", "tenants"], &body).await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let tenant: Tenant = decode(&value, "tenant")?;
            output::emit(&format!("tenant/{} created", tenant.name))
        }
    }
}

pub async fn user(ctx: &Ctx, cmd: UserCmd) -> Result<()> {
    match cmd {
        UserCmd::List => {
            let items = list(ctx, "users").await?;
            if !ctx.table() {
                return print_items(ctx, items);
            }
            let mut t = output::table(&[
                "USERNAME",
                "TENANT",
                "ROLE",
                "DISPLAY NAME",
                "STATE",
                "MFA",
                "CREATED",
            ]);
            for item in &items {
                let user: User = decode(item, "user")?;
                t.add_row(vec![
                    user.username,
                    user.tenant,
                    user.role.as_str().to_owned(),
                    or_dash(Some(&user.display_name)),
                    if user.disabled { "disabled" } else { "active" }.to_owned(),
                    if user.mfa_enabled { "on" } else { "off" }.to_owned(),
                    user.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                ]);
            }
            output::print_table(&t)
        }
        UserCmd::Create(args) => {
            let body = CreateUser {
                username: args.username,
                password: args.password,
                tenant: args.tenant,
                role: args.role.into(),
                display_name: args.display_name,
            };
            let value = ctx.client.post(&["api", "v1", "users"], &body).await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let user: User = decode(&value, "user")?;
            output::emit(&format!(
                "user/{} created (tenant {}, role {})",
                user.username,
                user.tenant,
                user.role.as_str()
            ))
        }
        UserCmd::Disable { username } => {
            user_action(
                ctx,
                &username,
                "disable",
                "disabled; its tokens no longer work",
            )
            .await
        }
        UserCmd::Enable { username } => user_action(ctx, &username, "enable", "enabled").await,
        UserCmd::MfaOff { username } => {
            let value = ctx
                .client
                .post_empty(&["api", "v1", "users", &username, "mfa", "disable"])
                .await?;
            done(ctx, &value, &format!("user/{username}: MFA off"))
        }
        UserCmd::Passwd { old, new } => {
            let body = ChangePassword {
                old_password: old,
                new_password: new,
            };
            let value = ctx
                .client
                .post(&["api", "v1", "auth", "password"], &body)
                .await?;
            done(
                ctx,
                &value,
                "password changed; your other login sessions are revoked",
            )
        }
        UserCmd::ResetPassword { username, new } => {
            let body = ResetPassword { new_password: new };
            let value = ctx
                .client
                .post(&["api", "v1", "users", &username, "reset-password"], &body)
                .await?;
            done(
                ctx,
                &value,
                &format!("user/{username}: password reset; all its tokens are revoked"),
            )
        }
        UserCmd::RevokeSessions { username } => {
            let value = ctx
                .client
                .post_empty(&["api", "v1", "users", &username, "revoke-sessions"])
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let r: Revoked = decode(&value, "revoked")?;
            output::emit(&format!("user/{username}: {} tokens revoked", r.revoked))
        }
    }
}

async fn user_action(ctx: &Ctx, username: &str, verb: &str, what: &str) -> Result<()> {
    let value = ctx
        .client
        .post_empty(&["api", "v1", "users", username, verb])
        .await?;
    done(ctx, &value, &format!("user/{username} {what}"))
}

/// Prints the answer as asked, or a one-line confirmation for tables.
fn done(ctx: &Ctx, value: &Value, message: &str) -> Result<()> {
    if ctx.table() {
        output::emit(message)
    } else {
        output::print_raw(ctx.output, value)
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum ApiKeyCmd {
    /// Create a key for your account; the token is printed once.
    Create {
        #[arg(value_name = "NAME")]
        name: String,
        /// read, write or metrics:read (repeat or comma-separate).
        #[arg(long = "scope", value_name = "SCOPE", value_delimiter = ',', required = true,
              value_parser = ["read", "write", "metrics:read"])]
        scopes: Vec<String>,
        /// Days until the key expires (at most 365).
        #[arg(long, default_value_t = 90, value_name = "DAYS",
              value_parser = clap::value_parser!(u32).range(1..=365))]
        expires_in_days: u32,
    },
    /// Your live keys (never their tokens).
    #[command(visible_alias = "ls")]
    List,
    /// Revoke a key by id.
    #[command(visible_alias = "rm")]
    Revoke {
        #[arg(value_name = "ID")]
        id: String,
    },
}

pub async fn api_key(ctx: &Ctx, cmd: ApiKeyCmd) -> Result<()> {
    match cmd {
        ApiKeyCmd::Create {
            name,
            scopes,
            expires_in_days,
        } => {
            let body = CreateApiKey {
                name,
                scopes: scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
                expires_at: Some(
                    chrono::Utc::now() + chrono::Duration::days(i64::from(expires_in_days)),
                ),
            };
            let value = ctx.client.post(&["api", "v1", "api-keys"], &body).await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let k: CreatedApiKey = decode(&value, "api key")?;
            output::emit(&format!(
                "api-key/{} created ({}), expires {}\n\
                 token (shown only now): {}\n",
                k.key.id,
                scope_text(&k.key.scopes),
                k.key.expires_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                k.token
            ))
        }
        ApiKeyCmd::List => {
            let value = ctx.client.get(&["api", "v1", "api-keys"], &[]).await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let keys: Vec<ApiKey> = decode(&value, "api keys")?;
            let mut t = output::table(&["ID", "NAME", "SCOPES", "EXPIRES", "LAST USED"]);
            for k in keys {
                t.add_row(vec![
                    k.id,
                    k.name,
                    scope_text(&k.scopes),
                    k.expires_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                    k.last_used_at
                        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
                        .unwrap_or_else(|| "-".into()),
                ]);
            }
            output::print_table(&t)
        }
        ApiKeyCmd::Revoke { id } => {
            let value = ctx.client.delete(&["api", "v1", "api-keys", &id]).await?;
            done(ctx, &value, &format!("api-key/{id} revoked"))
        }
    }
}

fn scope_text(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

#[derive(Debug, clap::Subcommand)]
pub enum MfaCmd {
    /// Start enrolment: prints a secret and an otpauth:// URI for your authenticator app.
    Enroll,
    /// Turn MFA on with the code your authenticator shows now; login then needs --totp.
    Confirm {
        #[arg(value_name = "CODE")]
        code: String,
    },
}

pub async fn mfa(ctx: &Ctx, cmd: MfaCmd) -> Result<()> {
    match cmd {
        MfaCmd::Enroll => {
            let value = ctx
                .client
                .post_empty(&["api", "v1", "auth", "mfa", "enroll"])
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let e: MfaEnrollment = decode(&value, "enrolment")?;
            output::emit(&format!(
                "secret: {}\nuri:    {}\n\nadd it to your authenticator, then: cpn mfa confirm CODE\n",
                e.secret, e.otpauth_uri
            ))
        }
        MfaCmd::Confirm { code } => {
            let value = ctx
                .client
                .post(&["api", "v1", "auth", "mfa", "confirm"], &MfaCode { code })
                .await?;
            done(
                ctx,
                &value,
                "MFA is on: log in with --totp CODE from now on",
            )
        }
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum AdminCmd {
    /// Replace the operator token: the server writes a new admin.token (0600) next to its
    /// store and every earlier operator token stops working.
    RotateToken,
}

pub async fn admin(ctx: &Ctx, cmd: AdminCmd) -> Result<()> {
    match cmd {
        AdminCmd::RotateToken => {
            let value = ctx
                .client
                .post_empty(&["api", "v1", "auth", "rotate-admin-token"])
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let r: AdminTokenRotated = decode(&value, "rotation")?;
            output::emit(&format!(
                "new operator token written to {} (expires {}); the old one no longer works",
                r.path,
                r.expires_at.to_rfc3339_opts(SecondsFormat::Secs, true)
            ))
        }
    }
}

/// Every item of a collection, whether the server pages it or sends a bare array.
async fn list(ctx: &Ctx, plural: &str) -> Result<Vec<Value>> {
    let (items, _) = ctx
        .client
        .list(&["api", "v1", plural], Vec::new(), None, true)
        .await?;
    Ok(items)
}

fn print_items(ctx: &Ctx, items: Vec<Value>) -> Result<()> {
    let mut page = Map::new();
    page.insert("items".into(), Value::Array(items));
    output::print_raw(ctx.output, &Value::Object(page))
}

fn quota_text(q: &cpn_api_types::identity::TenantQuota) -> String {
    let parts: Vec<String> = [
        ("gpus", q.gpus),
        ("cpu_cores", q.cpu_cores),
        ("memory_gib", q.memory_gib),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
    .collect();
    if parts.is_empty() {
        "unlimited".into()
    } else {
        parts.join(",")
    }
}
