//! Signed webhooks against a local HTTP sink that verifies signatures the way a receiver
//! must (with `verify_signature`), and fails on purpose to drive retries.

use std::time::{Duration, Instant};

use cpn_notify::signature::{EVENT_HEADER, IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use cpn_notify::{
    AttemptStatus, DeliveryStatus, Dispatcher, EventKind, Notification, SignatureError, Target,
    WebhookConfig, WebhookSecret,
};
use serde_json::json;

use crate::support::{Behaviour, HttpSink, new_log, test_config};

const SECRET: &str = "whsec-0123456789abcdef0123456789abcdef";

fn lease_event(key: &str) -> Notification {
    Notification::new(
        EventKind::Lease,
        "user-7",
        "Lease L-9 expires in 1 hour",
        "Your lease L-9 on sz-a (1x A100) ends at 12:00 UTC.",
        json!({"lease": "L-9", "site": "sz-a", "ends_at": "2026-12-07T12:00:00Z", "cards": [3]}),
        key,
    )
    .unwrap()
}

fn hook(sink: &HttpSink, secret: &str) -> Target {
    Target::webhook(
        sink.url("/cpn/hook?token=abc"),
        WebhookSecret::new(secret).unwrap(),
    )
    .unwrap()
}

fn signing(fail_first: u32, fail_status: u16) -> Behaviour {
    Behaviour {
        secret: Some(SECRET.as_bytes().to_vec()),
        fail_first,
        fail_status,
        ..Behaviour::default()
    }
}

#[tokio::test]
async fn a_signed_webhook_is_delivered_and_verifies() {
    let sink = HttpSink::start(signing(0, 500)).await;
    let log = new_log();
    let d = Dispatcher::new(test_config(), log.clone()).unwrap();
    let n = lease_event("lease-L-9-expiring");
    let report = d.deliver(&n, &[hook(&sink, SECRET)]).await;
    assert_eq!(
        report.targets[0].status,
        DeliveryStatus::Delivered { attempts: 1 },
        "{report:?}"
    );
    assert!(sink.signature_errors().is_empty());

    let accepted = sink.accepted();
    assert_eq!(accepted.len(), 1);
    let r = &accepted[0];
    assert_eq!(r.path, "/cpn/hook");
    assert_eq!(r.headers[IDEMPOTENCY_HEADER], "lease-L-9-expiring");
    assert_eq!(r.headers[EVENT_HEADER], "lease");
    assert_eq!(r.headers["content-type"], "application/json");
    assert!(
        r.headers[SIGNATURE_HEADER]
            .to_str()
            .unwrap()
            .starts_with("v1=")
    );
    let ts: i64 = r.headers[TIMESTAMP_HEADER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (chrono::Utc::now().timestamp() - ts).abs() <= 5,
        "signed at {ts}"
    );
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["id"], "lease-L-9-expiring");
    assert_eq!(body["kind"], "lease");
    assert_eq!(body["recipient"], "user-7");
    assert_eq!(body["subject"], "Lease L-9 expires in 1 hour");
    assert_eq!(
        body["text"],
        "Your lease L-9 on sz-a (1x A100) ends at 12:00 UTC."
    );
    assert_eq!(&body["payload"], n.payload());
    // The exact bytes are the documented body, so receivers can rely on the shape.
    assert_eq!(&r.body[..], &cpn_notify::WebhookChannel::body(&n)[..]);

    let attempts = log.attempts();
    assert_eq!(attempts[0].target, format!("{}/cpn/hook", sink.base));
    let logged = format!("{attempts:?}");
    assert!(
        !logged.contains("token=abc") && !logged.contains(SECRET),
        "{logged}"
    );
}

#[tokio::test]
async fn a_receiver_with_another_secret_rejects_and_that_is_not_retried() {
    let sink = HttpSink::start(signing(0, 500)).await;
    let log = new_log();
    let d = Dispatcher::new(test_config(), log.clone()).unwrap();
    let report = d
        .deliver(
            &lease_event("k-wrong-secret"),
            &[hook(&sink, "another-secret-another-secret")],
        )
        .await;
    match &report.targets[0].status {
        DeliveryStatus::Failed {
            attempts: 1,
            permanent: true,
            error,
        } => {
            assert!(
                error.contains("HTTP 401") && error.contains("not retried"),
                "{error}"
            )
        }
        other => panic!("expected a permanent failure, got {other:?}"),
    }
    assert_eq!(sink.hits(), 1);
    assert_eq!(sink.signature_errors(), [SignatureError::Mismatch]);
}

