//! The published clusters and their cards (SH-CL-02, -07, -09, -10, -11, -13): the one
//! owner of card state, of the listing state (listed or delisted), of price versions, and of
//! the search index, which it keeps in step with every change.
//!
//! **Card allocation contract** (what the store mirrors in one transaction): a reservation
//! names a listing, a count or a set of cards, and a holder (an order). It succeeds only if
//! the listing is listed and every card it takes is idle — free *and* reported by an agent
//! — at that moment; then all those cards become reserved by the holder, otherwise none
//! changes. Calls are serialized (one `&mut Catalog`, i.e. one lock in memory, or one
//! transaction with `UPDATE … WHERE state = 'idle'` and a row-count check in the store), so
//! two orders racing for the last card give exactly one reservation.

use crate::account::AccountId;
use crate::lease::OrderId;
use crate::listing::{BillingMode, CardSpec, CpcId, ListingSpec, PriceQuote, PriceSheet};
use crate::search::{Hits, Query, QueryError, Row, SearchIndex};
use crate::time::Timestamp;
use crate::validation::Invalid;
use std::collections::HashMap;

/// A card, numbered by the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CardId(pub u32);

/// Who holds a card, independent of whether an agent reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Occupancy {
    Free,
    /// Taken by an order: waiting for approval or, in class A, for the authorization code.
    Reserved(OrderId),
    /// In use by the order's lease (SH-CL-07).
    Busy(OrderId),
}

/// The state of one card as users and suppliers see it (SH-CL-02).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardState {
    Idle,
    Reserved(OrderId),
    Busy(OrderId),
    /// No agent reports the card (never seen, or dropped off). It cannot be leased; if an
    /// order holds it, the holder is kept so evaluation can count the drop-off.
    Offline {
        held_by: Option<OrderId>,
    },
}

#[derive(Debug, Clone)]
struct Card {
    listing: u32,
    spec: CardSpec,
    occupancy: Occupancy,
    reported: bool,
}

impl Card {
    fn idle(&self) -> bool {
        self.reported && self.occupancy == Occupancy::Free
    }

    fn state(&self) -> CardState {
        let holder = match self.occupancy {
            Occupancy::Free => None,
            Occupancy::Reserved(o) | Occupancy::Busy(o) => Some(o),
        };
        match (self.reported, self.occupancy) {
            (false, _) => CardState::Offline { held_by: holder },
            (true, Occupancy::Free) => CardState::Idle,
            (true, Occupancy::Reserved(o)) => CardState::Reserved(o),
            (true, Occupancy::Busy(o)) => CardState::Busy(o),
        }
    }
}

/// Listed or delisted (SH-CL-11). Delisted: hidden from search, no new orders; leases that
/// run go on until they end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListingStatus {
    Listed,
    Delisted { at: Timestamp, reason: String },
}

/// A published cluster.
#[derive(Debug, Clone)]
pub struct Listing {
    cpcid: CpcId,
    supplier: AccountId,
    spec: ListingSpec,
    /// Every price sheet ever published; the last is current, version = index + 1.
    price_history: Vec<PriceSheet>,
    status: ListingStatus,
    reliability: Option<u16>,
    published_at: Timestamp,
    /// Cards `first_card .. first_card + spec.cards.len()`.
    first_card: u32,
    /// Invariant: the number of this listing's cards that are free and reported.
    idle: u32,
}

impl Listing {
    pub fn cpcid(&self) -> CpcId {
        self.cpcid
    }
    pub fn supplier(&self) -> AccountId {
        self.supplier
    }
    /// The spec with the current prices.
    pub fn spec(&self) -> &ListingSpec {
        &self.spec
    }
    pub fn status(&self) -> &ListingStatus {
        &self.status
    }
    pub fn reliability(&self) -> Option<u16> {
        self.reliability
    }
    pub fn published_at(&self) -> Timestamp {
        self.published_at
    }
    pub fn idle_cards(&self) -> u32 {
        self.idle
    }
    pub fn price_version(&self) -> u32 {
        u32::try_from(self.price_history.len()).expect("fewer than 2^32 price changes")
    }
    /// The sheet of `version` (from 1), as a lease made at it was quoted.
    pub fn prices_at(&self, version: u32) -> Option<&PriceSheet> {
        self.price_history.get((version as usize).checked_sub(1)?)
    }
    pub fn card_ids(&self) -> impl Iterator<Item = CardId> + use<> {
        let n = u32::try_from(self.spec.cards.len()).expect("bounded by MAX_CARDS_PER_LISTING");
        (self.first_card..self.first_card + n).map(CardId)
    }
    fn row(&self) -> Row {
        Row {
            cpcid: self.cpcid,
            listed: self.status == ListingStatus::Listed,
            class: self.spec.class,
            resource_type: self.spec.resource_type,
            model: self.spec.model.clone(),
            region: self.spec.region.clone(),
            idle_cards: self.idle,
            card_memory_gib: self.spec.card_memory_gib,
            memory_gib: self.spec.memory_gib,
            vcpus: self.spec.vcpus,
            storage_gb: self.spec.storage_gb(),
            prices: self.spec.prices,
            reliability: self.reliability,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("no published cluster {0}")]
    NotFound(CpcId),
    #[error("cluster {0} belongs to another supplier")]
    NotYours(CpcId),
    #[error("cluster {0} exists already; the store's sequence must not repeat")]
    Duplicate(CpcId),
    #[error("card {index} of node {node} is already listed in {by}; a card belongs to one listing")]
    CardListedTwice { node: String, index: u32, by: CpcId },
    #[error(
        "the cards of a published cluster cannot change; delist it and publish a new listing for the new cards"
    )]
    CardsChanged,
    #[error("cluster {0} is already {1}")]
    AlreadyInStatus(CpcId, &'static str),
    #[error("reliability is per mille: 0..=1000, got {0}")]
    BadReliability(u16),
    #[error("cluster {cpcid} has no {} price; choose one of the modes it offers", mode.as_str())]
    ModeNotOffered { cpcid: CpcId, mode: BillingMode },
}

