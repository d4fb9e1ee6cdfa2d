//! The marketplace search (SH-CL-12, -13, -15): idle capacity only, filtered and sorted by
//! class, resource type, model, card count, memory, vCPU, storage, unit price, region and
//! reliability, in pages.
//!
//! Design, for 10,000 listings of 100,000 cards answered in well under the 20 ms:
//! one compact [`Row`] per listing holding exactly the searchable fields, with model and
//! region interned to integers; the set of *offering* rows (listed with at least one idle
//! card); and posting sets of offering rows per model and per region. A query starts from
//! the smallest of the sets its equality filters name (or all offering rows), checks the
//! remaining predicates on the rows, and sorts only up to the end of the requested page
//! (`select_nth_unstable`). A card changing state changes one row's idle count and, when it
//! crosses zero, moves the row in or out of three sets: O(log n) per change, never a rebuild.
//!
//! The catalog keeps the index in step; this module never sees a card.

use crate::listing::{BillingMode, ClusterClass, CpcId, PriceSheet, ResourceType};
use crate::money::Money;
use std::collections::{BTreeSet, HashMap};

/// The searchable projection of one listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub cpcid: CpcId,
    pub listed: bool,
    pub class: ClusterClass,
    pub resource_type: ResourceType,
    pub model: String,
    pub region: String,
    pub idle_cards: u32,
    pub card_memory_gib: u32,
    pub memory_gib: u32,
    pub vcpus: u32,
    pub storage_gb: u64,
    pub prices: PriceSheet,
    /// Per mille, from evaluations; `None` until the listing has been evaluated.
    pub reliability: Option<u16>,
}

/// A row as stored: strings interned.
#[derive(Debug, Clone, Copy)]
struct Packed {
    cpcid: CpcId,
    listed: bool,
    class: ClusterClass,
    resource_type: ResourceType,
    model: u32,
    region: u32,
    idle_cards: u32,
    card_memory_gib: u32,
    memory_gib: u32,
    vcpus: u32,
    storage_gb: u64,
    prices: PriceSheet,
    reliability: Option<u16>,
}

impl Packed {
    fn offering(&self) -> bool {
        self.listed && self.idle_cards > 0
    }
}

/// The one normalization of models for matching: case and runs of spaces do not matter,
/// so `a100  80gb` finds `A100 80GB`.
fn model_key(model: &str) -> String {
    model
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn region_key(region: &str) -> String {
    region.trim().to_string()
}

#[derive(Debug, Default, Clone)]
struct Interner {
    ids: HashMap<String, u32>,
}

impl Interner {
    fn intern(&mut self, key: String) -> u32 {
        let next = u32::try_from(self.ids.len()).expect("fewer than 2^32 distinct values");
        *self.ids.entry(key).or_insert(next)
    }
    fn get(&self, key: &str) -> Option<u32> {
        self.ids.get(key).copied()
    }
}

/// What to sort by. Ties are broken by CPcId ascending, so pages are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SortKey {
    UnitPrice,
    IdleCards,
    CardMemory,
    Memory,
    Vcpus,
    Storage,
    Reliability,
    CpcId,
}

/// The largest page a query may ask for.
pub const MAX_PAGE_SIZE: usize = 100;

/// A search. Every filter is optional; `Query::default()` lists all idle capacity by CPcId.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub class: Option<ClusterClass>,
    pub resource_type: Option<ResourceType>,
    pub model: Option<String>,
    pub region: Option<String>,
    /// At least this many idle cards; values below 1 mean 1 (idle capacity only).
    pub min_idle_cards: u32,
    pub min_card_memory_gib: u32,
    pub min_memory_gib: u32,
    pub min_vcpus: u32,
    pub min_storage_gb: u64,
    /// Only listings offering this mode; the price filter and sort read its unit price.
    pub billing_mode: Option<BillingMode>,
    pub max_unit_price: Option<Money>,
    /// Per mille; unevaluated listings do not pass.
    pub min_reliability: Option<u16>,
    pub sort: SortKey,
    pub descending: bool,
    pub offset: usize,
    pub limit: usize,
}

