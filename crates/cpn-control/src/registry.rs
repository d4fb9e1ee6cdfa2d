//! The registry service (RM-REG, RM-TAG): create, read, list, update and delete of every
//! kind, with validation, references by id or name, ownership, tag-library checks and
//! inherited labels. Handlers are thin; the rules live here, generic over [`RegistryKind`].

use crate::caller::Actor;
use crate::error::{ApiError, ApiResult};
use crate::runtime::RuntimeState;
pub use crate::runtime::access::{
    Inheritance, can_read, decode_spec, violations_to_error, visible_to_tenant,
};
use chrono::Utc;
use cpn_api_types::Code;
use cpn_api_types::Page;
use cpn_api_types::identity::Role;
use cpn_api_types::registry::*;
use cpn_api_types::schedule::{Policy, PolicyCreate, PolicySpec, PolicyUpdate};
use cpn_model::{Kind, Selector};
use cpn_store::{ListQuery, NewObject, ObjectRecord, ObjectUpdate, Reference};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub const DEFAULT_PAGE: usize = 100;
pub const MAX_PAGE: usize = 1000;

/// The create-time parts every kind shares.
pub struct Draft<S> {
    pub name: String,
    pub labels: Labels,
    pub visibility: Option<Visibility>,
    pub tenant: Option<String>,
    pub spec: S,
}

/// The update-time parts every kind shares.
pub struct Revision<S> {
    pub generation: Option<u64>,
    pub labels: Option<Labels>,
    pub visibility: Option<Visibility>,
    pub spec: S,
}

/// The envelope of a stored object, ready to wrap a spec.
pub struct Envelope {
    pub id: String,
    pub name: String,
    pub tenant: String,
    pub owner: String,
    pub visibility: Visibility,
    pub labels: Labels,
    pub effective_labels: Labels,
    pub generation: u64,
    pub created_at: chrono::DateTime<Utc>,
    pub updated_at: chrono::DateTime<Utc>,
}

/// A reference held in a spec: the field path, the kind it must name, and the id or name given.
pub struct SpecRef {
    pub field: &'static str,
    pub kind: Kind,
    pub given: String,
}

/// References of a spec to other objects, and how to rewrite them to resolved ids.
/// Kinds without references keep the defaults.
pub trait SpecRefs {
    fn references(&self) -> Vec<SpecRef> {
        Vec::new()
    }
    fn resolve(&mut self, _field: &str, _id: String) {}
}

impl SpecRefs for PlatformSpec {}

impl SpecRefs for CloudSpec {}

/// A policy's parent is a policy name resolved at scheduling time, not a stored reference:
/// policies are documents that may be written in any order.
impl SpecRefs for cpn_api_types::schedule::PolicySpec {}

impl SpecRefs for TagSpec {}

impl SpecRefs for SiteSpec {
    fn references(&self) -> Vec<SpecRef> {
        let mut out = Vec::new();
        if let Some(p) = &self.platform {
            out.push(SpecRef {
                field: "spec.platform",
                kind: Kind::Platform,
                given: p.clone(),
            });
        }
        if let Some(c) = &self.cloud {
            out.push(SpecRef {
                field: "spec.cloud",
                kind: Kind::Cloud,
                given: c.clone(),
            });
        }
        out
    }
    fn resolve(&mut self, field: &str, id: String) {
        match field {
            "spec.platform" => self.platform = Some(id),
            "spec.cloud" => self.cloud = Some(id),
            _ => {}
        }
    }
}

impl SpecRefs for ResourceSpec {
    fn references(&self) -> Vec<SpecRef> {
        vec![SpecRef {
            field: "spec.site",
            kind: Kind::Site,
            given: self.site.clone(),
        }]
    }
    fn resolve(&mut self, _: &str, id: String) {
        self.site = id;
    }
}

impl SpecRefs for LinkSpec {
    fn references(&self) -> Vec<SpecRef> {
        vec![
            SpecRef {
                field: "spec.from",
                kind: Kind::Site,
                given: self.from.clone(),
            },
            SpecRef {
                field: "spec.to",
                kind: Kind::Site,
                given: self.to.clone(),
            },
        ]
    }
    fn resolve(&mut self, field: &str, id: String) {
        match field {
            "spec.from" => self.from = id,
            "spec.to" => self.to = id,
            _ => {}
        }
    }
}

