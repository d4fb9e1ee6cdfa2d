//! Registration, sealing of identifiers, the lifecycle with review, deregistration, and
//! verification codes, through the public API.

use crate::fixtures::{hasher, t0};
use cpn_market::account::lifecycle::{LifecycleError, Obligations};
use cpn_market::account::{
    Account, AccountId, AccountState, Contact, EnterpriseSupplier, IndividualSupplier,
    Organization, Registration, UserKind, UserRegistration,
};
use cpn_market::verification::{self, CodeError, Entropy, Purpose};
use cpn_market::{AccountKind, Money, SupplierKind};

fn individual() -> UserRegistration {
    UserRegistration {
        username: "li.lei".into(),
        contact: Contact {
            email: Some("Li.Lei@Example.cn".into()),
            phone: Some("+8613800138000".into()),
        },
        real_name: "李雷".into(),
        national_id: "11010519491231002X".into(),
        kind: UserKind::Individual,
        organization: None,
        region: Some("深圳市".into()),
        accepted_terms: "2026-01".into(),
    }
}

fn enterprise_supplier() -> EnterpriseSupplier {
    EnterpriseSupplier {
        username: "pengcheng-compute".into(),
        company_name: "鹏城算力有限公司".into(),
        legal_representative_name: "韩梅梅".into(),
        legal_representative_id: "11010519491231002X".into(),
        registered_capital: Money::from_major(10_000_000),
        credit_code: "91350100M000100Y43".into(),
        contact: Contact {
            email: Some("ops@pcl.example.cn".into()),
            phone: None,
        },
        licence_document: "sha256:0f3a".into(),
        corporate_account: "6222 0202 0000 1234 567".into(),
        accepted_terms: "2026-01".into(),
    }
}

#[test]
fn every_field_error_is_reported_with_its_path_and_a_fix() {
    let mut r = individual();
    r.username = "x".into();
    r.national_id = "110105194912310021".into();
    r.contact = Contact::default();
    r.accepted_terms = " ".into();
    r.kind = UserKind::University;
    let err = Registration::User(r).validate().unwrap_err();
    for path in [
        "username",
        "national_id",
        "contact",
        "accepted_terms",
        "organization",
    ] {
        assert!(err.names(path), "{path} missing from {err}");
    }
    assert_eq!(err.0.len(), 5, "{err}");
    assert!(err.0.iter().all(|e| !e.fix.is_empty()));
}

#[test]
fn supplier_kinds_have_their_own_fields() {
    let mut s = enterprise_supplier();
    s.credit_code = "91350100M000100Y44".into();
    s.registered_capital = Money::ZERO;
    let err = Registration::EnterpriseSupplier(s).validate().unwrap_err();
    assert!(
        err.names("credit_code") && err.names("registered_capital"),
        "{err}"
    );

    let ind = IndividualSupplier {
        username: "wang-gpu".into(),
        real_name: "王芳".into(),
        national_id: "11010519491231002X".into(),
        residential_address: " ".into(),
        contact: Contact {
            email: None,
            phone: Some("139001390001".into()),
        },
        affiliation: None,
        payout_account: "12ab".into(),
        accepted_terms: "2026-01".into(),
    };
    let err = Registration::IndividualSupplier(ind)
        .validate()
        .unwrap_err();
    for path in ["residential_address", "contact.phone", "payout_account"] {
        assert!(err.names(path), "{path} missing from {err}");
    }
}

#[test]
fn sealing_keeps_no_identifier_in_clear() {
    let profile = Registration::EnterpriseSupplier(enterprise_supplier())
        .seal(&hasher())
        .unwrap();
    let dump = format!("{profile:?}");
    for clear in [
        "11010519491231002X",
        "91350100M000100Y43",
        "6222020200001234567",
        "6222 0202",
    ] {
        assert!(!dump.contains(clear), "{clear} in {dump}");
    }
    let id = profile.identifier("legal_representative_id").unwrap();
    assert_eq!(id.masked(), "110***********002X");
    assert!(hasher().matches(id, "11010519491231002x"));
    assert_eq!(
        profile.identifier("corporate_account").unwrap().masked(),
        "622************4567"
    );
}

#[test]
fn uniqueness_keys_are_normalized() {
    let profile = Registration::User(individual()).seal(&hasher()).unwrap();
    assert_eq!(
        profile.uniqueness_keys(),
        vec![
            ("username", "li.lei".to_string()),
            ("contact.email", "li.lei@example.cn".to_string()),
            ("contact.phone", "13800138000".to_string()),
        ]
    );
}

