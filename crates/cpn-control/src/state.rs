//! Shared state of the running server: the runtime's state and the control services'
//! own parts. It dereferences to [`RuntimeState`], so a service hands it to the runtime
//! as is.

use crate::runtime::RuntimeState;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Clone)]
pub struct Control {
    /// The store, the running work, the transport and the hooks the runtime calls back.
    pub rt: RuntimeState,
    pub data_dir: PathBuf,
    /// The simulation jobs' worker pool and stop flags (the jobs are documents of the store).
    pub simulations: Arc<crate::simulation::Simulations>,
    /// Folder of the shipped openb trace CSVs simulations may name; `None`: uploads only.
    pub sim_data_dir: Option<PathBuf>,
    /// The password-hashing pool, the login throttle and the account settings.
    pub accounts: Arc<crate::auth::Accounts>,
    /// The marketplace's listings, orders, leases and ledger (`market`).
    pub market: Arc<crate::market::MarketService>,
    /// Self-service marketplace accounts: the identifier key, notifications, pending codes.
    pub market_accounts: Arc<crate::market_accounts::MarketAccounts>,
}

impl std::ops::Deref for Control {
    type Target = RuntimeState;
    fn deref(&self) -> &RuntimeState {
        &self.rt
    }
}
