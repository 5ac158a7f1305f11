//! `apply`, `create` and `replace` of manifests.
//!
//! `apply` creates what is absent and updates what exists, conditional on
//! the resourceVersion just read (read again and retried when a controller
//! wrote in between). Labels and annotations merge three ways through the
//! last applied manifest, kept in an annotation as kubectl keeps it, so
//! what controllers and other verbs wrote there stays. The apiserver answers a no-op update with
//! the stored object and its unchanged resourceVersion, after its own
//! defaulting, which is how `unchanged` is told from `configured`; an
//! update whose result equals the object read before also counts as
//! unchanged.

use std::collections::BTreeMap;

use moor_codec::KindInfo;
use prost_reflect::{DynamicMessage, MapKey, Value};
use tonic::Code;

use crate::args::FileArgs;
use crate::cmd::{Ctx, out};
use crate::error::{Error, Result};
use crate::manifest::{self, Item};
use crate::objects::{self, meta_str, set_meta_str};
use crate::output::{self, Format};
use crate::rpc::Client;

/// Which verb.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Create or update.
    Apply,
    /// Create only.
    Create,
    /// Update only.
    Replace,
}

/// Runs `apply`, `create` or `replace`.
pub async fn run(ctx: &Ctx, args: FileArgs, mode: Mode) -> Result<()> {
    let format = Format::parse(args.output.as_deref())?;
    let items = manifest::read(&args.files)?;
    let client = ctx.client()?;
    let namespace = ctx.namespace();
    for Item { document, file } in items {
        let info = document.info.clone();
        let mut object = document.message;
        if info.namespaced && meta_str(&object, "namespace").is_empty() {
            set_meta_str(&mut object, "namespace", &namespace);
        }
        let written = match mode {
            Mode::Create => objects::create(&client, &info, object)
                .await
                .map(|o| (o, "created")),
            Mode::Replace => objects::update(&client, &info, object)
                .await
                .map(|o| (o, "replaced")),
            Mode::Apply => apply_one(&client, &info, object).await,
        };
        let (stored, verb) = written.map_err(|err| in_file(err, mode, &file))?;
        match format {
            Format::Table => out(&format!("{} {verb}\n", output::name_of(&info, &stored)))?,
            Format::Name => out(&format!("{}\n", output::name_of(&info, &stored)))?,
            _ => out(&output::render(&format, &[(&info, vec![stored])], true)?)?,
        }
    }
    Ok(())
}

/// Names the file in a server's error, as kubectl does.
fn in_file(err: Error, mode: Mode, file: &str) -> Error {
    let verb = match mode {
        Mode::Apply => "applying",
        Mode::Create => "creating",
        Mode::Replace => "replacing",
    };
    match err {
        Error::Server { code, message } => Error::Server {
            code,
            message: format!("error when {verb} {file:?}: {message}"),
        },
        other => other,
    }
}

async fn apply_one(
    client: &Client,
    info: &KindInfo,
    object: DynamicMessage,
) -> Result<(DynamicMessage, &'static str)> {
    let name = meta_str(&object, "name");
    let namespace = meta_str(&object, "namespace");
    let applied = moor_codec::encode_json(&object)?.to_string();
    // Controllers write the objects they own (status, annotations) between
    // our read and our write: read again and retry a few times.
    let mut attempt = 0;
    loop {
        attempt += 1;
        let existing = match objects::get(client, info, &namespace, &name).await {
            Ok(existing) => existing,
            Err(err) if err.code() == Some(Code::NotFound) => {
                let mut fresh = object.clone();
                let mut annotations = meta_map(&fresh, "annotations");
                annotations.insert(LAST_APPLIED.to_string(), applied.clone());
                set_meta_map(&mut fresh, "annotations", &annotations);
                return Ok((objects::create(client, info, fresh).await?, "created"));
            }
            Err(err) => return Err(err),
        };
        let mut merged = object.clone();
        merge_maps(&existing, &mut merged, &applied);
        let version = meta_str(&existing, "resource_version");
        set_meta_str(&mut merged, "resource_version", &version);
        match objects::update(client, info, merged).await {
            Ok(stored) => {
                let verb = if meta_str(&stored, "resource_version") == version
                    || same(&existing, &stored)?
                {
                    "unchanged"
                } else {
                    "configured"
                };
                return Ok((stored, verb));
            }
            Err(err) if err.code() == Some(Code::Aborted) && attempt < 5 => continue,
            Err(err) => return Err(err),
        }
    }
}

/// The annotation holding the manifest last applied, as kubectl keeps it.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Labels and annotations merged three ways, as kubectl apply does: what
/// the manifest sets wins, what the last applied manifest set and this one
/// dropped is removed, and what others wrote (controllers, `moorctl label`)
/// stays.
fn merge_maps(existing: &DynamicMessage, object: &mut DynamicMessage, applied: &str) {
    let last: serde_json::Value = meta_map(existing, "annotations")
        .get(LAST_APPLIED)
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();
    for field in ["labels", "annotations"] {
        let mine = meta_map(object, field);
        let before = last["metadata"][field]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mut merged = meta_map(existing, field);
        merged.retain(|key, _| mine.contains_key(key) || !before.contains_key(key));
        merged.extend(mine);
        if field == "annotations" {
            merged.insert(LAST_APPLIED.to_string(), applied.to_string());
        }
        set_meta_map(object, field, &merged);
    }
}

/// A string map of `metadata` (labels, annotations).
fn meta_map(object: &DynamicMessage, field: &str) -> BTreeMap<String, String> {
    let Some(meta) = object.get_field_by_name("metadata") else {
        return BTreeMap::new();
    };
    let Some(value) = meta.as_message().and_then(|m| m.get_field_by_name(field)) else {
        return BTreeMap::new();
    };
    value
        .as_map()
        .map(|map| {
            map.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Replaces a string map of `metadata`.
fn set_meta_map(object: &mut DynamicMessage, field: &str, map: &BTreeMap<String, String>) {
    if let Some(meta) = object
        .get_field_by_name_mut("metadata")
        .and_then(Value::as_message_mut)
    {
        let value = map
            .iter()
            .map(|(k, v)| (MapKey::String(k.clone()), Value::String(v.clone())))
            .collect();
        meta.set_field_by_name(field, Value::Map(value));
    }
}

/// Whether two versions of an object differ only in resourceVersion and
/// generation. The apiserver bumps both on an update of a Service that
/// leaves out its allocated clusterIP, though nothing else changes.
fn same(before: &DynamicMessage, after: &DynamicMessage) -> Result<bool> {
    let strip = |object: &DynamicMessage| -> Result<serde_json::Value> {
        let mut value = moor_codec::encode_json(object)?;
        if let Some(meta) = value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            meta.remove("resourceVersion");
            meta.remove("generation");
        }
        Ok(value)
    };
    Ok(strip(before)? == strip(after)?)
}
