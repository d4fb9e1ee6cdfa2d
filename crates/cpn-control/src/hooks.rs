//! The composition of runtime and control: the [`ControlHooks`] the runtime calls back
//! (registry writes of the Slurm back end, the marketplace's lease work for agents), and
//! the background loops of both, each supervised and stopped on shutdown.

use crate::caller::Actor;
use crate::error::ApiResult;
use crate::market::MarketService;
use crate::runtime::{ControlHooks, RuntimeState, supervise};
use crate::state::AppState;
use cpn_api_types::agent::{LeaseAccessGrant, LeaseAccessRevoke};
use cpn_api_types::registry::{ResourceCreate, ResourceUpdate};
use std::sync::Arc;

pub struct Hooks {
    pub market: Arc<MarketService>,
}

#[async_trait::async_trait]
impl ControlHooks for Hooks {
    fn live_leases(&self, node_id: &str) -> Vec<String> {
        crate::market::live_leases(&self.market, node_id)
    }

    async fn lease_work(&self, node_id: &str) -> (Vec<LeaseAccessGrant>, Vec<LeaseAccessRevoke>) {
        crate::market::lease_work(&self.market, node_id).await
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
pub fn spawn_loops(state: &AppState) -> Vec<tokio::task::JoinHandle<()>> {
    let mut loops = crate::runtime::spawn_loops(state);
    let shutdown = &state.runtime.shutdown;
    loops.push(supervise("rules", state, shutdown, |s| {
        Box::pin(crate::rules::run(s))
    }));
    loops.push(supervise("market", state, shutdown, |s| {
        Box::pin(crate::market::run(s))
    }));
    loops
}
