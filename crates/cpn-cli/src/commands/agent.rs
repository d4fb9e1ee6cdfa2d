//! `cpn agent`: turns this machine into a node of a site. Registers with the server, runs
//! the tasks bound to the node, reports metrics and output, and stops on Ctrl-C or SIGTERM
//! (the tasks it started keep running and are adopted again by the next agent).

use super::task::parse_key_value;
use crate::client::Client;
use anyhow::{Context, Result, bail};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  cpn agent --server http://cpn.example:8080 --token $TOKEN --site ningxia-zw-1
  CPN_TOKEN=... cpn agent --site lab --name gpu-3 --label gpu.model=A100 --state-dir /var/lib/cpn

Isolation (Linux): as root, each tenant's tasks run as a uid of --task-uid-range, in a
working directory under --work-root owned by it (mode 0700, also HOME), with limits on CPU,
memory and processes by cgroups (v2, else v1, else none: the agent says which at start
and reports it on the node). A task sees only PATH (default /usr/local/bin:/usr/bin:/bin),
HOME, its own env and CPN_TASK_ID, CPN_ATTEMPT_ID, CPN_ATTEMPT, CPN_TENANT and
CUDA_VISIBLE_DEVICES. Not root, the agent runs only its own tenant's tasks, unless
--single-user.")]
pub struct AgentArgs {
    /// Site the node belongs to.
    #[arg(long, value_name = "SITE")]
    pub site: String,
    /// Node name within the site [default: the host name].
    #[arg(long, value_name = "NODE")]
    pub name: Option<String>,
    /// Where attempts keep their files and output.
    #[arg(long, default_value = "./cpn-agent-state", value_name = "DIR")]
    pub state_dir: PathBuf,
    /// A label of the node, for node selectors (repeatable).
    #[arg(long = "label", value_name = "K=V", value_parser = parse_key_value)]
    pub labels: Vec<(String, String)>,
    #[command(flatten)]
    pub isolation: IsolationArgs,
}

/// How the agent keeps tasks apart from the platform and from each other (shared by
/// `cpn agent` and the local agent of `cpn serve`).
#[derive(Debug, Clone, Args)]
pub struct IsolationArgs {
    /// uids (and gids) for tenants' task identities when the agent runs as root, one per
    /// tenant, kept stable in the state dir; no account or login shell is created for them.
    /// Two agents on one host need ranges that do not overlap.
    #[arg(long, value_name = "FIRST-LAST", default_value = "61000-61999",
          value_parser = cpn_agent::isolation::parse_uid_range)]
    pub task_uid_range: std::ops::RangeInclusive<u32>,
    /// Where attempts' working directories (and HOME) go, outside every state directory
    /// [default: /var/lib/cpn-work as root, $TMPDIR/cpn-work-<uid> otherwise].
    #[arg(long, value_name = "DIR")]
    pub work_root: Option<PathBuf>,
    /// Without root the agent cannot switch identities and runs only its own tenant's
    /// tasks; with this flag it runs every tenant's tasks as its own user (one trusted
    /// user's machine).
    #[arg(long)]
    pub single_user: bool,
    /// Processes (and threads) one task may run at once.
    #[arg(long, value_name = "N", default_value_t = cpn_agent::isolation::DEFAULT_PIDS_MAX)]
    pub task_pids_max: u32,
}

impl IsolationArgs {
    pub fn config(&self) -> cpn_agent::IsolationConfig {
        cpn_agent::IsolationConfig {
            task_uids: self.task_uid_range.clone(),
            work_root: self.work_root.clone(),
            single_user: self.single_user,
            pids_max: self.task_pids_max,
        }
    }
}

pub async fn run(client: &Client, args: AgentArgs) -> Result<()> {
    let Some(token) = client.token() else {
        bail!(
            "an agent needs a token: pass --token or set CPN_TOKEN (the server writes an \
             admin token to DATA_DIR/admin.token)"
        );
    };
    let server = client.server();
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("creating the state dir {}", args.state_dir.display()))?;
    let mut config =
        cpn_agent::AgentConfig::new(server.clone(), token, args.site.clone(), &args.state_dir);
    config.name = args.name.clone();
    config.labels = args.labels.into_iter().collect();
    config.isolation = args.isolation.config();
    let name = args.name.unwrap_or_else(cpn_agent::host_name);
    eprintln!(
        "cpn agent: node {name} of site {} registering with {server} (state in {})",
        args.site,
        args.state_dir.display()
    );
    let handle = cpn_agent::spawn(config);
    shutdown_signal().await;
    eprintln!("cpn agent: stopping (running tasks keep running)");
    handle.stop().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
