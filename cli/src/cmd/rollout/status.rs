//! `rollout status`: follows the deployment with a watch and prints
//! kubectl's line for each new state, until the rollout is complete, fails
//! its progress deadline, or time runs out.

use futures::StreamExt;
use moor_api::apps::v1::Deployment;
use moor_api::meta::v1::{EventType, WatchRequest};

use super::{Target, get};
use crate::args::RolloutStatusArgs;
use crate::cmd::out;
use crate::error::{Error, Result};
use crate::rpc::Client;

pub use moor_api::well_known::DEPLOYMENT_REVISION as REVISION;

/// The Progressing condition's reason once the deadline has passed.
const DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";

/// Where a rollout stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rollout {
    /// Still going; kubectl's "Waiting for ..." line.
    Waiting(String),
    /// Complete; kubectl's "successfully rolled out" line.
    Done(String),
}

/// Runs `rollout status`.
pub async fn run(client: &Client, target: &Target, args: &RolloutStatusArgs) -> Result<()> {
    let follow = follow(client, target, args.revision, args.watch);
    if args.timeout.is_zero() {
        return follow.await;
    }
    match tokio::time::timeout(args.timeout, follow).await {
        Ok(result) => result,
        Err(_) => Err(Error::Timeout("the condition".to_string())),
    }
}

/// Prints each new state until the rollout ends (or once, without `watch`).
async fn follow(client: &Client, target: &Target, revision: i64, watch: bool) -> Result<()> {
    let mut last = String::new();
    let mut print = |rollout: Rollout| -> Result<bool> {
        let (line, done) = match rollout {
            Rollout::Waiting(line) => (line, false),
            Rollout::Done(line) => (line, true),
        };
        // kubectl prints a line per event; the same line twice says nothing new.
        if line != last {
            out(&format!("{line}\n"))?;
            last = line;
        }
        Ok(done)
    };
    loop {
        let deployment = get(client, target).await?;
        if print(status(&deployment, revision)?)? || !watch {
            return Ok(());
        }
        let request = WatchRequest {
            namespace: target.namespace.clone(),
            field_selector: format!("metadata.name={}", target.name),
            resource_version: deployment
                .metadata
                .map(|m| m.resource_version)
                .unwrap_or_default(),
            ..Default::default()
        };
        let mut events = client
            .deployments()
            .watch(request)
            .await
            .map_err(|s| client.status(s))?
            .into_inner();
        while let Some(event) = events.next().await {
            let event = event.map_err(|s| client.status(s))?;
            let kind = event.event_type();
            let Some(deployment) = event.object else {
                continue;
            };
            match kind {
                Some(EventType::Added | EventType::Modified)
                    if print(status(&deployment, revision)?)? =>
                {
                    return Ok(());
                }
                Some(EventType::Deleted) => {
                    return Err(Error::Usage(format!(
                        "deployment {:?} was deleted during the rollout",
                        target.name
                    )));
                }
                _ => {}
            }
        }
        // The watch ended (e.g. the server restarted): read again, watch again.
    }
}

/// kubectl's verdict on a deployment: the line to print and whether the
/// rollout is complete; an error when it failed its progress deadline or
/// runs another revision than the one asked for (`revision` > 0).
pub fn status(deployment: &Deployment, revision: i64) -> Result<Rollout> {
    let meta = deployment.metadata.clone().unwrap_or_default();
    let name = &meta.name;
    if revision > 0 {
        let current = meta
            .annotations
            .get(REVISION)
            .and_then(|r| r.parse::<i64>().ok())
            .unwrap_or(0);
        if current != revision {
            return Err(Error::Usage(format!(
                "desired revision ({revision}) is different from the running revision ({current})"
            )));
        }
    }
    let status = deployment.status.clone().unwrap_or_default();
    if meta.generation > status.observed_generation {
        return Ok(Rollout::Waiting(
            "Waiting for deployment spec update to be observed...".to_string(),
        ));
    }
    let failed = status
        .conditions
        .iter()
        .any(|c| c.r#type == "Progressing" && c.reason == DEADLINE_EXCEEDED);
    if failed {
        return Err(Error::Usage(format!(
            "deployment {name:?} exceeded its progress deadline"
        )));
    }
    let waiting = |what: String| {
        Ok(Rollout::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {what}..."
        )))
    };
    let replicas = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    if status.updated_replicas < replicas {
        return waiting(format!(
            "{} out of {replicas} new replicas have been updated",
            status.updated_replicas
        ));
    }
    if status.replicas > status.updated_replicas {
        return waiting(format!(
            "{} old replicas are pending termination",
            status.replicas - status.updated_replicas
        ));
    }
    if status.available_replicas < status.updated_replicas {
        return waiting(format!(
            "{} of {} updated replicas are available",
            status.available_replicas, status.updated_replicas
        ));
    }
    Ok(Rollout::Done(format!(
        "deployment {name:?} successfully rolled out"
    )))
}

#[cfg(test)]
mod tests {
    use moor_api::apps::v1::{DeploymentSpec, DeploymentStatus};
    use moor_api::meta::v1::{Condition, ObjectMeta};

    use super::*;

    fn deployment(generation: i64, replicas: i32, status: DeploymentStatus) -> Deployment {
        Deployment {
            metadata: Some(ObjectMeta {
                name: "web".into(),
                generation,
                annotations: [(REVISION.to_string(), "2".to_string())].into(),
                ..Default::default()
            }),
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                ..Default::default()
            }),
            status: Some(status),
            ..Default::default()
        }
    }

    fn counts(replicas: i32, updated: i32, available: i32) -> DeploymentStatus {
        DeploymentStatus {
            observed_generation: 2,
            replicas,
            updated_replicas: updated,
            available_replicas: available,
            ..Default::default()
        }
    }

    fn waiting(text: &str) -> Rollout {
        Rollout::Waiting(format!(
            "Waiting for deployment \"web\" rollout to finish: {text}..."
        ))
    }

    #[test]
    fn each_stage_has_kubectls_line() {
        let unobserved = deployment(3, 3, counts(3, 3, 3));
        assert_eq!(
            status(&unobserved, 0).unwrap(),
            Rollout::Waiting("Waiting for deployment spec update to be observed...".into())
        );
        assert_eq!(
            status(&deployment(2, 3, counts(4, 1, 3)), 0).unwrap(),
            waiting("1 out of 3 new replicas have been updated")
        );
        assert_eq!(
            status(&deployment(2, 3, counts(4, 3, 3)), 0).unwrap(),
            waiting("1 old replicas are pending termination")
        );
        assert_eq!(
            status(&deployment(2, 3, counts(3, 3, 2)), 0).unwrap(),
            waiting("2 of 3 updated replicas are available")
        );
        assert_eq!(
            status(&deployment(2, 3, counts(3, 3, 3)), 0).unwrap(),
            Rollout::Done("deployment \"web\" successfully rolled out".into())
        );
    }

    #[test]
    fn a_missed_deadline_and_a_wrong_revision_are_errors() {
        let mut stuck = counts(3, 1, 2);
        stuck.conditions.push(Condition {
            r#type: "Progressing".into(),
            status: "False".into(),
            reason: DEADLINE_EXCEEDED.into(),
            ..Default::default()
        });
        let err = status(&deployment(2, 3, stuck), 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "deployment \"web\" exceeded its progress deadline"
        );
        let done = deployment(2, 3, counts(3, 3, 3));
        assert!(status(&done, 2).is_ok());
        let err = status(&done, 5).unwrap_err();
        assert_eq!(
            err.to_string(),
            "desired revision (5) is different from the running revision (2)"
        );
    }
}
