//! The dispatcher as a whole: routing by subscription, idempotency, bounded concurrency.

use std::time::Duration;

use cpn_notify::{
    DeliveryStatus, Dispatcher, EventKind, Notification, SmsGatewayConfig, SmtpConfig,
    Subscription, Target, WebhookSecret,
};
use serde_json::json;

use crate::support::{Behaviour, HttpSink, SmtpServer, new_log, test_config};

const SECRET: &str = "whsec-0123456789abcdef0123456789abcdef";

fn event(kind: EventKind, user: &str, key: &str) -> Notification {
    Notification::new(
        kind,
        user,
        format!("{kind} event"),
        "text",
        json!({"k": key}),
        key,
    )
    .unwrap()
}

#[tokio::test]
async fn subscriptions_route_each_kind_of_each_user_to_its_channels() {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let hooks = HttpSink::start(Behaviour::default()).await;
    let sms = HttpSink::start(Behaviour::default()).await;
    let mut config = test_config();
    config.smtp = Some(SmtpConfig::plain_loopback(
        smtp.port,
        "cpn <noreply@cpn.example.org>",
    ));
    config.sms = Some(SmsGatewayConfig {
        url: sms.url("/send"),
        token: None,
        timeout: Duration::from_secs(5),
    });
    let d = Dispatcher::new(config, new_log()).unwrap();
    let secret = WebhookSecret::new(SECRET).unwrap();
    let subs = [
        Subscription::new(
            "u1",
            [EventKind::Alarm],
            Target::email("u1@example.org").unwrap(),
        ),
        Subscription::new(
            "u1",
            [EventKind::Billing],
            Target::webhook(hooks.url("/u1"), secret.clone()).unwrap(),
        ),
        Subscription::new(
            "u1",
            [EventKind::Alarm, EventKind::Billing],
            Target::sms("+8613800138001").unwrap(),
        ),
        Subscription::new(
            "u2",
            EventKind::ALL,
            Target::webhook(hooks.url("/u2"), secret).unwrap(),
        ),
    ];

    let report = d
        .notify(&event(EventKind::Alarm, "u1", "alarm-1"), &subs)
        .await;
    assert!(report.all_delivered(), "{report:?}");
    let channels: Vec<_> = report.targets.iter().map(|t| t.channel.as_str()).collect();
    assert_eq!(channels, ["email", "sms"]);
    assert_eq!(smtp.wait_for_messages(1)[0].rcpt_tos, ["u1@example.org"]);
    assert_eq!(sms.hits(), 1);
    assert_eq!(
        hooks.hits(),
        0,
        "an alarm went to u1's billing webhook or to u2"
    );

    let report = d
        .notify(&event(EventKind::Billing, "u1", "bill-1"), &subs)
        .await;
    let channels: Vec<_> = report.targets.iter().map(|t| t.channel.as_str()).collect();
    assert_eq!(channels, ["webhook", "sms"]);
    assert_eq!(
        hooks
            .accepted()
            .iter()
            .map(|r| r.path.clone())
            .collect::<Vec<_>>(),
        ["/u1"]
    );

    // A lease event for u1 has no subscription: nothing is sent, and the report says so.
    let report = d
        .notify(&event(EventKind::Lease, "u1", "lease-1"), &subs)
        .await;
    assert!(report.targets.is_empty() && !report.all_delivered());
    assert_eq!((hooks.hits(), sms.hits(), smtp.messages().len()), (1, 2, 1));
}

#[tokio::test]
async fn the_same_notification_is_delivered_once_per_target() {
    let hooks = HttpSink::start(Behaviour::default()).await;
    let log = new_log();
    let d = Dispatcher::new(test_config(), log.clone()).unwrap();
    let secret = WebhookSecret::new(SECRET).unwrap();
    let a = Target::webhook(hooks.url("/a"), secret.clone()).unwrap();
    let b = Target::webhook(hooks.url("/b"), secret).unwrap();
    let n = event(EventKind::Lease, "u1", "lease-7-granted");

    // Listed twice: sent once.
    let first = d.deliver(&n, &[a.clone(), a.clone()]).await;
    assert_eq!(first.targets.len(), 1);
    // Sent again (a caller's retry, a restart): the delivered target is skipped, a new one
    // gets it.
    let second = d.deliver(&n, &[a.clone(), b]).await;
    assert_eq!(second.targets[0].status, DeliveryStatus::AlreadyDelivered);
    assert_eq!(
        second.targets[1].status,
        DeliveryStatus::Delivered { attempts: 1 }
    );
    assert_eq!(
        hooks
            .accepted()
            .iter()
            .map(|r| r.path.clone())
            .collect::<Vec<_>>(),
        ["/a", "/b"]
    );
    // Another key is another event.
    let third = d
        .deliver(&event(EventKind::Lease, "u1", "lease-7-released"), &[a])
        .await;
    assert!(third.all_delivered());
    assert_eq!(hooks.hits(), 3);
}

#[tokio::test]
async fn attempts_in_flight_are_bounded() {
    let hooks = HttpSink::start(Behaviour {
        delay: Duration::from_millis(200),
        ..Behaviour::default()
    })
    .await;
    let mut config = test_config();
    config.max_concurrent = 3;
    let d = Dispatcher::new(config, new_log()).unwrap();
    let secret = WebhookSecret::new(SECRET).unwrap();
    let targets: Vec<Target> = (0..9)
        .map(|i| Target::webhook(hooks.url(&format!("/t{i}")), secret.clone()).unwrap())
        .collect();
    let report = d
        .deliver(&event(EventKind::Alarm, "u1", "storm-1"), &targets)
        .await;
    assert!(report.all_delivered(), "{report:?}");
    assert_eq!(hooks.hits(), 9);
    // At most 3 at once (the bound), and 3 were reached (deliveries do run in parallel).
    assert_eq!(hooks.max_in_flight(), 3);
}
