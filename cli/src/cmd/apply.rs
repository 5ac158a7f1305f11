//! `apply`, `create` and `replace` of manifests.
//!
//! `apply` creates what is absent and updates what exists, conditional on
//! the resourceVersion just read. The apiserver answers a no-op update with
//! the stored object and its unchanged resourceVersion, after its own
//! defaulting, which is how `unchanged` is told from `configured`; an
//! update whose result equals the object read before also counts as
//! unchanged.

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
    mut object: DynamicMessage,
) -> Result<(DynamicMessage, &'static str)> {
    let name = meta_str(&object, "name");
    let namespace = meta_str(&object, "namespace");
    let existing = match objects::get(client, info, &namespace, &name).await {
        Ok(existing) => existing,
        Err(err) if err.code() == Some(Code::NotFound) => {
            return Ok((objects::create(client, info, object).await?, "created"));
        }
        Err(err) => return Err(err),
    };
    let version = meta_str(&existing, "resource_version");
    set_meta_str(&mut object, "resource_version", &version);
    let stored = objects::update(client, info, object).await?;
    let verb = if meta_str(&stored, "resource_version") == version || same(&existing, &stored)? {
        "unchanged"
    } else {
        "configured"
    };
    Ok((stored, verb))
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
