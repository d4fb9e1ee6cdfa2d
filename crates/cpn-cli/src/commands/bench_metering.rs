//! `cpn bench metering`: issue #14's metering target on the real store — "100,000 usage
//! records per minute ingested durably, ledger closing of a month of them ≤ 5 s".
//!
//! In process, no HTTP: a `SqliteStore` opened as the server opens it (WAL,
//! `synchronous = FULL`, the group-committing writer thread) and the core's `Market`, called
//! the way the server's market service calls them — every operation followed by
//! `Market::take_changes` and one `MarketStore::apply_market` (one durable commit) before
//! the next. The server builds its `MarketWrite` from those two pieces and nothing else, so
//! the bench builds it the same way; what it leaves out is the server's lock, node sync and
//! announcements. Suppliers and users are `AccountId`s without account records (metering
//! never reads them).
//!
//! 1. Setup, untimed: `--suppliers` publish class B listings of 16 reported cards (two
//!    nodes of 8), `--tenants` are topped up and given a monthly budget, and `--leases`
//!    hourly orders of 1 to 4 cards start at once (automatic approval), spread over them.
//! 2. Ingest: `Market::meter` (what the server's metering loop calls every
//!    `METER_INTERVAL`) at simulated times `--step` seconds apart, each run persisted with
//!    one `apply_market` — its usage records, one ledger transaction per non-zero charge,
//!    the leases' metering state and the budgets — until `--records` records were made.
//!    Records per minute of wall time, meter and commit included.
//! 3. Close, as the server's month close does it: meter up to the month's end and persist,
//!    read the month's usage back from the store, `Market::close_month`, persist the close
//!    (settlements, invoices, statements) — timed as a whole.
//!
//! After each phase the ledger's trial balance must be zero, both in memory and in a market
//! restored from the store, and the store must hold every record made; otherwise the bench
//! fails.

use crate::commands::bench::percentile;
use anyhow::{Context, Result, bail, ensure};
use cpn_market::billing::{Budget, MonthClose};
use cpn_market::listing::{Approval, CardSpec, Disk, DiskKind, DiskRole, ResourceType};
use cpn_market::{
    AccountId, BillingMode, CardChoice, ClusterClass, KeyedHasher, ListingSpec, Market, Money,
    Month, OrderPlaced, OrderRequest, PriceSheet, TenantId, Timestamp, UsageRecord,
};
use cpn_server::market::{COMMISSION, METER_INTERVAL};
use cpn_store::{MarketStore, MarketWrite, SqliteStore};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Issue #14: usage records ingested durably per minute.
const TARGET_RECORDS_PER_MIN: f64 = 100_000.0;
/// Issue #14: closing a month of them.
const TARGET_CLOSE: Duration = Duration::from_secs(5);
/// Cards of each listing: two nodes of 8 devices.
const CARDS_PER_LISTING: u32 = 16;
/// The most cards one lease takes; two leases at most fit one listing.
const MAX_LEASE_CARDS: u64 = 4;

#[derive(Debug, clap::Args)]
pub struct BenchMeteringArgs {
    /// Hourly leases running while the meter runs (each makes one usage record per run).
    #[arg(long, default_value_t = 10_000)]
    pub leases: u64,
    /// Tenants the leases belong to, round robin; each is topped up and given a budget.
    #[arg(long, default_value_t = 2_000)]
    pub tenants: u64,
    /// Suppliers the listings belong to, round robin.
    #[arg(long, default_value_t = 500)]
    pub suppliers: u64,
    /// Usage records to ingest at least; the meter runs until it has made this many.
    #[arg(long, default_value_t = 100_000)]
    pub records: u64,
    /// Simulated seconds between two meter runs [default: the server's metering interval].
    #[arg(long)]
    pub step: Option<u64>,
    /// Store directory, created if needed; must not be a running server's. Default: a fresh
    /// temp dir, removed afterwards.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Seed of the prices and lease sizes.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// xorshift64*: reproducible prices and sizes without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// The market and its store, written to the way the server's market service writes.
struct Bench {
    market: Market,
    store: SqliteStore,
}

impl Bench {
    /// One `apply_market` of what the market changed and the records the call returned: the
    /// server's `persist`. A refusal fails the bench (nothing else writes this store).
    async fn persist(
        &mut self,
        usage: Vec<UsageRecord>,
        close: Option<MonthClose>,
    ) -> Result<Duration> {
        let write = MarketWrite {
            changes: self.market.take_changes(),
            usage,
            close,
            outbox: Vec::new(),
        };
        let start = Instant::now();
        self.store
            .apply_market(write)
            .await?
            .context("the store refused a market write")?;
        Ok(start.elapsed())
    }

