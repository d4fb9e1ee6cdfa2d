//! Publishing, per-card state, prices, delisting and the search, through the public API.

use crate::fixtures::{SUPPLIER, market, publish_reported, spec, t0};
use cpn_market::catalog::{AllocationError, CatalogError, ListingStatus};
use cpn_market::search::QueryError;
use cpn_market::{
    BillingMode, CardChoice, CardState, ClusterClass, CpcId, Money, OrderId, PriceSheet, Query,
    SortKey,
};

#[test]
fn a_published_cluster_gets_a_cpcid_and_its_cards_start_offline() {
    let mut m = market();
    let id = m
        .catalog_mut()
        .publish(SUPPLIER, spec(ClusterClass::A, 16), 42, t0())
        .unwrap();
    assert_eq!(id.to_string(), "CPC-0000000042-2");
    assert_eq!(id.to_string().parse::<CpcId>(), Ok(id));
    let listing = m.catalog().listing(id).unwrap();
    assert_eq!(
        listing.idle_cards(),
        0,
        "no agent has reported the cards yet"
    );
    let first = listing.card_ids().next().unwrap();
    assert_eq!(
        m.catalog().card_state(first),
        Some(CardState::Offline { held_by: None })
    );
    assert_eq!(
        m.catalog().search(&Query::default()).unwrap().total,
        0,
        "offline cards are not offered"
    );
    assert_eq!(
        m.catalog_mut()
            .reserve(id, &CardChoice::Count(1), OrderId(1)),
        Err(AllocationError::NotEnoughIdle {
            cpcid: id,
            wanted: 1,
            idle: 0
        })
    );

    // One node of two reports its eight cards.
    m.catalog_mut()
        .report_node("sz-1", "gpu-0", &[0, 1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(m.catalog().listing(id).unwrap().idle_cards(), 8);
    let hits = m.catalog().search(&Query::default()).unwrap();
    assert_eq!((hits.total, hits.items[0].idle_cards), (1, 8));
}

#[test]
fn a_card_listed_twice_and_a_class_a_cluster_without_usage_are_refused() {
    let mut m = market();
    publish_reported(&mut m, spec(ClusterClass::B, 8), 1);
    match m
        .catalog_mut()
        .publish(SUPPLIER, spec(ClusterClass::B, 8), 2, t0())
    {
        Err(CatalogError::CardListedTwice { node, index: 0, .. }) => assert_eq!(node, "gpu-0"),
        other => panic!("expected CardListedTwice, got {other:?}"),
    }
    let mut a = spec(ClusterClass::A, 8);
    a.site = "sz-2".into();
    a.usage = None;
    match m.catalog_mut().publish(SUPPLIER, a, 2, t0()) {
        Err(CatalogError::Invalid(e)) => assert!(e.names("usage"), "{e}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn a_card_dropping_off_is_offline_and_reported_with_its_holder() {
    let mut m = market();
    let id = publish_reported(&mut m, spec(ClusterClass::B, 8), 1);
    let cards = m
        .catalog_mut()
        .reserve(id, &CardChoice::Count(2), OrderId(7))
        .unwrap();
    let dropped = m
        .catalog_mut()
        .report_node("sz-1", "gpu-0", &[1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(dropped, vec![(cards[0], OrderId(7))]);
    assert_eq!(
        m.catalog().card_state(cards[0]),
        Some(CardState::Offline {
            held_by: Some(OrderId(7))
        })
    );
    assert_eq!(m.catalog().listing(id).unwrap().idle_cards(), 6);
}

#[test]
fn prices_are_versioned_and_other_suppliers_cannot_edit() {
    let mut m = market();
    let id = publish_reported(&mut m, spec(ClusterClass::B, 8), 1);
    let before = m.catalog().quote(id, BillingMode::Hourly).unwrap();
    let new = PriceSheet {
        hourly: Some(Money::from_major(30)),
        monthly: None,
        yearly: None,
    };
    assert_eq!(
        m.catalog_mut()
            .set_prices(id, cpn_market::AccountId(99), new),
        Err(CatalogError::NotYours(id))
    );
    assert_eq!(m.catalog_mut().set_prices(id, SUPPLIER, new), Ok(2));
    let after = m.catalog().quote(id, BillingMode::Hourly).unwrap();
    assert_eq!((before.version, after.version), (1, 2));
    assert_eq!(after.unit_price, Money::from_major(30));
    assert_eq!(
        m.catalog()
            .listing(id)
            .unwrap()
            .prices_at(1)
            .unwrap()
            .hourly,
        Some(Money::from_major(36))
    );
    assert!(matches!(
        m.catalog().quote(id, BillingMode::Monthly),
        Err(CatalogError::ModeNotOffered { .. })
    ));
    let mut moved = m.catalog().listing(id).unwrap().spec().clone();
    moved.cards.pop();
    assert_eq!(
        m.catalog_mut().edit(id, SUPPLIER, moved),
        Err(CatalogError::CardsChanged)
    );
}

#[test]
fn a_delisted_cluster_is_hidden_and_takes_no_reservation_until_relisted() {
    let mut m = market();
    let id = publish_reported(&mut m, spec(ClusterClass::B, 8), 1);
    m.catalog_mut()
        .delist(id, SUPPLIER, "maintenance", t0())
        .unwrap();
    assert!(matches!(
        m.catalog().listing(id).unwrap().status(),
        ListingStatus::Delisted { .. }
    ));
    assert_eq!(m.catalog().search(&Query::default()).unwrap().total, 0);
    assert_eq!(
        m.catalog_mut()
            .reserve(id, &CardChoice::Count(1), OrderId(1)),
        Err(AllocationError::Delisted(id))
    );
    m.catalog_mut().relist(id, SUPPLIER).unwrap();
    assert_eq!(m.catalog().search(&Query::default()).unwrap().total, 1);
}

#[test]
fn a_chosen_card_must_be_idle_and_the_reservation_is_all_or_nothing() {
    let mut m = market();
    let id = publish_reported(&mut m, spec(ClusterClass::B, 8), 1);
    let ids: Vec<_> = m.catalog().listing(id).unwrap().card_ids().collect();
    m.catalog_mut()
        .reserve(id, &CardChoice::Cards(vec![ids[3]]), OrderId(1))
        .unwrap();
    assert_eq!(
        m.catalog_mut()
            .reserve(id, &CardChoice::Cards(vec![ids[2], ids[3]]), OrderId(2)),
        Err(AllocationError::CardNotIdle(ids[3]))
    );
    assert_eq!(
        m.catalog().card_state(ids[2]),
        Some(CardState::Idle),
        "nothing taken on failure"
    );
    assert_eq!(
        m.catalog_mut()
            .reserve(id, &CardChoice::Cards(vec![ids[2], ids[2]]), OrderId(2)),
        Err(AllocationError::BadChoice)
    );
    assert_eq!(m.catalog().listing(id).unwrap().idle_cards(), 7);
}

#[test]
fn search_filters_sorts_and_pages() {
    let mut m = market();
    let mut cheap = spec(ClusterClass::B, 8);
    cheap.prices.hourly = Some(Money::from_major(20));
    let mut pricey = spec(ClusterClass::B, 16);
    pricey.site = "sz-2".into();
    pricey.prices.hourly = Some(Money::from_major(50));
    let mut other_model = spec(ClusterClass::A, 8);
    other_model.site = "gz-1".into();
    other_model.model = "H100 80GB".into();
    other_model.region = "广州市".into();
    let c = publish_reported(&mut m, cheap, 1);
    let p = publish_reported(&mut m, pricey, 2);
    let o = publish_reported(&mut m, other_model, 3);

    let by_price = Query {
        billing_mode: Some(BillingMode::Hourly),
        sort: SortKey::UnitPrice,
        ..Query::default()
    };
    let ids: Vec<_> = m
        .catalog()
        .search(&by_price)
        .unwrap()
        .items
        .iter()
        .map(|h| h.cpcid)
        .collect();
    assert_eq!(ids, vec![c, o, p]);

    let q = Query {
        model: Some("a100   80gb".into()),
        region: Some("深圳市".into()),
        min_idle_cards: 9,
        ..Query::default()
    };
    let hits = m.catalog().search(&q).unwrap();
    assert_eq!((hits.total, hits.items[0].cpcid), (1, p));

    let q = Query {
        class: Some(ClusterClass::A),
        ..Query::default()
    };
    assert_eq!(m.catalog().search(&q).unwrap().items[0].cpcid, o);

    let page = Query {
        sort: SortKey::IdleCards,
        descending: true,
        offset: 1,
        limit: 1,
        ..Query::default()
    };
    let hits = m.catalog().search(&page).unwrap();
    assert_eq!(
        (hits.total, hits.items.len(), hits.items[0].cpcid),
        (3, 1, c),
        "ties broken by CPcId"
    );

    let none = Query {
        region: Some("北京市".into()),
        ..Query::default()
    };
    assert_eq!(m.catalog().search(&none).unwrap().total, 0);

    m.catalog_mut().set_reliability(p, 990).unwrap();
    let reliable = Query {
        min_reliability: Some(950),
        ..Query::default()
    };
    assert_eq!(m.catalog().search(&reliable).unwrap().items[0].cpcid, p);

    let bad = Query {
        max_unit_price: Some(Money::from_major(30)),
        ..Query::default()
    };
    assert_eq!(
        m.catalog().search(&bad),
        Err(QueryError::PriceNeedsBillingMode)
    );
    assert_eq!(
        m.catalog().search(&Query {
            limit: 1000,
            ..Query::default()
        }),
        Err(QueryError::BadLimit(1000))
    );
}

#[test]
fn a_listing_with_every_card_taken_leaves_the_search() {
    let mut m = market();
    let id = publish_reported(&mut m, spec(ClusterClass::B, 2), 1);
    m.catalog_mut()
        .reserve(id, &CardChoice::Count(2), OrderId(1))
        .unwrap();
    assert_eq!(
        m.catalog().search(&Query::default()).unwrap().total,
        0,
        "only idle capacity is shown (SH-CL-13)"
    );
}
