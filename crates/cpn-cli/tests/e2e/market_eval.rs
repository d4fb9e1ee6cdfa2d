//! Issue #14 deliverable 4: a class B lease monitored live (CPU and GPU utilisation,
//! temperature, power, no voltage where there is no sensor, traffic, the site's link's
//! latency and loss) for its lessee and supplier but not another tenant, then evaluated when
//! it ends (a GPU that disappears from the agent's report is a drop-off that lowers the
//! score), the listing's reliability set and searchable, the cards idle again.

use crate::harness::site;
use crate::market::{Market, setup_with, spec, states};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

impl Market {
    /// `n1`'s agent reports: CPU at 40 %, network traffic, and the GPUs in `gpus` (index,
    /// utilisation %), each at 61 °C and 250 W, without a voltage sensor.
    async fn report(&self, gpus: &[(u32, f64)]) {
        let gpus: Vec<Value> = gpus
            .iter()
            .map(|(i, u)| {
                json!({"index": i, "util_pct": u, "memory_used_mib": 1024,
                "memory_total_mib": 81920, "temperature_c": 61.0, "power_watts": 250.0})
            })
            .collect();
        let (s, b) = self
            .server
            .call(
                Method::POST,
                &format!("/api/v1/agents/{}/heartbeat", self.node_id),
                Some(&self.node_credential),
                Some(json!({"metrics": {"at": chrono::Utc::now().to_rfc3339(),
                    "cpu_util_pct": 40.0, "memory_used_mib": 4096, "memory_util_pct": 10.0,
                    "load1": 1.5, "load5": 1.0, "load15": 0.5, "net_rx_bytes_per_s": 1.0e6,
                    "net_tx_bytes_per_s": 2.0e6, "gpus": gpus}, "attempts": []})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ended_class_b_lease_is_evaluated_and_a_running_one_is_monitored_live() {
    let dir = tempfile::tempdir().unwrap();
    let m = setup_with(dir.path(), &[]).await;
    // A second site of the supplier's with a measured link: the network state of the lease.
    let (s, b) = m
        .call(
            Method::POST,
            "/api/v1/sites",
            &m.supplier,
            Some(site("acme-gz")),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let link = json!({"name": "sz-gz", "spec": {"from": "acme-sz", "to": "acme-gz",
        "link_type": "private_line", "latency_ms": 12.5, "bandwidth_gbps": 10.0, "loss_pct": 0.2}});
    let (s, b) = m
        .call(Method::POST, "/api/v1/links", &m.supplier, Some(link))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    let (s, l) = m
        .call(
            Method::POST,
            "/api/v1/market/listings",
            &m.supplier,
            Some(spec(
                "b",
                json!([{"node": "n1", "index": 0}, {"node": "n1", "index": 1}]),
            )),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{l}");
    let cpcid = l["cpcid"].as_str().unwrap().to_string();
    assert!(l.get("reliability").is_none_or(Value::is_null), "{l}");
    let (s, _) = m
        .server
        .admin(
            Method::POST,
            "/api/v1/billing/topups",
            Some(json!({"tenant": "lab", "amount_minor": 1_000_000})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    m.report(&[(0, 80.0), (1, 20.0)]).await;
    let (s, placed) = m
        .call(
            Method::POST,
            "/api/v1/market/orders",
            &m.ann,
            Some(json!({"listing": cpcid, "cards": 2, "mode": "hourly"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{placed}");
    let id = placed["lease"]["id"].as_u64().unwrap();
    let monitoring = format!("/api/v1/market/leases/{id}/monitoring");

    // Live figures for the lessee: utilisation, temperature, power; no voltage sensor, so
    // no voltage (absent, not 0); traffic; the site's link's latency and loss.
    let (s, live) = m.call(Method::GET, &monitoring, &m.ann, None).await;
    assert_eq!(s, StatusCode::OK, "{live}");
    assert_eq!(live["state"], "active", "{live}");
    let node = &live["nodes"][0];
    assert_eq!(node["node"], "n1", "{live}");
    assert_eq!(node["cpu_util_pct"], 40.0, "{live}");
    assert_eq!(node["net_tx_bytes_per_s"], 2.0e6, "{live}");
    let card = &node["cards"][0];
    assert_eq!(
        (
            &card["util_pct"],
            &card["temperature_c"],
            &card["power_watts"]
        ),
        (&json!(80.0), &json!(61.0), &json!(250.0)),
        "{live}"
    );
    assert!(card.get("voltage_v").is_none(), "{live}");
    assert_eq!(live["links"][0]["peer"], "acme-gz", "{live}");
    assert_eq!(live["links"][0]["latency_ms"], 12.5, "{live}");
    assert_eq!(live["links"][0]["loss_pct"], 0.2, "{live}");
    // The supplier sees it too; another tenant does not, as for the lease.
    let (s, _) = m.call(Method::GET, &monitoring, &m.supplier, None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = m.call(Method::GET, &monitoring, &m.eve, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let out = std::process::Command::new(crate::harness::CPN)
        .args(["lease", "monitor", &id.to_string()])
        .env("CPN_SERVER", &m.server.base)
        .env("CPN_TOKEN", &m.ann)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("61.0 °C") && text.contains("12.5 ms"),
        "{text}"
    );

    // The agent keeps reporting through at least one metering run (every 5 s)...
    for _ in 0..7 {
        m.report(&[(0, 80.0), (1, 20.0)]).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (_, live) = m.call(Method::GET, &monitoring, &m.ann, None).await;
    assert!(live["so_far"]["samples"].as_u64().unwrap() >= 1, "{live}");
    assert_eq!(live["so_far"]["drop_offs"], 0, "{live}");
    // ...then card 1 disappears from its report (GPU drop-off), and the user releases.
    m.report(&[(0, 80.0)]).await;
    let (_, live) = m.call(Method::GET, &monitoring, &m.ann, None).await;
    let missing: Vec<&Value> = live["nodes"][0]["cards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["missing"])
        .collect();
    assert_eq!(missing, [&json!(false), &json!(true)], "{live}");
    let (s, ended) = m
        .call(
            Method::POST,
            &format!("/api/v1/market/leases/{id}/release"),
            &m.ann,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{ended}");
    let e = &ended["evaluation"];
    assert_eq!(e["drop_offs"], 1, "{ended}");
    assert_eq!(e["node_losses"], 0, "{ended}");
    assert!(e["samples"].as_u64().unwrap() >= 2, "{ended}");
    assert_eq!(e["cpu_util"], 400, "{ended}");
    let availability = e["availability"].as_u64().unwrap();
    let score = e["score"].as_u64().unwrap();
    assert_eq!(score, availability.saturating_sub(200), "{ended}");
    assert!(score < 1000, "a drop-off lowers the score: {ended}");

    // The listing's reliability is the score; its cards are idle again; users filter on it.
    let listing = m.listing(&cpcid).await;
    assert_eq!(listing["reliability"].as_u64(), Some(score), "{listing}");
    assert_eq!(states(&listing), ["idle", "idle"], "{listing}");
    let (s, evals) = m
        .call(
            Method::GET,
            &format!("/api/v1/market/listings/{cpcid}/evaluations"),
            &m.eve,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{evals}");
    assert_eq!(evals.as_array().unwrap().len(), 1, "{evals}");
    assert_eq!(evals[0]["lease"], id, "{evals}");
    assert_eq!(evals[0], *e);
    for (min, total) in [(score, 1), (score + 1, 0)] {
        let (_, hits) = m
            .call(
                Method::GET,
                &format!("/api/v1/market/listings?min_reliability={min}"),
                &m.ann,
                None,
            )
            .await;
        assert_eq!(hits["total"], total, "min_reliability={min}: {hits}");
    }
    let (s, _) = m
        .call(
            Method::GET,
            "/api/v1/market/listings/CPC-nope/evaluations",
            &m.ann,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Once ended, the lessee sees the evaluation, no longer the supplier's nodes.
    let (s, after) = m.call(Method::GET, &monitoring, &m.ann, None).await;
    assert_eq!(s, StatusCode::OK, "{after}");
    assert_eq!(after["nodes"], json!([]), "{after}");
    assert_eq!(after["so_far"], *e, "{after}");

    let out = m.server.cli(&["market", "evaluations", &cpcid]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("{score}‰")), "{text}");
}
