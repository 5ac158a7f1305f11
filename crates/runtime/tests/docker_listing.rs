//! The Docker runtime's container listing against the real engine: a
//! container's reported state, exit code and times follow it from created
//! through running to exited, although the runtime reuses an inspection
//! while the engine reports the same state. Needs the `moor/echo:0.1`
//! image (`images/build.sh`).

use std::time::Duration;

use moor_runtime::{ContainerRuntime, ContainerSpec, ContainerState, Docker, NetworkMode, labels};
use moor_testkit::assert_eventually;

#[tokio::test]
async fn listing_follows_a_container_through_its_states() {
    let docker = Docker::connect("bridge").await.expect("Docker answers");
    let run = format!("moor-listing-{}", std::process::id());
    let labels = [("moor.test/run", run.as_str())];
    let spec = echo(&run, &["exit", "7"], &labels);
    let id = docker.create_container(&spec).await.expect("created");

    let listed = docker.list_containers(&labels).await.expect("listed");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].state, ContainerState::Created, "{listed:?}");
    assert_eq!(listed[0].started_at, None, "{listed:?}");

    docker.start_container(&id).await.expect("started");
    assert_eventually!(
        docker.list_containers(&labels).await.expect("listed")[0].state == ContainerState::Exited,
        Duration::from_secs(30),
        "the container never exited"
    );
    // Twice: the second list reuses the inspection of the first.
    for _ in 0..2 {
        let listed = docker.list_containers(&labels).await.expect("listed");
        let exited = &listed[0];
        assert_eq!(exited.state, ContainerState::Exited, "{exited:?}");
        assert_eq!(exited.exit_code, 7, "{exited:?}");
        assert!(exited.started_at.is_some(), "{exited:?}");
        assert!(exited.finished_at.is_some(), "{exited:?}");
    }

    docker.remove_container(&id).await.expect("removed");
    let listed = docker.list_containers(&labels).await.expect("listed");
    assert!(listed.is_empty(), "{listed:?}");
}

/// An echo container named `name` on the default bridge.
fn echo(name: &str, args: &[&str], labels: &[(&str, &str)]) -> ContainerSpec {
    ContainerSpec {
        name: name.to_string(),
        image: "moor/echo:0.1".to_string(),
        command: Vec::new(),
        args: args.iter().map(|a| a.to_string()).collect(),
        working_dir: String::new(),
        env: Vec::new(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        mounts: Vec::new(),
        network: NetworkMode::Network("bridge".to_string()),
        ipc_container: None,
        hostname: None,
        ports: Vec::new(),
        nano_cpus: None,
        memory_bytes: None,
    }
}

/// A pod container's spec, labelled as the node agent labels them.
fn pod_container(run: &str, name: &str, args: &[&str]) -> ContainerSpec {
    let labels = [
        (labels::POD_UID, run),
        (labels::NODE, run),
        (labels::CONTAINER_NAME, name),
    ];
    echo(&format!("{run}-{name}"), args, &labels)
}

/// Listings by pod or node come from one shared listing of every pod
/// container: they still show every change made through the runtime at
/// once, and a container that exits by itself soon after.
#[tokio::test]
async fn shared_listing_shows_changes_at_once() {
    let docker = Docker::connect("bridge").await.expect("Docker answers");
    let run = format!("moor-shared-{}", std::process::id());
    let by_pod = [(labels::POD_UID, run.as_str())];
    let by_node = [(labels::NODE, run.as_str())];
    let state = |listed: &[moor_runtime::ContainerInfo], id: &str| {
        listed.iter().find(|c| c.id == id).map(|c| c.state)
    };

    let server = docker
        .create_container(&pod_container(&run, "server", &["serve"]))
        .await
        .expect("created");
    let listed = docker.list_containers(&by_pod).await.expect("listed");
    assert_eq!(
        state(&listed, &server),
        Some(ContainerState::Created),
        "{listed:?}"
    );

    docker.start_container(&server).await.expect("started");
    let listed = docker.list_containers(&by_node).await.expect("listed");
    assert_eq!(
        state(&listed, &server),
        Some(ContainerState::Running),
        "{listed:?}"
    );

    let quitter = docker
        .create_container(&pod_container(&run, "quitter", &["exit", "3"]))
        .await
        .expect("created");
    docker.start_container(&quitter).await.expect("started");
    assert_eventually!(
        state(
            &docker.list_containers(&by_pod).await.expect("listed"),
            &quitter
        ) == Some(ContainerState::Exited),
        Duration::from_secs(30),
        "a container that exited by itself was never listed as exited"
    );

    docker
        .stop_container(&server, Duration::ZERO)
        .await
        .expect("stopped");
    let listed = docker.list_containers(&by_pod).await.expect("listed");
    assert_eq!(
        state(&listed, &server),
        Some(ContainerState::Exited),
        "{listed:?}"
    );
    assert_eq!(listed.len(), 2, "{listed:?}");

    docker.remove_container(&server).await.expect("removed");
    docker.remove_container(&quitter).await.expect("removed");
    let listed = docker.list_containers(&by_pod).await.expect("listed");
    assert!(listed.is_empty(), "{listed:?}");
}
