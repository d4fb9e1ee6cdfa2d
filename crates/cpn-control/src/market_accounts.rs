//! Self-service marketplace accounts (issue #14 deliverable 1; SH-USR, SH-SUP; the Ius and
//! Icpcss interfaces): registration checked by `cpn_market`, a verification code sent
//! through `notify`, activation, the operator's review of business licences, profiles.
//!
//! Each market account logs in as a platform user of the same name, in a tenant of its own
//! (also that name), with role `user` or `supplier`. The user is created at registration
//! but disabled, and enabled only when the market account becomes `active` (after
//! activation, and for organizations after an operator's approval), so the one login path
//! (`identity::login`) and every token check stay as they are; `login_refusal` turns the
//! generic "disabled" answer into one that says what the registrant still has to do.
//!
//! Sensitive identifiers reach the store only as keyed hashes: the key is 32 random bytes
//! generated once into `DATA_DIR/market-identifier.key` (mode 0600), like the operator
//! token and the TLS keys. It is the marketplace's only key: `market` hashes class A
//! authorization codes with it too ([`MarketAccounts::hasher`]); it is kept out of the
//! store's settings, which more code paths read. Losing the key makes stored identifiers
//! uncomparable (the same ID number could register twice), so back it up with the data dir.
//!
//! Every actor in the marketplace has exactly one account record: registrants get theirs
//! here at registration, users an operator created get one on their first marketplace call
//! ([`account_of`]), both through [`create_account`].
//!
//! Verification codes (and, with `--public-url`, the activation link's token) are kept in the
//! store as keyed hashes with their expiry and the tries they have left
//! (`market_pending_codes`), so a code sent before a restart still activates after it; a
//! used or expired code is removed. The message carrying them goes through the notification
//! outbox (`notify`), which holds it until it is delivered; it is written in the same store
//! write as the codes (`put_pending_codes`), so no crash keeps a code without its message. Nothing here logs a code, a
//! password or an identifier.

use crate::caller::Caller;
use crate::error::{ServiceError, ServiceResult};
use crate::notify::Notifier;
use crate::state::Control;
use anyhow::Context;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use cpn_api_types::Code;
use cpn_api_types::market_accounts::{
    AccountTransition, ActivateAccount, CodeSent, DeregisterAccount, Deregistered, LicenceUpload,
    MarketAccount, MaskedIdentifier, RegisterAccount, Registered, RegistrationKind,
    RegistrationTerms, RejectAccount, ResendCode, ResubmitRegistration, UpdateProfile,
};
use cpn_market::account::lifecycle::Actor as MarketActor;
use cpn_market::account::lifecycle::Obligations;
use cpn_market::account::{
    Contact, EnterpriseSupplier, IndividualSupplier, LifecycleError, Organization, Registration,
    UserRegistration,
};
use cpn_market::billing::LedgerAccount;
use cpn_market::lease::LeaseState;
use cpn_market::verification::{self, CodeError, Entropy, PendingCode, Purpose};
use cpn_market::{
    Account, AccountId, AccountKind, AccountState, KeyedHasher, Money, SupplierKind, TenantId,
    Timestamp, UserKind,
};
use cpn_notify::{EventKind, Notification, Target};
use cpn_store::NewUser;
use cpn_store::{Enqueued, StoredCode};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The identifier key's file in the data dir.
pub const KEY_FILE: &str = "market-identifier.key";
/// The version of the registration agreement and privacy policy a registrant accepts.
pub const TERMS_VERSION: &str = "2026-12";
/// Largest licence file accepted, before base64.
pub const MAX_LICENCE_BYTES: usize = 2 * 1024 * 1024;
/// Registrations, activations and code requests per client address per window: enough for
/// a lab behind one NAT, too few to mail-bomb through the platform or guess codes widely.
const PER_ADDRESS: usize = 20;
const WINDOW: Duration = Duration::from_secs(600);
/// A new code for the same account at most this often.
const RESEND_AFTER_S: i64 = 60;
/// Addresses remembered at most; past it the oldest windows are swept.
const MAX_ADDRESSES: usize = 10_000;

/// State beside the store: the identifier key, the channels, the per-address windows.
pub struct MarketAccounts {
    hasher: KeyedHasher,
    notifier: Notifier,
    attempts: Mutex<HashMap<String, VecDeque<Instant>>>,
    licence_dir: PathBuf,
}

impl MarketAccounts {
    /// Reads the identifier key from the data dir, generating it on first start.
    pub fn open(data_dir: &Path, notifier: Notifier) -> anyhow::Result<MarketAccounts> {
        let path = data_dir.join(KEY_FILE);
        let key = crate::auth::data_dir_key(&path)?;
        let hasher = KeyedHasher::new(&key).with_context(|| path.display().to_string())?;
        Ok(MarketAccounts {
            hasher,
            notifier,
            attempts: Mutex::new(HashMap::new()),
            licence_dir: data_dir.join("market").join("licences"),
        })
    }

    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// The one identifier key of the marketplace: registration's identifiers and verification
    /// codes here, class A authorization codes in `market` (ARCHITECTURE.md, cpn-market).
    pub fn hasher(&self) -> &KeyedHasher {
        &self.hasher
    }

    /// Counts one unauthenticated request from `source`; refused past the window's budget.
    fn admit(&self, source: &str) -> ServiceResult<()> {
        let now = Instant::now();
        let mut map = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_ADDRESSES {
            map.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
        }
        let q = map.entry(source.to_string()).or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
            q.pop_front();
        }
        if q.len() >= PER_ADDRESS {
            return Err(ServiceError::new(
                Code::TooManyRequests,
                format!(
                    "too many registration requests from this address; retry in {} minutes",
                    WINDOW.as_secs() / 60
                ),
            ));
        }
        q.push_back(now);
        Ok(())
    }
}

