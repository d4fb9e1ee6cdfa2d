//! Starts and stops real `cpn serve` processes and talks to them.

use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const CPN: &str = env!("CARGO_BIN_EXE_cpn");

pub struct Server {
    child: Child,
    /// The local agent's work root (tasks' directories), removed with the test.
    _work: tempfile::TempDir,
    pub base: String,
    /// Serving HTTPS with the data dir's generated CA (`--tls on`).
    pub https: bool,
    pub data_dir: PathBuf,
    pub token: String,
    http: reqwest::Client,
}

impl Server {
    /// Starts `cpn serve` on port 0, without its local agent, and waits until `/healthz`
    /// answers. With the demo, its sites have no emulated nodes (`--no-emulated-nodes`):
    /// they are planning targets only, unless a test starts agents there.
    pub async fn start(data_dir: &Path, demo: bool) -> Server {
        Server::start_with(data_dir, demo, &["--no-local-agent"]).await
    }

    /// Starts `cpn serve` with extra flags (`--listen` among them overrides port 0), without
    /// emulated nodes.
    pub async fn start_with(data_dir: &Path, demo: bool, extra: &[&str]) -> Server {
        Server::launch(data_dir, demo, extra, None, false).await
    }

    /// Starts `cpn serve` with the demo and its emulated nodes (the default of a plain
    /// `cpn serve`), with extra flags.
    pub async fn start_emulated(data_dir: &Path, extra: &[&str]) -> Server {
        Server::launch(data_dir, true, extra, None, true).await
    }

    /// Starts `cpn serve` under a hard limit of open files, as on a machine with a small
    /// `ulimit -n`.
    pub async fn start_with_fd_limit(data_dir: &Path, extra: &[&str], fd_limit: u32) -> Server {
        Server::launch(data_dir, false, extra, Some(fd_limit), false).await
    }

