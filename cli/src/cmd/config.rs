//! `moorctl config`: view, list, choose and set contexts.

use std::path::Path;

use crate::args::ConfigCommand;
use crate::cmd::{Ctx, out};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::table::Table;

/// Runs a `config` subcommand on the file at `path`.
pub fn run(command: ConfigCommand, ctx: &Ctx, path: &Path) -> Result<()> {
    let mut config = Config::load(path)?;
    match command {
        ConfigCommand::View => out(&config.to_redacted_yaml(path)?),
        ConfigCommand::GetContexts => {
            let rows = config
                .contexts
                .iter()
                .map(|c| {
                    let current = if c.name == config.current_context {
                        "*"
                    } else {
                        ""
                    };
                    vec![
                        current.to_string(),
                        c.name.clone(),
                        c.server.clone(),
                        c.namespace.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            let table = Table {
                headers: ["CURRENT", "NAME", "SERVER", "NAMESPACE"]
                    .map(String::from)
                    .to_vec(),
                rows,
            };
            out(&table.render(true))
        }
        ConfigCommand::CurrentContext => {
            if config.current_context.is_empty() {
                return Err(Error::Usage("current-context is not set".to_string()));
            }
            out(&format!("{}\n", config.current_context))
        }
        ConfigCommand::UseContext { name } => {
            if config.context(&name).is_none() {
                return Err(Error::Usage(format!(
                    "no context exists with the name {name:?}"
                )));
            }
            config.current_context = name.clone();
            config.save(path)?;
            out(&format!("Switched to context {name:?}.\n"))
        }
        ConfigCommand::SetContext {
            name,
            current,
            certificate_authority,
            client_certificate,
            client_key,
            token,
        } => {
            let existed = config.context(&name).is_some();
            let read = |path: &Path, flag: &str| {
                std::fs::read_to_string(path)
                    .map_err(|e| Error::Usage(format!("--{flag} {}: {e}", path.display())))
            };
            // Read every file before changing anything: a bad one writes nothing.
            let ca = certificate_authority
                .as_deref()
                .map(|p| read(p, "certificate-authority"))
                .transpose()?;
            if let (Some(ca), Some(path)) = (&ca, &certificate_authority) {
                moor_pki::certs_from_pem(ca).map_err(|e| {
                    Error::Usage(format!("--certificate-authority {}: {e}", path.display()))
                })?;
            }
            let cert_and_key = match (&client_certificate, &client_key) {
                (Some(cert), Some(key)) => {
                    let pair = (read(cert, "client-certificate")?, read(key, "client-key")?);
                    moor_pki::Identity::from_pem(pair.0.as_str(), pair.1.as_str()).map_err(
                        |e| {
                            Error::Usage(format!(
                                "--client-certificate {} with --client-key {}: {e}",
                                cert.display(),
                                key.display()
                            ))
                        },
                    )?;
                    Some(pair)
                }
                _ => None,
            };
            config.set_context(&name, ctx.server.clone(), ctx.namespace.clone());
            if let Some(context) = config.contexts.iter_mut().find(|c| c.name == name) {
                if ca.is_some() {
                    context.certificate_authority_data = ca;
                }
                if let Some((cert, key)) = cert_and_key {
                    context.client_certificate_data = Some(cert);
                    context.client_key_data = Some(key);
                    context.token = None;
                }
                if token.is_some() {
                    context.token = token;
                    context.client_certificate_data = None;
                    context.client_key_data = None;
                }
            }
            if current || config.current_context.is_empty() {
                config.current_context = name.clone();
            }
            config.save(path)?;
            let verb = if existed { "modified" } else { "created" };
            out(&format!("Context {name:?} {verb}.\n"))
        }
    }
}
