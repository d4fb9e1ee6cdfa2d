//! The marketplace's store against a real database file in a temp dir: the allocation
//! contract under 50 concurrent writers, the ledger's checks, durability across a crash
//! with `Market::restore`, accounts with their unique keys, and the delivery log.

use chrono::Utc;
use cpn_market::account::lifecycle::Obligations;
use cpn_market::account::{Contact, Registration, UserKind, UserRegistration};
use cpn_market::billing::close::Commission;
use cpn_market::billing::{Budget, UsageRecord};
use cpn_market::lease::MAX_AUTHORIZATION_ATTEMPTS;
use cpn_market::listing::{Approval, CardSpec, Disk, DiskKind, DiskRole, ResourceType};
use cpn_market::{
    Account, AccountId, BillingMode, CardChoice, CardId, CardState, ClusterClass, CpcId,
    KeyedHasher, LeaseState, LedgerAccount, ListingSpec, Market, Money, OrderId, OrderPlaced,
    OrderRequest, PriceSheet, TenantId, Timestamp,
};
use cpn_store::{
    MarketRefusal, MarketStore, MarketWrite, NewOutboxEntry, NotificationAttemptRecord,
    NotificationLogQuery, OutboxStore, SqliteStore, StoreError,
};
use std::sync::Arc;

const SUPPLIER: AccountId = AccountId(1);
const USER: AccountId = AccountId(2);

/// 2026-12-07T10:00:00Z.
fn t0() -> Timestamp {
    Timestamp::from_unix(1_796_637_600)
}

fn hasher() -> KeyedHasher {
    KeyedHasher::new(b"a test key of thirty-two bytes!!").unwrap()
}

fn market() -> Market {
    Market::new(hasher(), Commission { basis_points: 500 })
}

fn restore(state: cpn_market::MarketState) -> Market {
    Market::restore(hasher(), Commission { basis_points: 500 }, state).unwrap()
}

fn tenant(name: &str) -> TenantId {
    TenantId(name.into())
}

/// A listing of `cards` cards on nodes `{site}-gpu-N` (8 each) of `site`.
fn spec(class: ClusterClass, site: &str, cards: u32) -> ListingSpec {
    ListingSpec {
        class,
        resource_type: ResourceType::Gpu,
        model: "A100 80GB".into(),
        card_memory_gib: 80,
        memory_gib: 1024,
        vcpus: 128,
        prices: PriceSheet {
            hourly: Some(Money::from_major(36)),
            monthly: Some(Money::from_major(5_000)),
            yearly: None,
        },
        vendor: "华为云".into(),
        region: "深圳市".into(),
        storage: vec![
            Disk {
                kind: DiskKind::NvmeSsd,
                role: DiskRole::Data,
                size_gb: 3840,
            },
            Disk {
                kind: DiskKind::SataSsd,
                role: DiskRole::System,
                size_gb: 480,
            },
        ],
        usage: (class == ClusterClass::A).then(|| "ssh to the node; CUDA 12".into()),
        approval: Approval::Automatic,
        site: site.into(),
        cards: (0..cards)
            .map(|i| CardSpec {
                node: format!("{site}-gpu-{}", i / 8),
                index: i % 8,
            })
            .collect(),
    }
}

/// Publishes under the store's listing sequence and has the agents report every card.
async fn publish(store: &SqliteStore, market: &mut Market, spec: ListingSpec) -> CpcId {
    let seq = store.next_market_sequence("listing").await.unwrap();
    let site = spec.site.clone();
    let mut nodes: std::collections::BTreeMap<String, Vec<u32>> = Default::default();
    for c in &spec.cards {
        nodes.entry(c.node.clone()).or_default().push(c.index);
    }
    let id = market
        .catalog_mut()
        .publish(SUPPLIER, spec, seq, t0())
        .unwrap();
    for (node, present) in nodes {
        market.catalog_mut().report_node(&site, &node, &present);
    }
    id
}

