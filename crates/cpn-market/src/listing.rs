//! What a supplier publishes (SH-CL-01, -03, -05, -08, -19): the eleven items of the
//! specification, the usage method of class A, whether orders need the supplier's approval,
//! the cards that back the listing, and the platform's identifier, the CPcId.

use crate::money::Money;
use crate::validation::{Collector, Invalid};
use std::fmt;
use std::str::FromStr;

/// SH-CL-01 item 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClusterClass {
    /// Bare metal, used over SSH with the supplier's authorization code.
    A,
    /// Virtualised, used through the platform's services; status follows monitoring.
    B,
}

/// SH-CL-01 item 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    Gpu,
    Npu,
    Cpu,
}

/// SH-CL-01 item 8, SH-CL-04: the user picks one of the listing's modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BillingMode {
    /// Postpaid, metered to the second.
    Hourly,
    /// Prepaid by whole calendar months (包月).
    Monthly,
    /// Prepaid by whole years (包年).
    Yearly,
}

impl BillingMode {
    pub const ALL: [BillingMode; 3] = [
        BillingMode::Hourly,
        BillingMode::Monthly,
        BillingMode::Yearly,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BillingMode::Hourly => "hourly",
            BillingMode::Monthly => "monthly",
            BillingMode::Yearly => "yearly",
        }
    }

    /// Calendar months in one period of a prepaid mode; `None` for hourly.
    pub fn months_per_period(self) -> Option<u32> {
        match self {
            BillingMode::Hourly => None,
            BillingMode::Monthly => Some(1),
            BillingMode::Yearly => Some(12),
        }
    }
}

/// Unit prices per card (SH-CL-01 item 7), one per offered billing mode. A sheet is
/// immutable once published: a change makes a new version, and a lease keeps the quote of
/// the version it was made at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PriceSheet {
    /// Per card-hour.
    pub hourly: Option<Money>,
    /// Per card-month.
    pub monthly: Option<Money>,
    /// Per card-year.
    pub yearly: Option<Money>,
}

impl PriceSheet {
    pub fn price(&self, mode: BillingMode) -> Option<Money> {
        match mode {
            BillingMode::Hourly => self.hourly,
            BillingMode::Monthly => self.monthly,
            BillingMode::Yearly => self.yearly,
        }
    }

    pub fn modes(&self) -> impl Iterator<Item = BillingMode> + '_ {
        BillingMode::ALL
            .into_iter()
            .filter(|m| self.price(*m).is_some())
    }

    pub(crate) fn check(&self, c: &mut Collector) {
        c.check(
            self.modes().next().is_some(),
            "prices",
            "offer at least one billing mode: an hourly, monthly or yearly unit price",
        );
        for mode in BillingMode::ALL {
            if let Some(p) = self.price(mode) {
                c.check(
                    p > Money::ZERO && p <= MAX_UNIT_PRICE,
                    &format!("prices.{}", mode.as_str()),
                    &format!(
                        "a unit price is in minor units (fen) per card: positive and at most {MAX_UNIT_PRICE}"
                    ),
                );
            }
        }
    }
}

/// The highest unit price per card and period (100 million yuan): with at most
/// `MAX_CARDS_PER_LISTING` cards and `market::MAX_PREPAID_PERIODS` periods, every amount the
/// marketplace computes stays far inside `i64` minor units, so no request can overflow one.
pub const MAX_UNIT_PRICE: Money = Money::from_minor(10_000_000_000);

/// The price a lease was made at: the sheet's version, the mode and the unit price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriceQuote {
    pub version: u32,
    pub mode: BillingMode,
    pub unit_price: Money,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiskKind {
    NvmeSsd,
    SataSsd,
    Hdd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiskRole {
    System,
    Data,
}

/// One disk of SH-CL-01 item 11, e.g. `3.84TB*2 data disks + 480GB system disk` is three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Disk {
    pub kind: DiskKind,
    pub role: DiskRole,
    pub size_gb: u32,
}

/// Whether an order becomes a lease at once or waits for the supplier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Approval {
    Automatic,
    BySupplier,
}

/// One card of the listing, backed by a GPU (or NPU, or CPU socket) of a node that an agent
/// of the listing's site reports.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CardSpec {
    pub node: String,
    /// The device index on that node, as the agent reports it.
    pub index: u32,
}

/// Everything the supplier says about a listing (SH-CL-01, -05, -09); the platform adds the
/// CPcId, the state of each card, the price versions and the reliability score.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingSpec {
    pub class: ClusterClass,
    pub resource_type: ResourceType,
    /// The card model, e.g. `A100 80GB`; with the card count it reads `8*A100 80GB`.
    pub model: String,
    /// SH-CL-01 item 4: memory of one card, GiB.
    pub card_memory_gib: u32,
    /// Item 5: host memory, GiB.
    pub memory_gib: u32,
    /// Item 6.
    pub vcpus: u32,
    /// Items 7 and 8.
    pub prices: PriceSheet,
    /// Item 9, e.g. `华为云`.
    pub vendor: String,
    /// Item 10, e.g. `深圳市`; matched exactly by the search (Ius's region field).
    pub region: String,
    /// Item 11.
    pub storage: Vec<Disk>,
    /// SH-CL-05: how a class A cluster is used (how to connect, software installed).
    /// Required for class A.
    pub usage: Option<String>,
    pub approval: Approval,
    /// The federation site whose nodes back the cards.
    pub site: String,
    pub cards: Vec<CardSpec>,
}

