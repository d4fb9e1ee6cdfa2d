//! Invariants over random inputs: the search equals a brute-force filter of the catalog
//! after any sequence of card changes, and every ledger balances after any sequence of
//! operations.

use crate::fixtures::{SUPPLIER, hasher, t0, tenant};
use cpn_market::billing::close::Commission;
use cpn_market::listing::{Approval, CardSpec, Disk, DiskKind, DiskRole, ResourceType};
use cpn_market::search::SortKey;
use cpn_market::{
    BillingMode, CardChoice, CardState, Catalog, ClusterClass, CpcId, LedgerAccount, ListingSpec,
    Market, Money, OrderId, OrderPlaced, OrderRequest, PriceSheet, Query,
};
use proptest::prelude::*;

const MODELS: [&str; 3] = ["A100 80GB", "H100 80GB", "4090 24GB"];
const REGIONS: [&str; 3] = ["深圳市", "广州市", "北京市"];

fn listing(
    i: u64,
    class: bool,
    model: usize,
    region: usize,
    cards: u32,
    vcpus: u32,
    price: i64,
) -> ListingSpec {
    ListingSpec {
        class: if class {
            ClusterClass::A
        } else {
            ClusterClass::B
        },
        resource_type: ResourceType::Gpu,
        model: MODELS[model].into(),
        card_memory_gib: [80, 80, 24][model],
        memory_gib: 512,
        vcpus,
        prices: PriceSheet {
            hourly: Some(Money::from_minor(price)),
            monthly: None,
            yearly: None,
        },
        vendor: "v".into(),
        region: REGIONS[region].into(),
        storage: vec![Disk {
            kind: DiskKind::NvmeSsd,
            role: DiskRole::Data,
            size_gb: 1000,
        }],
        usage: Some("ssh".into()),
        approval: Approval::Automatic,
        site: format!("site-{i}"),
        cards: (0..cards)
            .map(|c| CardSpec {
                node: "n".into(),
                index: c,
            })
            .collect(),
    }
}

/// The specification of the search, written the slow way over the public catalog.
fn brute_force(catalog: &Catalog, q: &Query) -> (usize, Vec<CpcId>) {
    let mut rows: Vec<(i64, u64, CpcId)> = catalog
        .listings()
        .filter(|l| {
            let s = l.spec();
            let idle = l
                .card_ids()
                .filter(|c| catalog.card_state(*c) == Some(CardState::Idle))
                .count() as u32;
            matches!(l.status(), cpn_market::catalog::ListingStatus::Listed)
                && idle >= q.min_idle_cards.max(1)
                && q.class.is_none_or(|c| c == s.class)
                && q.model.as_deref().is_none_or(|m| m == s.model)
                && q.region.as_deref().is_none_or(|r| r == s.region)
                && s.vcpus >= q.min_vcpus
                && q.max_unit_price
                    .is_none_or(|p| s.prices.hourly.is_some_and(|h| h <= p))
        })
        .map(|l| {
            let key = match q.sort {
                SortKey::UnitPrice => l.spec().prices.hourly.unwrap().minor(),
                SortKey::Vcpus => i64::from(l.spec().vcpus),
                SortKey::IdleCards => i64::from(l.idle_cards()),
                _ => l.cpcid().sequence() as i64,
            };
            (
                if q.descending { -key } else { key },
                l.cpcid().sequence(),
                l.cpcid(),
            )
        })
        .collect();
    rows.sort();
    let total = rows.len();
    let page = rows
        .into_iter()
        .skip(q.offset)
        .take(q.limit)
        .map(|r| r.2)
        .collect();
    (total, page)
}

#[derive(Debug, Clone)]
enum Change {
    Reserve {
        listing: usize,
        cards: u32,
    },
    Report {
        listing: usize,
        present: Vec<u32>,
    },
    Delist(usize),
    Relist(usize),
    /// The supplier edits model, region and price: the row moves between posting sets.
    Edit {
        listing: usize,
        model: usize,
        region: usize,
        price: i64,
    },
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        (0..12usize, 1..4u32).prop_map(|(listing, cards)| Change::Reserve { listing, cards }),
        (0..12usize, proptest::collection::vec(0..6u32, 0..6))
            .prop_map(|(listing, present)| Change::Report { listing, present }),
        (0..12usize).prop_map(Change::Delist),
        (0..12usize).prop_map(Change::Relist),
        (0..12usize, 0..3usize, 0..3usize, 100..400i64).prop_map(
            |(listing, model, region, price)| Change::Edit {
                listing,
                model,
                region,
                price
            }
        ),
    ]
}

fn query() -> impl Strategy<Value = Query> {
    (
        proptest::option::of(any::<bool>()),
        proptest::option::of(0..3usize),
        proptest::option::of(0..3usize),
        0..4u32,
        0..96u32,
        proptest::option::of(100..400i64),
        prop_oneof![
            Just(SortKey::UnitPrice),
            Just(SortKey::Vcpus),
            Just(SortKey::IdleCards),
            Just(SortKey::CpcId)
        ],
        any::<bool>(),
        0..6usize,
        1..6usize,
    )
        .prop_map(
            |(class, model, region, min_idle, vcpus, price, sort, descending, offset, limit)| {
                Query {
                    class: class.map(|a| if a { ClusterClass::A } else { ClusterClass::B }),
                    model: model.map(|m| MODELS[m].to_string()),
                    region: region.map(|r| REGIONS[r].to_string()),
                    min_idle_cards: min_idle,
                    min_vcpus: vcpus,
                    billing_mode: Some(BillingMode::Hourly),
                    max_unit_price: price.map(Money::from_minor),
                    sort,
                    descending,
                    offset,
                    limit,
                    ..Query::default()
                }
            },
        )
}