impl Default for Query {
    fn default() -> Query {
        Query {
            class: None,
            resource_type: None,
            model: None,
            region: None,
            min_idle_cards: 1,
            min_card_memory_gib: 0,
            min_memory_gib: 0,
            min_vcpus: 0,
            min_storage_gb: 0,
            billing_mode: None,
            max_unit_price: None,
            min_reliability: None,
            sort: SortKey::CpcId,
            descending: false,
            offset: 0,
            limit: 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("a price filter or price sort needs a billing mode: choose hourly, monthly or yearly")]
    PriceNeedsBillingMode,
    #[error("limit must be 1..={MAX_PAGE_SIZE}, got {0}")]
    BadLimit(usize),
}

impl Query {
    fn check(&self) -> Result<(), QueryError> {
        if (self.max_unit_price.is_some() || self.sort == SortKey::UnitPrice)
            && self.billing_mode.is_none()
        {
            return Err(QueryError::PriceNeedsBillingMode);
        }
        if self.limit == 0 || self.limit > MAX_PAGE_SIZE {
            return Err(QueryError::BadLimit(self.limit));
        }
        Ok(())
    }

    /// Whether `row` passes every filter but the equality ones the plan already applied.
    fn admits(&self, row: &Packed, model: Option<u32>, region: Option<u32>) -> bool {
        row.offering()
            && row.idle_cards >= self.min_idle_cards.max(1)
            && self.class.is_none_or(|c| c == row.class)
            && self.resource_type.is_none_or(|t| t == row.resource_type)
            && model.is_none_or(|m| m == row.model)
            && region.is_none_or(|r| r == row.region)
            && row.card_memory_gib >= self.min_card_memory_gib
            && row.memory_gib >= self.min_memory_gib
            && row.vcpus >= self.min_vcpus
            && row.storage_gb >= self.min_storage_gb
            && self
                .min_reliability
                .is_none_or(|min| row.reliability.is_some_and(|r| r >= min))
            && match self.billing_mode {
                None => true,
                Some(mode) => row
                    .prices
                    .price(mode)
                    .is_some_and(|p| self.max_unit_price.is_none_or(|max| p <= max)),
            }
    }

    fn key(&self, row: &Packed) -> i64 {
        let v: i64 = match self.sort {
            SortKey::UnitPrice => self
                .billing_mode
                .and_then(|m| row.prices.price(m))
                .map_or(i64::MAX, Money::minor),
            SortKey::IdleCards => i64::from(row.idle_cards),
            SortKey::CardMemory => i64::from(row.card_memory_gib),
            SortKey::Memory => i64::from(row.memory_gib),
            SortKey::Vcpus => i64::from(row.vcpus),
            SortKey::Storage => i64::try_from(row.storage_gb).unwrap_or(i64::MAX),
            SortKey::Reliability => row.reliability.map_or(-1, i64::from),
            SortKey::CpcId => i64::try_from(row.cpcid.sequence()).expect("ten digits fit i64"),
        };
        if self.descending { -v } else { v }
    }
}

/// One result: the listing and what the user compares at a glance; details come from the
/// catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub cpcid: CpcId,
    pub idle_cards: u32,
    /// In the query's billing mode, if it named one.
    pub unit_price: Option<Money>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hits {
    /// Matches over all pages.
    pub total: usize,
    pub items: Vec<Hit>,
}

/// The index over listings, addressed by the catalog's listing number (dense, from 0).
#[derive(Debug, Default, Clone)]
pub struct SearchIndex {
    rows: Vec<Option<Packed>>,
    models: Interner,
    regions: Interner,
    /// Offering rows per model symbol and per region symbol.
    by_model: Vec<BTreeSet<u32>>,
    by_region: Vec<BTreeSet<u32>>,
    offering: BTreeSet<u32>,
}

impl SearchIndex {
    pub fn new() -> SearchIndex {
        SearchIndex::default()
    }

