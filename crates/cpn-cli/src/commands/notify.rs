//! `cpn notify`: where your alarms and account, lease and billing events go (e-mail, signed
//! webhook, SMS).

use super::Ctx;
use crate::client::decode;
use crate::output::{self, or_dash};
use anyhow::Result;
use chrono::SecondsFormat;
use clap::{Subcommand, ValueEnum};
use cpn_api_types::Page;
use cpn_api_types::notifications::{
    CreateSubscription, Delivery, NotifyChannel, NotifyKind, OutboxItem, Subscription,
};

#[derive(Debug, Subcommand)]
pub enum NotifyCmd {
    /// Subscribe to events by e-mail, webhook or SMS.
    ///
    /// Examples:
    ///   cpn notify subscribe --channel email --target me@example.cn --kind alarm --kind account
    ///   CPN_WEBHOOK_SECRET=… cpn notify subscribe --channel webhook \
    ///       --target https://hooks.example.cn/cpn --kind alarm
    #[command(verbatim_doc_comment)]
    Subscribe {
        #[arg(long, value_enum)]
        channel: ChannelArg,
        /// An e-mail address, an http(s) URL, or a phone number in E.164 (+8613800138000).
        #[arg(long)]
        target: String,
        /// Event kinds (repeatable): alarm, account, lease, billing.
        #[arg(long = "kind", value_enum, required = true)]
        kinds: Vec<KindArg>,
        /// Webhooks: the signing secret (at least 16 characters), from the environment so
        /// it stays out of the shell history.
        #[arg(long, env = "CPN_WEBHOOK_SECRET", hide_env_values = true)]
        secret: Option<String>,
    },
    /// Your subscriptions.
    #[command(visible_alias = "ls")]
    List,
    /// Delete a subscription.
    Unsubscribe {
        #[arg(value_name = "ID")]
        id: String,
    },
    /// The delivery log, newest first: each try to send a notification addressed to you
    /// (operators: to anyone), with its masked target and error.
    ///
    /// Examples:
    ///   cpn notify deliveries
    ///   cpn notify deliveries --status failed --limit 20
    #[command(verbatim_doc_comment)]
    Deliveries {
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
        /// Only notifications to this user (yours unless you are an operator).
        #[arg(long, value_name = "USER")]
        recipient: Option<String>,
        /// At or after this RFC 3339 time, e.g. 2026-01-02T03:04:05Z.
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Attempts to show.
        #[arg(long, default_value_t = 50, value_name = "N",
              value_parser = clap::value_parser!(u32).range(1..=500))]
        limit: u32,
        /// Older attempts: the cursor printed under the previous page.
        #[arg(long, value_name = "CURSOR")]
        cursor: Option<String>,
    },
    /// The notification outbox, newest first (operators): each notification's kind,
    /// recipient, masked targets, state, attempts, next attempt and last error. Messages
    /// are never shown.
    ///
    /// Examples:
    ///   cpn notify outbox --state failed
    ///   cpn notify outbox --recipient ana --limit 20
    #[command(verbatim_doc_comment)]
    Outbox {
        #[arg(long, value_enum)]
        state: Option<OutboxStateArg>,
        /// Only notifications to this user.
        #[arg(long, value_name = "USER")]
        recipient: Option<String>,
        /// Entries to show.
        #[arg(long, default_value_t = 50, value_name = "N",
              value_parser = clap::value_parser!(u32).range(1..=500))]
        limit: u32,
        /// Older entries: the cursor printed under the previous page.
        #[arg(long, value_name = "CURSOR")]
        cursor: Option<String>,
    },
    /// Send a failed notification again (operators): pending once more, with a fresh
    /// attempt budget. ID is the outbox list's first column.
    Retry {
        #[arg(value_name = "ID")]
        id: u64,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OutboxStateArg {
    Pending,
    Delivered,
    Failed,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StatusArg {
    Delivered,
    Retrying,
    Failed,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ChannelArg {
    Email,
    Webhook,
    Sms,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KindArg {
    Alarm,
    Account,
    Lease,
    Billing,
}

fn kind_name(k: NotifyKind) -> &'static str {
    match k {
        NotifyKind::Alarm => "alarm",
        NotifyKind::Account => "account",
        NotifyKind::Lease => "lease",
        NotifyKind::Billing => "billing",
    }
}

fn channel_name(c: NotifyChannel) -> &'static str {
    match c {
        NotifyChannel::Email => "email",
        NotifyChannel::Webhook => "webhook",
        NotifyChannel::Sms => "sms",
    }
}

pub async fn run(ctx: &Ctx, cmd: NotifyCmd) -> Result<()> {
    let path = ["api", "v1", "notifications", "subscriptions"];
    match cmd {
        NotifyCmd::Subscribe {
            channel,
            target,
            kinds,
            secret,
        } => {
            let body = CreateSubscription {
                channel: match channel {
                    ChannelArg::Email => NotifyChannel::Email,
                    ChannelArg::Webhook => NotifyChannel::Webhook,
                    ChannelArg::Sms => NotifyChannel::Sms,
                },
                target,
                secret,
                kinds: kinds
                    .into_iter()
                    .map(|k| match k {
                        KindArg::Alarm => NotifyKind::Alarm,
                        KindArg::Account => NotifyKind::Account,
                        KindArg::Lease => NotifyKind::Lease,
                        KindArg::Billing => NotifyKind::Billing,
                    })
                    .collect(),
            };
            let value = ctx.client.post(&path, &body).await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let s: Subscription = decode(&value, "subscription")?;
            output::emit(&format!(
                "subscription {} created: {} to {}",
                s.id,
                s.kinds
                    .iter()
                    .map(|k| kind_name(*k))
                    .collect::<Vec<_>>()
                    .join(","),
                s.target
            ))
        }
        NotifyCmd::List => {
            let value = ctx.client.get(&path, &[]).await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let items: Vec<Subscription> = decode(&value, "subscriptions")?;
            let mut t = output::table(&["ID", "CHANNEL", "TARGET", "KINDS", "CREATED"]);
            for s in items {
                t.add_row(vec![
                    s.id,
                    channel_name(s.channel).to_string(),
                    s.target,
                    s.kinds
                        .iter()
                        .map(|k| kind_name(*k))
                        .collect::<Vec<_>>()
                        .join(","),
                    s.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                ]);
            }
            output::print_table(&t)
        }
        NotifyCmd::Unsubscribe { id } => {
            ctx.client
                .delete(&["api", "v1", "notifications", "subscriptions", &id])
                .await?;
            output::emit(&format!("subscription {id} deleted"))
        }
        NotifyCmd::Deliveries {
            status,
            recipient,
            since,
            limit,
            cursor,
        } => {
            let status = status.map(|s| {
                match s {
                    StatusArg::Delivered => "delivered",
                    StatusArg::Retrying => "retrying",
                    StatusArg::Failed => "failed",
                }
                .to_string()
            });
            let mut query: Vec<(&str, String)> = vec![("limit", limit.to_string())];
            for (key, value) in [
                ("status", status),
                ("recipient", recipient),
                ("since", since),
                ("cursor", cursor),
            ] {
                if let Some(v) = value {
                    query.push((key, v));
                }
            }
            let value = ctx
                .client
                .get(&["api", "v1", "notifications", "deliveries"], &query)
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let page: Page<Delivery> = decode(&value, "delivery page")?;
            let mut t = output::table(&[
                "TIME",
                "RECIPIENT",
                "KIND",
                "CHANNEL",
                "TARGET",
                "TRY",
                "STATUS",
                "ERROR",
            ]);
            for d in page.items {
                t.add_row(vec![
                    d.at.to_rfc3339_opts(SecondsFormat::Secs, true),
                    d.recipient,
                    d.kind,
                    d.channel,
                    d.target,
                    d.attempt.to_string(),
                    d.status,
                    or_dash(d.error.as_deref()),
                ]);
            }
            output::print_table(&t)?;
            if let Some(c) = page.next_cursor {
                output::emit(&format!("older: cpn notify deliveries --cursor {c}"))?;
            }
            Ok(())
        }
        NotifyCmd::Outbox {
            state,
            recipient,
            limit,
            cursor,
        } => {
            let state = state.map(|s| {
                match s {
                    OutboxStateArg::Pending => "pending",
                    OutboxStateArg::Delivered => "delivered",
                    OutboxStateArg::Failed => "failed",
                }
                .to_string()
            });
            let mut query: Vec<(&str, String)> = vec![("limit", limit.to_string())];
            for (key, value) in [
                ("state", state),
                ("recipient", recipient),
                ("cursor", cursor),
            ] {
                if let Some(v) = value {
                    query.push((key, v));
                }
            }
            let value = ctx
                .client
                .get(&["api", "v1", "notifications", "outbox"], &query)
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let page: Page<OutboxItem> = decode(&value, "outbox page")?;
            let mut t = output::table(&[
                "ID",
                "CREATED",
                "RECIPIENT",
                "KIND",
                "TARGETS",
                "STATE",
                "TRIES",
                "NEXT",
                "ERROR",
            ]);
            for e in page.items {
                t.add_row(vec![
                    e.id.to_string(),
                    e.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                    e.recipient,
                    e.kind,
                    e.targets.join(","),
                    e.state,
                    e.attempts.to_string(),
                    or_dash(
                        e.next_attempt_at
                            .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
                            .as_deref(),
                    ),
                    or_dash(e.last_error.as_deref()),
                ]);
            }
            output::print_table(&t)?;
            if let Some(c) = page.next_cursor {
                output::emit(&format!("older: cpn notify outbox --cursor {c}"))?;
            }
            Ok(())
        }
        NotifyCmd::Retry { id } => {
            let value = ctx
                .client
                .post_empty(&[
                    "api",
                    "v1",
                    "notifications",
                    "outbox",
                    &id.to_string(),
                    "retry",
                ])
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let e: OutboxItem = decode(&value, "outbox entry")?;
            output::emit(&format!(
                "outbox entry {} to {} retried: {} (the outbox loop sends it)",
                e.id, e.recipient, e.state
            ))
        }
    }
}
