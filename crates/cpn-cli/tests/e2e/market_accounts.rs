//! Self-service marketplace accounts (issue #14, SH-USR / SH-SUP) against a real SMTP server:
//! aiosmtpd from PyPI on loopback, started by the test (the handler is cpn-notify's
//! `tests/smtp_sink.py`), and the real `cpn serve` sending through it with `--smtp-relay`.
//! Without aiosmtpd the tests are skipped, saying so; under `CI` that fails instead.

use crate::harness::{Server, audit};
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const PASSWORD: &str = "violet-harbour-lantern-73";
/// The GB 11643 example resident ID number.
pub(crate) const NATIONAL_ID: &str = "11010519491231002X";
/// A valid unified social credit code (GB 32100 check character).
pub(crate) const CREDIT_CODE: &str = "91350100M000100Y43";

/// `python -m aiosmtpd` with cpn-notify's sink handler, which stores each message as JSON.
/// Shared with `lease_ssh`, whose supplier and user register through it.
pub(crate) struct Smtp {
    port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl Smtp {
    pub(crate) fn start() -> Option<Smtp> {
        Smtp::start_on(crate::harness::free_port())
    }

    /// The sink on a given port: a test points the server at a relay that is not up yet.
    fn start_on(port: u16) -> Option<Smtp> {
        let python = std::env::var("CPN_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let ok = Command::new(&python)
            .args(["-c", "import aiosmtpd"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            let why = format!(
                "{python} cannot import aiosmtpd: `{python} -m pip install aiosmtpd==1.4.6` or set CPN_TEST_PYTHON (.ci/run makes target/aiosmtpd-venv)"
            );
            if std::env::var_os("CI").is_some() {
                panic!("{why}");
            }
            eprintln!("SKIPPED (a real SMTP server is needed): {why}");
            return None;
        }
        let handlers = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cpn-notify/tests");
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("aiosmtpd.log")).unwrap();
        let child = Command::new(&python)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "smtp_sink.MaildirSink"])
            .arg(dir.path())
            .env("PYTHONPATH", handlers)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start aiosmtpd");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Smtp { port, dir, child })
    }

    pub(crate) fn relay(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The bodies of the messages received for `to`, oldest first, waiting up to 20 s for
    /// at least `n`.
    pub(crate) fn messages_to(&self, to: &str, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut paths: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect();
            paths.sort();
            let got: Vec<String> = paths
                .iter()
                .filter_map(|p| {
                    let m: Value = serde_json::from_slice(&std::fs::read(p).ok()?).ok()?;
                    let to_it = m["rcpt_tos"]
                        .as_array()?
                        .iter()
                        .any(|r| r.as_str().is_some_and(|r| r.eq_ignore_ascii_case(to)));
                    to_it.then(|| m["data"].as_str().unwrap_or("").to_string())
                })
                .collect();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The six-digit code of the latest message to `to`.
    pub(crate) fn code_for(&self, to: &str, n: usize) -> String {
        let messages = self.messages_to(to, n);
        let last = messages
            .last()
            .unwrap_or_else(|| panic!("no mail to {to} arrived"));
        let at = last.find("code is ").expect("the mail states the code") + "code is ".len();
        let code: String = last[at..].chars().take(6).collect();
        assert!(code.chars().all(|c| c.is_ascii_digit()), "{last}");
        code
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn login(server: &Server, username: &str) -> (StatusCode, Value) {
    server
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": username, "password": PASSWORD})),
        )
        .await
}

pub(crate) async fn register(server: &Server, body: Value) -> (StatusCode, Value) {
    server
        .call(
            Method::POST,
            "/api/v1/market/accounts/register",
            None,
            Some(body),
        )
        .await
}

pub(crate) async fn activate(server: &Server, username: &str, code: &str) -> (StatusCode, Value) {
    server
        .call(
            Method::POST,
            "/api/v1/market/accounts/activate",
            None,
            Some(json!({"username": username, "code": code})),
        )
        .await
}

pub(crate) fn individual(username: &str, email: &str, national_id: &str) -> Value {
    json!({
        "kind": "individual_user",
        "username": username,
        "password": PASSWORD,
        "email": email,
        "accepted_terms": "2026-12",
        "real_name": "Alice Example",
        "national_id": national_id,
    })
}

/// The business licence an enterprise supplier uploads (a PDF).
pub(crate) const LICENCE: &[u8] = b"%PDF-1.4\n% business licence of ACME, sealed\n";

/// An enterprise supplier's registration, with [`LICENCE`] as its PDF business licence.
pub(crate) fn enterprise_supplier(username: &str, email: &str) -> Value {
    json!({
        "kind": "enterprise_supplier",
        "username": username,
        "password": PASSWORD,
        "email": email,
        "accepted_terms": "2026-12",
        "company_name": "ACME Computing",
        "legal_representative_name": "Li Lei",
        "legal_representative_id": NATIONAL_ID,
        "registered_capital_minor": 100_000_000,
        "credit_code": CREDIT_CODE,
        "corporate_account": "6222 0202 0011 2233",
        "licence": {
            "content_type": "application/pdf",
            "data_base64": base64::engine::general_purpose::STANDARD.encode(LICENCE),
        },
    })
}

/// Every file under `dir`, for scanning the data dir for a value in clear.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[tokio::test]
async fn a_user_registers_gets_the_code_by_smtp_activates_and_logs_in() {
    let Some(smtp) = Smtp::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let relay = smtp.relay();
    let server = Server::start_with(
        dir.path(),
        false,
        &["--no-local-agent", "--smtp-relay", &relay],
    )
    .await;

    let (s, b) = register(
        &server,
        individual("alice", "Alice@Example.cn", NATIONAL_ID),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["account"]["state"], "pending_activation", "{b}");
    assert_eq!(b["account"]["email"], "alice@example.cn");
    assert!(b["terms"]["privacy_policy_url"].is_string(), "{b}");
    assert_eq!(
        b["account"]["identifiers"][0]["masked"],
        "110***********002X"
    );
    assert!(!b.to_string().contains(NATIONAL_ID), "{b}");
    let id = b["account"]["id"].as_u64().unwrap();

    // Not activated: the right password is still refused, saying what to do.
    let (s, b) = login(&server, "alice").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("activate"),
        "{b}"
    );

    let code = smtp.code_for("alice@example.cn", 1);
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let (s, b) = activate(&server, "alice", wrong).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "code");
    let (s, b) = activate(&server, "alice", &code).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["state"], "active", "{b}");
    // A code works once.
    let (s, _) = activate(&server, "alice", &code).await;
    assert_eq!(s, StatusCode::CONFLICT);