/// Ties a kind to its wire types.
pub trait RegistryKind: Send + Sync + 'static {
    const KIND: Kind;
    type Spec: Serialize + DeserializeOwned + Validate + SpecRefs + Clone + Send + Sync + 'static;
    type Object: Serialize + Send + 'static;
    type Create: DeserializeOwned + Clone + Send + 'static;
    type Update: DeserializeOwned + Send + 'static;
    fn draft(c: Self::Create) -> Draft<Self::Spec>;
    fn revision(u: Self::Update) -> Revision<Self::Spec>;
    fn object(e: Envelope, spec: Self::Spec) -> Self::Object;
    /// Checks beyond `Validate` that need more than the spec itself (policies compile
    /// their CEL here). Runs before anything is written.
    fn check(_name: &str, _spec: &Self::Spec) -> ApiResult<()> {
        Ok(())
    }
}

macro_rules! registry_kind {
    ($marker:ident, $kind:expr, $obj:ident, $create:ident, $update:ident, $spec:ident) => {
        registry_kind!($marker, $kind, $obj, $create, $update, $spec, {});
    };
    ($marker:ident, $kind:expr, $obj:ident, $create:ident, $update:ident, $spec:ident, { $($extra:item)* }) => {
        pub struct $marker;
        impl RegistryKind for $marker {
            $($extra)*
            const KIND: Kind = $kind;
            type Spec = $spec;
            type Object = $obj;
            type Create = $create;
            type Update = $update;
            fn draft(c: $create) -> Draft<$spec> {
                Draft {
                    name: c.name,
                    labels: c.labels,
                    visibility: c.visibility,
                    tenant: c.tenant,
                    spec: c.spec,
                }
            }
            fn revision(u: $update) -> Revision<$spec> {
                Revision {
                    generation: u.generation,
                    labels: u.labels,
                    visibility: u.visibility,
                    spec: u.spec,
                }
            }
            fn object(e: Envelope, spec: $spec) -> $obj {
                $obj {
                    id: e.id,
                    name: e.name,
                    tenant: e.tenant,
                    owner: e.owner,
                    visibility: e.visibility,
                    labels: e.labels,
                    effective_labels: e.effective_labels,
                    generation: e.generation,
                    created_at: e.created_at,
                    updated_at: e.updated_at,
                    spec,
                }
            }
        }
    };
}

registry_kind!(
    PlatformKind,
    Kind::Platform,
    Platform,
    PlatformCreate,
    PlatformUpdate,
    PlatformSpec
);
registry_kind!(
    CloudKind,
    Kind::Cloud,
    Cloud,
    CloudCreate,
    CloudUpdate,
    CloudSpec
);
registry_kind!(SiteKind, Kind::Site, Site, SiteCreate, SiteUpdate, SiteSpec);
registry_kind!(
    ResourceKind,
    Kind::Resource,
    Resource,
    ResourceCreate,
    ResourceUpdate,
    ResourceSpec
);
registry_kind!(LinkKind, Kind::Link, Link, LinkCreate, LinkUpdate, LinkSpec);
registry_kind!(TagKind, Kind::Tag, Tag, TagCreate, TagUpdate, TagSpec);
registry_kind!(
    PolicyKind,
    Kind::Policy,
    Policy,
    PolicyCreate,
    PolicyUpdate,
    PolicySpec,
    {
        fn check(name: &str, spec: &PolicySpec) -> ApiResult<()> {
            crate::policy::check(name, spec)
        }
    }
);

// ---------------------------------------------------------------- access rules

/// Operators change anything; suppliers change what they own; users change nothing here.
pub fn check_modify(who: &Actor, rec: &ObjectRecord) -> ApiResult<()> {
    if who.is_operator() || (who.role() == Role::Supplier && rec.owner == who.name()) {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "{} {:?} belongs to {}; only its owner or an operator may change it",
        rec.kind, rec.name, rec.owner
    )))
}

