//! What the store keeps of a [`Market`] and how a market comes back from it.
//!
//! The store is the source of truth; the `Market` in memory is a cache of it that the server
//! rebuilds at start with [`Market::restore`]. After every operation the server takes the
//! operation's effects with [`Market::take_changes`] and writes them in one store
//! transaction before it answers (write-ahead): an acknowledged lease, ledger transaction or
//! card state is never lost. The changes are rows, not a diff to interpret: every changed
//! listing, card, order, lease and budget as it is now, and the new ledger transactions. A
//! changed card also carries the state it had when last stored, which the store compares
//! before it writes — the card allocation contract in SQL (`catalog` module documentation).
//!
//! Changes are taken after every call, whether it returned `Ok` or `Err`: some refusals
//! change state too (a wrong authorization code costs an attempt; approving a lapsed order
//! frees its cards). If the store refuses or fails a write, the market in memory is ahead of
//! the truth: the server must drop it and restore it from the store, never retry the same
//! changes on it.

use crate::account::AccountId;
use crate::billing::budget::BudgetRow;
use crate::billing::close::Commission;
use crate::billing::ledger::{TenantId, Transaction};
use crate::catalog::{CardId, CatalogError, ListingStatus, Occupancy};
use crate::evaluation::{Evaluation, Monitoring};
use crate::keyed::{HashedIdentifier, KeyedHasher};
use crate::lease::{Lease, LeaseId, LeaseState, Order, OrderId, OrderState};
use crate::listing::{CardSpec, ClusterClass, CpcId, ListingSpec, PriceQuote, PriceSheet};
use crate::market::Market;
use crate::money::Money;
use crate::time::Timestamp;

/// A published cluster as stored. `spec.cards` is empty: the cards are [`CardRow`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingRow {
    pub cpcid: CpcId,
    pub supplier: AccountId,
    /// With the current prices (the last of `price_history`).
    pub spec: ListingSpec,
    /// Every price version, oldest first; version = position + 1.
    pub price_history: Vec<PriceSheet>,
    pub status: ListingStatus,
    pub reliability: Option<u16>,
    pub published_at: Timestamp,
    /// Its cards are numbered from here, in the order of the spec.
    pub first_card: u32,
}

/// One card as stored: who holds it and whether an agent reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardRow {
    pub id: CardId,
    pub listing: CpcId,
    pub spec: CardSpec,
    pub occupancy: Occupancy,
    pub reported: bool,
}

/// A lease with the fields the domain keeps to itself (code digest, metering state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    pub id: LeaseId,
    pub user: AccountId,
    pub tenant: TenantId,
    pub supplier: AccountId,
    pub listing: CpcId,
    pub class: ClusterClass,
    pub cards: Vec<CardId>,
    pub quote: PriceQuote,
    pub started_at: Timestamp,
    pub ends_at: Option<Timestamp>,
    pub state: LeaseState,
    /// Class A: the keyed hash of the authorization code.
    pub authorization: Option<HashedIdentifier>,
    /// Hourly metering has charged up to here.
    pub metered_until: Timestamp,
    pub card_seconds: u64,
    pub charged: Money,
    /// Class B: what monitoring saw so far.
    pub monitoring: Monitoring,
    /// Class B, once ended: its evaluation.
    pub evaluation: Option<Evaluation>,
}

impl LeaseRow {
    fn of(l: &Lease) -> LeaseRow {
        LeaseRow {
            id: l.id,
            user: l.user,
            tenant: l.tenant.clone(),
            supplier: l.supplier,
            listing: l.listing,
            class: l.class,
            cards: l.cards.clone(),
            quote: l.quote,
            started_at: l.started_at,
            ends_at: l.ends_at,
            state: l.state.clone(),
            authorization: l.authorization.clone(),
            metered_until: l.metered_until,
            card_seconds: l.card_seconds,
            charged: l.charged,
            monitoring: l.monitoring.clone(),
            evaluation: l.evaluation.clone(),
        }
    }

