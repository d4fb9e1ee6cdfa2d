//! `cpn notify`: where your alarms and account, lease and billing events go (e-mail, signed
//! webhook, SMS).

use super::Ctx;
use crate::client::decode;
use crate::output;
use anyhow::Result;
use chrono::SecondsFormat;
use clap::{Subcommand, ValueEnum};
use cpn_api_types::notifications::{CreateSubscription, NotifyChannel, NotifyKind, Subscription};

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
    }
}
