//! A scenario: a whole federation in one document, loaded by `cpn scenario load` and by
//! `cpn serve` on a new data dir. Items are created in the order of the fields below, so
//! references (a site's platform, a resource's site, a link's ends) resolve by name.

use crate::registry::{
    CloudCreate, LinkCreate, PlatformCreate, ResourceCreate, SiteCreate, TagCreate,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<TagCreate>,
    #[serde(default)]
    pub platforms: Vec<PlatformCreate>,
    #[serde(default)]
    pub clouds: Vec<CloudCreate>,
    #[serde(default)]
    pub sites: Vec<SiteCreate>,
    #[serde(default)]
    pub resources: Vec<ResourceCreate>,
    #[serde(default)]
    pub links: Vec<LinkCreate>,
}

/// What loading a scenario did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ScenarioReport {
    pub created: u64,
    /// Items whose name existed already; they are left as they are.
    pub skipped: u64,
}
