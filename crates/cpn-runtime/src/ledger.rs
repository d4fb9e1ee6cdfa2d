//! The one capacity ledger (issue #13, deliverable 4): every hold on capacity — an active
//! task's, a `POST /schedule` decision's, an I2 allocation's, a class B marketplace lease's
//! — is one [`Hold`] here, keyed by its kind and id. A task that runs inside a lease holds
//! its part of the lease's hold, not capacity of its own ([`Hold::takes_capacity`]): the
//! lease's hold keeps the whole share out of everyone else's reach, and the binder places
//! the lease's tasks inside it (`livecluster::BinderCluster::open_lease`). The store is the truth: the ledger is
//! rebuilt from it at start ([`super::Runtime::load`]) and changed right after every write
//! that creates, adjusts or releases a hold, under `Runtime::capacity_lock` for anything
//! that takes capacity. A live cluster takes every live-node hold out of what it offers
//! (a per-request one all at once with [`Ledger::reserve_into`]; the binder's, kept across
//! cycles, only the holds that changed, from [`Ledger::take_changes`]), so the binder,
//! `POST /schedule`, "why here" and I2 see the same capacity; the planning snapshot takes
//! out the holds on registry resources.
//!
//! A hold may carry an expiry: from then on it holds nothing, and the monitor's [`sweep`]
//! marks it released in the store.

use crate::RuntimeState;
use crate::error::ApiResult;
use crate::inventory::RESOURCE_ALLOCATION_PREFIX;
use chrono::{DateTime, Utc};
use cpn_sched::task::Demand;
use cpn_sched::{Cluster, NodeIdx};
use std::collections::HashMap;

/// What holds capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HoldKind {
    /// An active (scheduled or running) task, by task id.
    Task,
    /// An unreleased `POST /schedule` decision, by decision id.
    Decision,
    /// An active I2 allocation, by allocation id.
    Allocation,
    /// A running class B marketplace lease's share of one node, by
    /// [`lease_hold_id`]; made from the market at start, not stored as a hold.
    Lease,
}

/// The ledger id of a class B lease's hold on one node (by the node's name in its site).
pub fn lease_hold_id(lease: u64, node: &str) -> String {
    format!("market-lease-{lease}@{node}")
}

/// Capacity one task, decision or allocation holds.
#[derive(Debug, Clone, PartialEq)]
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
    /// The lease: of a `Lease` hold, the lease it is; of a `Task` hold, the lease the task
    /// runs inside (its capacity is part of that lease's hold).
    pub lease: Option<u64>,
}

impl Hold {
    /// Whether this hold takes capacity out of its node itself: all but a task running
    /// inside a lease, whose share the lease's hold already takes.
    pub fn takes_capacity(&self, kind: HoldKind) -> bool {
        kind != HoldKind::Task || self.lease.is_none()
    }

    pub fn holds_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|e| e > now)
    }

    /// The registry resource it holds, for a resource allocation.
    pub fn resource(&self) -> Option<&str> {
        self.target.strip_prefix(RESOURCE_ALLOCATION_PREFIX)
    }
}

/// A hold's key: its kind and the id of what holds.
pub type HoldKey = (HoldKind, String);

/// Every hold, by kind and id, and which changed since the binder's live cluster last
/// looked (`take_changes`), so it applies only those: O(changed holds) per cycle.
#[derive(Debug, Default)]
pub struct Ledger {
    holds: HashMap<HoldKey, Hold>,
    changed: std::collections::HashSet<HoldKey>,
    /// Cleared since the last look: every hold may have changed.
    reset: bool,
}

/// What changed in the ledger since the last [`Ledger::take_changes`].
#[derive(Debug, Default)]
pub struct Changes {
    /// Everything may have changed (the ledger was reloaded): start from `active`.
    pub reset: bool,
    /// Each changed key with its hold now (None: released).
    pub holds: Vec<(HoldKey, Option<Hold>)>,
}

impl Ledger {
    /// Adds or replaces a hold.
    pub fn hold(&mut self, kind: HoldKind, id: &str, hold: Hold) {
        let key = (kind, id.to_string());
        self.changed.insert(key.clone());
        self.holds.insert(key, hold);
    }

    /// Removes a hold; whether there was one.
    pub fn release(&mut self, kind: HoldKind, id: &str) -> bool {
        let key = (kind, id.to_string());
        let had = self.holds.remove(&key).is_some();
        if had {
            self.changed.insert(key);
        }
        had
    }

    /// The changes since the last call, each with the hold as it is now.
    pub fn take_changes(&mut self) -> Changes {
        let keys = std::mem::take(&mut self.changed);
        Changes {
            reset: std::mem::take(&mut self.reset),
            holds: keys
                .into_iter()
                .map(|k| {
                    let h = self.holds.get(&k).cloned();
                    (k, h)
                })
                .collect(),
        }
    }

    /// Whether a key changed since the last [`Ledger::take_changes`].
    pub fn has_changes(&self) -> bool {
        self.reset || !self.changed.is_empty()
    }

    /// Every hold with its key (expired ones too).
    pub fn all(&self) -> impl Iterator<Item = (&HoldKey, &Hold)> {
        self.holds.iter()
    }

    pub fn get(&self, kind: HoldKind, id: &str) -> Option<&Hold> {
        self.holds.get(&(kind, id.to_string()))
    }

    pub fn clear(&mut self) {
        self.holds.clear();
        self.changed.clear();
        self.reset = true;
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
        for (kind, _, h) in self.active(now) {
            if !h.takes_capacity(kind) {
                continue;
            }
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
pub async fn sweep(state: &RuntimeState) -> ApiResult<()> {
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
            // A task's hold ends with the task, a lease's with the lease.
            HoldKind::Task | HoldKind::Lease => continue,
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
            lease: None,
        }
    }

    #[test]
    fn a_task_inside_a_lease_takes_no_capacity_of_its_own() {
        let inside = Hold {
            lease: Some(7),
            ..hold("n1", 1000, None)
        };
        assert!(!inside.takes_capacity(HoldKind::Task));
        assert!(inside.takes_capacity(HoldKind::Lease));
        assert!(hold("n1", 1000, None).takes_capacity(HoldKind::Task));
        assert_eq!(lease_hold_id(7, "n1"), "market-lease-7@n1");
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

    #[test]
    fn changes_name_each_key_once_with_its_hold_now() {
        let mut l = Ledger::default();
        l.hold(HoldKind::Task, "a", hold("n1", 1000, None));
        l.hold(HoldKind::Task, "a", hold("n1", 2000, None));
        l.hold(HoldKind::Decision, "d", hold("n2", 500, None));
        assert!(!l.release(HoldKind::Task, "nothing"));
        let c = l.take_changes();
        assert!(!c.reset);
        let mut keys: Vec<_> = c
            .holds
            .iter()
            .map(|(k, h)| (k.clone(), h.clone()))
            .collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            keys.len(),
            2,
            "a key changed twice is one change; no change for a miss"
        );
        assert_eq!(keys[0].1.as_ref().unwrap().demand.cpu_milli, 2000);
        assert!(l.take_changes().holds.is_empty());
        l.release(HoldKind::Decision, "d");
        l.release(HoldKind::Task, "a");
        let c = l.take_changes();
        assert_eq!(c.holds.len(), 2);
        assert!(c.holds.iter().all(|(_, h)| h.is_none()));
        l.clear();
        assert!(l.take_changes().reset);
    }
}
