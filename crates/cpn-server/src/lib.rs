//! The cpn control-plane server's edge: the HTTP API (axum handlers, extractors, the
//! OpenAPI document), TLS and the accept loop, over the control services (`cpn-control`)
//! and the runtime (`cpn-runtime`).
//!
//! `start` is the server half of `cpn serve`: open the store, bootstrap the operator on a new
//! data dir, load the demo federation, then serve until Ctrl-C or SIGTERM. The CLI composes
//! it with the in-process agents; this crate does not depend on `cpn-agent`.

#![warn(unreachable_pub)]

mod api;
mod api_accounts;
mod api_design;
mod api_flows;
mod api_join;
mod api_market;
mod api_market_accounts;
mod api_notify;
mod api_ops;
mod api_runtime;
mod audit_layer;
mod extract;
mod listener;
mod openapi;
mod query;
mod response;
mod state;
mod tls;

// The edge's modules are its own; the CLI needs only these two settings of the listener.
pub use listener::DEFAULT_MAX_CONNECTIONS;
pub use tls::TlsSetting;

// The services under the paths the edge names them by (`crate::registry`,
// `crate::runtime::binder`, `crate::caller`, ...); public where the CLI uses them.
use cpn_control::{
    audit, design, federation, flows, hooks, identity, registry, rules, schedule, simulation,
    topology,
};
pub use cpn_control::{auth, market, market_accounts, notify, scenario, totp};
pub use cpn_runtime as runtime;
use cpn_runtime::{caller, error, join};
pub use cpn_runtime::{inventory, limits};

use anyhow::Context;
use caller::{Actor, SystemActor};
use cpn_store::{SqliteStore, Store};
use state::AppState;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Everything `cpn serve` needs, parsed once from flags by the CLI.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Directory of the embedded store, tokens and logs.
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Load the bundled demo federation on a new data dir.
    pub load_demo: bool,
    /// Folder of the shipped openb trace CSVs that simulations may name.
    pub sim_data_dir: Option<PathBuf>,
    /// Heartbeat interval and node timeout of the agent protocol.
    pub runtime: runtime::RuntimeConfig,
    /// Session idle expiry, MFA for operators, hashing threads.
    pub accounts: auth::AccountsConfig,
    /// Plain HTTP, or HTTPS with generated or given certificates.
    pub tls: tls::TlsSetting,
    /// Connections served at once (lowered to what the open-files limit allows).
    pub max_connections: usize,
    /// The SMTP relay and SMS gateway notifications and registration codes go through.
    pub notify: notify::NotifyConfig,
}

impl ServeConfig {
    /// A throwaway server for benchmarks: loopback on a free port, plain HTTP, no demo,
    /// every limit at its default. Callers change what they measure.
    pub fn ephemeral(data_dir: impl Into<PathBuf>) -> ServeConfig {
        ServeConfig {
            data_dir: data_dir.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            load_demo: false,
            sim_data_dir: None,
            runtime: Default::default(),
            accounts: Default::default(),
            tls: tls::TlsSetting::Off,
            max_connections: listener::DEFAULT_MAX_CONNECTIONS,
            notify: Default::default(),
        }
    }

    /// The same configuration with every path made absolute against the current directory.
    ///
    /// Attempts run in their own working directories and files are handed to other
    /// processes, so a relative path would mean something else to each of them (a relative
    /// data dir once made every task fail: its wrapper could not find its exit file).
    pub fn with_absolute_paths(mut self) -> anyhow::Result<ServeConfig> {
        self.data_dir = absolute(&self.data_dir)?;
        self.sim_data_dir = self.sim_data_dir.as_deref().map(absolute).transpose()?;
        Ok(self)
    }
}

/// `path` made absolute against the current directory (not resolving links, so a data dir
/// that does not exist yet is fine).
fn absolute(path: &std::path::Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| {
        format!(
            "cannot make {} an absolute path (is the current directory gone?)",
            path.display()
        )
    })
}