/// Writes what the market did since the last call, as the server does before it answers.
async fn persist(store: &SqliteStore, market: &mut Market, usage: Vec<UsageRecord>) {
    let changes = market.take_changes();
    store
        .apply_market(MarketWrite {
            changes,
            usage,
            close: None,
            outbox: Vec::new(),
        })
        .await
        .unwrap()
        .unwrap();
}

fn order(tenant_name: &str, listing: CpcId, mode: BillingMode, cards: u32) -> OrderRequest {
    OrderRequest {
        user: USER,
        tenant: tenant(tenant_name),
        listing,
        cards: CardChoice::Count(cards),
        mode,
        periods: if mode == BillingMode::Hourly { 0 } else { 1 },
    }
}

fn fund(market: &mut Market, name: &str, yuan: i64, key: &str) {
    market
        .ledger_mut()
        .top_up(&tenant(name), Money::from_major(yuan), key, t0(), "top-up")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_writers_race_for_the_last_card_and_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let mut m = market();
    let listing = publish(&store, &mut m, spec(ClusterClass::B, "sz-1", 1)).await;
    fund(&mut m, "lab", 10_000, "topup:lab:1");
    persist(&store, &mut m, vec![]).await;

    // Each writer has its own market restored from the store (as a second server would),
    // so nothing in memory serializes them: only the store's transaction can.
    const WRITERS: usize = 50;
    let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS));
    let mut tasks = Vec::new();
    for i in 0..WRITERS {
        let (store, barrier) = (store.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let mut m = restore(store.load_market().await.unwrap());
            let placed = m
                .place_order(
                    order("lab", listing, BillingMode::Monthly, 1),
                    [i as u8; 32],
                    t0().plus_seconds(60),
                )
                .unwrap();
            assert!(matches!(placed, OrderPlaced::Leased(_)), "{placed:?}");
            // Every writer has taken the card in memory before any writes.
            barrier.wait().await;
            store
                .apply_market(MarketWrite {
                    changes: m.take_changes(),
                    usage: vec![],
                    close: None,
                    outbox: Vec::new(),
                })
                .await
                .unwrap()
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => won += 1,
            Err(MarketRefusal::CardChanged { card, found, .. }) => {
                assert_eq!(card, 0);
                assert!(found.starts_with("busy"), "{found}");
            }
            Err(other) => panic!("a loser must lose on the card, not {other}"),
        }
    }
    assert_eq!(won, 1, "exactly one writer gets the last card");

    // What the store holds is one order, one lease, one charge: the losers left nothing.
    let state = store.load_market().await.unwrap();
    assert_eq!(state.orders.len(), 1);
    assert_eq!(state.leases.len(), 1);
    assert_eq!(
        state.transactions.len(),
        2,
        "the top-up and one prepaid charge"
    );
    let restored = restore(state);
    assert_eq!(
        restored.catalog().card_state(CardId(0)),
        Some(CardState::Busy(OrderId(1)))
    );
    assert_eq!(restored.ledger().trial_balance(), Money::ZERO);
    assert_eq!(
        restored.ledger().available(&tenant("lab")),
        Money::from_major(5_000)
    );
}

#[tokio::test]
async fn a_reservation_on_a_listing_delisted_meanwhile_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let mut m = market();
    let listing = publish(&store, &mut m, spec(ClusterClass::B, "sz-1", 2)).await;
    fund(&mut m, "lab", 10_000, "topup:lab:1");
    persist(&store, &mut m, vec![]).await;

    let mut delister = restore(store.load_market().await.unwrap());
    let mut orderer = restore(store.load_market().await.unwrap());
    delister
        .catalog_mut()
        .delist(listing, SUPPLIER, "maintenance", t0())
        .unwrap();
    persist(&store, &mut delister, vec![]).await;
    orderer
        .place_order(
            order("lab", listing, BillingMode::Monthly, 2),
            [1; 32],
            t0(),
        )
        .unwrap();
    let refused = store
        .apply_market(MarketWrite {
            changes: orderer.take_changes(),
            usage: vec![],
            close: None,
            outbox: Vec::new(),
        })
        .await
        .unwrap();
    assert!(
        matches!(refused, Err(MarketRefusal::NotListed { .. })),
        "{refused:?}"
    );
    let state = store.load_market().await.unwrap();
    assert!(state.orders.is_empty() && state.leases.is_empty());
    assert_eq!(state.transactions.len(), 1, "only the top-up");
    let restored = restore(state);
    for card in [CardId(0), CardId(1)] {
        assert_eq!(restored.catalog().card_state(card), Some(CardState::Idle));
    }
}