    let (s, b) = login(&server, "alice").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["user"]["role"], "user");
    assert_eq!(b["user"]["tenant"], "alice");
    let alice = b["token"].as_str().unwrap().to_string();
    let (s, b) = server
        .call(
            Method::GET,
            "/api/v1/market/accounts/me",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["id"].as_u64(), Some(id));

    // The same e-mail (in other case) is refused without naming the account holding it.
    let (s, b) = register(&server, individual("bob", "ALICE@example.cn", NATIONAL_ID)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(!b.to_string().contains("alice"), "{b}");
    // The same username too, and the operator's in another case.
    let (s, _) = register(
        &server,
        individual("Alice", "other@example.cn", NATIONAL_ID),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = register(
        &server,
        individual("ADMIN", "other@example.cn", NATIONAL_ID),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);

    // A wrong check character: 422 naming the field, with every other error listed too.
    let mut bad = individual("carol", "carol@example.cn", "110105194912310021");
    bad["accepted_terms"] = json!("");
    let (s, b) = register(&server, bad).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "national_id", "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("accepted_terms"),
        "{b}"
    );

    // Another tenant's user cannot read the account; the operator can.
    let mallory = server.user("lab", "mallory", "user").await;
    let path = format!("/api/v1/market/accounts/{id}");
    let (s, _) = server.call(Method::GET, &path, Some(&mallory), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = server
        .call(
            Method::GET,
            "/api/v1/market/accounts/me",
            Some(&mallory),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, b) = server.admin(Method::GET, &path, None).await;
    assert_eq!(s, StatusCode::OK, "{b}");

    // Profile edit through the CLI with alice's own token.
    let out = std::process::Command::new(crate::harness::CPN)
        .args(["account", "edit", "--region", "深圳市"])
        .env("CPN_SERVER", &server.base)
        .env("CPN_TOKEN", &alice)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, b) = server
        .call(
            Method::GET,
            "/api/v1/market/accounts/me",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(b["region"], "深圳市", "{b}");
    assert_eq!(b["state"], "active");

    // Deregistration: confirmed by name; personal data erased, the name kept reserved.
    let dereg = |confirm: &str| {
        let body = json!({"confirm_username": confirm});
        let (server, alice) = (&server, alice.clone());
        async move {
            server
                .call(
                    Method::POST,
                    "/api/v1/market/accounts/me/deregister",
                    Some(&alice),
                    Some(body),
                )
                .await
        }
    };
    let (s, b) = dereg("bob").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (s, b) = dereg("alice").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(
        b["erased"]
            .as_array()
            .unwrap()
            .contains(&json!("identifiers")),
        "{b}"
    );
    assert!(
        b["kept"].as_array().unwrap().contains(&json!("username")),
        "{b}"
    );
    assert!(b["account"]["email"].is_null(), "{b}");
    let (s, _) = server
        .call(
            Method::GET,
            "/api/v1/market/accounts/me",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "her sessions ended");
    let (s, b) = login(&server, "alice").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("deregistered"),
        "{b}"
    );
    let (s, b) = server.admin(Method::GET, &path, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["state"], "deregistered");
    assert!(b["identifiers"].as_array().unwrap().is_empty(), "{b}");
    // The username stays taken; the e-mail is free again.
    let (s, _) = register(&server, individual("alice", "new@example.cn", NATIONAL_ID)).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, b) = register(
        &server,
        individual("alice2", "alice@example.cn", NATIONAL_ID),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    // The identifier key is private, and the ID number is nowhere in clear on disk.
    use std::os::unix::fs::PermissionsExt;
    let key = std::fs::metadata(dir.path().join("market-identifier.key")).unwrap();
    assert_eq!(key.permissions().mode() & 0o777, 0o600);
    let mut all = Vec::new();
    files(dir.path(), &mut all);
    for f in all {
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(
            !bytes
                .windows(NATIONAL_ID.len())
                .any(|w| w == NATIONAL_ID.as_bytes()),
            "{} holds the ID number in clear",
            f.display()
        );
    }
}

