//! `cpn market`, `cpn lease` and `cpn billing`: the sharing marketplace's listings, orders,
//! leases and money (issue #14). Amounts print in yuan with two decimals; the API and
//! `-o json` keep integer minor units (fen).

use super::Ctx;
use crate::client::decode;
use crate::input;
use crate::output;
use anyhow::{Context, Result};
use chrono::SecondsFormat;
use clap::Subcommand;
use cpn_api_types::market::{
    AuthorizationCode, Balance, BillingMode, BudgetSet, ClusterClass, CodeEntry, Delist,
    EvaluationView, InvoiceView, LeaseMonitoring, LeaseView, LedgerView, ListingHits, ListingSpec,
    ListingView, MonthClosed, OrderCreate, OrderPlaced, OrderView, ResourceType, StatementView,
    TopUp,
};

fn yuan(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// Yuan as typed on the command line (`12.5`, `100`) to fen.
fn parse_yuan(s: &str) -> Result<i64, String> {
    let (whole, frac) = s.trim().split_once('.').unwrap_or((s.trim(), ""));
    if frac.len() > 2 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{s:?}: give yuan with at most two decimals, e.g. 12.50"
        ));
    }
    let whole: i64 = whole
        .parse()
        .map_err(|_| format!("{s:?} is not an amount in yuan, e.g. 12.50"))?;
    let frac: i64 = format!("{frac:0<2}").parse().unwrap_or(0);
    whole
        .checked_mul(100)
        .and_then(|w| w.checked_add(frac))
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[derive(Debug, Subcommand)]
pub enum MarketCmd {
    /// Search idle capacity (users), or list your own listings in every state (--mine).
    ///
    /// Examples:
    ///   cpn market list --model "A100 80GB" --mode hourly --max-price 40 --sort price
    ///   cpn market list --class b --region 深圳市 --min-cards 2
    ///   cpn market list --mine
    #[command(verbatim_doc_comment, visible_alias = "ls")]
    List {
        /// Your own listings (suppliers; operators: all).
        #[arg(long)]
        mine: bool,
        #[arg(long, value_enum)]
        class: Option<ClassArg>,
        #[arg(long, value_enum)]
        resource_type: Option<ResourceArg>,
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        region: Option<String>,
        /// At least this many idle cards.
        #[arg(long, value_name = "N")]
        min_cards: Option<u32>,
        #[arg(long, value_name = "GIB")]
        min_card_memory: Option<u32>,
        #[arg(long, value_name = "N")]
        min_vcpus: Option<u32>,
        /// Only listings offering this billing mode (needed by --max-price and --sort price).
        #[arg(long, value_enum)]
        mode: Option<ModeArg>,
        /// Highest unit price per card and period of --mode, in yuan.
        #[arg(long, value_name = "YUAN", value_parser = parse_yuan)]
        max_price: Option<i64>,
        /// Reliability at least, per mille.
        #[arg(long, value_name = "PER_MILLE")]
        min_reliability: Option<u16>,
        /// price, idle_cards, card_memory, memory, vcpus, storage, reliability or cpcid; a
        /// leading - sorts descending.
        #[arg(long, allow_hyphen_values = true)]
        sort: Option<String>,
        #[arg(long, default_value_t = 0)]
        offset: usize,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// A listing with the state of each card.
    Show {
        #[arg(value_name = "CPCID")]
        cpcid: String,
    },
    /// Publish a cluster of a site you own, from a YAML or JSON file (`-` for stdin) with
    /// the fields of the API's ListingSpec. Without `cards`, every GPU the site's ready
    /// nodes report is listed.
    ///
    /// Example file:
    ///   class: b
    ///   resource_type: gpu
    ///   model: A100 80GB
    ///   card_memory_gib: 80
    ///   memory_gib: 512
    ///   vcpus: 64
    ///   prices: {hourly_minor: 3600}
    ///   vendor: Acme Cloud
    ///   region: 深圳市
    ///   storage: [{kind: nvme_ssd, role: data, size_gb: 3840}]
    ///   site: acme-sz
    #[command(verbatim_doc_comment)]
    Publish {
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: String,
    },
    /// Change a listing's information and prices from a file (the site and cards stay;
    /// running leases keep their price).
    Edit {
        #[arg(value_name = "CPCID")]
        cpcid: String,
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: String,
    },
    /// Stop new orders and hide the listing; running leases go on.
    Delist {
        #[arg(value_name = "CPCID")]
        cpcid: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Offer a delisted cluster again.
    Relist {
        #[arg(value_name = "CPCID")]
        cpcid: String,
    },
    /// The platform's evaluations of a class B cluster after its leases, newest first:
    /// score and components (per mille), which its reliability follows.
    Evaluations {
        #[arg(value_name = "CPCID")]
        cpcid: String,
        #[arg(long, default_value_t = 0)]
        offset: usize,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ClassArg {
    A,
    B,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ResourceArg {
    Gpu,
    Npu,
    Cpu,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ModeArg {
    Hourly,
    Monthly,
    Yearly,
}

impl From<ModeArg> for BillingMode {
    fn from(m: ModeArg) -> BillingMode {
        match m {
            ModeArg::Hourly => BillingMode::Hourly,
            ModeArg::Monthly => BillingMode::Monthly,
            ModeArg::Yearly => BillingMode::Yearly,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum LeaseCmd {
    /// Order cards of a listing. With automatic approval the lease starts at once; class A
    /// then waits for the supplier's authorization code (`cpn lease code`).
    ///
    /// Examples:
    ///   cpn lease order CPC-0000000001-8 --cards 2 --mode hourly
    ///   cpn lease order CPC-0000000001-8 --card-id 4 --mode monthly --periods 3
    #[command(verbatim_doc_comment)]
    Order {
        #[arg(value_name = "CPCID")]
        listing: String,
        /// Any idle cards, this many.
        #[arg(long, value_name = "N", conflicts_with = "card_id")]
        cards: Option<u32>,
        /// Exactly this card (repeatable), by the id `cpn market show` prints.
        #[arg(long = "card-id", value_name = "ID")]
        card_id: Vec<u32>,
        #[arg(long, value_enum, default_value = "hourly")]
        mode: ModeArg,
        /// Months or years of a prepaid term.
        #[arg(long, default_value_t = 0)]
        periods: u32,
    },
    /// Enter the supplier's authorization code of a class A lease, with the SSH public key
    /// the lease's account on the node will let in.
    ///
    /// Example:
    ///   cpn lease code 7 7K3M9QX2TB --public-key ~/.ssh/id_ed25519.pub
    #[command(verbatim_doc_comment)]
    Code {
        #[arg(value_name = "LEASE")]
        id: u64,
        #[arg(value_name = "CODE")]
        code: String,
        /// File holding one OpenSSH public key line (required for class A).
        #[arg(long, value_name = "FILE")]
        public_key: Option<std::path::PathBuf>,
    },
    /// Suppliers: show a class A lease's authorization code (once), or issue a new one.
    AuthorizationCode {
        #[arg(value_name = "LEASE")]
        id: u64,
        #[arg(long)]
        reissue: bool,
    },
    /// Suppliers: approve an order waiting for approval.
    Approve {
        #[arg(value_name = "ORDER")]
        id: u64,
    },
    /// Suppliers: reject an order waiting for approval; its cards are freed.
    Reject {
        #[arg(value_name = "ORDER")]
        id: u64,
        /// What the user can do about it.
        #[arg(long)]
        reason: String,
    },
    /// Withdraw your order while it waits for the supplier's approval.
    Cancel {
        #[arg(value_name = "ORDER")]
        id: u64,
    },
    /// Orders you placed or received (operators: all).
    Orders,
    /// Your leases (users), the leases of your listings (suppliers), or all (operators).
    #[command(visible_alias = "ls")]
    List,
    /// One lease: its cards, price, state, charge so far and how it is accessed.
    Show {
        #[arg(value_name = "LEASE")]
        id: u64,
    },
    /// End a lease now: billing stops, the cards are freed.
    Release {
        #[arg(value_name = "LEASE")]
        id: u64,
    },
    /// Live state of a class B lease: CPU and GPU utilisation, temperature, power and
    /// voltage where reported, network traffic, the site's links' latency and loss.
    Monitor {
        #[arg(value_name = "LEASE")]
        id: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum BillingCmd {
    /// A tenant's funds, credit and budget (your own; operators may name one).
    Balance {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Operators: add prepaid funds to a tenant.
    Topup {
        #[arg(value_name = "TENANT")]
        tenant: String,
        #[arg(value_name = "YUAN", value_parser = parse_yuan)]
        amount: i64,
        /// The same key tops up once, however often the command runs.
        #[arg(long)]
        key: Option<String>,
        #[arg(long, default_value = "")]
        memo: String,
    },
    /// Operators: set a tenant's monthly budget; new leases are refused beyond it.
    Budget {
        #[arg(value_name = "TENANT")]
        tenant: String,
        #[arg(value_name = "YUAN", value_parser = parse_yuan)]
        limit: i64,
        #[arg(long, default_value_t = 80)]
        alarm_percent: u8,
    },
    /// Usage records of a month (YYYY-MM).
    Usage {
        #[arg(value_name = "MONTH")]
        month: String,
    },
    /// Operators: close a month, making invoices and supplier statements.
    Close {
        #[arg(value_name = "MONTH")]
        month: String,
    },
    /// Invoices of a closed month; --csv prints their CSV.
    Invoices {
        #[arg(value_name = "MONTH")]
        month: String,
        #[arg(long)]
        csv: bool,
    },
    /// Settlement statements of a closed month (suppliers: yours); --csv prints their CSV.
    Statements {
        #[arg(value_name = "MONTH")]
        month: String,
        #[arg(long)]
        csv: bool,
    },
    /// Operators: every ledger account's balance; they sum to zero.
    Ledger,
}

fn read_spec(file: &str) -> Result<ListingSpec> {
    let input = input::read(file)?;
    let map = input::single_object(&input)?;
    serde_json::from_value(serde_json::Value::Object(map))
        .with_context(|| format!("{}: not a listing spec", input.label))
}

fn show_listing(l: &ListingView) -> Result<()> {
    let prices = [
        ("hourly", l.spec.prices.hourly_minor),
        ("monthly", l.spec.prices.monthly_minor),
        ("yearly", l.spec.prices.yearly_minor),
    ]
    .iter()
    .filter_map(|(m, p)| p.map(|p| format!("{} {m}", yuan(p))))
    .collect::<Vec<_>>()
    .join(", ");
    let mut text = output::fields(&[
        ("CPcId", l.cpcid.clone()),
        ("Supplier", l.supplier.clone()),
        ("Class", output::wire(&l.spec.class)),
        (
            "Cards",
            format!("{}*{} ({} idle)", l.cards.len(), l.spec.model, l.idle_cards),
        ),
        ("Site", l.spec.site.clone()),
        ("Region", l.spec.region.clone()),
        (
            "Prices",
            format!("{prices} (per card, version {})", l.price_version),
        ),
        (
            "Reliability",
            l.reliability
                .map_or("not evaluated yet".to_string(), |r| format!("{r}‰")),
        ),
        (
            "Status",
            match &l.delisted_reason {
                Some(r) if !r.is_empty() => format!("{} ({r})", output::wire(&l.status)),
                _ => output::wire(&l.status),
            },
        ),
    ]);
    let mut t = output::table(&["CARD", "NODE", "INDEX", "STATE"]);
    for c in &l.cards {
        t.add_row(vec![
            c.id.to_string(),
            c.node.clone(),
            c.index.to_string(),
            output::wire(&c.state),
        ]);
    }
    text.push_str(&output::render(&t));
    output::emit(&text)
}

fn lease_table(leases: &[LeaseView]) -> Result<()> {
    let mut t = output::table(&[
        "LEASE", "LISTING", "CLASS", "USER", "CARDS", "MODE", "STATE", "STARTED", "CHARGED",
    ]);
    for l in leases {
        let state = match l.end_reason {
            Some(r) => format!("{} ({})", output::wire(&l.state), output::wire(&r)),
            None => output::wire(&l.state),
        };
        t.add_row(vec![
            l.id.to_string(),
            l.listing.clone(),
            output::wire(&l.class),
            l.user.clone(),
            l.cards.len().to_string(),
            output::wire(&l.mode),
            state,
            l.started_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            yuan(l.charged_minor),
        ]);
    }
    output::print_table(&t)
}

/// A per mille figure, or `-` where nothing was measured.
fn per_mille(x: Option<u16>) -> String {
    x.map_or("-".to_string(), |v| format!("{v}‰"))
}

/// A measured figure with its unit, or `-` where the hardware reports none.
fn figure(x: Option<f64>, unit: &str) -> String {
    x.map_or("-".to_string(), |v| format!("{v:.1}{unit}"))
}

fn evaluation_table(list: &[EvaluationView]) -> Result<()> {
    let mut t = output::table(&[
        "LEASE",
        "EVALUATED",
        "SAMPLES",
        "AVAILABILITY",
        "CPU",
        "GPU",
        "DROP-OFFS",
        "NODE LOSSES",
        "SCORE",
    ]);
    for e in list {
        t.add_row(vec![
            e.lease.to_string(),
            e.evaluated_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            e.samples.to_string(),
            per_mille(e.availability),
            per_mille(e.cpu_util),
            per_mille(e.gpu_util),
            e.drop_offs.to_string(),
            e.node_losses.to_string(),
            per_mille(e.score),
        ]);
    }
    output::print_table(&t)
}

fn show_monitoring(m: &LeaseMonitoring) -> Result<()> {
    output::emit(&format!(
        "lease {} of {} at site {} ({})",
        m.lease,
        m.listing,
        m.site,
        output::wire(&m.state)
    ))?;
    let mut nodes = output::table(&["NODE", "READY", "CPU", "MEMORY", "RX", "TX", "POWER"]);
    let mut cards = output::table(&[
        "NODE", "CARD", "INDEX", "STATE", "GPU", "MEMORY", "TEMP", "POWER", "VOLTAGE",
    ]);
    for n in &m.nodes {
        nodes.add_row(vec![
            n.node.clone(),
            n.ready.to_string(),
            figure(n.cpu_util_pct, "%"),
            figure(n.memory_util_pct, "%"),
            figure(n.net_rx_bytes_per_s, " B/s"),
            figure(n.net_tx_bytes_per_s, " B/s"),
            figure(n.power_watts, " W"),
        ]);
        for c in &n.cards {
            cards.add_row(vec![
                n.node.clone(),
                c.card.to_string(),
                c.index.to_string(),
                if c.missing {
                    format!("{} (missing from the report)", output::wire(&c.state))
                } else {
                    output::wire(&c.state)
                },
                figure(c.util_pct, "%"),
                c.memory_used_mib
                    .zip(c.memory_total_mib)
                    .map_or("-".to_string(), |(u, t)| format!("{u}/{t} MiB")),
                figure(c.temperature_c, " °C"),
                figure(c.power_watts, " W"),
                figure(c.voltage_v, " V"),
            ]);
        }
    }
    output::print_table(&nodes)?;
    output::print_table(&cards)?;
    if !m.links.is_empty() {
        let mut links = output::table(&["LINK", "PEER", "LATENCY", "LOSS", "BANDWIDTH"]);
        for l in &m.links {
            links.add_row(vec![
                l.link.clone(),
                l.peer.clone(),
                format!("{:.1} ms", l.latency_ms),
                format!("{:.2}%", l.loss_pct),
                format!("{:.1} Gbit/s", l.bandwidth_gbps),
            ]);
        }
        output::print_table(&links)?;
    }
    let e = &m.so_far;
    output::emit(&format!(
        "so far: {} sample(s), availability {}, GPU drop-offs {}, node losses {}, score {}",
        e.samples,
        per_mille(e.availability),
        e.drop_offs,
        e.node_losses,
        per_mille(e.score)
    ))
}

fn show_lease(l: &LeaseView) -> Result<()> {
    lease_table(std::slice::from_ref(l))?;
    output::emit(&format!("access: {}", l.access))?;
    if let Some(e) = &l.evaluation {
        output::emit(&format!(
            "evaluation: score {} (availability {}, GPU {}, CPU {}, {} drop-off(s), {} node loss(es), {} sample(s))",
            per_mille(e.score),
            per_mille(e.availability),
            per_mille(e.gpu_util),
            per_mille(e.cpu_util),
            e.drop_offs,
            e.node_losses,
            e.samples
        ))?;
    }
    for a in &l.ssh {
        output::emit(&format!(
            "host key of {}: {} {}",
            a.host, a.host_key_type, a.host_key_fingerprint
        ))?;
    }
    Ok(())
}

pub async fn market(ctx: &Ctx, cmd: MarketCmd) -> Result<()> {
    let c = &ctx.client;
    match cmd {
        MarketCmd::List { mine: true, .. } => {
            let value = c.get(&["api", "v1", "market", "my-listings"], &[]).await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let listings: Vec<ListingView> = decode(&value, "listings")?;
            let mut t = output::table(&["CPCID", "CLASS", "MODEL", "CARDS", "IDLE", "STATUS"]);
            for l in listings {
                t.add_row(vec![
                    l.cpcid,
                    output::wire(&l.spec.class),
                    l.spec.model,
                    l.cards.len().to_string(),
                    l.idle_cards.to_string(),
                    output::wire(&l.status),
                ]);
            }
            output::print_table(&t)
        }
        MarketCmd::List {
            mine: false,
            class,
            resource_type,
            model,
            region,
            min_cards,
            min_card_memory,
            min_vcpus,
            mode,
            max_price,
            min_reliability,
            sort,
            offset,
            limit,
        } => {
            let mut q: Vec<(&str, String)> =
                vec![("offset", offset.to_string()), ("limit", limit.to_string())];
            if let Some(x) = class {
                q.push((
                    "class",
                    output::wire(&match x {
                        ClassArg::A => ClusterClass::A,
                        ClassArg::B => ClusterClass::B,
                    }),
                ));
            }
            if let Some(x) = resource_type {
                q.push((
                    "resource_type",
                    output::wire(&match x {
                        ResourceArg::Gpu => ResourceType::Gpu,
                        ResourceArg::Npu => ResourceType::Npu,
                        ResourceArg::Cpu => ResourceType::Cpu,
                    }),
                ));
            }
            let opt = [
                ("model", model),
                ("region", region),
                ("min_cards", min_cards.map(|x| x.to_string())),
                (
                    "min_card_memory_gib",
                    min_card_memory.map(|x| x.to_string()),
                ),
                ("min_vcpus", min_vcpus.map(|x| x.to_string())),
                ("mode", mode.map(|m| output::wire(&BillingMode::from(m)))),
                ("max_unit_price_minor", max_price.map(|x| x.to_string())),
                ("min_reliability", min_reliability.map(|x| x.to_string())),
                ("sort", sort),
            ];
            for (k, v) in opt {
                if let Some(v) = v {
                    q.push((k, v));
                }
            }
            let value = c.get(&["api", "v1", "market", "listings"], &q).await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let hits: ListingHits = decode(&value, "listings")?;
            let mut t = output::table(&[
                "CPCID", "CLASS", "MODEL", "IDLE", "REGION", "HOURLY", "MONTHLY", "YEARLY",
            ]);
            for h in &hits.items {
                let p = |x: Option<i64>| x.map_or("-".to_string(), yuan);
                t.add_row(vec![
                    h.cpcid.clone(),
                    output::wire(&h.class),
                    h.model.clone(),
                    h.idle_cards.to_string(),
                    h.region.clone(),
                    p(h.prices.hourly_minor),
                    p(h.prices.monthly_minor),
                    p(h.prices.yearly_minor),
                ]);
            }
            output::print_table(&t)?;
            eprintln!(
                "{} of {} listing(s) with idle capacity, from {}",
                hits.items.len(),
                hits.total,
                hits.offset
            );
            Ok(())
        }
        MarketCmd::Show { cpcid } => {
            let value = c
                .get(&["api", "v1", "market", "listings", &cpcid], &[])
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            show_listing(&decode(&value, "listing")?)
        }
        MarketCmd::Publish { file } => {
            let spec = read_spec(&file)?;
            let value = c.post(&["api", "v1", "market", "listings"], &spec).await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            show_listing(&decode(&value, "listing")?)
        }
        MarketCmd::Edit { cpcid, file } => {
            let spec = read_spec(&file)?;
            let value = c
                .put(&["api", "v1", "market", "listings", &cpcid], &spec)
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            show_listing(&decode(&value, "listing")?)
        }
        MarketCmd::Delist { cpcid, reason } => {
            let value = c
                .post(
                    &["api", "v1", "market", "listings", &cpcid, "delist"],
                    &Delist { reason },
                )
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            show_listing(&decode(&value, "listing")?)
        }
        MarketCmd::Evaluations {
            cpcid,
            offset,
            limit,
        } => {
            let value = c
                .get(
                    &["api", "v1", "market", "listings", &cpcid, "evaluations"],
                    &[("offset", offset.to_string()), ("limit", limit.to_string())],
                )
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            evaluation_table(&decode::<Vec<EvaluationView>>(&value, "evaluations")?)
        }
        MarketCmd::Relist { cpcid } => {
            let value = c
                .post_empty(&["api", "v1", "market", "listings", &cpcid, "relist"])
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            show_listing(&decode(&value, "listing")?)
        }
    }
}

pub async fn lease(ctx: &Ctx, cmd: LeaseCmd) -> Result<()> {
    let c = &ctx.client;
    let value = match cmd {
        LeaseCmd::Order {
            listing,
            cards,
            card_id,
            mode,
            periods,
        } => {
            let body = OrderCreate {
                listing,
                cards,
                card_ids: (!card_id.is_empty()).then_some(card_id),
                mode: mode.into(),
                periods,
            };
            let value = c.post(&["api", "v1", "market", "orders"], &body).await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let placed: OrderPlaced = decode(&value, "order")?;
            return match placed.lease {
                Some(l) => show_lease(&l),
                None => output::emit(&format!(
                    "order {} waits for the supplier's approval",
                    placed.order.id
                )),
            };
        }
        LeaseCmd::Code {
            id,
            code,
            public_key,
        } => {
            let public_key = match public_key {
                Some(path) => Some(
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?
                        .trim()
                        .to_string(),
                ),
                None => None,
            };
            c.post(
                &["api", "v1", "market", "leases", &id.to_string(), "code"],
                &CodeEntry { code, public_key },
            )
            .await?
        }
        LeaseCmd::AuthorizationCode { id, reissue } => {
            let q: Vec<(&str, String)> = if reissue {
                vec![("reissue", "true".to_string())]
            } else {
                Vec::new()
            };
            let value = c
                .post_query(
                    &[
                        "api",
                        "v1",
                        "market",
                        "leases",
                        &id.to_string(),
                        "authorization-code",
                    ],
                    &q,
                )
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let code: AuthorizationCode = decode(&value, "authorization code")?;
            eprintln!(
                "authorization code of lease {}: shown once; give it to the user when you agree",
                code.lease
            );
            return output::emit(&code.code);
        }
        LeaseCmd::Approve { id } => {
            c.post_empty(&["api", "v1", "market", "orders", &id.to_string(), "approve"])
                .await?
        }
        LeaseCmd::Reject { id, reason } => {
            let value = c
                .post(
                    &["api", "v1", "market", "orders", &id.to_string(), "reject"],
                    &Delist { reason },
                )
                .await?;
            return print_orders(ctx, &serde_json::Value::Array(vec![value]));
        }
        LeaseCmd::Cancel { id } => {
            let value = c
                .post_empty(&["api", "v1", "market", "orders", &id.to_string(), "cancel"])
                .await?;
            return print_orders(ctx, &serde_json::Value::Array(vec![value]));
        }
        LeaseCmd::Orders => {
            let value = c.get(&["api", "v1", "market", "orders"], &[]).await?;
            return print_orders(ctx, &value);
        }
        LeaseCmd::List => {
            let value = c.get(&["api", "v1", "market", "leases"], &[]).await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let leases: Vec<LeaseView> = decode(&value, "leases")?;
            return lease_table(&leases);
        }
        LeaseCmd::Show { id } => {
            c.get(&["api", "v1", "market", "leases", &id.to_string()], &[])
                .await?
        }
        LeaseCmd::Monitor { id } => {
            let value = c
                .get(
                    &[
                        "api",
                        "v1",
                        "market",
                        "leases",
                        &id.to_string(),
                        "monitoring",
                    ],
                    &[],
                )
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            return show_monitoring(&decode(&value, "lease monitoring")?);
        }
        LeaseCmd::Release { id } => {
            c.post_empty(&["api", "v1", "market", "leases", &id.to_string(), "release"])
                .await?
        }
    };
    if !ctx.table() {
        return output::print_raw(ctx.output, &value);
    }
    show_lease(&decode(&value, "lease")?)
}

fn print_orders(ctx: &Ctx, value: &serde_json::Value) -> Result<()> {
    if !ctx.table() {
        return output::print_raw(ctx.output, value);
    }
    let orders: Vec<OrderView> = decode(value, "orders")?;
    let mut t = output::table(&["ORDER", "LISTING", "STATE", "LEASE", "PLACED", "REASON"]);
    for o in orders {
        t.add_row(vec![
            o.id.to_string(),
            o.listing,
            output::wire(&o.state),
            o.lease.map_or("-".to_string(), |l| l.to_string()),
            o.placed_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            output::or_dash(o.reason.as_deref()),
        ]);
    }
    output::print_table(&t)
}

fn show_balance(b: &Balance) -> Result<()> {
    output::emit(&output::fields(&[
        ("Tenant", b.tenant.clone()),
        ("Available", yuan(b.available_minor)),
        ("Funds", yuan(b.funds_minor)),
        ("Credit", yuan(b.credit_minor)),
        (
            "Budget",
            b.budget_limit_minor
                .map_or("none".to_string(), |l| format!("{} a month", yuan(l))),
        ),
        ("Spent this month", yuan(b.spent_this_month_minor)),
    ]))
}

pub async fn billing(ctx: &Ctx, cmd: BillingCmd) -> Result<()> {
    let c = &ctx.client;
    match cmd {
        BillingCmd::Balance { tenant } => {
            let q: Vec<(&str, String)> = tenant.map(|t| ("tenant", t)).into_iter().collect();
            let value = c.get(&["api", "v1", "billing", "balance"], &q).await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            show_balance(&decode(&value, "balance")?)
        }
        BillingCmd::Topup {
            tenant,
            amount,
            key,
            memo,
        } => {
            let body = TopUp {
                tenant,
                amount_minor: amount,
                key,
                memo,
            };
            let value = c.post(&["api", "v1", "billing", "topups"], &body).await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            show_balance(&decode(&value, "balance")?)
        }
        BillingCmd::Budget {
            tenant,
            limit,
            alarm_percent,
        } => {
            let body = BudgetSet {
                monthly_limit_minor: limit,
                alarm_percent,
            };
            let value = c
                .put(&["api", "v1", "billing", "budgets", &tenant], &body)
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            show_balance(&decode(&value, "balance")?)
        }
        BillingCmd::Usage { month } => {
            let value = c
                .get(&["api", "v1", "billing", "usage"], &[("month", month)])
                .await?;
            output::print_raw(ctx.output, &value)
        }
        BillingCmd::Close { month } => {
            let value = c
                .post_empty(&["api", "v1", "billing", "months", &month, "close"])
                .await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let m: MonthClosed = decode(&value, "close")?;
            output::emit(&format!(
                "closed {}: {} invoice(s), {} statement(s)",
                m.month, m.invoices, m.statements
            ))
        }
        BillingCmd::Invoices { month, csv } => {
            let value = c
                .get(&["api", "v1", "billing", "months", &month, "invoices"], &[])
                .await?;
            if !ctx.table() && !csv {
                return output::print_raw(ctx.output, &value);
            }
            let invoices: Vec<InvoiceView> = decode(&value, "invoices")?;
            if csv {
                return output::emit(&invoices.iter().map(|i| i.csv.as_str()).collect::<String>());
            }
            let mut t = output::table(&["MONTH", "TENANT", "TOTAL"]);
            for i in invoices {
                t.add_row(vec![i.month, i.tenant, yuan(i.total_minor)]);
            }
            output::print_table(&t)
        }
        BillingCmd::Statements { month, csv } => {
            let value = c
                .get(
                    &["api", "v1", "billing", "months", &month, "statements"],
                    &[],
                )
                .await?;
            if !ctx.table() && !csv {
                return output::print_raw(ctx.output, &value);
            }
            let statements: Vec<StatementView> = decode(&value, "statements")?;
            if csv {
                return output::emit(
                    &statements
                        .iter()
                        .map(|s| s.csv.as_str())
                        .collect::<String>(),
                );
            }
            let mut t = output::table(&["MONTH", "SUPPLIER", "GROSS", "COMMISSION", "NET"]);
            for s in statements {
                t.add_row(vec![
                    s.month,
                    s.supplier,
                    yuan(s.gross_minor),
                    yuan(s.commission_minor),
                    yuan(s.net_minor),
                ]);
            }
            output::print_table(&t)
        }
        BillingCmd::Ledger => {
            let value = c.get(&["api", "v1", "billing", "ledger"], &[]).await?;
            if !ctx.table() {
                return output::print_raw(ctx.output, &value);
            }
            let l: LedgerView = decode(&value, "ledger")?;
            let mut t = output::table(&["ACCOUNT", "BALANCE"]);
            for a in l.accounts {
                t.add_row(vec![a.account, yuan(a.balance_minor)]);
            }
            output::print_table(&t)?;
            output::emit(&format!(
                "{} transaction(s); sum of all accounts: {}",
                l.transactions,
                yuan(l.trial_balance_minor)
            ))
        }
    }
}
