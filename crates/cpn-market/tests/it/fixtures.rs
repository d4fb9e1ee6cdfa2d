//! Shared builders: a hasher, listing specs, a market with a published and reported
//! listing, and a funded tenant.

use cpn_market::billing::close::Commission;
use cpn_market::listing::{Approval, CardSpec, Disk, DiskKind, DiskRole, ResourceType};
use cpn_market::{
    AccountId, ClusterClass, CpcId, KeyedHasher, ListingSpec, Market, Money, PriceSheet, TenantId,
    Timestamp,
};

pub(crate) const SUPPLIER: AccountId = AccountId(1);
pub(crate) const USER: AccountId = AccountId(2);

/// 2026-12-07T10:00:00Z.
pub(crate) fn t0() -> Timestamp {
    Timestamp::from_unix(1_796_637_600)
}

pub(crate) fn hasher() -> KeyedHasher {
    KeyedHasher::new(b"a test key of thirty-two bytes!!").expect("32 bytes")
}

pub(crate) fn tenant(name: &str) -> TenantId {
    TenantId(name.to_string())
}

/// A listing of `cards` cards over nodes of 8 cards each, `gpu-N`, on site `sz-1`.
pub(crate) fn spec(class: ClusterClass, cards: u32) -> ListingSpec {
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
        usage: (class == ClusterClass::A)
            .then(|| "ssh to the node as the lease's account; CUDA 12, PyTorch 2".into()),
        approval: Approval::Automatic,
        site: "sz-1".into(),
        cards: (0..cards)
            .map(|i| CardSpec {
                node: format!("gpu-{}", i / 8),
                index: i % 8,
            })
            .collect(),
    }
}

/// Publishes `spec` as sequence `seq` and has the agents report every card.
pub(crate) fn publish_reported(market: &mut Market, spec: ListingSpec, seq: u64) -> CpcId {
    let site = spec.site.clone();
    let mut nodes: std::collections::BTreeMap<String, Vec<u32>> = Default::default();
    for c in &spec.cards {
        nodes.entry(c.node.clone()).or_default().push(c.index);
    }
    let id = market
        .catalog_mut()
        .publish(SUPPLIER, spec, seq, t0())
        .expect("a valid spec");
    for (node, present) in nodes {
        market.catalog_mut().report_node(&site, &node, &present);
    }
    id
}

/// A market with a 5 % commission.
pub(crate) fn market() -> Market {
    Market::new(hasher(), Commission { basis_points: 500 })
}

/// Tops up `tenant` by `yuan`.
pub(crate) fn fund(market: &mut Market, tenant: &TenantId, yuan: i64) {
    let key = format!(
        "topup:{tenant}:{yuan}:{}",
        market.ledger().transactions().len()
    );
    market
        .ledger_mut()
        .top_up(
            tenant,
            Money::from_major(yuan),
            &key,
            t0(),
            "operator top-up",
        )
        .expect("a positive top-up");
}

pub(crate) fn entropy(n: u8) -> [u8; 32] {
    [n; 32]
}
