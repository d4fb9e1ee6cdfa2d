//! `cpn agent`: turns this machine into a node of a site. Registers with the server, runs
//! the tasks bound to the node, reports metrics and output, and stops on Ctrl-C or SIGTERM
//! (the tasks it started keep running and are adopted again by the next agent).

use super::task::parse_key_value;
use crate::cli::DEFAULT_SERVER;
use anyhow::{Context, Result, bail};
use clap::Args;
use cpn_api_types::join::JoinTokenPayload;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  cpn agent --join cpnjoin_eyJ2Ijox... --name gpu-3 --state-dir /var/lib/cpn-agent
  cpn agent --state-dir /var/lib/cpn-agent      # later starts: the saved credential
  cpn agent --join $TOKEN --server https://10.0.0.5:8080 --label gpu.model=A100

An operator makes the join token with `cpn site join-token create SITE`. The agent exchanges
it for the node's own credential (kept in the state dir, mode 0600) and trusts only the CA
whose fingerprint the token carries.

Isolation (Linux): as root, each tenant's tasks run as a uid of --task-uid-range, in a
working directory under --work-root owned by it (mode 0700, also HOME), with limits on CPU,
memory and processes by cgroups (v2, else v1, else none: the agent says which at start
and reports it on the node). A task sees only PATH (default /usr/local/bin:/usr/bin:/bin),
HOME, its own env and CPN_TASK_ID, CPN_ATTEMPT_ID, CPN_ATTEMPT, CPN_TENANT and
CUDA_VISIBLE_DEVICES. Not root, the agent runs only its own tenant's tasks, unless
--single-user.

Class A leases (marketplace): as root, the agent creates one account per lease (cpnl-...,
home under --lease-home-root) that logs in with the user's key through the sshd at
--lease-ssh-host:--lease-ssh-port, sees only the leased GPUs in CUDA_VISIBLE_DEVICES, and is
locked when the lease ends. Users are shown the fingerprint of --lease-host-key.

  cpn agent --emulate-gpus 2 --lease-ssh-host 127.0.0.1 --lease-ssh-port 2222 \\
            --lease-host-key /etc/cpn/sshd/host_ed25519_key.pub    # a test node")]
pub struct AgentArgs {
    /// A join token from `cpn site join-token create`; needed only at the first start
    /// (the state dir keeps the node's credential).
    #[arg(
        long,
        env = "CPN_JOIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub join: Option<String>,
    /// Site the node belongs to [default: the join token's or the saved credential's].
    #[arg(long, value_name = "SITE")]
    pub site: Option<String>,
    /// Node name within the site [default: the host name].
    #[arg(long, value_name = "NODE")]
    pub name: Option<String>,
    /// Where attempts keep their files and output, and the node its credential.
    #[arg(long, default_value = "./cpn-agent-state", value_name = "DIR")]
    pub state_dir: PathBuf,
    /// A label of the node, for node selectors (repeatable).
    #[arg(long = "label", value_name = "K=V", value_parser = parse_key_value)]
    pub labels: Vec<(String, String)>,
    /// Talk plain HTTP to a server that is not on this machine (the credential then
    /// crosses the network in clear).
    #[arg(long)]
    pub insecure_http: bool,

    #[command(flatten)]
    pub isolation: IsolationArgs,

    #[command(flatten)]
    pub lease: LeaseArgs,

    /// Report N emulated GPUs (numbered 0..N, no device behind them) with the host's CPUs,
    /// memory and disk, and mark the node `emulated`: a node for testing the marketplace
    /// or scheduling where there are no GPUs. Tasks still run here, as real processes.
    #[arg(long, env = "CPN_EMULATE_GPUS", value_name = "N")]
    pub emulate_gpus: Option<u32>,
    /// The model the emulated GPUs report.
    #[arg(
        long,
        env = "CPN_EMULATE_GPU_MODEL",
        value_name = "MODEL",
        default_value = "NVIDIA A100-SXM4-80GB",
        requires = "emulate_gpus"
    )]
    pub emulate_gpu_model: String,
    /// Memory of each emulated GPU, in MiB.
    #[arg(
        long,
        env = "CPN_EMULATE_GPU_MEMORY_MIB",
        value_name = "MIB",
        default_value_t = 81920,
        requires = "emulate_gpus"
    )]
    pub emulate_gpu_memory_mib: u64,
}

/// Where class A lease accounts are reached and kept (issue #14).
#[derive(Debug, Clone, Args)]
pub struct LeaseArgs {
    /// Host name or address lease users connect to [default: the node name].
    #[arg(long, env = "CPN_LEASE_SSH_HOST", value_name = "HOST")]
    pub lease_ssh_host: Option<String>,
    /// Port of the sshd lease users log in through.
    #[arg(
        long,
        env = "CPN_LEASE_SSH_PORT",
        value_name = "PORT",
        default_value_t = 22
    )]
    pub lease_ssh_port: u16,
    /// The public half of that sshd's host key; users are shown its fingerprint.
    #[arg(long, env = "CPN_LEASE_HOST_KEY", value_name = "FILE",
          default_value = cpn_agent::lease_access::DEFAULT_HOST_KEY)]
    pub lease_host_key: PathBuf,
    /// Parent of the lease accounts' homes: root's, reachable by others (o+x), outside the
    /// state dir.
    #[arg(long, env = "CPN_LEASE_HOME_ROOT", value_name = "DIR",
          default_value = cpn_agent::lease_access::DEFAULT_HOME_ROOT)]
    pub lease_home_root: PathBuf,
}