    fn postings(&mut self, at: u32, row: &Packed, insert: bool) {
        for (sets, sym) in [
            (&mut self.by_model, row.model),
            (&mut self.by_region, row.region),
        ] {
            let i = sym as usize;
            if sets.len() <= i {
                sets.resize_with(i + 1, BTreeSet::new);
            }
            if insert {
                sets[i].insert(at);
            } else {
                sets[i].remove(&at);
            }
        }
        if insert {
            self.offering.insert(at);
        } else {
            self.offering.remove(&at);
        }
    }

    /// Puts (or replaces) the row of listing `at`: O(log n).
    pub fn upsert(&mut self, at: u32, row: &Row) {
        let packed = Packed {
            cpcid: row.cpcid,
            listed: row.listed,
            class: row.class,
            resource_type: row.resource_type,
            model: self.models.intern(model_key(&row.model)),
            region: self.regions.intern(region_key(&row.region)),
            idle_cards: row.idle_cards,
            card_memory_gib: row.card_memory_gib,
            memory_gib: row.memory_gib,
            vcpus: row.vcpus,
            storage_gb: row.storage_gb,
            prices: row.prices,
            reliability: row.reliability,
        };
        let i = at as usize;
        if self.rows.len() <= i {
            self.rows.resize(i + 1, None);
        }
        if let Some(old) = self.rows[i].take()
            && old.offering()
        {
            self.postings(at, &old, false);
        }
        if packed.offering() {
            self.postings(at, &packed, true);
        }
        self.rows[i] = Some(packed);
    }

    /// A card of listing `at` changed state: only its idle count changes. O(log n) when it
    /// crosses zero, O(1) otherwise.
    pub fn set_idle_cards(&mut self, at: u32, idle_cards: u32) {
        let Some(row) = self.rows.get_mut(at as usize).and_then(Option::as_mut) else {
            return;
        };
        let was = row.offering();
        row.idle_cards = idle_cards;
        let now = row.offering();
        let row = *row;
        if was != now {
            self.postings(at, &row, now);
        }
    }

    /// The rows the query must look at: the smallest set its equality filters allow.
    fn plan(&self, model: Option<u32>, region: Option<u32>) -> &BTreeSet<u32> {
        let mut best = &self.offering;
        for set in [
            model.and_then(|m| self.by_model.get(m as usize)),
            region.and_then(|r| self.by_region.get(r as usize)),
        ]
        .into_iter()
        .flatten()
        {
            if set.len() < best.len() {
                best = set;
            }
        }
        best
    }

    pub fn search(&self, query: &Query) -> Result<Hits, QueryError> {
        query.check()?;
        let empty = Hits {
            total: 0,
            items: Vec::new(),
        };
        let model = match &query.model {
            Some(m) => match self.models.get(&model_key(m)) {
                Some(sym) => Some(sym),
                None => return Ok(empty),
            },
            None => None,
        };
        let region = match &query.region {
            Some(r) => match self.regions.get(&region_key(r)) {
                Some(sym) => Some(sym),
                None => return Ok(empty),
            },
            None => None,
        };
        let mut matches: Vec<(i64, u64, u32)> = self
            .plan(model, region)
            .iter()
            .filter_map(|&at| {
                let row = self.rows[at as usize].as_ref().expect("indexed rows exist");
                query
                    .admits(row, model, region)
                    .then(|| (query.key(row), row.cpcid.sequence(), at))
            })
            .collect();
        let total = matches.len();
        let end = query.offset.saturating_add(query.limit).min(total);
        if query.offset >= total {
            return Ok(Hits {
                total,
                items: Vec::new(),
            });
        }
        // Only the first `end` need ordering.
        if end < total {
            matches.select_nth_unstable(end);
            matches.truncate(end);
        }
        matches.sort_unstable();
        let items = matches[query.offset..end]
            .iter()
            .map(|&(_, _, at)| {
                let row = self.rows[at as usize].as_ref().expect("indexed rows exist");
                Hit {
                    cpcid: row.cpcid,
                    idle_cards: row.idle_cards,
                    unit_price: query.billing_mode.and_then(|m| row.prices.price(m)),
                }
            })
            .collect();
        Ok(Hits { total, items })
    }
}
