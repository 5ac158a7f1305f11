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
        ConfigCommand::View => out(&config.to_yaml(path)?),
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
        ConfigCommand::SetContext { name, current } => {
            let existed = config.context(&name).is_some();
            config.set_context(&name, ctx.server.clone(), ctx.namespace.clone());
            if current || config.current_context.is_empty() {
                config.current_context = name.clone();
            }
            config.save(path)?;
            let verb = if existed { "modified" } else { "created" };
            out(&format!("Context {name:?} {verb}.\n"))
        }
    }
}
