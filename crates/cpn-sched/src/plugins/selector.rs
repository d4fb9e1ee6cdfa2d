//! Label selector filter: the task's site selector over site labels and its node selector
//! over node labels (hard constraints such as `tier=gold` or `!preemptible`). Labels do not
//! change within a cycle, so a mismatch is permanent for the task.

use crate::cluster::{Cluster, NodeIdx, SiteIdx};
use crate::framework::{CycleState, NodeFilter, Plugin, SiteFilter, Verdict};
use crate::task::Task;
use cpn_model::{Labels, Requirement, Selector};

pub const NAME: &str = "selector";

/// The site's labels do not satisfy the task's site selector.
pub const SITE_SELECTOR_MISMATCH: &str = "site_selector_mismatch";
/// The node's labels do not satisfy the task's node selector.
pub const NODE_SELECTOR_MISMATCH: &str = "node_selector_mismatch";

#[derive(Debug, Clone, Copy, Default)]
pub struct SelectorMatch;

impl Plugin for SelectorMatch {
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

impl SiteFilter for SelectorMatch {
    fn filter_site(
        &self,
        state: &CycleState,
        task: &Task,
        cluster: &Cluster,
        site: SiteIdx,
    ) -> Verdict {
        let s = cluster.site(site);
        check(
            state,
            &task.site_selector,
            &s.spec.labels,
            SITE_SELECTOR_MISMATCH,
            "site",
            &s.spec.name,
        )
    }
}

impl NodeFilter for SelectorMatch {
    fn filter_node(
        &self,
        state: &CycleState,
        task: &Task,
        cluster: &Cluster,
        node: NodeIdx,
    ) -> Verdict {
        let n = cluster.node(node);
        check(
            state,
            &task.node_selector,
            &n.spec.labels,
            NODE_SELECTOR_MISMATCH,
            "node",
            &n.spec.name,
        )
    }
}

fn check(
    state: &CycleState,
    selector: &Selector,
    labels: &Labels,
    code: &'static str,
    what: &str,
    name: &str,
) -> Verdict {
    if selector.matches(labels) {
        return Verdict::Fits;
    }
    Verdict::RejectsForever(state.reason(NAME, code, || {
        let unmet = selector
            .requirements
            .iter()
            .find(|r| !r.matches(labels))
            .map(describe)
            .unwrap_or_default();
        format!("{what} {name} does not satisfy `{unmet}`")
    }))
}

/// A requirement in selector syntax.
fn describe(r: &Requirement) -> String {
    match r {
        Requirement::Equals(k, v) => format!("{k}={v}"),
        Requirement::NotEquals(k, v) => format!("{k}!={v}"),
        Requirement::In(k, vs) => format!("{k} in ({})", vs.join(",")),
        Requirement::NotIn(k, vs) => format!("{k} notin ({})", vs.join(",")),
        Requirement::Exists(k) => k.clone(),
        Requirement::NotExists(k) => format!("!{k}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterBuilder;
    use crate::plugins::testkit::{cpu_node, cpu_task, site, state};

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn site_and_node_selectors() {
        let mut b = ClusterBuilder::new();
        let gold = b.site(crate::SiteSpec {
            labels: labels(&[("tier", "gold")]),
            ..site("g", "east")
        });
        let silver = b.site(crate::SiteSpec {
            labels: labels(&[("tier", "silver")]),
            ..site("s", "east")
        });
        b.node(crate::NodeSpec {
            labels: labels(&[("disk", "ssd")]),
            ..cpu_node("ssd", gold, 4)
        });
        b.node(cpu_node("plain", gold, 4));
        let c = b.build().unwrap();
        let t = Task {
            site_selector: Selector::parse("tier=gold").unwrap(),
            node_selector: Selector::parse("disk in (ssd,nvme)").unwrap(),
            ..cpu_task(1000)
        };
        let st = state(&t, &c, &SelectorMatch);

        assert_eq!(SelectorMatch.filter_site(&st, &t, &c, gold), Verdict::Fits);
        let v = SelectorMatch.filter_site(&st, &t, &c, silver);
        assert!(matches!(&v, Verdict::RejectsForever(r) if r.code == SITE_SELECTOR_MISMATCH));
        assert_eq!(
            v.reason().unwrap().detail.as_deref(),
            Some("site s does not satisfy `tier=gold`")
        );

        assert_eq!(SelectorMatch.filter_node(&st, &t, &c, 0), Verdict::Fits);
        let v = SelectorMatch.filter_node(&st, &t, &c, 1);
        assert!(matches!(&v, Verdict::RejectsForever(r) if r.code == NODE_SELECTOR_MISMATCH));
        assert_eq!(
            v.reason().unwrap().detail.as_deref(),
            Some("node plain does not satisfy `disk in (ssd,nvme)`")
        );

        // Empty selectors match everything.
        let any = cpu_task(1000);
        assert_eq!(
            SelectorMatch.filter_site(&st, &any, &c, silver),
            Verdict::Fits
        );
        assert_eq!(SelectorMatch.filter_node(&st, &any, &c, 1), Verdict::Fits);
    }
}
