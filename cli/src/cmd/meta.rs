//! Small read-modify-write verbs: `label`, `annotate`, `scale`, `cordon`
//! and `uncordon`. Each update but the scale's carries the resourceVersion
//! just read, so a concurrent change makes it fail instead of being lost;
//! a scale sets one field, which the apiserver applies to the latest
//! object.

use prost_reflect::{DynamicMessage, MapKey, Value};

use crate::args::{MetaArgs, ScaleArgs};
use crate::cmd::{Ctx, kind, kind_and_name, out};
use crate::error::{Error, Result};
use crate::objects;
use crate::rpc::Client;

/// Which metadata map `label`/`annotate` changes.
#[derive(Clone, Copy, Debug)]
pub enum Field {
    /// metadata.labels.
    Labels,
    /// metadata.annotations.
    Annotations,
}

/// One change to a map: set or remove a key.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Edit {
    Set(String, String),
    Remove(String),
}

/// Runs `label` or `annotate`.
pub async fn label(ctx: &Ctx, args: MetaArgs, field: Field) -> Result<()> {
    let (info, name, edits) = match args.kind.split_once('/') {
        Some((k, n)) => (kind(k)?, n.to_string(), &args.args[..]),
        None => {
            let (name, edits) = args
                .args
                .split_first()
                .ok_or_else(|| Error::Usage("a name is needed".to_string()))?;
            (kind(&args.kind)?, name.clone(), edits)
        }
    };
    let edits = edits
        .iter()
        .map(|e| parse_edit(e))
        .collect::<Result<Vec<_>>>()?;
    if edits.is_empty() {
        return Err(Error::Usage(
            "give at least one key=value or key-".to_string(),
        ));
    }
    let client = ctx.client()?;
    let namespace = ctx.namespace();
    let mut object = objects::get(&client, info, &namespace, &name).await?;
    let (field_name, verb) = match field {
        Field::Labels => ("labels", "labeled"),
        Field::Annotations => ("annotations", "annotated"),
    };
    apply_edits(&mut object, field_name, &edits, args.overwrite)?;
    let stored = objects::update(&client, info, object).await?;
    out(&format!(
        "{} {verb}\n",
        crate::output::name_of(info, &stored)
    ))
}

fn parse_edit(arg: &str) -> Result<Edit> {
    if let Some((key, value)) = arg.split_once('=') {
        return Ok(Edit::Set(key.to_string(), value.to_string()));
    }
    if let Some(key) = arg.strip_suffix('-') {
        return Ok(Edit::Remove(key.to_string()));
    }
    Err(Error::Usage(format!(
        "{arg:?}: use key=value to set or key- to remove"
    )))
}

fn apply_edits(
    object: &mut DynamicMessage,
    field: &str,
    edits: &[Edit],
    overwrite: bool,
) -> Result<()> {
    let meta = object
        .get_field_by_name_mut("metadata")
        .and_then(Value::as_message_mut)
        .ok_or_else(|| Error::Usage("the object has no metadata".to_string()))?;
    let map = meta
        .get_field_by_name_mut(field)
        .and_then(Value::as_map_mut)
        .ok_or_else(|| Error::Usage(format!("metadata has no {field}")))?;
    for edit in edits {
        match edit {
            Edit::Set(key, value) => {
                let key = MapKey::String(key.clone());
                if let Some(Value::String(old)) = map.get(&key)
                    && old != value
                    && !overwrite
                {
                    return Err(Error::Usage(format!(
                        "{key} already has a value ({old}), and --overwrite is false",
                        key = key.as_str().unwrap_or_default()
                    )));
                }
                map.insert(key, Value::String(value.clone()));
            }
            Edit::Remove(key) => {
                map.remove(&MapKey::String(key.clone()));
            }
        }
    }
    Ok(())
}

/// Runs `scale` through the GetScale and UpdateScale methods.
pub async fn scale(ctx: &Ctx, args: ScaleArgs) -> Result<()> {
    let (info, name) = kind_and_name(&args.kind, args.name.as_deref())?;
    let has_scale = moor_api::descriptor_pool()
        .get_service_by_name(&info.service)
        .is_some_and(|s| s.methods().any(|m| m.name() == "UpdateScale"));
    if !has_scale {
        return Err(Error::Usage(format!("{} cannot be scaled", info.plural)));
    }
    let client = ctx.client()?;
    let get = Client::method(&info.service, "GetScale")?;
    let mut request = Client::request(&get);
    request.set_field_by_name(
        "namespace",
        Value::String(objects::scoped(info, &ctx.namespace())),
    );
    request.set_field_by_name("name", Value::String(name.clone()));
    let mut scale = client.unary(&get, request).await?;
    if let Some(spec) = scale
        .get_field_by_name_mut("spec")
        .and_then(Value::as_message_mut)
    {
        let current = spec
            .get_field_by_name("replicas")
            .and_then(|v| v.as_i32())
            .unwrap_or(0);
        if let Some(expected) = args.current_replicas
            && expected != current
        {
            return Err(Error::Usage(format!(
                "Expected replicas to be {expected}, was {current}"
            )));
        }
        spec.set_field_by_name("replicas", Value::I32(args.replicas));
    }
    // As kubectl: unless asked for a version, the new count applies to the
    // workload as it is now, so a controller writing its status meanwhile
    // is no conflict.
    if let Some(meta) = scale
        .get_field_by_name_mut("metadata")
        .and_then(Value::as_message_mut)
    {
        match &args.resource_version {
            Some(version) => {
                meta.set_field_by_name("resource_version", Value::String(version.clone()));
            }
            None => meta.clear_field_by_name("resource_version"),
        }
    }
    let update = Client::method(&info.service, "UpdateScale")?;
    client.unary(&update, scale).await?;
    out(&format!("{} scaled\n", crate::output::ref_of(info, &name)))
}

/// Runs `cordon` (`unschedulable` true) or `uncordon`.
pub async fn cordon(ctx: &Ctx, node: &str, unschedulable: bool) -> Result<()> {
    let info = kind("nodes")?;
    let client = ctx.client()?;
    let mut object = objects::get(&client, info, "", node).await?;
    let spec = object
        .get_field_by_name_mut("spec")
        .and_then(Value::as_message_mut)
        .ok_or_else(|| Error::Usage("the node has no spec".to_string()))?;
    let was = spec
        .get_field_by_name("unschedulable")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let verb = if unschedulable {
        "cordoned"
    } else {
        "uncordoned"
    };
    if was == unschedulable {
        return out(&format!("node/{node} already {verb}\n"));
    }
    spec.set_field_by_name("unschedulable", Value::Bool(unschedulable));
    objects::update(&client, info, object).await?;
    out(&format!("node/{node} {verb}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_parse() {
        assert_eq!(
            parse_edit("a=b").unwrap(),
            Edit::Set("a".into(), "b".into())
        );
        assert_eq!(parse_edit("a-").unwrap(), Edit::Remove("a".into()));
        assert!(parse_edit("a").is_err());
    }
}
