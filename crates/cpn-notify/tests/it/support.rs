//! Real components for the tests: an aiosmtpd SMTP server on a loopback port (Python, from
//! PyPI) and an HTTP sink (axum) that verifies webhook signatures, can fail on purpose and
//! records what it received.

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use cpn_notify::signature::{DEFAULT_TOLERANCE, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use cpn_notify::{
    DispatcherConfig, InMemoryDeliveryLog, RetryPolicy, SignatureError, WebhookConfig,
    verify_signature,
};

/// The Python the tests run aiosmtpd with: `CPN_TEST_PYTHON` (CI points it at the venv
/// `.ci/run` installs), else `python3` on PATH.
pub fn python() -> String {
    std::env::var("CPN_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .expect("bind a loopback port")
        .local_addr()
        .expect("local address")
        .port()
}

/// A port nothing listens on (bound, then closed): connections to it are refused.
pub fn closed_port() -> u16 {
    free_port()
}

/// `python3 -m aiosmtpd` on a free loopback port with `tests/smtp_sink.py` as handler.
pub struct SmtpServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
    // The certificate and key files, kept while the server runs.
    _tls: Option<tempfile::TempDir>,
}

#[derive(Debug, serde::Deserialize)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    pub data: String,
}

impl Received {
    /// The value of header `name` (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or("");
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }

    pub fn body(&self) -> &str {
        self.data.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }
}

impl SmtpServer {
    /// `None` (the test is skipped, saying so) where aiosmtpd is not installed, except
    /// under `CI`, where that fails: the project's convention for tests that need a real
    /// component from outside Cargo (Slurm, Chromium).
    pub fn start() -> Option<Self> {
        Self::start_with(&[])
    }