/// How an order chooses cards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardChoice {
    /// Any idle cards, this many (the lowest-numbered, so a listing fills from one end).
    Count(u32),
    /// Exactly these cards (the user picked them on the card grid).
    Cards(Vec<CardId>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    #[error("no published cluster {0}")]
    NotFound(CpcId),
    #[error("cluster {0} is delisted and takes no orders")]
    Delisted(CpcId),
    #[error("cluster {cpcid} has {idle} idle card(s); {wanted} were asked for")]
    NotEnoughIdle {
        cpcid: CpcId,
        wanted: u32,
        idle: u32,
    },
    #[error("card {0:?} is not idle")]
    CardNotIdle(CardId),
    #[error("card {0:?} is not a card of cluster {1}")]
    NotInListing(CardId, CpcId),
    #[error("an order takes at least one card, each once")]
    BadChoice,
}

/// Listings, cards and the index over them.
#[derive(Debug, Default)]
pub struct Catalog {
    listings: Vec<Listing>,
    by_cpcid: HashMap<CpcId, u32>,
    cards: Vec<Card>,
    /// Cards by (site, node), for agents' reports.
    by_node: HashMap<(String, String), Vec<CardId>>,
    index: SearchIndex,
}

impl Catalog {
    pub fn new() -> Catalog {
        Catalog::default()
    }

    fn at(&self, cpcid: CpcId) -> Result<u32, CatalogError> {
        self.by_cpcid
            .get(&cpcid)
            .copied()
            .ok_or(CatalogError::NotFound(cpcid))
    }

    fn owned(&self, cpcid: CpcId, supplier: AccountId) -> Result<u32, CatalogError> {
        let at = self.at(cpcid)?;
        if self.listings[at as usize].supplier != supplier {
            return Err(CatalogError::NotYours(cpcid));
        }
        Ok(at)
    }

    pub fn listing(&self, cpcid: CpcId) -> Option<&Listing> {
        self.by_cpcid
            .get(&cpcid)
            .map(|&at| &self.listings[at as usize])
    }

    pub fn listings(&self) -> impl Iterator<Item = &Listing> {
        self.listings.iter()
    }

    pub fn card_state(&self, card: CardId) -> Option<CardState> {
        self.cards.get(card.0 as usize).map(Card::state)
    }

    pub fn card_spec(&self, card: CardId) -> Option<&CardSpec> {
        self.cards.get(card.0 as usize).map(|c| &c.spec)
    }

    /// The listing a card belongs to.
    pub fn card_listing(&self, card: CardId) -> Option<CpcId> {
        self.cards
            .get(card.0 as usize)
            .map(|c| self.listings[c.listing as usize].cpcid)
    }