/// A notification the market write causes is in the same transaction: a refused write
/// leaves no outbox row, an applied one leaves both the change and the row.
#[tokio::test]
async fn a_market_write_and_its_notifications_are_stored_together_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let mut m = market();
    let listing = publish(&store, &mut m, spec(ClusterClass::B, "sz-1", 2)).await;
    fund(&mut m, "lab", 10_000, "topup:lab:1");
    persist(&store, &mut m, vec![]).await;
    let notice = |key: &str| NewOutboxEntry {
        key: key.into(),
        recipient: "ana".into(),
        kind: "lease".into(),
        targets: vec!["an***@example.cn".into()],
        message: "lease started".into(),
        created_at: Utc::now(),
        max_pending: 10,
    };
    let keys = |store: &SqliteStore| {
        let conn = rusqlite::Connection::open(store.path()).unwrap();
        let mut stmt = conn
            .prepare("SELECT key FROM notification_outbox ORDER BY seq")
            .unwrap();
        stmt.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .collect::<rusqlite::Result<Vec<_>>>()
            .unwrap()
    };

    // Two markets order the same two cards; the second write is refused whole.
    let mut first = restore(store.load_market().await.unwrap());
    let mut second = restore(store.load_market().await.unwrap());
    for (m, seed) in [(&mut first, 1), (&mut second, 2)] {
        m.place_order(
            order("lab", listing, BillingMode::Monthly, 2),
            [seed; 32],
            t0(),
        )
        .unwrap();
    }
    store
        .apply_market(MarketWrite {
            changes: first.take_changes(),
            outbox: vec![notice("lease-1:started-ana")],
            ..Default::default()
        })
        .await
        .unwrap()
        .unwrap();
    let refused = store
        .apply_market(MarketWrite {
            changes: second.take_changes(),
            outbox: vec![notice("lease-2:started-ana")],
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(
        keys(&store),
        ["lease-1:started-ana"],
        "the refused write's notification is not stored"
    );
    assert_eq!(store.load_market().await.unwrap().leases.len(), 1);
    // Stored like any entry: the outbox loop finds it pending.
    let pending = store.pending_notifications(0, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].message, "lease started");
}

