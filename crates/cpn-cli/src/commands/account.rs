//! `cpn account`: self-service marketplace accounts (issue #14; Ius / Icpcss). Registering,
//! activating and asking for a new code need no token; `profile` shows the caller's account;
//! `review` is the operators' queue of business licences.

use super::Ctx;
use crate::client::decode;
use crate::output::{self, or_dash};
use anyhow::{Context, Result, bail};
use base64::Engine;
use clap::{Args, Subcommand, ValueEnum};
use cpn_api_types::market_accounts::{
    ActivateAccount, CodeSent, DeregisterAccount, Deregistered, LicenceUpload, MarketAccount,
    OrganizationInput, RegisterAccount, Registered, RegistrationKind, RejectAccount, ResendCode,
    ResubmitRegistration, UpdateProfile,
};
use serde_json::Value;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum AccountCmd {
    /// Register a marketplace user or supplier; a verification code is sent to the e-mail
    /// address (or by SMS to the phone) given. Needs no token.
    ///
    /// Examples:
    ///   cpn account register --kind individual-user --username alice --password '…' \
    ///       --email alice@example.cn --real-name 'Alice' --national-id 11010519491231002X
    ///   cpn account register --kind enterprise-supplier --username acme --password '…' \
    ///       --email ops@acme.cn --company-name 'ACME' --legal-representative-name 'Li' \
    ///       --legal-representative-id 11010519491231002X --registered-capital 1000000 \
    ///       --credit-code 91350100M000100Y43 --corporate-account 6222020200112233 \
    ///       --licence licence.pdf
    #[command(verbatim_doc_comment)]
    Register(Box<RegisterArgs>),
    /// Activate an account with the code that was sent. Needs no token.
    Activate {
        #[arg(value_name = "USERNAME")]
        username: String,
        /// The six-digit code from the e-mail or SMS.
        #[arg(long)]
        code: String,
    },
    /// Send a new verification code (the earlier one stops working). Needs no token.
    ResendCode {
        #[arg(value_name = "USERNAME")]
        username: String,
    },
    /// Your marketplace account (or, for operators, the account with --id).
    Profile {
        #[arg(long, value_name = "ID")]
        id: Option<u64>,
    },
    /// Edit your profile. A new organization name or licence sends an organization back to
    /// review.
    Edit {
        #[arg(long)]
        region: Option<String>,
        #[arg(long)]
        affiliation: Option<String>,
        #[arg(long)]
        residential_address: Option<String>,
        #[arg(long)]
        organization_name: Option<String>,
        /// A new business licence (PDF, PNG or JPEG, at most 2 MiB).
        #[arg(long, value_name = "FILE")]
        licence: Option<PathBuf>,
    },
    /// Send a rejected registration back to review with what the operator asked for fixed.
    /// Needs no token: your password proves it is yours.
    Resubmit {
        #[arg(value_name = "USERNAME")]
        username: String,
        #[arg(long, env = "CPN_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long)]
        organization_name: Option<String>,
        /// A new business licence (PDF, PNG or JPEG, at most 2 MiB).
        #[arg(long, value_name = "FILE")]
        licence: Option<PathBuf>,
    },
    /// Deregister your account: personal data erased; username, history and accounting
    /// records kept. Refused while leases run or a debt is open.
    Deregister {
        /// Your username, to confirm.
        #[arg(long, value_name = "USERNAME")]
        confirm: String,
    },
    /// The operators' review of business licences.
    #[command(subcommand)]
    Review(ReviewCmd),
}

