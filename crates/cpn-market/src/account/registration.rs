//! What a registration contains (SH-USR-02/03/07/13, SH-SUP-02/03/04) and how it is checked
//! (SH-USR-06/08): every error at once, each naming its field and how to fix it. Sealing a
//! valid registration turns its sensitive identifiers into keyed hashes and yields the
//! [`AccountProfile`] that is kept; the clear numbers go no further.

use super::identity::{
    is_plausible_email, is_valid_credit_code, is_valid_mobile, is_valid_national_id,
};
use crate::keyed::{HashedIdentifier, IdentifierKind, KeyedHasher};
use crate::money::Money;
use crate::validation::{Collector, Invalid};

/// SH-USR-02.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UserKind {
    Individual,
    University,
    ResearchInstitution,
    Enterprise,
}

/// SH-SUP-02.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SupplierKind {
    Enterprise,
    Individual,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountKind {
    User(UserKind),
    Supplier(SupplierKind),
}

impl AccountKind {
    /// The one rule of who waits for an operator's review after activation: organizations
    /// submit a business licence that a person must check (SH-USR-07, SH-SUP-03);
    /// individuals do not.
    pub fn requires_review(self) -> bool {
        matches!(
            self,
            AccountKind::User(
                UserKind::University | UserKind::ResearchInstitution | UserKind::Enterprise
            ) | AccountKind::Supplier(SupplierKind::Enterprise)
        )
    }

    pub fn is_supplier(self) -> bool {
        matches!(self, AccountKind::Supplier(_))
    }
}

/// How the platform reaches the account: at least one of the two, each verified by a code.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Contact {
    pub email: Option<String>,
    pub phone: Option<String>,
}

/// The organization behind a university, institution or enterprise user (SH-USR-07).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    pub name: String,
    /// 统一社会信用代码; hashed when sealed.
    pub credit_code: String,
    /// The uploaded business licence with the legal person's seal: the store's reference to
    /// the file (a content digest), never the file itself.
    pub licence_document: String,
}

/// SH-USR-03 (+ SH-USR-07 for organizations, SH-USR-13 for the region).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRegistration {
    pub username: String,
    pub contact: Contact,
    pub real_name: String,
    pub national_id: String,
    pub kind: UserKind,
    /// Required for every kind but `Individual`.
    pub organization: Option<Organization>,
    /// The cluster region the user prefers (Ius's reserved region field), e.g. `深圳市`.
    pub region: Option<String>,
    /// The version of the registration agreement and privacy policy the user accepted
    /// (SH-USR-05); empty means not accepted.
    pub accepted_terms: String,
}

/// SH-SUP-03.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnterpriseSupplier {
    pub username: String,
    pub company_name: String,
    pub legal_representative_name: String,
    pub legal_representative_id: String,
    pub registered_capital: Money,
    pub credit_code: String,
    pub contact: Contact,
    pub licence_document: String,
    /// 对公账户, where settlements are paid; hashed when sealed.
    pub corporate_account: String,
    pub accepted_terms: String,
}

/// SH-SUP-04.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndividualSupplier {
    pub username: String,
    pub real_name: String,
    pub national_id: String,
    pub residential_address: String,
    pub contact: Contact,
    pub affiliation: Option<String>,
    /// The real-name-verified account settlements are paid to; hashed when sealed.
    pub payout_account: String,
    pub accepted_terms: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    User(UserRegistration),
    EnterpriseSupplier(EnterpriseSupplier),
    IndividualSupplier(IndividualSupplier),
}

const NAME_MAX: usize = 100;
const ADDRESS_MAX: usize = 200;
const DOCUMENT_MAX: usize = 200;

impl Registration {
    pub fn kind(&self) -> AccountKind {
        match self {
            Registration::User(u) => AccountKind::User(u.kind),
            Registration::EnterpriseSupplier(_) => AccountKind::Supplier(SupplierKind::Enterprise),
            Registration::IndividualSupplier(_) => AccountKind::Supplier(SupplierKind::Individual),
        }
    }

