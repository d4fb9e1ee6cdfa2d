//! The marketplace as one object the server calls (under one lock, or one store
//! transaction per call): the catalog with its allocator, orders and leases, the ledger and
//! the budgets, and the rules that span them — admission of an order, the start of billing
//! with a lease, access with the authorization code, metering with budget exhaustion,
//! expiry, release and the month's close.
//!
//! Every method takes the time; the ones that make secrets take the caller's randomness.
//! Methods that change state return what the server must persist and announce: usage
//! records, budget events, the one-time authorization code for the supplier.

use crate::account::AccountId;
use crate::billing::budget::{BudgetEvent, Budgets, Refusal};
use crate::billing::close::{self, CloseError, Commission, MonthClose};
use crate::billing::ledger::{Ledger, TenantId};
use crate::billing::rate;
use crate::billing::usage::{UsageKind, UsageRecord};
use crate::catalog::{AllocationError, CardChoice, CardId, CardState, Catalog, CatalogError};
use crate::evaluation::{Evaluation, LeasedCard, Monitoring, NodeSample, next_reliability};
use crate::keyed::{IdentifierKind, KeyedHasher};
use crate::lease::{
    APPROVAL_WINDOW_S, AccessError, EndReason, Lease, LeaseId, LeaseState,
    MAX_AUTHORIZATION_ATTEMPTS, Order, OrderId, OrderState, authorization_code,
};
use crate::listing::{Approval, BillingMode, CardSpec, ClusterClass, CpcId, MAX_CARDS_PER_LISTING};
use crate::money::Money;
use crate::time::{Month, Timestamp};
use std::collections::{BTreeMap, BTreeSet};

/// The longest prepaid term, in periods (months or years).
pub const MAX_PREPAID_PERIODS: u32 = 36;

/// What a user asks for (SH-CL-15, -04).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRequest {
    pub user: AccountId,
    pub tenant: TenantId,
    pub listing: CpcId,
    pub cards: CardChoice,
    pub mode: BillingMode,
    /// Months or years of a prepaid term (1..=36); 0 for hourly.
    pub periods: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Allocation(#[from] AllocationError),
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("an hourly lease has no term: give 0 periods")]
    HourlyHasNoTerm,
    #[error("a {} lease needs 1..={MAX_PREPAID_PERIODS} periods, got {periods}", mode.as_str())]
    BadTerm { periods: u32, mode: BillingMode },
    #[error("no order {0:?}")]
    UnknownOrder(OrderId),
    #[error("order {0:?} is for another supplier's cluster")]
    NotYourListing(OrderId),
    #[error("order {0:?} is not yours")]
    NotYourOrder(OrderId),
    #[error(
        "order {0:?} waited longer than a day for approval and lapsed; the user may order again"
    )]
    Lapsed(OrderId),
    #[error("order {0:?} is not waiting for approval")]
    NotAwaitingApproval(OrderId),
    #[error("a rejection needs a reason the user can act on")]
    ReasonRequired,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    #[error("no lease {0:?}")]
    Unknown(LeaseId),
    #[error("lease {0:?} is not yours")]
    NotYours(LeaseId),
    #[error("lease {0:?} has ended")]
    Ended(LeaseId),
    #[error(
        "lease {0:?} is class A: tasks run over SSH, not through the platform, and are not metered"
    )]
    NotClassB(LeaseId),
    #[error("{0:?} is not a task usage kind")]
    NotTaskKind(UsageKind),
    #[error("task usage must lie within one calendar month inside the lease's time")]
    BadInterval,
    #[error(transparent)]
    Access(#[from] AccessError),
}

/// What the server persists and announces when a lease starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseStarted {
    pub lease: LeaseId,
    /// Class A: the code, shown once to the supplier, who gives it to the user when they
    /// agree (SH-CL-06). Only its keyed hash is kept.
    pub authorization_code: Option<String>,
    /// The prepaid term's charge, if any.
    pub usage: Vec<UsageRecord>,
    pub events: Vec<BudgetEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderPlaced {
    AwaitingApproval(OrderId),
    Leased(LeaseStarted),
}

/// What the user sees after entering the authorization code, and what the server passes
/// to the agent to create the lease's SSH account limited to these devices (SH-CL-17).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub lease: LeaseId,
    pub site: String,
    pub cards: Vec<(CardId, CardSpec)>,
    pub usage_method: Option<String>,
}