fn check_create(who: &Actor, kind: Kind) -> ApiResult<()> {
    let allowed = match who.role() {
        Role::Operator => true,
        Role::Supplier => matches!(kind, Kind::Site | Kind::Resource | Kind::Link),
        // Policies and the tag library shape the whole federation: operators only.
        Role::User => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "role {} may not create {} objects",
            who.role().as_str(),
            kind
        )))
    }
}

/// Finds an object by id, then by name, among those the caller may read. Objects the caller
/// may not read are reported exactly like missing ones, so their existence does not leak.
pub async fn find_visible(
    state: &RuntimeState,
    who: impl Into<Actor>,
    kind: Kind,
    id_or_name: &str,
) -> ApiResult<ObjectRecord> {
    let who: &Actor = &who.into();
    let mut rec = state.store.get_object(kind, id_or_name).await?;
    if rec.is_none() {
        rec = state.store.find_object_by_name(kind, id_or_name).await?;
    }
    match rec {
        Some(r) if can_read(who, &r) => Ok(r),
        _ => Err(ApiError::not_found(kind.as_str(), id_or_name)),
    }
}

// ---------------------------------------------------------------- validation

pub fn validate_spec(spec: &impl Validate) -> ApiResult<()> {
    let mut v = Violations::default();
    spec.validate(&mut v);
    violations_to_error(v)
}

pub fn validate_name(name: &str) -> ApiResult<()> {
    cpn_model::validate_name(name)
        .map_err(|e| ApiError::field("name", format!("invalid name {name:?}: {e}")))
}

/// Checks label syntax, and that each key is a tag of the library that may be applied with
/// this value. Labels already on the object (`previous`) stay valid if their tag is disabled.
pub async fn check_labels(
    state: &RuntimeState,
    labels: &Labels,
    previous: Option<&Labels>,
) -> ApiResult<()> {
    for (key, value) in labels {
        let field = format!("labels.{key}");
        cpn_model::validate_label_key(key)
            .map_err(|e| ApiError::field(&field, format!("invalid label key: {e}")))?;
        cpn_model::validate_label_value(value)
            .map_err(|e| ApiError::field(&field, format!("invalid label value {value:?}: {e}")))?;
        if previous.and_then(|p| p.get(key)) == Some(value) {
            continue;
        }
        let tag = state.store.find_object_by_name(Kind::Tag, key).await?.ok_or_else(|| {
            ApiError::field(
                &field,
                format!("{key:?} is not in the tag library; create the tag first (cpn tag create, or POST /api/v1/tags)"),
            )
        })?;
        let spec: TagSpec = decode_spec(&tag)?;
        check_tag_value(key, &spec, value).map_err(|m| ApiError::field(&field, m))?;
    }
    Ok(())
}

pub fn check_tag_value(key: &str, spec: &TagSpec, value: &str) -> Result<(), String> {
    if spec.status == TagStatus::Disabled {
        return Err(format!(
            "tag {key:?} is disabled; set its status to active to apply it"
        ));
    }
    if let Some(allowed) = &spec.allowed_values
        && !allowed.iter().any(|a| a == value)
    {
        return Err(format!(
            "tag {key:?} allows only {}; got {value:?}",
            allowed.join(", ")
        ));
    }
    Ok(())
}

/// Resolves every reference of `spec` to an id the caller may use, rewriting the spec.
async fn resolve_refs<S: SpecRefs>(
    state: &RuntimeState,
    who: &Actor,
    kind: Kind,
    spec: &mut S,
) -> ApiResult<Vec<Reference>> {
    let mut out = Vec::new();
    let mut owns_any = false;
    let refs = spec.references();
    let n = refs.len();
    for r in refs {
        let target = find_visible(state, who, r.kind, &r.given)
            .await
            .map_err(|_| {
                ApiError::field(
                    r.field,
                    format!("no {} named or with id {:?}", r.kind, r.given),
                )
            })?;
        owns_any |= target.owner == who.name();
        if kind == Kind::Resource && who.role() == Role::Supplier && target.owner != who.name() {
            return Err(ApiError::forbidden(format!(
                "site {:?} belongs to {}; suppliers add resources only to their own sites",
                target.name, target.owner
            )));
        }
        spec.resolve(r.field, target.id.clone());
        out.push(Reference {
            field: r.field.to_string(),
            kind: r.kind,
            id: target.id,
        });
    }
    if kind == Kind::Link && who.role() == Role::Supplier && n > 0 && !owns_any {
        return Err(ApiError::forbidden(
            "suppliers may only link sites of which they own at least one end",
        ));
    }
    Ok(out)
}

