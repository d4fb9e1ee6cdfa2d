//! `cpn serve`: hands the parsed flags to the server crate and runs it until stopped.

use crate::cli::{DEFAULT_SIM_DATA, ServeArgs};
use anyhow::{Result, bail};
use cpn_server::ServeConfig;
use std::path::PathBuf;

pub async fn run(args: ServeArgs) -> Result<()> {
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
    })
    .await
}
