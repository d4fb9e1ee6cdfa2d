//! `cpn tag apply` and `cpn tag remove`: set or clear one label on many objects in one
//! atomic call, chosen by KIND/NAME targets and/or a kind with a selector.

use super::Ctx;
use super::registry::Kind;
use crate::cli::{TagApplyArgs, TagRemoveArgs, TagSelection};
use crate::client::decode;
use crate::output;
use anyhow::{Result, anyhow};
use cpn_api_types::registry::{ApplyTag, ObjectRef, RemoveTag, TaggingResult};
use serde_json::Value;

/// Kinds that carry labels set by tags (tags themselves do not).
fn taggable(s: &str) -> Result<String> {
    match Kind::parse(s) {
        Some(k) if k != Kind::Tag => Ok(k.name().to_owned()),
        _ => Err(anyhow!(
            "unknown kind `{s}`: expected platform, cloud, site, resource, link or policy"
        )),
    }
}

fn target(s: &str) -> Result<ObjectRef> {
    let (kind, id) = s
        .split_once('/')
        .filter(|(k, id)| !k.is_empty() && !id.is_empty())
        .ok_or_else(|| anyhow!("--target `{s}`: expected KIND/NAME, e.g. site/ningxia-1"))?;
    Ok(ObjectRef {
        kind: taggable(kind)?,
        id: id.to_owned(),
    })
}

struct Selection {
    targets: Vec<ObjectRef>,
    kind: Option<String>,
    selector: Option<String>,
}

fn selection(sel: TagSelection) -> Result<Selection> {
    Ok(Selection {
        targets: sel
            .targets
            .iter()
            .map(|t| target(t))
            .collect::<Result<_>>()?,
        kind: sel.kind.as_deref().map(taggable).transpose()?,
        selector: sel.selector,
    })
}

pub async fn apply(ctx: &Ctx, args: TagApplyArgs) -> Result<()> {
    let sel = selection(args.selection)?;
    let body = ApplyTag {
        value: args.value.clone(),
        targets: sel.targets,
        kind: sel.kind,
        selector: sel.selector,
    };
    let value = ctx
        .client
        .post(&["api", "v1", "tags", &args.tag, "apply"], &body)
        .await?;
    let what = if args.value.is_empty() {
        format!("tag {} applied", args.tag)
    } else {
        format!("tag {}={} applied", args.tag, args.value)
    };
    report(ctx, &value, &what)
}

pub async fn remove(ctx: &Ctx, args: TagRemoveArgs) -> Result<()> {
    let sel = selection(args.selection)?;
    let body = RemoveTag {
        targets: sel.targets,
        kind: sel.kind,
        selector: sel.selector,
    };
    let value = ctx
        .client
        .post(&["api", "v1", "tags", &args.tag, "remove"], &body)
        .await?;
    report(ctx, &value, &format!("tag {} removed", args.tag))
}

fn report(ctx: &Ctx, value: &Value, what: &str) -> Result<()> {
    if !ctx.table() {
        return output::print_raw(ctx.output, value);
    }
    let result: TaggingResult = decode(value, "tagging result")?;
    output::emit(&format!(
        "{what}: {} changed, {} unchanged",
        result.changed, result.unchanged
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let t = target("sites/a").unwrap();
        assert_eq!((t.kind.as_str(), t.id.as_str()), ("site", "a"));
        assert!(target("site").is_err());
        assert!(target("tag/x").is_err());
        assert!(target("node/x").is_err());
    }
}
