//! Init containers: run in order, each to completion (exit 0) before the
//! next, all before the app containers. They join the sandbox like app
//! containers. A failed one is restarted with back-off unless the pod's
//! policy is Never, which fails the pod. Completed ones are found again by
//! their labels, so a restarted agent does not run them again (a new
//! sandbox does: it removes every container of the pod).

use std::collections::HashMap;
use std::time::Duration;

use moor_api::core::v1::Pod;
use moor_runtime::{ContainerInfo, ContainerState};

use super::status::{self, Waiting};
use super::{Inputs, Step, attempts_of, converge};
use crate::Error;
use crate::agent::Agent;

/// Where a pod's init containers are.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// All completed: the app containers may run.
    Done,
    /// One is running, starting or backing off.
    Running,
    /// One failed and the policy is Never: the pod fails.
    Failed,
}

/// Advances the first init container that has not completed; records why
/// it waits in `waiting` and when to look again in `next`.
pub async fn advance(
    agent: &Agent,
    pod: &Pod,
    existing: &[ContainerInfo],
    inputs: &Inputs<'_>,
    waiting: &mut HashMap<String, Waiting>,
    next: &mut Duration,
) -> Result<Progress, Error> {
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = status::init_policy(&spec.restart_policy);
    for container in &spec.init_containers {
        let attempts = attempts_of(existing, &container.name);
        match attempts.last() {
            Some(c) if c.state == ContainerState::Exited && c.exit_code == 0 => continue,
            Some(c)
                if c.state == ContainerState::Exited && !status::restarts(policy, c.exit_code) =>
            {
                tracing::info!(container = %container.name, exit_code = c.exit_code, "init container failed; the pod fails");
                return Ok(Progress::Failed);
            }
            _ => {}
        }
        match converge(agent, pod, container, policy, &attempts, inputs).await? {
            Step::Fine => {}
            Step::Wait(w, due) => {
                waiting.insert(container.name.clone(), w);
                *next = (*next).min(due);
            }
        }
        return Ok(Progress::Running);
    }
    Ok(Progress::Done)
}