// ---------------------------------------------------------------- inheritance

pub async fn to_object<K: RegistryKind>(
    rec: ObjectRecord,
    inh: &mut Inheritance<'_>,
) -> ApiResult<K::Object> {
    let effective_labels = inh.effective(&rec).await?;
    let spec: K::Spec = decode_spec(&rec)?;
    Ok(K::object(
        Envelope {
            id: rec.id,
            name: rec.name,
            tenant: rec.tenant,
            owner: rec.owner,
            visibility: if rec.public {
                Visibility::Public
            } else {
                Visibility::Tenant
            },
            labels: rec.labels,
            effective_labels,
            generation: rec.generation,
            created_at: rec.created_at,
            updated_at: rec.updated_at,
        },
        spec,
    ))
}

// ---------------------------------------------------------------- operations

fn spec_json<S: Serialize>(spec: &S) -> ApiResult<serde_json::Value> {
    serde_json::to_value(spec)
        .map_err(|e| ApiError::new(Code::Internal, format!("encode spec: {e}")))
}

/// Everything about a create except the store write, so scenario loading can check a whole
/// file before writing any of it.
pub async fn check_draft<K: RegistryKind>(
    state: &RuntimeState,
    who: impl Into<Actor>,
    draft: &Draft<K::Spec>,
) -> ApiResult<()> {
    let who: &Actor = &who.into();
    check_create(who, K::KIND)?;
    validate_name(&draft.name)?;
    validate_spec(&draft.spec)?;
    K::check(&draft.name, &draft.spec)?;
    if let Some(t) = &draft.tenant
        && t != who.tenant()
    {
        if !who.is_operator() {
            return Err(ApiError::forbidden(
                "only operators may create objects in another tenant",
            ));
        }
        if state.store.find_tenant(t).await?.is_none() {
            return Err(ApiError::field("tenant", format!("no tenant named {t:?}")));
        }
    }
    Ok(())
}

pub async fn create<K: RegistryKind>(
    state: &RuntimeState,
    who: impl Into<Actor>,
    body: K::Create,
) -> ApiResult<K::Object> {
    let who: &Actor = &who.into();
    let mut draft = K::draft(body);
    check_draft::<K>(state, who, &draft).await?;
    check_labels(state, &draft.labels, None).await?;
    let refs = resolve_refs(state, who, K::KIND, &mut draft.spec).await?;
    let now = Utc::now();
    let rec = state
        .store
        .create_object(NewObject {
            kind: K::KIND,
            name: draft.name,
            tenant: draft.tenant.unwrap_or_else(|| who.tenant().to_string()),
            owner: who.name().to_string(),
            public: draft.visibility.unwrap_or_default() == Visibility::Public,
            labels: draft.labels,
            spec: spec_json(&draft.spec)?,
            refs,
            now,
        })
        .await?;
    state.runtime.federation.registry_changed();
    crate::topology::after_write(state, &rec).await?;
    let mut inh = Inheritance::load(state).await?;
    to_object::<K>(rec, &mut inh).await
}

pub async fn get<K: RegistryKind>(
    state: &RuntimeState,
    who: impl Into<Actor>,
    id_or_name: &str,
) -> ApiResult<K::Object> {
    let who: &Actor = &who.into();
    let rec = find_visible(state, who, K::KIND, id_or_name).await?;
    let mut inh = Inheritance::load(state).await?;
    to_object::<K>(rec, &mut inh).await
}

/// The paging and selector parameters every list shares (parsed at the edge, `query`).
pub struct ListParams {
    pub limit: usize,
    pub cursor: Option<String>,
    pub selector: Selector,
}

/// A registry list: paging and selector, and the kind's own filters.
pub struct ListFilter {
    pub page: ListParams,
    /// The parent objects must hang under: a site for resources and links, a platform or a
    /// cloud for sites.
    pub parent: Option<(Kind, String)>,
    /// Resources of this `type` only.
    pub resource_type: Option<String>,
}

