//! The account lifecycle (SH-USR-09, SH-USR-07, SH-USR-01 deregistration) as one state
//! machine. Every transition is a method here, checked against the current state and
//! recorded in the account's history with who made it and why, so the operator's review is
//! audited by construction.
//!
//! ```text
//! provision ─► Active (a platform user an operator created: nothing to activate or review)
//! register ─► PendingActivation ─activate─► PendingReview ─approve─► Active ◄─enable─┐
//!                                  │ (individuals skip review) ──────►│   └─disable─► Disabled
//!                                  PendingReview ─reject─► Rejected ─resubmit─► PendingReview
//! any state but Deregistered ─deregister─► Deregistered (final)
//! ```

use super::registration::{AccountKind, AccountProfile};
use crate::money::Money;
use crate::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(pub u64);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountState {
    /// Registered; the activation link or code has not been used. Cannot log in (SH-USR-09).
    PendingActivation,
    /// Activated; an operator has yet to check the business licence (SH-USR-07).
    PendingReview,
    Active,
    /// The review refused the licence; the reason says what to fix before resubmitting.
    Rejected {
        reason: String,
    },
    /// An operator suspended the account.
    Disabled {
        reason: String,
    },
    /// Final: personal data erased, records kept (see [`Deregistration`]).
    Deregistered,
}

impl AccountState {
    /// The state's name, as the store and the API write it.
    pub fn name(&self) -> &'static str {
        match self {
            AccountState::PendingActivation => "pending_activation",
            AccountState::PendingReview => "pending_review",
            AccountState::Active => "active",
            AccountState::Rejected { .. } => "rejected",
            AccountState::Disabled { .. } => "disabled",
            AccountState::Deregistered => "deregistered",
        }
    }
}

/// Who made a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The account's owner (activation, edits, deregistration).
    Owner,
    /// An operator, by username (review, disable).
    Operator(String),
}

/// One entry of the audit history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub at: Timestamp,
    pub actor: Actor,
    pub to: AccountState,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    #[error("the account is {state}; {action} needs it to be {needs}")]
    WrongState {
        state: &'static str,
        action: &'static str,
        needs: &'static str,
    },
    #[error("give a reason: the account's owner sees it and must know what to fix")]
    ReasonRequired,
    #[error(
        "the account still has {running_leases} running lease(s) and a balance of {balance}; release the leases and settle the balance before deregistering"
    )]
    Obligations {
        running_leases: usize,
        balance: Money,
    },
    #[error(
        "a profile cannot change the account's kind or username; register a new account instead"
    )]
    KindOrUsernameChanged,
}

/// What an account still owes or holds, which the caller reads from leases and the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Obligations {
    pub running_leases: usize,
    /// Balance plus credits; negative is a debt.
    pub balance: Money,
}

/// The deregistration rule (SH-USR-01 注销, PIPL art. 47): what is erased and what is kept.
///
/// Erased: the whole profile — real name, contact, address, affiliation, organization name,
/// the licence document reference, the registered capital, the region, and the keyed hashes
/// with their masked forms (so the same ID number may register again).
///
/// Kept: the account id, its kind, the username (reserved, so that old invoices and audit
/// entries that name it cannot be confused with a new account), the lifecycle history with
/// the operators' review decisions, and every ledger transaction, invoice and settlement,
/// which name the account by id only and must be retained as accounting records.
///
/// Refused while leases run or a debt is open: the deregistration would erase the contact
/// the platform needs to settle them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deregistration {
    pub erased: Vec<&'static str>,
    pub kept: Vec<&'static str>,
}

/// An account of the marketplace. Fields are private: the state changes only through the
/// transition methods.
#[derive(Debug, Clone)]
pub struct Account {
    id: AccountId,
    kind: AccountKind,
    username: String,
    /// `None` once deregistered.
    profile: Option<AccountProfile>,
    state: AccountState,
    history: Vec<Transition>,
}

impl Account {
    /// A new account from a sealed registration, waiting for activation.
    pub fn register(id: AccountId, profile: AccountProfile, now: Timestamp) -> Account {
        let state = AccountState::PendingActivation;
        Account {
            id,
            kind: profile.kind,
            username: profile.username.clone(),
            profile: Some(profile),
            history: vec![Transition {
                at: now,
                actor: Actor::Owner,
                to: state.clone(),
            }],
            state,
        }
    }

    /// The account of a platform user that an operator created rather than a registrant:
    /// the operator vouched for the user by creating it, and there is no code to enter or
    /// licence to review, so it is active at once. The history still starts with the
    /// transition, so the account's audit shows how it came to be active.
    pub fn provision(id: AccountId, profile: AccountProfile, now: Timestamp) -> Account {
        let state = AccountState::Active;
        Account {
            id,
            kind: profile.kind,
            username: profile.username.clone(),
            profile: Some(profile),
            history: vec![Transition {
                at: now,
                actor: Actor::Owner,
                to: state.clone(),
            }],
            state,
        }
    }

    /// An account read back from the store, as `id`, `kind`, `username`, `profile`,
    /// `state` and `history` gave it. The store calls this only with what it wrote, so no
    /// transition is checked again; the history must end in `state`.
    pub fn restore(
        id: AccountId,
        kind: AccountKind,
        username: String,
        profile: Option<AccountProfile>,
        state: AccountState,
        history: Vec<Transition>,
    ) -> Option<Account> {
        if history.last().map(|t| &t.to) != Some(&state) {
            return None;
        }
        Some(Account {
            id,
            kind,
            username,
            profile,
            state,
            history,
        })
    }

