//! A container's image per its imagePullPolicy. Pulls run in the background
//! (see [`crate::agent::Pull`]) so the pod's status says ContainerCreating
//! while they last; each is told in Pod events as Kubernetes does (Pulling,
//! Pulled, Failed) and failures back off into ImagePullBackOff. Credentials
//! come from the pod's imagePullSecrets (see [`super::keyring`]).

use std::time::{Duration, SystemTime};

use moor_api::core::v1::{Container, Pod};
use moor_runtime::RegistryAuth;

use super::keyring::Keyring;
use super::sources::Sources;
use super::status::Waiting;
use super::{Step, uid_of};
use crate::Error;
use crate::agent::{Agent, PullState};

/// How often a sync looks at a pull in flight (at most).
const PULL_POLL: Duration = Duration::from_secs(1);

/// Nothing when the image is ready for a new container; otherwise what the
/// container waits for (a pull in flight, a failed pull, a missing image
/// with policy Never).
pub async fn ensure(
    agent: &Agent,
    pod: &Pod,
    container: &Container,
    sources: &Sources,
) -> Result<Option<Step>, Error> {
    let uid = uid_of(pod);
    let image = &container.image;
    match agent.pull_state(uid, &container.name) {
        PullState::Running => return Ok(Some(pulling(agent, image))),
        PullState::Done(pulled, took, result) if &pulled == image => {
            return Ok(pulled_now(agent, pod, container, took, result).await);
        }
        // Idle, or a pull of an image the container no longer names.
        PullState::Done(..) | PullState::Idle => {}
    }
    let present = agent.runtime.image_id(image).await?.is_some();
    match (policy(container), present) {
        ("Never", false) => {
            let message =
                format!("Container image {image:?} is not present with pull policy of Never");
            let reason = "ErrImageNeverPull".into();
            return Ok(Some(Step::Wait(
                Waiting { reason, message },
                agent.config.pod_resync,
            )));
        }
        ("Never" | "IfNotPresent", true) => {
            let message = format!("Container image {image:?} already present on machine");
            agent.events.normal(pod, "Pulled", message);
            return Ok(None);
        }
        _ => {}
    }
    if let Some(failure) = agent.pull_failure(uid, &container.name) {
        let backoff = agent.config.backoff(failure.count.saturating_sub(1));
        let since = SystemTime::now()
            .duration_since(failure.at)
            .unwrap_or_default();
        if since < PULL_POLL.min(backoff) {
            // The pull failed a moment ago: ErrImagePull stands for a
            // second, as until the kubelet's next sync, before the back-off
            // shows (the status write would otherwise wake a sync at once
            // that replaced it before anyone could see it).
            let (reason, message) = ("ErrImagePull".into(), failure.message.clone());
            return Ok(Some(Step::Wait(
                Waiting { reason, message },
                PULL_POLL.min(backoff) - since,
            )));
        }
        if since < backoff {
            let message = format!("Back-off pulling image {image:?}: {}", failure.message);
            let reason = "ImagePullBackOff".into();
            return Ok(Some(Step::Wait(
                Waiting { reason, message },
                backoff - since,
            )));
        }
    }
    let credentials = credentials(agent, pod, image, sources);
    tracing::info!(image = %image, container = %container.name, credentials = credentials.len(), "pulling image");
    agent
        .events
        .normal(pod, "Pulling", format!("Pulling image {image:?}"));
    agent.start_pull(uid, &container.name, image, credentials);
    Ok(Some(pulling(agent, image)))
}

/// The credentials to try for `image`, in order, from the pod's image pull
/// secrets. A secret that is missing or unusable is told in an event and
/// left out: the pull goes ahead without it, as kubelet's does (a public
/// image needs none, and the registry's refusal says the rest).
fn credentials(agent: &Agent, pod: &Pod, image: &str, sources: &Sources) -> Vec<RegistryAuth> {
    let mut keyring = Keyring::default();
    let references = pod.spec.as_ref().map_or(&[][..], |s| &s.image_pull_secrets);
    for name in references.iter().map(|r| &r.name).filter(|n| !n.is_empty()) {
        let problem = match sources.pull_secret(name) {
            Err(problem) => format!("Unable to retrieve image pull secret {name:?}: {problem}"),
            Ok(secret) => match keyring.add(secret) {
                Ok(()) => continue,
                Err(problem) => format!("Unable to use image pull secret {name:?}: {problem}"),
            },
        };
        tracing::warn!(secret = %name, %problem, "pulling without an image pull secret");
        let message = format!("{problem}; attempting to pull the image may not succeed.");
        agent
            .events
            .warning(pod, "FailedToRetrieveImagePullSecret", message);
    }
    keyring.lookup(image)
}

/// The policy, defaulted as the apiserver does (static pods are not
/// defaulted by it): Always for `latest` or no tag, else IfNotPresent.
fn policy(container: &Container) -> &str {
    let image = container.image.as_str();
    match container.image_pull_policy.as_str() {
        "" if image.ends_with(":latest")
            || !image.rsplit('/').next().unwrap_or(image).contains(':') =>
        {
            "Always"
        }
        "" => "IfNotPresent",
        other => other,
    }
}

/// Waiting while a pull runs: Kubernetes says ContainerCreating.
fn pulling(agent: &Agent, image: &str) -> Step {
    let waiting = Waiting {
        reason: "ContainerCreating".into(),
        message: format!("pulling image {image:?}"),
    };
    Step::Wait(waiting, agent.config.pod_resync.min(PULL_POLL))
}

/// Takes the result of a finished pull: events, and the failure recorded
/// for the back-off.
async fn pulled_now(
    agent: &Agent,
    pod: &Pod,
    container: &Container,
    took: Duration,
    result: Result<(), String>,
) -> Option<Step> {
    let uid = uid_of(pod);
    let image = &container.image;
    match result {
        Ok(()) => {
            agent.clear_pull_failures(uid, Some(&container.name));
            let seconds = took.as_secs_f64();
            tracing::info!(image = %image, seconds, "pulled image; creating the container");
            let message = format!("Successfully pulled image {image:?} in {seconds:.3}s");
            agent.events.normal(pod, "Pulled", message);
            None
        }
        Err(err) => {
            let message = format!("failed to pull image {image:?}: {err}");
            let count = agent.record_pull_failure(uid, &container.name, message.clone());
            let backoff = agent.config.backoff(count - 1);
            tracing::warn!(image = %image, %err, backoff_seconds = backoff.as_secs(), "pull failed; backing off");
            let event = format!("Failed to pull image {image:?}: {err}");
            agent.events.warning(pod, "Failed", event);
            agent
                .events
                .warning(pod, "Failed", "Error: ErrImagePull".into());
            let reason = "ErrImagePull".into();
            Some(Step::Wait(Waiting { reason, message }, backoff))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_pull_policy_follows_the_tag() {
        let container = |image: &str, policy: &str| Container {
            image: image.into(),
            image_pull_policy: policy.into(),
            ..Default::default()
        };
        assert_eq!(policy(&container("echo", "")), "Always");
        assert_eq!(policy(&container("echo:latest", "")), "Always");
        assert_eq!(policy(&container("127.0.0.1:5000/echo", "")), "Always");
        assert_eq!(
            policy(&container("127.0.0.1:5000/echo:1", "")),
            "IfNotPresent"
        );
        assert_eq!(policy(&container("echo:1", "Never")), "Never");
    }
}