impl LeaseArgs {
    pub fn settings(&self) -> cpn_agent::LeaseSettings {
        cpn_agent::LeaseSettings {
            ssh_host: self.lease_ssh_host.clone(),
            ssh_port: self.lease_ssh_port,
            host_key: self.lease_host_key.clone(),
            home_root: self.lease_home_root.clone(),
        }
    }
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
            identities_file: None,
        }
    }
}

pub async fn run(
    args: AgentArgs,
    server: Option<String>,
    token: Option<String>,
    ca_file: Option<PathBuf>,
) -> Result<()> {
    if token.is_some_and(|t| !t.trim().is_empty()) && args.join.is_none() {
        eprintln!(
            "cpn agent: --token / CPN_TOKEN is ignored: agents authenticate as their node \
             (cpn agent --join TOKEN, with a token from `cpn site join-token create SITE`)"
        );
    }
    // Attempts run in their own working directories and are told where their exit file
    // is, so the state dir must not depend on where the agent was started.
    let mut args = args;
    args.state_dir = std::path::absolute(&args.state_dir).with_context(|| {
        format!(
            "cannot make the state dir {} absolute",
            args.state_dir.display()
        )
    })?;
    let join = args
        .join
        .as_deref()
        .map(JoinTokenPayload::decode)
        .transpose()
        .context("--join")?;
    let saved = cpn_agent::saved_credential(&args.state_dir);
    let site = match (&args.site, &join, &saved) {
        (Some(s), Some(j), _) if *s != j.site => {
            bail!("--site {s} but the join token is for site {}", j.site)
        }
        (Some(s), _, _) => s.clone(),
        (None, Some(j), _) => j.site.clone(),
        (None, None, Some(c)) => c.site.clone(),
        (None, None, None) => bail!(
            "this agent has not joined yet: pass --join TOKEN (an operator makes one with \
             `cpn site join-token create SITE`); no credential in {}",
            args.state_dir.display()
        ),
    };
    if let Some(j) = &join
        && j.exp <= chrono::Utc::now()
        && saved.is_none()
    {
        bail!(
            "the join token expired at {}; ask for a new one",
            j.exp.to_rfc3339()
        );
    }
    let server = server
        .or_else(|| join.as_ref().and_then(|j| j.url.clone()))
        .or_else(|| saved.as_ref().map(|c| c.server.clone()))
        .unwrap_or_else(|| DEFAULT_SERVER.to_string());
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("creating the state dir {}", args.state_dir.display()))?;
    let ca_pem = trusted_ca(&server, &args.state_dir, ca_file.as_deref(), join.as_ref()).await?;
    let mut config = cpn_agent::AgentConfig::new(server.clone(), site.clone(), &args.state_dir);
    config.join_token = args.join.clone();
    config.ca_pem = ca_pem;
    config.allow_insecure_http = args.insecure_http;
    config.name = args.name.clone();
    config.labels = args.labels.into_iter().collect();
    config.isolation = args.isolation.config();
    config.lease = args.lease.settings();
    if let Some(gpus) = args.emulate_gpus {
        // The host's own CPUs, memory and disk: tasks really run here.
        let host = tokio::task::spawn_blocking(cpn_agent::inventory)
            .await
            .unwrap_or_default();
        config.emulate = Some(cpn_agent::EmulatedInventory {
            cpu_model: host.cpu_model,
            arch: host.arch,
            cpu_cores: host.cpu_cores,
            memory_mib: host.memory_mib,
            gpus,
            gpu_model: args.emulate_gpu_model.clone(),
            gpu_memory_mib: args.emulate_gpu_memory_mib,
            disk_gib: host.disks.iter().map(|d| d.available_gib).sum(),
        });
    }
    let name = args.name.unwrap_or_else(cpn_agent::host_name);
    eprintln!(
        "cpn agent: node {name} of site {site} registering with {server} (state in {})",
        args.state_dir.display()
    );
    let mut handle = cpn_agent::spawn(config)?;
    tokio::select! {
        _ = shutdown_signal() => {
            eprintln!("cpn agent: stopping (running tasks keep running)");
            handle.stop().await;
            Ok(())
        }
        why = handle.stopped() => {
            bail!("{}", why.unwrap_or_else(|| "the agent stopped".into()))
        }
    }
}

/// The CA the agent trusts for https: --ca-file; else the join token's pinned CA, fetched
/// from the server and checked against the fingerprint, then kept in the state dir; else
/// the one kept by an earlier join; else none (the system's roots).
async fn trusted_ca(
    server: &str,
    state_dir: &Path,
    ca_file: Option<&Path>,
    join: Option<&JoinTokenPayload>,
) -> Result<Option<String>> {
    let kept = state_dir.join(cpn_agent::CA_FILE);
    if let Some(path) = ca_file {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("--ca-file {}", path.display()))?;
        cpn_agent::ca_fingerprint(&pem).with_context(|| format!("--ca-file {}", path.display()))?;
        return Ok(Some(pem));
    }
    if !server.starts_with("https://") {
        return Ok(None);
    }
    if let Some(fingerprint) = join.and_then(|j| j.ca_sha256.as_deref()) {
        if let Ok(pem) = std::fs::read_to_string(&kept)
            && cpn_agent::ca_fingerprint(&pem).is_ok_and(|f| f == fingerprint)
        {
            return Ok(Some(pem));
        }
        let mut tries = 0;
        let pem = loop {
            match cpn_agent::fetch_pinned_ca(server, fingerprint).await {
                Ok(pem) => break pem,
                Err(e @ cpn_agent::AgentError::Http { .. }) if tries < 10 => {
                    tries += 1;
                    eprintln!("cpn agent: fetching the server's CA failed ({e}); retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        std::fs::write(&kept, &pem).with_context(|| format!("write {}", kept.display()))?;
        return Ok(Some(pem));
    }
    Ok(std::fs::read_to_string(&kept).ok())
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
