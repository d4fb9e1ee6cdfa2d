//! What the store is given (`take_changes`) and how a market comes back (`restore`).

use crate::fixtures::{
    SUPPLIER, USER, entropy, fund, hasher, market, publish_reported, spec, t0, tenant,
};
use cpn_market::billing::close::Commission;
use cpn_market::lease::MAX_AUTHORIZATION_ATTEMPTS;
use cpn_market::{
    BillingMode, CardChoice, CardId, Change, ClusterClass, LeaseState, Market, Money, Occupancy,
    OrderId, OrderPlaced, OrderRequest, RestoreError,
};

fn order(listing: cpn_market::CpcId, cards: u32) -> OrderRequest {
    OrderRequest {
        user: USER,
        tenant: tenant("lab"),
        listing,
        cards: CardChoice::Count(cards),
        mode: BillingMode::Hourly,
        periods: 0,
    }
}

fn restore(state: cpn_market::MarketState) -> Result<Market, RestoreError> {
    Market::restore(hasher(), Commission { basis_points: 500 }, state)
}

#[test]
fn changes_hold_exactly_what_an_operation_touched_with_the_cards_state_before() {
    let mut m = market();
    let id = publish_reported(&mut m, spec(ClusterClass::A, 8), 1);
    fund(&mut m, &tenant("lab"), 1_000);
    let first = m.take_changes();
    assert_eq!(first.listings.len(), 1);
    assert_eq!(first.listings[0].0, Change::Created);
    assert!(
        first.listings[0].1.spec.cards.is_empty(),
        "cards are rows of their own"
    );
    assert_eq!(first.cards.len(), 8);
    assert!(
        first
            .cards
            .iter()
            .all(|c| c.before.is_none() && c.after.reported)
    );
    assert_eq!(first.transactions.len(), 1);
    assert!(m.take_changes().is_empty(), "a second take has nothing new");

    let OrderPlaced::Leased(started) = m.place_order(order(id, 2), entropy(1), t0()).unwrap()
    else {
        panic!("automatic approval")
    };
    let c = m.take_changes();
    assert!(c.listings.is_empty());
    assert_eq!(
        c.cards
            .iter()
            .map(|c| (c.after.id, c.before, c.after.occupancy))
            .collect::<Vec<_>>(),
        vec![
            (
                CardId(0),
                Some((Occupancy::Free, true)),
                Occupancy::Reserved(OrderId(1))
            ),
            (
                CardId(1),
                Some((Occupancy::Free, true)),
                Occupancy::Reserved(OrderId(1))
            ),
        ]
    );
    assert_eq!(c.orders.len(), 1);
    assert_eq!(c.orders[0].0, Change::Created);
    assert_eq!(c.leases.len(), 1);
    assert_eq!(c.leases[0].0, Change::Created);
    assert_eq!(c.next_order, 2);

    // A wrong code is an error to the caller and a change to the store.
    assert!(
        m.enter_authorization_code(USER, started.lease, "0000000000", t0())
            .is_err()
    );
    let c = m.take_changes();
    assert_eq!(c.leases.len(), 1);
    assert_eq!(c.leases[0].0, Change::Updated);
    assert_eq!(
        c.leases[0].1.state,
        LeaseState::AwaitingAccess {
            attempts_left: MAX_AUTHORIZATION_ATTEMPTS - 1
        }
    );
    assert!(c.cards.is_empty() && c.orders.is_empty());
}

#[test]
fn a_restored_market_equals_the_original_and_goes_on_the_same_way() {
    let mut m = market();
    let id = publish_reported(&mut m, spec(ClusterClass::B, 16), 1);
    fund(&mut m, &tenant("lab"), 10_000);
    m.place_order(order(id, 3), entropy(1), t0()).unwrap();
    m.meter(t0().plus_seconds(5_000));
    let mut prices = spec(ClusterClass::B, 16).prices;
    prices.hourly = Some(Money::from_major(30));
    m.catalog_mut().set_prices(id, SUPPLIER, prices).unwrap();
    m.catalog_mut().report_node("sz-1", "gpu-1", &[0, 1]);

    let mut r = restore(m.state()).unwrap();
    assert_eq!(r.state(), m.state());
    assert!(r.take_changes().is_empty(), "restored means stored");
    let later = t0().plus_seconds(9_000);
    assert_eq!(r.meter(later), m.meter(later));
    assert_eq!(
        r.place_order(order(id, 2), entropy(2), later),
        m.place_order(order(id, 2), entropy(2), later)
    );
    assert_eq!(r.state(), m.state());
}

#[test]
fn restore_refuses_rows_that_contradict_each_other() {
    let mut m = market();
    let id = publish_reported(&mut m, spec(ClusterClass::B, 8), 1);
    fund(&mut m, &tenant("lab"), 10_000);
    m.place_order(order(id, 1), entropy(1), t0()).unwrap();
    let good = m.state();

    let mut orphan = good.clone();
    orphan.cards[5].occupancy = Occupancy::Busy(OrderId(9));
    assert!(matches!(
        restore(orphan),
        Err(RestoreError::Inconsistent(_))
    ));

    let mut unbalanced = good.clone();
    unbalanced.transactions[0].postings[0].amount = Money::from_major(-1);
    assert!(matches!(
        restore(unbalanced),
        Err(RestoreError::Inconsistent(_))
    ));

    let mut reused = good.clone();
    reused.next_order = 1;
    assert!(matches!(
        restore(reused),
        Err(RestoreError::Inconsistent(_))
    ));

    let mut gap = good.clone();
    gap.cards.remove(3);
    assert!(matches!(restore(gap), Err(RestoreError::Inconsistent(_))));

    assert!(restore(good).is_ok());
}
