//! Shared state of the running server.

use cpn_store::Store;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub data_dir: PathBuf,
    /// The simulation jobs' worker pool and stop flags (the jobs are documents of the store).
    pub simulations: Arc<crate::simulation::Simulations>,
    /// Folder of the shipped openb trace CSVs simulations may name; `None`: uploads only.
    pub sim_data_dir: Option<PathBuf>,
    /// Running work: caches beside the store, background loops' wake-ups, task logs.
    pub runtime: Arc<crate::runtime::Runtime>,
    /// The password-hashing pool, the login throttle and the account settings.
    pub accounts: Arc<crate::auth::Accounts>,
    /// HTTPS or not, and the generated CA (served at /api/v1/ca.pem, pinned by join tokens).
    pub transport: Arc<crate::tls::Transport>,
    /// The marketplace's listings, orders, leases and ledger (`market`).
    pub market: Arc<crate::market::MarketService>,
    /// Self-service marketplace accounts: the identifier key, notifications, pending codes.
    pub market_accounts: Arc<crate::market_accounts::MarketAccounts>,
}
