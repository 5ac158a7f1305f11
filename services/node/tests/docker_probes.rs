//! Probes and init containers against the real Docker Engine (moor/echo
//! runs the probes' commands and serves their HTTP).

mod support;

use std::time::Duration;

use moor_api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, Event, ExecAction, HttpGetAction, Pod, Probe,
    Volume, VolumeMount,
};
use moor_api::meta::v1::IntOrString;
use moor_api::meta::v1::int_or_string::Value;
use moor_client::ListParams;
use moor_testkit::assert_eventually;
use support::{Cluster, PATIENCE, container_status, echo, phase, pod, wait_pod, with_volumes};

fn exec(command: &[&str]) -> Option<Probe> {
    Some(Probe {
        exec: Some(ExecAction {
            command: command.iter().map(|c| c.to_string()).collect(),
        }),
        period_seconds: 1,
        failure_threshold: 1,
        timeout_seconds: 5,
        ..Default::default()
    })
}

fn http(port: Value) -> Option<Probe> {
    Some(Probe {
        http_get: Some(HttpGetAction {
            path: "/healthz".into(),
            port: Some(IntOrString { value: Some(port) }),
            ..Default::default()
        }),
        period_seconds: 1,
        failure_threshold: 1,
        ..Default::default()
    })
}

fn data_volume() -> Vec<Volume> {
    vec![Volume {
        name: "data".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }]
}

fn with_data(mut container: Container) -> Container {
    container.volume_mounts = vec![VolumeMount {
        name: "data".into(),
        mount_path: "/data".into(),
        ..Default::default()
    }];
    container
}

fn condition(p: &Pod, kind: &str) -> Option<String> {
    p.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.r#type == kind)
        .map(|c| c.status.clone())
}

fn with_init(mut pod: Pod, init: Vec<Container>) -> Pod {
    if let Some(spec) = pod.spec.as_mut() {
        spec.init_containers = init;
    }
    pod
}

/// The ids of a pod's `setup` containers.
async fn setup_ids(cluster: &Cluster, uid: &str) -> Vec<String> {
    cluster
        .containers(uid)
        .await
        .into_iter()
        .filter(|c| c.label(moor_runtime::labels::CONTAINER_NAME) == "setup")
        .map(|c| c.id)
        .collect()
}

