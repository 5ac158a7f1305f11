//! The verbs, one module each, and what they share: the chosen server,
//! the namespace, kind lookup.

mod apply;
mod config;
mod delete;
mod describe;
mod drain;
mod edit;
mod exec;
mod explain;
mod get;
mod info;
mod logs;
mod meta;
mod pods;
mod rolling_update;
mod rollout;
mod schedule;
mod wait;

use moor_codec::{KindInfo, Kinds};

use crate::args::{Cli, Command};
use crate::config::{Config, SERVER_ENV, Target};
use crate::error::{Error, Result};
use crate::rpc::Client;

/// What every verb gets: the global flags and, on demand, a client.
pub struct Ctx {
    server: Option<String>,
    namespace: Option<String>,
}

// === impl Ctx ===

impl Ctx {
    /// The server chosen by flag, env or context.
    pub fn target(&self) -> Result<Target> {
        let env = std::env::var(SERVER_ENV).ok();
        crate::config::target(self.server.as_deref(), env.as_deref(), &Config::path())
    }

    /// A client of the chosen server.
    pub fn client(&self) -> Result<Client> {
        Client::new(self.target()?)
    }

    /// The namespace: -n, else the current context's, else "default".
    pub fn namespace(&self) -> String {
        if let Some(ns) = &self.namespace {
            return ns.clone();
        }
        Config::load(&Config::path())
            .ok()
            .and_then(|c| c.current().and_then(|c| c.namespace.clone()))
            .unwrap_or_else(|| "default".to_string())
    }
}

/// The kind a CLI name denotes, or an error suggesting the nearest.
pub fn kind(name: &str) -> Result<&'static KindInfo> {
    Ok(Kinds::global().resolve(name)?)
}

/// Splits `KIND/NAME` or `KIND NAME` into the kind and the name.
pub fn kind_and_name(kind: &str, name: Option<&str>) -> Result<(&'static KindInfo, String)> {
    match (kind.split_once('/'), name) {
        (Some((k, n)), None) => Ok((self::kind(k)?, n.to_string())),
        (None, Some(n)) => Ok((self::kind(kind)?, n.to_string())),
        (Some(_), Some(_)) => Err(Error::Usage(
            "give either KIND/NAME or KIND NAME, not both".to_string(),
        )),
        (None, None) => Err(Error::Usage(format!("a name is needed: {kind} NAME"))),
    }
}

/// Prints to stdout, failing on a closed pipe instead of panicking.
pub fn out(text: &str) -> Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// Prints an earlier error of a verb that goes on after failures; the last
/// one is returned and printed by main.
pub fn report(err: Option<Error>) {
    match err {
        Some(err @ Error::Server { .. }) => eprintln!("{err}"),
        Some(err) => eprintln!("error: {err}"),
        None => {}
    }
}

/// Runs the verb of the command line.
pub async fn run(cli: Cli) -> Result<()> {
    let ctx = Ctx {
        server: cli.server,
        namespace: cli.namespace,
    };
    match cli.command {
        Command::Get(args) => get::run(&ctx, args).await,
        Command::Apply(args) => apply::run(&ctx, args, apply::Mode::Apply).await,
        Command::Create(args) => apply::run(&ctx, args, apply::Mode::Create).await,
        Command::Replace(args) => apply::run(&ctx, args, apply::Mode::Replace).await,
        Command::Delete(args) => delete::run(&ctx, args).await,
        Command::Describe(args) => describe::run(&ctx, args).await,
        Command::Explain(args) => explain::run(&args.path),
        Command::ApiResources => info::api_resources(),
        Command::Events(args) => get::events(&ctx, args).await,
        Command::Scale(args) => meta::scale(&ctx, args).await,
        Command::Label(args) => meta::label(&ctx, args, meta::Field::Labels).await,
        Command::Annotate(args) => meta::label(&ctx, args, meta::Field::Annotations).await,
        Command::Cordon(args) => meta::cordon(&ctx, &args.node, true).await,
        Command::Uncordon(args) => meta::cordon(&ctx, &args.node, false).await,
        Command::Wait(args) => wait::run(&ctx, args).await,
        Command::Call(args) => info::call(&ctx, args).await,
        Command::Version => info::version(&ctx).await,
        Command::Completion(args) => info::completion(args.shell),
        Command::Config(command) => config::run(command, &ctx, &Config::path()),
        Command::Logs(args) => logs::run(&ctx, args).await,
        Command::Exec(args) => exec::run(&ctx, args).await,
        Command::Rollout(command) => rollout::run(&ctx, command).await,
        Command::RollingUpdate(args) => rolling_update::run(&ctx, args).await,
        Command::Schedule(args) => schedule::run(&ctx, args).await,
        Command::Drain(args) => drain::run(&ctx, args).await,
        Command::Edit(args) => edit::run(&ctx, args).await,
        Command::Auth(crate::args::AuthCommand::Whoami) => info::whoami(&ctx).await,
    }
}
