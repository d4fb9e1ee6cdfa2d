//! `cpn login`, `cpn logout` and `cpn whoami`: get, revoke and inspect bearer tokens.

use super::Ctx;
use crate::cli::LoginArgs;
use crate::client::decode;
use crate::output;
use anyhow::Result;
use chrono::SecondsFormat;
use cpn_api_types::identity::{LoginRequest, LoginResponse, User};

pub async fn login(ctx: &Ctx, args: LoginArgs) -> Result<()> {
    let req = LoginRequest {
        username: args.username,
        password: args.password,
        totp: args.totp,
    };
    let value = ctx
        .client
        .post_anonymous(&["api", "v1", "auth", "login"], &req)
        .await?;
    if !ctx.table() {
        return output::print_raw(ctx.output, &value);
    }
    let r: LoginResponse = decode(&value, "login response")?;
    output::emit(&format!(
        "logged in as {} (tenant {}, role {})\n\
         token:   {}\n\
         expires: {}\n\n\
         use it with:\n  export CPN_TOKEN={}\n",
        r.user.username,
        r.user.tenant,
        r.user.role.as_str(),
        r.token,
        r.expires_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        r.token,
    ))
}

pub async fn logout(ctx: &Ctx) -> Result<()> {
    let value = ctx
        .client
        .post_empty(&["api", "v1", "auth", "logout"])
        .await?;
    if !ctx.table() && !value.is_null() {
        return output::print_raw(ctx.output, &value);
    }
    if ctx.table() {
        output::emit("logged out: the token is revoked")?;
    }
    Ok(())
}

pub async fn whoami(ctx: &Ctx) -> Result<()> {
    let value = ctx
        .client
        .get(&["api", "v1", "auth", "whoami"], &[])
        .await?;
    if !ctx.table() {
        return output::print_raw(ctx.output, &value);
    }
    let user: User = decode(&value, "user")?;
    let mut t = output::table(&["USERNAME", "TENANT", "ROLE", "DISPLAY NAME"]);
    t.add_row(vec![
        user.username,
        user.tenant,
        user.role.as_str().to_owned(),
        output::or_dash(Some(&user.display_name)),
    ]);
    output::print_table(&t)
}