fn restarts(p: &Pod, name: &str) -> i32 {
    container_status(p, name).map_or(0, |s| s.restart_count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_liveness_probes_restart_the_container() {
    let cluster = Cluster::start("liveness").await;
    // Nothing listens on 9999; the server answers on 8080.
    let mut web = echo("web", &["serve", "--port", "8080"]);
    web.liveness_probe = http(Value::IntVal(9999));
    cluster.run_pod(pod("live-http", "Always", vec![web])).await;
    let mut cmd = echo("cmd", &["serve", "--port", "8080"]);
    cmd.liveness_probe = exec(&["/echo", "exit", "1"]);
    cluster.run_pod(pod("live-exec", "Always", vec![cmd])).await;

    let restarted = wait_pod(&cluster, "live-http", "2 restarts", |p| {
        restarts(p, "web") >= 2
    })
    .await;
    let last = container_status(&restarted, "web")
        .unwrap()
        .last_state
        .unwrap();
    assert!(last.terminated.is_some(), "{last:?}");
    wait_pod(&cluster, "live-exec", "2 restarts", |p| {
        restarts(p, "cmd") >= 2
    })
    .await;

    let events = cluster.client.api::<Event>();
    let reasons = || async {
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .0
            .into_iter()
            .filter(|e| {
                e.involved_object
                    .as_ref()
                    .is_some_and(|o| o.name == "live-exec")
            })
            .map(|e| (e.reason, e.message))
            .collect::<Vec<_>>()
    };
    assert_eventually!(
        {
            let seen = reasons().await;
            seen.iter()
                .any(|(r, m)| r == "Killing" && m.contains("liveness"))
                && seen
                    .iter()
                    .any(|(r, m)| r == "Unhealthy" && m.starts_with("Liveness probe failed"))
        },
        PATIENCE,
        "Killing and Unhealthy events; seen {:?}",
        reasons().await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_probes_flip_the_ready_condition_without_waiting_for_a_resync() {
    // A resync far away: only the probers' wakes can flip Ready in time.
    let cluster = Cluster::start_with("readiness", |c| {
        c.pod_resync = Duration::from_secs(600);
    })
    .await;
    let mut web = echo("web", &["serve", "--port", "8080"]);
    web.ports = vec![ContainerPort {
        name: "http".into(),
        container_port: 8080,
        ..Default::default()
    }];
    web.readiness_probe = http(Value::StrVal("http".into()));
    let mut gate = with_data(echo("gate", &["serve", "--port", "8081"]));
    gate.readiness_probe = exec(&["/echo", "wait-file", "/data/ready", "yes", "--seconds", "0"]);
    let created = cluster
        .run_pod(with_volumes(
            pod("gated", "Always", vec![web, gate]),
            data_volume(),
        ))
        .await;
    let uid = created.metadata.unwrap().uid;
    let before = wait_pod(&cluster, "gated", "web ready, gate running", |p| {
        container_status(p, "web").is_some_and(|s| s.ready)
            && container_status(p, "gate")
                .is_some_and(|s| s.state.is_some_and(|st| st.running.is_some()))
    })
    .await;
    assert_eq!(condition(&before, "Ready").as_deref(), Some("False"));
    assert!(!container_status(&before, "gate").unwrap().ready);

    let file = cluster
        .data_dir
        .path()
        .join("pods")
        .join(&uid)
        .join("volumes/data/ready");
    std::fs::write(&file, "yes").unwrap();
    assert_eventually!(
        cluster
            .pod("gated")
            .await
            .is_some_and(|p| condition(&p, "Ready").as_deref() == Some("True")),
        Duration::from_secs(20),
        "Ready soon after the gate's probe succeeds"
    );
    std::fs::remove_file(&file).unwrap();
    assert_eventually!(
        cluster
            .pod("gated")
            .await
            .is_some_and(|p| condition(&p, "Ready").as_deref() == Some("False")),
        Duration::from_secs(20),
        "not Ready again soon after the probe fails"
    );
    let p = cluster.pod("gated").await.unwrap();
    assert_eq!(restarts(&p, "gate"), 0, "readiness never restarts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_containers_run_in_order_before_the_app_and_only_once() {
    let mut cluster = Cluster::start("init").await;
    let first = with_data(echo("first", &["write", "/data/msg", "hello"]));
    // Fails unless the first one ran to completion before it.
    let second = with_data(echo(
        "second",
        &["wait-file", "/data/msg", "hello", "--seconds", "0"],
    ));
    let main = with_data(echo(
        "main",
        &["wait-file", "/data/msg", "hello", "--seconds", "0"],
    ));
    cluster
        .run_pod(with_volumes(
            with_init(pod("ordered", "Never", vec![main]), vec![first, second]),
            data_volume(),
        ))
        .await;
    let done = wait_pod(&cluster, "ordered", "Succeeded", |p| {
        phase(p) == "Succeeded"
    })
    .await;
    let status = done.status.clone().unwrap();
    assert_eq!(condition(&done, "Initialized").as_deref(), Some("True"));
    assert_eq!(status.init_container_statuses.len(), 2);
    for init in &status.init_container_statuses {
        let terminated = init.state.clone().unwrap().terminated.unwrap();
        assert_eq!(terminated.exit_code, 0, "{init:?}");
        assert!(init.ready);
    }

    // A restarted agent does not run completed init containers again.
    let setup = with_data(echo("setup", &["write", "/data/msg", "hello"]));
    let app = echo("app", &["serve", "--port", "8080"]);
    let created = cluster
        .run_pod(with_volumes(
            with_init(pod("kept", "Always", vec![app]), vec![setup]),
            data_volume(),
        ))
        .await;
    let uid = created.metadata.unwrap().uid;
    wait_pod(&cluster, "kept", "Running", |p| phase(p) == "Running").await;
    let before = setup_ids(&cluster, &uid).await;
    assert_eq!(before.len(), 1);
    cluster.stop_agent().await;
    cluster.start_agent();
    // Once a new pod runs, the new agent has synced the old one too.
    cluster
        .run_pod(pod("later", "Always", vec![echo("main", &["serve"])]))
        .await;
    wait_pod(&cluster, "later", "Running", |p| phase(p) == "Running").await;
    let kept = wait_pod(&cluster, "kept", "Running", |p| phase(p) == "Running").await;
    assert_eq!(
        setup_ids(&cluster, &uid).await,
        before,
        "the init container did not run again"
    );
    assert_eq!(restarts(&kept, "app"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_init_container_fails_a_never_pod_and_retries_otherwise() {
    let cluster = Cluster::start("initfail").await;
    let main = echo("main", &["serve"]);
    cluster
        .run_pod(with_init(
            pod("doomed", "Never", vec![main.clone()]),
            vec![echo("setup", &["exit", "3"])],
        ))
        .await;
    cluster
        .run_pod(with_init(
            pod("retried", "Always", vec![main]),
            vec![echo("setup", &["exit", "3"])],
        ))
        .await;
    let doomed = wait_pod(&cluster, "doomed", "Failed", |p| phase(p) == "Failed").await;
    let status = doomed.status.clone().unwrap();
    let setup = status.init_container_statuses[0].state.clone().unwrap();
    assert_eq!(setup.terminated.unwrap().exit_code, 3);
    assert_eq!(condition(&doomed, "Initialized").as_deref(), Some("False"));
    let main = container_status(&doomed, "main").unwrap();
    assert_eq!(
        main.state.unwrap().waiting.unwrap().reason,
        "PodInitializing",
        "the app container never ran"
    );

    let retried = wait_pod(&cluster, "retried", "the init container restarted", |p| {
        p.status.as_ref().is_some_and(|s| {
            s.init_container_statuses
                .first()
                .is_some_and(|i| i.restart_count >= 2)
        })
    })
    .await;
    assert_eq!(phase(&retried), "Pending");
}
