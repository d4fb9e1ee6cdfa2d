//! `cpn tenant` and `cpn user`: list and create tenants and users (operators only).

use super::Ctx;
use crate::cli::{TenantCmd, UserCmd};
use crate::client::decode;
use crate::output::{self, or_dash};
use anyhow::Result;
use chrono::SecondsFormat;
use cpn_api_types::identity::{CreateTenant, CreateUser, Tenant, User};
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
            let mut t = output::table(&["USERNAME", "TENANT", "ROLE", "DISPLAY NAME", "CREATED"]);
            for item in &items {
                let user: User = decode(item, "user")?;
                t.add_row(vec![
                    user.username,
                    user.tenant,
                    user.role.as_str().to_owned(),
                    or_dash(Some(&user.display_name)),
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
