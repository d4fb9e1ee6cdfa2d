//! Dividing N replicas across sites (SC-ENG-03), in the manner of Karmada's weighted
//! division: by static weights, or by what each site can hold; and re-planning only the
//! difference when a task is scaled up or down, so running replicas are not moved.

use crate::cluster::{Cluster, SiteIdx};
use crate::task::Task;

/// How many replicas each site gets.
pub type Assignment = Vec<(SiteIdx, u32)>;

/// Divides `total` by `weights` with the largest-remainder method. Sites with weight 0 get
/// nothing; ties in remainders go to the earlier entry, so the result is deterministic.
pub fn divide(total: u32, weights: &[(SiteIdx, f64)]) -> Assignment {
    let usable: Vec<(SiteIdx, f64)> = weights
        .iter()
        .copied()
        .filter(|(_, w)| w.is_finite() && *w > 0.0)
        .collect();
    let sum: f64 = usable.iter().map(|(_, w)| w).sum();
    if usable.is_empty() || sum <= 0.0 {
        return Vec::new();
    }
    let mut out: Vec<(SiteIdx, u32, f64, usize)> = usable
        .iter()
        .enumerate()
        .map(|(i, &(s, w))| {
            let exact = total as f64 * w / sum;
            (s, exact.floor() as u32, exact - exact.floor(), i)
        })
        .collect();
    let given: u32 = out.iter().map(|o| o.1).sum();
    let mut by_remainder: Vec<usize> = (0..out.len()).collect();
    by_remainder.sort_by(|&a, &b| out[b].2.total_cmp(&out[a].2).then(out[a].3.cmp(&out[b].3)));
    for &i in by_remainder
        .iter()
        .take(total.saturating_sub(given) as usize)
    {
        out[i].1 += 1;
    }
    out.into_iter()
        .filter(|o| o.1 > 0)
        .map(|o| (o.0, o.1))
        .collect()
}

/// Weights for division by free capacity: how many replicas of `task` each site could hold
/// by its free aggregates (the binding resource decides). Sites that hold none are left out.
pub fn capacity_weights(cluster: &Cluster, task: &Task, sites: &[SiteIdx]) -> Vec<(SiteIdx, f64)> {
    let d = &task.demand;
    sites
        .iter()
        .filter_map(|&s| {
            let free = &cluster.site(s).free;
            let mut fit = u64::MAX;
            let mut limit = |have: u64, want: u64| {
                if let Some(n) = have.checked_div(want) {
                    fit = fit.min(n);
                }
            };
            limit(free.cpu_milli, d.cpu_milli);
            limit(free.memory_mib, d.memory_mib);
            limit(free.storage_gib, d.storage_gib);
            if d.whole_gpus() {
                limit(free.whole_gpus, d.gpus as u64);
            } else {
                limit(free.gpu_milli, d.gpu_milli_total());
            }
            if fit == u64::MAX {
                fit = 1_000_000; // the task asks for nothing measurable
            }
            (fit > 0).then_some((s, fit as f64))
        })
        .collect()
}

/// Target assignment for `new_total` replicas, changing as little as possible: growth is
/// divided by `weights` and added; shrinkage is taken from sites in proportion to what they
/// run. Replicas that stay are never moved.
pub fn rescale(
    current: &[(SiteIdx, u32)],
    new_total: u32,
    weights: &[(SiteIdx, f64)],
) -> Assignment {
    let now: u32 = current.iter().map(|c| c.1).sum();
    let mut target: Vec<(SiteIdx, u32)> = current.to_vec();
    if new_total >= now {
        for (s, n) in divide(new_total - now, weights) {
            match target.iter_mut().find(|t| t.0 == s) {
                Some(t) => t.1 += n,
                None => target.push((s, n)),
            }
        }
    } else {
        let by_current: Vec<(SiteIdx, f64)> = current.iter().map(|&(s, n)| (s, n as f64)).collect();
        let mut remove = divide(now - new_total, &by_current);
        // Rounding can ask a site for one more than it runs; move that to the next site.
        let mut carry = 0;
        for (s, n) in remove.iter_mut() {
            let have = current.iter().find(|c| c.0 == *s).map(|c| c.1).unwrap_or(0);
            *n += carry;
            carry = n.saturating_sub(have);
            *n = (*n).min(have);
        }
        for (s, n) in remove {
            if let Some(t) = target.iter_mut().find(|t| t.0 == s) {
                t.1 -= n;
            }
        }
    }
    target.retain(|t| t.1 > 0);
    target
}

/// The changes from `current` to `target`: positive adds replicas on a site, negative removes.
pub fn difference(current: &[(SiteIdx, u32)], target: &[(SiteIdx, u32)]) -> Vec<(SiteIdx, i64)> {
    let mut sites: Vec<SiteIdx> = current.iter().chain(target).map(|x| x.0).collect();
    sites.sort_unstable();
    sites.dedup();
    let count =
        |a: &[(SiteIdx, u32)], s| a.iter().find(|x| x.0 == s).map(|x| x.1 as i64).unwrap_or(0);
    sites
        .into_iter()
        .map(|s| (s, count(target, s) - count(current, s)))
        .filter(|&(_, d)| d != 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_remainder_division() {
        // 10 by 1:1:1 → 3.33 each; the one extra goes to the first.
        assert_eq!(
            divide(10, &[(0, 1.0), (1, 1.0), (2, 1.0)]),
            vec![(0, 4), (1, 3), (2, 3)]
        );
        // 7 by 2:1 → 4.67 / 2.33 → 5 / 2.
        assert_eq!(divide(7, &[(5, 2.0), (9, 1.0)]), vec![(5, 5), (9, 2)]);
        assert_eq!(divide(3, &[(0, 0.0), (1, 1.0)]), vec![(1, 3)]);
        assert!(divide(3, &[]).is_empty());
        assert!(divide(0, &[(0, 1.0)]).is_empty());
    }

    #[test]
    fn scaling_up_adds_only_the_difference() {
        let current = vec![(0, 3), (1, 1)];
        let target = rescale(&current, 8, &[(1, 1.0), (2, 1.0)]);
        assert_eq!(target, vec![(0, 3), (1, 3), (2, 2)]);
        assert_eq!(difference(&current, &target), vec![(1, 2), (2, 2)]);
    }

    #[test]
    fn scaling_down_takes_proportionally_and_never_below_zero() {
        let current = vec![(0, 6), (1, 3), (2, 1)];
        let target = rescale(&current, 5, &[]);
        assert_eq!(target.iter().map(|t| t.1).sum::<u32>(), 5);
        // 5 removed by 6:3:1 → 3, 1.5, 0.5 → 3, 2, 0 (remainder ties go to the earlier site).
        assert_eq!(target, vec![(0, 3), (1, 1), (2, 1)]);
        assert!(rescale(&current, 0, &[]).is_empty());
    }
}
