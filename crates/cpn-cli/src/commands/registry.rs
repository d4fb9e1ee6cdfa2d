//! The verbs every registry kind shares (`list`, `get`, `create`, `update`, `delete`) and
//! the table layout of each kind, scheduling policies included.

use super::Ctx;
use crate::cli::{ListArgs, RegistryCmd};
use crate::client::{ApiError, decode};
use crate::input;
use crate::output::{self, labels, num, or_dash, wire, wire_list, yes_no};
use anyhow::{Context, Result, bail};
use comfy_table::Table;
use cpn_api_types::registry::{Cloud, Link, Platform, Resource, Site, Tag};
use cpn_api_types::schedule::{MatchRules, Policy, PolicyScope};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Platform,
    Cloud,
    Site,
    Resource,
    Link,
    Tag,
    Policy,
}

impl Kind {
    pub fn name(self) -> &'static str {
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

    /// The collection segment of the REST path.
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

    /// Parses a kind name, singular or plural.
    pub fn parse(s: &str) -> Option<Kind> {
        [
            Kind::Platform,
            Kind::Cloud,
            Kind::Site,
            Kind::Resource,
            Kind::Link,
            Kind::Tag,
            Kind::Policy,
        ]
        .into_iter()
        .find(|k| s == k.name() || s == k.plural())
    }
}

pub async fn run(ctx: &Ctx, kind: Kind, cmd: RegistryCmd) -> Result<()> {
    match cmd {
        RegistryCmd::List(args) => list(ctx, kind, args).await,
        RegistryCmd::Get { name } => get(ctx, kind, &name).await,
        RegistryCmd::Create { file } => create(ctx, kind, &file).await,
        RegistryCmd::Update { name, file } => update(ctx, kind, &name, &file).await,
        RegistryCmd::Delete { name } => delete(ctx, kind, &name).await,
    }
}

async fn list(ctx: &Ctx, kind: Kind, args: ListArgs) -> Result<()> {
    let mut query = Vec::new();
    if let Some(sel) = args.selector {
        query.push(("selector", sel));
    }
    if let Some(limit) = args.limit {
        query.push(("limit", limit.to_string()));
    }
    let all = args.all || args.limit.is_none();
    let (items, next) = ctx
        .client
        .list(&["api", "v1", kind.plural()], query, args.cursor, all)
        .await?;
    if !ctx.table() {
        let mut page = Map::new();
        page.insert("items".into(), Value::Array(items));
        if let Some(next) = next {
            page.insert("next_cursor".into(), Value::String(next));
        }
        return output::print_raw(ctx.output, &Value::Object(page));
    }
    if items.is_empty() {
        eprintln!("no {} found", kind.plural());
    } else {
        let names = Names::for_kind(ctx, kind).await;
        output::print_table(&table(kind, &items, &names)?)?;
    }
    if let Some(next) = next {
        eprintln!(
            "more {} follow: pass --all, or --cursor {next}",
            kind.plural()
        );
    }
    Ok(())
}

async fn get(ctx: &Ctx, kind: Kind, name: &str) -> Result<()> {
    let value = ctx
        .client
        .get(&["api", "v1", kind.plural(), name], &[])
        .await?;
    if !ctx.table() {
        return output::print_raw(ctx.output, &value);
    }
    let names = Names::for_kind(ctx, kind).await;
    output::print_table(&table(kind, std::slice::from_ref(&value), &names)?)
}

