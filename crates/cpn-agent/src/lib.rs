//! The cpn node agent: registers its host as a node of a site, reports inventory, metrics
//! and heartbeats, and runs the attempts the server assigns to it.
//!
//! Attempts run as detached process groups whose state lives in files under the state
//! directory (see [`runner`]), so they survive a restart of the agent and are re-adopted.
//! [`spawn`] runs the agent on the current tokio runtime; it is used by `cpn agent` and
//! embedded in `cpn serve`.

mod agent;
mod client;
mod credential;
mod emulate;
mod error;
mod inventory;
pub mod isolation;
pub mod lease_access;
mod metrics;
mod procfs;
pub mod runner;

pub use credential::{
    CA_FILE, CREDENTIAL_FILE, SavedCredential, ca_fingerprint, fetch_pinned_ca, saved_credential,
};
pub use emulate::EmulatedInventory;
pub use error::AgentError;
pub use inventory::{host_name, inventory};
pub use isolation::IsolationConfig;
pub use lease_access::{LeaseAccountError, LeaseAccounts, LeaseAccountsConfig};
pub use metrics::MetricsSampler;
pub use runner::{Runner, Stream};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How an agent is set up.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Base URL of the server, like `https://cpn.example:8080`.
    pub server: String,
    /// A join token (`cpn site join-token create`), exchanged at the first registration for
    /// the node's own credential, which is kept in `{state_dir}/node-credential.json` and
    /// used from then on. Not needed once the state dir holds a credential.
    pub join_token: Option<String>,
    /// PEM of the CA to trust for `https://`, and the only one: the CA pinned by the join
    /// token. `None`: the system's roots.
    pub ca_pem: Option<String>,
    /// Allow plain `http://` to a server that is not on a loopback address (credentials
    /// would cross the network in clear).
    pub allow_insecure_http: bool,
    /// Site the node belongs to.
    pub site: String,
    /// Node name within the site; the host name when `None`.
    pub name: Option<String>,
    /// Where attempts keep their files (`{state_dir}/attempts/{attempt_id}/`).
    pub state_dir: PathBuf,
    /// Labels for node selectors.
    pub labels: BTreeMap<String, String>,
    /// How often running attempts are checked and their output shipped.
    pub log_poll: Duration,
    /// How tasks are kept apart from the platform and each other.
    pub isolation: IsolationConfig,
    /// Report this inventory instead of the host's, marked `emulated` (see
    /// [`EmulatedInventory`]); tasks still run here, as real processes.
    pub emulate: Option<EmulatedInventory>,
    /// Where class A lease accounts are reached and kept (see [`lease_access`]).
    pub lease: LeaseSettings,
}

/// The node's settings for class A lease accounts: what users are told to connect to, and
/// where the accounts' homes go. The rest of [`LeaseAccountsConfig`] is the documented
/// defaults, with the GPU count of the inventory the agent registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSettings {
    /// Host name or address users connect to; `None`: the node's name (else the host name).
    pub ssh_host: Option<String>,
    /// The port of the sshd users log in through.
    pub ssh_port: u16,
    /// The public half of that sshd's host key (users are shown its fingerprint).
    pub host_key: PathBuf,
    /// Parent of the accounts' homes.
    pub home_root: PathBuf,
}

impl Default for LeaseSettings {
    /// The system's sshd: port 22, its ed25519 host key; homes in
    /// [`lease_access::DEFAULT_HOME_ROOT`].
    fn default() -> Self {
        LeaseSettings {
            ssh_host: None,
            ssh_port: 22,
            host_key: PathBuf::from(lease_access::DEFAULT_HOST_KEY),
            home_root: PathBuf::from(lease_access::DEFAULT_HOME_ROOT),
        }
    }
}

impl AgentConfig {
    /// A configuration with no join token, the system's CAs, no name (host name), no labels
    /// and a 100 ms log poll.
    pub fn new(
        server: impl Into<String>,
        site: impl Into<String>,
        state_dir: impl Into<PathBuf>,
    ) -> Self {
        AgentConfig {
            server: server.into(),
            join_token: None,
            ca_pem: None,
            allow_insecure_http: false,
            site: site.into(),
            name: None,
            state_dir: state_dir.into(),
            labels: BTreeMap::new(),
            log_poll: DEFAULT_LOG_POLL,
            isolation: IsolationConfig::default(),
            emulate: None,
            lease: LeaseSettings::default(),
        }
    }

    /// Refuses a configuration that would send credentials in clear over a network.
    pub fn check(&self) -> Result<(), AgentError> {
        credential::check_transport(&self.server, self.allow_insecure_http)
    }
}

/// The default of [`AgentConfig::log_poll`].
pub const DEFAULT_LOG_POLL: Duration = Duration::from_millis(100);

/// A running agent. Dropping it leaves the agent running on the runtime; [`stop`](Self::stop)
/// ends it. Attempts keep running either way and are re-adopted by the next agent.
#[derive(Debug)]
pub struct AgentHandle {
    /// `None` once [`stopped`](Self::stopped) saw it end.
    task: Option<tokio::task::JoinHandle<()>>,
    shared: Arc<agent::Shared>,
}

impl std::fmt::Debug for agent::Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("server", &self.config.server)
            .field("node_id", &self.node_id())
            .finish_non_exhaustive()
    }
}

impl AgentHandle {
    /// Stops the agent's loops and waits for them (the attempts keep running).
    pub async fn stop(self) {
        let _ = self.shared.stop.send(true);
        if let Some(task) = self.task {
            let _ = task.await;
        }
    }

    /// Waits until the agent stops by itself, which it does only when the server refuses
    /// its credential (revoked, or a join token that is used up); returns why.
    pub async fn stopped(&mut self) -> Option<String> {
        if let Some(task) = self.task.as_mut() {
            let _ = task.await;
            self.task = None;
        }
        agent::lock(&self.shared.fatal).clone()
    }

    /// The node id, once registered.
    pub fn node_id(&self) -> Option<String> {
        self.shared.node_id()
    }
}

/// Starts the agent on the current tokio runtime (panics outside one, like `tokio::spawn`).
/// Fails on a configuration it must not run with: plain HTTP to a remote server without
/// `allow_insecure_http`, or a CA that is not a PEM certificate.
pub fn spawn(config: AgentConfig) -> Result<AgentHandle, AgentError> {
    let mut config = config;
    config.check()?;
    if config.log_poll.is_zero() {
        config.log_poll = DEFAULT_LOG_POLL;
    }
    // Attempts run in their own working directories and are told where their exit file
    // is: a relative state dir would point each of them somewhere else.
    if let Ok(dir) = std::path::absolute(&config.state_dir) {
        config.state_dir = dir;
    }
    let (stop, stop_rx) = watch::channel(false);
    let shared = Arc::new(agent::Shared {
        api: client::Api::new(&config.server, config.ca_pem.as_deref())?,
        config,
        node: Mutex::new(None),
        runner: Mutex::new(None),
        lease_accounts: Mutex::new(None),
        gpus: Mutex::new(None),
        fatal: Mutex::new(None),
        stop,
        watch_wake: tokio::sync::Notify::new(),
    });
    let task = tokio::spawn(agent::run(shared.clone(), stop_rx));
    Ok(AgentHandle {
        task: Some(task),
        shared,
    })
}