    /// Every field error of the submission.
    pub fn validate(&self) -> Result<(), Invalid> {
        let mut c = Collector::default();
        match self {
            Registration::User(u) => {
                username(&mut c, &u.username);
                contact(&mut c, &u.contact);
                c.text(&u.real_name, "real_name", NAME_MAX);
                national_id(&mut c, &u.national_id, "national_id");
                terms(&mut c, &u.accepted_terms);
                if let Some(region) = &u.region {
                    c.text(region, "region", NAME_MAX);
                }
                match (&u.organization, u.kind) {
                    (Some(_), UserKind::Individual) => c.reject(
                        "organization",
                        "an individual user has no organization: leave it out or choose another user type",
                    ),
                    (None, UserKind::Individual) => {}
                    (None, _) => c.reject(
                        "organization",
                        "required for university, research-institution and enterprise users: give the organization's name, unified social credit code and sealed business licence",
                    ),
                    (Some(o), _) => {
                        c.text(&o.name, "organization.name", NAME_MAX);
                        credit_code(&mut c, &o.credit_code, "organization.credit_code");
                        c.text(&o.licence_document, "organization.licence_document", DOCUMENT_MAX);
                    }
                }
            }
            Registration::EnterpriseSupplier(s) => {
                username(&mut c, &s.username);
                c.text(&s.company_name, "company_name", NAME_MAX);
                c.text(
                    &s.legal_representative_name,
                    "legal_representative_name",
                    NAME_MAX,
                );
                national_id(
                    &mut c,
                    &s.legal_representative_id,
                    "legal_representative_id",
                );
                c.check(
                    s.registered_capital > Money::ZERO,
                    "registered_capital",
                    "must be positive: give the registered capital in the licence's currency",
                );
                credit_code(&mut c, &s.credit_code, "credit_code");
                contact(&mut c, &s.contact);
                c.text(&s.licence_document, "licence_document", DOCUMENT_MAX);
                account_number(&mut c, &s.corporate_account, "corporate_account");
                terms(&mut c, &s.accepted_terms);
            }
            Registration::IndividualSupplier(s) => {
                username(&mut c, &s.username);
                c.text(&s.real_name, "real_name", NAME_MAX);
                national_id(&mut c, &s.national_id, "national_id");
                c.text(&s.residential_address, "residential_address", ADDRESS_MAX);
                contact(&mut c, &s.contact);
                if let Some(a) = &s.affiliation {
                    c.text(a, "affiliation", NAME_MAX);
                }
                account_number(&mut c, &s.payout_account, "payout_account");
                terms(&mut c, &s.accepted_terms);
            }
        }
        c.finish()
    }

    /// Validates, then keeps what the platform stores: sensitive numbers become keyed hashes
    /// with masked display forms, everything else is trimmed.
    pub fn seal(self, hasher: &KeyedHasher) -> Result<AccountProfile, Invalid> {
        self.validate()?;
        let kind = self.kind();
        let trim = |s: &str| s.trim().to_string();
        let id = |k, v: &str| hasher.hash(k, v);
        let profile = match self {
            Registration::User(u) => AccountProfile {
                username: u.username.trim().to_string(),
                kind,
                display_name: trim(&u.real_name),
                contact: normalize_contact(&u.contact),
                identifiers: {
                    let mut ids = vec![(
                        "national_id",
                        id(IdentifierKind::NationalId, &u.national_id),
                    )];
                    if let Some(o) = &u.organization {
                        ids.push((
                            "organization.credit_code",
                            id(IdentifierKind::CreditCode, &o.credit_code),
                        ));
                    }
                    ids
                },
                organization_name: u.organization.as_ref().map(|o| trim(&o.name)),
                licence_document: u.organization.as_ref().map(|o| trim(&o.licence_document)),
                address: None,
                affiliation: None,
                registered_capital: None,
                region: u.region.as_deref().map(trim),
                accepted_terms: trim(&u.accepted_terms),
            },
            Registration::EnterpriseSupplier(s) => AccountProfile {
                username: s.username.trim().to_string(),
                kind,
                display_name: trim(&s.legal_representative_name),
                contact: normalize_contact(&s.contact),
                identifiers: vec![
                    (
                        "legal_representative_id",
                        id(IdentifierKind::NationalId, &s.legal_representative_id),
                    ),
                    (
                        "credit_code",
                        id(IdentifierKind::CreditCode, &s.credit_code),
                    ),
                    (
                        "corporate_account",
                        id(IdentifierKind::BankAccount, &s.corporate_account),
                    ),
                ],
                organization_name: Some(trim(&s.company_name)),
                licence_document: Some(trim(&s.licence_document)),
                address: None,
                affiliation: None,
                registered_capital: Some(s.registered_capital),
                region: None,
                accepted_terms: trim(&s.accepted_terms),
            },
            Registration::IndividualSupplier(s) => AccountProfile {
                username: s.username.trim().to_string(),
                kind,
                display_name: trim(&s.real_name),
                contact: normalize_contact(&s.contact),
                identifiers: vec![
                    (
                        "national_id",
                        id(IdentifierKind::NationalId, &s.national_id),
                    ),
                    (
                        "payout_account",
                        id(IdentifierKind::BankAccount, &s.payout_account),
                    ),
                ],
                organization_name: None,
                licence_document: None,
                address: Some(trim(&s.residential_address)),
                affiliation: s.affiliation.as_deref().map(trim),
                registered_capital: None,
                region: None,
                accepted_terms: trim(&s.accepted_terms),
            },
        };
        Ok(profile)
    }
}

