//! The cpn node agent: registers its host as a node of a site, reports inventory, metrics
//! and heartbeats, and runs the attempts the server assigns to it.
//!
//! Attempts run as detached process groups whose state lives in files under the state
//! directory (see [`runner`]), so they survive a restart of the agent and are re-adopted.
//! [`spawn`] runs the agent on the current tokio runtime; it is used by `cpn agent` and
//! embedded in `cpn serve`.

mod agent;
mod client;
mod error;
mod inventory;
pub mod isolation;
mod metrics;
mod procfs;
pub mod runner;

pub use error::AgentError;
pub use inventory::{host_name, inventory};
pub use isolation::IsolationConfig;
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
    /// Base URL of the server, like `http://127.0.0.1:8080`.
    pub server: String,
    /// Bearer token sent with every request.
    pub token: String,
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
}

impl AgentConfig {
    /// A configuration with no name (host name), no labels and a 100 ms log poll.
    pub fn new(
        server: impl Into<String>,
        token: impl Into<String>,
        site: impl Into<String>,
        state_dir: impl Into<PathBuf>,
    ) -> Self {
        AgentConfig {
            server: server.into(),
            token: token.into(),
            site: site.into(),
            name: None,
            state_dir: state_dir.into(),
            labels: BTreeMap::new(),
            log_poll: DEFAULT_LOG_POLL,
            isolation: IsolationConfig::default(),
        }
    }
}

/// The default of [`AgentConfig::log_poll`].
pub const DEFAULT_LOG_POLL: Duration = Duration::from_millis(100);

/// A running agent. Dropping it leaves the agent running on the runtime; [`stop`](Self::stop)
/// ends it. Attempts keep running either way and are re-adopted by the next agent.
#[derive(Debug)]
pub struct AgentHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
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
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// The node id, once registered.
    pub fn node_id(&self) -> Option<String> {
        self.shared.node_id()
    }
}

/// Starts the agent on the current tokio runtime (panics outside one, like `tokio::spawn`).
pub fn spawn(config: AgentConfig) -> AgentHandle {
    let mut config = config;
    if config.log_poll.is_zero() {
        config.log_poll = DEFAULT_LOG_POLL;
    }
    let shared = Arc::new(agent::Shared {
        api: client::Api::new(&config.server, &config.token),
        config,
        node: Mutex::new(None),
        runner: Mutex::new(None),
    });
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(agent::run(shared.clone(), stop_rx));
    AgentHandle { stop, task, shared }
}