    /// Zero in memory and in a market restored from the store, whose balances must be the
    /// same as the one in memory; the store must hold `records` usage records of `month`.
    async fn check_ledger(&self, hasher: &KeyedHasher, month: Month, records: usize) -> Result<()> {
        let trial = self.market.ledger().trial_balance();
        ensure!(
            trial == Money::ZERO,
            "the ledger in memory does not balance: trial balance {trial}"
        );
        let stored = self.store.load_market().await?;
        let restored = Market::restore(hasher.clone(), COMMISSION, stored)
            .context("restore the market from the store")?;
        let trial = restored.ledger().trial_balance();
        ensure!(
            trial == Money::ZERO,
            "the stored ledger does not balance: trial balance {trial}"
        );
        let mine: HashMap<_, _> = self.market.ledger().balances().collect();
        let theirs: HashMap<_, _> = restored.ledger().balances().collect();
        ensure!(
            mine == theirs,
            "the stored ledger's balances differ from the market's"
        );
        let usage = self.store.market_usage(month).await?.len();
        ensure!(
            usage == records,
            "the store holds {usage} usage records of {month}, the meter made {records}"
        );
        Ok(())
    }
}

pub async fn run(args: BenchMeteringArgs) -> Result<()> {
    let step = args.step.unwrap_or(METER_INTERVAL.as_secs());
    if args.leases == 0 || args.tenants == 0 || args.suppliers == 0 || args.records == 0 {
        bail!("--leases, --tenants, --suppliers and --records must be at least 1");
    }
    if step == 0 {
        bail!("--step must be at least 1 second");
    }
    // Every run meters every lease once; all runs stay inside one month, which is closed.
    let runs = args.records.div_ceil(args.leases);
    let month = Month::new(2026, 11).expect("a month");
    let t0 = month.start().plus_seconds(3_600);
    let step = runs
        .checked_mul(step)
        .and_then(|s| i64::try_from(s).ok())
        .filter(|&s| t0.plus_seconds(s) < month.end())
        .map(|_| step as i64)
        .with_context(|| {
            format!(
                "{runs} runs of --step {step} s do not fit in one month: raise --leases or lower --step"
            )
        })?;
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; the figures mean something only with --release");
    }
    let temp;
    let dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::tempdir().context("create a temp data dir")?;
            temp.path().to_path_buf()
        }
    };
    let store =
        SqliteStore::open(&dir).with_context(|| format!("open the store in {}", dir.display()))?;
    let hasher = KeyedHasher::new(&[7u8; 32]).context("bench identifier key")?;
    // The server's start: the market is what the store holds.
    let market = Market::restore(hasher.clone(), COMMISSION, store.load_market().await?)
        .context("restore the market from the store")?;
    if market.catalog().listings().next().is_some() || !market.ledger().transactions().is_empty() {
        bail!(
            "{} holds a marketplace already; give --data-dir an empty directory",
            dir.display()
        );
    }
    let mut bench = Bench { market, store };
    println!(
        "cpn bench metering: {} hourly leases of {} tenants on {} suppliers' listings, a meter run every {step} s (simulated), store in {}",
        args.leases,
        args.tenants,
        args.suppliers,
        dir.display()
    );
    let mut rng = Rng(args.seed.max(1));

    eprintln!(
        "setup: publishing listings, topping up tenants, starting leases (one commit each) ..."
    );
    let start = Instant::now();
    let commits = setup(&mut bench, &args, &mut rng, t0).await?;
    eprintln!(
        "setup: {commits} commits in {:.1} s",
        start.elapsed().as_secs_f64()
    );

    eprintln!("ingest: {runs} meter runs ...");
    let mut made = 0usize;
    let mut meter_times = Vec::with_capacity(runs as usize);
    let mut commit_times = Vec::with_capacity(runs as usize);
    let ingest = Instant::now();
    for k in 1..=runs as i64 {
        let t = t0.plus_seconds(step * k);
        let start = Instant::now();
        let run = bench.market.meter(t);
        meter_times.push(start.elapsed());
        ensure!(
            run.ended.is_empty(),
            "the meter ended {} leases (funds or budget ran out): the bench's top-ups are too small",
            run.ended.len()
        );
        made += run.usage.len();
        commit_times.push(bench.persist(run.usage, None).await?);
    }
    let wall = ingest.elapsed();
    bench.check_ledger(&hasher, month, made).await?;
    let per_min = made as f64 / wall.as_secs_f64() * 60.0;

    eprintln!("close: metering to the end of {month}, reading {month} back, closing ...");
    let close = Instant::now();
    let run = bench.market.meter(month.end());
    let last_records = run.usage.len();
    let last_commit = bench.persist(run.usage, None).await?;
    let metered = close.elapsed();
    let read = Instant::now();
    let records = bench.store.market_usage(month).await?;
    let read = read.elapsed();
    let closing = Instant::now();
    let closed = bench
        .market
        .close_month(month, &records, month.end())
        .context("close the month")?;
    let closing = closing.elapsed();
    let (invoices, statements) = (closed.invoices.len(), closed.statements.len());
    let invoiced: Money = closed.invoices.iter().map(|i| i.total).sum();
    let write = bench.persist(Vec::new(), Some(closed)).await?;
    let close = close.elapsed();
    let charged: Money = records.iter().map(|r| r.amount).sum();
    ensure!(
        invoiced == charged,
        "the invoices total {invoiced}, the month's records {charged}"
    );
    bench
        .check_ledger(&hasher, month, made + last_records)
        .await?;

    meter_times.sort();
    commit_times.sort();
    println!();
    row("ingest (issue #14: >= 100,000 records/min)", "");
    row("  meter runs", runs);
    row("  usage records made and stored", made);
    row(
        "  wall time (meter + commit)",
        format!("{:.2} s", wall.as_secs_f64()),
    );
    row("  records per minute", format!("{per_min:.0}"));
    for (what, times) in [("meter (core)", &meter_times), ("commit", &commit_times)] {
        let total: Duration = times.iter().sum();
        row(
            format!("  {what}: total / p50 / p99 per run"),
            format!(
                "{} / {} / {}",
                ms(total),
                ms(percentile(times, 0.50)),
                ms(percentile(times, 0.99))
            ),
        );
    }
    let commit_total: Duration = commit_times.iter().sum();
    row(
        "  commit per usage record",
        format!("{:.1} µs", commit_total.as_secs_f64() * 1e6 / made as f64),
    );
    row(format!("close of {month} (issue #14: <= 5 s)"), "");
    row("  usage records closed", records.len());
    row(
        format!("  meter to the month's end ({last_records} records), commit"),
        format!("{} ({} commit)", ms(metered), ms(last_commit)),
    );
    row("  read the month's usage from the store", ms(read));
    row(
        format!("  close: {invoices} invoices, {statements} statements"),
        ms(closing),
    );
    row("  write the close", ms(write));
    row("  total", ms(close));
    println!("trial balance: zero in memory and in the store after ingest and after close");
    let ingest_met = per_min >= TARGET_RECORDS_PER_MIN;
    let close_met = close <= TARGET_CLOSE;
    println!(
        "ingest: target {} ({per_min:.0} records/min vs >= {TARGET_RECORDS_PER_MIN:.0}); close: target {} ({:.2} s vs <= {} s)",
        if ingest_met { "met" } else { "missed" },
        if close_met { "met" } else { "missed" },
        close.as_secs_f64(),
        TARGET_CLOSE.as_secs()
    );
    Ok(())
}