/// The file where a running server writes the address it listens on (useful with port 0).
pub const ADDR_FILE: &str = "cpn.addr";

/// A server that is listening; `cpn serve` waits on it, `cpn bench` stops it when done.
///
/// The server runs no agent of its own: `cpn serve` composes it with the in-process agents
/// (the local agent, the demo's emulated nodes), which join through the ordinary flow with
/// the single-use join tokens [`RunningServer::in_process_agent_token`] makes, and hand
/// their stops to [`RunningServer::stop_with`].
pub struct RunningServer {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    /// The loopback URL in-process agents reach the server at.
    pub url: String,
    state: AppState,
    companions: Companions,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// What the serve task stops after the listener and the background loops: the in-process
/// agents, so they end after the server they talk to.
type Companions = Arc<std::sync::Mutex<Vec<futures_util::future::BoxFuture<'static, ()>>>>;

impl RunningServer {
    /// Serves until Ctrl-C or SIGTERM.
    pub async fn wait(self) -> anyhow::Result<()> {
        let _keep_open = self.stop;
        self.task.await.context("server task")?
    }

    /// Stops accepting, finishes requests in flight, and returns.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await.context("server task")?
    }

    /// The operator token written at first start.
    pub fn admin_token(&self) -> anyhow::Result<String> {
        let path = self.data_dir.join(auth::ADMIN_TOKEN_FILE);
        Ok(std::fs::read_to_string(&path)
            .with_context(|| format!("read {}", path.display()))?
            .trim()
            .to_string())
    }

    /// The generated CA in PEM, for in-process agents to pin (`None` over plain HTTP).
    pub fn ca_pem(&self) -> Option<String> {
        self.state.transport.ca_pem.clone()
    }

    /// Runs `stop` when the server has stopped (after the listener and the background
    /// loops, before `cpn stopped`): how an in-process agent ends with the server.
    pub fn stop_with(&self, stop: impl std::future::Future<Output = ()> + Send + 'static) {
        self.companions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Box::pin(stop));
    }

    /// Creates the named site when missing, for the local agent to join.
    pub async fn ensure_site(&self, site: &str) -> anyhow::Result<()> {
        ensure_site(&self.state, site).await
    }

    /// A single-use join token for an agent run in-process (see
    /// [`join::in_process_agent_token`]); `None`: its saved credential is still good.
    pub async fn in_process_agent_token(
        &self,
        site: &str,
        saved_credential: Option<&str>,
        description: &str,
    ) -> anyhow::Result<Option<String>> {
        join::in_process_agent_token(&self.state, site, saved_credential, description)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// Whether the data dir holds the bundled demo (loaded at its first start).
    pub async fn holds_demo(&self) -> anyhow::Result<bool> {
        Ok(self
            .state
            .store
            .get_setting(scenario::DEMO_SETTING)
            .await?
            .is_some())
    }

    /// The registry as the scheduler sees it now.
    pub async fn registry_model(&self) -> anyhow::Result<inventory::RegistryModel> {
        inventory::RegistryModel::load(&self.state)
            .await
            .map_err(|e| anyhow::anyhow!("read the registry: {e}"))
    }
}

