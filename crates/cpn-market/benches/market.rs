//! Benchmarks for issue #14's targets: the marketplace search over 10,000 listings of
//! 100,000 cards with 3 filters (p99 ≤ 20 ms), a card state change in the index, and the
//! close of a month of 100,000 usage records (≤ 5 s). Besides criterion's means, the search
//! prints the p50/p99 of a mix of 3-filter queries, since the target is a percentile.

use cpn_market::billing::close::{Commission, close_month};
use cpn_market::listing::{Approval, CardSpec, Disk, DiskKind, DiskRole, PriceQuote, ResourceType};
use cpn_market::{
    AccountId, BillingMode, CardChoice, Catalog, ClusterClass, CpcId, LeaseId, Ledger, ListingSpec,
    Money, Month, OrderId, PriceSheet, Query, SortKey, TenantId, Timestamp, UsageKind, UsageRecord,
};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Instant;

const LISTINGS: u64 = 10_000;
const CARDS_PER_LISTING: u32 = 10;
const MODELS: [&str; 12] = [
    "A100 80GB",
    "A100 40GB",
    "H100 80GB",
    "H800 80GB",
    "H20 96GB",
    "L40S 48GB",
    "4090 24GB",
    "A800 80GB",
    "910B 64GB",
    "V100 32GB",
    "A10 24GB",
    "L20 48GB",
];
const REGIONS: [&str; 30] = [
    "深圳市",
    "广州市",
    "东莞市",
    "佛山市",
    "珠海市",
    "惠州市",
    "中山市",
    "江门市",
    "汕头市",
    "湛江市",
    "北京市",
    "上海市",
    "杭州市",
    "南京市",
    "苏州市",
    "武汉市",
    "成都市",
    "重庆市",
    "西安市",
    "郑州市",
    "长沙市",
    "合肥市",
    "福州市",
    "厦门市",
    "济南市",
    "青岛市",
    "天津市",
    "沈阳市",
    "贵阳市",
    "呼和浩特市",
];

/// xorshift64*: deterministic data without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn t0() -> Timestamp {
    Timestamp::from_unix(1_796_637_600)
}

/// 10,000 listings of 10 cards, every card reported, about 40 % of cards taken.
fn catalog(rng: &mut Rng) -> (Catalog, Vec<CpcId>) {
    let mut catalog = Catalog::new();
    let mut ids = Vec::new();
    for i in 0..LISTINGS {
        let model = rng.below(MODELS.len() as u64) as usize;
        let spec = ListingSpec {
            class: if rng.below(3) == 0 {
                ClusterClass::A
            } else {
                ClusterClass::B
            },
            resource_type: if model == 8 {
                ResourceType::Npu
            } else {
                ResourceType::Gpu
            },
            model: MODELS[model].into(),
            card_memory_gib: [80, 40, 80, 80, 96, 48, 24, 80, 64, 32, 24, 48][model],
            memory_gib: [256, 512, 1024, 2048][rng.below(4) as usize],
            vcpus: [32, 64, 96, 128, 192][rng.below(5) as usize],
            prices: PriceSheet {
                hourly: Some(Money::from_minor(500 + rng.below(6_000) as i64)),
                monthly: (rng.below(2) == 0)
                    .then(|| Money::from_minor(300_000 + rng.below(4_000_000) as i64)),
                yearly: None,
            },
            vendor: "vendor".into(),
            region: REGIONS[rng.below(REGIONS.len() as u64) as usize].into(),
            storage: vec![Disk {
                kind: DiskKind::NvmeSsd,
                role: DiskRole::Data,
                size_gb: 1920 * (1 + rng.below(4) as u32),
            }],
            usage: Some("ssh".into()),
            approval: Approval::Automatic,
            site: format!("site-{i}"),
            cards: (0..CARDS_PER_LISTING)
                .map(|c| CardSpec {
                    node: format!("n{}", c / 8),
                    index: c % 8,
                })
                .collect(),
        };
        let id = catalog
            .publish(AccountId(1 + i % 500), spec, i + 1, t0())
            .expect("valid spec");
        catalog.report_node(&format!("site-{i}"), "n0", &[0, 1, 2, 3, 4, 5, 6, 7]);
        catalog.report_node(&format!("site-{i}"), "n1", &[0, 1]);
        if rng.below(10) < 9 {
            catalog
                .set_reliability(id, 800 + rng.below(201) as u16)
                .expect("per mille");
        }
        let taken = rng.below(9) as u32;
        if taken > 0 {
            catalog
                .reserve(id, &CardChoice::Count(taken), OrderId(i + 1))
                .expect("idle cards");
        }
        ids.push(id);
    }
    (catalog, ids)
}