    /// With STARTTLS, which aiosmtpd then requires before MAIL: a client that does not
    /// upgrade cannot send.
    pub fn start_with_starttls(cert_pem: &str, key_pem: &str) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, cert_pem).expect("write cert");
        std::fs::write(&key, key_pem).expect("write key");
        let mut server = Self::start_with(&[
            "--tlscert".as_ref(),
            cert.as_os_str(),
            "--tlskey".as_ref(),
            key.as_os_str(),
        ])?;
        server._tls = Some(dir);
        Some(server)
    }

    fn start_with(extra: &[&std::ffi::OsStr]) -> Option<Self> {
        let python = python();
        let check = Command::new(&python)
            .args(["-c", "import aiosmtpd"])
            .output();
        let missing = match check {
            Ok(out) if out.status.success() => None,
            Ok(out) => Some(format!(
                "aiosmtpd is not importable by {python} ({}): install it with \
                 `{python} -m pip install aiosmtpd==1.4.6`, or set CPN_TEST_PYTHON to a Python \
                 that has it (.ci/run installs it into target/aiosmtpd-venv)",
                String::from_utf8_lossy(&out.stderr)
                    .trim()
                    .lines()
                    .last()
                    .unwrap_or("")
            )),
            Err(e) => Some(format!(
                "cannot run {python} ({e}): the SMTP tests need Python 3 with aiosmtpd \
                 (`pip install aiosmtpd==1.4.6`); set CPN_TEST_PYTHON to its path"
            )),
        };
        if let Some(why) = missing {
            if std::env::var_os("CI").is_some() {
                panic!("{why}");
            }
            eprintln!("SKIPPED (a real SMTP server is needed): {why}");
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let tests_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("aiosmtpd.log")).expect("log file");
        let child = Command::new(&python)
            .args(["-m", "aiosmtpd", "-n"])
            .args(extra)
            .arg("-l")
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "smtp_sink.MaildirSink"])
            .arg(dir.path())
            .env("PYTHONPATH", &tests_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {python} -m aiosmtpd: {e}"));
        let mut server = Self {
            port,
            dir,
            child,
            _tls: None,
        };
        server.wait_until_listening();
        Some(server)
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "aiosmtpd exited ({status}) before listening:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not listen on 127.0.0.1:{} within 30 s:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("aiosmtpd.log")).unwrap_or_default()
    }

    pub fn messages(&self) -> Vec<Received> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .expect("read sink dir")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        paths.sort();
        paths
            .iter()
            .map(|p| {
                serde_json::from_slice(&std::fs::read(p).expect("read message"))
                    .expect("message JSON")
            })
            .collect()
    }

    /// Waits until `n` messages have arrived (the relay may write after it answered).
    pub fn wait_for_messages(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.messages();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How many RCPT commands for `address` the server saw.
    pub fn rcpt_count(&self, address: &str) -> usize {
        std::fs::read_to_string(self.dir.path().join("rcpt.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.eq_ignore_ascii_case(address))
            .count()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the HTTP sink does with each request.
#[derive(Clone, Default)]
pub struct Behaviour {
    /// Verify webhook signatures with this secret; a bad one gets 401.
    pub secret: Option<Vec<u8>>,
    /// Answer `fail_status` to the first `fail_first` requests.
    pub fail_first: u32,
    pub fail_status: u16,
    /// Wait this long before answering.
    pub delay: Duration,
}

pub struct Request {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Default)]
struct SinkState {
    behaviour: Behaviour,
    hits: AtomicU32,
    in_flight: AtomicU32,
    max_in_flight: AtomicU32,
    accepted: Mutex<Vec<Request>>,
    signature_errors: Mutex<Vec<SignatureError>>,
}

/// A local HTTP server standing in for webhook receivers and the SMS gateway.
pub struct HttpSink {
    pub base: String,
    state: Arc<SinkState>,
    server: tokio::task::JoinHandle<()>,
}

impl HttpSink {
    pub async fn start(behaviour: Behaviour) -> Self {
        let state = Arc::new(SinkState {
            behaviour,
            ..SinkState::default()
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind sink");
        let base = format!("http://{}", listener.local_addr().expect("sink address"));
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("sink serves");
        });
        Self {
            base,
            state,
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
    pub fn hits(&self) -> u32 {
        self.state.hits.load(Ordering::SeqCst)
    }
    pub fn max_in_flight(&self) -> u32 {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }
    pub fn accepted(&self) -> std::sync::MutexGuard<'_, Vec<Request>> {
        self.state.accepted.lock().unwrap()
    }
    pub fn signature_errors(&self) -> Vec<SignatureError> {
        self.state.signature_errors.lock().unwrap().clone()
    }
}

impl Drop for HttpSink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn handle(
    State(state): State<Arc<SinkState>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let hit = state.hits.fetch_add(1, Ordering::SeqCst) + 1;
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let b = &state.behaviour;
    if !b.delay.is_zero() {
        tokio::time::sleep(b.delay).await;
    }
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    if let Some(secret) = &b.secret {
        let get = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).unwrap_or("");
        if let Err(e) = verify_signature(
            secret,
            get(TIMESTAMP_HEADER),
            get(SIGNATURE_HEADER),
            &body,
            SystemTime::now(),
            DEFAULT_TOLERANCE,
        ) {
            state.signature_errors.lock().unwrap().push(e);
            return StatusCode::UNAUTHORIZED;
        }
    }
    if hit <= b.fail_first {
        return StatusCode::from_u16(b.fail_status).expect("a valid status");
    }
    state.accepted.lock().unwrap().push(Request {
        path: uri.path().to_owned(),
        headers,
        body,
    });
    StatusCode::OK
}

/// A dispatcher config for tests: fast retries (50 ms doubling, at most 3 attempts), a
/// fixed jitter seed.
pub fn test_config() -> DispatcherConfig {
    DispatcherConfig {
        // The sinks are on loopback, which production webhooks may not reach.
        webhook: WebhookConfig {
            allow_private_addresses: true,
            ..WebhookConfig::default()
        },
        retry: RetryPolicy::new(3, Duration::from_millis(50), Duration::from_millis(400))
            .expect("valid policy"),
        jitter_seed: Some(1),
        ..DispatcherConfig::new()
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it: (CA PEM, cert PEM, key PEM).
pub fn private_ca() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("server key");
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("server params")
        .signed_by(&key, &issuer)
        .expect("server certificate");
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

pub fn new_log() -> Arc<InMemoryDeliveryLog> {
    Arc::new(InMemoryDeliveryLog::new())
}
