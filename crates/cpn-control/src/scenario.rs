//! Loading a scenario: a whole federation described in one document, checked as a whole
//! before anything is written, then created item by item in dependency order.

use crate::caller::Actor;
use crate::error::{ApiError, ApiResult};
use crate::registry::{
    self, CloudKind, LinkKind, PlatformKind, RegistryKind, ResourceKind, SiteKind, SpecRefs,
    TagKind, check_draft, check_tag_value,
};
use crate::state::Control;
use cpn_api_types::Code;
use cpn_api_types::registry::{Labels, TagSpec};
use cpn_api_types::scenario::{Scenario, ScenarioReport};
use cpn_model::Kind;
use std::collections::{HashMap, HashSet};

/// The demo federation bundled into the binary.
pub const DEMO_SCENARIO: &str = include_str!("../../../scenarios/east-data-west-compute.yaml");
/// The setting that says the data dir holds the bundled demo (written when it is loaded;
/// `cpn serve` then runs emulated nodes for its sites).
pub const DEMO_SETTING: &str = "demo_scenario";

/// Parses scenario YAML, naming the path of a bad field (`sites[3].spec.location.lat`).
pub fn parse_yaml(text: &str) -> ApiResult<Scenario> {
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        ApiError::field(
            if path == "." {
                "scenario".to_string()
            } else {
                path
            },
            e.into_inner().to_string(),
        )
    })
}

/// Names the document defines, so references to items created earlier in the same load
/// are accepted by the up-front check.
struct Planned {
    names: HashMap<Kind, HashSet<String>>,
    tags: HashMap<String, TagSpec>,
}

impl Planned {
    fn has(&self, kind: Kind, name: &str) -> bool {
        self.names.get(&kind).is_some_and(|s| s.contains(name))
    }
}

async fn check_labels(state: &Control, planned: &Planned, labels: &Labels) -> ApiResult<()> {
    for (key, value) in labels {
        let field = format!("labels.{key}");
        if let Some(spec) = planned.tags.get(key) {
            check_tag_value(key, spec, value).map_err(|m| ApiError::field(&field, m))?;
        } else {
            registry::check_labels(state, &Labels::from([(key.clone(), value.clone())]), None)
                .await?;
        }
    }
    Ok(())
}

async fn check_section<K: RegistryKind>(
    state: &Control,
    who: &Actor,
    planned: &Planned,
    section: &str,
    items: &[K::Create],
) -> ApiResult<()> {
    for (i, item) in items.iter().enumerate() {
        let at = format!("{section}[{i}]");
        let draft = K::draft(item.clone());
        check_draft::<K>(state, who, &draft)
            .await
            .map_err(|e| e.within(&at))?;
        check_labels(state, planned, &draft.labels)
            .await
            .map_err(|e| e.within(&at))?;
        for r in draft.spec.references() {
            if planned.has(r.kind, &r.given) {
                continue;
            }
            if registry::find_visible(state, who, r.kind, &r.given)
                .await
                .is_err()
            {
                return Err(ApiError::field(
                    format!("{at}.{}", r.field),
                    format!(
                        "no {} named {:?} in this scenario or the registry",
                        r.kind, r.given
                    ),
                ));
            }
        }
    }
    Ok(())
}

async fn apply_section<K: RegistryKind>(
    state: &Control,
    who: &Actor,
    section: &str,
    items: Vec<K::Create>,
    report: &mut ScenarioReport,
) -> ApiResult<()> {
    for (i, item) in items.into_iter().enumerate() {
        match registry::create::<K>(state, who, item).await {
            Ok(_) => report.created += 1,
            Err(e) if e.code == Code::AlreadyExists => report.skipped += 1,
            Err(e) => return Err(e.within(&format!("{section}[{i}]"))),
        }
    }
    Ok(())
}

pub async fn load(
    state: &Control,
    who: impl Into<Actor>,
    s: Scenario,
) -> ApiResult<ScenarioReport> {
    let who: &Actor = &who.into();
    let mut names: HashMap<Kind, HashSet<String>> = HashMap::new();
    names.insert(
        Kind::Platform,
        s.platforms.iter().map(|x| x.name.clone()).collect(),
    );
    names.insert(
        Kind::Cloud,
        s.clouds.iter().map(|x| x.name.clone()).collect(),
    );
    names.insert(Kind::Site, s.sites.iter().map(|x| x.name.clone()).collect());
    let planned = Planned {
        names,
        tags: s
            .tags
            .iter()
            .map(|t| (t.name.clone(), t.spec.clone()))
            .collect(),
    };

    check_section::<TagKind>(state, who, &planned, "tags", &s.tags).await?;
    check_section::<PlatformKind>(state, who, &planned, "platforms", &s.platforms).await?;
    check_section::<CloudKind>(state, who, &planned, "clouds", &s.clouds).await?;
    check_section::<SiteKind>(state, who, &planned, "sites", &s.sites).await?;
    check_section::<ResourceKind>(state, who, &planned, "resources", &s.resources).await?;
    check_section::<LinkKind>(state, who, &planned, "links", &s.links).await?;

    let mut report = ScenarioReport::default();
    apply_section::<TagKind>(state, who, "tags", s.tags, &mut report).await?;
    apply_section::<PlatformKind>(state, who, "platforms", s.platforms, &mut report).await?;
    apply_section::<CloudKind>(state, who, "clouds", s.clouds, &mut report).await?;
    apply_section::<SiteKind>(state, who, "sites", s.sites, &mut report).await?;
    apply_section::<ResourceKind>(state, who, "resources", s.resources, &mut report).await?;
    apply_section::<LinkKind>(state, who, "links", s.links, &mut report).await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_parses() {
        let s = parse_yaml(DEMO_SCENARIO).unwrap();
        assert_eq!(s.sites.len(), 10);
    }

    #[test]
    fn bad_field_is_named_by_path() {
        let e = parse_yaml("name: x\nsites:\n  - name: a\n    spec: {region: r, supplier: s, location: {lat: north, lon: 1}}\n")
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("sites[0].spec.location.lat"));
    }
}