/// Lists the caller's visible objects of a kind that pass `keep` and the selector (matched
/// against effective labels), one page at a time.
pub async fn list_records(
    state: &RuntimeState,
    who: impl Into<Actor>,
    kind: Kind,
    params: &ListParams,
    referencing: Option<String>,
    keep: impl Fn(&ObjectRecord) -> bool,
    inh: &mut Inheritance<'_>,
) -> ApiResult<(Vec<ObjectRecord>, Option<String>)> {
    let who: &Actor = &who.into();
    const BATCH: usize = 500;
    let mut out = Vec::new();
    let mut after = params.cursor.clone();
    loop {
        let batch = state
            .store
            .list_objects(
                kind,
                &ListQuery {
                    visible_to_tenant: (!who.is_operator()).then(|| who.tenant().to_string()),
                    referencing: referencing.clone(),
                    after: after.clone(),
                    limit: Some(BATCH),
                },
            )
            .await?;
        let exhausted = batch.len() < BATCH;
        for rec in batch {
            after = Some(rec.id.clone());
            if !keep(&rec) {
                continue;
            }
            if !params.selector.is_empty() && !params.selector.matches(&inh.effective(&rec).await?)
            {
                continue;
            }
            out.push(rec);
            if out.len() > params.limit {
                out.truncate(params.limit);
                let next = out.last().map(|r| r.id.clone());
                return Ok((out, next));
            }
        }
        if exhausted {
            return Ok((out, None));
        }
    }
}

pub async fn list<K: RegistryKind>(
    state: &RuntimeState,
    who: impl Into<Actor>,
    filter: ListFilter,
) -> ApiResult<Page<K::Object>> {
    let who: &Actor = &who.into();
    let ListFilter {
        page: params,
        parent,
        resource_type,
    } = filter;
    let referencing = match parent {
        Some((kind, given)) => Some(find_visible(state, who, kind, &given).await?.id),
        None => None,
    };
    let mut inh = Inheritance::load(state).await?;
    let (records, next_cursor) = list_records(
        state,
        who,
        K::KIND,
        &params,
        referencing,
        |rec| match &resource_type {
            Some(t) => rec.spec.get("type").and_then(|v| v.as_str()) == Some(t.as_str()),
            None => true,
        },
        &mut inh,
    )
    .await?;
    let mut items = Vec::with_capacity(records.len());
    for rec in records {
        items.push(to_object::<K>(rec, &mut inh).await?);
    }
    Ok(Page { items, next_cursor })
}

/// Picks the generation from the body or `If-Match`; refusing to guess prevents lost updates.
fn expected_generation(body: Option<u64>, if_match: Option<u64>) -> ApiResult<u64> {
    match (body, if_match) {
        (Some(b), Some(h)) if b != h => Err(ApiError::bad_request(format!(
            "generation {b} in the body disagrees with If-Match {h}"
        ))),
        (Some(g), _) | (None, Some(g)) => Ok(g),
        (None, None) => Err(ApiError::new(
            Code::PreconditionRequired,
            "send the generation you read, as `generation` in the body or as If-Match, so a concurrent change is not overwritten",
        )),
    }
}

pub async fn update<K: RegistryKind>(
    state: &RuntimeState,
    who: impl Into<Actor>,
    id_or_name: &str,
    if_match: Option<u64>,
    body: K::Update,
) -> ApiResult<K::Object> {
    let who: &Actor = &who.into();
    let rec = find_visible(state, who, K::KIND, id_or_name).await?;
    let rev = K::revision(body);
    let generation = expected_generation(rev.generation, if_match)?;
    apply_revision::<K>(state, who, rec, generation, rev).await
}

/// Every stored version of an object, oldest first (SC-POL-02 for policies).
pub async fn history<K: RegistryKind>(
    state: &RuntimeState,
    who: impl Into<Actor>,
    id_or_name: &str,
) -> ApiResult<Vec<(u64, chrono::DateTime<Utc>, K::Spec)>> {
    let who: &Actor = &who.into();
    let rec = find_visible(state, who, K::KIND, id_or_name).await?;
    let mut out = Vec::new();
    for h in state.store.object_history(&rec.id).await? {
        let spec: K::Spec = serde_json::from_value(h.spec).map_err(|e| {
            ApiError::new(
                Code::Internal,
                format!("stored version {} of {}: {e}", h.generation, rec.id),
            )
        })?;
        out.push((h.generation, h.at, spec));
    }
    Ok(out)
}

