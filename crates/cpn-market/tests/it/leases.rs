//! Orders, approval, the authorization code, release, expiry, budget exhaustion, delisting
//! with a running lease, and fifty orders racing for the last card.

use crate::fixtures::{SUPPLIER, USER, entropy, fund, market, publish_reported, spec, t0, tenant};
use cpn_market::billing::Budget;
use cpn_market::billing::budget::{BudgetEvent, Refusal};
use cpn_market::catalog::AllocationError;
use cpn_market::lease::{APPROVAL_WINDOW_S, AccessError, MAX_AUTHORIZATION_ATTEMPTS, OrderState};
use cpn_market::listing::Approval;
use cpn_market::market::{LeaseError, LeaseStarted, OrderError};
use cpn_market::{
    AccountId, BillingMode, CardChoice, CardState, ClusterClass, EndReason, LeaseId, LeaseState,
    Market, Money, OrderPlaced, OrderRequest, Query, UsageKind,
};
use std::sync::{Arc, Barrier, Mutex};

fn hourly(listing: cpn_market::CpcId, cards: u32) -> OrderRequest {
    OrderRequest {
        user: USER,
        tenant: tenant("lab"),
        listing,
        cards: CardChoice::Count(cards),
        mode: BillingMode::Hourly,
        periods: 0,
    }
}

fn leased(placed: OrderPlaced) -> LeaseStarted {
    match placed {
        OrderPlaced::Leased(l) => l,
        other => panic!("expected a lease, got {other:?}"),
    }
}

fn states(m: &Market, lease: LeaseId) -> Vec<CardState> {
    let l = m.lease(lease).unwrap();
    l.cards
        .iter()
        .map(|c| m.catalog().card_state(*c).unwrap())
        .collect()
}

#[test]
fn class_a_cards_turn_busy_only_after_the_authorization_code() {
    let mut m = market();
    let id = publish_reported(&mut m, spec(ClusterClass::A, 8), 1);
    fund(&mut m, &tenant("lab"), 1_000);
    let started = leased(m.place_order(hourly(id, 1), entropy(5), t0()).unwrap());
    let code = started
        .authorization_code
        .clone()
        .expect("class A issues a code for the supplier");
    assert_eq!(code.len(), 10);
    let order = started.lease.order();
    assert_eq!(states(&m, started.lease), vec![CardState::Reserved(order)]);

    assert!(matches!(
        m.enter_authorization_code(AccountId(77), started.lease, &code, t0()),
        Err(LeaseError::Access(AccessError::NotYours(_)))
    ));
    assert_eq!(
        m.enter_authorization_code(USER, started.lease, "WRONGCODE0", t0()),
        Err(LeaseError::Access(AccessError::WrongCode {
            attempts_left: MAX_AUTHORIZATION_ATTEMPTS - 1
        }))
    );
    let access = m
        .enter_authorization_code(
            USER,
            started.lease,
            &code.to_lowercase(),
            t0().plus_seconds(60),
        )
        .unwrap();
    assert_eq!(access.site, "sz-1");
    assert_eq!(access.cards[0].1.node, "gpu-0");
    assert!(access.usage_method.is_some());
    assert_eq!(states(&m, started.lease), vec![CardState::Busy(order)]);
    assert_eq!(
        m.lease(started.lease).unwrap().state,
        LeaseState::Active {
            since: t0().plus_seconds(60)
        }
    );
    assert!(matches!(
        m.enter_authorization_code(USER, started.lease, &code, t0()),
        Err(LeaseError::Access(AccessError::NotAwaitingAccess(_)))
    ));
}

