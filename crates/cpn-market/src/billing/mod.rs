//! Metering and billing (SH-CL-04, -16): the rating rules ([`rate`]), usage records
//! ([`usage`]), the double-entry [`ledger`], budgets per tenant ([`budget`]) with the one
//! admission rule for new work, and the month's close into invoices and settlement
//! statements with their CSV ([`close`]).

pub mod budget;
pub mod close;
pub mod ledger;
pub mod rate;
pub mod usage;

pub use budget::{Budget, BudgetEvent, Budgets, Refusal};
pub use close::{Commission, Invoice, InvoiceLine, MonthClose, Statement, StatementLine};
pub use ledger::{Ledger, LedgerAccount, LedgerError, Posting, TenantId, Transaction, TxId};
pub use usage::{UsageKind, UsageRecord};
