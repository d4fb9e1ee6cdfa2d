//! Usage records (SH-CL-14, -16; Itm): what happened, with what it cost at the lease's
//! quote. Lease time is recorded by metering; task use inside a class B lease comes from
//! the federation's task accounting. A record never spans a calendar month, so the month's
//! close takes records by their start.

use crate::account::AccountId;
use crate::billing::ledger::TenantId;
use crate::lease::LeaseId;
use crate::listing::{CpcId, PriceQuote};
use crate::money::Money;
use crate::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UsageKind {
    /// Lease time × leased cards, of an hourly lease; charged to the second.
    LeaseCardSeconds,
    /// A prepaid monthly or yearly term: cards × periods, charged when the lease starts.
    PrepaidCardPeriods,
    /// GPU-seconds of tasks run inside a class B lease: recorded for the user and the
    /// evaluation, included in the lease's price (amount 0).
    TaskGpuSeconds,
    /// CPU core-seconds of tasks inside a class B lease (amount 0, as above).
    TaskCpuSeconds,
    /// Memory MiB-seconds of tasks inside a class B lease (amount 0, as above).
    TaskMemoryMibSeconds,
}

impl UsageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UsageKind::LeaseCardSeconds => "lease_card_seconds",
            UsageKind::PrepaidCardPeriods => "prepaid_card_periods",
            UsageKind::TaskGpuSeconds => "task_gpu_seconds",
            UsageKind::TaskCpuSeconds => "task_cpu_seconds",
            UsageKind::TaskMemoryMibSeconds => "task_memory_mib_seconds",
        }
    }
}

/// One record of use; `amount` is what was charged to the tenant for it (already posted
/// to the ledger when the record was made).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    pub lease: LeaseId,
    pub tenant: TenantId,
    pub supplier: AccountId,
    pub listing: CpcId,
    pub kind: UsageKind,
    pub quantity: u64,
    pub start: Timestamp,
    pub end: Timestamp,
    pub quote: PriceQuote,
    pub amount: Money,
}
