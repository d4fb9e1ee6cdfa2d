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
  CPN_TOKEN=... cpn agent --site lab --name gpu-3 --label gpu.model=A100 --state-dir /var/lib/cpn")]
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
}

pub async fn run(client: &Client, args: AgentArgs) -> Result<()> {
    let Some(token) = client.token() else {
        bail!(
            "an agent needs a token: pass --token or set CPN_TOKEN (the server writes an \
             admin token to DATA_DIR/admin.token)"
        );
    };
    let server = client.server();
    let state_dir = std::path::absolute(&args.state_dir).with_context(|| {
        format!(
            "cannot make the state dir {} absolute",
            args.state_dir.display()
        )
    })?;
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating the state dir {}", state_dir.display()))?;
    let mut config =
        cpn_agent::AgentConfig::new(server.clone(), token, args.site.clone(), &state_dir);
    config.name = args.name.clone();
    config.labels = args.labels.into_iter().collect();
    let name = args.name.unwrap_or_else(cpn_agent::host_name);
    eprintln!(
        "cpn agent: node {name} of site {} registering with {server} (state in {})",
        args.site,
        state_dir.display()
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
