//! `delete` by kind and names or by manifest, optionally waiting until the
//! objects are gone.

use std::time::Duration;

use moor_codec::KindInfo;
use tonic::Code;

use crate::args::DeleteArgs;
use crate::cmd::{Ctx, kind, out};
use crate::error::{Error, Result};
use crate::manifest;
use crate::objects::{self, meta_str};

/// How long `--wait` waits for an object to go.
const WAIT: Duration = Duration::from_secs(60);

/// Runs `delete`.
pub async fn run(ctx: &Ctx, args: DeleteArgs) -> Result<()> {
    let targets = targets(ctx, &args)?;
    let propagation = match args.cascade.as_deref() {
        None => None,
        Some("background" | "true") => Some("Background"),
        Some("foreground") => Some("Foreground"),
        Some("orphan" | "false") => Some("Orphan"),
        Some(other) => {
            return Err(Error::Usage(format!(
                "--cascade={other}: use background, foreground or orphan"
            )));
        }
    };
    if args.remove_etcd_member
        && let Some((info, _, _)) = targets.iter().find(|(info, _, _)| info.kind != "Node")
    {
        return Err(Error::Usage(format!(
            "--remove-etcd-member: only nodes are servers with an etcd member, not {}",
            crate::output::kind_ref(info)
        )));
    }
    let client = ctx.client()?;
    let mut failure = None;
    for (info, namespace, name) in targets {
        // The member first: a node deleted while its member stays would
        // leave etcd counting a server that is gone.
        let removed_member = if args.remove_etcd_member {
            match remove_member(&client, &name).await {
                Ok(()) => true,
                Err(err) => {
                    super::report(failure.replace(err));
                    continue;
                }
            }
        } else {
            false
        };
        match objects::delete(
            &client,
            info,
            &namespace,
            &name,
            args.grace_period,
            propagation,
        )
        .await
        {
            Ok(_) => out(&format!(
                "{} {name:?} deleted\n",
                crate::output::kind_ref(info)
            ))?,
            Err(err) if err.code() == Some(Code::NotFound) && args.ignore_not_found => continue,
            // A server that ran no agent (--no-agent) has no node.
            Err(err) if err.code() == Some(Code::NotFound) && removed_member => continue,
            Err(err) => {
                super::report(failure.replace(err));
                continue;
            }
        }
        if args.wait {
            wait_gone(&client, info, &namespace, &name).await?;
        }
    }
    failure.map_or(Ok(()), Err)
}

/// Takes server `name` out of etcd (`RemoveServer`), saying so.
async fn remove_member(client: &crate::rpc::Client, name: &str) -> Result<()> {
    let removed = client
        .certificates()
        .remove_server(moor_api::authentication::v1::RemoveServerRequest {
            server_name: name.to_string(),
        })
        .await
        .map_err(|status| client.status(status))?
        .into_inner();
    out(&format!(
        "server {name:?} removed from etcd (member {:x}); members left: {}\n",
        removed.member_id,
        removed.remaining.join(", ")
    ))
}

/// Each object to delete: kind, namespace and name.
fn targets(ctx: &Ctx, args: &DeleteArgs) -> Result<Vec<(&'static KindInfo, String, String)>> {
    let namespace = ctx.namespace();
    if !args.files.is_empty() {
        let kinds = moor_codec::Kinds::global();
        return manifest::read(&args.files)?
            .into_iter()
            .map(|item| {
                let doc = &item.document;
                let info = kinds.get(&doc.info.api_version, &doc.info.kind)?;
                let ns = meta_str(&doc.message, "namespace");
                let ns = if ns.is_empty() { namespace.clone() } else { ns };
                Ok((info, ns, doc.name()))
            })
            .collect();
    }
    let Some(arg) = args.kind.as_deref() else {
        return Err(Error::Usage(
            "give KIND NAME..., KIND/NAME or -f FILE".to_string(),
        ));
    };
    let mut targets = Vec::new();
    let mut names = args.names.clone();
    let info = match arg.split_once('/') {
        Some((k, name)) => {
            names.insert(0, name.to_string());
            kind(k)?
        }
        None => kind(arg)?,
    };
    if names.is_empty() {
        return Err(Error::Usage(format!("a name is needed: delete {arg} NAME")));
    }
    for name in names {
        let (info, name) = match name.split_once('/') {
            Some((k, n)) => (kind(k)?, n.to_string()),
            None => (info, name),
        };
        targets.push((info, namespace.clone(), name));
    }
    Ok(targets)
}

/// Polls until the object is not found.
pub async fn wait_gone(
    client: &crate::rpc::Client,
    info: &KindInfo,
    namespace: &str,
    name: &str,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match objects::get(client, info, namespace, name).await {
            Err(err) if err.code() == Some(Code::NotFound) => return Ok(()),
            Err(err) => return Err(err),
            Ok(_) if tokio::time::Instant::now() >= deadline => {
                return Err(Error::Timeout(format!(
                    "{} {name:?} to be deleted",
                    crate::output::resource_ref(info)
                )));
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