/// Three filters each, in the shapes a user asks: model + region + price, class + cards +
/// vCPU, region + memory + reliability (no model: the widest scan), sorted by price.
fn queries(rng: &mut Rng, n: usize) -> Vec<Query> {
    (0..n)
        .map(|i| {
            let base = Query {
                billing_mode: Some(BillingMode::Hourly),
                sort: SortKey::UnitPrice,
                ..Query::default()
            };
            match i % 4 {
                0 => Query {
                    model: Some(MODELS[rng.below(12) as usize].into()),
                    region: Some(REGIONS[rng.below(30) as usize].into()),
                    max_unit_price: Some(Money::from_minor(3_000)),
                    ..base
                },
                1 => Query {
                    class: Some(ClusterClass::B),
                    min_idle_cards: 1 + rng.below(8) as u32,
                    min_vcpus: 64,
                    ..base
                },
                2 => Query {
                    region: Some(REGIONS[rng.below(30) as usize].into()),
                    min_memory_gib: 512,
                    min_reliability: Some(900),
                    ..base
                },
                // The worst case: three range filters, no equality filter to narrow by.
                _ => Query {
                    min_idle_cards: 2,
                    min_card_memory_gib: 48,
                    min_storage_gb: 3_000,
                    sort: SortKey::Reliability,
                    descending: true,
                    ..base
                },
            }
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn search(c: &mut Criterion) {
    let mut rng = Rng(0x5eed);
    let (mut catalog, ids) = catalog(&mut rng);
    let qs = queries(&mut rng, 4_000);

    // The target is a p99: time each query of the mix.
    let mut ms: Vec<f64> = qs
        .iter()
        .map(|q| {
            let start = Instant::now();
            black_box(catalog.search(q).expect("valid query"));
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    eprintln!(
        "search over {LISTINGS} listings / {} cards, {} queries of 3 filters: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms (target p99 <= 20 ms)",
        LISTINGS * u64::from(CARDS_PER_LISTING),
        ms.len(),
        percentile(&ms, 0.50),
        percentile(&ms, 0.99),
        ms[ms.len() - 1]
    );

    let mut group = c.benchmark_group("search");
    for (name, q) in [
        ("model+region+price", &qs[0]),
        ("class+cards+vcpu", &qs[1]),
        ("region+memory+reliability", &qs[2]),
        ("three ranges, widest scan", &qs[3]),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| black_box(catalog.search(q).expect("valid query")))
        });
    }
    group.finish();

    // O(changed): an agent's report takes one card offline and brings it back; each
    // report updates the listing's idle count and the index, whatever the catalog's size.
    let sites: Vec<String> = (0..LISTINGS).map(|i| format!("site-{i}")).collect();
    let mut n = 0usize;
    c.bench_function(
        "card state change: a node reports one card gone, then back",
        |b| {
            b.iter(|| {
                n = (n + 1) % sites.len();
                black_box(catalog.report_node(&sites[n], "n1", &[0]));
                black_box(catalog.report_node(&sites[n], "n1", &[0, 1]));
            })
        },
    );
    black_box(&ids);
}

/// 100,000 records of a month: 10,000 leases × 10 records, 2,000 tenants, 500 suppliers.
fn month_of_records(rng: &mut Rng) -> (Month, Vec<UsageRecord>) {
    let month = Month::new(2026, 12).expect("a month");
    let start = month.start();
    let mut records = Vec::with_capacity(100_000);
    for lease in 0..10_000u64 {
        let quote = PriceQuote {
            version: 1,
            mode: BillingMode::Hourly,
            unit_price: Money::from_minor(500 + rng.below(6_000) as i64),
        };
        let tenant = TenantId(format!("tenant-{}", lease % 2_000));
        let cards = 1 + rng.below(8);
        for k in 0..10u64 {
            let from = start.plus_seconds((lease % 100 * 20_000 + k * 600) as i64);
            let seconds = 600;
            records.push(UsageRecord {
                lease: LeaseId(lease + 1),
                tenant: tenant.clone(),
                supplier: AccountId(1 + lease % 500),
                listing: CpcId::from_sequence(1 + lease).expect("in range"),
                kind: if k == 9 {
                    UsageKind::TaskGpuSeconds
                } else {
                    UsageKind::LeaseCardSeconds
                },
                quantity: seconds * cards,
                start: from,
                end: from.plus_seconds(seconds as i64),
                quote,
                amount: quote.unit_price.mul_div_round(seconds * cards, 3_600),
            });
        }
    }
    (month, records)
}

fn close(c: &mut Criterion) {
    let mut rng = Rng(0xb111);
    let (month, records) = month_of_records(&mut rng);
    let mut ledger = Ledger::new();
    // The charges the meter posted as it made the records.
    for (i, r) in records.iter().enumerate() {
        ledger
            .top_up(
                &r.tenant,
                r.amount.max(Money::from_minor(1)),
                &format!("top-{i}"),
                r.start,
                "",
            )
            .expect("positive");
        ledger
            .charge(&r.tenant, r.amount, &format!("meter-{i}"), r.end, "")
            .expect("not negative");
    }
    let commission = Commission { basis_points: 500 };
    let at = month.end();
    let start = Instant::now();
    let once = close_month(month, &records, &mut ledger.clone(), commission, at).expect("closes");
    eprintln!(
        "close of {} usage records: {} invoices, {} statements in {:.1} ms (target <= 5 s)",
        records.len(),
        once.invoices.len(),
        once.statements.len(),
        start.elapsed().as_secs_f64() * 1e3
    );
    let mut group = c.benchmark_group("close");
    group.sample_size(10);
    group.bench_function("month of 100,000 usage records", |b| {
        b.iter_batched(
            || ledger.clone(),
            |mut l| {
                black_box(close_month(month, &records, &mut l, commission, at).expect("closes"))
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, search, close);
criterion_main!(benches);
