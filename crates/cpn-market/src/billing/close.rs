//! The month's close: a month of usage records becomes one invoice per tenant and one
//! settlement statement per supplier, and each supplier's share leaves the clearing account
//! in one ledger transaction (idempotent, so a close can be rerun). CSV export of both.
//!
//! Charges were posted when the use was metered, so an invoice is a summary of what the
//! ledger already holds; its total equals the tenant's charges of the month. The commission
//! is rounded per statement line, and the statement's commission is the sum of its lines, so
//! the CSV, the statement and the ledger agree to the fen.

use crate::account::AccountId;
use crate::billing::ledger::{Ledger, LedgerError, TenantId, TxId};
use crate::billing::rate;
use crate::billing::usage::{UsageKind, UsageRecord};
use crate::lease::LeaseId;
use crate::listing::{BillingMode, CpcId};
use crate::money::Money;
use crate::time::{Month, Timestamp};
use std::collections::{BTreeMap, HashMap};

/// The platform's share of what users pay suppliers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commission {
    /// 1/100 of a percent: 500 = 5 %.
    pub basis_points: u32,
}

/// One line of an invoice: a lease's use of one kind in the month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceLine {
    pub lease: LeaseId,
    pub listing: CpcId,
    pub kind: UsageKind,
    pub mode: BillingMode,
    pub unit_price: Money,
    pub quantity: u64,
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    pub tenant: TenantId,
    pub month: Month,
    /// By lease, then kind.
    pub lines: Vec<InvoiceLine>,
    pub total: Money,
}

/// One line of a statement: what one lease paid the supplier in the month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementLine {
    pub lease: LeaseId,
    pub tenant: TenantId,
    pub listing: CpcId,
    pub gross: Money,
    pub commission: Money,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub supplier: AccountId,
    pub month: Month,
    pub lines: Vec<StatementLine>,
    pub gross: Money,
    pub commission: Money,
    /// gross − commission: what the ledger adds to the supplier's receivable.
    pub net: Money,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthClose {
    pub month: Month,
    /// By tenant.
    pub invoices: Vec<Invoice>,
    /// By supplier.
    pub statements: Vec<Statement>,
    /// The settlement transactions, one per supplier with a non-zero gross.
    pub settlements: Vec<TxId>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloseError {
    #[error(
        "a usage record of lease {lease:?} starts at {start}, outside {month}; give the close only that month's records"
    )]
    RecordOutsideMonth {
        lease: LeaseId,
        start: Timestamp,
        month: Month,
    },
    #[error("commission must be 0..=10000 basis points, got {0}")]
    BadCommission(u32),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

#[derive(Default)]
struct Acc {
    quantity: u64,
    amount: Money,
}

/// Closes `month` over its usage records (in any order). O(records) plus sorting the
/// lines.
pub fn close_month(
    month: Month,
    records: &[UsageRecord],
    ledger: &mut Ledger,
    commission: Commission,
    at: Timestamp,
) -> Result<MonthClose, CloseError> {
    if commission.basis_points > 10_000 {
        return Err(CloseError::BadCommission(commission.basis_points));
    }
    // One accumulator per (lease, kind); leases carry their tenant, supplier and quote.
    let mut lines: HashMap<(LeaseId, UsageKind), (Acc, &UsageRecord)> = HashMap::new();
    for r in records {
        if !month.contains(r.start) {
            return Err(CloseError::RecordOutsideMonth {
                lease: r.lease,
                start: r.start,
                month,
            });
        }
        let (acc, _) = lines
            .entry((r.lease, r.kind))
            .or_insert_with(|| (Acc::default(), r));
        acc.quantity = acc.quantity.saturating_add(r.quantity);
        acc.amount = acc.amount + r.amount;
    }
    let mut by_tenant: BTreeMap<&TenantId, Vec<InvoiceLine>> = BTreeMap::new();
    let mut by_supplier: BTreeMap<AccountId, BTreeMap<LeaseId, StatementLine>> = BTreeMap::new();
    for ((lease, kind), (acc, r)) in &lines {
        by_tenant.entry(&r.tenant).or_default().push(InvoiceLine {
            lease: *lease,
            listing: r.listing,
            kind: *kind,
            mode: r.quote.mode,
            unit_price: r.quote.unit_price,
            quantity: acc.quantity,
            amount: acc.amount,
        });
        let line = by_supplier
            .entry(r.supplier)
            .or_default()
            .entry(*lease)
            .or_insert_with(|| StatementLine {
                lease: *lease,
                tenant: r.tenant.clone(),
                listing: r.listing,
                gross: Money::ZERO,
                commission: Money::ZERO,
            });
        line.gross = line.gross + acc.amount;
    }
    let invoices = by_tenant
        .into_iter()
        .map(|(tenant, mut lines)| {
            lines.sort_unstable_by_key(|l| (l.lease, l.kind));
            Invoice {
                tenant: tenant.clone(),
                month,
                total: lines.iter().map(|l| l.amount).sum(),
                lines,
            }
        })
        .collect();
    let mut statements = Vec::new();
    let mut settlements = Vec::new();
    for (supplier, lines) in by_supplier {
        let mut lines: Vec<StatementLine> = lines.into_values().collect();
        for l in &mut lines {
            l.commission = rate::commission(l.gross, commission.basis_points);
        }
        let gross: Money = lines.iter().map(|l| l.gross).sum();
        let fee: Money = lines.iter().map(|l| l.commission).sum();
        if gross != Money::ZERO {
            let key = format!("settle:{month}:supplier-{}", supplier.0);
            let memo = format!("settlement of {month}");
            settlements.push(ledger.settle(supplier, gross, fee, &key, at, &memo)?.id());
        }
        statements.push(Statement {
            supplier,
            month,
            lines,
            gross,
            commission: fee,
            net: gross - fee,
        });
    }
    Ok(MonthClose {
        month,
        invoices,
        statements,
        settlements,
    })
}

/// One CSV field: quoted when it holds a comma, quote or line break (RFC 4180).
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

impl Invoice {
    /// RFC 4180 CSV: a header, one row per line, and a `total` row.
    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "tenant,month,lease,cluster,kind,billing_mode,unit_price,quantity,amount\r\n",
        );
        let tenant = field(&self.tenant.0);
        for l in &self.lines {
            out.push_str(&format!(
                "{tenant},{},{},{},{},{},{},{},{}\r\n",
                self.month,
                l.lease.0,
                l.listing,
                l.kind.as_str(),
                l.mode.as_str(),
                l.unit_price,
                l.quantity,
                l.amount
            ));
        }
        out.push_str(&format!(
            "{tenant},{},,,total,,,,{}\r\n",
            self.month, self.total
        ));
        out
    }
}

impl Statement {
    /// RFC 4180 CSV: a header, one row per lease, and a `total` row.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("supplier,month,lease,tenant,cluster,gross,commission,net\r\n");
        for l in &self.lines {
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{}\r\n",
                self.supplier.0,
                self.month,
                l.lease.0,
                field(&l.tenant.0),
                l.listing,
                l.gross,
                l.commission,
                l.gross - l.commission
            ));
        }
        out.push_str(&format!(
            "{},{},,total,,{},{},{}\r\n",
            self.supplier.0, self.month, self.gross, self.commission, self.net
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