#[tokio::test]
async fn server_errors_are_retried_with_growing_delays_until_delivered() {
    let sink = HttpSink::start(signing(2, 503)).await;
    let log = new_log();
    let d = Dispatcher::new(test_config(), log.clone()).unwrap();
    let start = Instant::now();
    let report = d
        .deliver(&lease_event("k-retry"), &[hook(&sink, SECRET)])
        .await;
    assert_eq!(
        report.targets[0].status,
        DeliveryStatus::Delivered { attempts: 3 },
        "{report:?}"
    );
    assert_eq!(sink.hits(), 3);
    assert_eq!(sink.accepted().len(), 1);
    assert!(
        sink.signature_errors().is_empty(),
        "every retry is signed afresh"
    );
    let attempts = log.attempts();
    let statuses: Vec<_> = attempts.iter().map(|a| (a.attempt, a.status)).collect();
    assert_eq!(
        statuses,
        [
            (1, AttemptStatus::Retrying),
            (2, AttemptStatus::Retrying),
            (3, AttemptStatus::Delivered)
        ]
    );
    assert!(
        attempts[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("HTTP 503")),
        "{attempts:?}"
    );
    // Backoff: at least half of 50 ms, then half of 100 ms (equal jitter).
    let gap1 = attempts[1].at - attempts[0].at;
    let gap2 = attempts[2].at - attempts[1].at;
    assert!(
        gap1.num_milliseconds() >= 25 && gap2.num_milliseconds() >= 50,
        "{gap1} {gap2}"
    );
    assert!(start.elapsed() >= Duration::from_millis(75));
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let sink = HttpSink::start(signing(u32::MAX, 422)).await;
    let log = new_log();
    let d = Dispatcher::new(test_config(), log.clone()).unwrap();
    let report = d
        .deliver(&lease_event("k-422"), &[hook(&sink, SECRET)])
        .await;
    assert!(
        matches!(
            report.targets[0].status,
            DeliveryStatus::Failed {
                attempts: 1,
                permanent: true,
                ..
            }
        ),
        "{report:?}"
    );
    assert_eq!(sink.hits(), 1);
    assert_eq!(log.attempts().len(), 1);
}

#[tokio::test]
async fn too_many_requests_is_retried() {
    let sink = HttpSink::start(signing(1, 429)).await;
    let d = Dispatcher::new(test_config(), new_log()).unwrap();
    let report = d
        .deliver(&lease_event("k-429"), &[hook(&sink, SECRET)])
        .await;
    assert_eq!(
        report.targets[0].status,
        DeliveryStatus::Delivered { attempts: 2 },
        "{report:?}"
    );
}

#[tokio::test]
async fn attempts_are_bounded() {
    let sink = HttpSink::start(signing(u32::MAX, 500)).await;
    let log = new_log();
    let d = Dispatcher::new(test_config(), log.clone()).unwrap();
    let report = d
        .deliver(&lease_event("k-500"), &[hook(&sink, SECRET)])
        .await;
    assert!(
        matches!(
            report.targets[0].status,
            DeliveryStatus::Failed {
                attempts: 3,
                permanent: false,
                ..
            }
        ),
        "{report:?}"
    );
    assert_eq!(sink.hits(), 3);
    let last = log.attempts().pop().unwrap();
    assert_eq!((last.attempt, last.status), (3, AttemptStatus::Failed));
}

#[tokio::test]
async fn a_receiver_that_hangs_times_out() {
    let sink = HttpSink::start(Behaviour {
        delay: Duration::from_secs(5),
        ..Behaviour::default()
    })
    .await;
    let mut config = test_config();
    config.webhook.timeout = Duration::from_millis(300);
    let d = Dispatcher::new(config, new_log()).unwrap();
    let start = Instant::now();
    let report = d
        .deliver(&lease_event("k-slow"), &[hook(&sink, SECRET)])
        .await;
    match &report.targets[0].status {
        DeliveryStatus::Failed {
            attempts: 3,
            permanent: false,
            error,
        } => {
            assert!(error.contains("did not answer within 300ms"), "{error}")
        }
        other => panic!("expected 3 timed-out attempts, got {other:?}"),
    }
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn by_default_webhooks_do_not_reach_loopback_or_private_addresses() {
    let sink = HttpSink::start(Behaviour::default()).await;
    let log = new_log();
    let mut config = test_config();
    config.webhook = WebhookConfig::default();
    let d = Dispatcher::new(config, log.clone()).unwrap();
    let port = sink.base.rsplit(':').next().unwrap();
    let secret = WebhookSecret::new(SECRET).unwrap();
    // An IP literal, a name that resolves to loopback, and the cloud metadata address.
    let targets: Vec<Target> = [
        sink.url("/hook"),
        format!("http://localhost:{port}/hook"),
        "http://169.254.169.254/latest/meta-data".to_owned(),
    ]
    .into_iter()
    .map(|url| Target::webhook(url, secret.clone()).unwrap())
    .collect();
    let report = d.deliver(&lease_event("k-ssrf"), &targets).await;
    for t in &report.targets {
        match &t.status {
            DeliveryStatus::Failed {
                attempts: 1,
                permanent: true,
                error,
            } => {
                assert!(error.contains("private or link-local address"), "{error}")
            }
            other => panic!("{}: expected a permanent refusal, got {other:?}", t.target),
        }
    }
    assert_eq!(sink.hits(), 0, "a webhook reached a loopback receiver");
}