#[test]
fn wrong_codes_lock_the_lease_until_the_supplier_reissues() {
    let mut m = market();
    let id = publish_reported(&mut m, spec(ClusterClass::A, 8), 1);
    fund(&mut m, &tenant("lab"), 1_000);
    let started = leased(m.place_order(hourly(id, 1), entropy(5), t0()).unwrap());
    let code = started.authorization_code.unwrap();
    for _ in 0..MAX_AUTHORIZATION_ATTEMPTS {
        let _ = m.enter_authorization_code(USER, started.lease, "0000000000", t0());
    }
    assert_eq!(
        m.enter_authorization_code(USER, started.lease, &code, t0()),
        Err(LeaseError::Access(AccessError::Locked)),
        "the right code is refused once locked"
    );
    assert!(
        m.reissue_authorization_code(USER, started.lease, entropy(6))
            .is_err(),
        "only the supplier reissues"
    );
    let fresh = m
        .reissue_authorization_code(SUPPLIER, started.lease, entropy(6))
        .unwrap();
    assert!(
        m.enter_authorization_code(USER, started.lease, &code, t0())
            .is_err(),
        "the old code is void"
    );
    m.enter_authorization_code(USER, started.lease, &fresh, t0())
        .unwrap();
}

#[test]
fn release_bills_to_the_second_frees_the_cards_and_the_ledger_sums_to_zero() {
    let mut m = market();
    let id = publish_reported(&mut m, spec(ClusterClass::B, 8), 1);
    fund(&mut m, &tenant("lab"), 1_000);
    let started = leased(m.place_order(hourly(id, 2), entropy(1), t0()).unwrap());
    assert_eq!(started.authorization_code, None, "class B needs no code");
    assert!(
        states(&m, started.lease)
            .iter()
            .all(|s| matches!(s, CardState::Busy(_)))
    );
    let first = m.meter(t0().plus_seconds(600));
    let end = m
        .release(USER, started.lease, t0().plus_seconds(3_725))
        .unwrap();
    assert_eq!(end.ended, vec![(started.lease, EndReason::Released)]);
    assert!(
        states(&m, started.lease)
            .iter()
            .all(|s| *s == CardState::Idle)
    );
    assert_eq!(
        m.catalog().search(&Query::default()).unwrap().items[0].idle_cards,
        8
    );

    // 3,725 s × 2 cards at 36.00 per card-hour = 74.50, however often it was metered.
    let records: Vec<_> = first.usage.iter().chain(&end.usage).collect();
    let seconds: u64 = records.iter().map(|r| r.quantity).sum();
    let charged: Money = records.iter().map(|r| r.amount).sum();
    assert_eq!(seconds, 3_725 * 2);
    assert_eq!(charged, Money::from_minor(7_450));
    assert_eq!(
        m.ledger().available(&tenant("lab")),
        Money::from_major(1_000) - charged
    );
    assert_eq!(m.ledger().trial_balance(), Money::ZERO);
    assert_eq!(
        m.release(USER, started.lease, t0()),
        Err(LeaseError::Ended(started.lease))
    );
}

#[test]
fn a_lease_keeps_the_price_it_was_made_at() {
    let mut m = market();
    let id = publish_reported(&mut m, spec(ClusterClass::B, 8), 1);
    fund(&mut m, &tenant("lab"), 1_000);
    let started = leased(m.place_order(hourly(id, 1), entropy(1), t0()).unwrap());
    let mut dearer = m.catalog().listing(id).unwrap().spec().prices;
    dearer.hourly = Some(Money::from_major(100));
    m.catalog_mut().set_prices(id, SUPPLIER, dearer).unwrap();
    let run = m
        .release(USER, started.lease, t0().plus_seconds(3_600))
        .unwrap();
    assert_eq!(run.usage[0].quote.version, 1);
    assert_eq!(run.usage[0].amount, Money::from_major(36));
}

