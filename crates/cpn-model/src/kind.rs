//! The kinds of object the registry holds, and how they nest for tag inheritance.

use serde::{Deserialize, Serialize};

/// A registry object kind. The string form is used in URLs (plural), in storage and in
/// batch-tagging targets (singular).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A computing-power scheduling platform (hub, province or industry level), RM-REG-01.
    Platform,
    /// A cloud platform (public, dedicated, edge, hybrid), RM-REG-02.
    Cloud,
    /// A resource node (资源节点) of the standard: a data centre or cluster, RM-REG-03.
    Site,
    /// Compute, network, storage or security resource inside a site, RM-REG-04..07.
    Resource,
    /// A network link between two sites, RM-TOPO.
    Link,
    /// An entry of the tag library, RM-TAG-06.
    Tag,
    /// A scheduling policy, SC-POL.
    Policy,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Platform,
        Kind::Cloud,
        Kind::Site,
        Kind::Resource,
        Kind::Link,
        Kind::Tag,
        Kind::Policy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Platform => "platform",
            Kind::Cloud => "cloud",
            Kind::Site => "site",
            Kind::Resource => "resource",
            Kind::Link => "link",
            Kind::Tag => "tag",
            Kind::Policy => "policy",
        }
    }

    /// The collection name under `/api/v1/`.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Platform => "platforms",
            Kind::Cloud => "clouds",
            Kind::Site => "sites",
            Kind::Resource => "resources",
            Kind::Link => "links",
            Kind::Tag => "tags",
            Kind::Policy => "policies",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s || k.plural() == s)
    }

    /// Short prefix of generated ids, so an id says what it names.
    pub fn id_prefix(self) -> &'static str {
        match self {
            Kind::Platform => "plt",
            Kind::Cloud => "cld",
            Kind::Site => "site",
            Kind::Resource => "res",
            Kind::Link => "lnk",
            Kind::Tag => "tag",
            Kind::Policy => "pol",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