    async fn launch(
        data_dir: &Path,
        demo: bool,
        extra: &[&str],
        fd_limit: Option<u32>,
        emulated: bool,
    ) -> Server {
        let addr_file = data_dir.join("cpn.addr");
        let _ = std::fs::remove_file(&addr_file);
        let mut cmd = match fd_limit {
            None => Command::new(CPN),
            Some(n) => {
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(CPN);
                sh
            }
        };
        let listen = if extra.contains(&"--listen") {
            Vec::new()
        } else {
            vec!["--listen", "127.0.0.1:0"]
        };
        let work = open_dir();
        cmd.arg("serve")
            .args(listen)
            .args(extra)
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--work-root")
            .arg(work.path().join("work"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if !demo {
            cmd.arg("--no-demo");
        }
        if !emulated {
            cmd.arg("--no-emulated-nodes");
        }
        let child = cmd.spawn().expect("spawn cpn serve");
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = loop {
            if let Ok(s) = std::fs::read_to_string(&addr_file)
                && s.ends_with('\n')
            {
                break s.trim().to_string();
            }
            assert!(
                Instant::now() < deadline,
                "cpn serve did not start within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let token = std::fs::read_to_string(data_dir.join("admin.token"))
            .expect("admin.token written at first start")
            .trim()
            .to_string();
        let https = extra.windows(2).any(|w| w == ["--tls", "on"]);
        let mut http = reqwest::Client::builder();
        if https {
            let pem = std::fs::read(data_dir.join("tls/ca.pem")).expect("the generated CA");
            http = http.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
        }
        let server = Server {
            child,
            _work: work,
            base: format!("{}://{addr}", if https { "https" } else { "http" }),
            https,
            data_dir: data_dir.to_path_buf(),
            token,
            http: http.build().unwrap(),
        };
        let (status, _) = server.call(Method::GET, "/healthz", None, None).await;
        assert_eq!(status, StatusCode::OK);
        server
    }

    /// The server's process id (to read its memory use).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no shutdown code runs, as in a crash or power cut of the process.
    pub fn kill9(&mut self) {
        self.child.kill().expect("kill -9 cpn serve");
        self.child.wait().expect("reap cpn serve");
    }

    /// A request with an optional JSON body and token; returns status and parsed body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request reaches the server");
        let status = resp.status();
        let text = resp.text().await.expect("read body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    /// A request as the operator.
    pub async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call(method, path, Some(&self.token.clone()), body)
            .await
    }

    /// A raw request body with a given content type.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: &'static str,
    ) -> (StatusCode, Value) {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request reaches the server");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Runs the `cpn` CLI against this server with the operator token.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(CPN);
        cmd.args(args)
            .env("CPN_SERVER", &self.base)
            .env("CPN_TOKEN", &self.token)
            .current_dir(&self.data_dir);
        if self.https {
            cmd.env("CPN_CA_FILE", self.data_dir.join("tls/ca.pem"));
        }
        cmd.output().expect("run cpn")
    }

    /// Issues a join token for a site, good for any number of nodes for an hour.
    pub async fn join_token(&self, site: &str) -> String {
        let (s, b) = self
            .admin(
                Method::POST,
                &format!("/api/v1/sites/{site}/join-tokens"),
                Some(serde_json::json!({"ttl_seconds": 3600})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b["token"].as_str().expect("token").to_string()
    }

    /// Creates a user in a (possibly new) tenant and returns its login token.
    pub async fn user(&self, tenant: &str, username: &str, role: &str) -> String {
        let (s, _) = self.admin(Method::GET, "/api/v1/tenants", None).await;
        assert_eq!(s, StatusCode::OK);
        let (s, b) = self
            .admin(
                Method::POST,
                "/api/v1/tenants",
                Some(serde_json::json!({"name": tenant})),
            )
            .await;
        assert!(
            s == StatusCode::CREATED || s == StatusCode::CONFLICT,
            "{s} {b}"
        );
        let password = "s3cret-password";
        let (s, b) = self
            .admin(
                Method::POST,
                "/api/v1/users",
                Some(serde_json::json!({"username": username, "password": password, "tenant": tenant, "role": role})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        let (s, b) = self
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(serde_json::json!({"username": username, "password": password})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b["token"].as_str().expect("token").to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal valid site body.
pub fn site(name: &str) -> Value {
    serde_json::json!({
        "name": name,
        "visibility": "public",
        "spec": {"region": "Ningxia", "supplier": "test", "location": {"lat": 37.5, "lon": 105.2}}
    })
}

/// Everything visible of a kind, to compare state before and after failed requests.
pub async fn snapshot(server: &Server, kind: &str) -> Value {
    let (s, b) = server
        .admin(Method::GET, &format!("/api/v1/{kind}?limit=1000"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["items"].clone()
}

/// A real `cpn agent` process, killed when dropped; its tasks' directories go with it.
pub struct Agent {
    child: Child,
    _work: tempfile::TempDir,
}

impl Agent {
    /// `join` is a join token of the site (`Server::join_token`).
    pub fn start(server: &str, join: &str, site: &str, name: &str, state: &Path) -> Agent {
        let work = open_dir();
        let child = Command::new(CPN)
            .args(["agent", "--server", server, "--site", site, "--name", name])
            .arg("--state-dir")
            .arg(state)
            .env("CPN_JOIN_TOKEN", join)
            .arg("--work-root")
            .arg(work.path().join("work"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn cpn agent");
        Agent { child, _work: work }
    }

    /// Starts `cpn agent` with any arguments, its stderr to `log`.
    pub fn start_args(args: &[&str], log: &Path) -> Agent {
        let child = Command::new(CPN)
            .arg("agent")
            .args(args)
            .env("RUST_LOG", "warn")
            .env_remove("CPN_SERVER")
            .env_remove("CPN_TOKEN")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("agent log"))
            .spawn()
            .expect("spawn cpn agent");
        Agent {
            child,
            _work: open_dir(),
        }
    }

    /// Waits up to `limit` for the agent to exit by itself.
    pub async fn exited_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("agent status") {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// SIGKILL, as when its machine dies.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A port free now, for a server that must come back on the same address.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until at least `n` nodes are ready; returns the ready ones.
pub async fn wait_nodes(server: &Server, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, b) = server.admin(Method::GET, "/api/v1/nodes", None).await;
        let ready: Vec<Value> = b
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n["state"] == "ready")
            .collect();
        if ready.len() >= n {
            return ready;
        }
        assert!(Instant::now() < deadline, "{n} nodes did not register: {b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// For crash tests: a server without a local agent on a fixed port (so it can come back on
/// the same address), a site `edge`, and one `cpn agent` named `worker` that outlives the
/// server as a real site's agent would. `restart` brings the server back after `kill9`.
pub struct CrashSetup {
    pub server: Server,
    // Kept for its lifetime: the agent is killed when the setup is dropped.
    _agent: Agent,
    flags: Vec<String>,
}

impl CrashSetup {
    pub async fn start(dir: &Path) -> CrashSetup {
        let flags: Vec<String> = [
            "--no-local-agent",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--heartbeat-ms",
            "300",
            "--node-timeout-ms",
            "5000",
        ]
        .iter()
        .map(|f| f.to_string())
        .collect();
        let server = Server::start_with(dir, false, &as_strs(&flags)).await;
        let (s, b) = server
            .admin(Method::POST, "/api/v1/sites", Some(site("edge")))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        let join = server.join_token("edge").await;
        let agent = Agent::start(&server.base, &join, "edge", "worker", &dir.join("agent"));
        wait_nodes(&server, 1).await;
        CrashSetup {
            server,
            _agent: agent,
            flags,
        }
    }

    /// Starts the server again on the same data dir and address.
    pub async fn restart(&mut self, dir: &Path) {
        self.server = Server::start_with(dir, false, &as_strs(&self.flags)).await;
    }
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A new login token of a user made by `Server::user` (whose password this knows).
pub async fn login(server: &Server, username: &str) -> String {
    let (s, b) = server
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(serde_json::json!({"username": username, "password": "s3cret-password"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["token"].as_str().unwrap().to_string()
}

/// Audit lines matching `query` (e.g. `actor=alice&action=auth.login`), as the operator.
pub async fn audit(server: &Server, query: &str) -> Vec<Value> {
    let (s, b) = server
        .admin(Method::GET, &format!("/api/v1/audit?{query}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["items"].as_array().expect("items").clone()
}

/// A temporary directory every user may write: tasks run as their tenant's uid (the agent
/// is root), so what a task writes for a test to check must lie somewhere they can reach.
pub fn open_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

/// Policy weights: every score of the default profile at 0 but `factor`.
pub fn only(factor: &str) -> serde_json::Value {
    let mut w = serde_json::Map::new();
    for f in [
        "model_preference",
        "performance",
        "energy",
        "carbon",
        "latency",
        "location_affinity",
        "price",
        "free_capacity",
        "bin_pack",
        "spread",
    ] {
        w.insert(
            f.into(),
            serde_json::json!(if f == factor { 1.0 } else { 0.0 }),
        );
    }
    serde_json::Value::Object(w)
}