    fn into_lease(self) -> Lease {
        Lease {
            id: self.id,
            user: self.user,
            tenant: self.tenant,
            supplier: self.supplier,
            listing: self.listing,
            class: self.class,
            cards: self.cards,
            quote: self.quote,
            started_at: self.started_at,
            ends_at: self.ends_at,
            state: self.state,
            authorization: self.authorization,
            metered_until: self.metered_until,
            card_seconds: self.card_seconds,
            charged: self.charged,
            monitoring: self.monitoring,
            evaluation: self.evaluation,
        }
    }
}

/// Everything the store keeps of a market: what [`Market::state`] gives and
/// [`Market::restore`] takes. Rows are in id order (budgets by tenant).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MarketState {
    pub listings: Vec<ListingRow>,
    pub cards: Vec<CardRow>,
    pub orders: Vec<Order>,
    pub leases: Vec<LeaseRow>,
    /// The whole ledger, by transaction id.
    pub transactions: Vec<Transaction>,
    pub budgets: Vec<BudgetRow>,
    /// The next order number the market will give.
    pub next_order: u64,
}

/// Whether a row is new since the last take (the store inserts it, and a row already there
/// means another writer made it) or changed (the store updates it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated,
}

/// A card's change: its state when last stored (`None`: a new card) and now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardChange {
    pub before: Option<(Occupancy, bool)>,
    pub after: CardRow,
}

/// The effects of the operations since the last take, to be written in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MarketChanges {
    pub listings: Vec<(Change, ListingRow)>,
    pub cards: Vec<CardChange>,
    pub orders: Vec<(Change, Order)>,
    pub leases: Vec<(Change, LeaseRow)>,
    /// New ledger transactions, by id.
    pub transactions: Vec<Transaction>,
    pub budgets: Vec<BudgetRow>,
    pub next_order: u64,
}