/// What one metering run (or a release) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeterRun {
    pub usage: Vec<UsageRecord>,
    pub events: Vec<BudgetEvent>,
    /// Leases ended by this run, for the server to revoke access and end their processes.
    pub ended: Vec<(LeaseId, EndReason)>,
    /// Orders whose approval window passed; their cards are free again.
    pub lapsed: Vec<OrderId>,
}

#[derive(Debug)]
pub struct Market {
    catalog: Catalog,
    orders: BTreeMap<OrderId, Order>,
    leases: BTreeMap<LeaseId, Lease>,
    ledger: Ledger,
    budgets: Budgets,
    hasher: KeyedHasher,
    commission: Commission,
    next_order: u64,
    /// Orders and leases changed since the store last took the changes (`persist`), each
    /// with whether it was created since.
    pub(crate) dirty_orders: BTreeMap<OrderId, bool>,
    pub(crate) dirty_leases: BTreeMap<LeaseId, bool>,
    /// Evaluated leases by listing, oldest first: the listing's evaluation history.
    evaluated: BTreeMap<CpcId, Vec<LeaseId>>,
}

impl Market {
    pub fn new(hasher: KeyedHasher, commission: Commission) -> Market {
        Market {
            catalog: Catalog::new(),
            orders: BTreeMap::new(),
            leases: BTreeMap::new(),
            ledger: Ledger::new(),
            budgets: Budgets::new(),
            hasher,
            commission,
            next_order: 1,
            dirty_orders: BTreeMap::new(),
            dirty_leases: BTreeMap::new(),
            evaluated: BTreeMap::new(),
        }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }
    /// Suppliers' operations (publish, edit, prices, delist, agents' reports). Orders go
    /// through [`Market::place_order`], never `Catalog::reserve` directly.
    pub fn catalog_mut(&mut self) -> &mut Catalog {
        &mut self.catalog
    }
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }
    /// Top-ups, credits and payouts; every operation of the ledger balances.
    pub fn ledger_mut(&mut self) -> &mut Ledger {
        &mut self.ledger
    }
    pub fn budgets(&self) -> &Budgets {
        &self.budgets
    }
    pub fn budgets_mut(&mut self) -> &mut Budgets {
        &mut self.budgets
    }
    pub fn order(&self, id: OrderId) -> Option<&Order> {
        self.orders.get(&id)
    }
    pub fn lease(&self, id: LeaseId) -> Option<&Lease> {
        self.leases.get(&id)
    }
    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.leases.values()
    }
    /// Every order, by id.
    pub fn orders(&self) -> impl Iterator<Item = &Order> {
        self.orders.values()
    }
    /// The number the next order will get.
    pub fn next_order(&self) -> u64 {
        self.next_order
    }
    pub(crate) fn restore_lease(&mut self, lease: Lease) {
        if lease.evaluation.is_some() {
            self.evaluated
                .entry(lease.listing)
                .or_default()
                .push(lease.id);
        }
        self.leases.insert(lease.id, lease);
    }

    /// The evaluations of a listing's ended class B leases, newest first (SH-CL-18).
    pub fn evaluations(&self, listing: CpcId) -> impl Iterator<Item = &Evaluation> {
        self.evaluated
            .get(&listing)
            .into_iter()
            .flat_map(|ids| ids.iter().rev())
            .filter_map(|id| self.leases.get(id).and_then(|l| l.evaluation.as_ref()))
    }

    /// One monitoring sample of a running class B lease's nodes (`evaluation`): the
    /// server takes it from its agents' reports each metering run and before a release.
    /// Class A leases are not monitored (003 §6.5.7), nor are leases not active.
    pub fn observe(&mut self, id: LeaseId, nodes: &[NodeSample]) -> Result<(), LeaseError> {
        let lease = self.leases.get(&id).ok_or(LeaseError::Unknown(id))?;
        if lease.class != ClusterClass::B {
            return Err(LeaseError::NotClassB(id));
        }
        if !matches!(lease.state, LeaseState::Active { .. }) {
            return Err(LeaseError::Ended(id));
        }
        let cards: Vec<LeasedCard<'_>> = lease
            .cards
            .iter()
            .filter_map(|c| {
                let spec = self.catalog.card_spec(*c)?;
                Some(LeasedCard {
                    id: *c,
                    node: spec.node.as_str(),
                    index: spec.index,
                    reported: !matches!(
                        self.catalog.card_state(*c),
                        Some(CardState::Offline { .. }) | None
                    ),
                })
            })
            .collect();
        let mut monitoring = lease.monitoring.clone();
        monitoring.observe(&cards, nodes);
        let lease = self.leases.get_mut(&id).expect("looked up above");
        lease.monitoring = monitoring;
        self.dirty_leases.entry(id).or_insert(false);
        Ok(())
    }
    pub(crate) fn restore_orders(&mut self, orders: BTreeMap<OrderId, Order>, next_order: u64) {
        self.orders = orders;
        self.next_order = next_order;
    }

    /// The least the tenant must have (and have left of its budget) to start the order: a
    /// prepaid term in full, or one hour of the cards for hourly.
    fn needed(mode: BillingMode, unit_price: Money, cards: u32, periods: u32) -> Money {
        match mode {
            BillingMode::Hourly => {
                rate::hourly_cumulative(unit_price, u64::from(cards) * rate::SECONDS_PER_HOUR)
            }
            BillingMode::Monthly | BillingMode::Yearly => {
                rate::prepaid_term(unit_price, cards, periods)
            }
        }
    }

    /// An order (SH-CL-16): checks term, price, budget and funds, then takes the cards under
    /// the catalog's allocation contract. With automatic approval the lease starts at once.
    pub fn place_order(
        &mut self,
        req: OrderRequest,
        entropy: [u8; 32],
        now: Timestamp,
    ) -> Result<OrderPlaced, OrderError> {
        match (req.mode, req.periods) {
            (BillingMode::Hourly, 0) => {}
            (BillingMode::Hourly, _) => return Err(OrderError::HourlyHasNoTerm),
            (mode, p) if p == 0 || p > MAX_PREPAID_PERIODS => {
                return Err(OrderError::BadTerm { periods: p, mode });
            }
            _ => {}
        }
        let quote = self.catalog.quote(req.listing, req.mode)?;
        let listing = self
            .catalog
            .listing(req.listing)
            .ok_or(CatalogError::NotFound(req.listing))?;
        let (supplier, class, approval) = (
            listing.supplier(),
            listing.spec().class,
            listing.spec().approval,
        );
        let count = match &req.cards {
            CardChoice::Count(n) => *n as usize,
            CardChoice::Cards(ids) => ids.len(),
        };
        // Bounded before any amount is computed from it.
        if count == 0 || count > MAX_CARDS_PER_LISTING {
            return Err(AllocationError::BadChoice.into());
        }
        let count = u32::try_from(count).expect("bounded by MAX_CARDS_PER_LISTING");
        let needed = Self::needed(req.mode, quote.unit_price, count, req.periods);
        self.budgets.admit(&self.ledger, &req.tenant, needed, now)?;
        let id = OrderId(self.next_order);
        let cards = self.catalog.reserve(req.listing, &req.cards, id)?;
        self.next_order += 1;
        self.dirty_orders.insert(id, true);
        self.orders.insert(
            id,
            Order {
                id,
                user: req.user,
                tenant: req.tenant,
                supplier,
                listing: req.listing,
                class,
                cards,
                quote,
                periods: req.periods,
                placed_at: now,
                state: OrderState::AwaitingApproval,
            },
        );
        match approval {
            Approval::Automatic => Ok(OrderPlaced::Leased(self.start_lease(id, entropy, now)?)),
            Approval::BySupplier => Ok(OrderPlaced::AwaitingApproval(id)),
        }
    }

    fn pending(&self, supplier: AccountId, id: OrderId) -> Result<&Order, OrderError> {
        let order = self.orders.get(&id).ok_or(OrderError::UnknownOrder(id))?;
        if order.supplier != supplier {
            return Err(OrderError::NotYourListing(id));
        }
        if order.state != OrderState::AwaitingApproval {
            return Err(OrderError::NotAwaitingApproval(id));
        }
        Ok(order)
    }

    /// The supplier approves: admission is checked again (funds may have moved), then the
    /// lease starts.
    pub fn approve_order(
        &mut self,
        supplier: AccountId,
        id: OrderId,
        entropy: [u8; 32],
        now: Timestamp,
    ) -> Result<LeaseStarted, OrderError> {
        let order = self.pending(supplier, id)?;
        if approval_window_passed(order, now) {
            self.close_order(id, OrderState::Lapsed);
            return Err(OrderError::Lapsed(id));
        }
        let needed = Self::needed(
            order.quote.mode,
            order.quote.unit_price,
            card_count(&order.cards),
            order.periods,
        );
        self.budgets
            .admit(&self.ledger, &order.tenant, needed, now)?;
        self.start_lease(id, entropy, now)
    }

    /// The supplier refuses; the held cards are freed.
    pub fn reject_order(
        &mut self,
        supplier: AccountId,
        id: OrderId,
        reason: &str,
    ) -> Result<(), OrderError> {
        self.pending(supplier, id)?;
        if reason.trim().is_empty() {
            return Err(OrderError::ReasonRequired);
        }
        self.close_order(
            id,
            OrderState::Rejected {
                reason: reason.trim().to_string(),
            },
        );
        Ok(())
    }

    /// The user withdraws an order still waiting for approval; the held cards are freed.
    pub fn cancel_order(&mut self, user: AccountId, id: OrderId) -> Result<(), OrderError> {
        let order = self.orders.get(&id).ok_or(OrderError::UnknownOrder(id))?;
        if order.user != user {
            return Err(OrderError::NotYourOrder(id));
        }
        if order.state != OrderState::AwaitingApproval {
            return Err(OrderError::NotAwaitingApproval(id));
        }
        self.close_order(id, OrderState::Cancelled);
        Ok(())
    }

    /// A pending order ends without a lease; its cards go back.
    fn close_order(&mut self, id: OrderId, state: OrderState) {
        let order = self.orders.get_mut(&id).expect("closing a known order");
        order.state = state;
        self.dirty_orders.entry(id).or_insert(false);
        let cards = order.cards.clone();
        self.catalog.free(&cards, id);
    }

    /// Order → lease; billing starts (SH-CL-16).
    fn start_lease(
        &mut self,
        id: OrderId,
        entropy: [u8; 32],
        now: Timestamp,
    ) -> Result<LeaseStarted, OrderError> {
        let order = self
            .orders
            .get_mut(&id)
            .expect("the caller holds a pending order");
        let lease_id = LeaseId::from(id);
        order.state = OrderState::Leased(lease_id);
        self.dirty_orders.entry(id).or_insert(false);
        self.dirty_leases.insert(lease_id, true);
        let order = order.clone();
        let code = (order.class == ClusterClass::A).then(|| authorization_code(&entropy));
        let state = match order.class {
            ClusterClass::A => LeaseState::AwaitingAccess {
                attempts_left: MAX_AUTHORIZATION_ATTEMPTS,
            },
            ClusterClass::B => LeaseState::Active { since: now },
        };
        let ends_at = order
            .quote
            .mode
            .months_per_period()
            .map(|m| now.plus_months(m * order.periods));
        let mut lease = Lease {
            id: lease_id,
            user: order.user,
            tenant: order.tenant.clone(),
            supplier: order.supplier,
            listing: order.listing,
            class: order.class,
            cards: order.cards.clone(),
            quote: order.quote,
            started_at: now,
            ends_at,
            state,
            authorization: code
                .as_ref()
                .map(|c| self.hasher.hash(IdentifierKind::AuthorizationCode, c)),
            metered_until: now,
            card_seconds: 0,
            charged: Money::ZERO,
            monitoring: Monitoring::default(),
            evaluation: None,
        };
        if order.class == ClusterClass::B {
            // Class B is busy from the start; monitoring (Irmds) follows it from here.
            self.catalog.occupy(&order.cards, id);
        }
        let mut usage = Vec::new();
        let mut events = Vec::new();
        if let (Some(end), true) = (ends_at, order.periods > 0) {
            let amount =
                rate::prepaid_term(order.quote.unit_price, lease.card_count(), order.periods);
            lease.charged = amount;
            lease.metered_until = end;
            let key = format!("prepaid:lease-{}", lease_id.0);
            self.ledger
                .charge(&order.tenant, amount, &key, now, "prepaid term")
                .expect("a prepaid charge is positive and bounded by MAX_UNIT_PRICE");
            events.extend(self.budgets.record_spend(&order.tenant, amount, now));
            usage.push(record(
                &lease,
                UsageKind::PrepaidCardPeriods,
                u64::from(lease.card_count()) * u64::from(order.periods),
                now,
                end,
                amount,
            ));
        }
        self.leases.insert(lease_id, lease);
        Ok(LeaseStarted {
            lease: lease_id,
            authorization_code: code,
            usage,
            events,
        })
    }

    /// The user enters the supplier's code (SH-CL-06): on success the access method is
    /// returned and the cards turn busy at that moment (SH-CL-07, -10).
    pub fn enter_authorization_code(
        &mut self,
        user: AccountId,
        id: LeaseId,
        code: &str,
        now: Timestamp,
    ) -> Result<Access, LeaseError> {
        let lease = self.leases.get_mut(&id).ok_or(LeaseError::Unknown(id))?;
        // A wrong code changes the lease too (one attempt fewer): it must be stored, or a
        // restart would give the guesser their attempts back.
        self.dirty_leases.entry(id).or_insert(false);
        lease.enter_code(user, code, &self.hasher, now)?;
        let cards = lease.cards.clone();
        let listing = lease.listing;
        self.catalog.occupy(&cards, id.order());
        let spec = self
            .catalog
            .listing(listing)
            .expect("a lease's listing exists")
            .spec();
        Ok(Access {
            lease: id,
            site: spec.site.clone(),
            usage_method: spec.usage.clone(),
            cards: cards
                .iter()
                .map(|c| {
                    (
                        *c,
                        self.catalog
                            .card_spec(*c)
                            .expect("a lease's cards exist")
                            .clone(),
                    )
                })
                .collect(),
        })
    }

    /// The supplier issues a new code, e.g. after the lease locked on wrong codes.
    pub fn reissue_authorization_code(
        &mut self,
        supplier: AccountId,
        id: LeaseId,
        entropy: [u8; 32],
    ) -> Result<String, LeaseError> {
        let lease = self.leases.get_mut(&id).ok_or(LeaseError::Unknown(id))?;
        if lease.supplier != supplier {
            return Err(LeaseError::NotYours(id));
        }
        self.dirty_leases.entry(id).or_insert(false);
        lease
            .reissue_code(&entropy, &self.hasher)
            .ok_or(LeaseError::Access(AccessError::NotAwaitingAccess(id)))
    }

    /// Charges a lease's hourly use up to `until` and counts it against the budget.
    fn meter_lease(&mut self, id: LeaseId, until: Timestamp, run: &mut MeterRun) {
        let lease = self.leases.get_mut(&id).expect("metering a known lease");
        let accruals = lease.accrue(until);
        if !accruals.is_empty() {
            self.dirty_leases.entry(id).or_insert(false);
        }
        for a in accruals {
            let lease = &self.leases[&id];
            let key = format!("meter:lease-{}:{}", id.0, a.end.unix());
            self.ledger
                .charge(&lease.tenant, a.amount, &key, a.end, "hourly use")
                .expect("a metered charge is not negative and bounded by MAX_UNIT_PRICE");
            run.events
                .extend(self.budgets.record_spend(&lease.tenant, a.amount, a.end));
            run.usage.push(record(
                lease,
                UsageKind::LeaseCardSeconds,
                a.card_seconds,
                a.start,
                a.end,
                a.amount,
            ));
        }
    }

    /// Ends a lease at `at`: final metering, a class B lease's evaluation (the listing's
    /// reliability follows its score), then its cards are freed: idle again once evaluated
    /// (SH-CL-18), in the same step, so no order sees them before the evaluation exists.
    fn end_lease(&mut self, id: LeaseId, reason: EndReason, at: Timestamp, run: &mut MeterRun) {
        self.meter_lease(id, at, run);
        let lease = self.leases.get_mut(&id).expect("ending a known lease");
        if lease.class == ClusterClass::B {
            let evaluation = Evaluation::of(id, lease.listing, at, &lease.monitoring);
            if let Some(score) = evaluation.score {
                let old = self
                    .catalog
                    .listing(lease.listing)
                    .and_then(|l| l.reliability());
                self.catalog
                    .set_reliability(lease.listing, next_reliability(old, score))
                    .expect("a lease's listing exists and the mean of scores is per mille");
            }
            let lease = self.leases.get_mut(&id).expect("ending a known lease");
            self.evaluated.entry(lease.listing).or_default().push(id);
            lease.evaluation = Some(evaluation);
        }
        let lease = self.leases.get_mut(&id).expect("ending a known lease");
        lease.state = LeaseState::Ended { at, reason };
        self.dirty_leases.entry(id).or_insert(false);
        let cards = lease.cards.clone();
        self.catalog.free(&cards, id.order());
        run.ended.push((id, reason));
    }

    /// The user releases a lease; billing stops now. A prepaid term is not refunded.
    pub fn release(
        &mut self,
        user: AccountId,
        id: LeaseId,
        now: Timestamp,
    ) -> Result<MeterRun, LeaseError> {
        let lease = self.leases.get(&id).ok_or(LeaseError::Unknown(id))?;
        if lease.user != user {
            return Err(LeaseError::NotYours(id));
        }
        if !lease.is_running() {
            return Err(LeaseError::Ended(id));
        }
        let mut run = MeterRun::default();
        self.end_lease(id, EndReason::Released, now, &mut run);
        Ok(run)
    }

    /// The periodic run: lapses orders whose approval window passed, expires prepaid terms
    /// that ran out, meters every running hourly lease up to `now`, and ends the running
    /// hourly leases of each tenant whose budget or funds are exhausted (prepaid terms are
    /// paid and run to their end). O(pending orders + running leases).
    pub fn meter(&mut self, now: Timestamp) -> MeterRun {
        let mut run = MeterRun::default();
        let lapsed: Vec<OrderId> = self
            .orders
            .values()
            .filter(|o| o.state == OrderState::AwaitingApproval && approval_window_passed(o, now))
            .map(|o| o.id)
            .collect();
        for id in lapsed {
            self.close_order(id, OrderState::Lapsed);
            run.lapsed.push(id);
        }
        let running: Vec<(LeaseId, Option<Timestamp>)> = self
            .leases
            .values()
            .filter(|l| l.is_running())
            .map(|l| (l.id, l.ends_at))
            .collect();
        let mut tenants = BTreeSet::new();
        for (id, ends_at) in &running {
            match ends_at {
                Some(end) if *end <= now => self.end_lease(*id, EndReason::Expired, *end, &mut run),
                _ => {
                    self.meter_lease(*id, now, &mut run);
                    tenants.insert(self.leases[id].tenant.clone());
                }
            }
        }
        for tenant in tenants {
            let Some(refusal) = self.budgets.must_stop(&self.ledger, &tenant, now) else {
                continue;
            };
            let reason = match refusal {
                Refusal::BudgetExhausted { .. } => EndReason::BudgetExhausted,
                _ => EndReason::FundsDepleted,
            };
            // Only postpaid (hourly) leases cost more as they run; a prepaid term is paid for
            // and goes on to its end.
            let ids: Vec<LeaseId> = self
                .leases
                .values()
                .filter(|l| {
                    l.is_running() && l.tenant == tenant && l.quote.mode == BillingMode::Hourly
                })
                .map(|l| l.id)
                .collect();
            for id in ids {
                self.end_lease(id, reason, now, &mut run);
            }
        }
        run
    }

    /// Use of a task inside a class B lease (GPU-, CPU- or memory-seconds), from the
    /// federation's task accounting. Recorded for invoices and evaluation; included in the
    /// lease's price.
    pub fn record_task_usage(
        &self,
        id: LeaseId,
        kind: UsageKind,
        quantity: u64,
        start: Timestamp,
        end: Timestamp,
    ) -> Result<UsageRecord, LeaseError> {
        let lease = self.leases.get(&id).ok_or(LeaseError::Unknown(id))?;
        if lease.class != ClusterClass::B {
            return Err(LeaseError::NotClassB(id));
        }
        if !matches!(
            kind,
            UsageKind::TaskGpuSeconds | UsageKind::TaskCpuSeconds | UsageKind::TaskMemoryMibSeconds
        ) {
            return Err(LeaseError::NotTaskKind(kind));
        }
        let lease_end = match lease.state {
            LeaseState::Ended { at, .. } => at,
            _ => end,
        };
        let spans_months = end > start && end.plus_seconds(-1).month() != start.month();
        if start < lease.started_at || end < start || end > lease_end || spans_months {
            return Err(LeaseError::BadInterval);
        }
        Ok(record(lease, kind, quantity, start, end, Money::ZERO))
    }

    /// Closes `month` over its usage records: invoices, statements, settlements.
    pub fn close_month(
        &mut self,
        month: Month,
        records: &[UsageRecord],
        now: Timestamp,
    ) -> Result<MonthClose, CloseError> {
        close::close_month(month, records, &mut self.ledger, self.commission, now)
    }
}

/// The one rule of when a pending order lapses.
fn approval_window_passed(order: &Order, now: Timestamp) -> bool {
    order.placed_at.plus_seconds(APPROVAL_WINDOW_S) <= now
}

fn card_count(cards: &[CardId]) -> u32 {
    u32::try_from(cards.len()).expect("bounded by MAX_CARDS_PER_LISTING")
}

fn record(
    lease: &Lease,
    kind: UsageKind,
    quantity: u64,
    start: Timestamp,
    end: Timestamp,
    amount: Money,
) -> UsageRecord {
    UsageRecord {
        lease: lease.id,
        tenant: lease.tenant.clone(),
        supplier: lease.supplier,
        listing: lease.listing,
        kind,
        quantity,
        start,
        end,
        quote: lease.quote,
        amount,
    }
}