#[tokio::test]
async fn the_store_refuses_unbalanced_and_repeated_transactions_and_keeps_the_ledger_append_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let mut m = market();
    fund(&mut m, "lab", 100, "topup:lab:1");
    let good = m.take_changes();
    assert_eq!(good.transactions.len(), 1);

    let mut bad = good.clone();
    bad.transactions[0].postings[1].amount = Money::from_major(101);
    let refused = store
        .apply_market(MarketWrite {
            changes: bad,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        matches!(refused, Err(MarketRefusal::Unbalanced { sum: 100, .. })),
        "{refused:?}"
    );
    assert!(store.load_market().await.unwrap().transactions.is_empty());

    store
        .apply_market(MarketWrite {
            changes: good.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .unwrap();
    // Another transaction under a key already used: what a second market that missed the
    // first post would write.
    let mut again = good.clone();
    again.transactions[0].id = cpn_market::billing::TxId(2);
    let refused = store
        .apply_market(MarketWrite {
            changes: again,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        matches!(
            refused,
            Err(MarketRefusal::Exists {
                what: "ledger transaction",
                ..
            })
        ),
        "{refused:?}"
    );
    let state = store.load_market().await.unwrap();
    assert_eq!(state.transactions, good.transactions);

    let conn = rusqlite::Connection::open(store.path()).unwrap();
    for sql in [
        "UPDATE market_postings SET amount = 0",
        "DELETE FROM market_postings",
        "DELETE FROM market_transactions",
    ] {
        let err = conn.execute(sql, []).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
}

#[tokio::test]
async fn acknowledged_leases_ledger_and_cards_survive_a_crash_and_restore_equal() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let mut m = market();
    let mut usage = Vec::new();
    let b = publish(&store, &mut m, spec(ClusterClass::B, "sz-1", 8)).await;
    let a = publish(&store, &mut m, spec(ClusterClass::A, "sz-2", 4)).await;
    fund(&mut m, "lab", 100_000, "topup:lab:1");
    fund(&mut m, "lab2", 20_000, "topup:lab2:1");
    m.ledger_mut()
        .grant_credit(
            &tenant("lab"),
            Money::from_major(50),
            "credit:lab:1",
            t0(),
            "welcome",
        )
        .unwrap();
    m.budgets_mut()
        .set(
            tenant("lab"),
            Budget {
                monthly_limit: Money::from_major(50_000),
                alarm_percent: 80,
            },
            t0(),
        )
        .unwrap();
    persist(&store, &mut m, vec![]).await;

    // An hourly class B lease of two cards: busy from the start.
    let OrderPlaced::Leased(hourly) = m
        .place_order(order("lab", b, BillingMode::Hourly, 2), [1; 32], t0())
        .unwrap()
    else {
        panic!("automatic approval")
    };
    usage.extend(hourly.usage.clone());
    persist(&store, &mut m, hourly.usage).await;

    // A monthly class A lease: charged at once, waiting for the authorization code.
    let OrderPlaced::Leased(monthly) = m
        .place_order(order("lab2", a, BillingMode::Monthly, 1), [2; 32], t0())
        .unwrap()
    else {
        panic!("automatic approval")
    };
    let code = monthly
        .authorization_code
        .clone()
        .expect("class A has a code");
    usage.extend(monthly.usage.clone());
    persist(&store, &mut m, monthly.usage).await;
    // A wrong code costs an attempt; the attempt must survive the crash.
    assert!(
        m.enter_authorization_code(USER, monthly.lease, "0000000000", t0().plus_seconds(5))
            .is_err()
    );
    persist(&store, &mut m, vec![]).await;

    // A second hourly lease, released after half an hour: its card is idle again.
    let OrderPlaced::Leased(short) = m
        .place_order(order("lab", b, BillingMode::Hourly, 1), [3; 32], t0())
        .unwrap()
    else {
        panic!("automatic approval")
    };
    persist(&store, &mut m, vec![]).await;
    // Monitoring samples (a card of the running lease missing from its node's report) and
    // the short lease's evaluation are stored with the leases.
    let node = m
        .catalog()
        .card_spec(m.lease(hourly.lease).unwrap().cards[0])
        .unwrap()
        .node
        .clone();
    let sample = vec![cpn_market::NodeSample {
        node,
        ready: true,
        report: Some(cpn_market::NodeReport {
            cpu_util: 250,
            gpus: Some(vec![(0, 900), (2, 400)]),
        }),
    }];
    for lease in [hourly.lease, short.lease] {
        m.observe(lease, &sample).unwrap();
    }
    assert_eq!(m.lease(hourly.lease).unwrap().monitoring().drop_offs, 1);
    persist(&store, &mut m, vec![]).await;
    let run = m
        .release(USER, short.lease, t0().plus_seconds(1800))
        .unwrap();
    assert!(m.lease(short.lease).unwrap().evaluation().is_some());
    usage.extend(run.usage.clone());
    persist(&store, &mut m, run.usage).await;

    // Metering three hours in, and a new price version.
    let run = m.meter(t0().plus_seconds(3 * 3600));
    assert!(!run.usage.is_empty());
    usage.extend(run.usage.clone());
    persist(&store, &mut m, run.usage).await;
    let mut prices = spec(ClusterClass::B, "sz-1", 8).prices;
    prices.hourly = Some(Money::from_major(40));
    m.catalog_mut().set_prices(b, SUPPLIER, prices).unwrap();
    persist(&store, &mut m, vec![]).await;

    // Something done in memory but never written: it was not acknowledged, so the crash
    // may lose it, and the restored market must not have it.
    let acknowledged = m.state();
    m.place_order(
        order("lab", b, BillingMode::Hourly, 1),
        [4; 32],
        t0().plus_seconds(3 * 3600 + 1),
    )
    .unwrap();

    // The crash: the store goes away without any shutdown; a new process opens the file.
    drop(store);
    let store = SqliteStore::open(dir.path()).unwrap();
    let mut restored = restore(store.load_market().await.unwrap());
    assert_eq!(restored.state(), acknowledged);

    assert_eq!(restored.ledger().trial_balance(), Money::ZERO);
    let lease = restored.lease(hourly.lease).unwrap();
    assert!(matches!(lease.state, LeaseState::Active { .. }));
    for card in &lease.cards {
        assert_eq!(
            restored.catalog().card_state(*card),
            Some(CardState::Busy(hourly.lease.order()))
        );
    }
    let short_lease = restored.lease(short.lease).unwrap();
    assert!(!short_lease.is_running());
    assert_eq!(
        restored.catalog().card_state(short_lease.cards[0]),
        Some(CardState::Idle)
    );
    assert_eq!(
        restored.lease(monthly.lease).unwrap().state,
        LeaseState::AwaitingAccess {
            attempts_left: MAX_AUTHORIZATION_ATTEMPTS - 1
        }
    );
    assert_eq!(restored.catalog().listing(b).unwrap().price_version(), 2);
    assert_eq!(restored.budgets().spent(&tenant("lab"), t0()), {
        let charged: Money = usage
            .iter()
            .filter(|u| u.tenant == tenant("lab"))
            .map(|u| u.amount)
            .sum();
        charged
    });

    // The code hash came back too: the supplier's code still opens the lease, and its
    // card turns busy.
    let access = restored
        .enter_authorization_code(USER, monthly.lease, &code, t0().plus_seconds(60))
        .unwrap();
    assert_eq!(
        restored.catalog().card_state(access.cards[0].0),
        Some(CardState::Busy(monthly.lease.order()))
    );
    persist(&store, &mut restored, vec![]).await;

    // The month's close from the stored usage, written with its settlements; a rerun with
    // the same figures is accepted and changes nothing.
    let month = t0().month();
    let records = store.market_usage(month).await.unwrap();
    assert_eq!(records, usage);
    let close = restored
        .close_month(month, &records, t0().plus_seconds(4 * 3600))
        .unwrap();
    for _ in 0..2 {
        store
            .apply_market(MarketWrite {
                changes: restored.take_changes(),
                usage: vec![],
                close: Some(close.clone()),
                outbox: Vec::new(),
            })
            .await
            .unwrap()
            .unwrap();
    }
    let invoices = store.market_invoices(month).await.unwrap();
    assert_eq!(invoices.len(), 2);
    let lab = invoices.iter().find(|i| i.tenant == "lab").unwrap();
    assert_eq!(
        lab.total_minor,
        close
            .invoices
            .iter()
            .find(|i| i.tenant == tenant("lab"))
            .unwrap()
            .total
            .minor()
    );
    let statements = store.market_statements(month).await.unwrap();
    assert_eq!(statements.len(), 1);
    assert_eq!(statements[0].csv, close.statements[0].to_csv());
    let again = restore(store.load_market().await.unwrap());
    assert_eq!(again.state(), restored.state());
    assert_eq!(
        again.ledger().balance(&LedgerAccount::Clearing),
        Money::ZERO
    );
}

fn registration(username: &str, email: &str) -> Registration {
    Registration::User(UserRegistration {
        username: username.into(),
        contact: Contact {
            email: Some(email.into()),
            phone: Some("+8613800138000".into()),
        },
        real_name: "李雷".into(),
        national_id: "11010519491231002X".into(),
        kind: UserKind::Individual,
        organization: None,
        region: Some("深圳市".into()),
        accepted_terms: "2026-01".into(),
    })
}

fn assert_same(a: &Account, b: &Account) {
    assert_eq!(
        (
            a.id(),
            a.kind(),
            a.username(),
            a.profile(),
            a.state(),
            a.history()
        ),
        (
            b.id(),
            b.kind(),
            b.username(),
            b.profile(),
            b.state(),
            b.history()
        )
    );
}

#[tokio::test]
async fn accounts_keep_unique_keys_hashed_identifiers_and_their_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let id = AccountId(store.next_market_sequence("account").await.unwrap());
    let profile = registration("li.lei", "Li.Lei@Example.cn")
        .seal(&hasher())
        .unwrap();
    let mut account = Account::register(id, profile, t0());
    store.create_market_account(account.clone()).await.unwrap();

    // The same e-mail in other case, or the username in other case, is taken.
    for (user, email) in [
        ("han.mei", "li.lei@example.CN"),
        ("LI.LEI", "other@example.cn"),
    ] {
        let other_id = AccountId(store.next_market_sequence("account").await.unwrap());
        let mut r = registration(user, email);
        if let Registration::User(u) = &mut r {
            u.contact.phone = None;
        }
        let other = Account::register(other_id, r.seal(&hasher()).unwrap(), t0());
        let err = store.create_market_account(other).await.unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err}");
        assert!(store.get_market_account(other_id).await.unwrap().is_none());
    }
    assert_eq!(
        store
            .find_market_account("contact.phone", "13800138000")
            .await
            .unwrap(),
        Some(id)
    );
    let national = account
        .profile()
        .unwrap()
        .identifier("national_id")
        .unwrap()
        .clone();
    assert_eq!(
        store
            .market_accounts_with_identifier(&national)
            .await
            .unwrap(),
        vec![id]
    );

    let (stored, version) = store.get_market_account(id).await.unwrap().unwrap();
    assert_same(&stored, &account);
    account.activate(t0().plus_seconds(60)).unwrap();
    let version = store
        .update_market_account(account.clone(), version)
        .await
        .unwrap();
    let stale = store
        .update_market_account(account.clone(), version - 1)
        .await;
    assert!(
        matches!(stale, Err(StoreError::StaleVersion { .. })),
        "{stale:?}"
    );
    assert_eq!(
        store.market_accounts_in_state("active").await.unwrap(),
        vec![id]
    );

    // Deregistration erases the profile, identifiers and contact keys; the username stays
    // reserved and the history stays.
    account
        .deregister(
            Obligations {
                running_leases: 0,
                balance: Money::ZERO,
            },
            t0().plus_seconds(120),
        )
        .unwrap();
    store
        .update_market_account(account.clone(), version)
        .await
        .unwrap();
    let (stored, _) = store.get_market_account(id).await.unwrap().unwrap();
    assert_same(&stored, &account);
    assert!(stored.profile().is_none());
    assert_eq!(stored.history().len(), 3);
    assert!(
        store
            .market_accounts_with_identifier(&national)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .find_market_account("username", "li.lei")
            .await
            .unwrap(),
        Some(id)
    );
    let again = AccountId(store.next_market_sequence("account").await.unwrap());
    let newcomer = Account::register(
        again,
        registration("han.mei", "li.lei@example.cn")
            .seal(&hasher())
            .unwrap(),
        t0(),
    );
    store.create_market_account(newcomer).await.unwrap();
}

#[tokio::test]
async fn the_delivery_log_answers_delivered_per_key_and_target() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let attempt = |n: u32, status: &str, target_id: &str| NotificationAttemptRecord {
        idempotency_key: "lease-7-started".into(),
        kind: "lease_started".into(),
        recipient: "usr-1".into(),
        channel: "email".into(),
        target: "al***@example.org".into(),
        target_id: target_id.into(),
        attempt: n,
        status: status.into(),
        error: (status != "delivered").then(|| "451 try later".into()),
        permanent: false,
        at: Utc::now(),
        next_attempt_at: None,
    };
    store
        .record_notification_attempt(attempt(1, "retrying", "t1"))
        .await
        .unwrap();
    assert!(
        !store
            .notification_delivered("lease-7-started", "t1")
            .await
            .unwrap()
    );
    store
        .record_notification_attempt(attempt(2, "delivered", "t1"))
        .await
        .unwrap();
    store
        .record_notification_attempt(attempt(1, "failed", "t2"))
        .await
        .unwrap();
    assert!(
        store
            .notification_delivered("lease-7-started", "t1")
            .await
            .unwrap()
    );
    assert!(
        !store
            .notification_delivered("lease-7-started", "t2")
            .await
            .unwrap()
    );
    assert!(!store.notification_delivered("other", "t1").await.unwrap());
    let all = store
        .notification_attempts("lease-7-started")
        .await
        .unwrap();
    assert_eq!(
        all.iter()
            .map(|a| (a.attempt, a.status.as_str()))
            .collect::<Vec<_>>(),
        vec![(1, "retrying"), (2, "delivered"), (1, "failed")]
    );
}