async fn create(ctx: &Ctx, kind: Kind, file: &str) -> Result<()> {
    let input = input::read(file)?;
    let items = input::objects(&input)?;
    let total = items.len();
    let mut created = Vec::with_capacity(total);
    for (i, item) in items.iter().enumerate() {
        let name = item.get("name").and_then(Value::as_str).unwrap_or("?");
        let value = ctx
            .client
            .post(&["api", "v1", kind.plural()], item)
            .await
            .with_context(|| {
                let mut what = format!("{}: creating {} `{name}`", input.label, kind.name());
                if total > 1 {
                    what.push_str(&format!(
                        " (item {} of {total}; {} created before it)",
                        i + 1,
                        created.len()
                    ));
                }
                what
            })?;
        if ctx.table() {
            let (name, generation) = envelope(&value, name);
            output::emit(&format!(
                "{}/{name} created (generation {generation})",
                kind.name()
            ))?;
        }
        created.push(value);
    }
    if !ctx.table() {
        let value = if created.len() == 1 {
            created.remove(0)
        } else {
            Value::Array(created)
        };
        output::print_raw(ctx.output, &value)?;
    }
    Ok(())
}

/// The fields an update sends, taken from an update document or a full object.
const UPDATE_FIELDS: [&str; 4] = ["generation", "labels", "visibility", "spec"];

fn update_body(kind: Kind, name: &str, label: &str, doc: &Map<String, Value>) -> Result<Value> {
    let mut body = Map::new();
    for key in UPDATE_FIELDS {
        if let Some(v) = doc.get(key).filter(|v| !v.is_null()) {
            body.insert(key.to_owned(), v.clone());
        }
    }
    if !body.contains_key("spec") {
        bail!(
            "{label}: no `spec` found: give an update (generation, labels, visibility, spec) or \
             a full object as printed by `cpn {} get {name} -o yaml`",
            kind.name()
        );
    }
    let names_other = |key: &str| {
        doc.get(key)
            .and_then(Value::as_str)
            .is_some_and(|v| v != name)
    };
    if doc.contains_key("name") && names_other("name") && names_other("id") {
        tracing::warn!(
            "{label} describes {} `{}` but `{name}` is updated (names cannot change)",
            kind.name(),
            doc["name"].as_str().unwrap_or("?")
        );
    }
    Ok(Value::Object(body))
}

async fn update(ctx: &Ctx, kind: Kind, name: &str, file: &str) -> Result<()> {
    let input = input::read(file)?;
    let doc = input::single_object(&input)?;
    let body = update_body(kind, name, &input.label, &doc)?;
    let value = match ctx
        .client
        .put(&["api", "v1", kind.plural(), name], &body)
        .await
    {
        Ok(v) => v,
        Err(mut e) => {
            if let Some(api) = e
                .downcast_mut::<ApiError>()
                .filter(|api| api.code == "precondition_required")
            {
                api.hint = Some(format!(
                    "add the `generation:` you read to {}: `cpn {} get {name} -o yaml` prints it",
                    input.label,
                    kind.name()
                ));
            }
            return Err(e.context(format!("updating {} `{name}`", kind.name())));
        }
    };
    if !ctx.table() {
        return output::print_raw(ctx.output, &value);
    }
    let (name, generation) = envelope(&value, name);
    output::emit(&format!(
        "{}/{name} updated (generation {generation})",
        kind.name()
    ))
}

async fn delete(ctx: &Ctx, kind: Kind, name: &str) -> Result<()> {
    let value = ctx
        .client
        .delete(&["api", "v1", kind.plural(), name])
        .await?;
    if !ctx.table() && !value.is_null() {
        return output::print_raw(ctx.output, &value);
    }
    if ctx.table() {
        output::emit(&format!("{}/{name} deleted", kind.name()))?;
    }
    Ok(())
}

/// Name and generation of an object the server returned, for confirmations.
fn envelope(value: &Value, fallback: &str) -> (String, String) {
    let name = value
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or(fallback)
        .to_owned();
    let generation = value
        .get("generation")
        .map(Value::to_string)
        .unwrap_or_else(|| "?".to_owned());
    (name, generation)
}

/// Id-to-name maps of the kinds a table refers to, so tables show names, not ids.
#[derive(Default)]
pub struct Names {
    platforms: HashMap<String, String>,
    sites: HashMap<String, String>,
}