#[test]
fn individuals_are_active_after_activation_organizations_wait_for_review() {
    let mut person = Account::register(
        AccountId(1),
        Registration::User(individual()).seal(&hasher()).unwrap(),
        t0(),
    );
    assert!(
        !person.can_log_in(),
        "an unactivated account cannot log in (SH-USR-09)"
    );
    person.activate(t0()).unwrap();
    assert_eq!(person.state(), &AccountState::Active);

    let mut company = Account::register(
        AccountId(2),
        Registration::EnterpriseSupplier(enterprise_supplier())
            .seal(&hasher())
            .unwrap(),
        t0(),
    );
    assert_eq!(
        company.kind(),
        AccountKind::Supplier(SupplierKind::Enterprise)
    );
    company.activate(t0()).unwrap();
    assert_eq!(company.state(), &AccountState::PendingReview);
    assert!(company.can_log_in() && !company.can_transact());
    assert_eq!(
        company.reject("op", "  ", t0()),
        Err(LifecycleError::ReasonRequired)
    );
    company
        .reject("op", "the licence scan is unreadable", t0())
        .unwrap();
    assert!(matches!(
        company.approve("op", t0()),
        Err(LifecycleError::WrongState { .. })
    ));

    // Resubmitting with a new licence goes back to review, then approval.
    let mut fixed = enterprise_supplier();
    fixed.licence_document = "sha256:77aa".into();
    company
        .edit_profile(
            Registration::EnterpriseSupplier(fixed)
                .seal(&hasher())
                .unwrap(),
            t0(),
        )
        .unwrap();
    assert_eq!(company.state(), &AccountState::PendingReview);
    company.approve("op", t0()).unwrap();
    assert!(company.can_transact());
    let audited: Vec<_> = company
        .history()
        .iter()
        .map(|t| (&t.actor, &t.to))
        .collect();
    assert_eq!(audited.len(), 5, "{audited:?}");

    // An edit that changes a reviewed field sends an active organization back to review.
    let mut changed = enterprise_supplier();
    changed.company_name = "鹏城算力股份有限公司".into();
    company
        .edit_profile(
            Registration::EnterpriseSupplier(changed)
                .seal(&hasher())
                .unwrap(),
            t0(),
        )
        .unwrap();
    assert_eq!(company.state(), &AccountState::PendingReview);
}

#[test]
fn a_provisioned_account_is_active_at_once_and_can_still_be_disabled() {
    let mut profile = Registration::User(individual()).seal(&hasher()).unwrap();
    profile.identifiers.clear();
    let mut a = Account::provision(AccountId(7), profile, t0());
    assert!(a.can_transact(), "nothing to activate or review");
    assert_eq!(a.history().len(), 1, "its creation is in the audit history");
    a.disable("op", "unpaid invoices", t0()).unwrap();
    assert!(!a.can_transact(), "a disabled account cannot order");
}

#[test]
fn deregistration_erases_the_profile_and_keeps_the_records() {
    let mut a = Account::register(
        AccountId(9),
        Registration::User(individual()).seal(&hasher()).unwrap(),
        t0(),
    );
    a.activate(t0()).unwrap();
    let busy = Obligations {
        running_leases: 1,
        balance: Money::ZERO,
    };
    assert!(matches!(
        a.deregister(busy, t0()),
        Err(LifecycleError::Obligations { .. })
    ));
    let debt = Obligations {
        running_leases: 0,
        balance: Money::from_minor(-1),
    };
    assert!(a.deregister(debt, t0()).is_err());
    let done = a
        .deregister(
            Obligations {
                running_leases: 0,
                balance: Money::ZERO,
            },
            t0(),
        )
        .unwrap();
    assert!(a.profile().is_none());
    assert_eq!(a.username(), "li.lei");
    assert!(done.erased.contains(&"identifiers") && done.kept.contains(&"ledger"));
    assert!(!a.can_log_in());
    assert!(
        a.deregister(
            Obligations {
                running_leases: 0,
                balance: Money::ZERO
            },
            t0()
        )
        .is_err()
    );
}

#[test]
fn a_code_for_registration_is_checked_once() {
    let (code, mut pending) =
        verification::issue(Purpose::Registration, Entropy([42; 32]), &hasher(), t0());
    assert_eq!(
        pending.verify(Purpose::Registration, "not it", &hasher(), t0()),
        Err(CodeError::Mismatch { attempts_left: 4 })
    );
    assert_eq!(
        pending.verify(
            Purpose::Registration,
            &code,
            &hasher(),
            t0().plus_seconds(599)
        ),
        Ok(())
    );
    assert_eq!(
        pending.verify(Purpose::Registration, &code, &hasher(), t0()),
        Err(CodeError::AlreadyUsed)
    );
}

#[test]
fn organizations_need_their_licence() {
    let mut r = individual();
    r.kind = UserKind::ResearchInstitution;
    r.organization = Some(Organization {
        name: "深圳湾实验室".into(),
        credit_code: "91350100M000100Y43".into(),
        licence_document: "".into(),
    });
    let err = Registration::User(r).validate().unwrap_err();
    assert_eq!(err.0.len(), 1);
    assert!(err.names("organization.licence_document"));
}
