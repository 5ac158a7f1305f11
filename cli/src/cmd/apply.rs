//! `apply`, `create` and `replace` of manifests.
//!
//! `apply` creates what is absent and updates what exists, conditional on
//! the resourceVersion just read (read again and retried when a controller
//! wrote in between). The manifest merges into the live object three ways
//! through the last applied manifest, kept in an annotation as kubectl
//! keeps it, so what the manifest leaves out (a scaled replica count, an
//! allocated clusterIP, labels other verbs added) stays and what it dropped
//! goes. The apiserver answers a no-op update with the stored object and
//! its unchanged resourceVersion, after its own defaulting, which is how
//! `unchanged` is told from `configured`; an update whose result equals
//! the object read before also counts as unchanged.

use moor_codec::KindInfo;
use prost_reflect::DynamicMessage;
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
        let mut source = document.source;
        if info.namespaced && meta_str(&object, "namespace").is_empty() {
            set_meta_str(&mut object, "namespace", &namespace);
            source["metadata"]["namespace"] = namespace.clone().into();
        }
        let written = match mode {
            Mode::Create => objects::create(&client, &info, object)
                .await
                .map(|o| (o, "created")),
            Mode::Replace => objects::update(&client, &info, object)
                .await
                .map(|o| (o, "replaced")),
            Mode::Apply => apply_one(&client, &info, source).await,
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
    source: serde_json::Value,
) -> Result<(DynamicMessage, &'static str)> {
    let mut desired = source;
    // The manifest as written is what the next apply compares with, as
    // kubectl keeps it; never itself inside itself.
    if let Some(annotations) = desired
        .pointer_mut("/metadata/annotations")
        .and_then(serde_json::Value::as_object_mut)
    {
        annotations.remove(LAST_APPLIED);
    }
    let applied = desired.to_string();
    desired["metadata"]["annotations"][LAST_APPLIED] = applied.into();
    let name = desired["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let namespace = desired["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // Controllers write the objects they own (status, annotations) between
    // our read and our write: read again and retry a few times.
    let mut attempt = 0;
    loop {
        attempt += 1;
        let existing = match objects::get(client, info, &namespace, &name).await {
            Ok(existing) => existing,
            Err(err) if err.code() == Some(Code::NotFound) => {
                let fresh = decode(&desired)?;
                return Ok((objects::create(client, info, fresh).await?, "created"));
            }
            Err(err) => return Err(err),
        };
        let mut live = moor_codec::encode_json(&existing)?;
        let last: Option<serde_json::Value> = live
            .pointer(&format!(
                "/metadata/annotations/{}",
                LAST_APPLIED.replace('/', "~1")
            ))
            .and_then(serde_json::Value::as_str)
            .and_then(|text| serde_json::from_str(text).ok());
        merge(&mut live, last.as_ref(), &desired);
        let version = meta_str(&existing, "resource_version");
        live["metadata"]["resourceVersion"] = version.clone().into();
        match objects::update(client, info, decode(&live)?).await {
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

/// Merges what the manifest says into the live object three ways, as
/// kubectl apply does (with JSON merge-patch semantics: lists are replaced
/// whole): what the manifest sets wins; what the last applied manifest set
/// and this one no longer does is removed; what others wrote (controllers,
/// the server's defaults and allocations, `moorctl scale` or `label`)
/// stays.
fn merge(
    live: &mut serde_json::Value,
    last: Option<&serde_json::Value>,
    desired: &serde_json::Value,
) {
    let (Some(live), Some(desired)) = (live.as_object_mut(), desired.as_object()) else {
        *live = desired.clone();
        return;
    };
    for (key, wanted) in desired {
        let before = last.and_then(|last| last.get(key));
        match (live.get_mut(key), wanted) {
            (_, serde_json::Value::Null) => {
                live.remove(key);
            }
            (Some(current), serde_json::Value::Object(_)) if current.is_object() => {
                merge(current, before, wanted);
            }
            _ => {
                live.insert(key.clone(), wanted.clone());
            }
        }
    }
    if let Some(last) = last.and_then(serde_json::Value::as_object) {
        for key in last.keys().filter(|key| !desired.contains_key(*key)) {
            live.remove(key);
        }
    }
}

/// An object of this kind from its JSON form, through the manifest decoder.
fn decode(object: &serde_json::Value) -> Result<DynamicMessage> {
    let mut documents =
        moor_codec::decode_documents(&object.to_string()).map_err(|source| Error::Manifest {
            file: "the merged object".to_string(),
            source: Box::new(source),
        })?;
    Ok(documents.remove(0).message)
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