/// One line of the printed table: a label and its figure.
fn row(label: impl std::fmt::Display, value: impl std::fmt::Display) {
    println!("{label:<50} {value:>32}");
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Listings, funds, budgets and leases, each operation persisted on its own as the server
/// does. Returns the number of commits.
async fn setup(
    bench: &mut Bench,
    args: &BenchMeteringArgs,
    rng: &mut Rng,
    at: Timestamp,
) -> Result<u64> {
    let mut commits = 0;
    let listings = args.leases.div_ceil(2);
    let mut cpcids = Vec::with_capacity(listings as usize);
    for i in 0..listings {
        let site = format!("site-{i}");
        let spec = ListingSpec {
            class: ClusterClass::B,
            resource_type: ResourceType::Gpu,
            model: "A100 80GB".into(),
            card_memory_gib: 80,
            memory_gib: 1024,
            vcpus: 128,
            prices: PriceSheet {
                hourly: Some(Money::from_minor(500 + rng.below(6_000) as i64)),
                monthly: None,
                yearly: None,
            },
            vendor: "bench".into(),
            region: "深圳市".into(),
            storage: vec![Disk {
                kind: DiskKind::NvmeSsd,
                role: DiskRole::Data,
                size_gb: 3_840,
            }],
            usage: None,
            approval: Approval::Automatic,
            site: site.clone(),
            cards: (0..CARDS_PER_LISTING)
                .map(|c| CardSpec {
                    node: format!("n{}", c / 8),
                    index: c % 8,
                })
                .collect(),
        };
        let sequence = bench.store.next_market_sequence("listing").await?;
        let supplier = AccountId(1 + i % args.suppliers);
        let cpcid = bench
            .market
            .catalog_mut()
            .publish(supplier, spec, sequence, at)
            .context("publish a listing")?;
        // The server's node sync after a publish: every card's node reports it.
        for node in ["n0", "n1"] {
            bench
                .market
                .catalog_mut()
                .report_node(&site, node, &[0, 1, 2, 3, 4, 5, 6, 7]);
        }
        bench.persist(Vec::new(), None).await?;
        commits += 1;
        cpcids.push(cpcid);
    }
    let tenants: Vec<TenantId> = (0..args.tenants)
        .map(|i| TenantId(format!("tenant-{i}")))
        .collect();
    // Enough for a month of its leases at the highest price, so nothing ends for want of
    // funds or budget.
    let leases_per_tenant = args.leases.div_ceil(args.tenants) as i64;
    let funds = Money::from_minor(leases_per_tenant * MAX_LEASE_CARDS as i64 * 6_500 * 24 * 31 * 2);
    for t in &tenants {
        bench
            .market
            .ledger_mut()
            .top_up(
                t,
                funds,
                &format!("topup:bench-{}", t.0),
                at,
                "bench top-up",
            )
            .context("top up")?;
        bench.persist(Vec::new(), None).await?;
        bench
            .market
            .budgets_mut()
            .set(
                t.clone(),
                Budget {
                    monthly_limit: funds,
                    alarm_percent: 80,
                },
                at,
            )
            .context("set a budget")?;
        bench.persist(Vec::new(), None).await?;
        commits += 2;
    }
    for i in 0..args.leases {
        let tenant = &tenants[(i % args.tenants) as usize];
        let order = OrderRequest {
            user: AccountId(1 + args.suppliers + i % args.tenants),
            tenant: tenant.clone(),
            listing: cpcids[(i / 2) as usize],
            cards: CardChoice::Count(1 + rng.below(MAX_LEASE_CARDS) as u32),
            mode: BillingMode::Hourly,
            periods: 0,
        };
        let placed = bench
            .market
            .place_order(order, [0; 32], at)
            .context("place an order")?;
        let OrderPlaced::Leased(started) = placed else {
            bail!("an automatically approved order did not start a lease");
        };
        bench.persist(started.usage, None).await?;
        commits += 1;
    }
    Ok(commits)
}