#[test]
fn a_monthly_term_is_prepaid_and_expires() {
    let mut m = market();
    let id = publish_reported(&mut m, spec(ClusterClass::B, 8), 1);
    fund(&mut m, &tenant("lab"), 20_000);
    let req = OrderRequest {
        mode: BillingMode::Monthly,
        periods: 2,
        ..hourly(id, 1)
    };
    let started = leased(m.place_order(req.clone(), entropy(1), t0()).unwrap());
    assert_eq!(started.usage[0].kind, UsageKind::PrepaidCardPeriods);
    assert_eq!(started.usage[0].amount, Money::from_major(10_000));
    assert_eq!(
        m.ledger().available(&tenant("lab")),
        Money::from_major(10_000)
    );
    let ends = m.lease(started.lease).unwrap().ends_at.unwrap();
    assert_eq!(ends.to_string(), "2027-02-07T10:00:00Z");
    assert!(m.meter(ends.plus_seconds(-1)).ended.is_empty());
    let run = m.meter(ends.plus_seconds(5));
    assert_eq!(run.ended, vec![(started.lease, EndReason::Expired)]);
    assert!(run.usage.is_empty(), "a prepaid term is not metered again");
    assert_eq!(
        m.place_order(
            OrderRequest {
                cards: CardChoice::Count(u32::MAX),
                ..req.clone()
            },
            entropy(1),
            t0()
        ),
        Err(OrderError::Allocation(AllocationError::BadChoice)),
        "refused before any amount is computed from it"
    );
    assert!(matches!(
        m.place_order(
            OrderRequest {
                periods: 0,
                ..req.clone()
            },
            entropy(1),
            t0()
        ),
        Err(OrderError::BadTerm { periods: 0, .. })
    ));
    assert!(matches!(
        m.place_order(OrderRequest { periods: 3, ..req }, entropy(1), t0()),
        Err(OrderError::Refused(Refusal::InsufficientFunds { .. }))
    ));
}

#[test]
fn budget_exhaustion_ends_the_lease_and_refuses_a_new_one() {
    let mut m = market();
    let id = publish_reported(&mut m, spec(ClusterClass::B, 8), 1);
    fund(&mut m, &tenant("lab"), 1_000);
    m.budgets_mut()
        .set(
            tenant("lab"),
            Budget {
                monthly_limit: Money::from_major(100),
                alarm_percent: 80,
            },
            t0(),
        )
        .unwrap();
    let started = leased(m.place_order(hourly(id, 1), entropy(1), t0()).unwrap());
    // 80.00 at 36.00/h is 8,000 s.
    let run = m.meter(t0().plus_seconds(8_000));
    assert!(
        matches!(
            run.events.as_slice(),
            [BudgetEvent::ThresholdReached { .. }]
        ),
        "{:?}",
        run.events
    );
    assert!(run.ended.is_empty());
    let run = m.meter(t0().plus_seconds(10_000));
    assert!(
        matches!(run.events.as_slice(), [BudgetEvent::Exhausted { .. }]),
        "{:?}",
        run.events
    );
    assert_eq!(run.ended, vec![(started.lease, EndReason::BudgetExhausted)]);
    assert_eq!(m.catalog().listing(id).unwrap().idle_cards(), 8);
    let refused = m
        .place_order(hourly(id, 1), entropy(1), t0().plus_seconds(10_001))
        .unwrap_err();
    assert!(
        matches!(
            refused,
            OrderError::Refused(Refusal::BudgetExhausted { .. })
        ),
        "{refused}"
    );
    assert!(refused.to_string().contains("raise the budget"));
}

#[test]
fn running_out_of_funds_ends_hourly_leases() {
    let mut m = market();
    let id = publish_reported(&mut m, spec(ClusterClass::B, 8), 1);
    fund(&mut m, &tenant("lab"), 40);
    let started = leased(m.place_order(hourly(id, 1), entropy(1), t0()).unwrap());
    assert!(
        m.meter(t0().plus_seconds(3_600)).ended.is_empty(),
        "36.00 of 40.00 spent"
    );
    let run = m.meter(t0().plus_seconds(4_000));
    assert_eq!(run.ended, vec![(started.lease, EndReason::FundsDepleted)]);
    assert_eq!(m.ledger().trial_balance(), Money::ZERO);
}