    /// Publishes a cluster (SH-CL-01, -08) as the `sequence`-th listing (the store's
    /// sequence). Its cards start offline until an agent reports them.
    pub fn publish(
        &mut self,
        supplier: AccountId,
        spec: ListingSpec,
        sequence: u64,
        now: Timestamp,
    ) -> Result<CpcId, CatalogError> {
        spec.validate()?;
        let cpcid = CpcId::from_sequence(sequence).ok_or_else(|| {
            Invalid(vec![crate::validation::FieldError {
                path: "sequence".into(),
                fix: format!(
                    "the store's sequence must be 1..={}",
                    crate::listing::MAX_CPCID_SEQUENCE
                ),
            }])
        })?;
        if self.by_cpcid.contains_key(&cpcid) {
            return Err(CatalogError::Duplicate(cpcid));
        }
        for card in &spec.cards {
            if let Some(ids) = self.by_node.get(&(spec.site.clone(), card.node.clone()))
                && let Some(id) = ids
                    .iter()
                    .find(|id| self.cards[id.0 as usize].spec.index == card.index)
            {
                return Err(CatalogError::CardListedTwice {
                    node: card.node.clone(),
                    index: card.index,
                    by: self.listings[self.cards[id.0 as usize].listing as usize].cpcid,
                });
            }
        }
        let at = u32::try_from(self.listings.len()).expect("fewer than 2^32 listings");
        let first_card = u32::try_from(self.cards.len()).expect("fewer than 2^32 cards");
        for (i, card) in spec.cards.iter().enumerate() {
            let id = CardId(first_card + u32::try_from(i).expect("bounded"));
            self.by_node
                .entry((spec.site.clone(), card.node.clone()))
                .or_default()
                .push(id);
            self.cards.push(Card {
                listing: at,
                spec: card.clone(),
                occupancy: Occupancy::Free,
                reported: false,
            });
        }
        let listing = Listing {
            cpcid,
            supplier,
            price_history: vec![spec.prices],
            spec,
            status: ListingStatus::Listed,
            reliability: None,
            published_at: now,
            first_card,
            idle: 0,
        };
        self.index.upsert(at, &listing.row());
        self.listings.push(listing);
        self.by_cpcid.insert(cpcid, at);
        Ok(cpcid)
    }

    /// The supplier changes the listing's information (SH-CL-09) and possibly its prices
    /// (SH-CL-03); the cards stay. A price change makes a new version; running leases keep
    /// their quotes.
    pub fn edit(
        &mut self,
        cpcid: CpcId,
        supplier: AccountId,
        spec: ListingSpec,
    ) -> Result<(), CatalogError> {
        let at = self.owned(cpcid, supplier)?;
        spec.validate()?;
        let listing = &mut self.listings[at as usize];
        if spec.cards != listing.spec.cards || spec.site != listing.spec.site {
            return Err(CatalogError::CardsChanged);
        }
        if spec.prices != listing.spec.prices {
            listing.price_history.push(spec.prices);
        }
        listing.spec = spec;
        let row = listing.row();
        self.index.upsert(at, &row);
        Ok(())
    }

    /// Only the prices; returns the new version.
    pub fn set_prices(
        &mut self,
        cpcid: CpcId,
        supplier: AccountId,
        prices: PriceSheet,
    ) -> Result<u32, CatalogError> {
        let mut spec = self.listings[self.owned(cpcid, supplier)? as usize]
            .spec
            .clone();
        spec.prices = prices;
        self.edit(cpcid, supplier, spec)?;
        Ok(self.listings[self.at(cpcid)? as usize].price_version())
    }

    /// SH-CL-11: no new orders, hidden from search; running leases are untouched.
    pub fn delist(
        &mut self,
        cpcid: CpcId,
        supplier: AccountId,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), CatalogError> {
        let at = self.owned(cpcid, supplier)?;
        let listing = &mut self.listings[at as usize];
        if listing.status != ListingStatus::Listed {
            return Err(CatalogError::AlreadyInStatus(cpcid, "delisted"));
        }
        listing.status = ListingStatus::Delisted {
            at: now,
            reason: reason.trim().to_string(),
        };
        let row = listing.row();
        self.index.upsert(at, &row);
        Ok(())
    }

    pub fn relist(&mut self, cpcid: CpcId, supplier: AccountId) -> Result<(), CatalogError> {
        let at = self.owned(cpcid, supplier)?;
        let listing = &mut self.listings[at as usize];
        if listing.status == ListingStatus::Listed {
            return Err(CatalogError::AlreadyInStatus(cpcid, "listed"));
        }
        listing.status = ListingStatus::Listed;
        let row = listing.row();
        self.index.upsert(at, &row);
        Ok(())
    }

    /// The evaluation's score (per mille) that users filter and sort on.
    pub fn set_reliability(&mut self, cpcid: CpcId, per_mille: u16) -> Result<(), CatalogError> {
        if per_mille > 1000 {
            return Err(CatalogError::BadReliability(per_mille));
        }
        let at = self.at(cpcid)?;
        let listing = &mut self.listings[at as usize];
        listing.reliability = Some(per_mille);
        let row = listing.row();
        self.index.upsert(at, &row);
        Ok(())
    }

    /// The current price of `mode`, as an order would be quoted.
    pub fn quote(&self, cpcid: CpcId, mode: BillingMode) -> Result<PriceQuote, CatalogError> {
        let listing = &self.listings[self.at(cpcid)? as usize];
        let unit_price = listing
            .spec
            .prices
            .price(mode)
            .ok_or(CatalogError::ModeNotOffered { cpcid, mode })?;
        Ok(PriceQuote {
            version: listing.price_version(),
            mode,
            unit_price,
        })
    }

