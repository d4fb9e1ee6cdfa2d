//! The access rules and decoding every service shares, one copy each (issue #13): who may
//! read a registry object, whether a tenant may see (and be placed on) one, how a stored
//! spec decodes, how validation violations become an error, and effective labels.

use crate::RuntimeState;
use crate::caller::Actor;
use crate::error::{ApiError, ApiResult};
use cpn_api_types::Code;
use cpn_api_types::registry::{Labels, Violations};
use cpn_model::{InheritanceContext, Kind};
use cpn_store::{ListQuery, ObjectRecord, Reference};
use serde::de::DeserializeOwned;
use std::collections::HashMap;

pub fn can_read(who: &Actor, rec: &ObjectRecord) -> bool {
    who.is_operator() || visible_to_tenant(rec.public, &rec.tenant, who.tenant())
}

/// Whether `tenant` may see an object (public, or owned by `owner_tenant`): what a
/// non-operator reads, and where the live binder may place a task of `tenant` (a task never
/// lands on a site its tenant cannot see). The store's `visible_to_tenant` list query is
/// the same rule in SQL.
pub fn visible_to_tenant(public: bool, owner_tenant: &str, tenant: &str) -> bool {
    public || owner_tenant == tenant
}

pub fn violations_to_error(v: Violations) -> ApiResult<()> {
    let mut list = v.list.into_iter();
    match list.next() {
        None => Ok(()),
        Some(first) => {
            let rest: Vec<String> = list
                .map(|x| format!("{}: {}", x.field, x.message))
                .collect();
            let message = if rest.is_empty() {
                first.message
            } else {
                format!("{}; also {}", first.message, rest.join("; "))
            };
            Err(ApiError::field(first.field, message))
        }
    }
}

pub fn decode_spec<S: DeserializeOwned>(rec: &ObjectRecord) -> ApiResult<S> {
    serde_json::from_value(rec.spec.clone()).map_err(|e| {
        ApiError::new(
            Code::Internal,
            format!("stored {} {} does not decode: {e}", rec.kind, rec.id),
        )
    })
}

/// Computes effective labels, fetching each ancestor once per request.
pub struct Inheritance<'a> {
    state: &'a RuntimeState,
    ctx: InheritanceContext,
    cache: HashMap<String, Option<ObjectRecord>>,
}

impl<'a> Inheritance<'a> {
    pub async fn load(state: &'a RuntimeState) -> ApiResult<Inheritance<'a>> {
        let tags = state
            .store
            .list_objects(Kind::Tag, &ListQuery::default())
            .await?;
        let inheritable = tags
            .iter()
            .filter(|t| t.spec.get("inheritable").and_then(|v| v.as_bool()) == Some(true))
            .map(|t| t.name.clone());
        Ok(Inheritance {
            state,
            ctx: InheritanceContext::new(inheritable),
            cache: HashMap::new(),
        })
    }

    async fn fetch(&mut self, r: &Reference) -> ApiResult<Option<ObjectRecord>> {
        if let Some(hit) = self.cache.get(&r.id) {
            return Ok(hit.clone());
        }
        let rec = self.state.store.get_object(r.kind, &r.id).await?;
        self.cache.insert(r.id.clone(), rec.clone());
        Ok(rec)
    }

    /// Ancestors nearest first: a resource's site, then the site's platform and cloud.
    async fn ancestors(&mut self, rec: &ObjectRecord) -> ApiResult<Vec<ObjectRecord>> {
        let mut out = Vec::new();
        let parents: Vec<Reference> = match rec.kind {
            Kind::Site | Kind::Resource => rec
                .refs
                .iter()
                .filter(|r| matches!(r.kind, Kind::Site | Kind::Platform | Kind::Cloud))
                .cloned()
                .collect(),
            _ => Vec::new(),
        };
        for p in parents {
            if let Some(parent) = self.fetch(&p).await? {
                if parent.kind == Kind::Site {
                    let grand = Box::pin(self.ancestors(&parent)).await?;
                    out.push(parent);
                    out.extend(grand);
                } else {
                    out.push(parent);
                }
            }
        }
        Ok(out)
    }

    pub async fn effective(&mut self, rec: &ObjectRecord) -> ApiResult<Labels> {
        let ancestors = self.ancestors(rec).await?;
        let refs: Vec<&Labels> = ancestors.iter().map(|a| &a.labels).collect();
        Ok(self.ctx.effective(&rec.labels, &refs))
    }
}