impl MarketChanges {
    pub fn is_empty(&self) -> bool {
        self.listings.is_empty()
            && self.cards.is_empty()
            && self.orders.is_empty()
            && self.leases.is_empty()
            && self.transactions.is_empty()
            && self.budgets.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    #[error("stored market is inconsistent: {0}")]
    Inconsistent(String),
    #[error("stored listing cannot be published again: {0}")]
    Catalog(#[from] CatalogError),
}

fn change(created: bool) -> Change {
    if created {
        Change::Created
    } else {
        Change::Updated
    }
}

impl Market {
    /// The effects of every operation since the last call (or the restore), which count as
    /// stored from now on. O(changed rows).
    pub fn take_changes(&mut self) -> MarketChanges {
        let dirty = std::mem::take(&mut self.catalog_mut().dirty);
        let catalog = self.catalog();
        let listings = dirty
            .listings
            .into_iter()
            .map(|(at, created)| (change(created), catalog.listing_row(at)))
            .collect();
        let cards = dirty
            .cards
            .into_iter()
            .map(|(id, before)| CardChange {
                before,
                after: catalog.card_row(id),
            })
            .collect();
        let orders = std::mem::take(&mut self.dirty_orders)
            .into_iter()
            .map(|(id, created)| {
                (
                    change(created),
                    self.order(id).expect("a changed order exists").clone(),
                )
            })
            .collect();
        let leases = std::mem::take(&mut self.dirty_leases)
            .into_iter()
            .map(|(id, created)| {
                (
                    change(created),
                    LeaseRow::of(self.lease(id).expect("a changed lease exists")),
                )
            })
            .collect();
        let transactions = self.ledger_mut().take_new();
        let tenants = std::mem::take(&mut self.budgets_mut().dirty);
        let budgets = tenants
            .iter()
            .filter_map(|t| self.budgets().row(t))
            .collect();
        MarketChanges {
            listings,
            cards,
            orders,
            leases,
            transactions,
            budgets,
            next_order: self.next_order(),
        }
    }

    /// The whole market as the store keeps it. O(everything): for tests and checks.
    pub fn state(&self) -> MarketState {
        let catalog = self.catalog();
        MarketState {
            listings: (0..catalog.listing_count())
                .map(|at| catalog.listing_row(at))
                .collect(),
            cards: (0..catalog.card_count())
                .map(|id| catalog.card_row(CardId(id)))
                .collect(),
            orders: self.orders().cloned().collect(),
            leases: self.leases().map(LeaseRow::of).collect(),
            transactions: self.ledger().transactions().to_vec(),
            budgets: self.budgets().rows(),
            next_order: self.next_order(),
        }
    }

    /// Rebuilds a market from what the store kept: listings are published again with their
    /// card numbers, the ledger is posted again (so every transaction is checked to balance
    /// and the balances follow), cards, orders, leases and budgets are put back. Refused when
    /// the rows contradict each other (a card held by an unknown order, a gap in the card or
    /// transaction numbers). The restored market has no changes to take.
    pub fn restore(
        hasher: KeyedHasher,
        commission: Commission,
        state: MarketState,
    ) -> Result<Market, RestoreError> {
        let bad = |m: String| RestoreError::Inconsistent(m);
        let mut market = Market::new(hasher, commission);
        let mut listings = state.listings;
        listings.sort_unstable_by_key(|l| l.first_card);
        let mut cards = state.cards;
        cards.sort_unstable_by_key(|c| c.id);
        if cards.iter().enumerate().any(|(i, c)| c.id.0 as usize != i) {
            return Err(bad("card numbers have a gap".into()));
        }
        let mut rest = cards.as_slice();
        for (i, listing) in listings.iter().enumerate() {
            let end = listings
                .get(i + 1)
                .map_or(cards.len(), |next| next.first_card as usize);
            let n = end
                .checked_sub(listing.first_card as usize)
                .ok_or_else(|| bad(format!("{} has overlapping cards", listing.cpcid)))?;
            let (mine, later) = rest.split_at(n.min(rest.len()));
            if mine.len() != n || mine.iter().any(|c| c.listing != listing.cpcid) {
                return Err(bad(format!(
                    "{} has cards of another listing",
                    listing.cpcid
                )));
            }
            rest = later;
            let specs = mine.iter().map(|c| c.spec.clone()).collect();
            market
                .catalog_mut()
                .restore_listing(listing.clone(), specs)?;
        }
        let orders: std::collections::BTreeMap<OrderId, Order> =
            state.orders.into_iter().map(|o| (o.id, o)).collect();
        for card in &cards {
            if let Occupancy::Reserved(o) | Occupancy::Busy(o) = card.occupancy {
                let held = orders.get(&o).is_some_and(|order| {
                    matches!(
                        order.state,
                        OrderState::AwaitingApproval | OrderState::Leased(_)
                    )
                });
                if !held {
                    return Err(bad(format!(
                        "card {:?} is held by order {o:?}, which holds no cards",
                        card.id
                    )));
                }
            }
            market
                .catalog_mut()
                .set_card(card.id, card.occupancy, card.reported);
        }
        let mut transactions = state.transactions;
        transactions.sort_unstable_by_key(|t| t.id);
        for tx in transactions {
            let posted = market
                .ledger_mut()
                .post(&tx.key, tx.at, &tx.memo, tx.postings)
                .map_err(|e| bad(format!("transaction {:?}: {e}", tx.id)))?;
            if posted != crate::billing::ledger::Posted::New(tx.id) {
                return Err(bad(format!(
                    "transaction {:?} ({}) is numbered out of order or repeats a key",
                    tx.id, tx.key
                )));
            }
        }
        for row in state.budgets {
            market.budgets_mut().restore(row);
        }
        let max_order = orders.keys().next_back().map_or(0, |o| o.0);
        if state.next_order <= max_order {
            return Err(bad(format!(
                "the next order number {} is not after order {max_order}",
                state.next_order
            )));
        }
        for lease in state.leases {
            if !orders.contains_key(&lease.id.order()) {
                return Err(bad(format!("lease {:?} has no order", lease.id)));
            }
            market.restore_lease(lease.into_lease());
        }
        market.restore_orders(orders, state.next_order);
        // Everything restored is what the store holds: nothing to write back.
        market.take_changes();
        Ok(market)
    }
}
