//! Wire types of the marketplace's self-service accounts (issue #14, SH-USR / SH-SUP; the
//! Ius and Icpcss interfaces): registration, activation, the operator's review, profiles.
//!
//! One registration body for every kind: the fields a kind does not use are left out, and the
//! server checks the ones it needs with `cpn_market`, reporting every missing or invalid
//! field at once.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Who registers (SH-USR-02, SH-SUP-02).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationKind {
    IndividualUser,
    UniversityUser,
    ResearchInstitutionUser,
    EnterpriseUser,
    EnterpriseSupplier,
    IndividualSupplier,
}

impl RegistrationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RegistrationKind::IndividualUser => "individual_user",
            RegistrationKind::UniversityUser => "university_user",
            RegistrationKind::ResearchInstitutionUser => "research_institution_user",
            RegistrationKind::EnterpriseUser => "enterprise_user",
            RegistrationKind::EnterpriseSupplier => "enterprise_supplier",
            RegistrationKind::IndividualSupplier => "individual_supplier",
        }
    }
}

/// The organization behind a university, research-institution or enterprise user.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct OrganizationInput {
    #[serde(default)]
    pub name: String,
    /// 统一社会信用代码 (18 characters); stored only as a keyed hash.
    #[serde(default)]
    pub credit_code: String,
}

/// A business licence scan with the legal person's seal: PDF, PNG or JPEG, at most
/// 2 MiB before encoding.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LicenceUpload {
    /// `application/pdf`, `image/png` or `image/jpeg`; checked against the file's content.
    pub content_type: String,
    /// The file, base64 (standard alphabet, padded).
    pub data_base64: String,
}

/// A self-registration. Sensitive identifiers (ID numbers, credit codes, account numbers)
/// are kept only as keyed hashes with masked display forms.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegisterAccount {
    pub kind: RegistrationKind,
    /// Also the login name and the name of the account's own tenant.
    pub username: String,
    /// Checked by the server's password policy (zxcvbn score ≥ 3).
    pub password: String,
    /// Where the verification code goes (at least one of e-mail and phone).
    #[serde(default)]
    pub email: Option<String>,
    /// A mainland mobile number; the code goes there by SMS when the server has a gateway.
    #[serde(default)]
    pub phone: Option<String>,
    /// The version of the registration agreement and privacy policy accepted (see
    /// `RegistrationTerms`); empty: not accepted.
    #[serde(default)]
    pub accepted_terms: String,
    /// Users and individual suppliers: the person's real name.
    #[serde(default)]
    pub real_name: String,
    /// Users and individual suppliers: the resident ID number.
    #[serde(default)]
    pub national_id: String,
    /// University, research-institution and enterprise users.
    #[serde(default)]
    pub organization: Option<OrganizationInput>,
    /// Users: the preferred cluster region, e.g. `深圳市`.
    #[serde(default)]
    pub region: Option<String>,
    /// Enterprise suppliers.
    #[serde(default)]
    pub company_name: String,
    #[serde(default)]
    pub legal_representative_name: String,
    #[serde(default)]
    pub legal_representative_id: String,
    /// In minor units (fen).
    #[serde(default)]
    pub registered_capital_minor: i64,
    #[serde(default)]
    pub credit_code: String,
    /// 对公账户 where settlements are paid.
    #[serde(default)]
    pub corporate_account: String,
    /// Individual suppliers.
    #[serde(default)]
    pub residential_address: String,
    #[serde(default)]
    pub affiliation: Option<String>,
    #[serde(default)]
    pub payout_account: String,
    /// Organizations and enterprise suppliers: the business licence.
    #[serde(default)]
    pub licence: Option<LicenceUpload>,
}

/// The documents a registrant accepts, and the version to send as `accepted_terms`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegistrationTerms {
    pub version: String,
    pub agreement_url: String,
    pub privacy_policy_url: String,
}

/// One sensitive identifier, as the platform shows it: masked.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MaskedIdentifier {
    pub field: String,
    pub masked: String,
}

/// One step of the account's lifecycle.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccountTransition {
    pub at: DateTime<Utc>,
    /// `owner`, or `operator:NAME`.
    pub actor: String,
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A marketplace account as its owner and operators see it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MarketAccount {
    pub id: u64,
    pub username: String,
    pub kind: RegistrationKind,
    /// `pending_activation`, `pending_review`, `active`, `rejected`, `disabled`,
    /// `deregistered`.
    pub state: String,
    /// Why the account was rejected or disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    /// The platform user and tenant the account logs in as (the same name).
    pub tenant: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default)]
    pub identifiers: Vec<MaskedIdentifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_name: Option<String>,
    /// Whether a business licence is on file (operators fetch it from
    /// `/api/v1/market/accounts/{id}/licence`).
    pub has_licence: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub history: Vec<AccountTransition>,
}

/// The answer to a registration: the account, where the code went, and what comes next.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Registered {
    pub account: MarketAccount,
    /// The masked addresses the verification code is being sent to.
    pub code_sent_to: Vec<String>,
    pub code_expires_at: DateTime<Utc>,
    pub terms: RegistrationTerms,
    /// What to do next, for people.
    pub next: String,
}

/// Activation with the code that was sent.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ActivateAccount {
    pub username: String,
    pub code: String,
}

/// Ask for a new verification code (the old one stops working).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResendCode {
    pub username: String,
}

/// An operator's refusal of a registration: the owner sees the reason.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RejectAccount {
    pub reason: String,
}

/// Where a new verification code went.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CodeSent {
    /// Masked addresses.
    pub code_sent_to: Vec<String>,
    pub code_expires_at: DateTime<Utc>,
}

/// Profile fields the owner may change (SH-USR-01). Left out: unchanged. A new
/// organization name or licence sends an organization back to review; a rejected account
/// resubmits this way. Identifiers and contacts are changed by registering anew.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct UpdateProfile {
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub affiliation: Option<String>,
    #[serde(default)]
    pub residential_address: Option<String>,
    #[serde(default)]
    pub organization_name: Option<String>,
    #[serde(default)]
    pub licence: Option<LicenceUpload>,
}

/// Deregistration must name the account, so that it is not done by accident.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeregisterAccount {
    pub confirm_username: String,
}

/// What deregistration erased and what it kept (the rule of `cpn_market`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Deregistered {
    pub account: MarketAccount,
    pub erased: Vec<String>,
    pub kept: Vec<String>,
}

/// A rejected registrant fixes what the operator named and sends the registration back to
/// review. No token (a rejected account cannot log in): the password proves the owner.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResubmitRegistration {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub changes: UpdateProfile,
}