#[derive(Debug, Subcommand)]
pub enum ReviewCmd {
    /// Accounts waiting for review.
    #[command(visible_alias = "ls")]
    List,
    /// Approve a registration: its user can log in from now on (audited).
    Approve {
        #[arg(value_name = "ID")]
        id: u64,
    },
    /// Reject a registration with a reason the registrant sees (audited).
    Reject {
        #[arg(value_name = "ID")]
        id: u64,
        #[arg(long)]
        reason: String,
    },
    /// Save an account's business licence to a file.
    Licence {
        #[arg(value_name = "ID")]
        id: u64,
        #[arg(long, short = 'o', value_name = "FILE")]
        output: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KindArg {
    IndividualUser,
    UniversityUser,
    ResearchInstitutionUser,
    EnterpriseUser,
    EnterpriseSupplier,
    IndividualSupplier,
}

impl From<KindArg> for RegistrationKind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::IndividualUser => RegistrationKind::IndividualUser,
            KindArg::UniversityUser => RegistrationKind::UniversityUser,
            KindArg::ResearchInstitutionUser => RegistrationKind::ResearchInstitutionUser,
            KindArg::EnterpriseUser => RegistrationKind::EnterpriseUser,
            KindArg::EnterpriseSupplier => RegistrationKind::EnterpriseSupplier,
            KindArg::IndividualSupplier => RegistrationKind::IndividualSupplier,
        }
    }
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    #[arg(long, value_enum)]
    pub kind: KindArg,
    /// Also your login name and your tenant's name.
    #[arg(long)]
    pub username: String,
    /// At least 10 characters and not guessable (zxcvbn strength 3 of 4).
    #[arg(long, env = "CPN_PASSWORD", hide_env_values = true)]
    pub password: String,
    #[arg(long)]
    pub email: Option<String>,
    /// Mainland mobile number.
    #[arg(long)]
    pub phone: Option<String>,
    /// Accept the registration agreement and privacy policy (`GET /api/v1/market/terms`)
    /// of this version.
    #[arg(long, default_value = cpn_server::market_accounts::TERMS_VERSION)]
    pub accept_terms: String,
    /// Users and individual suppliers.
    #[arg(long, default_value = "")]
    pub real_name: String,
    /// Resident ID number (stored only as a keyed hash).
    #[arg(long, default_value = "")]
    pub national_id: String,
    /// University, institution and enterprise users: the organization's name.
    #[arg(long)]
    pub organization: Option<String>,
    /// Its unified social credit code (organizations and enterprise suppliers).
    #[arg(long, default_value = "")]
    pub credit_code: String,
    #[arg(long)]
    pub region: Option<String>,
    #[arg(long, default_value = "")]
    pub company_name: String,
    #[arg(long, default_value = "")]
    pub legal_representative_name: String,
    #[arg(long, default_value = "")]
    pub legal_representative_id: String,
    /// Registered capital in yuan.
    #[arg(long, default_value_t = 0)]
    pub registered_capital: i64,
    #[arg(long, default_value = "")]
    pub corporate_account: String,
    #[arg(long, default_value = "")]
    pub residential_address: String,
    #[arg(long)]
    pub affiliation: Option<String>,
    #[arg(long, default_value = "")]
    pub payout_account: String,
    /// The business licence: a PDF, PNG or JPEG file of at most 2 MiB.
    #[arg(long, value_name = "FILE")]
    pub licence: Option<PathBuf>,
}

fn licence_upload(path: &PathBuf) -> Result<LicenceUpload> {
    let data = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    let content_type = match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("pdf") => "application/pdf",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        _ => bail!(
            "{}: the licence must be a .pdf, .png or .jpg file",
            path.display()
        ),
    };
    Ok(LicenceUpload {
        content_type: content_type.to_string(),
        data_base64: base64::engine::general_purpose::STANDARD.encode(data),
    })
}

fn body(a: RegisterArgs) -> Result<RegisterAccount> {
    let kind: RegistrationKind = a.kind.into();
    let organization = a.organization.map(|name| OrganizationInput {
        name,
        credit_code: a.credit_code.clone(),
    });
    Ok(RegisterAccount {
        kind,
        username: a.username,
        password: a.password,
        email: a.email,
        phone: a.phone,
        accepted_terms: a.accept_terms,
        real_name: a.real_name,
        national_id: a.national_id,
        organization,
        region: a.region,
        company_name: a.company_name,
        legal_representative_name: a.legal_representative_name,
        legal_representative_id: a.legal_representative_id,
        registered_capital_minor: a.registered_capital.saturating_mul(100),
        credit_code: a.credit_code,
        corporate_account: a.corporate_account,
        residential_address: a.residential_address,
        affiliation: a.affiliation,
        payout_account: a.payout_account,
        licence: a.licence.as_ref().map(licence_upload).transpose()?,
    })
}

