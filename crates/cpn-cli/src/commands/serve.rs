//! `cpn serve`: hands the parsed flags to the server crate and runs it until stopped.

use crate::cli::{DEFAULT_SIM_DATA, ServeArgs};
use anyhow::{Result, bail};
use cpn_server::ServeConfig;
use std::path::PathBuf;
use std::time::Duration;

pub async fn run(args: ServeArgs) -> Result<()> {
    if args.node_timeout_ms <= args.heartbeat_ms {
        bail!(
            "--node-timeout-ms ({}) must be longer than --heartbeat-ms ({}), or every node would be lost between two heartbeats",
            args.node_timeout_ms,
            args.heartbeat_ms
        );
    }
    let sim_data_dir = match args.sim_data {
        Some(dir) if !dir.is_dir() => bail!("--sim-data {}: no such folder", dir.display()),
        Some(dir) => Some(dir),
        None => Some(PathBuf::from(DEFAULT_SIM_DATA)).filter(|d| d.is_dir()),
    };
    cpn_server::run(ServeConfig {
        data_dir: args.data_dir,
        listen: args.listen,
        load_demo: !args.no_demo,
        sim_data_dir,
        runtime: cpn_server::runtime::RuntimeConfig {
            heartbeat_interval: Duration::from_millis(args.heartbeat_ms.max(100)),
            node_timeout: Duration::from_millis(args.node_timeout_ms.max(500)),
        },
        local_agent: (!args.no_local_agent).then_some(args.local_site),
        local_agent_isolation: args.isolation.config(),
    })
    .await
}