    pub fn id(&self) -> AccountId {
        self.id
    }
    pub fn kind(&self) -> AccountKind {
        self.kind
    }
    pub fn username(&self) -> &str {
        &self.username
    }
    pub fn profile(&self) -> Option<&AccountProfile> {
        self.profile.as_ref()
    }
    pub fn state(&self) -> &AccountState {
        &self.state
    }
    pub fn history(&self) -> &[Transition] {
        &self.history
    }

    /// May log in: activated and not disabled. An account waiting for review or rejected
    /// logs in to see why and to resubmit, but cannot transact.
    pub fn can_log_in(&self) -> bool {
        matches!(
            self.state,
            AccountState::Active | AccountState::PendingReview | AccountState::Rejected { .. }
        )
    }

    /// May order, publish, lease and pay.
    pub fn can_transact(&self) -> bool {
        self.state == AccountState::Active
    }

    fn go(&mut self, to: AccountState, actor: Actor, at: Timestamp) {
        self.history.push(Transition {
            at,
            actor,
            to: to.clone(),
        });
        self.state = to;
    }

    fn expect(
        &self,
        ok: bool,
        action: &'static str,
        needs: &'static str,
    ) -> Result<(), LifecycleError> {
        if ok {
            Ok(())
        } else {
            Err(LifecycleError::WrongState {
                state: self.state.name(),
                action,
                needs,
            })
        }
    }

    /// The owner used the activation link or code (the caller verified it with
    /// `verification::PendingCode`). Organizations then wait for review.
    pub fn activate(&mut self, now: Timestamp) -> Result<(), LifecycleError> {
        self.expect(
            self.state == AccountState::PendingActivation,
            "activation",
            "pending_activation",
        )?;
        let to = if self.kind.requires_review() {
            AccountState::PendingReview
        } else {
            AccountState::Active
        };
        self.go(to, Actor::Owner, now);
        Ok(())
    }

    pub fn approve(&mut self, operator: &str, now: Timestamp) -> Result<(), LifecycleError> {
        self.expect(
            self.state == AccountState::PendingReview,
            "approval",
            "pending_review",
        )?;
        self.go(
            AccountState::Active,
            Actor::Operator(operator.to_string()),
            now,
        );
        Ok(())
    }

    pub fn reject(
        &mut self,
        operator: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), LifecycleError> {
        self.expect(
            self.state == AccountState::PendingReview,
            "rejection",
            "pending_review",
        )?;
        let reason = non_empty(reason)?;
        self.go(
            AccountState::Rejected { reason },
            Actor::Operator(operator.to_string()),
            now,
        );
        Ok(())
    }

    pub fn disable(
        &mut self,
        operator: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), LifecycleError> {
        self.expect(self.state == AccountState::Active, "disabling", "active")?;
        let reason = non_empty(reason)?;
        self.go(
            AccountState::Disabled { reason },
            Actor::Operator(operator.to_string()),
            now,
        );
        Ok(())
    }

    pub fn enable(&mut self, operator: &str, now: Timestamp) -> Result<(), LifecycleError> {
        self.expect(
            matches!(self.state, AccountState::Disabled { .. }),
            "enabling",
            "disabled",
        )?;
        self.go(
            AccountState::Active,
            Actor::Operator(operator.to_string()),
            now,
        );
        Ok(())
    }

    /// The owner edits the profile (SH-USR-01 "modify information"). Kind and username stay.
    /// An account that needs review and changes a reviewed field (organization name,
    /// licence, any identifier) goes back to review; a rejected account resubmits this way.
    pub fn edit_profile(
        &mut self,
        profile: AccountProfile,
        now: Timestamp,
    ) -> Result<(), LifecycleError> {
        self.expect(
            !matches!(
                self.state,
                AccountState::Deregistered
                    | AccountState::Disabled { .. }
                    | AccountState::PendingActivation
            ),
            "editing the profile",
            "active, pending_review or rejected",
        )?;
        if profile.kind != self.kind || profile.username != self.username {
            return Err(LifecycleError::KindOrUsernameChanged);
        }
        let reviewed_changed = self
            .profile
            .as_ref()
            .is_some_and(|old| old.reviewed_fields() != profile.reviewed_fields());
        let back_to_review = self.kind.requires_review()
            && (reviewed_changed || matches!(self.state, AccountState::Rejected { .. }));
        self.profile = Some(profile);
        if back_to_review && self.state != AccountState::PendingReview {
            self.go(AccountState::PendingReview, Actor::Owner, now);
        }
        Ok(())
    }

    /// Deregisters (final) under the rule documented on [`Deregistration`].
    pub fn deregister(
        &mut self,
        obligations: Obligations,
        now: Timestamp,
    ) -> Result<Deregistration, LifecycleError> {
        self.expect(
            self.state != AccountState::Deregistered,
            "deregistration",
            "not yet deregistered",
        )?;
        if obligations.running_leases > 0 || obligations.balance.is_negative() {
            return Err(LifecycleError::Obligations {
                running_leases: obligations.running_leases,
                balance: obligations.balance,
            });
        }
        self.profile = None;
        self.go(AccountState::Deregistered, Actor::Owner, now);
        Ok(Deregistration {
            erased: vec![
                "display_name",
                "contact",
                "identifiers",
                "organization_name",
                "licence_document",
                "address",
                "affiliation",
                "registered_capital",
                "region",
            ],
            kept: vec![
                "id",
                "kind",
                "username",
                "history",
                "ledger",
                "invoices",
                "settlements",
            ],
        })
    }
}

fn non_empty(reason: &str) -> Result<String, LifecycleError> {
    let r = reason.trim();
    if r.is_empty() {
        Err(LifecycleError::ReasonRequired)
    } else {
        Ok(r.to_string())
    }
}
