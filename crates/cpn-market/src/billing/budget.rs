//! Budgets per tenant: a monthly spending limit with an alarm at a threshold, and the one
//! admission rule for new leases and tasks, which also looks at the tenant's funds.

use crate::billing::ledger::{Ledger, TenantId};
use crate::money::Money;
use crate::time::{Month, Timestamp};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Spending allowed per calendar month.
    pub monthly_limit: Money,
    /// The alarm fires once a month when spending reaches this percentage of the limit.
    pub alarm_percent: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    #[error("a monthly limit must be positive, got {0}")]
    NotPositive(Money),
    #[error("the alarm threshold is a percentage of the limit: 1..=100, got {0}")]
    BadPercent(u8),
}

/// Events for notifications (the alarm of SH-CL-23 and issue #14's budget alarm).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BudgetEvent {
    ThresholdReached {
        tenant: TenantId,
        month: Month,
        spent: Money,
        limit: Money,
    },
    Exhausted {
        tenant: TenantId,
        month: Month,
        spent: Money,
        limit: Money,
    },
}

/// Why new work is refused; each says what the tenant can do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "the budget of tenant {tenant} for {month} is exhausted ({spent} of {limit} spent); raise the budget or wait for next month"
    )]
    BudgetExhausted {
        tenant: TenantId,
        month: Month,
        spent: Money,
        limit: Money,
    },
    #[error(
        "this would cost {needed} but only {left} of tenant {tenant}'s budget for {month} is left; raise the budget or order less"
    )]
    OverBudget {
        tenant: TenantId,
        month: Month,
        needed: Money,
        left: Money,
    },
    #[error(
        "tenant {tenant} has {available} available but this needs {needed}; ask an operator for a top-up"
    )]
    InsufficientFunds {
        tenant: TenantId,
        available: Money,
        needed: Money,
    },
}

#[derive(Debug, Clone)]
struct TenantBudget {
    budget: Budget,
    month: Month,
    spent: Money,
    alarmed: bool,
    exhausted: bool,
}

impl TenantBudget {
    fn roll(&mut self, now: Timestamp) {
        let month = now.month();
        if month != self.month {
            self.month = month;
            self.spent = Money::ZERO;
            self.alarmed = false;
            self.exhausted = false;
        }
    }

    fn alarm_at(&self) -> Money {
        self.budget
            .monthly_limit
            .mul_div_round(u64::from(self.budget.alarm_percent), 100)
    }
}

/// Tenants without a budget have no spending limit (their funds still bound them).
#[derive(Debug, Default, Clone)]
pub struct Budgets {
    tenants: HashMap<TenantId, TenantBudget>,
}

impl Budgets {
    pub fn new() -> Budgets {
        Budgets::default()
    }

    /// Sets or changes a tenant's budget; this month's spending so far still counts.
    pub fn set(
        &mut self,
        tenant: TenantId,
        budget: Budget,
        now: Timestamp,
    ) -> Result<(), BudgetError> {
        if budget.monthly_limit <= Money::ZERO {
            return Err(BudgetError::NotPositive(budget.monthly_limit));
        }
        if !(1..=100).contains(&budget.alarm_percent) {
            return Err(BudgetError::BadPercent(budget.alarm_percent));
        }
        let entry = self.tenants.entry(tenant).or_insert(TenantBudget {
            budget,
            month: now.month(),
            spent: Money::ZERO,
            alarmed: false,
            exhausted: false,
        });
        entry.roll(now);
        entry.budget = budget;
        entry.alarmed = entry.spent >= entry.alarm_at();
        entry.exhausted = entry.spent >= budget.monthly_limit;
        Ok(())
    }

    pub fn spent(&self, tenant: &TenantId, now: Timestamp) -> Money {
        self.tenants
            .get(tenant)
            .filter(|b| b.month == now.month())
            .map_or(Money::ZERO, |b| b.spent)
    }

    /// Counts a charge against the tenant's month; returns the alarm and exhaustion events
    /// it causes, each at most once a month.
    pub fn record_spend(
        &mut self,
        tenant: &TenantId,
        amount: Money,
        now: Timestamp,
    ) -> Vec<BudgetEvent> {
        let Some(b) = self.tenants.get_mut(tenant) else {
            return Vec::new();
        };
        b.roll(now);
        b.spent = b.spent + amount;
        let mut events = Vec::new();
        let (month, spent, limit) = (b.month, b.spent, b.budget.monthly_limit);
        if !b.alarmed && spent >= b.alarm_at() {
            b.alarmed = true;
            events.push(BudgetEvent::ThresholdReached {
                tenant: tenant.clone(),
                month,
                spent,
                limit,
            });
        }
        if !b.exhausted && spent >= limit {
            b.exhausted = true;
            events.push(BudgetEvent::Exhausted {
                tenant: tenant.clone(),
                month,
                spent,
                limit,
            });
        }
        events
    }

    /// Whether the tenant's running work must stop: its budget for the month is spent, or
    /// its funds and credits are used up.
    pub fn must_stop(&self, ledger: &Ledger, tenant: &TenantId, now: Timestamp) -> Option<Refusal> {
        self.admit(ledger, tenant, Money::ZERO, now)
            .err()
            .filter(|r| match r {
                Refusal::BudgetExhausted { .. } => true,
                Refusal::InsufficientFunds { available, .. } => *available <= Money::ZERO,
                Refusal::OverBudget { .. } => false,
            })
    }

    /// The admission rule for new leases and tasks: refused when the month's budget is
    /// exhausted, when `needed` exceeds what is left of it, or when the tenant's funds and
    /// credits do not cover `needed` (or are not positive, for `needed` = 0).
    pub fn admit(
        &self,
        ledger: &Ledger,
        tenant: &TenantId,
        needed: Money,
        now: Timestamp,
    ) -> Result<(), Refusal> {
        if let Some(b) = self.tenants.get(tenant) {
            let month = now.month();
            let spent = if b.month == month {
                b.spent
            } else {
                Money::ZERO
            };
            let limit = b.budget.monthly_limit;
            if spent >= limit {
                return Err(Refusal::BudgetExhausted {
                    tenant: tenant.clone(),
                    month,
                    spent,
                    limit,
                });
            }
            if spent + needed > limit {
                return Err(Refusal::OverBudget {
                    tenant: tenant.clone(),
                    month,
                    needed,
                    left: limit - spent,
                });
            }
        }
        let available = ledger.available(tenant);
        if available < needed || available <= Money::ZERO {
            return Err(Refusal::InsufficientFunds {
                tenant: tenant.clone(),
                available,
                needed,
            });
        }
        Ok(())
    }
}
