//! The ledger, credits, the month's close into invoices and statements, CSV, and
//! idempotent reruns.

use crate::fixtures::{SUPPLIER, USER, entropy, fund, market, publish_reported, spec, t0, tenant};
use cpn_market::billing::ledger::{LedgerError, Posted, Posting};
use cpn_market::{
    BillingMode, CardChoice, ClusterClass, LedgerAccount, Money, Month, OrderPlaced, OrderRequest,
    UsageKind, UsageRecord,
};

#[test]
fn unbalanced_and_one_sided_transactions_are_refused() {
    let mut m = market();
    let l = m.ledger_mut();
    let lab = LedgerAccount::UserFunds(tenant("lab"));
    assert_eq!(
        l.post(
            "k",
            t0(),
            "",
            vec![
                Posting {
                    account: lab.clone(),
                    amount: Money::from_minor(5)
                },
                Posting {
                    account: LedgerAccount::ExternalCash,
                    amount: Money::from_minor(-4)
                }
            ]
        ),
        Err(LedgerError::Unbalanced(Money::from_minor(1)))
    );
    assert_eq!(
        l.post(
            "k",
            t0(),
            "",
            vec![Posting {
                account: lab,
                amount: Money::ZERO
            }]
        ),
        Err(LedgerError::Empty)
    );
    assert!(
        l.top_up(&tenant("lab"), Money::from_minor(-1), "k2", t0(), "")
            .is_err()
    );
    let first = l
        .top_up(&tenant("lab"), Money::from_major(5), "k3", t0(), "")
        .unwrap();
    assert_eq!(
        l.top_up(&tenant("lab"), Money::from_major(5), "k3", t0(), ""),
        Ok(Posted::AlreadyPosted(first.id()))
    );
    assert_eq!(
        l.available(&tenant("lab")),
        Money::from_major(5),
        "a retried top-up counts once"
    );
    assert_eq!(
        l.top_up(&tenant("lab"), Money::from_minor(i64::MAX), "k4", t0(), ""),
        Err(LedgerError::Overflow)
    );
    assert_eq!(
        l.available(&tenant("lab")),
        Money::from_major(5),
        "nothing of it applied"
    );
    assert_eq!(l.trial_balance(), Money::ZERO);
}

#[test]
fn credits_are_spent_before_funds() {
    let mut m = market();
    let id = publish_reported(&mut m, spec(ClusterClass::B, 8), 1);
    fund(&mut m, &tenant("lab"), 100);
    m.ledger_mut()
        .grant_credit(
            &tenant("lab"),
            Money::from_major(10),
            "credit-1",
            t0(),
            "welcome",
        )
        .unwrap();
    let req = OrderRequest {
        user: USER,
        tenant: tenant("lab"),
        listing: id,
        cards: CardChoice::Count(1),
        mode: BillingMode::Hourly,
        periods: 0,
    };
    let OrderPlaced::Leased(l) = m.place_order(req, entropy(1), t0()).unwrap() else {
        panic!()
    };
    m.release(USER, l.lease, t0().plus_seconds(1_800)).unwrap();
    let ledger = m.ledger();
    assert_eq!(
        ledger.balance(&LedgerAccount::UserCredit(tenant("lab"))),
        Money::ZERO
    );
    assert_eq!(
        ledger.balance(&LedgerAccount::UserFunds(tenant("lab"))),
        Money::from_major(92)
    );
    assert_eq!(
        ledger.balance(&LedgerAccount::Clearing),
        Money::from_major(18)
    );
}

