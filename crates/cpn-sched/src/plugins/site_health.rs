//! Health filter: work goes only to healthy sites, and inside them only to nodes that are
//! healthy and not cordoned. Health changes, so these rejections are never permanent.

use crate::cluster::{Cluster, NodeIdx, SiteIdx};
use crate::framework::{CycleState, NodeFilter, Plugin, SiteFilter, Verdict};
use crate::task::Task;

pub const NAME: &str = "site_health";

/// The registry marks the site unhealthy.
pub const SITE_UNHEALTHY: &str = "site_unhealthy";
/// The node reports itself (or is reported) unhealthy.
pub const NODE_UNHEALTHY: &str = "node_unhealthy";
/// An operator took the node out of scheduling.
pub const NODE_CORDONED: &str = "node_cordoned";

#[derive(Debug, Clone, Copy, Default)]
pub struct SiteHealth;

impl Plugin for SiteHealth {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_site_filter(&self) -> Option<&dyn SiteFilter> {
        Some(self)
    }
    fn as_node_filter(&self) -> Option<&dyn NodeFilter> {
        Some(self)
    }
}

impl SiteFilter for SiteHealth {
    fn filter_site(
        &self,
        state: &CycleState,
        _task: &Task,
        cluster: &Cluster,
        site: SiteIdx,
    ) -> Verdict {
        let s = cluster.site(site);
        if s.spec.healthy {
            Verdict::Fits
        } else {
            Verdict::Rejects(state.reason(NAME, SITE_UNHEALTHY, || {
                format!("site {} is marked unhealthy", s.spec.name)
            }))
        }
    }
}

impl NodeFilter for SiteHealth {
    fn filter_node(
        &self,
        state: &CycleState,
        _task: &Task,
        cluster: &Cluster,
        node: NodeIdx,
    ) -> Verdict {
        let n = cluster.node(node);
        if !n.spec.healthy {
            Verdict::Rejects(state.reason(NAME, NODE_UNHEALTHY, || {
                format!("node {} is unhealthy", n.spec.name)
            }))
        } else if n.cordoned {
            Verdict::Rejects(state.reason(NAME, NODE_CORDONED, || {
                format!("node {} is cordoned", n.spec.name)
            }))
        } else {
            Verdict::Fits
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterBuilder;
    use crate::plugins::testkit::{cpu_node, cpu_task, site, state};

    #[test]
    fn unhealthy_sites_and_unhealthy_or_cordoned_nodes_are_rejected() {
        let mut b = ClusterBuilder::new();
        let ok = b.site(site("ok", "east"));
        let sick = b.site(crate::SiteSpec {
            healthy: false,
            ..site("sick", "east")
        });
        b.node(cpu_node("n0", ok, 4));
        b.node(crate::NodeSpec {
            healthy: false,
            ..cpu_node("n1", ok, 4)
        });
        b.node(cpu_node("n2", ok, 4));
        b.node(cpu_node("n3", sick, 4));
        let mut c = b.build().unwrap();
        c.set_cordoned(2, true);
        let t = cpu_task(1000);
        let st = state(&t, &c, &SiteHealth);

        assert_eq!(SiteHealth.filter_site(&st, &t, &c, ok), Verdict::Fits);
        let v = SiteHealth.filter_site(&st, &t, &c, sick);
        assert!(matches!(&v, Verdict::Rejects(r) if r.code == SITE_UNHEALTHY));
        assert_eq!(
            v.reason().unwrap().detail.as_deref(),
            Some("site sick is marked unhealthy")
        );

        assert_eq!(SiteHealth.filter_node(&st, &t, &c, 0), Verdict::Fits);
        let code = |n| {
            SiteHealth
                .filter_node(&st, &t, &c, n)
                .reason()
                .map(|r| r.code)
        };
        assert_eq!(code(1), Some(NODE_UNHEALTHY));
        assert_eq!(code(2), Some(NODE_CORDONED));
        assert!(matches!(
            SiteHealth.filter_node(&st, &t, &c, 2),
            Verdict::Rejects(_)
        ));
    }

    #[test]
    fn details_are_only_built_when_explaining() {
        let mut b = ClusterBuilder::new();
        b.site(crate::SiteSpec {
            healthy: false,
            ..site("sick", "east")
        });
        let c = b.build().unwrap();
        let st = CycleState::new(false);
        let v = SiteHealth.filter_site(&st, &cpu_task(1), &c, 0);
        assert_eq!(v.reason().unwrap().detail, None);
    }
}
