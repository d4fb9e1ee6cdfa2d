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
    /// `None`: the tenant has no limit, but its month's spending is still counted, for the
    /// balance view and for a budget set later in the month.
    budget: Option<Budget>,
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

    fn alarm_at(budget: &Budget) -> Money {
        budget
            .monthly_limit
            .mul_div_round(u64::from(budget.alarm_percent), 100)
    }
}

/// Every tenant's spending per month; tenants without a budget have no spending limit
/// (their funds still bound them) and no budget alarms.
#[derive(Debug, Default, Clone)]
pub struct Budgets {
    tenants: HashMap<TenantId, TenantBudget>,
    /// Tenants whose budget changed since the store last took the changes (`persist`).
    pub(crate) dirty: std::collections::BTreeSet<TenantId>,
}

/// A tenant's budget as the store keeps it: the limit (`None` for a tenant without one)
/// and this month's count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetRow {
    pub tenant: TenantId,
    pub budget: Option<Budget>,
    pub month: Month,
    pub spent: Money,
    pub alarmed: bool,
    pub exhausted: bool,
}

impl Budgets {
    pub fn new() -> Budgets {
        Budgets::default()
    }

    /// Every tenant's budget and spending, by tenant (those without a budget too).
    pub fn rows(&self) -> Vec<BudgetRow> {
        let mut rows: Vec<BudgetRow> = self.tenants.keys().filter_map(|t| self.row(t)).collect();
        rows.sort_unstable_by(|a, b| a.tenant.cmp(&b.tenant));
        rows
    }

    pub(crate) fn row(&self, tenant: &TenantId) -> Option<BudgetRow> {
        self.tenants.get(tenant).map(|b| BudgetRow {
            tenant: tenant.clone(),
            budget: b.budget,
            month: b.month,
            spent: b.spent,
            alarmed: b.alarmed,
            exhausted: b.exhausted,
        })
    }

    pub(crate) fn restore(&mut self, row: BudgetRow) {
        self.tenants.insert(
            row.tenant,
            TenantBudget {
                budget: row.budget,
                month: row.month,
                spent: row.spent,
                alarmed: row.alarmed,
                exhausted: row.exhausted,
            },
        );
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
        self.dirty.insert(tenant.clone());
        let entry = self.tenants.entry(tenant).or_insert(TenantBudget {
            budget: Some(budget),
            month: now.month(),
            spent: Money::ZERO,
            alarmed: false,
            exhausted: false,
        });
        entry.roll(now);
        entry.budget = Some(budget);
        entry.alarmed = entry.spent >= TenantBudget::alarm_at(&budget);
        entry.exhausted = entry.spent >= budget.monthly_limit;
        Ok(())
    }

    pub fn spent(&self, tenant: &TenantId, now: Timestamp) -> Money {
        self.tenants
            .get(tenant)
            .filter(|b| b.month == now.month())
            .map_or(Money::ZERO, |b| b.spent)
    }

    /// Counts a charge against the tenant's month, budget or not; returns the alarm and
    /// exhaustion events it causes (only with a budget), each at most once a month.
    pub fn record_spend(
        &mut self,
        tenant: &TenantId,
        amount: Money,
        now: Timestamp,
    ) -> Vec<BudgetEvent> {
        let b = self
            .tenants
            .entry(tenant.clone())
            .or_insert_with(|| TenantBudget {
                budget: None,
                month: now.month(),
                spent: Money::ZERO,
                alarmed: false,
                exhausted: false,
            });
        self.dirty.insert(tenant.clone());
        b.roll(now);
        b.spent = b.spent + amount;
        let mut events = Vec::new();
        let Some(budget) = b.budget else {
            return events;
        };
        let (month, spent, limit) = (b.month, b.spent, budget.monthly_limit);
        if !b.alarmed && spent >= TenantBudget::alarm_at(&budget) {
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
        if let Some(b) = self.tenants.get(tenant)
            && let Some(budget) = b.budget
        {
            let month = now.month();
            let spent = if b.month == month {
                b.spent
            } else {
                Money::ZERO
            };
            let limit = budget.monthly_limit;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spending_counts_for_every_tenant_and_only_a_budget_alarms() {
        let t0 = Timestamp::from_unix(1_767_225_600); // 2026-01-01
        let (free, capped) = (TenantId("free".into()), TenantId("capped".into()));
        let mut b = Budgets::new();
        b.set(
            capped.clone(),
            Budget {
                monthly_limit: Money::from_minor(1_000),
                alarm_percent: 50,
            },
            t0,
        )
        .unwrap();
        assert!(
            b.record_spend(&free, Money::from_minor(700), t0).is_empty(),
            "no budget: no alarm"
        );
        assert_eq!(b.spent(&free, t0), Money::from_minor(700));
        let events = b.record_spend(&capped, Money::from_minor(700), t0);
        assert!(
            matches!(events[..], [BudgetEvent::ThresholdReached { .. }]),
            "{events:?}"
        );
        assert_eq!(b.spent(&capped, t0), Money::from_minor(700));
        // The spending without a budget is kept across a restore, and a new month restarts it.
        let mut restored = Budgets::new();
        for row in b.rows() {
            restored.restore(row);
        }
        assert_eq!(restored.spent(&free, t0), Money::from_minor(700));
        assert_eq!(
            restored
                .rows()
                .iter()
                .find(|r| r.tenant == free)
                .unwrap()
                .budget,
            None
        );
        let next_month = t0.plus_seconds(31 * 86_400);
        assert_eq!(restored.spent(&free, next_month), Money::ZERO);
        // A budget set later in the month starts from what was spent already.
        restored
            .set(
                free.clone(),
                Budget {
                    monthly_limit: Money::from_minor(500),
                    alarm_percent: 80,
                },
                t0,
            )
            .unwrap();
        let ledger = Ledger::default();
        assert!(matches!(
            restored.admit(&ledger, &free, Money::ZERO, t0),
            Err(Refusal::BudgetExhausted { .. })
        ));
    }
}