proptest! {
    #[test]
    fn the_index_equals_a_brute_force_filter(
        listings in proptest::collection::vec((any::<bool>(), 0..3usize, 0..3usize, 1..6u32, 8..128u32, 100..400i64), 1..12),
        changes in proptest::collection::vec(change(), 0..40),
        queries in proptest::collection::vec(query(), 1..8),
    ) {
        let mut catalog = Catalog::new();
        let mut ids = Vec::new();
        for (i, (class, model, region, cards, vcpus, price)) in listings.into_iter().enumerate() {
            let spec = listing(i as u64, class, model, region, cards, vcpus, price);
            let id = catalog.publish(SUPPLIER, spec, i as u64 + 1, t0()).unwrap();
            catalog.report_node(&format!("site-{i}"), "n", &[0, 1, 2, 3, 4, 5]);
            ids.push(id);
        }
        for (n, c) in changes.into_iter().enumerate() {
            match c {
                Change::Reserve { listing, cards } => {
                    let _ = catalog.reserve(ids[listing % ids.len()], &CardChoice::Count(cards), OrderId(n as u64 + 1));
                }
                Change::Report { listing, present } => {
                    let i = listing % ids.len();
                    catalog.report_node(&format!("site-{i}"), "n", &present);
                }
                Change::Delist(l) => { let _ = catalog.delist(ids[l % ids.len()], SUPPLIER, "x", t0()); }
                Change::Relist(l) => { let _ = catalog.relist(ids[l % ids.len()], SUPPLIER); }
                Change::Edit { listing, model, region, price } => {
                    let id = ids[listing % ids.len()];
                    let mut spec = catalog.listing(id).unwrap().spec().clone();
                    spec.model = MODELS[model].into();
                    spec.region = REGIONS[region].into();
                    spec.prices.hourly = Some(Money::from_minor(price));
                    catalog.edit(id, SUPPLIER, spec).unwrap();
                }
            }
        }
        for q in &queries {
            let hits = catalog.search(q).unwrap();
            let (total, page) = brute_force(&catalog, q);
            prop_assert_eq!(hits.total, total, "{:?}", q);
            prop_assert_eq!(hits.items.iter().map(|h| h.cpcid).collect::<Vec<_>>(), page, "{:?}", q);
        }
    }

    #[test]
    fn the_ledger_sums_to_zero_after_any_sequence_of_operations(
        ops in proptest::collection::vec((0..6u8, 0..3usize, 1..5_000i64, 0..4u32), 1..60),
    ) {
        let mut m = Market::new(hasher(), Commission { basis_points: 750 });
        let mut spec = listing(0, false, 0, 0, 6, 64, 3_600);
        spec.prices.monthly = Some(Money::from_major(100));
        let id = m.catalog_mut().publish(SUPPLIER, spec, 1, t0()).unwrap();
        m.catalog_mut().report_node("site-0", "n", &[0, 1, 2, 3, 4, 5]);
        let mut now = t0();
        let mut records = Vec::new();
        for (n, (op, who, amount, cards)) in ops.into_iter().enumerate() {
            let t = tenant(&format!("t{who}"));
            now = now.plus_seconds(amount * 37);
            match op {
                0 => { m.ledger_mut().top_up(&t, Money::from_minor(amount * 100), &format!("top{n}"), now, "").unwrap(); }
                1 => { m.ledger_mut().grant_credit(&t, Money::from_minor(amount), &format!("cr{n}"), now, "").unwrap(); }
                2 | 3 => {
                    let (mode, periods) = if op == 2 { (BillingMode::Hourly, 0) } else { (BillingMode::Monthly, 1) };
                    let req = OrderRequest { user: SUPPLIER, tenant: t, listing: id, cards: CardChoice::Count(cards.max(1)), mode, periods };
                    if let Ok(OrderPlaced::Leased(l)) = m.place_order(req, [n as u8; 32], now) {
                        records.extend(l.usage);
                    }
                }
                4 => records.extend(m.meter(now).usage),
                _ => {
                    let running: Vec<_> = m.leases().filter(|l| l.is_running()).map(|l| (l.user, l.id)).collect();
                    if let Some((user, lease)) = running.first() {
                        records.extend(m.release(*user, *lease, now).unwrap().usage);
                    }
                }
            }
            prop_assert_eq!(m.ledger().trial_balance(), Money::ZERO);
            for tx in m.ledger().transactions() {
                prop_assert_eq!(tx.postings.iter().map(|p| p.amount).sum::<Money>(), Money::ZERO);
            }
            prop_assert!(m.ledger().balances().all(|(a, b)| !matches!(a, LedgerAccount::UserCredit(_)) || b >= Money::ZERO));
        }
        // Charges equal the records' amounts, and closing every month empties the clearing.
        let charged: Money = records.iter().map(|r| r.amount).sum();
        prop_assert_eq!(m.ledger().balance(&LedgerAccount::Clearing), charged);
        let mut months: Vec<_> = records.iter().map(|r| r.start.month()).collect();
        months.sort();
        months.dedup();
        for month in months {
            let of_month: Vec<_> = records.iter().filter(|r| month.contains(r.start)).cloned().collect();
            let close = m.close_month(month, &of_month, now).unwrap();
            let invoiced: Money = close.invoices.iter().map(|i| i.total).sum();
            let settled: Money = close.statements.iter().map(|s| s.gross).sum();
            prop_assert_eq!(invoiced, settled);
        }
        prop_assert_eq!(m.ledger().balance(&LedgerAccount::Clearing), Money::ZERO);
        prop_assert_eq!(m.ledger().trial_balance(), Money::ZERO);
    }
}