/// At most this many cards per listing: a listing is one cluster, and the allocator's
/// per-listing scans stay short.
pub const MAX_CARDS_PER_LISTING: usize = 4096;

impl ListingSpec {
    pub fn validate(&self) -> Result<(), Invalid> {
        let mut c = Collector::default();
        c.text(&self.model, "model", 100);
        c.text(&self.vendor, "vendor", 100);
        c.text(&self.region, "region", 100);
        c.text(&self.site, "site", 63);
        c.check(
            self.resource_type == ResourceType::Cpu || self.card_memory_gib > 0,
            "card_memory_gib",
            "give the memory of one card in GiB, e.g. 80 for an A100 80GB",
        );
        c.check(
            self.memory_gib > 0,
            "memory_gib",
            "give the host memory in GiB, e.g. 1024 for 1 TB",
        );
        c.check(
            self.vcpus > 0,
            "vcpus",
            "give the number of virtual cores, e.g. 128",
        );
        self.prices.check(&mut c);
        c.check(
            !self.storage.is_empty(),
            "storage",
            "list the local disks, e.g. two 3840 GB NVMe data disks and a 480 GB system disk",
        );
        for (i, d) in self.storage.iter().enumerate() {
            c.check(
                d.size_gb > 0,
                &format!("storage[{i}].size_gb"),
                "a disk's size must be positive",
            );
        }
        match (self.class, &self.usage) {
            (ClusterClass::A, None) => c.reject(
                "usage",
                "a class A cluster must say how it is used: how to connect and what is installed (SH-CL-05)",
            ),
            (_, Some(u)) => c.text(u, "usage", 4000),
            (ClusterClass::B, None) => {}
        }
        c.check(
            !self.cards.is_empty() && self.cards.len() <= MAX_CARDS_PER_LISTING,
            "cards",
            &format!(
                "list between 1 and {MAX_CARDS_PER_LISTING} cards, each a node and device index"
            ),
        );
        let mut seen = std::collections::BTreeSet::new();
        for (i, card) in self.cards.iter().enumerate() {
            if card.node.trim().is_empty() {
                c.reject(
                    format!("cards[{i}].node"),
                    "name the node that holds the card",
                );
            }
            if !seen.insert(card) {
                c.reject(
                    format!("cards[{i}]"),
                    format!("card {} of node {} is listed twice", card.index, card.node),
                );
            }
        }
        c.finish()
    }

    /// Total local storage, GB (the search's storage filter).
    pub fn storage_gb(&self) -> u64 {
        self.storage.iter().map(|d| u64::from(d.size_gb)).sum()
    }
}

/// The platform's identifier of a published cluster (SH-CL-08): `CPC-` + the store's
/// sequence number in ten digits + a Luhn check digit, e.g. `CPC-0000000042-2`, so that a
/// mistyped id is refused rather than found to be another cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CpcId(u64);

/// The largest sequence number ten digits hold.
pub const MAX_CPCID_SEQUENCE: u64 = 9_999_999_999;

impl CpcId {
    /// The id of the `sequence`-th published cluster (the store's sequence, from 1).
    pub fn from_sequence(sequence: u64) -> Option<CpcId> {
        (1..=MAX_CPCID_SEQUENCE)
            .contains(&sequence)
            .then_some(CpcId(sequence))
    }

    pub fn sequence(self) -> u64 {
        self.0
    }
}

fn luhn_check_digit(digits: &str) -> u32 {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    (10 - sum % 10) % 10
}

impl fmt::Display for CpcId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = format!("{:010}", self.0);
        write!(f, "CPC-{digits}-{}", luhn_check_digit(&digits))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a CPcId: expected CPC-, ten digits, - and a check digit, e.g. CPC-0000000042-2"
)]
pub struct BadCpcId(pub String);

impl FromStr for CpcId {
    type Err = BadCpcId;
    fn from_str(s: &str) -> Result<CpcId, BadCpcId> {
        let bad = || BadCpcId(s.to_string());
        let rest = s.trim().strip_prefix("CPC-").ok_or_else(bad)?;
        let (digits, check) = rest.split_once('-').ok_or_else(bad)?;
        if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) || check.len() != 1 {
            return Err(bad());
        }
        let check: u32 = check.parse().map_err(|_| bad())?;
        if check != luhn_check_digit(digits) {
            return Err(bad());
        }
        let seq: u64 = digits.parse().map_err(|_| bad())?;
        CpcId::from_sequence(seq).ok_or_else(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpcid_round_trips_and_catches_typos() {
        let id = CpcId::from_sequence(42).unwrap();
        let text = id.to_string();
        assert_eq!(text, "CPC-0000000042-2");
        assert_eq!(text.parse::<CpcId>(), Ok(id));
        assert!(
            "CPC-0000000024-2".parse::<CpcId>().is_err(),
            "swapped digits"
        );
        assert!(
            "CPC-0000000000-0".parse::<CpcId>().is_err(),
            "sequence starts at 1"
        );
        assert!(CpcId::from_sequence(0).is_none());
    }
}
