//! Verbs about the API itself: `api-resources`, `call`, `version`,
//! `completion`, `auth whoami`.

use std::io::Read;

use clap::CommandFactory;
use prost_reflect::{DynamicMessage, SerializeOptions};

use crate::args::{CallArgs, Cli};
use crate::cmd::{Ctx, out};
use crate::error::{Error, Result};
use crate::rpc::Client;
use crate::table::Table;

/// Runs `api-resources`: every kind of the descriptors.
pub fn api_resources() -> Result<()> {
    let rows = moor_codec::Kinds::global()
        .iter()
        .map(|k| {
            vec![
                k.plural.clone(),
                k.short_names.join(","),
                k.api_version.clone(),
                k.namespaced.to_string(),
                k.kind.clone(),
            ]
        })
        .collect();
    let table = Table {
        headers: ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
            .map(String::from)
            .to_vec(),
        rows,
    };
    out(&table.render(true))
}

/// Runs `call SERVICE/METHOD -d JSON`: any unary or server-streaming RPC,
/// request and responses in proto3 JSON.
pub async fn call(ctx: &Ctx, args: CallArgs) -> Result<()> {
    let (service, method) = args
        .method
        .rsplit_once('/')
        .ok_or_else(|| Error::Usage(format!("{:?}: use SERVICE/METHOD", args.method)))?;
    let service = full_service(service)?;
    let method = Client::method(&service, method)?;
    let data = if args.data == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text
    } else {
        args.data
    };
    let mut de = serde_json::Deserializer::from_str(&data);
    let request = DynamicMessage::deserialize(method.input(), &mut de)
        .map_err(|e| Error::Usage(format!("request of {}: {e}", method.full_name())))?;
    let client = ctx.client()?;
    if method.is_server_streaming() {
        use futures::StreamExt;
        let mut stream = Box::pin(client.stream(&method, request).await?);
        while let Some(message) = stream.next().await {
            out(&json(&message?)?)?;
        }
        return Ok(());
    }
    let response = client.unary(&method, request).await?;
    out(&json(&response)?)
}

/// A service name, completed with its package when unique (`Pods` is
/// `moor.core.v1.Pods`).
fn full_service(name: &str) -> Result<String> {
    let pool = moor_api::descriptor_pool();
    if pool.get_service_by_name(name).is_some() {
        return Ok(name.to_string());
    }
    let matches: Vec<String> = pool
        .services()
        .filter(|s| s.name() == name)
        .map(|s| s.full_name().to_string())
        .collect();
    match matches.as_slice() {
        [one] => Ok(one.clone()),
        [] => {
            let all: Vec<String> = pool.services().map(|s| s.full_name().to_string()).collect();
            Err(Error::Usage(format!(
                "unknown service {name:?}; services: {}",
                all.join(", ")
            )))
        }
        many => Err(Error::Usage(format!(
            "service {name:?} is ambiguous: {}",
            many.join(", ")
        ))),
    }
}

fn json(message: &DynamicMessage) -> Result<String> {
    let options = SerializeOptions::new().stringify_64_bit_integers(false);
    let value = message
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| Error::Usage(format!("cannot print the response: {e}")))?;
    let text = serde_json::to_string_pretty(&value)
        .map_err(|e| Error::Usage(format!("cannot print the response: {e}")))?;
    Ok(text + "\n")
}

/// Runs `version`: the client's version and whether the server answers.
pub async fn version(ctx: &Ctx) -> Result<()> {
    out(&format!("Client Version: v{}\n", env!("CARGO_PKG_VERSION")))?;
    let client = ctx.client()?;
    // Any cheap call proves the server is there: list namespaces.
    let info = crate::cmd::kind("namespaces")?;
    crate::objects::list(&client, info, &Default::default()).await?;
    out(&format!(
        "Server: reachable at {}\n",
        client.target().server
    ))
}

/// Runs `auth whoami`: the user and groups the server authenticated.
pub async fn whoami(ctx: &Ctx) -> Result<()> {
    let client = ctx.client()?;
    let info = client
        .authentication()
        .who_am_i(moor_api::authentication::v1::WhoAmIRequest {})
        .await
        .map_err(|s| client.status(s))?
        .into_inner();
    if info.username.is_empty() {
        return out(&format!(
            "The server at {} authenticates nobody (it was started with --insecure): \
             every caller may do anything.\n",
            client.target().server
        ));
    }
    let table = Table {
        headers: ["ATTRIBUTE", "VALUE"].map(String::from).to_vec(),
        rows: vec![
            vec!["Username".to_string(), info.username],
            vec!["Groups".to_string(), format!("[{}]", info.groups.join(" "))],
        ],
    };
    out(&table.render(true))
}

/// Runs `completion SHELL`.
pub fn completion(shell: clap_complete::Shell) -> Result<()> {
    let mut command = Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut command, "moorctl", &mut buf);
    out(&String::from_utf8_lossy(&buf))
}