/// The documents a registrant accepts (in every registration answer): their place in the
/// cpn repository, which an operator replaces with their own published texts.
pub fn terms() -> RegistrationTerms {
    RegistrationTerms {
        version: TERMS_VERSION.to_string(),
        agreement_url: "docs/market/registration-agreement.md".to_string(),
        privacy_policy_url: "docs/market/privacy-policy.md".to_string(),
    }
}

fn now() -> (DateTime<Utc>, Timestamp) {
    let t = Utc::now();
    (t, Timestamp::from_unix(t.timestamp()))
}

fn time_of(t: Timestamp) -> DateTime<Utc> {
    Utc.timestamp_opt(t.unix(), 0).single().unwrap_or_default()
}

fn wire_kind(kind: AccountKind) -> RegistrationKind {
    match kind {
        AccountKind::User(UserKind::Individual) => RegistrationKind::IndividualUser,
        AccountKind::User(UserKind::University) => RegistrationKind::UniversityUser,
        AccountKind::User(UserKind::ResearchInstitution) => {
            RegistrationKind::ResearchInstitutionUser
        }
        AccountKind::User(UserKind::Enterprise) => RegistrationKind::EnterpriseUser,
        AccountKind::Supplier(SupplierKind::Enterprise) => RegistrationKind::EnterpriseSupplier,
        AccountKind::Supplier(SupplierKind::Individual) => RegistrationKind::IndividualSupplier,
    }
}

fn reason_of(state: &AccountState) -> Option<String> {
    match state {
        AccountState::Rejected { reason } | AccountState::Disabled { reason } => {
            Some(reason.clone())
        }
        _ => None,
    }
}