#[tokio::test]
async fn an_enterprise_supplier_logs_in_only_after_an_operator_approves_its_licence() {
    let Some(smtp) = Smtp::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let relay = smtp.relay();
    let server = Server::start_with(
        dir.path(),
        false,
        &["--no-local-agent", "--smtp-relay", &relay],
    )
    .await;
    let licence = LICENCE.to_vec();
    let mut body = enterprise_supplier("acme", "ops@acme.cn");
    body["licence"]["content_type"] = json!("image/png");
    // A PDF declared as PNG is refused.
    let (s, b) = register(&server, body.clone()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "licence.content_type", "{b}");
    body["licence"]["content_type"] = json!("application/pdf");
    let (s, b) = register(&server, body).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["account"]["has_licence"], true);
    let id = b["account"]["id"].as_u64().unwrap().to_string();

    let code = smtp.code_for("ops@acme.cn", 1);
    let (s, b) = activate(&server, "acme", &code).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["state"], "pending_review", "{b}");
    let (s, b) = login(&server, "acme").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("review"),
        "{b}"
    );

    // Only operators see the queue and the licence.
    let other = server.user("lab", "eve", "supplier").await;
    let (s, _) = server
        .call(Method::GET, "/api/v1/market/reviews", Some(&other), None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let licence_path = format!("/api/v1/market/accounts/{id}/licence");
    let (s, _) = server
        .call(Method::GET, &licence_path, Some(&other), None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let resp = reqwest::Client::new()
        .get(format!("{}{licence_path}", server.base))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/pdf");
    assert_eq!(resp.bytes().await.unwrap().to_vec(), licence);

    let out = server.cli(&["account", "review", "list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("acme") && listed.contains("ACME Computing"),
        "{listed}"
    );

    // A rejection needs a reason; an approval is audited under the operator's name.
    let (s, b) = server
        .admin(
            Method::POST,
            &format!("/api/v1/market/accounts/{id}/reject"),
            Some(json!({"reason": " "})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    // Rejected with a reason the registrant sees; a fixed licence goes back to review.
    let out = server.cli(&[
        "account",
        "review",
        "reject",
        &id,
        "--reason",
        "the seal is unreadable",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, b) = login(&server, "acme").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the seal is unreadable"),
        "{b}"
    );
    let rejected = smtp.messages_to("ops@acme.cn", 2);
    assert!(
        rejected.len() == 2 && rejected[1].contains("the seal is unreadable"),
        "{rejected:?}"
    );
    let fixed = b"%PDF-1.4\n% business licence of ACME, sealed legibly\n".to_vec();
    let resubmit = |password: &str| {
        json!({"username": "acme", "password": password, "changes": {"licence": {
            "content_type": "application/pdf",
            "data_base64": base64::engine::general_purpose::STANDARD.encode(&fixed)}}})
    };
    let (s, b) = server
        .call(
            Method::POST,
            "/api/v1/market/accounts/resubmit",
            None,
            Some(resubmit("not-the-password")),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    let (s, b) = server
        .call(
            Method::POST,
            "/api/v1/market/accounts/resubmit",
            None,
            Some(resubmit(PASSWORD)),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["state"], "pending_review", "{b}");
    let resp = reqwest::Client::new()
        .get(format!("{}{licence_path}", server.base))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.bytes().await.unwrap().to_vec(),
        fixed,
        "the new licence is served"
    );

    let out = server.cli(&["account", "review", "approve", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = audit(&server, "action=market.accounts.approve").await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["actor"], "admin");
    assert_eq!(lines[0]["object_id"], id.as_str());

    let (s, b) = login(&server, "acme").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["user"]["role"], "supplier");
    let acme = b["token"].as_str().unwrap().to_string();
    let (s, b) = server
        .call(Method::GET, "/api/v1/market/accounts/me", Some(&acme), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["state"], "active");
    let history: Vec<(&str, &str)> = b["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["state"].as_str().unwrap(), t["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        history,
        [
            ("pending_activation", "owner"),
            ("pending_review", "owner"),
            ("rejected", "operator:admin"),
            ("pending_review", "owner"),
            ("active", "operator:admin"),
        ]
    );
    // The approval was mailed to the registrant too.
    let mails = smtp.messages_to("ops@acme.cn", 3);
    assert!(
        mails.len() == 3 && mails[2].contains("approved"),
        "{mails:?}"
    );
}

#[tokio::test]
async fn without_a_relay_registration_says_which_flag_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), false).await;
    let (s, b) = register(&server, individual("dave", "dave@example.cn", NATIONAL_ID)).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    assert_eq!(b["error"]["code"], "unavailable");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--smtp-relay"),
        "{b}"
    );
    // Nothing was created: the name is still free.
    let (s, b) = server.admin(Method::GET, "/api/v1/users", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(!b.to_string().contains("dave"), "{b}");
}

#[tokio::test]
async fn alarms_reach_the_subscribers_of_their_tenant_by_email() {
    let Some(smtp) = Smtp::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let relay = smtp.relay();
    let server = Server::start_with(
        dir.path(),
        false,
        &["--no-local-agent", "--smtp-relay", &relay],
    )
    .await;
    let ana = server.user("lab", "ana", "user").await;
    let zed = server.user("other", "zed", "user").await;
    let subscribe = |token: String, body: Value| {
        let server = &server;
        async move {
            server
                .call(
                    Method::POST,
                    "/api/v1/notifications/subscriptions",
                    Some(&token),
                    Some(body),
                )
                .await
        }
    };
    let (s, b) = subscribe(
        ana.clone(),
        json!({"channel": "email", "target": "ana@lab.cn", "kinds": ["alarm"]}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert!(!b["target"].as_str().unwrap().contains("ana@"), "{b}");
    let (s, b) = subscribe(
        zed.clone(),
        json!({"channel": "email", "target": "zed@other.cn", "kinds": ["alarm"]}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = subscribe(
        ana.clone(),
        json!({"channel": "webhook", "target": "https://hooks.example.cn/x", "kinds": ["alarm"]}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "secret");
    let (s, b) = subscribe(
        ana.clone(),
        json!({"channel": "sms", "target": "+8613800138000", "kinds": ["alarm"]}),
    )
    .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--sms-gateway")
    );
    let (s, b) = server
        .call(
            Method::GET,
            "/api/v1/notifications/subscriptions",
            Some(&ana),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b.as_array().unwrap().len(), 1, "{b}");

    // No node at all: ana's task is unschedulable, which raises an alarm in tenant lab.
    let (s, b) = server
        .call(
            Method::POST,
            "/api/v1/tasks",
            Some(&ana),
            Some(json!({"name": "waits", "command": ["true"]})),
        )
        .await;
    assert!(s.is_success(), "{s} {b}");
    let mails = smtp.messages_to("ana@lab.cn", 1);
    assert_eq!(mails.len(), 1, "the alarm did not arrive");
    assert!(mails[0].contains("unschedulable"), "{}", mails[0]);
    // Zed's tenant had no alarm.
    assert!(smtp.messages_to("zed@other.cn", 0).is_empty());
}

/// A one-route HTTP server standing in for the SMS gateway: it records each request body.
fn sms_gateway() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/send", listener.local_addr().unwrap());
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok()
                && let Ok(v) = serde_json::from_slice(&body)
            {
                seen.lock().unwrap().push(v);
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, got)
}

#[tokio::test]
async fn a_phone_registration_gets_its_code_through_the_sms_gateway() {
    let (url, received) = sms_gateway();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        dir.path(),
        false,
        &["--no-local-agent", "--sms-gateway", &url],
    )
    .await;
    let mut body = individual("lin", "", NATIONAL_ID);
    body["email"] = Value::Null;
    body["phone"] = json!("13800138000");
    let (s, b) = register(&server, body).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert!(
        b["code_sent_to"][0].as_str().unwrap().starts_with("+86"),
        "{b}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let sms = loop {
        if let Some(v) = received.lock().unwrap().first().cloned() {
            break v;
        }
        assert!(Instant::now() < deadline, "no SMS reached the gateway");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(sms["to"], "+8613800138000", "{sms}");
    let text = sms["text"].as_str().unwrap();
    let at = text.find("code is ").unwrap() + "code is ".len();
    let code: String = text[at..].chars().take(6).collect();
    // A second code so soon is refused for this account, whatever the address.
    let (s, b) = server
        .call(
            Method::POST,
            "/api/v1/market/accounts/resend-code",
            None,
            Some(json!({"username": "lin"})),
        )
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{b}");
    let (s, b) = activate(&server, "lin", &code).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["state"], "active");
}

/// The marketplace acts as real accounts: a registered user's orders, leases and ledger
/// entries are its own account's, an operator-created supplier gets an account on its
/// first marketplace call (audited), and the core's lease and budget events reach the
/// user's e-mail subscription.
#[tokio::test(flavor = "multi_thread")]
async fn a_registered_user_orders_is_billed_to_its_account_and_gets_the_budget_alarm_by_email() {
    let Some(smtp) = Smtp::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let relay = smtp.relay();
    let m = crate::market::setup_with(dir.path(), &["--smtp-relay", &relay]).await;
    let server = &m.server;

    let (s, b) = register(server, individual("rita", "rita@lab.cn", NATIONAL_ID)).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let rita_account = b["account"]["id"].as_u64().unwrap();
    let code = smtp.code_for("rita@lab.cn", 1);
    let (s, b) = activate(server, "rita", &code).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = login(server, "rita").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let rita = b["token"].as_str().unwrap().to_string();
    let (s, b) = server
        .call(
            Method::POST,
            "/api/v1/notifications/subscriptions",
            Some(&rita),
            Some(
                json!({"channel": "email", "target": "rita@lab.cn", "kinds": ["lease", "billing"]}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    // A prepaid month of 6000.00 against a budget of 10000.00 alarmed at half: the order
    // itself crosses the threshold.
    let mut listing = crate::market::spec("b", json!([{"node": "n1", "index": 0}]));
    listing["prices"] = json!({"monthly_minor": 600_000});
    let (s, l) = server
        .call(
            Method::POST,
            "/api/v1/market/listings",
            Some(&m.supplier),
            Some(listing),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{l}");
    let cpcid = l["cpcid"].as_str().unwrap().to_string();
    // The supplier was made by an operator, not registered: its account was made on its
    // first marketplace call, active, and audited.
    let (s, sup) = server
        .call(
            Method::GET,
            "/api/v1/market/accounts/me",
            Some(&m.supplier),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{sup}");
    assert_eq!(sup["state"], "active", "{sup}");
    assert_ne!(sup["id"].as_u64(), Some(rita_account));
    let lines = audit(server, "action=market.account.provision").await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["actor"], "sup", "{lines:?}");

    let (s, b) = server
        .admin(
            Method::POST,
            "/api/v1/billing/topups",
            Some(json!({"tenant": "rita", "amount_minor": 2_000_000})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = server
        .admin(
            Method::PUT,
            "/api/v1/billing/budgets/rita",
            Some(json!({"monthly_limit_minor": 1_000_000, "alarm_percent": 50})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, placed) = server
        .call(
            Method::POST,
            "/api/v1/market/orders",
            Some(&rita),
            Some(json!({"listing": cpcid, "mode": "monthly", "periods": 1})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{placed}");
    assert_eq!(placed["lease"]["user"], "rita", "{placed}");
    assert_eq!(placed["lease"]["supplier"], "sup", "{placed}");
    assert_eq!(placed["lease"]["tenant"], "rita", "{placed}");
    let lease = placed["lease"]["id"].as_u64().unwrap();

    // The lease's start and the alarm at half the budget are mailed (after the code).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mails = loop {
        let mails = smtp.messages_to("rita@lab.cn", 3);
        if mails.iter().any(|m| m.contains("budget alarm")) {
            break mails;
        }
        assert!(Instant::now() < deadline, "no budget alarm: {mails:?}");
    };
    assert!(
        mails
            .iter()
            .any(|m| m.contains(&format!("lease {lease} started"))),
        "{mails:?}"
    );
    let alarm = mails.iter().find(|m| m.contains("budget alarm")).unwrap();
    assert!(alarm.contains("tenant rita"), "{alarm}");
    assert_eq!(
        mails.iter().filter(|m| m.contains("budget alarm")).count(),
        1,
        "{mails:?}"
    );
    // Both came through the outbox, written with the order's market write, keyed by event.
    let entries = outbox(server, "rita").await;
    let key_of = |prefix: &str| {
        entries
            .iter()
            .find(|e| {
                e["idempotency_key"]
                    .as_str()
                    .is_some_and(|k| k.starts_with(prefix))
            })
            .map(|e| e["kind"].clone())
    };
    assert_eq!(
        key_of(&format!("lease-{lease}:started")),
        Some(json!("lease")),
        "{entries:?}"
    );
    assert_eq!(
        key_of("budget-rita-"),
        Some(json!("billing")),
        "{entries:?}"
    );

    // After the month's close the ledger names rita's funds and what the platform owes the
    // supplier's account; it sums to zero.
    let month = &placed["lease"]["started_at"].as_str().unwrap()[..7];
    let (s, closed) = server
        .admin(
            Method::POST,
            &format!("/api/v1/billing/months/{month}/close"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{closed}");
    let (_, ledger) = server
        .admin(Method::GET, "/api/v1/billing/ledger", None)
        .await;
    assert_eq!(ledger["trial_balance_minor"], 0, "{ledger}");
    let balance = |name: &str| {
        ledger["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["account"] == name)
            .and_then(|a| a["balance_minor"].as_i64())
    };
    assert_eq!(
        balance("user_funds:rita"),
        Some(2_000_000 - 600_000),
        "{ledger}"
    );
    // Net of the platform's 5 % commission.
    assert_eq!(
        balance("supplier_receivable:sup"),
        Some(600_000 - 30_000),
        "{ledger}"
    );
}

/// The outbox entries of a recipient, oldest first, as the operator reads them through
/// `GET /api/v1/notifications/outbox` (newest first there): never a message or an address.
async fn outbox(server: &Server, recipient: &str) -> Vec<Value> {
    let (s, b) = server
        .call(
            Method::GET,
            &format!("/api/v1/notifications/outbox?recipient={recipient}&limit=500"),
            Some(&server.token),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let items = b["items"].as_array().expect("a page of outbox entries");
    for e in items {
        assert_eq!(e["recipient"], recipient, "{e}");
        assert!(e.get("message").is_none(), "no message is shown: {e}");
        let targets = e["targets"].as_array().expect("targets");
        assert!(
            targets
                .iter()
                .all(|t| t.as_str().is_some_and(|t| t.contains("***"))),
            "targets are masked: {e}"
        );
    }
    items.iter().rev().cloned().collect()
}

/// The states of a recipient's outbox entries, oldest first.
async fn outbox_states(server: &Server, recipient: &str) -> Vec<String> {
    outbox(server, recipient)
        .await
        .iter()
        .map(|e| e["state"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The statuses of the delivery log's attempts for `recipient`, oldest first, as `token`
/// reads them through `GET /api/v1/notifications/deliveries` (newest first there).
async fn delivery_log(server: &Server, token: &str, recipient: &str) -> Vec<String> {
    let (s, b) = server
        .call(
            Method::GET,
            &format!("/api/v1/notifications/deliveries?recipient={recipient}&limit=500"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let items = b["items"].as_array().expect("a page of deliveries");
    for a in items {
        assert_eq!(a["recipient"], recipient, "{a}");
        assert!(
            !a["target"]
                .as_str()
                .unwrap_or_default()
                .contains("erin@lab.cn"),
            "the target is masked: {a}"
        );
    }
    items
        .iter()
        .rev()
        .map(|a| a["status"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// A pending code is in the store, not in the server's memory: the code mailed before a
/// crash and restart activates after it.
#[tokio::test]
async fn a_code_sent_before_a_restart_activates_after_it() {
    let Some(smtp) = Smtp::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let relay = smtp.relay();
    let flags = ["--no-local-agent", "--smtp-relay", relay.as_str()];
    let mut server = Server::start_with(dir.path(), false, &flags).await;
    let (s, b) = register(&server, individual("dora", "dora@lab.cn", NATIONAL_ID)).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let code = smtp.code_for("dora@lab.cn", 1);
    let mail = smtp.messages_to("dora@lab.cn", 1).remove(0);
    assert!(
        !mail.contains("/activate?"),
        "without --public-url the mail has no link: {mail}"
    );
    assert!(mail.contains("cpn account activate dora --code"), "{mail}");

    server.kill9();
    let server = Server::start_with(dir.path(), false, &flags).await;
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let (s, b) = activate(&server, "dora", wrong).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (s, b) = activate(&server, "dora", &code).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["state"], "active", "{b}");
    let (s, b) = login(&server, "dora").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // Used: removed from the store, so it does not work again.
    let (s, _) = activate(&server, "dora", &code).await;
    assert_eq!(s, StatusCode::CONFLICT);
}

/// The outbox: a code mail whose relay is down stays pending through a crash, and the
/// restarted server delivers it once the relay is up; the delivery log keeps the failed
/// attempts and then the success, and the code still activates.
#[tokio::test]
async fn a_mail_to_a_relay_that_is_down_is_delivered_after_a_crash_and_restart() {
    if Smtp::start().is_none() {
        return;
    }
    let port = crate::harness::free_port();
    let relay = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--no-local-agent", "--smtp-relay", relay.as_str()];
    let mut server = Server::start_with(dir.path(), false, &flags).await;
    let (s, b) = register(&server, individual("erin", "erin@lab.cn", NATIONAL_ID)).await;
    assert_eq!(
        s,
        StatusCode::CREATED,
        "the code is queued even with the relay down: {b}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !delivery_log(&server, &server.token, "erin")
        .await
        .contains(&"retrying".to_string())
    {
        assert!(Instant::now() < deadline, "no failed attempt was logged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pending = outbox(&server, "erin").await;
    assert_eq!(pending.len(), 1, "{pending:?}");
    let entry = &pending[0];
    assert_eq!(entry["state"], "pending", "{entry}");
    assert_eq!(entry["kind"], "account", "{entry}");
    assert!(entry["attempts"].as_u64() >= Some(1), "{entry}");
    assert!(entry["last_error"].is_string(), "{entry}");
    assert!(
        entry["next_attempt_at"].is_string(),
        "the backoff says when: {entry}"
    );

    // The crash comes while the dispatcher waits to retry; the relay comes up meanwhile.
    server.kill9();
    let smtp = Smtp::start_on(port).expect("aiosmtpd was importable above");
    let server = Server::start_with(dir.path(), false, &flags).await;
    let code = smtp.code_for("erin@lab.cn", 1);
    // Generous: under CI's parallel tests a restarted server's first delivery may meet the
    // dispatcher's backoff; what matters is that the entry settles, once.
    let deadline = Instant::now() + Duration::from_secs(60);
    while outbox_states(&server, "erin").await != ["delivered"] {
        assert!(
            Instant::now() < deadline,
            "the outbox entry was not settled: outbox {:?}, delivery log {:?}",
            outbox(&server, "erin").await,
            delivery_log(&server, &server.token, "erin").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = delivery_log(&server, &server.token, "erin").await;
    assert_eq!(log.first().map(String::as_str), Some("retrying"), "{log:?}");
    assert_eq!(log.last().map(String::as_str), Some("delivered"), "{log:?}");
    assert_eq!(
        log.iter().filter(|s| *s == "delivered").count(),
        1,
        "delivered once: {log:?}"
    );
    let (s, b) = activate(&server, "erin", &code).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // Erin reads her own log; a plain user of another tenant sees none of it and may not
    // ask for it.
    let (s, b) = login(&server, "erin").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let erin = b["token"].as_str().expect("token").to_string();
    assert_eq!(delivery_log(&server, &erin, "erin").await, log);
    // The operator's CLI shows the same log as a table, the target masked.
    let out = server.cli(&[
        "notify",
        "deliveries",
        "--recipient",
        "erin",
        "--status",
        "delivered",
    ]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert_eq!(table.matches("delivered").count(), 1, "{table}");
    assert!(!table.contains("erin@lab.cn"), "{table}");
    assert!(!table.contains("retrying"), "{table}");
    let olga = server.user("other-lab", "olga", "user").await;
    let (s, b) = server
        .call(
            Method::GET,
            "/api/v1/notifications/deliveries",
            Some(&olga),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b["items"],
        json!([]),
        "another tenant's user sees none: {b}"
    );
    let (s, b) = server
        .call(
            Method::GET,
            "/api/v1/notifications/deliveries?recipient=erin",
            Some(&olga),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    // Nothing is sent again after another restart: the entry is settled.
    drop(server);
    let _server = Server::start_with(dir.path(), false, &flags).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(smtp.messages_to("erin@lab.cn", 2).len(), 1);
}

/// An operator sends a failed notification again: a code mail the mailbox refused for good
/// (550) is failed in the outbox, listed without its code or address; a retry puts it back
/// to pending with a fresh attempt budget, the mailbox accepts it now, and the code
/// activates. Only operators list or retry; an unknown id is 404, a delivered entry 409; the
/// retry is audited.
#[tokio::test]
async fn an_operator_retries_a_failed_notification_and_it_is_delivered() {
    let Some(smtp) = Smtp::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let relay = smtp.relay();
    let flags = ["--no-local-agent", "--smtp-relay", relay.as_str()];
    let server = Server::start_with(dir.path(), false, &flags).await;
    // The sink refuses `bounce1…` once with 550, then accepts it.
    let (s, b) = register(&server, individual("fay", "bounce1@lab.cn", NATIONAL_ID)).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while outbox_states(&server, "fay").await != ["failed"] {
        assert!(
            Instant::now() < deadline,
            "a permanent refusal fails the entry: {:?}",
            outbox(&server, "fay").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let entry = outbox(&server, "fay").await.remove(0);
    assert_eq!(entry["kind"], "account", "{entry}");
    assert_eq!(entry["attempts"], 1, "550 is not retried: {entry}");
    assert!(
        entry["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("550")),
        "{entry}"
    );
    assert!(entry.get("next_attempt_at").is_none(), "{entry}");
    assert_eq!(
        entry["targets"].as_array().map(Vec::len),
        Some(1),
        "{entry}"
    );
    let id = entry["id"].as_u64().expect("an id").to_string();

    let out = server.cli(&["notify", "outbox", "--state", "failed"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert!(table.contains("fay") && table.contains("failed"), "{table}");
    assert!(!table.contains("bounce1@lab.cn"), "{table}");
    let out = server.cli(&["notify", "outbox", "--state", "delivered"]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("fay"),
        "the state filter: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Only operators: a plain user neither reads the outbox nor retries.
    let olga = server.user("other-lab", "olga", "user").await;
    let (s, b) = server
        .call(
            Method::GET,
            "/api/v1/notifications/outbox",
            Some(&olga),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let retry_path = format!("/api/v1/notifications/outbox/{id}/retry");
    let (s, b) = server
        .call(Method::POST, &retry_path, Some(&olga), None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, b) = server
        .call(
            Method::POST,
            "/api/v1/notifications/outbox/999999/retry",
            Some(&server.token),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    let (s, b) = server
        .call(
            Method::GET,
            "/api/v1/notifications/outbox?state=lost",
            Some(&server.token),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(outbox_states(&server, "fay").await, ["failed"], "unchanged");

    let out = server.cli(&["notify", "retry", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("retried"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while outbox_states(&server, "fay").await != ["delivered"] {
        assert!(
            Instant::now() < deadline,
            "the retried entry was not delivered: {:?}",
            outbox(&server, "fay").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let entry = outbox(&server, "fay").await.remove(0);
    assert_eq!(entry["attempts"], 1, "a fresh budget, one attempt: {entry}");
    let code = smtp.code_for("bounce1@lab.cn", 1);
    let (s, b) = activate(&server, "fay", &code).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        delivery_log(&server, &server.token, "fay").await,
        ["failed", "delivered"]
    );
    let (s, b) = server
        .call(Method::POST, &retry_path, Some(&server.token), None)
        .await;
    assert_eq!(
        s,
        StatusCode::CONFLICT,
        "a delivered entry is not retried: {b}"
    );

    let lines = audit(&server, "action=notifications.outbox.retry").await;
    let ok: Vec<&Value> = lines.iter().filter(|l| l["result"] == "success").collect();
    assert_eq!(ok.len(), 1, "{lines:?}");
    assert_eq!(ok[0]["actor"], "admin");
    assert_eq!(ok[0]["object_id"], id.as_str());
}

/// Undoes the quoted-printable encoding a mail with a long line (the link) is sent in.
fn unquote(mail: &str) -> String {
    let joined = mail.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// With --public-url the mail carries a one-time activation link: it activates once (no
/// session), a second use is refused, and the code stops working too.
#[tokio::test]
async fn the_activation_link_from_the_mail_activates_once() {
    let Some(smtp) = Smtp::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let relay = smtp.relay();
    let server = Server::start_with(
        dir.path(),
        false,
        &[
            "--no-local-agent",
            "--smtp-relay",
            &relay,
            "--public-url",
            "https://cpn.example.org/",
        ],
    )
    .await;
    let (s, b) = register(&server, individual("finn", "finn@lab.cn", NATIONAL_ID)).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let code = smtp.code_for("finn@lab.cn", 1);
    let mail = unquote(&smtp.messages_to("finn@lab.cn", 1).remove(0));
    let prefix = "https://cpn.example.org/api/v1/market/accounts/activate?";
    let at = mail
        .find(prefix)
        .unwrap_or_else(|| panic!("no link in {mail}"));
    let link: String = mail[at + "https://cpn.example.org".len()..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    let token = link.rsplit_once("token=").unwrap().1;
    assert_eq!(token.len(), 64, "a 256-bit token: {link}");
    // A wrong token is refused and does not activate.
    let forged = format!(
        "/api/v1/market/accounts/activate?username=finn&token={}",
        "0".repeat(64)
    );
    let (s, b) = server.call(Method::GET, &forged, None, None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "token", "{b}");
    let (s, b) = server.call(Method::GET, &link, None, None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["state"], "active", "{b}");
    assert!(b.get("token").is_none(), "the link only activates: {b}");
    let (s, b) = server.call(Method::GET, &link, None, None).await;
    assert_eq!(s, StatusCode::CONFLICT, "a second use is refused: {b}");
    let (s, _) = activate(&server, "finn", &code).await;
    assert_eq!(s, StatusCode::CONFLICT, "the code went with the link");
    let (s, b) = login(&server, "finn").await;
    assert_eq!(s, StatusCode::OK, "{b}");
}
