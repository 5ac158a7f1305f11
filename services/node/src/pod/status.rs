//! A pod's status from its containers as the runtime reports them.

use std::collections::{HashMap, HashSet};

use moor_api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, Pod, PodIp, PodStatus,
};
use moor_api::meta::v1::Condition;
use moor_runtime::{ContainerInfo, ContainerState as State};
use prost_types::Timestamp;

use crate::pod::probe::Health;

/// Why a container is not running, decided by the sync (back-off, pulls).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// e.g. CrashLoopBackOff.
    pub reason: String,
    /// Details, e.g. Docker's pull error.
    pub message: String,
}

/// What the status is computed from.
pub struct Observed<'a> {
    /// Each spec container's (init and app) attempts, oldest first.
    pub attempts: HashMap<String, Vec<&'a ContainerInfo>>,
    /// What the probes say, by container name (only containers with probes).
    pub health: HashMap<String, Health>,
    /// Ids of containers killed for a failed probe.
    pub killed: HashSet<String>,
    /// Waiting reasons decided by this sync.
    pub waiting: HashMap<String, Waiting>,
    /// The sandbox's IP.
    pub pod_ip: String,
    /// The node's IP.
    pub host_ip: String,
    /// Prefix of container ids, e.g. `docker`.
    pub scheme: String,
    /// A pod-level problem (reason, message), e.g. a missing sandbox image.
    pub problem: Option<Waiting>,
}

/// Whether a container that exited with `exit_code` is started again.
pub fn restarts(policy: &str, exit_code: i64) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// Whether an exited container is started again: per the policy and its
/// exit code, or, when the probes had it killed, unless the policy is Never.
pub fn restarts_after(policy: &str, container: &ContainerInfo, killed: &HashSet<String>) -> bool {
    restarts(policy, container.exit_code) || (policy != "Never" && killed.contains(&container.id))
}

/// The restart policy of init containers: Never stays Never, anything else
/// restarts them until they succeed.
pub fn init_policy(policy: &str) -> &'static str {
    if policy == "Never" {
        "Never"
    } else {
        "OnFailure"
    }
}

/// The init containers that have not completed (latest attempt exited 0).
pub fn incomplete_init<'c>(pod: &'c Pod, observed: &Observed<'_>) -> Vec<&'c Container> {
    let Some(spec) = pod.spec.as_ref() else {
        return vec![];
    };
    spec.init_containers
        .iter()
        .filter(|c| {
            !observed
                .attempts
                .get(&c.name)
                .and_then(|a| a.last())
                .is_some_and(|l| l.state == State::Exited && l.exit_code == 0)
        })
        .collect()
}