impl Names {
    async fn for_kind(ctx: &Ctx, kind: Kind) -> Names {
        let mut names = Names::default();
        match kind {
            Kind::Site => names.platforms = id_names(ctx, Kind::Platform).await,
            Kind::Resource | Kind::Link => names.sites = id_names(ctx, Kind::Site).await,
            _ => {}
        }
        names
    }

    fn platform(&self, id: Option<&str>) -> String {
        resolve(&self.platforms, id)
    }

    fn site(&self, id: &str) -> String {
        resolve(&self.sites, Some(id))
    }
}

fn resolve(map: &HashMap<String, String>, id: Option<&str>) -> String {
    match id {
        Some(id) => map.get(id).cloned().unwrap_or_else(|| id.to_owned()),
        None => "-".to_owned(),
    }
}

/// Lists a kind once to map ids to names. Failure (no permission, say) only means ids are
/// shown instead.
async fn id_names(ctx: &Ctx, kind: Kind) -> HashMap<String, String> {
    match ctx
        .client
        .list(&["api", "v1", kind.plural()], Vec::new(), None, true)
        .await
    {
        Ok((items, _)) => items
            .iter()
            .filter_map(|v| {
                let id = v.get("id")?.as_str()?;
                let name = v.get("name")?.as_str()?;
                Some((id.to_owned(), name.to_owned()))
            })
            .collect(),
        Err(e) => {
            tracing::debug!("cannot list {} to resolve names: {e:#}", kind.plural());
            HashMap::new()
        }
    }
}

/// Decodes each item as `T` and lays it out with `row`.
fn rows<T: DeserializeOwned>(
    items: &[Value],
    header: &[&str],
    what: &str,
    row: impl Fn(&T) -> Vec<String>,
) -> Result<Table> {
    let mut t = output::table(header);
    for item in items {
        let obj: T = decode(item, what)?;
        t.add_row(row(&obj));
    }
    Ok(t)
}