fn show(ctx: &Ctx, value: &Value) -> Result<()> {
    if !ctx.table() {
        return output::print_raw(ctx.output, value);
    }
    let a: MarketAccount = decode(value, "account")?;
    let mut lines = vec![
        format!("account {} ({})", a.id, a.username),
        format!("kind:      {}", a.kind.as_str()),
        format!(
            "state:     {}{}",
            a.state,
            a.state_reason
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
        format!("tenant:    {}", a.tenant),
        format!("name:      {}", or_dash(a.display_name.as_deref())),
        format!("e-mail:    {}", or_dash(a.email.as_deref())),
        format!("phone:     {}", or_dash(a.phone.as_deref())),
    ];
    if let Some(org) = &a.organization_name {
        lines.push(format!("org:       {org}"));
    }
    for id in &a.identifiers {
        lines.push(format!("{}: {}", id.field, id.masked));
    }
    lines.push(format!(
        "licence:   {}",
        if a.has_licence { "on file" } else { "-" }
    ));
    output::emit(&lines.join("\n"))
}

pub async fn run(ctx: &Ctx, cmd: AccountCmd) -> Result<()> {
    match cmd {
        AccountCmd::Register(args) => {
            let value = ctx
                .client
                .post_anonymous(
                    &["api", "v1", "market", "accounts", "register"],
                    &body(*args)?,
                )
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let r: Registered = decode(&value, "registration")?;
            output::emit(&format!(
                "account {} registered ({}); a verification code was sent to {} (valid until {})\nnext: {}\nterms: {} and {}",
                r.account.username,
                r.account.state,
                r.code_sent_to.join(", "),
                r.code_expires_at.to_rfc3339(),
                r.next,
                r.terms.agreement_url,
                r.terms.privacy_policy_url
            ))
        }
        AccountCmd::Activate { username, code } => {
            let value = ctx
                .client
                .post_anonymous(
                    &["api", "v1", "market", "accounts", "activate"],
                    &ActivateAccount { username, code },
                )
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let a: MarketAccount = decode(&value, "account")?;
            let next = if a.state == "active" {
                "log in with cpn login"
            } else {
                "an operator reviews the business licence next"
            };
            output::emit(&format!("account {} is {}: {next}", a.username, a.state))
        }
        AccountCmd::ResendCode { username } => {
            let value = ctx
                .client
                .post_anonymous(
                    &["api", "v1", "market", "accounts", "resend-code"],
                    &ResendCode { username },
                )
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let sent: CodeSent = decode(&value, "code")?;
            output::emit(&format!(
                "a new code was sent to {}",
                sent.code_sent_to.join(", ")
            ))
        }
        AccountCmd::Profile { id } => {
            let id = id.map(|i| i.to_string());
            let last = id.as_deref().unwrap_or("me");
            let value = ctx
                .client
                .get(&["api", "v1", "market", "accounts", last], &[])
                .await?;
            show(ctx, &value)
        }
        AccountCmd::Edit {
            region,
            affiliation,
            residential_address,
            organization_name,
            licence,
        } => {
            let body = UpdateProfile {
                region,
                affiliation,
                residential_address,
                organization_name,
                licence: licence.as_ref().map(licence_upload).transpose()?,
            };
            let value = ctx
                .client
                .patch(&["api", "v1", "market", "accounts", "me"], &body)
                .await?;
            show(ctx, &value)
        }
        AccountCmd::Resubmit {
            username,
            password,
            organization_name,
            licence,
        } => {
            let body = ResubmitRegistration {
                username,
                password,
                changes: UpdateProfile {
                    organization_name,
                    licence: licence.as_ref().map(licence_upload).transpose()?,
                    ..Default::default()
                },
            };
            let value = ctx
                .client
                .post_anonymous(&["api", "v1", "market", "accounts", "resubmit"], &body)
                .await?;
            show(ctx, &value)
        }
        AccountCmd::Deregister { confirm } => {
            let value = ctx
                .client
                .post(
                    &["api", "v1", "market", "accounts", "me", "deregister"],
                    &DeregisterAccount {
                        confirm_username: confirm,
                    },
                )
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let d: Deregistered = decode(&value, "deregistration")?;
            output::emit(&format!(
                "account {} deregistered\nerased: {}\nkept: {}",
                d.account.username,
                d.erased.join(", "),
                d.kept.join(", ")
            ))
        }
        AccountCmd::Review(cmd) => review(ctx, cmd).await,
    }
}

async fn review(ctx: &Ctx, cmd: ReviewCmd) -> Result<()> {
    match cmd {
        ReviewCmd::List => {
            let value = ctx
                .client
                .get(&["api", "v1", "market", "reviews"], &[])
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let items: Vec<MarketAccount> = decode(&value, "review queue")?;
            let mut t = output::table(&["ID", "USERNAME", "KIND", "ORGANIZATION", "LICENCE"]);
            for a in items {
                t.add_row(vec![
                    a.id.to_string(),
                    a.username,
                    a.kind.as_str().to_string(),
                    or_dash(a.organization_name.as_deref()),
                    if a.has_licence { "yes" } else { "no" }.to_string(),
                ]);
            }
            output::print_table(&t)
        }
        ReviewCmd::Approve { id } => {
            let id = id.to_string();
            let value = ctx
                .client
                .post_empty(&["api", "v1", "market", "accounts", &id, "approve"])
                .await?;
            show(ctx, &value)
        }
        ReviewCmd::Reject { id, reason } => {
            let id = id.to_string();
            let value = ctx
                .client
                .post(
                    &["api", "v1", "market", "accounts", &id, "reject"],
                    &RejectAccount { reason },
                )
                .await?;
            show(ctx, &value)
        }
        ReviewCmd::Licence { id, output: path } => {
            let id = id.to_string();
            let bytes = ctx
                .client
                .get_stream(
                    &["api", "v1", "market", "accounts", &id, "licence"],
                    &[],
                    &[],
                )
                .await?
                .bytes()
                .await
                .map_err(|e| ctx.client.stream_error(e))?;
            std::fs::write(&path, &bytes).with_context(|| format!("write {}", path.display()))?;
            output::emit(&format!(
                "licence of account {id} saved to {}",
                path.display()
            ))
        }
    }
}