    pub fn search(&self, query: &Query) -> Result<Hits, QueryError> {
        self.index.search(query)
    }

    /// The one place a card changes: keeps the listing's idle count and the index exact.
    /// O(1), plus O(log n) in the index when the idle count crosses zero.
    fn set_card(&mut self, card: CardId, occupancy: Occupancy, reported: bool) {
        let c = &mut self.cards[card.0 as usize];
        let was_idle = c.idle();
        c.occupancy = occupancy;
        c.reported = reported;
        let is_idle = c.idle();
        if was_idle == is_idle {
            return;
        }
        let at = c.listing;
        let listing = &mut self.listings[at as usize];
        if is_idle {
            listing.idle += 1;
        } else {
            listing.idle -= 1;
        }
        self.index.set_idle_cards(at, listing.idle);
    }

    /// An agent's report of a node: the device indexes it sees. Cards of the node that are
    /// not in `present` go offline; those in it come online. Returns the cards that dropped
    /// off while an order held them (GPU drop-off, 掉卡, for the evaluation).
    /// O(cards on the node).
    pub fn report_node(
        &mut self,
        site: &str,
        node: &str,
        present: &[u32],
    ) -> Vec<(CardId, OrderId)> {
        let Some(ids) = self
            .by_node
            .get(&(site.to_string(), node.to_string()))
            .cloned()
        else {
            return Vec::new();
        };
        let mut dropped = Vec::new();
        for id in ids {
            let card = &self.cards[id.0 as usize];
            let reported = present.contains(&card.spec.index);
            let occupancy = card.occupancy;
            if card.reported
                && !reported
                && let Occupancy::Reserved(o) | Occupancy::Busy(o) = occupancy
            {
                dropped.push((id, o));
            }
            self.set_card(id, occupancy, reported);
        }
        dropped
    }

    /// Reserves cards for `holder` under the contract in the module documentation.
    pub fn reserve(
        &mut self,
        cpcid: CpcId,
        choice: &CardChoice,
        holder: OrderId,
    ) -> Result<Vec<CardId>, AllocationError> {
        let at = *self
            .by_cpcid
            .get(&cpcid)
            .ok_or(AllocationError::NotFound(cpcid))?;
        let listing = &self.listings[at as usize];
        if listing.status != ListingStatus::Listed {
            return Err(AllocationError::Delisted(cpcid));
        }
        let taken: Vec<CardId> = match choice {
            CardChoice::Count(0) => return Err(AllocationError::BadChoice),
            CardChoice::Count(n) => {
                if listing.idle < *n {
                    return Err(AllocationError::NotEnoughIdle {
                        cpcid,
                        wanted: *n,
                        idle: listing.idle,
                    });
                }
                listing
                    .card_ids()
                    .filter(|id| self.cards[id.0 as usize].idle())
                    .take(*n as usize)
                    .collect()
            }
            CardChoice::Cards(ids) => {
                let mut sorted = ids.clone();
                sorted.sort_unstable();
                sorted.dedup();
                if sorted.is_empty() || sorted.len() != ids.len() {
                    return Err(AllocationError::BadChoice);
                }
                for id in &sorted {
                    match self.cards.get(id.0 as usize) {
                        Some(c) if c.listing == at => {
                            if !c.idle() {
                                return Err(AllocationError::CardNotIdle(*id));
                            }
                        }
                        _ => return Err(AllocationError::NotInListing(*id, cpcid)),
                    }
                }
                sorted
            }
        };
        // Every check passed: now, and only now, change state (all or nothing).
        for id in &taken {
            self.set_card(*id, Occupancy::Reserved(holder), true);
        }
        Ok(taken)
    }

    /// Reserved → busy for `holder`'s cards (class A after the authorization code, class B
    /// when the lease starts). A card that is offline stays offline but is marked busy.
    pub(crate) fn occupy(&mut self, cards: &[CardId], holder: OrderId) {
        for id in cards {
            let c = &self.cards[id.0 as usize];
            if c.occupancy == Occupancy::Reserved(holder) {
                let reported = c.reported;
                self.set_card(*id, Occupancy::Busy(holder), reported);
            }
        }
    }

    /// Frees `holder`'s cards; cards another holder took are not touched.
    pub(crate) fn free(&mut self, cards: &[CardId], holder: OrderId) {
        for id in cards {
            let c = &self.cards[id.0 as usize];
            if matches!(c.occupancy, Occupancy::Reserved(h) | Occupancy::Busy(h) if h == holder) {
                let reported = c.reported;
                self.set_card(*id, Occupancy::Free, reported);
            }
        }
    }
}