pub fn table(kind: Kind, items: &[Value], names: &Names) -> Result<Table> {
    match kind {
        Kind::Platform => rows::<Platform>(
            items,
            &["NAME", "LEVEL", "COMPUTE TYPES", "REGION", "GEN", "LABELS"],
            "platform",
            |p| {
                vec![
                    p.name.clone(),
                    wire(&p.spec.level),
                    wire_list(&p.spec.compute_types),
                    or_dash(p.spec.region.as_deref()),
                    p.generation.to_string(),
                    labels(&p.labels),
                ]
            },
        ),
        Kind::Cloud => rows::<Cloud>(
            items,
            &["NAME", "TYPE", "PROVIDER", "REGION", "GEN", "LABELS"],
            "cloud",
            |c| {
                vec![
                    c.name.clone(),
                    wire(&c.spec.cloud_type),
                    c.spec.provider.clone(),
                    or_dash(c.spec.region.as_deref()),
                    c.generation.to_string(),
                    labels(&c.labels),
                ]
            },
        ),
        Kind::Site => rows::<Site>(
            items,
            &[
                "NAME", "REGION", "CITY", "PLATFORM", "SUPPLIER", "TYPES", "GPUS", "PUE", "PRICE",
                "HEALTH", "GEN",
            ],
            "site",
            |s| {
                vec![
                    s.name.clone(),
                    s.spec.region.clone(),
                    or_dash(s.spec.city.as_deref()),
                    names.platform(s.spec.platform.as_deref()),
                    s.spec.supplier.clone(),
                    wire_list(&s.spec.resource_types),
                    s.spec.scale.gpus.to_string(),
                    num(s.spec.pue),
                    num(s.spec.electricity_price),
                    wire(&s.spec.health),
                    s.generation.to_string(),
                ]
            },
        ),
        Kind::Resource => rows::<Resource>(
            items,
            &["NAME", "SITE", "TYPE", "DETAIL", "PRICE", "GEN", "LABELS"],
            "resource",
            |r| {
                vec![
                    r.name.clone(),
                    names.site(&r.spec.site),
                    wire(&r.spec.resource_type),
                    resource_detail(r),
                    r.spec
                        .compute
                        .as_ref()
                        .map_or_else(|| "-".to_owned(), |c| num(c.unit_price)),
                    r.generation.to_string(),
                    labels(&r.labels),
                ]
            },
        ),
        Kind::Link => rows::<Link>(
            items,
            &[
                "NAME",
                "FROM",
                "TO",
                "TYPE",
                "LATENCY",
                "BANDWIDTH",
                "GEN",
                "LABELS",
            ],
            "link",
            |l| {
                vec![
                    l.name.clone(),
                    names.site(&l.spec.from),
                    names.site(&l.spec.to),
                    wire(&l.spec.link_type),
                    format!("{} ms", num(l.spec.latency_ms)),
                    format!("{} Gbps", num(l.spec.bandwidth_gbps)),
                    l.generation.to_string(),
                    labels(&l.labels),
                ]
            },
        ),
        Kind::Tag => rows::<Tag>(
            items,
            &[
                "NAME",
                "GROUP",
                "STATUS",
                "INHERITABLE",
                "OPERATIONS",
                "GEN",
            ],
            "tag",
            |t| {
                vec![
                    t.name.clone(),
                    wire(&t.spec.group),
                    wire(&t.spec.status),
                    yes_no(t.spec.inheritable).to_owned(),
                    wire_list(&t.spec.operations),
                    t.generation.to_string(),
                ]
            },
        ),
        Kind::Policy => rows::<Policy>(
            items,
            &[
                "NAME", "PRIORITY", "PARENT", "SCOPE", "MATCH", "WEIGHTS", "CEL", "GEN",
            ],
            "policy",
            |p| {
                vec![
                    p.name.clone(),
                    p.spec.priority.to_string(),
                    or_dash(p.spec.parent.as_deref()),
                    policy_scope(&p.spec.scope),
                    policy_match(&p.spec.match_rules),
                    weights(&p.spec.weights),
                    (p.spec.cel_filters.len() + p.spec.cel_scores.len()).to_string(),
                    p.generation.to_string(),
                ]
            },
        ),
    }
}

/// `key=a,b` for each non-empty list, joined with `;`, or `any` when all are empty.
fn conditions(parts: &[(&str, &[String])]) -> Vec<String> {
    parts
        .iter()
        .filter(|(_, values)| !values.is_empty())
        .map(|(key, values)| format!("{key}={}", values.join(",")))
        .collect()
}

fn any_if_empty(parts: Vec<String>) -> String {
    if parts.is_empty() {
        "any".to_owned()
    } else {
        parts.join(";")
    }
}

/// Where a policy applies, compactly: `regions=Ningxia;tenants=lab-a`, or `any`.
fn policy_scope(s: &PolicyScope) -> String {
    any_if_empty(conditions(&[
        ("regions", &s.regions),
        ("businesses", &s.businesses),
        ("tenants", &s.tenants),
    ]))
}

/// Which tasks a policy takes, compactly: `tenants=lab-a;labels(tier=gold)`, or `any`.
fn policy_match(m: &MatchRules) -> String {
    let mut parts = conditions(&[
        ("tenants", &m.tenants),
        ("businesses", &m.businesses),
        ("origin_regions", &m.origin_regions),
    ]);
    if let Some(sel) = m.labels.as_deref().filter(|s| !s.trim().is_empty()) {
        parts.push(format!("labels({sel})"));
    }
    any_if_empty(parts)
}

