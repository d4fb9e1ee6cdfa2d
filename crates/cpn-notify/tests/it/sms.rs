//! The SMS gateway interface against a local HTTP sink standing in for the gateway.

use std::time::Duration;

use cpn_notify::{DeliveryStatus, Dispatcher, EventKind, Notification, SmsGatewayConfig, Target};
use serde_json::json;

use crate::support::{Behaviour, HttpSink, new_log, test_config};

fn gateway(sink: &HttpSink) -> SmsGatewayConfig {
    SmsGatewayConfig {
        url: sink.url("/sms/send"),
        token: Some("gw-token-s3cret".to_owned()),
        timeout: Duration::from_secs(5),
    }
}

fn code() -> Notification {
    Notification::new(
        EventKind::Account,
        "user-9",
        "Verification code",
        "cpn: your verification code is 482913 (valid 10 minutes).",
        json!({"purpose": "register"}),
        "register-user-9-sms",
    )
    .unwrap()
}

#[tokio::test]
async fn the_gateway_gets_the_documented_request_and_the_log_hides_the_number() {
    let sink = HttpSink::start(Behaviour::default()).await;
    let log = new_log();
    let mut config = test_config();
    config.sms = Some(gateway(&sink));
    let d = Dispatcher::new(config, log.clone()).unwrap();
    let report = d
        .deliver(&code(), &[Target::sms("+8613800138000").unwrap()])
        .await;
    assert_eq!(
        report.targets[0].status,
        DeliveryStatus::Delivered { attempts: 1 },
        "{report:?}"
    );
    assert_eq!(report.targets[0].target, "+86*******8000");

    let accepted = sink.accepted();
    assert_eq!(accepted.len(), 1);
    let r = &accepted[0];
    assert_eq!(r.path, "/sms/send");
    assert_eq!(r.headers["authorization"], "Bearer gw-token-s3cret");
    assert_eq!(r.headers["x-cpn-idempotency-key"], "register-user-9-sms");
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        body,
        json!({
            "to": "+8613800138000",
            "text": "cpn: your verification code is 482913 (valid 10 minutes).",
            "kind": "account",
            "id": "register-user-9-sms",
        })
    );

    let logged = format!("{:?} {:?}", log.attempts(), d);
    assert!(
        !logged.contains("13800138000"),
        "full number in the log: {logged}"
    );
    assert!(
        !logged.contains("gw-token-s3cret"),
        "gateway token in the log: {logged}"
    );
}

#[tokio::test]
async fn a_gateway_outage_is_retried() {
    let sink = HttpSink::start(Behaviour {
        fail_first: 1,
        fail_status: 502,
        ..Behaviour::default()
    })
    .await;
    let mut config = test_config();
    config.sms = Some(gateway(&sink));
    let d = Dispatcher::new(config, new_log()).unwrap();
    let report = d
        .deliver(&code(), &[Target::sms("+8613800138000").unwrap()])
        .await;
    assert_eq!(
        report.targets[0].status,
        DeliveryStatus::Delivered { attempts: 2 },
        "{report:?}"
    );
    assert_eq!(sink.hits(), 2);
}

#[tokio::test]
async fn without_a_gateway_sms_fails_at_once_and_says_what_to_configure() {
    let log = new_log();
    let d = Dispatcher::new(test_config(), log.clone()).unwrap();
    let report = d
        .deliver(&code(), &[Target::sms("+8613800138000").unwrap()])
        .await;
    match &report.targets[0].status {
        DeliveryStatus::Failed {
            attempts: 1,
            permanent: true,
            error,
        } => {
            assert!(error.contains("DispatcherConfig::sms"), "{error}")
        }
        other => panic!("expected a permanent failure, got {other:?}"),
    }
}