/// Restores the spec of generation `to` as a new generation, guarded like any update.
pub async fn rollback<K: RegistryKind>(
    state: &RuntimeState,
    who: impl Into<Actor>,
    id_or_name: &str,
    to: u64,
    generation: u64,
) -> ApiResult<K::Object> {
    let who: &Actor = &who.into();
    let rec = find_visible(state, who, K::KIND, id_or_name).await?;
    let (_, _, spec) = history::<K>(state, who, &rec.id)
        .await?
        .into_iter()
        .find(|(g, _, _)| *g == to)
        .ok_or_else(|| {
            ApiError::field(
                "to_generation",
                format!("{} {:?} has no generation {to}", K::KIND, rec.name),
            )
        })?;
    let rev = Revision {
        generation: Some(generation),
        labels: None,
        visibility: None,
        spec,
    };
    apply_revision::<K>(state, who, rec, generation, rev).await
}

async fn apply_revision<K: RegistryKind>(
    state: &RuntimeState,
    who: &Actor,
    rec: ObjectRecord,
    generation: u64,
    mut rev: Revision<K::Spec>,
) -> ApiResult<K::Object> {
    check_modify(who, &rec)?;
    if K::KIND == Kind::Tag {
        let current: TagSpec = decode_spec(&rec)?;
        if !current.operations.contains(&TagOperation::Modify) {
            return Err(ApiError::forbidden(format!(
                "tag {:?} does not allow modify",
                rec.name
            )));
        }
    }
    validate_spec(&rev.spec)?;
    K::check(&rec.name, &rev.spec)?;
    let labels = rev.labels.take().unwrap_or_else(|| rec.labels.clone());
    check_labels(state, &labels, Some(&rec.labels)).await?;
    let refs = resolve_refs(state, who, K::KIND, &mut rev.spec).await?;
    let public = match rev.visibility {
        Some(v) => v == Visibility::Public,
        None => rec.public,
    };
    let updated = state
        .store
        .update_object(ObjectUpdate {
            kind: K::KIND,
            id: rec.id.clone(),
            expected_generation: generation,
            labels,
            public,
            spec: spec_json(&rev.spec)?,
            refs,
            now: Utc::now(),
        })
        .await?;
    state.runtime.federation.registry_changed();
    if updated.spec != rec.spec {
        crate::topology::after_write(state, &updated).await?;
    }
    let mut inh = Inheritance::load(state).await?;
    to_object::<K>(updated, &mut inh).await
}

pub async fn delete<K: RegistryKind>(
    state: &RuntimeState,
    who: impl Into<Actor>,
    id_or_name: &str,
    if_match: Option<u64>,
) -> ApiResult<()> {
    let who: &Actor = &who.into();
    let rec = find_visible(state, who, K::KIND, id_or_name).await?;
    check_modify(who, &rec)?;
    if K::KIND == Kind::Tag {
        let spec: TagSpec = decode_spec(&rec)?;
        if !spec.operations.contains(&TagOperation::Delete) {
            return Err(ApiError::forbidden(format!(
                "tag {:?} does not allow delete",
                rec.name
            )));
        }
        let users = objects_labelled(state, &rec.name).await?;
        if users > 0 {
            return Err(ApiError::new(
                Code::InUse,
                format!(
                    "tag {:?} is applied to {users} object(s); remove it from them first",
                    rec.name
                ),
            ));
        }
    }
    state
        .store
        .delete_object(K::KIND, &rec.id, if_match)
        .await?;
    state.runtime.federation.registry_changed();
    Ok(())
}

async fn objects_labelled(state: &RuntimeState, key: &str) -> ApiResult<usize> {
    let mut n = 0;
    for kind in Kind::ALL {
        n += state
            .store
            .list_objects(kind, &ListQuery::default())
            .await?
            .iter()
            .filter(|o| o.labels.contains_key(key))
            .count();
    }
    Ok(n)
}

// ---------------------------------------------------------------- batch tagging (RM-TAG-02)

