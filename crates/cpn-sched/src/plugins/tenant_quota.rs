//! Tenant quota filter: a tenant's usage plus the task must stay within its quota. The check
//! does not depend on the site, so it is made once per cycle in `prepare`; every site then
//! gives the same verdict. Usage falls as work ends, so a miss is not permanent.

use crate::cluster::{Cluster, SiteIdx};
use crate::framework::{CycleState, Plugin, SiteFilter, Verdict};
use crate::task::Task;

pub const NAME: &str = "tenant_quota";

/// The tenant's usage plus the task's demand is over one of its quota's limits.
pub const QUOTA_EXCEEDED: &str = "quota_exceeded";

#[derive(Debug, Clone, Copy, Default)]
pub struct TenantQuota;

/// The first limit the task would break: (resource, in use, wanted, limit).
#[derive(Debug, Clone, Copy, PartialEq)]
struct QuotaMiss(Option<(&'static str, u64, u64, u64)>);

fn check(task: &Task, cluster: &Cluster) -> QuotaMiss {
    let Some(q) = cluster.quotas.get(&task.tenant) else {
        return QuotaMiss(None);
    };
    let (gpu, cpu, mem) = cluster.usage.get(&task.tenant).copied().unwrap_or_default();
    let d = &task.demand;
    let limits = [
        ("gpu_milli", gpu, d.gpu_milli_total(), q.gpu_milli),
        ("cpu_milli", cpu, d.cpu_milli, q.cpu_milli),
        ("memory_mib", mem, d.memory_mib, q.memory_mib),
    ];
    QuotaMiss(limits.into_iter().find_map(|(res, used, want, limit)| {
        let limit = limit?;
        (used.saturating_add(want) > limit).then_some((res, used, want, limit))
    }))
}

impl Plugin for TenantQuota {
    fn name(&self) -> &'static str {
        NAME
    }
    fn prepare(&self, task: &Task, cluster: &Cluster, state: &mut CycleState) {
        state.put(check(task, cluster));
    }
    fn as_site_filter(&self) -> Option<&dyn SiteFilter> {
        Some(self)
    }
}

impl SiteFilter for TenantQuota {
    fn filter_site(
        &self,
        state: &CycleState,
        task: &Task,
        cluster: &Cluster,
        _site: SiteIdx,
    ) -> Verdict {
        let miss = match state.get::<QuotaMiss>() {
            Some(m) => *m,
            None => check(task, cluster),
        };
        match miss.0 {
            None => Verdict::Fits,
            Some((res, used, want, limit)) => {
                Verdict::Rejects(state.reason(NAME, QUOTA_EXCEEDED, || {
                    format!(
                        "tenant {}: {res} in use {used} + {want} wanted > quota {limit}",
                        task.tenant
                    )
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{ClusterBuilder, GpuPick, Quota};
    use crate::plugins::testkit::{gpu_node, gpu_task, site, state};

    #[test]
    fn usage_plus_demand_must_stay_within_quota() {
        let mut b = ClusterBuilder::new();
        let s = b.site(site("s", "east"));
        b.node(gpu_node("g", s, "A100", 8));
        b.quota(
            "acme",
            Quota {
                gpu_milli: Some(3000),
                cpu_milli: None,
                memory_mib: Some(10_240),
            },
        );
        let mut c = b.build().unwrap();
        let verdict =
            |c: &Cluster, t: &Task| TenantQuota.filter_site(&state(t, c, &TenantQuota), t, c, s);

        // Nothing in use: 3 GPUs = 3000 milli is exactly the limit.
        assert_eq!(verdict(&c, &gpu_task(3)), Verdict::Fits);
        assert!(
            matches!(verdict(&c, &gpu_task(4)), Verdict::Rejects(r) if r.code == QUOTA_EXCEEDED)
        );

        // 2 GPUs in use (2000 milli, 1000 CPU milli, 1024 MiB): 1 more fits, 2 do not.
        c.reserve("acme", 0, &gpu_task(2).demand, GpuPick::BestFit)
            .unwrap();
        assert_eq!(verdict(&c, &gpu_task(1)), Verdict::Fits);
        let v = verdict(&c, &gpu_task(2));
        assert_eq!(
            v.reason().unwrap().detail.as_deref(),
            Some("tenant acme: gpu_milli in use 2000 + 2000 wanted > quota 3000")
        );

        // Memory: 1024 in use + 9217 > 10240.
        let mut t = gpu_task(1);
        t.demand.memory_mib = 9217;
        assert!(matches!(verdict(&c, &t), Verdict::Rejects(_)));
        t.demand.memory_mib = 9216;
        assert_eq!(verdict(&c, &t), Verdict::Fits);

        // Tenants without a quota are unlimited.
        let other = Task {
            tenant: "other".into(),
            ..gpu_task(8)
        };
        assert_eq!(verdict(&c, &other), Verdict::Fits);
    }
}
