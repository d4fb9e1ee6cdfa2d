//! Design (DO-TPL, DO-RES): the template marketplace. Templates are documents in the
//! `templates` collection; every change is an immutable version (the document store keeps
//! them), states go draft → published → offline. Plans and instruction sets are in
//! [`plans`].
//!
//! Visibility: operators see every template; others see published ones and those of
//! their own tenant. Users and suppliers create drafts; only operators and suppliers may
//! publish or withdraw (a supplier only its own tenant's).

pub mod plans;

use crate::caller::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::Control;
use chrono::Utc;
use cpn_api_types::Code;
use cpn_api_types::design::{
    Recommendation, TemplateCreate, TemplateRollback, TemplateUpdate, TemplateVersionView,
    TemplateView, VersionOnly,
};
use cpn_api_types::identity::Role;
use cpn_store::{DocQuery, DocRecord};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const TEMPLATES: &str = "templates";
pub const PLANS: &str = "plans";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct TemplateBody {
    category: String,
    tags: Vec<String>,
    description: String,
    source: String,
    usage_count: u64,
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(Code::Internal, e.to_string())
}

fn body_of(r: &DocRecord) -> TemplateBody {
    serde_json::from_value(r.body.clone()).unwrap_or_default()
}

fn view(r: &DocRecord) -> TemplateView {
    let b = body_of(r);
    TemplateView {
        id: r.id.clone(),
        name: r.name.clone(),
        category: b.category,
        tags: b.tags,
        description: b.description,
        state: r.state.clone(),
        version: r.version,
        tenant: r.tenant.clone(),
        owner: r.owner.clone(),
        usage_count: b.usage_count,
        source: b.source,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

/// Every template issue as one 422, each `path: reason` (the first path in `field`).
pub fn issues_error(issues: &[cpn_template::Issue]) -> ApiError {
    let text: Vec<String> = issues.iter().map(|i| i.to_string()).collect();
    ApiError {
        code: Code::InvalidField,
        message: format!("{} error(s): {}", issues.len(), text.join("; ")),
        field: issues.first().map(|i| i.path.clone()),
    }
}

fn check_source(source: &str) -> ApiResult<cpn_template::Template> {
    cpn_template::check(source).map_err(|i| issues_error(&i).within("source"))
}

fn visible(who: &Caller, r: &DocRecord) -> bool {
    who.is_operator() || r.state == "published" || r.tenant == who.tenant
}

fn may_change(who: &Caller, r: &DocRecord) -> bool {
    who.is_operator()
        || (r.tenant == who.tenant && (r.owner == who.username || who.role == Role::Supplier))
}

pub(crate) async fn load(state: &Control, who: &Caller, id: &str) -> ApiResult<DocRecord> {
    match state.store.get_doc(TEMPLATES, id).await? {
        Some(r) if visible(who, &r) => Ok(r),
        _ => Err(ApiError::not_found("template", id)),
    }
}

fn check_meta(name: &str, tags: &[String]) -> ApiResult<()> {
    if name.trim().is_empty() || name.len() > 128 {
        return Err(ApiError::field(
            "name",
            "a name of 1 to 128 characters is required",
        ));
    }
    if tags.len() > 32 || tags.iter().any(|t| t.is_empty() || t.len() > 64) {
        return Err(ApiError::field(
            "tags",
            "at most 32 tags of 1 to 64 characters",
        ));
    }
    Ok(())
}

pub async fn list(state: &Control, who: &Caller) -> ApiResult<Vec<TemplateView>> {
    let docs = state
        .store
        .list_docs(TEMPLATES, DocQuery::default())
        .await?;
    Ok(docs.iter().filter(|r| visible(who, r)).map(view).collect())
}

pub async fn get(state: &Control, who: &Caller, id: &str) -> ApiResult<TemplateView> {
    Ok(view(&load(state, who, id).await?))
}

pub async fn create(state: &Control, who: &Caller, req: TemplateCreate) -> ApiResult<TemplateView> {
    check_meta(&req.name, &req.tags)?;
    check_source(&req.source)?;
    let now = Utc::now();
    let body = TemplateBody {
        category: req.category,
        tags: req.tags,
        description: req.description,
        source: req.source,
        usage_count: 0,
    };
    let r = state
        .store
        .create_doc(
            DocRecord {
                collection: TEMPLATES.into(),
                id: uuid::Uuid::now_v7().to_string(),
                tenant: who.tenant.clone(),
                owner: who.username.clone(),
                name: req.name,
                state: "draft".into(),
                version: 1,
                created_at: now,
                updated_at: now,
                body: serde_json::to_value(body).map_err(internal)?,
            },
            vec![],
        )
        .await?;
    Ok(view(&r))
}

async fn write(state: &Control, mut r: DocRecord, b: &TemplateBody) -> ApiResult<DocRecord> {
    r.body = serde_json::to_value(b).map_err(internal)?;
    r.updated_at = Utc::now();
    Ok(state.store.update_doc(r, vec![]).await?)
}

fn stale(r: &DocRecord, version: u64) -> ApiResult<()> {
    if r.version != version {
        return Err(ApiError::new(
            Code::GenerationConflict,
            format!(
                "template {} is at version {}, not {version}; read it again and retry",
                r.id, r.version
            ),
        ));
    }
    Ok(())
}

pub async fn update(
    state: &Control,
    who: &Caller,
    id: &str,
    req: TemplateUpdate,
) -> ApiResult<TemplateView> {
    let mut r = load(state, who, id).await?;
    if !may_change(who, &r) {
        return Err(ApiError::forbidden(
            "only the owner or an operator may change a template",
        ));
    }
    stale(&r, req.version)?;
    let mut b = body_of(&r);
    if let Some(s) = req.source {
        check_source(&s)?;
        b.source = s;
    }
    if let Some(n) = req.name {
        r.name = n;
    }
    if let Some(c) = req.category {
        b.category = c;
    }
    if let Some(t) = req.tags {
        b.tags = t;
    }
    if let Some(d) = req.description {
        b.description = d;
    }
    check_meta(&r.name, &b.tags)?;
    Ok(view(&write(state, r, &b).await?))
}

pub async fn delete(state: &Control, who: &Caller, id: &str) -> ApiResult<()> {
    let r = load(state, who, id).await?;
    if !may_change(who, &r) {
        return Err(ApiError::forbidden(
            "only the owner or an operator may delete a template",
        ));
    }
    state.store.delete_doc(TEMPLATES, id).await?;
    Ok(())
}

pub async fn versions(
    state: &Control,
    who: &Caller,
    id: &str,
) -> ApiResult<Vec<TemplateVersionView>> {
    let r = load(state, who, id).await?;
    let hist = state.store.doc_history(TEMPLATES, id).await?;
    Ok(hist
        .into_iter()
        .map(|v| {
            let b: TemplateBody = serde_json::from_value(v.body).unwrap_or_default();
            TemplateVersionView {
                version: v.version,
                at: v.at,
                state: v.state,
                name: r.name.clone(),
                source: b.source,
            }
        })
        .collect())
}

/// Makes a new version whose content (source, description, category, tags) is that of
/// `to_version`; the usage count and state stay as they are.
pub async fn rollback(
    state: &Control,
    who: &Caller,
    id: &str,
    req: TemplateRollback,
) -> ApiResult<TemplateView> {
    let r = load(state, who, id).await?;
    if !may_change(who, &r) {
        return Err(ApiError::forbidden(
            "only the owner or an operator may roll a template back",
        ));
    }
    stale(&r, req.version)?;
    let hist = state.store.doc_history(TEMPLATES, id).await?;
    let Some(old) = hist.into_iter().find(|v| v.version == req.to_version) else {
        return Err(ApiError::field(
            "to_version",
            format!("template {id} has no version {}", req.to_version),
        ));
    };
    let old: TemplateBody = serde_json::from_value(old.body).unwrap_or_default();
    let cur = body_of(&r);
    let b = TemplateBody {
        usage_count: cur.usage_count,
        ..old
    };
    Ok(view(&write(state, r, &b).await?))
}

/// Publishes (`to = "published"`) or withdraws (`"offline"`) a template.
pub async fn set_state(
    state: &Control,
    who: &Caller,
    id: &str,
    to: &str,
    req: VersionOnly,
) -> ApiResult<TemplateView> {
    if who.role == Role::User {
        return Err(ApiError::forbidden(
            "only operators and suppliers may publish or withdraw templates",
        ));
    }
    let mut r = load(state, who, id).await?;
    if !who.is_operator() && r.tenant != who.tenant {
        return Err(ApiError::forbidden(
            "suppliers may publish or withdraw only their own tenant's templates",
        ));
    }
    if let Some(v) = req.version {
        stale(&r, v)?;
    }
    if r.state == to {
        return Ok(view(&r));
    }
    r.state = to.to_string();
    r.updated_at = Utc::now();
    Ok(view(&state.store.update_doc(r, vec![]).await?))
}

/// Counts one more plan made from the template (retrying on a concurrent change).
pub(crate) async fn count_usage(state: &Control, id: &str) -> ApiResult<()> {
    for _ in 0..5 {
        let Some(r) = state.store.get_doc(TEMPLATES, id).await? else {
            return Ok(());
        };
        let mut b = body_of(&r);
        b.usage_count += 1;
        match write(state, r, &b).await {
            Ok(_) => return Ok(()),
            Err(e) if e.code == Code::GenerationConflict => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Ranks published templates for the caller.
///
/// How it works: the caller's history is the set of planning requests they made (collection
/// `plans`, owner = caller; the alternatives of one request count once). Each template they
/// planned from contributes its category and tags. A published template scores
/// `3 × (requests the caller made in its category) + Σ over its tags of (requests the
/// caller made with that tag)`, plus `ln(1 + usage_count)` for popularity
/// across all users. Ties go to the more used, then by name. A caller without history
/// gets the most popular first. `reasons` names each contribution.
pub async fn recommended(state: &Control, who: &Caller) -> ApiResult<Vec<Recommendation>> {
    let templates = state
        .store
        .list_docs(TEMPLATES, DocQuery::default())
        .await?;
    let by_id: BTreeMap<&str, &DocRecord> = templates.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut categories: BTreeMap<String, u64> = BTreeMap::new();
    let mut tags: BTreeMap<String, u64> = BTreeMap::new();
    let plans = state.store.list_docs(PLANS, DocQuery::default()).await?;
    // One planning request makes a group of alternative plans: it counts once.
    let mut seen = std::collections::BTreeSet::new();
    for p in plans
        .iter()
        .filter(|p| p.owner == who.username && p.tenant == who.tenant)
    {
        let Some(tid) = p.body.get("template_id").and_then(|v| v.as_str()) else {
            continue;
        };
        let group = p
            .body
            .get("group")
            .and_then(|v| v.as_str())
            .unwrap_or(&p.id);
        if !seen.insert(group.to_string()) {
            continue;
        }
        if let Some(t) = by_id.get(tid) {
            let b = body_of(t);
            *categories.entry(b.category).or_default() += 1;
            for tag in b.tags {
                *tags.entry(tag).or_default() += 1;
            }
        }
    }
    let mut out: Vec<Recommendation> = templates
        .iter()
        .filter(|r| r.state == "published")
        .map(|r| {
            let t = view(r);
            let mut reasons = Vec::new();
            let mut score = 0.0;
            if let Some(&n) = categories.get(&t.category) {
                score += 3.0 * n as f64;
                reasons.push(format!(
                    "you planned {n} time(s) in category {:?}",
                    t.category
                ));
            }
            for tag in &t.tags {
                if let Some(&n) = tags.get(tag) {
                    score += n as f64;
                    reasons.push(format!("you planned {n} time(s) with tag {tag:?}"));
                }
            }
            score += (1.0 + t.usage_count as f64).ln();
            reasons.push(format!("used in {} plan(s) overall", t.usage_count));
            Recommendation {
                template: t,
                score: (score * 1000.0).round() / 1000.0,
                reasons,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.template.usage_count.cmp(&a.template.usage_count))
            .then(a.template.name.cmp(&b.template.name))
    });
    Ok(out)
}

/// Loads the base templates of `cpn_template::BASE_TEMPLATES` as published, once: each
/// has a fixed id, so a later start finds it and leaves it (and any edits) alone.
pub async fn load_base_templates(state: &Control) -> anyhow::Result<()> {
    for (name, category, tags, source) in cpn_template::BASE_TEMPLATES {
        let id = format!("base-{name}");
        if state.store.get_doc(TEMPLATES, &id).await?.is_some() {
            continue;
        }
        let t = cpn_template::parse(source).map_err(|e| anyhow::anyhow!("{name}: {e:?}"))?;
        let now = Utc::now();
        let body = TemplateBody {
            category: category.to_string(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            description: t.description.unwrap_or_default(),
            source: source.to_string(),
            usage_count: 0,
        };
        state
            .store
            .create_doc(
                DocRecord {
                    collection: TEMPLATES.into(),
                    id,
                    tenant: "system".into(),
                    owner: "cpn".into(),
                    name: name.to_string(),
                    state: "published".into(),
                    version: 1,
                    created_at: now,
                    updated_at: now,
                    body: serde_json::to_value(body)?,
                },
                vec![],
            )
            .await?;
    }
    Ok(())
}