/// Resolves the targets of a batch tagging call: listed refs and/or a kind+selector query.
async fn tagging_targets(
    state: &RuntimeState,
    who: &Actor,
    targets: &[ObjectRef],
    kind: Option<&str>,
    selector: Option<&str>,
) -> ApiResult<Vec<ObjectRecord>> {
    let mut out = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let kind = Kind::parse(&t.kind)
            .filter(|k| *k != Kind::Tag)
            .ok_or_else(|| {
                ApiError::field(
                    format!("targets[{i}].kind"),
                    format!(
                        "unknown kind {:?}; use platform, cloud, site, resource or link",
                        t.kind
                    ),
                )
            })?;
        let rec = find_visible(state, who, kind, &t.id).await.map_err(|_| {
            ApiError::field(
                format!("targets[{i}].id"),
                format!("no {kind} named or with id {:?}", t.id),
            )
        })?;
        check_modify(who, &rec)?;
        out.push(rec);
    }
    match (kind, selector) {
        (None, None) => {}
        (Some(k), Some(s)) => {
            let kind = Kind::parse(k).filter(|k| *k != Kind::Tag).ok_or_else(|| {
                ApiError::field(
                    "kind",
                    format!("unknown kind {k:?}; use platform, cloud, site, resource or link"),
                )
            })?;
            let selector =
                Selector::parse(s).map_err(|e| ApiError::field("selector", e.to_string()))?;
            let params = ListParams {
                limit: usize::MAX - 1,
                cursor: None,
                selector,
            };
            let mut inh = Inheritance::load(state).await?;
            let (recs, _) = list_records(
                state,
                who,
                kind,
                &params,
                None,
                |r| check_modify(who, r).is_ok(),
                &mut inh,
            )
            .await?;
            out.extend(recs);
        }
        _ => {
            return Err(ApiError::field(
                if kind.is_none() { "kind" } else { "selector" },
                "kind and selector go together",
            ));
        }
    }
    if out.is_empty() && targets.is_empty() && kind.is_none() {
        return Err(ApiError::field(
            "targets",
            "name at least one target, or a kind and a selector",
        ));
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out.dedup_by(|a, b| a.id == b.id);
    Ok(out)
}

pub async fn apply_tag(
    state: &RuntimeState,
    who: impl Into<Actor>,
    tag: &str,
    body: ApplyTag,
) -> ApiResult<TaggingResult> {
    let who: &Actor = &who.into();
    let tag_rec = find_visible(state, who, Kind::Tag, tag).await?;
    let spec: TagSpec = decode_spec(&tag_rec)?;
    cpn_model::validate_label_value(&body.value)
        .map_err(|e| ApiError::field("value", e.to_string()))?;
    check_tag_value(&tag_rec.name, &spec, &body.value).map_err(|m| ApiError::field("value", m))?;
    let targets = tagging_targets(
        state,
        who,
        &body.targets,
        body.kind.as_deref(),
        body.selector.as_deref(),
    )
    .await?;
    change(state, &tag_rec.name, Some(body.value), targets).await
}

pub async fn remove_tag(
    state: &RuntimeState,
    who: impl Into<Actor>,
    tag: &str,
    body: RemoveTag,
) -> ApiResult<TaggingResult> {
    let who: &Actor = &who.into();
    let tag_rec = find_visible(state, who, Kind::Tag, tag).await?;
    let targets = tagging_targets(
        state,
        who,
        &body.targets,
        body.kind.as_deref(),
        body.selector.as_deref(),
    )
    .await?;
    change(state, &tag_rec.name, None, targets).await
}

async fn change(
    state: &RuntimeState,
    key: &str,
    value: Option<String>,
    targets: Vec<ObjectRecord>,
) -> ApiResult<TaggingResult> {
    let now = Utc::now();
    let changes = targets
        .into_iter()
        .map(|t| cpn_store::LabelChange {
            kind: t.kind,
            id: t.id,
            key: key.to_string(),
            value: value.clone(),
            now,
        })
        .collect();
    let s = state.store.change_labels(changes).await?;
    state.runtime.federation.registry_changed();
    Ok(TaggingResult {
        changed: s.changed,
        unchanged: s.unchanged,
    })
}
