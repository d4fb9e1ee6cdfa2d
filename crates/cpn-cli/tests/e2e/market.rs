//! Issue #14, the marketplace's listings, orders, leases and billing through HTTP and the
//! CLI: a supplier publishes a site whose node an agent reports, users see per-card state,
//! order, hold capacity in the federation's ledger (class B) or enter the supplier's code
//! (class A), release, and are billed to the second; the ledger sums to zero; fifty racing
//! orders for the last card make one lease; delisting stops orders but not leases; another
//! tenant sees none of it.

use crate::harness::{Server, site};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

/// Per card-hour, minor units: 10 per card-second, so a bill to the second is exact.
const HOURLY: i64 = 36_000;

pub(crate) struct Market {
    pub(crate) server: Server,
    pub(crate) supplier: String,
    pub(crate) ann: String,
    pub(crate) eve: String,
    pub(crate) node_id: String,
    /// The node's own credential: the test speaks the agent protocol for `n1`.
    pub(crate) node_credential: String,
}

/// A valid OpenSSH ed25519 public key line (a made-up key: nothing logs in with it here).
const PUBLIC_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g ann@lab";

/// A server whose nodes stay ready without heartbeats for the test's length, a supplier
/// `sup` (tenant acme) owning site `acme-sz` with node `n1` reporting two GPUs (registered
/// over the agent protocol with a join token, as an agent does), a user `ann` (tenant lab)
/// and a user `eve` (tenant other).
async fn setup(dir: &std::path::Path) -> Market {
    setup_with(dir, &[]).await
}

