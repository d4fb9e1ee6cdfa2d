//! The double-entry ledger (SH-CL-16): every movement of money is a transaction whose
//! postings sum to zero, so the balances of all accounts always sum to zero and money is
//! neither made nor lost inside the platform.
//!
//! Sign convention: a posting's amount is the change of that account's balance; money
//! flows from negative postings to positive ones. `ExternalCash` stands for the world
//! outside: a top-up moves money from it into a user's funds, a payout back to it.
//!
//! ```text
//! top-up      ExternalCash −x        UserFunds(t) +x
//! credit      Promotions −x          UserCredit(t) +x
//! charge      UserCredit(t) −c, UserFunds(t) −(x−c)   Clearing +x      (credits first)
//! settlement  Clearing −gross        SupplierReceivable(s) +net, PlatformCommission +fee
//! payout      SupplierReceivable(s) −x                  ExternalCash +x
//! ```
//!
//! Charges go to `Clearing` when use is metered; the month's close moves them to each
//! supplier and the platform. Every transaction carries an idempotency key: posting the same
//! key twice returns the first transaction, so a retried close or meter run cannot charge
//! twice. The store keeps the same key unique and checks the zero sum in the same
//! transaction as the postings.

use crate::account::AccountId;
use crate::money::Money;
use crate::time::Timestamp;
use std::collections::HashMap;
use std::fmt;

/// A tenant of the federation: whom budgets, balances and invoices belong to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(pub String);

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LedgerAccount {
    /// Prepaid money of a tenant; negative is a debt (postpaid use beyond the funds).
    UserFunds(TenantId),
    /// Credits granted to a tenant; spent before funds; never negative.
    UserCredit(TenantId),
    /// What the platform owes a supplier.
    SupplierReceivable(AccountId),
    /// Charges not yet settled to suppliers.
    Clearing,
    PlatformCommission,
    /// The world outside the platform (bank transfers in and out).
    ExternalCash,
    /// Where credits come from: the platform's promotional expense.
    Promotions,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    pub account: LedgerAccount,
    pub amount: Money,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(pub u64);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub id: TxId,
    /// Unique: what makes a retried post idempotent (`charge:lease-7:…`).
    pub key: String,
    pub at: Timestamp,
    pub memo: String,
    pub postings: Vec<Posting>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("postings sum to {0}, not zero; a transaction must balance")]
    Unbalanced(Money),
    #[error("a balance would exceed what i64 minor units hold; check the amount")]
    Overflow,
    #[error("a transaction needs at least two non-zero postings")]
    Empty,
    #[error("an amount of {0} is not positive; top-ups, credits and payouts move money one way")]
    NotPositive(Money),
    #[error("the supplier is owed {owed}; a payout of {asked} would exceed it")]
    PayoutExceedsReceivable { owed: Money, asked: Money },
}

/// Whether a post made a new transaction or found the key already posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Posted {
    New(TxId),
    AlreadyPosted(TxId),
}