#[test]
fn exhaustion_ends_hourly_leases_but_not_a_paid_prepaid_term() {
    let mut m = market();
    let id = publish_reported(&mut m, spec(ClusterClass::B, 8), 1);
    fund(&mut m, &tenant("lab"), 5_040);
    let monthly = OrderRequest {
        mode: BillingMode::Monthly,
        periods: 1,
        ..hourly(id, 1)
    };
    let prepaid = leased(m.place_order(monthly, entropy(1), t0()).unwrap()).lease;
    let postpaid = leased(m.place_order(hourly(id, 1), entropy(1), t0()).unwrap()).lease;
    let run = m.meter(t0().plus_seconds(4_000));
    assert_eq!(run.ended, vec![(postpaid, EndReason::FundsDepleted)]);
    assert!(m.lease(prepaid).unwrap().is_running());
}

#[test]
fn a_delisted_cluster_refuses_orders_while_its_lease_goes_on() {
    let mut m = market();
    let id = publish_reported(&mut m, spec(ClusterClass::B, 8), 1);
    fund(&mut m, &tenant("lab"), 1_000);
    let started = leased(m.place_order(hourly(id, 1), entropy(1), t0()).unwrap());
    m.catalog_mut()
        .delist(id, SUPPLIER, "maintenance next week", t0())
        .unwrap();
    assert_eq!(
        m.place_order(hourly(id, 1), entropy(1), t0()),
        Err(OrderError::Allocation(AllocationError::Delisted(id)))
    );
    let run = m.meter(t0().plus_seconds(60));
    assert!(run.ended.is_empty());
    assert_eq!(run.usage.len(), 1);
    assert!(m.lease(started.lease).unwrap().is_running());
}

#[test]
fn orders_needing_approval_hold_cards_until_the_supplier_decides() {
    let mut m = market();
    let mut s = spec(ClusterClass::B, 2);
    s.approval = Approval::BySupplier;
    let id = publish_reported(&mut m, s, 1);
    fund(&mut m, &tenant("lab"), 1_000);
    let OrderPlaced::AwaitingApproval(first) =
        m.place_order(hourly(id, 2), entropy(1), t0()).unwrap()
    else {
        panic!("approval expected")
    };
    assert!(matches!(
        m.place_order(hourly(id, 1), entropy(1), t0()),
        Err(OrderError::Allocation(
            AllocationError::NotEnoughIdle { .. }
        ))
    ));
    assert_eq!(
        m.reject_order(AccountId(99), first, "no"),
        Err(OrderError::NotYourListing(first))
    );
    assert_eq!(
        m.reject_order(SUPPLIER, first, ""),
        Err(OrderError::ReasonRequired)
    );
    m.reject_order(SUPPLIER, first, "reserved for a course")
        .unwrap();
    assert_eq!(m.catalog().listing(id).unwrap().idle_cards(), 2);
    let OrderPlaced::AwaitingApproval(second) =
        m.place_order(hourly(id, 1), entropy(1), t0()).unwrap()
    else {
        panic!("approval expected")
    };
    let lease = m.approve_order(SUPPLIER, second, entropy(2), t0()).unwrap();
    assert_eq!(lease.lease.order(), second);
    assert_eq!(
        m.approve_order(SUPPLIER, second, entropy(2), t0()),
        Err(OrderError::NotAwaitingApproval(second))
    );
}

#[test]
fn task_usage_is_recorded_only_inside_class_b_leases() {
    let mut m = market();
    let b = publish_reported(&mut m, spec(ClusterClass::B, 8), 1);
    let mut a_spec = spec(ClusterClass::A, 8);
    a_spec.site = "sz-2".into();
    let a = publish_reported(&mut m, a_spec, 2);
    fund(&mut m, &tenant("lab"), 1_000);
    let lb = leased(m.place_order(hourly(b, 1), entropy(1), t0()).unwrap()).lease;
    let la = leased(m.place_order(hourly(a, 1), entropy(1), t0()).unwrap()).lease;
    let r = m
        .record_task_usage(
            lb,
            UsageKind::TaskGpuSeconds,
            120,
            t0(),
            t0().plus_seconds(120),
        )
        .unwrap();
    assert_eq!((r.quantity, r.amount), (120, Money::ZERO));
    assert_eq!(
        m.record_task_usage(la, UsageKind::TaskGpuSeconds, 1, t0(), t0()),
        Err(LeaseError::NotClassB(la))
    );
    assert_eq!(
        m.record_task_usage(lb, UsageKind::LeaseCardSeconds, 1, t0(), t0()),
        Err(LeaseError::NotTaskKind(UsageKind::LeaseCardSeconds))
    );
    assert_eq!(
        m.record_task_usage(
            lb,
            UsageKind::TaskCpuSeconds,
            1,
            t0().plus_seconds(-5),
            t0()
        ),
        Err(LeaseError::BadInterval)
    );
}

