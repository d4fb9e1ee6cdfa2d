//! The composition of runtime and control: the [`ControlHooks`] the runtime calls back
//! (registry writes of the Slurm back end, the marketplace's lease work for agents), and
//! the background loops of both, each supervised and stopped on shutdown.

use crate::caller::Actor;
use crate::error::ApiResult;
use crate::market::MarketService;
use crate::runtime::{ControlHooks, RuntimeState, supervise};
use crate::state::Control;
use cpn_api_types::agent::{LeaseAccessGrant, LeaseAccessRevoke};
use cpn_api_types::registry::{ResourceCreate, ResourceUpdate};
use std::sync::Arc;

pub struct Hooks {
    pub market: Arc<MarketService>,
    /// The marketplace's accounts, for the identifier key a market restore needs.
    pub market_accounts: Arc<crate::market_accounts::MarketAccounts>,
}

#[async_trait::async_trait]
impl ControlHooks for Hooks {
    fn live_leases(&self, node_id: &str) -> Vec<String> {
        crate::market::live_leases(&self.market, node_id)
    }

    async fn lease_work(&self, node_id: &str) -> (Vec<LeaseAccessGrant>, Vec<LeaseAccessRevoke>) {
        crate::market::lease_work(&self.market, node_id).await
    }

    async fn admit_task(
        &self,
        state: &RuntimeState,
        tenant: &str,
        lease: Option<u64>,
    ) -> ApiResult<()> {
        crate::market::admit_task(
            state.store.as_ref(),
            &self.market,
            self.market_accounts.hasher(),
            tenant,
            lease,
        )
        .await
    }

    async fn record_lease_task(
        &self,
        state: &RuntimeState,
        lease: u64,
        demand: cpn_sched::task::Demand,
        start: chrono::DateTime<chrono::Utc>,
        end: chrono::DateTime<chrono::Utc>,
    ) {
        crate::market::record_lease_task(
            state.store.as_ref(),
            &self.market,
            self.market_accounts.hasher(),
            lease,
            demand,
            start,
            end,
        )
        .await
    }

    async fn create_resource(
        &self,
        state: &RuntimeState,
        who: &Actor,
        body: ResourceCreate,
    ) -> ApiResult<()> {
        crate::registry::create::<crate::registry::ResourceKind>(state, who, body).await?;
        Ok(())
    }

    async fn update_resource(
        &self,
        state: &RuntimeState,
        who: &Actor,
        id: &str,
        body: ResourceUpdate,
    ) -> ApiResult<()> {
        crate::registry::update::<crate::registry::ResourceKind>(state, who, id, None, body)
            .await?;
        Ok(())
    }
}

/// Starts every background loop: the runtime's (binding, liveness, Slurm) and the control
/// services' (rules, marketplace metering), all stopped by the runtime's shutdown.
pub fn spawn_loops(state: &Control) -> Vec<tokio::task::JoinHandle<()>> {
    let mut loops = crate::runtime::spawn_loops(state);
    let shutdown = &state.runtime.shutdown;
    loops.push(supervise("rules", state, shutdown, |s| {
        Box::pin(crate::rules::run(s))
    }));
    loops.push(supervise("market", state, shutdown, |s| {
        Box::pin(crate::market::run(s))
    }));
    loops.push(supervise("outbox", state, shutdown, |s| {
        Box::pin(crate::notify::run_outbox(s))
    }));
    if state.accounts.config.audit_retention_days.is_some() {
        loops.push(supervise("audit-retention", state, shutdown, |s| {
            Box::pin(crate::audit::retention_loop(s))
        }));
    }
    loops
}