impl Posted {
    pub fn id(self) -> TxId {
        match self {
            Posted::New(id) | Posted::AlreadyPosted(id) => id,
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct Ledger {
    transactions: Vec<Transaction>,
    by_key: HashMap<String, TxId>,
    balances: HashMap<LedgerAccount, Money>,
}

impl Ledger {
    pub fn new() -> Ledger {
        Ledger::default()
    }

    pub fn transactions(&self) -> &[Transaction] {
        &self.transactions
    }

    pub fn balance(&self, account: &LedgerAccount) -> Money {
        self.balances.get(account).copied().unwrap_or(Money::ZERO)
    }

    /// Funds plus credits: what the tenant can still spend.
    pub fn available(&self, tenant: &TenantId) -> Money {
        self.balance(&LedgerAccount::UserFunds(tenant.clone()))
            + self.balance(&LedgerAccount::UserCredit(tenant.clone()))
    }

    /// The sum of every balance: zero, always (the invariant tests check).
    pub fn trial_balance(&self) -> Money {
        self.balances.values().copied().sum()
    }

    pub fn balances(&self) -> impl Iterator<Item = (&LedgerAccount, Money)> {
        self.balances.iter().map(|(a, m)| (a, *m))
    }

    /// Posts a balanced transaction; zero postings are dropped. The only way balances change.
    pub fn post(
        &mut self,
        key: &str,
        at: Timestamp,
        memo: &str,
        postings: Vec<Posting>,
    ) -> Result<Posted, LedgerError> {
        if let Some(id) = self.by_key.get(key) {
            return Ok(Posted::AlreadyPosted(*id));
        }
        let postings: Vec<Posting> = postings
            .into_iter()
            .filter(|p| p.amount != Money::ZERO)
            .collect();
        if postings.len() < 2 {
            return Err(LedgerError::Empty);
        }
        let sum: i128 = postings.iter().map(|p| i128::from(p.amount.minor())).sum();
        if sum != 0 {
            return Err(LedgerError::Unbalanced(
                i64::try_from(sum).map_or(Money::from_minor(i64::MAX), Money::from_minor),
            ));
        }
        // Check every new balance first, so a transaction applies whole or not at all.
        let mut updated = Vec::with_capacity(postings.len());
        for p in &postings {
            let old = self.balance(&p.account);
            let new = old.checked_add(p.amount).ok_or(LedgerError::Overflow)?;
            updated.push((p.account.clone(), new));
        }
        let id = TxId(self.transactions.len() as u64 + 1);
        for (account, balance) in updated {
            self.balances.insert(account, balance);
        }
        self.by_key.insert(key.to_string(), id);
        self.transactions.push(Transaction {
            id,
            key: key.to_string(),
            at,
            memo: memo.to_string(),
            postings,
        });
        Ok(Posted::New(id))
    }

    /// An operator's top-up of a tenant's prepaid funds.
    pub fn top_up(
        &mut self,
        tenant: &TenantId,
        amount: Money,
        key: &str,
        at: Timestamp,
        memo: &str,
    ) -> Result<Posted, LedgerError> {
        positive(amount)?;
        self.post(
            key,
            at,
            memo,
            vec![
                posting(LedgerAccount::ExternalCash, -amount),
                posting(LedgerAccount::UserFunds(tenant.clone()), amount),
            ],
        )
    }

    /// A credit granted to a tenant (spent before funds).
    pub fn grant_credit(
        &mut self,
        tenant: &TenantId,
        amount: Money,
        key: &str,
        at: Timestamp,
        memo: &str,
    ) -> Result<Posted, LedgerError> {
        positive(amount)?;
        self.post(
            key,
            at,
            memo,
            vec![
                posting(LedgerAccount::Promotions, -amount),
                posting(LedgerAccount::UserCredit(tenant.clone()), amount),
            ],
        )
    }

    /// Charges a tenant for use: credits first, then funds (which may go negative: use that
    /// happened is always recorded; budgets stop new use). A zero charge posts nothing.
    pub fn charge(
        &mut self,
        tenant: &TenantId,
        amount: Money,
        key: &str,
        at: Timestamp,
        memo: &str,
    ) -> Result<Option<Posted>, LedgerError> {
        if amount == Money::ZERO {
            return Ok(None);
        }
        positive(amount)?;
        let credit = self
            .balance(&LedgerAccount::UserCredit(tenant.clone()))
            .max(Money::ZERO);
        let from_credit = credit.min(amount);
        self.post(
            key,
            at,
            memo,
            vec![
                posting(LedgerAccount::UserCredit(tenant.clone()), -from_credit),
                posting(
                    LedgerAccount::UserFunds(tenant.clone()),
                    -(amount - from_credit),
                ),
                posting(LedgerAccount::Clearing, amount),
            ],
        )
        .map(Some)
    }

    /// Moves a month's charges of one supplier out of clearing: net to the supplier, the fee
    /// to the platform.
    pub fn settle(
        &mut self,
        supplier: AccountId,
        gross: Money,
        fee: Money,
        key: &str,
        at: Timestamp,
        memo: &str,
    ) -> Result<Posted, LedgerError> {
        self.post(
            key,
            at,
            memo,
            vec![
                posting(LedgerAccount::Clearing, -gross),
                posting(LedgerAccount::SupplierReceivable(supplier), gross - fee),
                posting(LedgerAccount::PlatformCommission, fee),
            ],
        )
    }

    /// Pays a supplier what it is owed, or part of it.
    pub fn pay_out(
        &mut self,
        supplier: AccountId,
        amount: Money,
        key: &str,
        at: Timestamp,
        memo: &str,
    ) -> Result<Posted, LedgerError> {
        positive(amount)?;
        if let Some(id) = self.by_key.get(key) {
            return Ok(Posted::AlreadyPosted(*id));
        }
        let owed = self.balance(&LedgerAccount::SupplierReceivable(supplier));
        if amount > owed {
            return Err(LedgerError::PayoutExceedsReceivable {
                owed,
                asked: amount,
            });
        }
        self.post(
            key,
            at,
            memo,
            vec![
                posting(LedgerAccount::SupplierReceivable(supplier), -amount),
                posting(LedgerAccount::ExternalCash, amount),
            ],
        )
    }
}

fn posting(account: LedgerAccount, amount: Money) -> Posting {
    Posting { account, amount }
}

fn positive(amount: Money) -> Result<(), LedgerError> {
    if amount > Money::ZERO {
        Ok(())
    } else {
        Err(LedgerError::NotPositive(amount))
    }
}