/// Score weights as `latency=1,price=3`, or `-` when none are set (inherited or built-in).
pub fn weights(w: &std::collections::BTreeMap<String, f64>) -> String {
    if w.is_empty() {
        return "-".to_owned();
    }
    w.iter()
        .map(|(k, v)| format!("{k}={}", num(*v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// One phrase for what a resource is: `gpu A100-80G x64`, `private_line 10000 Mbps`,
/// `object 500000 GiB`, `firewall`.
fn resource_detail(r: &Resource) -> String {
    let s = &r.spec;
    if let Some(c) = &s.compute {
        format!("{} {} x{}", wire(&c.chip_type), c.model, c.count)
    } else if let Some(n) = &s.network {
        format!("{} {} Mbps", wire(&n.kind), num(n.bandwidth_mbps))
    } else if let Some(st) = &s.storage {
        format!("{} {} GiB", wire(&st.kind), num(st.capacity_gib))
    } else if let Some(sec) = &s.security {
        wire(&sec.kind)
    } else {
        "-".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope_of(spec: Value) -> Value {
        json!({
            "id": "r-1", "name": "gpu-pool", "tenant": "t", "owner": "o",
            "visibility": "public", "labels": {"tier": "gold"}, "generation": 3,
            "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-01T00:00:00Z",
            "spec": spec
        })
    }

    #[test]
    fn resource_rows_resolve_site_names() {
        let item = envelope_of(json!({
            "site": "s-1", "type": "compute",
            "compute": {"supply_mode": "kubernetes", "chip_type": "gpu", "architecture": "ampere",
                        "model": "A100-80G", "count": 64, "unit_price": 12.5}
        }));
        let mut names = Names::default();
        names.sites.insert("s-1".into(), "ningxia-1".into());
        let text = output::render(&table(Kind::Resource, &[item], &names).unwrap());
        let row = text.lines().nth(1).unwrap();
        for part in [
            "gpu-pool",
            "ningxia-1",
            "compute",
            "gpu A100-80G x64",
            "12.5",
            "tier=gold",
        ] {
            assert!(row.contains(part), "{part} missing in {row}");
        }
    }

    #[test]
    fn update_takes_the_mutable_fields_of_a_full_object() {
        let full = envelope_of(json!({"level": "hub", "compute_types": ["general"]}));
        let body = update_body(Kind::Platform, "gpu-pool", "f", full.as_object().unwrap()).unwrap();
        let mut keys: Vec<_> = body.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["generation", "labels", "spec", "visibility"]);
        assert!(update_body(Kind::Platform, "x", "f", &Map::new()).is_err());
    }

    #[test]
    fn policy_rows_are_compact() {
        let mut item = envelope_of(json!({
            "priority": 10, "parent": "base",
            "scope": {"tenants": ["lab-a"]},
            "match_rules": {"businesses": ["ai", "hpc"], "labels": "tier=gold"},
            "weights": {"price": 3, "latency": 1.5},
            "cel_filters": [{"name": "f", "expr": "true"}],
            "cel_scores": [{"name": "s", "expr": "1", "weight": 1, "better": "higher"}]
        }));
        item["name"] = json!("lab-a-cheap");
        let text = output::render(&table(Kind::Policy, &[item], &Names::default()).unwrap());
        let mut lines = text.lines();
        let header = lines.next().unwrap();
        assert!(header.starts_with("NAME"), "{header}");
        let row = lines.next().unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "lab-a-cheap",
                "10",
                "base",
                "tenants=lab-a",
                "businesses=ai,hpc;labels(tier=gold)",
                "latency=1.5,price=3",
                "2",
                "3"
            ]
        );
        let empty = envelope_of(json!({}));
        let text = output::render(&table(Kind::Policy, &[empty], &Names::default()).unwrap());
        let cells: Vec<String> = text
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        assert_eq!(cells[3..6], ["any", "any", "-"]);
    }

    #[test]
    fn kinds_parse_singular_and_plural() {
        assert_eq!(Kind::parse("sites"), Some(Kind::Site));
        assert_eq!(Kind::parse("link"), Some(Kind::Link));
        assert_eq!(Kind::parse("policies"), Some(Kind::Policy));
        assert_eq!(Kind::parse("node"), None);
    }
}