/// Opens the store, bootstraps a new data dir, binds, and starts serving in the background.
pub async fn start(config: ServeConfig) -> anyhow::Result<RunningServer> {
    let config = config.with_absolute_paths()?;
    let fd_limit = listener::raise_fd_limit();
    let limits = listener::Limits {
        max_connections: listener::effective_max_connections(config.max_connections, fd_limit),
        header_timeout: listener::DEFAULT_HEADER_TIMEOUT,
    };
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("create {}", config.data_dir.display()))?;
    let (acceptor, transport) =
        tls::setup(&config.tls, &config.data_dir, config.listen).context("set up TLS")?;
    let store = SqliteStore::open(&config.data_dir)
        .with_context(|| format!("open store in {}", config.data_dir.display()))?;
    tracing::info!(path = %store.path().display(), "store opened");
    let store: Arc<dyn Store> = Arc::new(store);
    let notifier = notify::Notifier::new(&config.notify, store.clone())?;
    let market_accounts = market_accounts::MarketAccounts::open(&config.data_dir, notifier)
        .context("open the marketplace accounts")?;
    let market = Arc::new(market::MarketService::default());
    let market_accounts = Arc::new(market_accounts);
    let state = AppState(cpn_control::state::Control {
        rt: runtime::RuntimeState {
            store: store.clone(),
            runtime: Arc::new(runtime::Runtime::new(config.runtime, &config.data_dir)),
            transport: Arc::new(transport),
            hooks: Arc::new(hooks::Hooks {
                market: market.clone(),
                market_accounts: market_accounts.clone(),
            }),
        },
        data_dir: config.data_dir.clone(),
        simulations: Arc::new(simulation::Simulations::default()),
        sim_data_dir: config.sim_data_dir.clone(),
        accounts: Arc::new(auth::Accounts::new(
            config.accounts.clone(),
            cpn_control::sealed_secrets::SecretSealer::open_in(&config.data_dir)?,
        )),
        market,
        market_accounts,
    });

    state
        .accounts
        .throttle
        .persist_to(store.clone())
        .await
        .context("restore the login lockouts")?;
    let sealed = cpn_control::sealed_secrets::seal_clear_totp_secrets(
        store.as_ref(),
        &state.accounts.sealer,
    )
    .await
    .context("seal the TOTP secrets")?;
    if sealed > 0 {
        tracing::info!(
            accounts = sealed,
            "TOTP secrets stored in clear are now sealed"
        );
    }
    let fresh = auth::bootstrap(store.as_ref(), &config.data_dir)
        .await
        .context("create the operator account")?;
    let token_path = config.data_dir.join(auth::ADMIN_TOKEN_FILE);
    if fresh {
        eprintln!(
            "created operator 'admin': token in {} (the CLI uses it), password in {}",
            token_path.display(),
            config.data_dir.join(auth::ADMIN_PASSWORD_FILE).display()
        );
        if config.load_demo {
            load_demo(&state).await?;
        }
        store
            .put_setting("initialized", &chrono::Utc::now().to_rfc3339())
            .await?;
    } else {
        if auth::ensure_admin_token(store.as_ref(), &config.data_dir)
            .await
            .context("renew the operator token")?
        {
            eprintln!(
                "the operator token had expired or was revoked: wrote a new one to {}",
                token_path.display()
            );
        }
        eprintln!("operator token: {}", token_path.display());
    }
    design::load_base_templates(&state)
        .await
        .context("load the base templates")?;
    let interrupted = simulation::fail_interrupted(store.as_ref())
        .await
        .context("mark the simulations the last stop interrupted")?;
    if interrupted > 0 {
        tracing::warn!(
            count = interrupted,
            "simulations queued or running when the server stopped are now failed"
        );
    }

    state
        .runtime
        .load(&state)
        .await
        .map_err(|e| anyhow::anyhow!("load running work: {e}"))?;
    market::load(&state)
        .await
        .map_err(|e| anyhow::anyhow!("load the marketplace: {e}"))?;
    let loops = hooks::spawn_loops(&state);
    notify::spawn_alarm_delivery(&state);
    flows::resume_all(&state);

    let listener = listener::bind(config.listen).with_context(|| {
        format!(
            "listen on {}; is another server using it? pass --listen",
            config.listen
        )
    })?;
    let addr = listener.local_addr()?;
    std::fs::write(config.data_dir.join(ADDR_FILE), format!("{addr}\n"))
        .context("write address file")?;
    let scheme = if state.transport.https {
        "https"
    } else {
        "http"
    };
    eprintln!(
        "cpn listening on {scheme}://{addr} (at most {} connections)",
        limits.max_connections
    );
    if let Some(fp) = &state.transport.ca_sha256 {
        eprintln!(
            "TLS: CA {} with SHA-256 fingerprint {} (join tokens carry it; clients may pass --ca-file)",
            config
                .data_dir
                .join(tls::TLS_DIR)
                .join(tls::CA_CERT_FILE)
                .display(),
            tls::fingerprint_for_humans(fp)
        );
    }
    eprintln!(
        "web console: {scheme}://{addr}/ (user admin, password in {})",
        config.data_dir.join(auth::ADMIN_PASSWORD_FILE).display()
    );
    let loopback = match addr.ip() {
        std::net::IpAddr::V6(_) => "[::1]".to_string(),
        std::net::IpAddr::V4(ip) if !ip.is_unspecified() => ip.to_string(),
        std::net::IpAddr::V4(_) => "127.0.0.1".to_string(),
    };
    let url = format!("{scheme}://{loopback}:{}", addr.port());
    let companions = Companions::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runtime = state.runtime.clone();
    let edge_state = state.clone();
    let stop_after = companions.clone();
    let task = tokio::spawn(async move {
        listener::serve(
            listener,
            acceptor,
            api::router(edge_state),
            limits,
            async move {
                tokio::select! {
                    _ = shutdown_signal() => {},
                    _ = stopped => {},
                }
                // End event streams and followed logs, so their clients do not hold the
                // shutdown open.
                let _ = runtime.shutdown.send(true);
            },
        )
        .await;
        // The background loops saw the shutdown signal too; a binding cycle in flight ends
        // at its next await, its store transaction whole or not begun.
        futures_util::future::join_all(loops).await;
        let companions = std::mem::take(
            &mut *stop_after
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        futures_util::future::join_all(companions).await;
        eprintln!("cpn stopped");
        Ok(())
    });
    Ok(RunningServer {
        addr,
        data_dir: config.data_dir,
        url,
        state,
        companions,
        stop,
        task,
    })
}