/// What is kept of a registration: no identifier in clear. Personal fields here are what
/// deregistration erases (see `lifecycle::Deregistration`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountProfile {
    pub username: String,
    pub kind: AccountKind,
    /// The real name of a person, or of the legal representative for an enterprise supplier.
    pub display_name: String,
    /// Normalized: e-mail in lower case, phone without `+86`.
    pub contact: Contact,
    /// Each sensitive identifier by the field it came from.
    pub identifiers: Vec<(&'static str, HashedIdentifier)>,
    pub organization_name: Option<String>,
    pub licence_document: Option<String>,
    pub address: Option<String>,
    pub affiliation: Option<String>,
    pub registered_capital: Option<Money>,
    pub region: Option<String>,
    pub accepted_terms: String,
}

impl AccountProfile {
    /// The values the store must keep unique across accounts (SH-USR-08: username, e-mail
    /// and phone not already taken), already normalized so that `Alice@X.cn` and
    /// `alice@x.cn` collide. The username is compared case-insensitively.
    pub fn uniqueness_keys(&self) -> Vec<(&'static str, String)> {
        let mut keys = vec![("username", self.username.to_lowercase())];
        if let Some(e) = &self.contact.email {
            keys.push(("contact.email", e.clone()));
        }
        if let Some(p) = &self.contact.phone {
            keys.push(("contact.phone", p.clone()));
        }
        keys
    }

    /// The identifier hashed from `field`, if the registration had one.
    pub fn identifier(&self, field: &str) -> Option<&HashedIdentifier> {
        self.identifiers
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, h)| h)
    }

    /// The fields an operator's review approved: changing any of them sends an account that
    /// needs review back to review.
    pub(crate) fn reviewed_fields(&self) -> (Option<&String>, Option<&String>, Vec<String>) {
        (
            self.organization_name.as_ref(),
            self.licence_document.as_ref(),
            self.identifiers
                .iter()
                .map(|(_, h)| h.digest_hex())
                .collect(),
        )
    }
}

fn normalize_contact(c: &Contact) -> Contact {
    Contact {
        email: c.email.as_deref().map(|e| e.trim().to_lowercase()),
        phone: c
            .phone
            .as_deref()
            .map(|p| p.trim().strip_prefix("+86").unwrap_or(p.trim()).to_string()),
    }
}

fn username(c: &mut Collector, name: &str) {
    if let Err(e) = cpn_model::validate_name(name) {
        c.reject("username", format!("{e}"));
    } else if name.chars().count() < 3 {
        c.reject("username", "too short: use at least 3 characters");
    }
}

fn contact(c: &mut Collector, contact: &Contact) {
    if contact.email.is_none() && contact.phone.is_none() {
        c.reject(
            "contact",
            "give an e-mail address or a mobile number: the verification code is sent there",
        );
    }
    if let Some(e) = &contact.email {
        c.check(
            is_plausible_email(e.trim()),
            "contact.email",
            "not an e-mail address: write it as name@example.cn",
        );
    }
    if let Some(p) = &contact.phone {
        c.check(
            is_valid_mobile(p.trim()),
            "contact.phone",
            "not a mainland mobile number: 11 digits starting with 13-19, optionally after +86",
        );
    }
}

fn national_id(c: &mut Collector, id: &str, path: &str) {
    let compact: String = id.chars().filter(|ch| !ch.is_whitespace()).collect();
    c.check(
        is_valid_national_id(&compact),
        path,
        "not a valid 18-character resident ID number: check the digits and the last character (0-9 or X)",
    );
}

fn credit_code(c: &mut Collector, code: &str, path: &str) {
    let compact: String = code.chars().filter(|ch| !ch.is_whitespace()).collect();
    c.check(
        is_valid_credit_code(&compact),
        path,
        "not a valid 18-character unified social credit code: copy it from the business licence",
    );
}

fn account_number(c: &mut Collector, number: &str, path: &str) {
    let digits = number
        .chars()
        .filter(|ch| !ch.is_whitespace() && *ch != '-');
    let (count, all_digits) =
        digits.fold((0, true), |(n, ok), ch| (n + 1, ok && ch.is_ascii_digit()));
    c.check(
        (8..=32).contains(&count) && all_digits,
        path,
        "not a bank account number: 8 to 32 digits, spaces and dashes allowed",
    );
}

fn terms(c: &mut Collector, accepted: &str) {
    c.check(
        !accepted.trim().is_empty(),
        "accepted_terms",
        "accept the registration agreement and the privacy policy to register",
    );
}