#[tokio::test]
async fn the_delivery_log_lists_newest_first_filtered_and_paged() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let t0 = Utc::now() - chrono::Duration::hours(1);
    let attempt = |n: u32, recipient: &str, status: &str, minutes: i64| NotificationAttemptRecord {
        idempotency_key: format!("k-{recipient}"),
        kind: "account".into(),
        recipient: recipient.into(),
        channel: "email".into(),
        target: "al***@example.org".into(),
        target_id: "t1".into(),
        attempt: n,
        status: status.into(),
        error: None,
        permanent: false,
        at: t0 + chrono::Duration::minutes(minutes),
        next_attempt_at: None,
    };
    for a in [
        attempt(1, "ana", "retrying", 0),
        attempt(1, "bo", "failed", 1),
        attempt(2, "ana", "retrying", 2),
        attempt(3, "ana", "delivered", 3),
    ] {
        store.record_notification_attempt(a).await.unwrap();
    }
    let list = |q: NotificationLogQuery| {
        let store = &store;
        async move {
            store
                .notification_log(q)
                .await
                .unwrap()
                .into_iter()
                .map(|(seq, a)| (seq, a.recipient, a.attempt, a.status))
                .collect::<Vec<_>>()
        }
    };
    let ana = list(NotificationLogQuery {
        recipient: Some("ana".into()),
        limit: 10,
        ..Default::default()
    })
    .await;
    assert_eq!(
        ana.iter().map(|r| (r.2, r.3.as_str())).collect::<Vec<_>>(),
        vec![(3, "delivered"), (2, "retrying"), (1, "retrying")],
        "newest first, only ana's"
    );
    let retrying = list(NotificationLogQuery {
        status: Some("retrying".into()),
        since: Some(t0 + chrono::Duration::minutes(1)),
        limit: 10,
        ..Default::default()
    })
    .await;
    assert_eq!(
        retrying
            .iter()
            .map(|r| (r.1.as_str(), r.2))
            .collect::<Vec<_>>(),
        vec![("ana", 2)]
    );
    // Pages of two: the second starts below the last sequence number of the first.
    let first = list(NotificationLogQuery {
        limit: 2,
        ..Default::default()
    })
    .await;
    assert_eq!(first.len(), 2);
    let second = list(NotificationLogQuery {
        limit: 2,
        before: Some(first[1].0),
        ..Default::default()
    })
    .await;
    assert_eq!(
        second
            .iter()
            .map(|r| (r.1.as_str(), r.2))
            .collect::<Vec<_>>(),
        vec![("bo", 1), ("ana", 1)]
    );
    let huge = list(NotificationLogQuery {
        limit: u32::MAX,
        ..Default::default()
    })
    .await;
    assert_eq!(huge.len(), 4, "a limit past the cap is capped, not refused");
}