/// The account as its owner and operators see it: identifiers masked, never hashed or clear.
pub fn view(a: &Account) -> MarketAccount {
    let p = a.profile();
    MarketAccount {
        id: a.id().0,
        username: a.username().to_string(),
        kind: wire_kind(a.kind()),
        state: a.state().name().to_string(),
        state_reason: reason_of(a.state()),
        tenant: a.username().to_string(),
        display_name: p.map(|p| p.display_name.clone()),
        email: p.and_then(|p| p.contact.email.clone()),
        phone: p.and_then(|p| p.contact.phone.clone()),
        identifiers: p
            .map(|p| {
                p.identifiers
                    .iter()
                    .map(|(field, h)| MaskedIdentifier {
                        field: field.to_string(),
                        masked: h.masked().to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        organization_name: p.and_then(|p| p.organization_name.clone()),
        has_licence: p.is_some_and(|p| p.licence_document.is_some()),
        region: p.and_then(|p| p.region.clone()),
        history: a
            .history()
            .iter()
            .map(|t| AccountTransition {
                at: time_of(t.at),
                actor: match &t.actor {
                    MarketActor::Owner => "owner".to_string(),
                    MarketActor::Operator(name) => format!("operator:{name}"),
                },
                state: t.to.name().to_string(),
                reason: reason_of(&t.to),
            })
            .collect(),
    }
}

fn lifecycle_error(e: LifecycleError) -> ServiceError {
    match e {
        LifecycleError::ReasonRequired => ServiceError::field("reason", e.to_string()),
        _ => ServiceError::new(Code::InvalidState, e.to_string()),
    }
}

/// A licence's accepted types: the declared type must match the file's first bytes.
fn licence_extension(content_type: &str, data: &[u8]) -> Option<&'static str> {
    match content_type {
        "application/pdf" if data.starts_with(b"%PDF-") => Some("pdf"),
        "image/png" if data.starts_with(b"\x89PNG\r\n\x1a\n") => Some("png"),
        "image/jpeg" if data.starts_with(&[0xFF, 0xD8, 0xFF]) => Some("jpg"),
        _ => None,
    }
}

fn licence_content_type(document: &str) -> &'static str {
    match document.rsplit_once('.').map(|(_, ext)| ext) {
        Some("pdf") => "application/pdf",
        Some("png") => "image/png",
        _ => "image/jpeg",
    }
}

/// A decoded, type-checked licence: its file name in the licence folder and its bytes.
struct Licence {
    document: String,
    data: Vec<u8>,
}

fn decode_licence(upload: Option<&LicenceUpload>) -> ServiceResult<Option<Licence>> {
    let Some(upload) = upload else {
        return Ok(None);
    };
    // Base64 is 4/3 of the file: refuse an over-long text before decoding it.
    if upload.data_base64.len() > MAX_LICENCE_BYTES / 3 * 4 + 4 {
        return Err(ServiceError::field(
            "licence.data_base64",
            format!("the licence is larger than {} MiB", MAX_LICENCE_BYTES >> 20),
        ));
    }
    let data = base64::engine::general_purpose::STANDARD
        .decode(upload.data_base64.trim())
        .map_err(|e| ServiceError::field("licence.data_base64", format!("not base64: {e}")))?;
    let ext = licence_extension(&upload.content_type, &data).ok_or_else(|| {
        ServiceError::field(
            "licence.content_type",
            "the licence must be a PDF, PNG or JPEG file whose content matches content_type (application/pdf, image/png, image/jpeg)",
        )
    })?;
    let digest = hex::encode(Sha256::digest(&data));
    Ok(Some(Licence {
        document: format!("{digest}.{ext}"),
        data,
    }))
}

/// The `cpn_market` registration of a request; the licence reference goes where the kind
/// keeps it, and a missing one is reported by the validation as a missing field.
fn registration(req: &RegisterAccount, licence: Option<&str>) -> Registration {
    let contact = Contact {
        email: req.email.clone().filter(|e| !e.trim().is_empty()),
        phone: req.phone.clone().filter(|p| !p.trim().is_empty()),
    };
    let licence = licence.unwrap_or_default().to_string();
    let user = |kind: UserKind| {
        Registration::User(UserRegistration {
            username: req.username.clone(),
            contact: contact.clone(),
            real_name: req.real_name.clone(),
            national_id: req.national_id.clone(),
            kind,
            organization: req.organization.as_ref().map(|o| Organization {
                name: o.name.clone(),
                credit_code: o.credit_code.clone(),
                licence_document: licence.clone(),
            }),
            region: req.region.clone(),
            accepted_terms: req.accepted_terms.clone(),
        })
    };
    match req.kind {
        RegistrationKind::IndividualUser => user(UserKind::Individual),
        RegistrationKind::UniversityUser => user(UserKind::University),
        RegistrationKind::ResearchInstitutionUser => user(UserKind::ResearchInstitution),
        RegistrationKind::EnterpriseUser => user(UserKind::Enterprise),
        RegistrationKind::EnterpriseSupplier => {
            Registration::EnterpriseSupplier(EnterpriseSupplier {
                username: req.username.clone(),
                company_name: req.company_name.clone(),
                legal_representative_name: req.legal_representative_name.clone(),
                legal_representative_id: req.legal_representative_id.clone(),
                registered_capital: Money::from_minor(req.registered_capital_minor),
                credit_code: req.credit_code.clone(),
                contact,
                licence_document: licence,
                corporate_account: req.corporate_account.clone(),
                accepted_terms: req.accepted_terms.clone(),
            })
        }
        RegistrationKind::IndividualSupplier => {
            Registration::IndividualSupplier(IndividualSupplier {
                username: req.username.clone(),
                real_name: req.real_name.clone(),
                national_id: req.national_id.clone(),
                residential_address: req.residential_address.clone(),
                contact,
                affiliation: req.affiliation.clone(),
                payout_account: req.payout_account.clone(),
                accepted_terms: req.accepted_terms.clone(),
            })
        }
    }
}

fn taken() -> ServiceError {
    ServiceError::new(
        Code::AlreadyExists,
        "the username, e-mail address or phone number is already registered; log in, or register with other details",
    )
}

/// Where a code for `contact` can go on this server, or why nowhere.
fn code_targets(notifier: &Notifier, contact: &Contact) -> ServiceResult<Vec<Target>> {
    let mut targets = Vec::new();
    if let Some(email) = &contact.email
        && notifier.has_email()
    {
        targets.push(
            Target::email(email.clone())
                .map_err(|e| ServiceError::field("email", e.to_string()))?,
        );
    }
    if let Some(phone) = &contact.phone
        && notifier.has_sms()
    {
        let phone = if phone.starts_with('+') {
            phone.clone()
        } else {
            format!("+86{phone}")
        };
        targets.push(Target::sms(phone).map_err(|e| ServiceError::field("phone", e.to_string()))?);
    }
    if targets.is_empty() {
        return Err(ServiceError::new(
            Code::Unavailable,
            "this server cannot send verification codes to the contact given: it has no e-mail relay (the operator starts cpn serve with --smtp-relay HOST:PORT) and no SMS gateway for a phone number (--sms-gateway URL)",
        ));
    }
    Ok(targets)
}

/// Issues a code of `purpose` for `account` at `t`: the code in clear (for the message
/// only), and what the store keeps of it (its keyed hash, expiry and tries), which replaces
/// the account's earlier code of that purpose once stored.
fn issue_code(
    state: &Control,
    account: &Account,
    purpose: Purpose,
    t: Timestamp,
) -> (String, StoredCode) {
    let mut entropy = [0u8; 32];
    OsRng.fill_bytes(&mut entropy);
    let (code, pending) =
        verification::issue(purpose, Entropy(entropy), &state.market_accounts.hasher, t);
    let stored = StoredCode {
        account: account.id().0,
        purpose: purpose.name().to_string(),
        digest_hex: pending.digest_hex(),
        issued_at: t.unix(),
        expires_at: pending.expires_at().unix(),
        attempts_left: pending.attempts_left(),
    };
    (code, stored)
}

/// The path of the activation link (`GET`), below `--public-url`.
pub const ACTIVATION_LINK_PATH: &str = "/api/v1/market/accounts/activate";

/// Issues a fresh registration code for `account` (replacing any earlier one) and, when the
/// server knows its public address, an activation link, and stores them with the message
/// that carries them in one write (`put_pending_codes`): a crash keeps both or neither, so
/// no stored code lacks its message.
async fn send_code(
    state: &Control,
    account: &Account,
    targets: Vec<Target>,
) -> ServiceResult<CodeSent> {
    let m = &state.market_accounts;
    let (_, t) = now();
    // Expired codes of every account go now: the table holds live codes only.
    state.store.purge_expired_codes(t.unix()).await?;
    let (code, registration) = issue_code(state, account, Purpose::Registration, t);
    let expires_at = time_of(Timestamp::from_unix(registration.expires_at));
    let mut codes = vec![registration];
    let link = match m.notifier.public_url() {
        Some(base) => {
            let (token, activation) = issue_code(state, account, Purpose::Activation, t);
            codes.push(activation);
            format!(
                "\n\nOr open this link once to activate (valid for 24 hours):\n  {base}{ACTIVATION_LINK_PATH}?username={}&token={token}",
                account.username()
            )
        }
        None => String::new(),
    };
    let mut nonce = [0u8; 8];
    OsRng.fill_bytes(&mut nonce);
    let n = Notification::new(
        EventKind::Account,
        account.username(),
        "Your cpn verification code",
        format!(
            "Your cpn verification code is {code}. It is valid for 10 minutes.\n\nEnter it to activate:\n  cpn account activate {} --code {code}{link}\n\nIf you did not register at cpn, ignore this message.",
            account.username()
        ),
        serde_json::json!({"event": "account.verification_code", "account": account.id().0}),
        format!("account-{}-code-{}", account.id().0, hex::encode(nonce)),
    )
    .map_err(|e| ServiceError::new(Code::Internal, e.to_string()))?;
    let code_sent_to = targets.iter().map(Target::masked).collect();
    let message = crate::notify::outbox_entry(&n, targets)?;
    match state.store.put_pending_codes(codes, message).await? {
        Enqueued::Queued => m.notifier.wake(),
        // The key carries a fresh nonce: another message under it is not this code's.
        Enqueued::Duplicate => {
            return Err(ServiceError::new(
                Code::Internal,
                "the verification message's key was taken; nothing was stored, ask for a new code",
            ));
        }
        Enqueued::Full { pending } => {
            return Err(ServiceError::new(
                Code::TooManyRequests,
                format!(
                    "{pending} messages to this account are still waiting to be delivered; no new code was issued, ask again later"
                ),
            ));
        }
    }
    Ok(CodeSent {
        code_sent_to,
        code_expires_at: expires_at,
    })
}

/// Tells the owner of `account` about a review decision through the outbox, best effort: a
/// failure to write it is logged, the decision stands.
async fn tell_owner(m: &MarketAccounts, account: &Account, subject: &str, body: String) {
    let Some(email) = account.profile().and_then(|p| p.contact.email.clone()) else {
        return;
    };
    if !m.notifier.has_email() {
        return;
    }
    let (Ok(target), Ok(n)) = (
        Target::email(email),
        Notification::new(
            EventKind::Account,
            account.username(),
            subject,
            body,
            serde_json::json!({"event": "account.state", "account": account.id().0, "state": account.state().name()}),
            format!(
                "account-{}-state-{}",
                account.id().0,
                account.history().len()
            ),
        ),
    ) else {
        return;
    };
    if let Err(e) = m.notifier.enqueue(n, vec![target]).await {
        tracing::warn!(error = %e, "review decision not written to the outbox");
    }
}

/// Self-registration: validates every field, stores identifiers as keyed hashes, creates the
/// (disabled) platform user in its own tenant, and sends the verification code.
pub async fn register(
    state: &Control,
    source: &str,
    req: RegisterAccount,
) -> ServiceResult<Registered> {
    let m = &state.market_accounts;
    m.admit(source)?;
    let licence = decode_licence(req.licence.as_ref())?;
    let reg = registration(&req, licence.as_ref().map(|l| l.document.as_str()));
    let profile = reg.seal(&m.hasher).map_err(|invalid| {
        let field = invalid
            .0
            .first()
            .map(|e| e.path.clone())
            .unwrap_or_default();
        ServiceError {
            code: Code::InvalidField,
            message: invalid.to_string(),
            field: Some(field),
        }
    })?;
    if licence.is_some() && profile.licence_document.is_none() {
        return Err(ServiceError::field(
            "licence",
            "this kind of account has no business licence: leave it out",
        ));
    }
    crate::auth::check_password_policy(
        "password",
        &req.password,
        &[&profile.username, &profile.display_name],
    )?;
    let targets = code_targets(&m.notifier, &profile.contact)?;
    for (key, value) in profile.uniqueness_keys() {
        if state
            .store
            .find_market_account(key, &value)
            .await?
            .is_some()
        {
            return Err(taken());
        }
    }
    let username = profile.username.clone();
    // Compared without case: a registrant named `Admin` must not pass for the operator.
    let lower = username.to_lowercase();
    let users = state.store.list_users(None).await?;
    let tenants = state.store.list_tenants().await?;
    if users.iter().any(|u| u.username.to_lowercase() == lower)
        || tenants.iter().any(|t| t.name.to_lowercase() == lower)
    {
        return Err(taken());
    }
    let password = req.password.clone();
    let hash = state
        .accounts
        .hashing
        .run_api(move || crate::auth::hash_password(&password))
        .await??;
    if let Some(l) = &licence {
        store_licence(&m.licence_dir, l)
            .await
            .map_err(|e| ServiceError::new(Code::Internal, format!("store the licence: {e}")))?;
    }
    let (at, t) = now();
    let role = if profile.kind.is_supplier() {
        "supplier"
    } else {
        "user"
    };
    let display_name = profile
        .organization_name
        .clone()
        .unwrap_or_else(|| profile.display_name.clone());
    let account = create_account(state, |id| Account::register(id, profile, t)).await?;
    // The user exists from now on, so its name cannot be taken, but cannot log in: it is
    // created with an unusable hash, disabled, and only then given its password.
    state.store.create_tenant(&username, &display_name).await?;
    state
        .store
        .create_user(NewUser {
            username: username.clone(),
            password_hash: "!".to_string(),
            tenant: username.clone(),
            role: role.to_string(),
            display_name,
            now: at,
        })
        .await?;
    state.store.set_user_disabled(&username, true).await?;
    state.store.set_password_hash(&username, &hash).await?;
    let sent = send_code(state, &account, targets).await?;
    let next = if account.kind().requires_review() {
        "enter the code with POST /api/v1/market/accounts/activate (cpn account activate); an operator then reviews the business licence, and you can log in once approved"
    } else {
        "enter the code with POST /api/v1/market/accounts/activate (cpn account activate); then log in"
    };
    Ok(Registered {
        account: view(&account),
        code_sent_to: sent.code_sent_to,
        code_expires_at: sent.code_expires_at,
        terms: terms(),
        next: next.to_string(),
    })
}

/// Creates an account record under the next account id: the one way an account comes to
/// be, for registrants ([`register`]) and for operator-created users ([`account_of`]).
async fn create_account(
    state: &Control,
    make: impl FnOnce(AccountId) -> Account,
) -> ServiceResult<Account> {
    let id = AccountId(state.store.next_market_sequence("account").await?);
    let account = make(id);
    state
        .store
        .create_market_account(account.clone())
        .await
        .map_err(|e| match e {
            cpn_store::StoreError::AlreadyExists { .. } => taken(),
            e => e.into(),
        })?;
    Ok(account)
}

/// The market account of the caller's platform user: the one the user registered with, or
/// for a user an operator created (no registration), one made now on its first marketplace
/// call, so every lease, order and ledger entry names a real account record. Its kind
/// follows the role: a user orders as an individual; a supplier, and an operator publishing
/// the platform's own clusters, act as an enterprise (an organization runs the sites). It
/// is active at once (the operator vouched by creating the user) and the creation goes to
/// the audit log.
pub async fn account_of(state: &Control, who: &Caller) -> ServiceResult<Account> {
    if let Some((account, _)) = find(state, &who.username).await? {
        return Ok(account);
    }
    let kind = match who.role {
        cpn_api_types::identity::Role::User => AccountKind::User(UserKind::Individual),
        cpn_api_types::identity::Role::Supplier | cpn_api_types::identity::Role::Operator => {
            AccountKind::Supplier(SupplierKind::Enterprise)
        }
    };
    let display_name = state
        .store
        .find_user(&who.username)
        .await?
        .map(|u| u.display_name)
        .unwrap_or_else(|| who.username.clone());
    let profile = cpn_market::account::AccountProfile {
        username: who.username.clone(),
        kind,
        display_name,
        contact: Contact::default(),
        identifiers: Vec::new(),
        organization_name: None,
        licence_document: None,
        address: None,
        affiliation: None,
        registered_capital: None,
        region: None,
        accepted_terms: String::new(),
    };
    let (at, t) = now();
    match create_account(state, |id| Account::provision(id, profile, t)).await {
        Ok(account) => {
            let line = cpn_store::AuditRecord {
                seq: 0,
                at,
                actor: who.username.clone(),
                tenant: who.tenant.clone(),
                source: "server".into(),
                action: "market.account.provision".into(),
                object_kind: "market_accounts".into(),
                object_id: account.id().0.to_string(),
                generation_before: None,
                generation_after: Some(1),
                result: "ok".into(),
                status: 201,
                detail: format!(
                    "account {} ({kind:?}) for the {} user {}, created by an operator without registration",
                    account.id().0,
                    who.role.as_str(),
                    who.username
                ),
            };
            state.store.append_audit(line).await?;
            Ok(account)
        }
        // Two first calls at once: the other one made it.
        Err(e) if e.code == Code::AlreadyExists => {
            find(state, &who.username).await?.map(|(a, _)| a).ok_or(e)
        }
        Err(e) => Err(e),
    }
}

async fn find(state: &Control, username: &str) -> ServiceResult<Option<(Account, u64)>> {
    let Some(id) = state
        .store
        .find_market_account("username", &username.trim().to_lowercase())
        .await?
    else {
        return Ok(None);
    };
    Ok(state.store.get_market_account(id).await?)
}

async fn store_licence(dir: &Path, licence: &Licence) -> std::io::Result<()> {
    let (dir, document, data) = (
        dir.to_path_buf(),
        licence.document.clone(),
        licence.data.clone(),
    );
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir)?;
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = dir.join(format!("{document}.tmp"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(&document))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// The account of `username`, with its version; one "not found" for every miss.
async fn by_username(state: &Control, username: &str) -> ServiceResult<(Account, u64)> {
    let missing = || {
        ServiceError::new(
            Code::NotFound,
            format!("no marketplace account named {username:?}"),
        )
    };
    find(state, username).await?.ok_or_else(missing)
}

async fn by_id(state: &Control, id: u64) -> ServiceResult<(Account, u64)> {
    state
        .store
        .get_market_account(AccountId(id))
        .await?
        .ok_or_else(|| ServiceError::not_found("marketplace account", &id.to_string()))
}

/// Writes a changed account (if it is still at `version`) and brings its platform user
/// in step ([`sync_user`]): every transition goes through here, so the invariant that the
/// user is enabled exactly while the account is active holds after each.
async fn save(state: &Control, account: &Account, version: u64) -> ServiceResult<()> {
    state
        .store
        .update_market_account(account.clone(), version)
        .await?;
    sync_user(state, account).await
}

/// Makes the platform user follow the account: enabled exactly while it is active.
async fn sync_user(state: &Control, account: &Account) -> ServiceResult<()> {
    let active = account.can_transact();
    let user = state
        .store
        .set_user_disabled(account.username(), !active)
        .await?;
    if !active {
        state.store.revoke_user_sessions(&user.id, None).await?;
    }
    Ok(())
}

/// Checks `entered` against the account's stored code of `purpose` (a wrong one costs a try,
/// in the store, so concurrent guesses each count); a right one removes every pending code
/// of the account, so the code and the link activate once between them. `field` names the
/// input in a "wrong code" answer.
async fn use_code(
    state: &Control,
    account: &Account,
    purpose: Purpose,
    field: &str,
    entered: &str,
) -> ServiceResult<()> {
    let id = account.id().0;
    let gone = || {
        ServiceError::new(
            Code::InvalidState,
            "no code is pending for this account (it expired or was used); ask for a new one: cpn account resend-code",
        )
    };
    let stored = state
        .store
        .take_code_attempt(id, purpose.name())
        .await?
        .ok_or_else(gone)?;
    let mut pending = PendingCode::from_stored(
        purpose,
        &stored.digest_hex,
        Timestamp::from_unix(stored.expires_at),
        stored.attempts_left,
    )
    .ok_or_else(|| ServiceError::new(Code::Internal, "a stored code is unreadable"))?;
    match pending.verify(
        purpose,
        entered.trim(),
        &state.market_accounts.hasher,
        now().1,
    ) {
        // Of two right answers at the same moment, the one that removes the codes wins.
        Ok(()) if state.store.delete_pending_codes(id, None).await? => Ok(()),
        Ok(()) => Err(gone()),
        Err(e @ CodeError::Mismatch { .. }) => Err(ServiceError::field(field, e.to_string())),
        Err(e @ CodeError::Expired) => {
            state
                .store
                .delete_pending_codes(id, Some(purpose.name()))
                .await?;
            Err(ServiceError::new(Code::InvalidState, e.to_string()))
        }
        Err(e) => Err(ServiceError::new(Code::InvalidState, e.to_string())),
    }
}

/// Activation with the code that was sent: individuals become active, organizations wait
/// for review.
pub async fn activate(
    state: &Control,
    source: &str,
    req: ActivateAccount,
) -> ServiceResult<MarketAccount> {
    activate_with(
        state,
        source,
        &req.username,
        Purpose::Registration,
        "code",
        &req.code,
    )
    .await
}

/// Activation with the link of the registration e-mail (`--public-url`): the same as the
/// code, with the link's token. The link is a GET, so it only activates (no session, no
/// other change), works once, and its 256-bit token is stored hashed.
pub async fn activate_link(
    state: &Control,
    source: &str,
    username: &str,
    token: &str,
) -> ServiceResult<MarketAccount> {
    activate_with(state, source, username, Purpose::Activation, "token", token).await
}

async fn activate_with(
    state: &Control,
    source: &str,
    username: &str,
    purpose: Purpose,
    field: &str,
    entered: &str,
) -> ServiceResult<MarketAccount> {
    let m = &state.market_accounts;
    m.admit(source)?;
    let (mut account, version) = by_username(state, username).await?;
    if *account.state() != AccountState::PendingActivation {
        return Err(ServiceError::new(
            Code::InvalidState,
            format!("the account is {} already", account.state().name()),
        ));
    }
    use_code(state, &account, purpose, field, entered).await?;
    let (_, t) = now();
    account.activate(t).map_err(lifecycle_error)?;
    save(state, &account, version).await?;
    Ok(view(&account))
}

/// A new code for an account still waiting for activation; the earlier one stops working.
pub async fn resend_code(
    state: &Control,
    source: &str,
    req: ResendCode,
) -> ServiceResult<CodeSent> {
    let m = &state.market_accounts;
    m.admit(source)?;
    let (account, _) = by_username(state, &req.username).await?;
    if *account.state() != AccountState::PendingActivation {
        return Err(ServiceError::new(
            Code::InvalidState,
            format!("the account is {} already", account.state().name()),
        ));
    }
    // Per account too, whatever the address: nobody can turn the platform into a mailer
    // aimed at one registrant.
    let (_, t) = now();
    if let Some(p) = state
        .store
        .pending_code(account.id().0, Purpose::Registration.name())
        .await?
        && t.unix() < p.issued_at + RESEND_AFTER_S
    {
        return Err(ServiceError::new(
            Code::TooManyRequests,
            format!("a code was sent less than {RESEND_AFTER_S} s ago; wait for it"),
        ));
    }
    let contact = account
        .profile()
        .map(|p| p.contact.clone())
        .unwrap_or_default();
    let targets = code_targets(&m.notifier, &contact)?;
    send_code(state, &account, targets).await
}

/// Why a disabled platform user that belongs to a market account may not log in yet, in
/// words that say what to do; `None` when the user has no market account or was disabled
/// by an operator for another reason. Called only after the password matched.
pub async fn login_refusal(state: &Control, username: &str) -> ServiceResult<Option<ServiceError>> {
    let Some(id) = state
        .store
        .find_market_account("username", &username.to_lowercase())
        .await?
    else {
        return Ok(None);
    };
    let Some((account, _)) = state.store.get_market_account(id).await? else {
        return Ok(None);
    };
    let message = match account.state() {
        AccountState::PendingActivation => {
            "the account is not activated yet: enter the verification code that was sent to you (cpn account activate USERNAME --code CODE)".to_string()
        }
        AccountState::PendingReview => {
            "the account is activated and waits for an operator to review its business licence; you can log in once it is approved".to_string()
        }
        AccountState::Rejected { reason } => format!(
            "the registration was rejected by an operator: {reason}"
        ),
        AccountState::Disabled { reason } => format!("the account is disabled: {reason}"),
        AccountState::Deregistered => "the account is deregistered".to_string(),
        AccountState::Active => return Ok(None),
    };
    Ok(Some(ServiceError::forbidden(message)))
}

/// The caller's own marketplace account.
pub async fn mine(state: &Control, who: &Caller) -> ServiceResult<MarketAccount> {
    let (account, _) = by_username(state, &who.username).await?;
    Ok(view(&account))
}

/// One account: operators, or its owner. Others get the same 404 as for a missing one.
pub async fn get(state: &Control, who: &Caller, id: u64) -> ServiceResult<MarketAccount> {
    let (account, _) = by_id(state, id).await?;
    if !who.is_operator() && !account.username().eq_ignore_ascii_case(&who.username) {
        return Err(ServiceError::not_found(
            "marketplace account",
            &id.to_string(),
        ));
    }
    Ok(view(&account))
}

fn operator_only(who: &Caller, what: &str) -> ServiceResult<()> {
    if who.is_operator() {
        Ok(())
    } else {
        Err(ServiceError::forbidden(format!(
            "only operators may {what}"
        )))
    }
}

/// An account's business licence (operators): its content type and bytes.
pub async fn licence(
    state: &Control,
    who: &Caller,
    id: u64,
) -> ServiceResult<(&'static str, Vec<u8>)> {
    operator_only(who, "read business licences")?;
    let (account, _) = by_id(state, id).await?;
    let document = account
        .profile()
        .and_then(|p| p.licence_document.clone())
        .ok_or_else(|| ServiceError::not_found("licence of account", &id.to_string()))?;
    // The reference was made by `decode_licence` (hex digest and extension), never by a
    // client, so it names a file inside the folder.
    let data = tokio::fs::read(state.market_accounts.licence_dir.join(&document))
        .await
        .map_err(|e| ServiceError::new(Code::Internal, format!("read the licence: {e}")))?;
    Ok((licence_content_type(&document), data))
}

/// The review queue (operators): accounts waiting for their licence to be checked.
pub async fn review_queue(state: &Control, who: &Caller) -> ServiceResult<Vec<MarketAccount>> {
    operator_only(who, "review registrations")?;
    let mut out = Vec::new();
    for id in state
        .store
        .market_accounts_in_state(AccountState::PendingReview.name())
        .await?
    {
        if let Some((account, _)) = state.store.get_market_account(id).await? {
            out.push(view(&account));
        }
    }
    Ok(out)
}

/// Approves a registration (operators); the account's user can log in from now on.
pub async fn approve(state: &Control, who: &Caller, id: u64) -> ServiceResult<MarketAccount> {
    operator_only(who, "approve registrations")?;
    let (mut account, version) = by_id(state, id).await?;
    account
        .approve(&who.username, now().1)
        .map_err(lifecycle_error)?;
    save(state, &account, version).await?;
    tell_owner(
        &state.market_accounts,
        &account,
        "Your cpn registration is approved",
        format!(
            "An operator approved the registration of {}. You can log in now.",
            account.username()
        ),
    )
    .await;
    Ok(view(&account))
}

/// Rejects a registration with a reason the owner sees (operators).
pub async fn reject(
    state: &Control,
    who: &Caller,
    id: u64,
    req: RejectAccount,
) -> ServiceResult<MarketAccount> {
    operator_only(who, "reject registrations")?;
    let (mut account, version) = by_id(state, id).await?;
    account
        .reject(&who.username, &req.reason, now().1)
        .map_err(lifecycle_error)?;
    save(state, &account, version).await?;
    tell_owner(
        &state.market_accounts,
        &account,
        "Your cpn registration was not approved",
        format!(
            "An operator did not approve the registration of {}: {}",
            account.username(),
            req.reason.trim()
        ),
    )
    .await;
    Ok(view(&account))
}

/// A changed free-text field: trimmed, non-empty, bounded (the limits of `cpn_market`'s
/// registration).
fn edited(value: &str, field: &str, max: usize) -> ServiceResult<String> {
    let v = value.trim();
    if v.is_empty() {
        return Err(ServiceError::field(field, "required: fill it in"));
    }
    if v.chars().count() > max {
        return Err(ServiceError::field(
            field,
            format!("too long: at most {max} characters"),
        ));
    }
    Ok(v.to_string())
}

/// The profile with the owner's changes applied (a new licence is stored first).
async fn changed_profile(
    state: &Control,
    account: &Account,
    req: &UpdateProfile,
) -> ServiceResult<cpn_market::account::AccountProfile> {
    let mut profile = account
        .profile()
        .cloned()
        .ok_or_else(|| ServiceError::new(Code::InvalidState, "the account is deregistered"))?;
    if let Some(r) = &req.region {
        profile.region = Some(edited(r, "region", 100)?);
    }
    if let Some(a) = &req.affiliation {
        profile.affiliation = Some(edited(a, "affiliation", 100)?);
    }
    if let Some(a) = &req.residential_address {
        if profile.address.is_none() {
            return Err(ServiceError::field(
                "residential_address",
                "only individual suppliers have one",
            ));
        }
        profile.address = Some(edited(a, "residential_address", 200)?);
    }
    if let Some(n) = &req.organization_name {
        if profile.organization_name.is_none() {
            return Err(ServiceError::field(
                "organization_name",
                "this account has no organization",
            ));
        }
        profile.organization_name = Some(edited(n, "organization_name", 100)?);
    }
    if let Some(l) = decode_licence(req.licence.as_ref())? {
        if profile.licence_document.is_none() {
            return Err(ServiceError::field(
                "licence",
                "this kind of account has no business licence",
            ));
        }
        store_licence(&state.market_accounts.licence_dir, &l)
            .await
            .map_err(|e| ServiceError::new(Code::Internal, format!("store the licence: {e}")))?;
        profile.licence_document = Some(l.document);
    }
    Ok(profile)
}

/// The owner edits the profile; reviewed fields send an organization back to review.
pub async fn update_profile(
    state: &Control,
    who: &Caller,
    req: UpdateProfile,
) -> ServiceResult<MarketAccount> {
    let (mut account, version) = by_username(state, &who.username).await?;
    let profile = changed_profile(state, &account, &req).await?;
    account
        .edit_profile(profile, now().1)
        .map_err(lifecycle_error)?;
    save(state, &account, version).await?;
    Ok(view(&account))
}

/// A rejected registration, fixed and sent back to review by its owner, who proves
/// ownership with the password (throttled and hashed like a login: the account cannot log
/// in while rejected).
pub async fn resubmit(
    state: &Control,
    source: &str,
    req: ResubmitRegistration,
) -> ServiceResult<MarketAccount> {
    let m = &state.market_accounts;
    m.admit(source)?;
    let throttle = state.accounts.throttle.clone();
    if throttle.locked(&req.username, source).is_some() {
        return Err(ServiceError::new(
            Code::TooManyRequests,
            "too many wrong passwords for this account or address; retry later",
        ));
    }
    let denied = || ServiceError::unauthenticated("wrong username or password");
    let user = state.store.find_user(&req.username).await?;
    let hash = user.as_ref().map_or_else(
        || crate::auth::decoy_hash().to_string(),
        |u| u.password_hash.clone(),
    );
    let password = req.password.clone();
    let ok = state
        .accounts
        .hashing
        .run_api(move || crate::auth::verify_password(&password, &hash))
        .await?;
    let Some(user) = user.filter(|_| ok) else {
        throttle.failure(&req.username, source);
        return Err(denied());
    };
    let (mut account, version) = by_username(state, &user.username).await?;
    if !matches!(account.state(), AccountState::Rejected { .. }) {
        return Err(ServiceError::new(
            Code::InvalidState,
            format!(
                "the account is {}; only a rejected registration is resubmitted",
                account.state().name()
            ),
        ));
    }
    let profile = changed_profile(state, &account, &req.changes).await?;
    account
        .edit_profile(profile, now().1)
        .map_err(lifecycle_error)?;
    save(state, &account, version).await?;
    Ok(view(&account))
}

/// What the account still owes or holds, from the market's stored leases and ledger.
async fn obligations(state: &Control, account: &Account) -> ServiceResult<Obligations> {
    let market = state.store.load_market().await?;
    let id = account.id();
    let running_leases = market
        .leases
        .iter()
        .filter(|l| {
            (l.user == id || l.supplier == id) && !matches!(l.state, LeaseState::Ended { .. })
        })
        .count();
    let tenant = TenantId(account.username().to_string());
    let mine = |a: &LedgerAccount| match a {
        LedgerAccount::UserFunds(t) | LedgerAccount::UserCredit(t) => *t == tenant,
        LedgerAccount::SupplierReceivable(s) => *s == id,
        _ => false,
    };
    let minor: i64 = market
        .transactions
        .iter()
        .flat_map(|t| &t.postings)
        .filter(|p| mine(&p.account))
        .map(|p| p.amount.minor())
        .sum();
    Ok(Obligations {
        running_leases,
        balance: Money::from_minor(minor),
    })
}

/// Deregistration by the owner, under `cpn_market`'s rule: personal data erased, the
/// username, history and accounting records kept; refused while leases run or a debt is
/// open. The platform user stays, disabled, so the name stays reserved.
pub async fn deregister(
    state: &Control,
    who: &Caller,
    req: DeregisterAccount,
) -> ServiceResult<Deregistered> {
    let (mut account, version) = by_username(state, &who.username).await?;
    if !req
        .confirm_username
        .trim()
        .eq_ignore_ascii_case(account.username())
    {
        return Err(ServiceError::field(
            "confirm_username",
            "type the account's username to confirm the deregistration",
        ));
    }
    let owed = obligations(state, &account).await?;
    let done = account.deregister(owed, now().1).map_err(lifecycle_error)?;
    save(state, &account, version).await?;
    Ok(Deregistered {
        account: view(&account),
        erased: done.erased.iter().map(|s| s.to_string()).collect(),
        kept: done.kept.iter().map(|s| s.to_string()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_licence_must_be_what_it_says() {
        assert_eq!(
            licence_extension("application/pdf", b"%PDF-1.7 x"),
            Some("pdf")
        );
        assert_eq!(
            licence_extension("image/png", b"\x89PNG\r\n\x1a\n..."),
            Some("png")
        );
        assert_eq!(
            licence_extension("image/jpeg", &[0xFF, 0xD8, 0xFF, 0xE0]),
            Some("jpg")
        );
        assert_eq!(licence_extension("image/png", b"%PDF-1.7 x"), None);
        assert_eq!(licence_extension("text/html", b"<html>"), None);
        assert_eq!(licence_content_type("ab12.pdf"), "application/pdf");
        assert_eq!(licence_content_type("ab12.png"), "image/png");
    }

    #[test]
    fn an_over_long_licence_is_refused_before_decoding() {
        let upload = LicenceUpload {
            content_type: "application/pdf".into(),
            data_base64: "A".repeat(MAX_LICENCE_BYTES / 3 * 4 + 8),
        };
        let e = decode_licence(Some(&upload)).err().expect("refused");
        assert_eq!(e.field.as_deref(), Some("licence.data_base64"));
        let ok = LicenceUpload {
            content_type: "application/pdf".into(),
            data_base64: base64::engine::general_purpose::STANDARD.encode(b"%PDF-1.4 ok"),
        };
        let l = decode_licence(Some(&ok)).unwrap().unwrap();
        assert!(l.document.ends_with(".pdf") && l.document.len() == 64 + 4);
    }

    #[tokio::test]
    async fn unauthenticated_calls_are_limited_per_address() {
        let dir = tempfile::tempdir().unwrap();
        let store: std::sync::Arc<dyn cpn_store::Store> =
            std::sync::Arc::new(cpn_store::SqliteStore::open(dir.path()).unwrap());
        let notifier = Notifier::new(&Default::default(), store).unwrap();
        let m = MarketAccounts::open(dir.path(), notifier).unwrap();
        for _ in 0..PER_ADDRESS {
            m.admit("10.0.0.1").unwrap();
        }
        let e = m.admit("10.0.0.1").unwrap_err();
        assert_eq!(e.code, Code::TooManyRequests);
        m.admit("10.0.0.2")
            .expect("another address has its own budget");
        // The key is generated once and read back the same.
        let key = std::fs::read_to_string(dir.path().join(KEY_FILE)).unwrap();
        let again = MarketAccounts::open(dir.path(), m.notifier.clone()).unwrap();
        assert_eq!(
            key,
            std::fs::read_to_string(dir.path().join(KEY_FILE)).unwrap()
        );
        let h = |m: &MarketAccounts| {
            m.hasher
                .hash(cpn_market::IdentifierKind::NationalId, "11010519491231002X")
                .digest_hex()
        };
        assert_eq!(h(&m), h(&again));
    }
}
