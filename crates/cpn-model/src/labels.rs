//! Labels (applied tags) and their inheritance down the registry tree (RM-TAG-04).
//!
//! A tag in the library is a key; applying it to an object sets `key=value` in the object's
//! labels. A tag marked inheritable flows from a platform or cloud to its sites and from a site
//! to its resources, unless the object sets the key itself (the nearer value wins).

use std::collections::{BTreeMap, BTreeSet};

/// Labels of one object, sorted by key so that output and comparisons are deterministic.
pub type Labels = BTreeMap<String, String>;

/// What inheritance needs to know about the tag library: which keys flow down.
#[derive(Debug, Clone, Default)]
pub struct InheritanceContext {
    inheritable: BTreeSet<String>,
}

impl InheritanceContext {
    pub fn new(inheritable_keys: impl IntoIterator<Item = String>) -> Self {
        InheritanceContext {
            inheritable: inheritable_keys.into_iter().collect(),
        }
    }

    pub fn is_inheritable(&self, key: &str) -> bool {
        self.inheritable.contains(key)
    }

    /// Effective labels of an object: its own labels over those inherited from `ancestors`,
    /// which are given nearest first (a resource passes `[site, platform, cloud]`).
    pub fn effective(&self, own: &Labels, ancestors: &[&Labels]) -> Labels {
        let mut out = Labels::new();
        for ancestor in ancestors.iter().rev() {
            for (k, v) in ancestor.iter() {
                if self.is_inheritable(k) {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        for (k, v) in own {
            out.insert(k.clone(), v.clone());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn nearer_value_wins_and_only_inheritable_keys_flow() {
        let ctx = InheritanceContext::new(["region".to_string(), "power".to_string()]);
        let platform = labels(&[("region", "west"), ("power", "green"), ("owner", "x")]);
        let site = labels(&[("region", "northwest")]);
        let own = labels(&[("gpu.model", "A100")]);
        let eff = ctx.effective(&own, &[&site, &platform]);
        assert_eq!(
            eff,
            labels(&[
                ("gpu.model", "A100"),
                ("power", "green"),
                ("region", "northwest")
            ])
        );
    }

    #[test]
    fn own_labels_override_inherited_ones() {
        let ctx = InheritanceContext::new(["region".to_string()]);
        let site = labels(&[("region", "east")]);
        let own = labels(&[("region", "local")]);
        assert_eq!(ctx.effective(&own, &[&site])["region"], "local");
    }
}