/// [`setup`] with more `cpn serve` flags (the accounts tests add their SMTP relay).
pub(crate) async fn setup_with(dir: &std::path::Path, flags: &[&str]) -> Market {
    let mut args = vec!["--no-local-agent", "--node-timeout-ms", "600000"];
    args.extend_from_slice(flags);
    let server = Server::start_with(dir, false, &args).await;
    let supplier = server.user("acme", "sup", "supplier").await;
    let ann = server.user("lab", "ann", "user").await;
    let eve = server.user("other", "eve", "user").await;
    let (s, b) = server
        .call(
            Method::POST,
            "/api/v1/sites",
            Some(&supplier),
            Some(site("acme-sz")),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let join = server.join_token("acme-sz").await;
    let gpus: Vec<Value> = (0..2)
        .map(|i| json!({"index": i, "model": "NVIDIA A100-SXM4-80GB", "memory_mib": 81920}))
        .collect();
    let (s, b) = server
        .call(
            Method::POST,
            "/api/v1/agents/register",
            Some(&join),
            Some(
                json!({"site": "acme-sz", "name": "n1", "inventory": {"hostname": "n1",
                "arch": "x86_64", "cpu_model": "AMD EPYC 7763", "cpu_cores": 64,
                "memory_mib": 524288, "gpus": gpus}}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let node_id = b["node_id"].as_str().unwrap().to_string();
    let node_credential = b["credential"].as_str().unwrap().to_string();
    Market {
        server,
        supplier,
        ann,
        eve,
        node_id,
        node_credential,
    }
}

pub(crate) fn spec(class: &str, cards: Value) -> Value {
    let mut s = json!({
        "class": class, "resource_type": "gpu", "model": "A100 80GB", "card_memory_gib": 80,
        "memory_gib": 512, "vcpus": 64, "prices": {"hourly_minor": HOURLY, "monthly_minor": 2_000_000},
        "vendor": "Acme Cloud", "region": "深圳市",
        "storage": [{"kind": "nvme_ssd", "role": "data", "size_gb": 3840}],
        "site": "acme-sz", "cards": cards
    });
    if class == "a" {
        s["usage"] = json!("ssh lease-<id>@n1.acme.example; CUDA 12 installed");
    }
    s
}

impl Market {
    pub(crate) async fn call(
        &self,
        m: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.server.call(m, path, Some(token), body).await
    }

    pub(crate) async fn listing(&self, cpcid: &str) -> Value {
        let (s, b) = self
            .call(
                Method::GET,
                &format!("/api/v1/market/listings/{cpcid}"),
                &self.ann,
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b
    }

    async fn node_gpus_held(&self) -> f64 {
        let (s, b) = self
            .server
            .admin(
                Method::GET,
                &format!("/api/v1/nodes/{}", self.node_id),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b["allocated"]["gpus"].as_f64().unwrap()
    }
}

pub(crate) fn states(listing: &Value) -> Vec<String> {
    listing["cards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["state"].as_str().unwrap().to_string())
        .collect()
}

fn secs(v: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .timestamp()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_class_b_lease_holds_capacity_is_billed_to_the_second_and_stays_private() {
    let dir = tempfile::tempdir().unwrap();
    let m = setup(dir.path()).await;

    // Only suppliers publish, and only their own sites.
    let (s, b) = m
        .call(
            Method::POST,
            "/api/v1/market/listings",
            &m.ann,
            Some(spec("b", json!([]))),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");

    // Without cards, every GPU the site's ready node reports is listed; a card no agent
    // reports (index 7) is offline.
    let (s, l) = m
        .call(
            Method::POST,
            "/api/v1/market/listings",
            &m.supplier,
            Some(spec("b", json!([{"node": "n1", "index": 0}, {"node": "n1", "index": 1}, {"node": "n1", "index": 7}]))),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{l}");
    let cpcid = l["cpcid"].as_str().unwrap().to_string();
    assert!(cpcid.starts_with("CPC-"), "{l}");
    assert_eq!(l["supplier"], "sup");
    assert_eq!(states(&l), ["idle", "idle", "offline"], "{l}");
    assert_eq!(l["idle_cards"], 2);

    // Users find it by its filters; a filter it does not meet hides it.
    let (s, hits) = m
        .call(Method::GET, "/api/v1/market/listings?model=a100%2080gb&mode=hourly&max_unit_price_minor=40000&min_cards=2", &m.ann, None)
        .await;
    assert_eq!(s, StatusCode::OK, "{hits}");
    assert_eq!(hits["total"], 1, "{hits}");
    assert_eq!(hits["items"][0]["cpcid"], cpcid.as_str());
    let (_, none) = m
        .call(
            Method::GET,
            "/api/v1/market/listings?min_cards=3",
            &m.ann,
            None,
        )
        .await;
    assert_eq!(none["total"], 0, "{none}");

    // No funds, no lease; the error says why.
    let order = json!({"listing": cpcid, "cards": 1, "mode": "hourly"});
    let (s, b) = m
        .call(
            Method::POST,
            "/api/v1/market/orders",
            &m.ann,
            Some(order.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ask an operator for a top-up"),
        "{b}"
    );

    // Only operators top up.
    let topup = json!({"tenant": "lab", "amount_minor": 1_000_000});
    let (s, _) = m
        .call(
            Method::POST,
            "/api/v1/billing/topups",
            &m.ann,
            Some(topup.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, bal) = m
        .server
        .admin(Method::POST, "/api/v1/billing/topups", Some(topup))
        .await;
    assert_eq!(s, StatusCode::OK, "{bal}");
    assert_eq!(bal["available_minor"], 1_000_000);

    assert_eq!(m.node_gpus_held().await, 0.0);
    let (s, placed) = m
        .call(
            Method::POST,
            "/api/v1/market/orders",
            &m.ann,
            Some(order.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{placed}");
    let lease = &placed["lease"];
    assert_eq!(lease["state"], "active", "{placed}");
    assert_eq!(lease["class"], "b");
    assert_eq!(lease["unit_price_minor"], HOURLY);
    let id = lease["id"].as_u64().unwrap();
    assert_eq!(
        states(&m.listing(&cpcid).await),
        ["busy", "idle", "offline"]
    );
    // The lease's GPU is held in the federation's capacity ledger: the node shows it
    // allocated, so the binder and POST /schedule do not give it away.
    assert_eq!(m.node_gpus_held().await, 1.0);

    // A price change makes a new version; the running lease keeps its price.
    let mut edited = spec("b", json!([]));
    edited["prices"]["hourly_minor"] = json!(72_000);
    let (s, e) = m
        .call(
            Method::PUT,
            &format!("/api/v1/market/listings/{cpcid}"),
            &m.supplier,
            Some(edited),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(e["price_version"], 2);
    assert_eq!(
        e["cards"].as_array().unwrap().len(),
        3,
        "the cards stay: {e}"
    );

    // Another tenant sees neither the lease nor the bills.
    let (s, _) = m
        .call(
            Method::GET,
            &format!("/api/v1/market/leases/{id}"),
            &m.eve,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, list) = m
        .call(Method::GET, "/api/v1/market/leases", &m.eve, None)
        .await;
    assert_eq!(list, json!([]));
    let (s, _) = m
        .call(
            Method::POST,
            &format!("/api/v1/market/leases/{id}/release"),
            &m.eve,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = m
        .call(
            Method::GET,
            "/api/v1/billing/balance?tenant=lab",
            &m.eve,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The supplier sees the lease it supplies.
    let (s, sl) = m
        .call(
            Method::GET,
            &format!("/api/v1/market/leases/{id}"),
            &m.supplier,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{sl}");

    // Delisted: no new orders, hidden from search; the running lease goes on.
    let (s, d) = m
        .call(
            Method::POST,
            &format!("/api/v1/market/listings/{cpcid}/delist"),
            &m.supplier,
            Some(json!({"reason": "maintenance"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    let (_, hits) = m
        .call(Method::GET, "/api/v1/market/listings", &m.ann, None)
        .await;
    assert_eq!(hits["total"], 0, "{hits}");
    let (s, b) = m
        .call(
            Method::POST,
            "/api/v1/market/orders",
            &m.ann,
            Some(order.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("delisted"),
        "{b}"
    );
    let (_, still) = m
        .call(
            Method::GET,
            &format!("/api/v1/market/leases/{id}"),
            &m.ann,
            None,
        )
        .await;
    assert_eq!(still["state"], "active", "{still}");

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (s, ended) = m
        .call(
            Method::POST,
            &format!("/api/v1/market/leases/{id}/release"),
            &m.ann,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{ended}");
    assert_eq!(ended["state"], "ended");
    assert_eq!(ended["end_reason"], "released");
    let (s, _) = m
        .call(
            Method::POST,
            &format!("/api/v1/market/leases/{id}/release"),
            &m.ann,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(
        states(&m.listing(&cpcid).await),
        ["idle", "idle", "offline"]
    );
    assert_eq!(
        m.node_gpus_held().await,
        0.0,
        "release frees the capacity hold"
    );

    // The bill is the lease's time to the second at the price it was made at.
    let seconds = secs(&ended["ended_at"]) - secs(&ended["started_at"]);
    assert!(seconds >= 2, "{ended}");
    let expected = HOURLY * seconds / 3600;
    assert_eq!(ended["charged_minor"], expected, "{ended}");
    let month = &ended["started_at"].as_str().unwrap()[..7];
    let (s, usage) = m
        .call(
            Method::GET,
            &format!("/api/v1/billing/usage?month={month}"),
            &m.ann,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{usage}");
    let records = usage.as_array().unwrap();
    let quantity: u64 = records
        .iter()
        .map(|r| r["quantity"].as_u64().unwrap())
        .sum();
    let amount: i64 = records
        .iter()
        .map(|r| r["amount_minor"].as_i64().unwrap())
        .sum();
    assert_eq!(quantity as i64, seconds, "{usage}");
    assert_eq!(amount, expected, "{usage}");
    let (_, theirs) = m
        .call(
            Method::GET,
            &format!("/api/v1/billing/usage?month={month}"),
            &m.eve,
            None,
        )
        .await;
    assert_eq!(theirs, json!([]));
    let (_, bal) = m
        .call(Method::GET, "/api/v1/billing/balance", &m.ann, None)
        .await;
    assert_eq!(bal["available_minor"], 1_000_000 - expected, "{bal}");

    // The month's close: an invoice for the tenant, a statement for the supplier, and a
    // ledger that sums to zero before and after.
    let (_, ledger) = m
        .server
        .admin(Method::GET, "/api/v1/billing/ledger", None)
        .await;
    assert_eq!(ledger["trial_balance_minor"], 0, "{ledger}");
    let (s, closed) = m
        .call(
            Method::POST,
            &format!("/api/v1/billing/months/{month}/close"),
            &m.ann,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{closed}");
    let (s, closed) = m
        .server
        .admin(
            Method::POST,
            &format!("/api/v1/billing/months/{month}/close"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{closed}");
    assert_eq!(closed["invoices"], 1, "{closed}");
    let (_, inv) = m
        .call(
            Method::GET,
            &format!("/api/v1/billing/months/{month}/invoices"),
            &m.ann,
            None,
        )
        .await;
    assert_eq!(inv[0]["tenant"], "lab", "{inv}");
    assert_eq!(inv[0]["total_minor"], expected, "{inv}");
    assert!(
        inv[0]["csv"].as_str().unwrap().lines().count() >= 2,
        "{inv}"
    );
    let (_, none) = m
        .call(
            Method::GET,
            &format!("/api/v1/billing/months/{month}/invoices"),
            &m.eve,
            None,
        )
        .await;
    assert_eq!(none, json!([]));
    let (_, st) = m
        .call(
            Method::GET,
            &format!("/api/v1/billing/months/{month}/statements"),
            &m.supplier,
            None,
        )
        .await;
    assert_eq!(st[0]["supplier"], "sup", "{st}");
    assert_eq!(st[0]["gross_minor"], expected, "{st}");
    assert_eq!(
        st[0]["net_minor"].as_i64().unwrap() + st[0]["commission_minor"].as_i64().unwrap(),
        expected,
        "{st}"
    );
    let (_, ledger) = m
        .server
        .admin(Method::GET, "/api/v1/billing/ledger", None)
        .await;
    assert_eq!(ledger["trial_balance_minor"], 0, "{ledger}");
    let sum: i64 = ledger["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["balance_minor"].as_i64().unwrap())
        .sum();
    assert_eq!(sum, 0, "{ledger}");

    // The CLI reads the same, as the user.
    let out = std::process::Command::new(crate::harness::CPN)
        .args(["lease", "list"])
        .env("CPN_SERVER", &m.server.base)
        .env("CPN_TOKEN", &m.ann)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&cpcid) && text.contains("released"), "{text}");
    let out = m.server.cli(&["billing", "ledger"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("sum of all accounts: 0.00"), "{text}");
    let out = m.server.cli(&["market", "show", &cpcid]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("offline") && text.contains("delisted (maintenance)"),
        "{text}"
    );
    let out = m.server.cli(&["billing", "invoices", month, "--csv"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        inv[0]["csv"].as_str().unwrap().trim_end()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_racing_orders_make_one_lease_class_a_needs_the_code_and_suppliers_approve() {
    let dir = tempfile::tempdir().unwrap();
    let m = setup(dir.path()).await;
    let (s, b) = m
        .server
        .admin(
            Method::POST,
            "/api/v1/billing/topups",
            Some(json!({"tenant": "lab", "amount_minor": 10_000_000})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, l) = m
        .call(
            Method::POST,
            "/api/v1/market/listings",
            &m.supplier,
            Some(spec("a", json!([{"node": "n1", "index": 0}]))),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{l}");
    let cpcid = l["cpcid"].as_str().unwrap().to_string();
    assert_eq!(states(&l), ["idle"]);

    // Fifty orders at once for the one card: exactly one lease, the rest told it is taken.
    let order = json!({"listing": cpcid, "cards": 1, "mode": "hourly"});
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/market/orders", m.server.base);
    let racers: Vec<_> = (0..50)
        .map(|_| {
            let (http, url, token, order) =
                (http.clone(), url.clone(), m.ann.clone(), order.clone());
            tokio::spawn(async move {
                let r = http
                    .post(url)
                    .bearer_auth(token)
                    .json(&order)
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                (status, r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut results = Vec::new();
    for r in racers {
        results.push(r.await.unwrap());
    }
    let won: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(won.len(), 1, "{results:?}");
    for (s, b) in &results {
        assert!(
            *s == StatusCode::CREATED || *s == StatusCode::CONFLICT,
            "{s} {b}"
        );
    }
    let lease = &won[0]["lease"];
    let id = lease["id"].as_u64().unwrap();
    assert_eq!(lease["state"], "awaiting_access", "{lease}");
    assert_eq!(states(&m.listing(&cpcid).await), ["reserved"]);

    // The supplier gets the code once; the user's wrong code is refused; the right one,
    // with the user's SSH key, turns the card busy and asks the node's agent for the
    // lease's account.
    let (s, _) = m
        .call(
            Method::POST,
            &format!("/api/v1/market/leases/{id}/authorization-code"),
            &m.ann,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, code) = m
        .call(
            Method::POST,
            &format!("/api/v1/market/leases/{id}/authorization-code"),
            &m.supplier,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{code}");
    let code = code["code"].as_str().unwrap().to_string();
    let (s, _) = m
        .call(
            Method::POST,
            &format!("/api/v1/market/leases/{id}/authorization-code"),
            &m.supplier,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "shown once");
    let enter = format!("/api/v1/market/leases/{id}/code");
    let (s, b) = m
        .call(
            Method::POST,
            &enter,
            &m.ann,
            Some(json!({"code": "0000000000", "public_key": PUBLIC_KEY})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "code", "{b}");
    let (s, b) = m
        .call(Method::POST, &enter, &m.ann, Some(json!({"code": code})))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "public_key", "{b}");
    let (s, b) = m
        .call(
            Method::POST,
            &enter,
            &m.ann,
            Some(json!({"code": code, "public_key": "ssh-ed25519 not-base64"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (s, b) = m
        .call(
            Method::POST,
            &enter,
            &m.eve,
            Some(json!({"code": code, "public_key": PUBLIC_KEY})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    let (s, active) = m
        .call(
            Method::POST,
            &enter,
            &m.ann,
            Some(json!({"code": code, "public_key": PUBLIC_KEY})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{active}");
    assert_eq!(active["state"], "active");
    assert!(
        active["access"]
            .as_str()
            .unwrap()
            .starts_with("pending: waiting for node n1"),
        "{active}"
    );
    assert!(
        active.get("ssh").is_none(),
        "no account is claimed before the agent made it: {active}"
    );

    // The node's agent finds the grant in its poll: the user's key and the leased GPU.
    let poll = format!("/api/v1/agents/{}/assignments?wait_ms=0", m.node_id);
    let (s, work) = m
        .server
        .call(Method::GET, &poll, Some(&m.node_credential), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{work}");
    let grant = &work["lease_grants"][0];
    assert_eq!(grant["public_key"], PUBLIC_KEY, "{work}");
    assert_eq!(grant["gpus"], json!([0]), "{work}");
    let agent_lease = grant["lease_id"].as_str().unwrap().to_string();
    // Only the node itself may answer for it.
    let report = format!("/api/v1/agents/{}/lease-access", m.node_id);
    let (s, _) = m
        .call(
            Method::POST,
            &report,
            &m.ann,
            Some(json!({"lease_id": agent_lease, "error": "x"})),
        )
        .await;
    assert!(
        s == StatusCode::UNAUTHORIZED || s == StatusCode::FORBIDDEN,
        "{s}"
    );
    let access = json!({"lease_id": agent_lease, "host": "n1.acme.example", "port": 22,
        "username": "cpnl-x", "host_key_fingerprint": "SHA256:abc", "host_key_type": "ssh-ed25519",
        "gpus": [0], "isolation": {"gpus": "simulated", "cpu": "enforced", "memory": "enforced",
        "cgroup": "v2", "notes": []}});
    let (s, b) = m
        .server
        .call(
            Method::POST,
            &report,
            Some(&m.node_credential),
            Some(json!({"lease_id": agent_lease, "access": access})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let (_, work) = m
        .server
        .call(Method::GET, &poll, Some(&m.node_credential), None)
        .await;
    assert!(
        work.get("lease_grants").is_none(),
        "answered: not asked again: {work}"
    );
    let (_, shown) = m
        .call(
            Method::GET,
            &format!("/api/v1/market/leases/{id}"),
            &m.ann,
            None,
        )
        .await;
    assert_eq!(shown["ssh"][0]["username"], "cpnl-x", "{shown}");
    assert!(
        shown["access"]
            .as_str()
            .unwrap()
            .starts_with("ssh -p 22 cpnl-x@n1.acme.example"),
        "{shown}"
    );
    let (s, _) = m
        .call(
            Method::GET,
            &format!("/api/v1/market/leases/{id}"),
            &m.eve,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(states(&m.listing(&cpcid).await), ["busy"]);

    // A listing that wants the supplier's approval: the order holds the card until the
    // supplier decides; a rejection needs a reason; the user may withdraw; an approval
    // (through the CLI, as the supplier) starts the lease.
    let mut approval = spec("b", json!([{"node": "n1", "index": 1}]));
    approval["approval"] = json!("by_supplier");
    let (s, l) = m
        .call(
            Method::POST,
            "/api/v1/market/listings",
            &m.supplier,
            Some(approval),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{l}");
    let by_supplier = l["cpcid"].as_str().unwrap().to_string();
    let ask = json!({"listing": by_supplier, "mode": "hourly"});
    let mut order_ids = Vec::new();
    for _ in 0..3 {
        let (s, placed) = m
            .call(
                Method::POST,
                "/api/v1/market/orders",
                &m.ann,
                Some(ask.clone()),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{placed}");
        assert_eq!(placed["order"]["state"], "awaiting_approval", "{placed}");
        assert!(placed.get("lease").is_none(), "{placed}");
        assert_eq!(states(&m.listing(&by_supplier).await), ["reserved"]);
        let order = placed["order"]["id"].as_u64().unwrap();
        order_ids.push(order);
        match order_ids.len() {
            1 => {
                let reject = format!("/api/v1/market/orders/{order}/reject");
                let (s, b) = m
                    .call(
                        Method::POST,
                        &reject,
                        &m.supplier,
                        Some(json!({"reason": " "})),
                    )
                    .await;
                assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
                let (s, b) = m
                    .call(
                        Method::POST,
                        &reject,
                        &m.supplier,
                        Some(json!({"reason": "booked for a course"})),
                    )
                    .await;
                assert_eq!(s, StatusCode::OK, "{b}");
                assert_eq!(b["state"], "rejected");
                assert_eq!(b["reason"], "booked for a course");
            }
            2 => {
                let cancel = format!("/api/v1/market/orders/{order}/cancel");
                let (s, _) = m.call(Method::POST, &cancel, &m.eve, None).await;
                assert_eq!(s, StatusCode::NOT_FOUND);
                let (s, b) = m.call(Method::POST, &cancel, &m.ann, None).await;
                assert_eq!(s, StatusCode::OK, "{b}");
                assert_eq!(b["state"], "cancelled");
            }
            _ => {
                let out = std::process::Command::new(crate::harness::CPN)
                    .args(["lease", "approve", &order.to_string()])
                    .env("CPN_SERVER", &m.server.base)
                    .env("CPN_TOKEN", &m.supplier)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{out:?}");
                assert!(
                    String::from_utf8_lossy(&out.stdout).contains("active"),
                    "{out:?}"
                );
                assert_eq!(states(&m.listing(&by_supplier).await), ["busy"]);
                let (s, b) = m
                    .call(
                        Method::POST,
                        &format!("/api/v1/market/leases/{order}/release"),
                        &m.ann,
                        None,
                    )
                    .await;
                assert_eq!(s, StatusCode::OK, "{b}");
                break;
            }
        }
        assert_eq!(states(&m.listing(&by_supplier).await), ["idle"]);
    }
    let (_, orders) = m
        .call(Method::GET, "/api/v1/market/orders", &m.eve, None)
        .await;
    assert_eq!(orders, json!([]));

    // Release asks the agent to lock the account; its report shows on the lease.
    let (s, b) = m
        .call(
            Method::POST,
            &format!("/api/v1/market/leases/{id}/release"),
            &m.ann,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(b.get("ssh").is_none(), "{b}");
    let (_, work) = m
        .server
        .call(Method::GET, &poll, Some(&m.node_credential), None)
        .await;
    assert_eq!(
        work["lease_revokes"][0]["lease_id"],
        agent_lease.as_str(),
        "{work}"
    );
    let revoked = json!({"lease_id": agent_lease, "username": "cpnl-x", "locked": true,
        "processes_killed": 2, "authorized_keys_removed": true, "already_revoked": false});
    let (s, b) = m
        .server
        .call(
            Method::POST,
            &report,
            Some(&m.node_credential),
            Some(json!({"lease_id": agent_lease, "revoked": revoked})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let (_, ended) = m
        .call(
            Method::GET,
            &format!("/api/v1/market/leases/{id}"),
            &m.ann,
            None,
        )
        .await;
    assert!(
        ended["access"]
            .as_str()
            .unwrap()
            .contains("account cpnl-x on node n1 locked, 2 process(es) ended"),
        "{ended}"
    );

    // A budget that one more hour would exceed refuses new leases with a clear error.
    let (s, b) = m
        .server
        .admin(
            Method::PUT,
            "/api/v1/billing/budgets/lab",
            Some(json!({"monthly_limit_minor": 1000, "alarm_percent": 80})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = m
        .call(Method::POST, "/api/v1/market/orders", &m.ann, Some(order))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("budget"),
        "{b}"
    );
    assert_eq!(states(&m.listing(&cpcid).await), ["idle"]);

    // What was acknowledged survives a restart: the market is restored from the store.
    let (_, before) = m
        .call(
            Method::GET,
            &format!("/api/v1/market/leases/{id}"),
            &m.ann,
            None,
        )
        .await;
    drop(m.server);
    let server = Server::start_with(
        dir.path(),
        false,
        &["--no-local-agent", "--node-timeout-ms", "600000"],
    )
    .await;
    let (s, after) = server
        .call(
            Method::GET,
            &format!("/api/v1/market/leases/{id}"),
            Some(&m.ann),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{after}");
    for field in [
        "state",
        "end_reason",
        "started_at",
        "ended_at",
        "charged_minor",
        "listing",
        "access",
    ] {
        assert_eq!(after[field], before[field], "{field}: {after} vs {before}");
    }
    let (_, ledger) = server
        .admin(Method::GET, "/api/v1/billing/ledger", None)
        .await;
    assert_eq!(ledger["trial_balance_minor"], 0, "{ledger}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exhausted_budget_ends_the_hourly_lease_and_refuses_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let m = setup(dir.path()).await;
    // 1000 fen a card-second; the budget is exactly one card-hour of it.
    let hourly = 3_600_000;
    let limit = hourly;
    let mut fast = spec("b", json!([{"node": "n1", "index": 0}]));
    fast["prices"] = json!({"hourly_minor": hourly});
    // A prepaid month that takes the budget to within 10 s of the hourly lease's use.
    let mut month = spec("b", json!([{"node": "n1", "index": 1}]));
    month["prices"] = json!({"monthly_minor": limit - 10_000});
    let mut cpcids = Vec::new();
    for s in [fast, month] {
        let (st, l) = m
            .call(
                Method::POST,
                "/api/v1/market/listings",
                &m.supplier,
                Some(s),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{l}");
        cpcids.push(l["cpcid"].as_str().unwrap().to_string());
    }
    let (s, b) = m
        .server
        .admin(
            Method::POST,
            "/api/v1/billing/topups",
            Some(json!({"tenant": "lab", "amount_minor": 100_000_000})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = m
        .server
        .admin(
            Method::PUT,
            "/api/v1/billing/budgets/lab",
            Some(json!({"monthly_limit_minor": limit, "alarm_percent": 50})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, hourly_lease) = m
        .call(
            Method::POST,
            "/api/v1/market/orders",
            &m.ann,
            Some(json!({"listing": cpcids[0], "mode": "hourly"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{hourly_lease}");
    let id = hourly_lease["lease"]["id"].as_u64().unwrap();
    let (s, prepaid) = m
        .call(
            Method::POST,
            "/api/v1/market/orders",
            &m.ann,
            Some(json!({"listing": cpcids[1], "mode": "monthly", "periods": 1})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{prepaid}");
    assert_eq!(prepaid["lease"]["charged_minor"], limit - 10_000);
    // Tasks inside the hourly lease, one bound to its card, one waiting for it.
    let in_lease = bound_and_waiting(&m, id).await;

    // The metering loop charges the hourly lease; once the budget is spent it ends it.
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    let ended = loop {
        let (_, l) = m
            .call(
                Method::GET,
                &format!("/api/v1/market/leases/{id}"),
                &m.ann,
                None,
            )
            .await;
        if l["state"] == "ended" {
            break l;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the budget never ended {l}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(ended["end_reason"], "budget_exhausted", "{ended}");
    assert_eq!(states(&m.listing(&cpcids[0]).await), ["idle"]);
    // Its tasks ended with it.
    assert_ended_with(&m, id, &in_lease).await;
    // The prepaid term is paid for and runs on.
    let prepaid_id = prepaid["lease"]["id"].as_u64().unwrap();
    let (_, p) = m
        .call(
            Method::GET,
            &format!("/api/v1/market/leases/{prepaid_id}"),
            &m.ann,
            None,
        )
        .await;
    assert_eq!(p["state"], "active", "{p}");
    // A new lease is refused, and the error says what to do.
    let (s, b) = m
        .call(
            Method::POST,
            "/api/v1/market/orders",
            &m.ann,
            Some(json!({"listing": cpcids[0], "mode": "hourly"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    let msg = b["error"]["message"].as_str().unwrap();
    assert!(msg.contains("budget") && msg.contains("exhausted"), "{b}");
    // So is a new task of the tenant, lease or not, and nothing is stored for it.
    let (_, before) = m.call(Method::GET, "/api/v1/tasks", &m.ann, None).await;
    let (s, b) = m
        .call(
            Method::POST,
            "/api/v1/tasks",
            &m.ann,
            Some(json!({"name": "after", "command": ["true"]})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    let msg = b["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("budget") && msg.contains("new tasks are refused"),
        "{b}"
    );
    let (_, after) = m.call(Method::GET, "/api/v1/tasks", &m.ann, None).await;
    assert_eq!(
        before["items"], after["items"],
        "a refused task is not stored"
    );
    let (_, ledger) = m
        .server
        .admin(Method::GET, "/api/v1/billing/ledger", None)
        .await;
    assert_eq!(ledger["trial_balance_minor"], 0, "{ledger}");
}

/// A month's close meters the running leases first; a lease that metering ends (here the
/// tenant's budget is spent) ends as it does in the metering loop: its class B hold is
/// released, so another tenant's task gets its card, and its tasks end with it. The budget
/// is lowered just after a metering run, so the close (not the loop, seconds later) is what
/// finds it spent.
#[tokio::test(flavor = "multi_thread")]
async fn a_month_close_that_ends_a_lease_frees_its_capacity_and_ends_its_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let m = setup(dir.path()).await;
    let (s, l) = m
        .call(
            Method::POST,
            "/api/v1/market/listings",
            &m.supplier,
            Some(spec("b", json!([{"node": "n1", "index": 0}]))),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{l}");
    let cpcid = l["cpcid"].as_str().unwrap().to_string();
    let (s, b) = m
        .server
        .admin(
            Method::POST,
            "/api/v1/billing/topups",
            Some(json!({"tenant": "lab", "amount_minor": 100_000_000})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, placed) = m
        .call(
            Method::POST,
            "/api/v1/market/orders",
            &m.ann,
            Some(json!({"listing": cpcid, "mode": "hourly"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{placed}");
    let id = placed["lease"]["id"].as_u64().unwrap();
    assert_eq!(m.node_gpus_held().await, 1.0, "the lease holds its card");
    // Tasks inside the lease, one bound to its card, one waiting for it.
    let in_lease = bound_and_waiting(&m, id).await;

    // Right after a metering run has charged the lease, the budget drops below what the
    // tenant spent and the month is closed.
    let charged = |l: &Value| l["charged_minor"].as_i64().unwrap();
    let lease_path = format!("/api/v1/market/leases/{id}");
    let (_, first) = m.call(Method::GET, &lease_path, &m.ann, None).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, l) = m.call(Method::GET, &lease_path, &m.ann, None).await;
        assert_eq!(l["state"], "active", "{l}");
        if charged(&l) > charged(&first) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lease was never metered: {l}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, b) = m
        .server
        .admin(
            Method::PUT,
            "/api/v1/billing/budgets/lab",
            Some(json!({"monthly_limit_minor": 1, "alarm_percent": 50})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let month = chrono::Utc::now().format("%Y-%m").to_string();
    let (s, closed) = m
        .server
        .admin(
            Method::POST,
            &format!("/api/v1/billing/months/{month}/close"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{closed}");
    assert_eq!(closed["invoices"], 1, "{closed}");

    let (_, ended) = m.call(Method::GET, &lease_path, &m.ann, None).await;
    assert_eq!(ended["state"], "ended", "{ended}");
    assert_eq!(ended["end_reason"], "budget_exhausted", "{ended}");
    assert_eq!(states(&m.listing(&cpcid).await), ["idle"]);
    // Its tasks ended with it.
    assert_ended_with(&m, id, &in_lease).await;
    // Its capacity is free: nothing is held on n1, and another tenant's task takes both of
    // its cards.
    assert_eq!(
        m.node_gpus_held().await,
        0.0,
        "the lease's hold is released"
    );
    let (s, both) = m
        .call(
            Method::POST,
            "/api/v1/tasks",
            &m.eve,
            Some(json!({"name": "both-cards", "command": ["true"],
                "constraints": {"node_selector": "cpn.node/name=n1"},
                "resources": {"cpu_cores": 1, "memory_gib": 1, "gpus": 2}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{both}");
    let both = wait_task(&m, &m.eve, both["id"].as_str().unwrap(), |t| {
        t["state"] == "scheduled"
    })
    .await;
    assert_eq!(both["gpus"], json!([0, 1]), "{both}");
    let (_, ledger) = m
        .server
        .admin(Method::GET, "/api/v1/billing/ledger", None)
        .await;
    assert_eq!(ledger["trial_balance_minor"], 0, "{ledger}");
}

/// Two of `ann`'s tasks inside class B lease `id` on `n1`: one bound to its card (n1
/// speaks the agent protocol only through the test, so it stays scheduled), one waiting
/// for the card. Their ids, in that order.
async fn bound_and_waiting(m: &Market, id: u64) -> Vec<String> {
    let mut in_lease = Vec::new();
    for name in ["bound", "waiting"] {
        let (s, t) = m
            .call(
                Method::POST,
                "/api/v1/tasks",
                &m.ann,
                Some(json!({"name": name, "command": ["true"], "lease": id,
                    "resources": {"cpu_cores": 1, "memory_gib": 1, "gpus": 1}})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{t}");
        let t = t["id"].as_str().unwrap().to_string();
        let want = if name == "bound" {
            "scheduled"
        } else {
            "pending"
        };
        wait_task(m, &m.ann, &t, |v| {
            v["state"] == want && (want == "scheduled" || v["reason"].is_string())
        })
        .await;
        in_lease.push(t);
    }
    in_lease
}

/// The tasks of [`bound_and_waiting`] ended with lease `id`: the bound one cancelled by
/// the lease's end, the waiting one failed.
async fn assert_ended_with(m: &Market, id: u64, in_lease: &[String]) {
    let t = wait_task(m, &m.ann, &in_lease[0], |t| t["state"] == "cancelled").await;
    assert!(
        t["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("the end of lease {id}")),
        "{t}"
    );
    let t = wait_task(m, &m.ann, &in_lease[1], |t| t["state"] == "failed").await;
    assert_eq!(t["reason"], "lease ended", "{t}");
}

/// Polls a task as `token` until `done` holds (60 s at most).
async fn wait_task(m: &Market, token: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (s, t) = m
            .call(Method::GET, &format!("/api/v1/tasks/{id}"), token, None)
            .await;
        assert_eq!(s, StatusCode::OK, "{t}");
        if done(&t) {
            return t;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "task {id} did not get there: {t}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn task_stdout(m: &Market, token: &str, id: &str) -> String {
    reqwest::Client::new()
        .get(format!(
            "{}/api/v1/tasks/{id}/logs?stream=stdout",
            m.server.base
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Issue #14: "A class B lease runs the user's tasks inside the leased share only." A real
/// agent (`g1`, four emulated GPUs, this host's CPUs) joins the supplier's site; `ann`
/// leases card 2 of it. Her tasks naming the lease run on `g1` with
/// `CUDA_VISIBLE_DEVICES=2`; a second one that would exceed the share (one card) waits for
/// the first to end; another tenant cannot submit into the lease (404), nor can anyone name
/// a class A lease (422) or an ended one (409); a task without the lease never gets card 2;
/// releasing the lease cancels its running task and fails its waiting one.
#[tokio::test(flavor = "multi_thread")]
async fn a_class_b_lease_runs_its_tasks_inside_its_share_only() {
    let dir = tempfile::tempdir().unwrap();
    let m = setup(dir.path()).await;
    let join = m.server.join_token("acme-sz").await;
    // Reachable by the tasks' own user (the server's data dir is not): the work root is here.
    let agent_dir = crate::harness::open_dir();
    let state = agent_dir.path().join("agent-state");
    let work = agent_dir.path().join("work");
    let agent_log = agent_dir.path().join("agent.log");
    let _agent = crate::harness::Agent::start_args(
        &[
            "--server",
            &m.server.base,
            "--join",
            &join,
            "--site",
            "acme-sz",
            "--name",
            "g1",
            "--state-dir",
            state.to_str().unwrap(),
            "--work-root",
            work.to_str().unwrap(),
            "--emulate-gpus",
            "4",
        ],
        &agent_log,
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, nodes) = m.server.admin(Method::GET, "/api/v1/nodes", None).await;
        if nodes
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["name"] == "g1" && n["state"] == "ready")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "agent g1 did not join: {nodes}\n{}",
            std::fs::read_to_string(&agent_log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Four cards of g1, with 4 vCPUs and 4 GiB: a card's share is a quarter of that, or of
    // what the host has if less (one core and more on any machine tests run on).
    let mut listing = spec(
        "b",
        json!(
            (0..4)
                .map(|i| json!({"node": "g1", "index": i}))
                .collect::<Vec<_>>()
        ),
    );
    listing["vcpus"] = json!(4);
    listing["memory_gib"] = json!(4);
    let (s, l) = m
        .call(
            Method::POST,
            "/api/v1/market/listings",
            &m.supplier,
            Some(listing),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{l}");
    assert_eq!(l["idle_cards"], 4, "{l}");
    let card2 = l["cards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["index"] == 2)
        .unwrap()["id"]
        .clone();
    let (s, _) = m
        .server
        .admin(
            Method::POST,
            "/api/v1/billing/topups",
            Some(json!({"tenant": "lab", "amount_minor": 1_000_000})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, placed) = m
        .call(
            Method::POST,
            "/api/v1/market/orders",
            &m.ann,
            Some(json!({"listing": l["cpcid"], "card_ids": [card2], "mode": "hourly"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{placed}");
    let lease = placed["lease"]["id"].as_u64().unwrap();

    let in_lease = |name: &str, script: &str, gpus: u32| {
        json!({"name": name, "script": script, "lease": lease,
            "resources": {"cpu_cores": 0.25, "memory_gib": 0.25, "gpus": gpus}})
    };
    let submit = |token: &str, body: Value| {
        let token = token.to_string();
        let m = &m;
        async move {
            m.call(Method::POST, "/api/v1/tasks", &token, Some(body))
                .await
        }
    };

    // Another tenant's lease, or none, is not found; nothing is queued.
    let (s, b) = submit(&m.eve, in_lease("intruder", "echo hi", 1)).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    let mut absent = in_lease("nowhere", "echo hi", 1);
    absent["lease"] = json!(lease + 1000);
    let (s, b) = submit(&m.ann, absent).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    let (_, eve_tasks) = m.call(Method::GET, "/api/v1/tasks", &m.eve, None).await;
    assert_eq!(eve_tasks["items"], json!([]), "{eve_tasks}");

    // A class A lease runs no tasks: its cards are reached over SSH.
    let (s, a) = m
        .call(
            Method::POST,
            "/api/v1/market/listings",
            &m.supplier,
            Some(spec("a", json!([{"node": "n1", "index": 0}]))),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    let (s, placed_a) = m
        .call(
            Method::POST,
            "/api/v1/market/orders",
            &m.ann,
            Some(json!({"listing": a["cpcid"], "cards": 1, "mode": "hourly"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{placed_a}");
    let mut class_a = in_lease("ssh-only", "echo hi", 1);
    class_a["lease"] = placed_a["lease"]["id"].clone();
    let (s, b) = submit(&m.ann, class_a).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "lease", "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("class A"),
        "{b}"
    );

    // More than the share (two cards of a one-card lease) can never run in it.
    let (s, big) = submit(&m.ann, in_lease("too-big", "echo hi", 2)).await;
    assert_eq!(s, StatusCode::CREATED, "{big}");
    let big = wait_task(&m, &m.ann, big["id"].as_str().unwrap(), |t| {
        t["state"] == "failed"
    })
    .await;
    assert!(
        big["reason"]
            .as_str()
            .unwrap()
            .contains("asks more than lease"),
        "{big}"
    );

    // The first task runs on the leased node with the leased card.
    let (s, first) = submit(
        &m.ann,
        in_lease("first", "echo gpus=$CUDA_VISIBLE_DEVICES; sleep 6", 1),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    let first = first["id"].as_str().unwrap().to_string();
    let t = wait_task(&m, &m.ann, &first, |t| t["state"] == "running").await;
    assert_eq!(
        (t["site"].clone(), t["node"].clone()),
        (json!("acme-sz"), json!("g1")),
        "{t}"
    );
    assert_eq!(t["gpus"], json!([2]), "{t}");

    // A second one would exceed the share (its one card is taken): it waits, saying so.
    let (s, second) = submit(
        &m.ann,
        in_lease("second", "echo gpus=$CUDA_VISIBLE_DEVICES; sleep 600", 1),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{second}");
    let second = second["id"].as_str().unwrap().to_string();
    let waiting = wait_task(&m, &m.ann, &second, |t| {
        t["reason"]
            .as_str()
            .is_some_and(|r| r.contains(&format!("waits for its lease {lease}'s share")))
    })
    .await;
    assert_eq!(waiting["state"], "pending", "{waiting}");
    let (s, why) = m
        .call(
            Method::GET,
            &format!("/api/v1/tasks/{second}/explain"),
            &m.ann,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{why}");
    assert!(
        why["policy"]["reasons"]
            .to_string()
            .contains(&format!("runs inside lease {lease}")),
        "{why}"
    );

    // A task without the lease gets the node's other cards, never the leased one, and
    // no more than are left.
    let (s, others) = submit(
        &m.ann,
        json!({"name": "others", "script": "echo gpus=$CUDA_VISIBLE_DEVICES",
            "constraints": {"node_selector": "cpn.node/name=g1"},
            "resources": {"cpu_cores": 0.1, "memory_gib": 0.1, "gpus": 3}}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{others}");
    let others = wait_task(&m, &m.ann, others["id"].as_str().unwrap(), |t| {
        t["state"] == "succeeded"
    })
    .await;
    assert_eq!(others["gpus"], json!([0, 1, 3]), "{others}");
    let (s, all) = submit(
        &m.ann,
        json!({"name": "all-cards", "script": "echo never",
            "constraints": {"node_selector": "cpn.node/name=g1"},
            "resources": {"cpu_cores": 0.1, "memory_gib": 0.1, "gpus": 4}}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{all}");
    let all = all["id"].as_str().unwrap().to_string();

    // The first ends: the second runs, on the leased card.
    let t = wait_task(&m, &m.ann, &first, |t| t["state"] == "succeeded").await;
    assert_eq!(task_stdout(&m, &m.ann, &first).await, "gpus=2\n", "{t}");
    // Its use is recorded on the lease, at no charge: the lease is billed by its time.
    let month = chrono::Utc::now().format("%Y-%m").to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let task_usage = loop {
        let (s, usage) = m
            .call(
                Method::GET,
                &format!("/api/v1/billing/usage?month={month}"),
                &m.ann,
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{usage}");
        let of_tasks: Vec<Value> = usage
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["lease"] == lease && r["kind"].as_str().unwrap().starts_with("task_"))
            .cloned()
            .collect();
        if of_tasks.len() == 3 {
            break of_tasks;
        }
        assert!(std::time::Instant::now() < deadline, "{usage}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for r in &task_usage {
        assert_eq!(r["amount_minor"], 0, "{r}");
    }
    let gpu_seconds = task_usage
        .iter()
        .find(|r| r["kind"] == "task_gpu_seconds")
        .unwrap()["quantity"]
        .as_u64()
        .unwrap();
    assert!((5..=60).contains(&gpu_seconds), "{task_usage:?}");
    let t = wait_task(&m, &m.ann, &second, |t| t["state"] == "running").await;
    assert_eq!(t["gpus"], json!([2]), "{t}");
    let all_view = wait_task(&m, &m.ann, &all, |_| true).await;
    assert_eq!(
        all_view["state"], "pending",
        "four cards never fit beside the lease: {all_view}"
    );

    // A third waits; releasing the lease cancels the running one and fails the waiting one.
    let (s, third) = submit(&m.ann, in_lease("third", "echo never", 1)).await;
    assert_eq!(s, StatusCode::CREATED, "{third}");
    let third = third["id"].as_str().unwrap().to_string();
    wait_task(&m, &m.ann, &third, |t| {
        t["reason"]
            .as_str()
            .is_some_and(|r| r.contains("waits for its lease"))
    })
    .await;
    let (s, released) = m
        .call(
            Method::POST,
            &format!("/api/v1/market/leases/{lease}/release"),
            &m.ann,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{released}");
    let t = wait_task(&m, &m.ann, &second, |t| t["state"] == "cancelled").await;
    assert!(
        t["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("the end of lease {lease}")),
        "{t}"
    );
    let t = wait_task(&m, &m.ann, &third, |t| t["state"] == "failed").await;
    assert_eq!(t["reason"], "lease ended", "{t}");
    // The cards are free again: the four-card task runs.
    wait_task(&m, &m.ann, &all, |t| t["state"] == "succeeded").await;
    // An ended lease takes no more tasks.
    let (s, b) = submit(&m.ann, in_lease("late", "echo hi", 1)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
}