/// Creates the local agent's site when missing: public, in the operator's tenant, by
/// `system:startup`. Its
/// location and prices are placeholders to edit with `cpn site update`.
async fn ensure_site(state: &AppState, site: &str) -> anyhow::Result<()> {
    if state
        .store
        .find_object_by_name(cpn_model::Kind::Site, site)
        .await?
        .is_some()
    {
        return Ok(());
    }
    let body: cpn_api_types::registry::SiteCreate = serde_json::from_value(serde_json::json!({
        "name": site,
        "visibility": "public",
        "spec": {
            "region": "local",
            "location": {"lat": 39.9042, "lon": 116.4074},
            "supplier": "local",
            "description": "The machine running cpn serve, with its embedded agent."
        }
    }))
    .context("local site document")?;
    registry::create::<registry::SiteKind>(state, Actor::System(SystemActor::Startup), body)
        .await
        .map_err(|e| anyhow::anyhow!("create site {site:?} for the local agent: {e}"))?;
    eprintln!("created site {site:?} for the local agent");
    Ok(())
}

async fn load_demo(state: &AppState) -> anyhow::Result<()> {
    let scenario = scenario::parse_yaml(scenario::DEMO_SCENARIO)
        .map_err(|e| anyhow::anyhow!("bundled scenario: {e}"))?;
    // The demo is the server's own doing, recorded as `system:startup`, not as `admin`.
    let report = scenario::load(state, Actor::System(SystemActor::Startup), scenario)
        .await
        .map_err(|e| anyhow::anyhow!("load demo federation: {e}"))?;
    state
        .store
        .put_setting(scenario::DEMO_SETTING, "east-data-west-compute")
        .await?;
    eprintln!(
        "loaded demo federation east-data-west-compute: {} objects",
        report.created
    );
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
