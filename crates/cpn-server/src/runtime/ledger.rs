//! The one capacity ledger (issue #13, deliverable 4): every hold on capacity — an active
//! task's, a `POST /schedule` decision's, an I2 allocation's (and the leases still to come)
//! — is one [`Hold`] here, keyed by its kind and id. The store is the truth: the ledger is
//! rebuilt from it at start ([`super::Runtime::load`]) and changed right after every write
//! that creates, adjusts or releases a hold, under `Runtime::capacity_lock` for anything
//! that takes capacity. The live cluster takes every live-node hold out of what it offers
//! ([`Ledger::reserve_into`]), so the binder, `POST /schedule`, "why here" and I2 see the
//! same capacity; the planning snapshot takes out the holds on registry resources.
//!
//! A hold may carry an expiry: from then on it holds nothing, and the monitor's [`sweep`]
//! marks it released in the store.

use crate::error::ApiResult;
use crate::inventory::RESOURCE_ALLOCATION_PREFIX;
use crate::state::AppState;
use chrono::{DateTime, Utc};
use cpn_sched::task::Demand;
use cpn_sched::{Cluster, NodeIdx};
use std::collections::HashMap;

/// What holds capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HoldKind {
    /// An active (scheduled or running) task, by task id.
    Task,
    /// An unreleased `POST /schedule` decision, by decision id.
    Decision,
    /// An active I2 allocation, by allocation id.
    Allocation,
}

/// Capacity one task, decision or allocation holds.
#[derive(Debug, Clone)]
pub struct Hold {
    /// A live node id, or `resource:<id>` for an allocation on a registry resource.
    pub target: String,
    pub tenant: String,
    pub demand: Demand,
    /// GPUs given: (index on the node, milli); empty when the holder chose none (then the
    /// live cluster picks them, best fit).
    pub gpus: Vec<(u32, u32)>,
    /// From then on it holds nothing.
    pub expires_at: Option<DateTime<Utc>>,
}

impl Hold {
    pub fn holds_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|e| e > now)
    }

    /// The registry resource it holds, for a resource allocation.
    pub fn resource(&self) -> Option<&str> {
        self.target.strip_prefix(RESOURCE_ALLOCATION_PREFIX)
    }
}

/// Every hold, by kind and id.
#[derive(Debug, Default)]
pub struct Ledger {
    holds: HashMap<(HoldKind, String), Hold>,
}

impl Ledger {
    /// Adds or replaces a hold.
    pub fn hold(&mut self, kind: HoldKind, id: &str, hold: Hold) {
        self.holds.insert((kind, id.to_string()), hold);
    }

    /// Removes a hold; whether there was one.
    pub fn release(&mut self, kind: HoldKind, id: &str) -> bool {
        self.holds.remove(&(kind, id.to_string())).is_some()
    }

    pub fn get(&self, kind: HoldKind, id: &str) -> Option<&Hold> {
        self.holds.get(&(kind, id.to_string()))
    }

    pub fn clear(&mut self) {
        self.holds.clear();
    }

    /// Every hold still holding at `now`, with its kind and id.
    pub fn active(&self, now: DateTime<Utc>) -> impl Iterator<Item = (HoldKind, &str, &Hold)> {
        self.holds
            .iter()
            .filter(move |(_, h)| h.holds_at(now))
            .map(|((k, id), h)| (*k, id.as_str(), h))
    }

    /// Holds whose expiry has passed, with it.
    pub fn expired(&self, now: DateTime<Utc>) -> Vec<(HoldKind, String, DateTime<Utc>)> {
        self.holds
            .iter()
            .filter_map(|((k, id), h)| match h.expires_at {
                Some(at) if at <= now => Some((*k, id.clone(), at)),
                _ => None,
            })
            .collect()
    }

    /// Takes every hold on a node of `cluster` (by node id in `nodes`) out of it: the GPUs
    /// the holder was given, else a best fit; a hold its node can no longer take (the node
    /// shrank) takes what fits, so nothing more lands there.
    pub fn reserve_into(
        &self,
        now: DateTime<Utc>,
        cluster: &mut Cluster,
        nodes: &HashMap<&str, NodeIdx>,
    ) {
        for (_, _, h) in self.active(now) {
            let Some(&n) = nodes.get(h.target.as_str()) else {
                continue;
            };
            if !cluster.reserve_exact(&h.tenant, n, &h.demand, &h.gpus) {
                let _ = cluster.reserve(
                    &h.tenant,
                    n,
                    &h.demand,
                    cpn_sched::cluster::GpuPick::BestFit,
                );
            }
        }
    }
}

/// Marks every expired decision and allocation released in the store (at its expiry) and
/// drops it from the ledger; wakes the binder when one was. Run by the monitor loop; the
/// live cluster already ignores expired holds, so this only makes the store say so.
pub async fn sweep(state: &AppState) -> ApiResult<()> {
    let rt = &state.runtime;
    let now = Utc::now();
    let expired = rt.ledger().expired(now);
    if expired.is_empty() {
        return Ok(());
    }
    let _capacity = rt.capacity_lock.lock().await;
    for (kind, id, at) in expired {
        match kind {
            HoldKind::Decision => {
                state.store.release_decision(&id, at).await?;
            }
            HoldKind::Allocation => {
                state.store.release_allocation(&id, at).await?;
            }
            // A task's hold ends with the task.
            HoldKind::Task => continue,
        }
        rt.ledger().release(kind, &id);
        tracing::info!(?kind, id = %id, "hold expired; released");
    }
    rt.capacity_changed();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(target: &str, cpu_milli: u64, expires_at: Option<DateTime<Utc>>) -> Hold {
        Hold {
            target: target.into(),
            tenant: "t".into(),
            demand: Demand {
                cpu_milli,
                ..Default::default()
            },
            gpus: Vec::new(),
            expires_at,
        }
    }

    #[test]
    fn expired_holds_stop_holding_and_are_listed() {
        let now = Utc::now();
        let mut l = Ledger::default();
        l.hold(HoldKind::Task, "a", hold("n1", 1000, None));
        l.hold(
            HoldKind::Decision,
            "a",
            hold("n1", 1000, Some(now - chrono::TimeDelta::seconds(1))),
        );
        l.hold(
            HoldKind::Allocation,
            "b",
            hold(
                "resource:r1",
                1000,
                Some(now + chrono::TimeDelta::seconds(60)),
            ),
        );
        assert_eq!(l.active(now).count(), 2);
        let expired = l.expired(now);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].0, HoldKind::Decision);
        // Same id, another kind: distinct holds.
        assert!(l.release(HoldKind::Decision, "a"));
        assert!(l.get(HoldKind::Task, "a").is_some());
        assert_eq!(
            l.get(HoldKind::Allocation, "b").unwrap().resource(),
            Some("r1")
        );
    }
}