#[test]
fn a_pending_order_can_be_withdrawn_and_lapses_after_a_day() {
    let mut m = market();
    let mut s = spec(ClusterClass::B, 2);
    s.approval = Approval::BySupplier;
    let id = publish_reported(&mut m, s, 1);
    fund(&mut m, &tenant("lab"), 1_000);
    let pending = |m: &mut Market, at| match m.place_order(hourly(id, 2), entropy(1), at).unwrap() {
        OrderPlaced::AwaitingApproval(o) => o,
        other => panic!("approval expected, got {other:?}"),
    };
    let first = pending(&mut m, t0());
    assert_eq!(
        m.cancel_order(AccountId(99), first),
        Err(OrderError::NotYourOrder(first))
    );
    m.cancel_order(USER, first).unwrap();
    assert_eq!(m.catalog().listing(id).unwrap().idle_cards(), 2);

    let second = pending(&mut m, t0());
    let day = APPROVAL_WINDOW_S;
    assert!(m.meter(t0().plus_seconds(day - 1)).lapsed.is_empty());
    assert_eq!(m.meter(t0().plus_seconds(day)).lapsed, vec![second]);
    assert_eq!(m.catalog().listing(id).unwrap().idle_cards(), 2);

    // Approval after the window lapses the order even before a meter run noticed.
    let third = pending(&mut m, t0().plus_seconds(day));
    assert_eq!(
        m.approve_order(SUPPLIER, third, entropy(2), t0().plus_seconds(2 * day)),
        Err(OrderError::Lapsed(third))
    );
    assert_eq!(m.order(third).unwrap().state, OrderState::Lapsed);
    assert_eq!(m.catalog().listing(id).unwrap().idle_cards(), 2);
}

/// Fifty users race for the last card: exactly one lease, and the other 49 are told why.
#[test]
fn fifty_orders_racing_for_the_last_card_make_exactly_one_lease() {
    let mut m = market();
    let id = publish_reported(&mut m, spec(ClusterClass::B, 8), 1);
    for i in 0..50 {
        fund(&mut m, &tenant(&format!("t{i}")), 1_000);
    }
    fund(&mut m, &tenant("lab"), 1_000);
    leased(m.place_order(hourly(id, 7), entropy(1), t0()).unwrap());
    let market = Arc::new(Mutex::new(m));
    let barrier = Arc::new(Barrier::new(50));
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let (market, barrier) = (Arc::clone(&market), Arc::clone(&barrier));
            std::thread::spawn(move || {
                let req = OrderRequest {
                    user: AccountId(100 + i),
                    tenant: tenant(&format!("t{i}")),
                    ..hourly(id, 1)
                };
                barrier.wait();
                market
                    .lock()
                    .expect("no thread panics holding the lock")
                    .place_order(req, entropy(2), t0())
            })
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("thread ran"))
        .collect();
    let wins = results
        .iter()
        .filter(|r| matches!(r, Ok(OrderPlaced::Leased(_))))
        .count();
    let told = results
        .iter()
        .filter(|r| {
            matches!(
                r,
                Err(OrderError::Allocation(AllocationError::NotEnoughIdle {
                    idle: 0,
                    ..
                }))
            )
        })
        .count();
    assert_eq!((wins, told), (1, 49));
    let m = market.lock().unwrap();
    assert_eq!(m.leases().filter(|l| l.is_running()).count(), 2);
    let busy: usize = m.leases().map(|l| l.cards.len()).sum();
    assert_eq!(busy, 8);
    assert_eq!(m.catalog().listing(id).unwrap().idle_cards(), 0);
}