/// Two tenants, two suppliers' listings, hourly and monthly leases over a month boundary.
#[test]
fn closing_a_month_makes_invoices_and_statements_that_agree_with_the_ledger() {
    let mut m = market();
    let a = publish_reported(&mut m, spec(ClusterClass::B, 8), 1);
    let mut other = spec(ClusterClass::B, 8);
    other.site = "sz-2".into();
    let supplier_b = cpn_market::AccountId(5);
    let b = m.catalog_mut().publish(supplier_b, other, 2, t0()).unwrap();
    m.catalog_mut()
        .report_node("sz-2", "gpu-0", &[0, 1, 2, 3, 4, 5, 6, 7]);
    fund(&mut m, &tenant("lab"), 100_000);
    fund(&mut m, &tenant("acme, inc."), 100_000);

    let order = |listing, t: &str, mode, periods| OrderRequest {
        user: USER,
        tenant: tenant(t),
        listing,
        cards: CardChoice::Count(2),
        mode,
        periods,
    };
    let mut records: Vec<UsageRecord> = Vec::new();
    let start = |p: OrderPlaced| match p {
        OrderPlaced::Leased(l) => l,
        other => panic!("{other:?}"),
    };
    let hourly = start(
        m.place_order(order(a, "lab", BillingMode::Hourly, 0), entropy(1), t0())
            .unwrap(),
    );
    let monthly = start(
        m.place_order(
            order(b, "acme, inc.", BillingMode::Monthly, 1),
            entropy(1),
            t0(),
        )
        .unwrap(),
    );
    records.extend(monthly.usage.clone());
    let task = m
        .record_task_usage(
            monthly.lease,
            UsageKind::TaskGpuSeconds,
            7_200,
            t0(),
            t0().plus_seconds(3_600),
        )
        .unwrap();
    records.push(task);
    // Into January: the meter splits at the month boundary.
    let january = Month::new(2027, 1).unwrap().start();
    records.extend(m.meter(january.plus_seconds(3_600)).usage);
    let december = Month::new(2026, 12).unwrap();
    let (dec, jan): (Vec<_>, Vec<_>) = records
        .into_iter()
        .partition(|r| december.contains(r.start));
    assert!(!jan.is_empty(), "January has its own records");

    let close = m
        .close_month(december, &dec, january.plus_seconds(7_200))
        .unwrap();
    assert_eq!(close.invoices.len(), 2);
    let lab = close
        .invoices
        .iter()
        .find(|i| i.tenant == tenant("lab"))
        .unwrap();
    // 2026-12-07T10:00 to 2027-01-01T00:00 is 24 days 14 h = 590 h; 2 cards at 36.00.
    assert_eq!(lab.total, Money::from_major(590 * 2 * 36));
    assert_eq!(lab.lines[0].quantity, 590 * 3_600 * 2);
    let acme = close
        .invoices
        .iter()
        .find(|i| i.tenant == tenant("acme, inc."))
        .unwrap();
    assert_eq!(acme.total, Money::from_major(10_000));
    assert_eq!(acme.lines.len(), 2, "the prepaid term and the task line");

    let supplier_a = close
        .statements
        .iter()
        .find(|s| s.supplier == SUPPLIER)
        .unwrap();
    assert_eq!(supplier_a.gross, lab.total);
    assert_eq!(
        supplier_a.commission,
        Money::from_minor(lab.total.minor() / 20)
    );
    let ledger = m.ledger();
    assert_eq!(
        ledger.balance(&LedgerAccount::SupplierReceivable(SUPPLIER)),
        supplier_a.net
    );
    assert_eq!(
        ledger.balance(&LedgerAccount::SupplierReceivable(supplier_b)),
        Money::from_major(9_500)
    );
    let january_charges: Money = jan.iter().map(|r| r.amount).sum();
    assert_eq!(
        ledger.balance(&LedgerAccount::Clearing),
        january_charges,
        "only January is left to settle"
    );
    assert_eq!(ledger.trial_balance(), Money::ZERO);

    // A rerun posts nothing new and gives the same documents.
    let before = m.ledger().transactions().len();
    let again = m
        .close_month(december, &dec, january.plus_seconds(9_000))
        .unwrap();
    assert_eq!(m.ledger().transactions().len(), before);
    assert_eq!(again.invoices, close.invoices);

    // A record of another month is refused rather than billed twice.
    assert!(m.close_month(december, &jan, january).is_err());

    let csv = acme.to_csv();
    assert!(csv.starts_with(
        "tenant,month,lease,cluster,kind,billing_mode,unit_price,quantity,amount\r\n"
    ));
    assert!(
        csv.contains("\"acme, inc.\",2026-12,2,CPC-0000000002-"),
        "{csv}"
    );
    assert!(
        csv.ends_with("\"acme, inc.\",2026-12,,,total,,,,10000.00\r\n"),
        "{csv}"
    );
    let statement = close
        .statements
        .iter()
        .find(|s| s.supplier == supplier_b)
        .unwrap()
        .to_csv();
    assert!(
        statement.ends_with("5,2026-12,,total,,10000.00,500.00,9500.00\r\n"),
        "{statement}"
    );

    // Paying the supplier out is bounded by what it is owed.
    let owed = m
        .ledger()
        .balance(&LedgerAccount::SupplierReceivable(supplier_b));
    assert!(
        m.ledger_mut()
            .pay_out(supplier_b, owed + Money::from_minor(1), "p1", january, "")
            .is_err()
    );
    m.ledger_mut()
        .pay_out(supplier_b, owed, "p1", january, "")
        .unwrap();
    assert_eq!(
        m.ledger()
            .balance(&LedgerAccount::SupplierReceivable(supplier_b)),
        Money::ZERO
    );
    let _ = hourly;
}