/// The pod's new status; times of unchanged conditions are kept from `old`.
pub fn compute(pod: &Pod, observed: &Observed<'_>) -> PodStatus {
    let old = pod.status.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let now = Timestamp::from(std::time::SystemTime::now());
    let incomplete: Vec<&str> = incomplete_init(pod, observed)
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    let initialized = incomplete.is_empty();
    let app_pending = if initialized {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let init_statuses: Vec<ContainerStatus> = spec
        .init_containers
        .iter()
        .map(|c| container_status(c, observed, "PodInitializing", true))
        .collect();
    let statuses: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| container_status(c, observed, app_pending, false))
        .collect();
    let phase = phase(&spec.restart_policy, &spec, initialized, observed);
    let all_ready = !statuses.is_empty() && statuses.iter().all(|s| s.ready);
    let ready = if all_ready { "True" } else { "False" };
    let not_ready = (!all_ready).then(|| {
        let names: Vec<&str> = statuses
            .iter()
            .filter(|s| !s.ready)
            .map(|s| s.name.as_str())
            .collect();
        let message = format!("containers with unready status: [{}]", names.join(" "));
        ("ContainersNotReady", message)
    });
    let not_initialized = (!initialized).then(|| {
        let message = format!(
            "containers with incomplete status: [{}]",
            incomplete.join(" ")
        );
        ("ContainersNotInitialized", message)
    });
    let initialized = if initialized { "True" } else { "False" };
    let conditions = [
        ("PodScheduled", "True", None),
        ("Initialized", initialized, not_initialized),
        ("ContainersReady", ready, not_ready.clone()),
        ("Ready", ready, not_ready),
    ]
    .into_iter()
    .map(|(kind, status, why)| {
        let kept = old
            .conditions
            .iter()
            .find(|c| c.r#type == kind && c.status == status);
        Condition {
            r#type: kind.into(),
            status: status.into(),
            last_transition_time: kept.and_then(|c| c.last_transition_time).or(Some(now)),
            last_update_time: None,
            observed_generation: 0,
            reason: why
                .as_ref()
                .map_or_else(String::new, |(r, _)| (*r).to_owned()),
            message: why.map_or_else(String::new, |(_, m)| m),
        }
    })
    .collect();
    let (reason, message) = observed
        .problem
        .as_ref()
        .map_or((String::new(), String::new()), |p| {
            (p.reason.clone(), p.message.clone())
        });
    PodStatus {
        phase: phase.into(),
        conditions,
        message,
        reason,
        host_ip: observed.host_ip.clone(),
        pod_ip: observed.pod_ip.clone(),
        pod_ips: if observed.pod_ip.is_empty() {
            vec![]
        } else {
            vec![PodIp {
                ip: observed.pod_ip.clone(),
            }]
        },
        start_time: old.start_time.or(Some(now)),
        init_container_statuses: init_statuses,
        container_statuses: statuses,
        qos_class: if old.qos_class.is_empty() {
            "BestEffort".into()
        } else {
            old.qos_class
        },
    }
}

fn phase(
    policy: &str,
    spec: &moor_api::core::v1::PodSpec,
    initialized: bool,
    observed: &Observed<'_>,
) -> &'static str {
    let latest_of = |c: &Container| {
        observed
            .attempts
            .get(&c.name)
            .and_then(|a| a.last().copied())
    };
    let init_failed = spec.init_containers.iter().any(|c| {
        latest_of(c).is_some_and(|l| {
            l.state == State::Exited
                && l.exit_code != 0
                && !restarts(init_policy(policy), l.exit_code)
        })
    });
    if init_failed {
        return "Failed";
    }
    if !initialized {
        return "Pending";
    }
    let latest: Vec<Option<&ContainerInfo>> = spec.containers.iter().map(latest_of).collect();
    let done = |c: &Option<&ContainerInfo>| {
        c.is_some_and(|c| c.state == State::Exited && !restarts_after(policy, c, &observed.killed))
    };
    if !latest.is_empty() && latest.iter().all(done) {
        return if latest.iter().flatten().all(|c| c.exit_code == 0) {
            "Succeeded"
        } else {
            "Failed"
        };
    }
    let started = |c: &Option<&ContainerInfo>| c.is_some_and(|c| c.state != State::Created);
    if observed.problem.is_none() && latest.iter().any(started) {
        "Running"
    } else {
        "Pending"
    }
}

/// One container's status; `pending` is the waiting reason before it was
/// created. Init containers are ready once they succeeded; app containers
/// when running, started and ready by their probes.
fn container_status(
    container: &Container,
    observed: &Observed<'_>,
    pending: &str,
    init: bool,
) -> ContainerStatus {
    let (name, image) = (container.name.as_str(), container.image.as_str());
    let attempts = observed.attempts.get(name).cloned().unwrap_or_default();
    let latest = attempts.last().copied();
    let previous = attempts
        .len()
        .checked_sub(2)
        .and_then(|i| attempts.get(i))
        .copied();
    let id = |c: &ContainerInfo| format!("{}://{}", observed.scheme, c.id);
    let waiting = observed.waiting.get(name).cloned().or_else(|| {
        observed.problem.clone().or_else(|| {
            latest
                .is_none_or(|c| c.state == State::Created)
                .then(|| Waiting {
                    reason: pending.into(),
                    message: String::new(),
                })
        })
    });
    let (state, last_state) = match (waiting, latest) {
        // Waiting to restart: the exited attempt is the last state.
        (Some(w), Some(c)) if c.state == State::Exited => (waiting_state(w), terminated(c, &id(c))),
        (Some(w), _) => (
            waiting_state(w),
            previous.map_or_else(ContainerState::default, |p| terminated(p, &id(p))),
        ),
        (None, Some(c)) if c.state == State::Running => (
            ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: c.started_at.map(Timestamp::from),
                }),
                ..Default::default()
            },
            previous.map_or_else(ContainerState::default, |p| terminated(p, &id(p))),
        ),
        (None, Some(c)) => (
            terminated(c, &id(c)),
            previous.map_or_else(ContainerState::default, |p| terminated(p, &id(p))),
        ),
        (None, None) => (ContainerState::default(), ContainerState::default()),
    };
    let running = state.running.is_some();
    let health = observed.health.get(name).filter(|_| running && !init);
    let started = running && health.is_none_or(|h| h.started);
    let ready = if init {
        state.terminated.as_ref().is_some_and(|t| t.exit_code == 0)
    } else {
        started && health.is_none_or(|h| h.ready)
    };
    ContainerStatus {
        name: name.into(),
        state: Some(state),
        last_state: Some(last_state),
        ready,
        restart_count: latest.map_or(0, |c| i32::try_from(c.attempt()).unwrap_or(i32::MAX)),
        image: image.into(),
        image_id: latest.map_or(String::new(), |c| c.image_id.clone()),
        container_id: latest.map_or(String::new(), id),
        started: Some(started),
    }
}

