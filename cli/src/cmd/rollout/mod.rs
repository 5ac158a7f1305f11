//! `rollout status|history|undo|restart|pause|resume` on deployments, as
//! kubectl does them: everything is done here on the client, by reading and
//! updating the deployment and its replica sets; the controller-manager
//! rolls the changed template out. Updates carry the resourceVersion just
//! read and are retried on a conflict, so a concurrent writer is never
//! overwritten.

mod history;
mod status;

use moor_api::apps::v1::Deployment;
use moor_api::meta::v1::GetRequest;
use tonic::Code;

use crate::args::{RolloutCommand, RolloutTarget};
use crate::cmd::{Ctx, kind_and_name, out};
use crate::error::{Error, Result};
use crate::rpc::Client;

/// The template annotation `rollout restart` stamps.
const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// Times an update is tried again after a conflicting write.
const CONFLICT_RETRIES: usize = 5;

/// A deployment named on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    namespace: String,
    name: String,
}

/// What a change to a deployment's spec decided.
enum Change {
    /// Write the changed deployment.
    Write,
    /// Leave it as it is, printing this line.
    Skip(String),
}

/// Runs a `rollout` subcommand.
pub async fn run(ctx: &Ctx, command: RolloutCommand) -> Result<()> {
    let client = ctx.client()?;
    match command {
        RolloutCommand::Status(args) => {
            let target = Target::of(ctx, &args.target)?;
            status::run(&client, &target, &args).await
        }
        RolloutCommand::History(args) => {
            let target = Target::of(ctx, &args.target)?;
            history::history(&client, &target, args.revision).await
        }
        RolloutCommand::Undo(args) => {
            let target = Target::of(ctx, &args.target)?;
            history::undo(&client, &target, args.to_revision).await
        }
        RolloutCommand::Restart(args) => restart(&client, &Target::of(ctx, &args)?).await,
        RolloutCommand::Pause(args) => set_paused(&client, &Target::of(ctx, &args)?, true).await,
        RolloutCommand::Resume(args) => set_paused(&client, &Target::of(ctx, &args)?, false).await,
    }
}

/// `rollout restart`: a new template annotation makes a new revision.
async fn restart(client: &Client, target: &Target) -> Result<()> {
    let now = prost_types::Timestamp {
        seconds: prost_types::Timestamp::from(std::time::SystemTime::now()).seconds,
        nanos: 0,
    };
    update(client, target, |deployment| {
        let spec = deployment.spec.get_or_insert_default();
        if spec.paused {
            return Err(
                target.refused("can't restart paused deployment (run rollout resume first)")
            );
        }
        spec.template
            .get_or_insert_default()
            .metadata
            .get_or_insert_default()
            .annotations
            .insert(RESTARTED_AT.to_string(), now.to_string());
        Ok(Change::Write)
    })
    .await?;
    out(&format!("{} restarted\n", target.display()))
}

/// `rollout pause` and `rollout resume`: kubectl refuses a deployment that
/// is already in the asked state.
async fn set_paused(client: &Client, target: &Target, paused: bool) -> Result<()> {
    update(client, target, |deployment| {
        let spec = deployment.spec.get_or_insert_default();
        if spec.paused == paused {
            let why = if paused {
                "is already paused"
            } else {
                "is not paused"
            };
            return Err(target.refused(why));
        }
        spec.paused = paused;
        Ok(Change::Write)
    })
    .await?;
    let verb = if paused { "paused" } else { "resumed" };
    out(&format!("{} {verb}\n", target.display()))
}

/// Reads the deployment.
async fn get(client: &Client, target: &Target) -> Result<Deployment> {
    let request = GetRequest {
        namespace: target.namespace.clone(),
        name: target.name.clone(),
    };
    Ok(client
        .deployments()
        .get(request)
        .await
        .map_err(|s| client.status(s))?
        .into_inner())
}

/// Reads the deployment, lets `change` edit it and writes it back; a
/// conflicting write in between makes it read and try again.
async fn update(
    client: &Client,
    target: &Target,
    mut change: impl FnMut(&mut Deployment) -> Result<Change>,
) -> Result<Option<String>> {
    let mut attempt = 0;
    loop {
        let mut deployment = get(client, target).await?;
        if let Change::Skip(line) = change(&mut deployment)? {
            return Ok(Some(line));
        }
        match client.deployments().update(deployment).await {
            Ok(_) => return Ok(None),
            Err(status) if status.code() == Code::Aborted && attempt < CONFLICT_RETRIES => {
                attempt += 1;
            }
            Err(status) => return Err(client.status(status)),
        }
    }
}

// === impl Target ===

impl Target {
    /// The deployment `KIND/NAME` or `KIND NAME` names; other kinds are refused.
    fn of(ctx: &Ctx, args: &RolloutTarget) -> Result<Self> {
        let (info, name) = kind_and_name(&args.kind, args.name.as_deref())?;
        if info.kind != "Deployment" {
            return Err(Error::Usage(format!(
                "rollout is supported on deployments only, not on {}",
                info.plural
            )));
        }
        Ok(Self {
            namespace: ctx.namespace(),
            name,
        })
    }

    /// `deployment.apps/NAME`, as kubectl names it in its lines.
    fn display(&self) -> String {
        format!("deployment.apps/{}", self.name)
    }

    /// kubectl's refusal of one object: `deployments.apps "web" is already paused`.
    fn refused(&self, why: &str) -> Error {
        Error::Usage(format!("deployments.apps {:?} {why}", self.name))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::args::{Cli, Command, RolloutCommand};

    fn rollout(args: &[&str]) -> RolloutCommand {
        let cli = Cli::try_parse_from([&["moorctl", "rollout"], args].concat()).expect("parses");
        match cli.command {
            Command::Rollout(command) => command,
            other => panic!("not rollout: {other:?}"),
        }
    }

    #[test]
    fn subcommands_and_flags_parse() {
        let RolloutCommand::Status(args) = rollout(&["status", "deploy/web", "--timeout", "90s"])
        else {
            panic!("not status")
        };
        assert_eq!(args.target.kind, "deploy/web");
        assert!(args.watch);
        assert_eq!(args.timeout, std::time::Duration::from_secs(90));
        let RolloutCommand::Status(args) =
            rollout(&["status", "deployment", "web", "--watch=false"])
        else {
            panic!("not status")
        };
        assert_eq!(args.target.name.as_deref(), Some("web"));
        assert!(!args.watch);
        assert_eq!(args.timeout, std::time::Duration::ZERO);
        let RolloutCommand::History(args) = rollout(&["history", "deploy/web", "--revision=2"])
        else {
            panic!("not history")
        };
        assert_eq!(args.revision, 2);
        let RolloutCommand::Undo(args) = rollout(&["undo", "deploy/web", "--to-revision", "3"])
        else {
            panic!("not undo")
        };
        assert_eq!(args.to_revision, 3);
        for verb in ["restart", "pause", "resume"] {
            rollout(&[verb, "deployment/web"]);
        }
        let bad = Cli::try_parse_from(["moorctl", "rollout", "frob", "deploy/web"]);
        assert!(bad.is_err());
    }

    #[test]
    fn refusals_read_like_kubectl() {
        let target = super::Target {
            namespace: "default".into(),
            name: "web".into(),
        };
        assert_eq!(target.display(), "deployment.apps/web");
        assert_eq!(
            target.refused("is already paused").to_string(),
            r#"deployments.apps "web" is already paused"#
        );
    }
}
