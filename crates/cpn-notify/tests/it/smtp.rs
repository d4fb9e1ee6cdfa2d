//! E-mail through a real SMTP server (aiosmtpd): the message, its headers, and how SMTP
//! replies drive retries.

use std::sync::Arc;

use cpn_notify::{
    AttemptStatus, DeliveryStatus, Dispatcher, EventKind, Notification, SmtpConfig, SmtpSecurity,
    Target,
};
use serde_json::json;

use crate::support::{SmtpServer, closed_port, new_log, private_ca, test_config};

fn alarm(key: &str) -> Notification {
    Notification::new(
        EventKind::Alarm,
        "user-7",
        "Node gpu-03 lost 2 GPUs",
        "Site sz-a: node gpu-03 reports 6 of 8 GPUs since 10:02 UTC.\nTask t-42 was requeued.",
        json!({"site": "sz-a", "node": "gpu-03", "gpus_lost": 2}),
        key,
    )
    .unwrap()
}

fn dispatcher(port: u16, log: Arc<cpn_notify::InMemoryDeliveryLog>) -> Dispatcher {
    let mut config = test_config();
    config.smtp = Some(SmtpConfig::plain_loopback(
        port,
        "cpn alarms <alarms@cpn.example.org>",
    ));
    Dispatcher::new(config, log).unwrap()
}

#[tokio::test]
async fn an_alarm_arrives_by_email_with_its_headers_and_body() {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let log = new_log();
    let d = dispatcher(smtp.port, log.clone());
    let report = d
        .deliver(
            &alarm("alarm-gpu-03-1"),
            &[Target::email("alice@example.org").unwrap()],
        )
        .await;
    assert_eq!(
        report.targets[0].status,
        DeliveryStatus::Delivered { attempts: 1 },
        "{report:?}"
    );

    let got = smtp.wait_for_messages(1);
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.mail_from, "alarms@cpn.example.org");
    assert_eq!(m.rcpt_tos, ["alice@example.org"]);
    assert_eq!(
        m.header("From").as_deref(),
        Some("\"cpn alarms\" <alarms@cpn.example.org>")
    );
    assert_eq!(m.header("To").as_deref(), Some("alice@example.org"));
    assert_eq!(
        m.header("Subject").as_deref(),
        Some("Node gpu-03 lost 2 GPUs")
    );
    assert_eq!(
        m.header("Message-ID").as_deref(),
        Some("<alarm-gpu-03-1@cpn.example.org>")
    );
    assert_eq!(m.header("X-Cpn-Event").as_deref(), Some("alarm"));
    assert!(
        m.header("Content-Type")
            .is_some_and(|c| c.starts_with("text/plain")),
        "{:?}",
        m.header("Content-Type")
    );
    assert_eq!(
        m.body().trim_end().replace("\r\n", "\n"),
        "Site sz-a: node gpu-03 reports 6 of 8 GPUs since 10:02 UTC.\nTask t-42 was requeued."
    );

    let attempts = log.attempts();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].status, AttemptStatus::Delivered);
    assert_eq!(attempts[0].target, "al***@example.org");
    assert!(
        !format!("{attempts:?}").contains("alice@"),
        "the log holds the full address"
    );
}

