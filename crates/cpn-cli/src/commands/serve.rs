//! `cpn serve`: hands the parsed flags to the server crate and runs it until stopped.

use crate::cli::ServeArgs;
use anyhow::Result;
use cpn_server::ServeConfig;

pub async fn run(args: ServeArgs) -> Result<()> {
    cpn_server::run(ServeConfig {
        data_dir: args.data_dir,
        listen: args.listen,
        load_demo: !args.no_demo,
    })
    .await
}