fn waiting_state(w: Waiting) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: w.reason,
            message: w.message,
        }),
        ..Default::default()
    }
}

fn terminated(c: &ContainerInfo, id: &str) -> ContainerState {
    let reason = if c.oom_killed {
        "OOMKilled"
    } else if !c.error.is_empty() {
        "StartError"
    } else if c.exit_code == 0 {
        "Completed"
    } else {
        "Error"
    };
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: i32::try_from(c.exit_code).unwrap_or(i32::MAX),
            signal: 0,
            reason: reason.into(),
            message: c.error.clone(),
            started_at: c.started_at.map(Timestamp::from),
            finished_at: c.finished_at.map(Timestamp::from),
            container_id: id.into(),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use moor_api::core::v1::{Container, PodSpec};
    use moor_runtime::labels;

    use super::*;

    fn pod(policy: &str, names: &[&str]) -> Pod {
        Pod {
            spec: Some(PodSpec {
                restart_policy: policy.into(),
                containers: names
                    .iter()
                    .map(|n| Container {
                        name: (*n).into(),
                        image: "img".into(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn info(name: &str, attempt: u32, state: State, exit_code: i64) -> ContainerInfo {
        ContainerInfo {
            id: format!("{name}-{attempt}"),
            name: format!("{name}-{attempt}"),
            labels: [
                (labels::CONTAINER_NAME.to_owned(), name.to_owned()),
                (labels::CONTAINER_ATTEMPT.to_owned(), attempt.to_string()),
            ]
            .into(),
            state,
            exit_code,
            oom_killed: false,
            error: String::new(),
            started_at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(10)),
            finished_at: (state == State::Exited)
                .then(|| SystemTime::UNIX_EPOCH + Duration::from_secs(20)),
            image: "img".into(),
            image_id: "sha256:1".into(),
            ip: None,
        }
    }

    fn observed<'a>(attempts: &[(&str, Vec<&'a ContainerInfo>)]) -> Observed<'a> {
        Observed {
            attempts: attempts
                .iter()
                .map(|(n, a)| ((*n).to_owned(), a.clone()))
                .collect(),
            health: HashMap::new(),
            killed: HashSet::new(),
            waiting: HashMap::new(),
            pod_ip: "10.0.0.2".into(),
            host_ip: "192.0.2.1".into(),
            scheme: "docker".into(),
            problem: None,
        }
    }

    #[test]
    fn restart_policies() {
        assert!(restarts("Always", 0));
        assert!(restarts("OnFailure", 3));
        assert!(!restarts("OnFailure", 0));
        assert!(!restarts("Never", 3));
    }

    #[test]
    fn phase_follows_containers_and_policy() {
        let running = info("a", 0, State::Running, 0);
        let ok = info("b", 0, State::Exited, 0);
        let bad = info("b", 0, State::Exited, 1);
        let status = compute(
            &pod("Never", &["a", "b"]),
            &observed(&[("a", vec![&running]), ("b", vec![&ok])]),
        );
        assert_eq!(status.phase, "Running");
        assert_eq!(status.pod_ip, "10.0.0.2");
        let ready = status
            .conditions
            .iter()
            .find(|c| c.r#type == "Ready")
            .unwrap();
        assert_eq!(ready.status, "False", "a terminated container is not ready");

        let done = compute(&pod("Never", &["b"]), &observed(&[("b", vec![&ok])]));
        assert_eq!(done.phase, "Succeeded");
        let failed = compute(&pod("OnFailure", &["b"]), &observed(&[("b", vec![&ok])]));
        assert_eq!(failed.phase, "Succeeded");
        let failed = compute(&pod("Never", &["b"]), &observed(&[("b", vec![&bad])]));
        assert_eq!(failed.phase, "Failed");
        let restarting = compute(&pod("Always", &["b"]), &observed(&[("b", vec![&bad])]));
        assert_eq!(
            restarting.phase, "Running",
            "a container about to restart keeps the pod Running"
        );
        let nothing = compute(&pod("Always", &["a"]), &observed(&[]));
        assert_eq!(nothing.phase, "Pending");
        let waiting = nothing.container_statuses[0]
            .state
            .clone()
            .unwrap()
            .waiting
            .unwrap();
        assert_eq!(waiting.reason, "ContainerCreating");
    }

    #[test]
    fn restarts_show_count_last_state_and_back_off() {
        let first = info("a", 0, State::Exited, 3);
        let second = info("a", 1, State::Exited, 3);
        let mut seen = observed(&[("a", vec![&first, &second])]);
        seen.waiting.insert(
            "a".into(),
            Waiting {
                reason: "CrashLoopBackOff".into(),
                message: "back-off".into(),
            },
        );
        let status = compute(&pod("Always", &["a"]), &seen);
        let a = &status.container_statuses[0];
        assert_eq!(a.restart_count, 1);
        assert_eq!(a.container_id, "docker://a-1");
        assert_eq!(
            a.state.clone().unwrap().waiting.unwrap().reason,
            "CrashLoopBackOff"
        );
        let last = a.last_state.clone().unwrap().terminated.unwrap();
        assert_eq!((last.exit_code, last.reason.as_str()), (3, "Error"));
    }

    fn condition(status: &PodStatus, kind: &str) -> (String, String) {
        let c = status.conditions.iter().find(|c| c.r#type == kind).unwrap();
        (c.status.clone(), c.reason.clone())
    }

    #[test]
    fn init_containers_gate_the_pod() {
        let with_init = |policy: &str| {
            let mut p = pod(policy, &["app"]);
            p.spec.as_mut().unwrap().init_containers = vec![Container {
                name: "setup".into(),
                image: "img".into(),
                ..Default::default()
            }];
            p
        };
        let running = info("setup", 0, State::Running, 0);
        let status = compute(
            &with_init("Always"),
            &observed(&[("setup", vec![&running])]),
        );
        assert_eq!(status.phase, "Pending");
        assert_eq!(
            condition(&status, "Initialized"),
            ("False".into(), "ContainersNotInitialized".into())
        );
        let app = status.container_statuses[0].state.clone().unwrap();
        assert_eq!(app.waiting.unwrap().reason, "PodInitializing");
        assert!(
            status.init_container_statuses[0]
                .state
                .clone()
                .unwrap()
                .running
                .is_some()
        );

        let failed = info("setup", 0, State::Exited, 2);
        let status = compute(&with_init("Never"), &observed(&[("setup", vec![&failed])]));
        assert_eq!(
            status.phase, "Failed",
            "Never: a failed init container fails the pod"
        );
        let status = compute(&with_init("Always"), &observed(&[("setup", vec![&failed])]));
        assert_eq!(status.phase, "Pending", "otherwise it is retried");

        let done = info("setup", 0, State::Exited, 0);
        let app = info("app", 0, State::Running, 0);
        let status = compute(
            &with_init("Never"),
            &observed(&[("setup", vec![&done]), ("app", vec![&app])]),
        );
        assert_eq!(status.phase, "Running");
        assert_eq!(
            condition(&status, "Initialized"),
            ("True".into(), String::new())
        );
        assert!(
            status.init_container_statuses[0].ready,
            "a completed init container is ready"
        );
        assert_eq!(condition(&status, "Ready").0, "True");
    }

    #[test]
    fn readiness_and_startup_follow_the_probes() {
        let running = info("a", 0, State::Running, 0);
        let mut seen = observed(&[("a", vec![&running])]);
        seen.health.insert(
            "a".into(),
            Health {
                started: true,
                ready: false,
                failed: None,
            },
        );
        let status = compute(&pod("Always", &["a"]), &seen);
        assert!(!status.container_statuses[0].ready);
        assert_eq!(status.container_statuses[0].started, Some(true));
        assert_eq!(
            condition(&status, "Ready"),
            ("False".into(), "ContainersNotReady".into())
        );
        seen.health.get_mut("a").unwrap().ready = true;
        let status = compute(&pod("Always", &["a"]), &seen);
        assert_eq!(condition(&status, "ContainersReady").0, "True");
        assert_eq!(condition(&status, "Ready").0, "True");
    }

    #[test]
    fn containers_killed_by_probes_restart_unless_never() {
        let killed = info("a", 0, State::Exited, 0);
        let mut seen = observed(&[("a", vec![&killed])]);
        let status = compute(&pod("OnFailure", &["a"]), &seen);
        assert_eq!(status.phase, "Succeeded");
        seen.killed.insert(killed.id.clone());
        let status = compute(&pod("OnFailure", &["a"]), &seen);
        assert_eq!(status.phase, "Running", "about to restart");
        let status = compute(&pod("Never", &["a"]), &seen);
        assert_eq!(status.phase, "Succeeded");
    }

    #[test]
    fn unchanged_conditions_keep_their_transition_time() {
        let running = info("a", 0, State::Running, 0);
        let p = pod("Always", &["a"]);
        let first = compute(&p, &observed(&[("a", vec![&running])]));
        let mut again = p.clone();
        again.status = Some(first.clone());
        let second = compute(&again, &observed(&[("a", vec![&running])]));
        assert_eq!(
            first, second,
            "the same containers give the same status: nothing to write"
        );
    }
}