#[tokio::test]
async fn a_non_ascii_subject_and_body_arrive_intact() {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let d = dispatcher(smtp.port, new_log());
    let n = Notification::new(
        EventKind::Account,
        "user-8",
        "验证码 / verification code",
        "您的验证码是 482913，10 分钟内有效。",
        json!({"code_sent": true}),
        "register-user-8",
    )
    .unwrap();
    let report = d
        .deliver(&n, &[Target::email("wang@example.cn").unwrap()])
        .await;
    assert!(report.all_delivered(), "{report:?}");
    let got = smtp.wait_for_messages(1);
    // Decode with Python's email package, an independent MIME implementation.
    let raw = &got[0].data;
    let out = std::process::Command::new(crate::support::python())
        .args([
            "-c",
            "import sys,email,email.policy;m=email.message_from_string(sys.stdin.read(),policy=email.policy.default);print(m['subject']);print(m.get_content().strip())",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(raw.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "验证码 / verification code\n您的验证码是 482913，10 分钟内有效。\n"
    );
}

#[tokio::test]
async fn a_5xx_reply_is_permanent_and_not_retried() {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let log = new_log();
    let d = dispatcher(smtp.port, log.clone());
    let report = d
        .deliver(
            &alarm("alarm-reject"),
            &[Target::email("reject-me@example.org").unwrap()],
        )
        .await;
    match &report.targets[0].status {
        DeliveryStatus::Failed {
            attempts: 1,
            permanent: true,
            error,
        } => {
            assert!(
                error.contains("550") && error.contains("refused"),
                "{error}"
            );
            // aiosmtpd echoes the recipient; the report and the log show it masked.
            assert!(
                error.contains("<re***@example.org>") && !error.contains("reject-me@"),
                "{error}"
            )
        }
        other => panic!("expected a permanent failure after 1 attempt, got {other:?}"),
    }
    assert_eq!(
        smtp.rcpt_count("reject-me@example.org"),
        1,
        "the relay saw a retry"
    );
    assert_eq!(log.attempts().len(), 1);
    assert!(log.attempts()[0].permanent);
    assert!(!format!("{:?}", log.attempts()).contains("reject-me@"));
    assert!(smtp.messages().is_empty());
}

#[tokio::test]
async fn a_4xx_reply_is_retried_until_the_relay_accepts() {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let log = new_log();
    let d = dispatcher(smtp.port, log.clone());
    // The sink answers 451 to the first 2 RCPTs for flaky2@, then accepts.
    let report = d
        .deliver(
            &alarm("alarm-flaky"),
            &[Target::email("flaky2@example.org").unwrap()],
        )
        .await;
    assert_eq!(
        report.targets[0].status,
        DeliveryStatus::Delivered { attempts: 3 },
        "{report:?}"
    );
    assert_eq!(smtp.rcpt_count("flaky2@example.org"), 3);
    let statuses: Vec<_> = log
        .attempts()
        .iter()
        .map(|a| (a.attempt, a.status))
        .collect();
    assert_eq!(
        statuses,
        [
            (1, AttemptStatus::Retrying),
            (2, AttemptStatus::Retrying),
            (3, AttemptStatus::Delivered)
        ]
    );
    assert!(
        log.attempts()[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("451"))
    );
    // A retrying attempt says when the next is due (after the backoff); the last none.
    let attempts = log.attempts();
    for (a, next) in attempts.iter().zip(attempts.iter().skip(1)) {
        let due = a.next_attempt_at.expect("a retry is due");
        assert!(due > a.at && due <= next.at, "{a:?} then {next:?}");
    }
    assert_eq!(attempts[2].next_attempt_at, None);
    assert_eq!(smtp.wait_for_messages(1).len(), 1);
}

#[tokio::test]
async fn a_relay_that_is_down_is_retried_then_given_up() {
    let log = new_log();
    let d = dispatcher(closed_port(), log.clone());
    let report = d
        .deliver(
            &alarm("alarm-down"),
            &[Target::email("bob@example.org").unwrap()],
        )
        .await;
    match &report.targets[0].status {
        DeliveryStatus::Failed {
            attempts: 3,
            permanent: false,
            error,
        } => {
            assert!(
                error.contains("could not talk to SMTP relay 127.0.0.1:"),
                "{error}"
            )
        }
        other => panic!("expected 3 failed attempts, got {other:?}"),
    }
    let statuses: Vec<_> = log.attempts().iter().map(|a| a.status).collect();
    assert_eq!(
        statuses,
        [
            AttemptStatus::Retrying,
            AttemptStatus::Retrying,
            AttemptStatus::Failed
        ]
    );
}

#[tokio::test]
async fn starttls_to_a_relay_with_a_private_ca() {
    let (ca, cert, key) = private_ca();
    let Some(smtp) = SmtpServer::start_with_starttls(&cert, &key) else {
        return;
    };
    let tls_config = |root: Option<&str>| {
        let mut config = test_config();
        let mut smtp_config =
            SmtpConfig::plain_loopback(smtp.port, "cpn <noreply@cpn.example.org>");
        smtp_config.security = SmtpSecurity::StartTls;
        smtp_config.extra_root_pem = root.map(|pem| pem.as_bytes().to_vec());
        config.smtp = Some(smtp_config);
        Dispatcher::new(config, new_log()).unwrap()
    };
    let to = [Target::email("carol@example.org").unwrap()];

    // The relay requires STARTTLS, so a message that arrives went over TLS.
    let report = tls_config(Some(&ca))
        .deliver(&alarm("alarm-tls"), &to)
        .await;
    assert!(report.all_delivered(), "{report:?}");
    assert_eq!(smtp.wait_for_messages(1)[0].rcpt_tos, ["carol@example.org"]);

    // Without the CA the relay's certificate is not trusted, and nothing is sent in clear.
    let report = tls_config(None)
        .deliver(&alarm("alarm-untrusted"), &to)
        .await;
    assert!(
        matches!(&report.targets[0].status, DeliveryStatus::Failed { error, .. } if error.contains("could not talk to SMTP relay") && error.contains("UnknownIssuer")),
        "{report:?}"
    );

    // A plain client cannot send to a relay that requires STARTTLS.
    let mut plain = test_config();
    plain.smtp = Some(SmtpConfig::plain_loopback(
        smtp.port,
        "cpn <noreply@cpn.example.org>",
    ));
    let report = Dispatcher::new(plain, new_log())
        .unwrap()
        .deliver(&alarm("alarm-plain"), &to)
        .await;
    assert!(
        matches!(&report.targets[0].status, DeliveryStatus::Failed { permanent: true, error, .. } if error.contains("STARTTLS")),
        "{report:?}"
    );
    assert_eq!(smtp.messages().len(), 1);
}
