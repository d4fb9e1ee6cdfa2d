//! Versions of one policy (SC-POL-01 modify, SC-POL-05 rollback). Pure data: the server
//! persists it. A rollback never rewrites history; it appends a copy of the old version.

use crate::document::Policy;
use crate::error::PolicyError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyHistory {
    /// (version, document), versions strictly increasing from 1.
    pub versions: Vec<(u32, Policy)>,
}

impl PolicyHistory {
    /// Appends `policy` as the next version and returns its number.
    pub fn put(&mut self, policy: Policy) -> u32 {
        let version = self.latest_version().map_or(1, |v| v + 1);
        self.versions.push((version, policy));
        version
    }

    /// Appends a copy of version `to` as the next version and returns the new number.
    pub fn rollback(&mut self, to: u32) -> Result<u32, PolicyError> {
        let policy = self
            .get(to)
            .cloned()
            .ok_or_else(|| PolicyError::VersionNotFound {
                version: to,
                available: match (self.versions.first(), self.versions.last()) {
                    (Some((a, _)), Some((b, _))) => format!("versions {a}..={b}"),
                    _ => "no versions".to_string(),
                },
            })?;
        Ok(self.put(policy))
    }

    pub fn get(&self, version: u32) -> Option<&Policy> {
        self.versions
            .iter()
            .find(|(v, _)| *v == version)
            .map(|(_, p)| p)
    }

    /// The current document and its version.
    pub fn latest(&self) -> Option<(u32, &Policy)> {
        self.versions.last().map(|(v, p)| (*v, p))
    }

    pub fn latest_version(&self) -> Option<u32> {
        self.versions.last().map(|(v, _)| *v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_and_rollback_append_versions() {
        let mut h = PolicyHistory::default();
        let v1 = Policy {
            name: "p".into(),
            priority: 1,
            ..Default::default()
        };
        let v2 = Policy {
            priority: 2,
            ..v1.clone()
        };
        assert_eq!(h.put(v1.clone()), 1);
        assert_eq!(h.put(v2), 2);
        assert_eq!(h.rollback(1).unwrap(), 3);
        assert_eq!(h.latest(), Some((3, &v1)));
        assert_eq!(h.versions.len(), 3);
        let e = h.rollback(9).unwrap_err();
        assert_eq!(
            e.to_string(),
            "version 9 is not in the history; it has versions 1..=3"
        );
    }
}
