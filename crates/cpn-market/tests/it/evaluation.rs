//! Evaluation after a lease (SH-CL-18): a class B lease's monitoring becomes an evaluation
//! with a score when it ends, the listing's reliability follows and search filters on it,
//! the cards are idle again; class A is not evaluated; all of it survives a restore.

use crate::fixtures::{USER, entropy, fund, hasher, market, publish_reported, spec, t0, tenant};
use cpn_market::billing::close::Commission;
use cpn_market::market::LeaseError;
use cpn_market::{
    BillingMode, CardChoice, CardState, ClusterClass, LeaseId, Market, NodeReport, NodeSample,
    OrderPlaced, OrderRequest, Query,
};

fn lease_of(m: &mut Market, listing: cpn_market::CpcId, cards: u32) -> LeaseId {
    let req = OrderRequest {
        user: USER,
        tenant: tenant("lab"),
        listing,
        cards: CardChoice::Count(cards),
        mode: BillingMode::Hourly,
        periods: 0,
    };
    match m.place_order(req, entropy(1), t0()).unwrap() {
        OrderPlaced::Leased(s) => s.lease,
        other => panic!("expected a lease, got {other:?}"),
    }
}

/// Node gpu-0 answering with the given GPU indexes at 50 % each.
fn answer(gpus: &[u32]) -> Vec<NodeSample> {
    vec![NodeSample {
        node: "gpu-0".into(),
        ready: true,
        report: Some(NodeReport {
            cpu_util: 300,
            gpus: Some(gpus.iter().map(|&i| (i, 500)).collect()),
        }),
    }]
}

#[test]
fn an_ended_class_b_lease_is_evaluated_sets_reliability_and_frees_its_cards() {
    let mut m = market();
    let id = publish_reported(&mut m, spec(ClusterClass::B, 8), 1);
    fund(&mut m, &tenant("lab"), 10_000);
    let first = lease_of(&mut m, id, 2);
    m.observe(first, &answer(&[0, 1])).unwrap();
    m.observe(first, &answer(&[0, 1])).unwrap();
    m.release(USER, first, t0().plus_seconds(60)).unwrap();
    let e = m.lease(first).unwrap().evaluation().unwrap().clone();
    assert_eq!(
        (e.samples, e.availability, e.score),
        (2, Some(1000), Some(1000))
    );
    assert_eq!(e.gpu_util, Some(500));
    assert_eq!(m.catalog().listing(id).unwrap().reliability(), Some(1000));
    assert!(
        m.lease(first)
            .unwrap()
            .cards
            .iter()
            .all(|c| m.catalog().card_state(*c) == Some(CardState::Idle))
    );

    // A card drops off in the second lease: a lower score, and the reliability moves.
    let second = lease_of(&mut m, id, 2);
    m.observe(second, &answer(&[0, 1])).unwrap();
    m.observe(second, &answer(&[0])).unwrap();
    m.release(USER, second, t0().plus_seconds(120)).unwrap();
    let e = m.lease(second).unwrap().evaluation().unwrap().clone();
    assert_eq!((e.drop_offs, e.score), (1, Some(800)));
    assert_eq!(m.catalog().listing(id).unwrap().reliability(), Some(950));
    let history: Vec<LeaseId> = m.evaluations(id).map(|e| e.lease).collect();
    assert_eq!(history, vec![second, first], "newest first");

    // Users filter on it.
    let q = |min| Query {
        min_reliability: Some(min),
        ..Query::default()
    };
    assert_eq!(m.catalog().search(&q(950)).unwrap().total, 1);
    assert_eq!(m.catalog().search(&q(951)).unwrap().total, 0);

    // Ended leases take no more samples.
    assert!(matches!(
        m.observe(second, &answer(&[0])),
        Err(LeaseError::Ended(_))
    ));

    // All of it is what the store is given, and comes back.
    let restored = Market::restore(hasher(), Commission { basis_points: 500 }, m.state()).unwrap();
    assert_eq!(restored.state(), m.state());
    assert_eq!(restored.evaluations(id).count(), 2);
}

#[test]
fn class_a_leases_are_neither_monitored_nor_evaluated() {
    let mut m = market();
    let id = publish_reported(&mut m, spec(ClusterClass::A, 8), 1);
    fund(&mut m, &tenant("lab"), 10_000);
    let lease = lease_of(&mut m, id, 1);
    assert!(matches!(
        m.observe(lease, &answer(&[0])),
        Err(LeaseError::NotClassB(_))
    ));
    m.release(USER, lease, t0().plus_seconds(60)).unwrap();
    assert!(m.lease(lease).unwrap().evaluation().is_none());
    assert_eq!(m.catalog().listing(id).unwrap().reliability(), None);
    assert_eq!(m.evaluations(id).count(), 0);
}

#[test]
fn a_lease_without_samples_is_evaluated_without_a_score() {
    let mut m = market();
    let id = publish_reported(&mut m, spec(ClusterClass::B, 8), 1);
    fund(&mut m, &tenant("lab"), 10_000);
    let lease = lease_of(&mut m, id, 1);
    m.release(USER, lease, t0().plus_seconds(3)).unwrap();
    let e = m.lease(lease).unwrap().evaluation().unwrap();
    assert_eq!((e.samples, e.score), (0, None));
    assert_eq!(m.catalog().listing(id).unwrap().reliability(), None);
}
