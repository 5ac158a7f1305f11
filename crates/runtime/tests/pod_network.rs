//! moor's attachment of sandboxes to the cluster network, against the real
//! engine and kernel: needs root, the `moor/pause:0.1` and `moor/echo:0.1`
//! images (`images/build.sh`), the docker CLI (to look at the network) and
//! `conntrack`.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use moor_runtime::pod_network::{IPAM_DIR, POD_RANGE_LABEL};
use moor_runtime::{
    ContainerRuntime, ContainerSpec, ContainerState, Docker, NetworkMode, PortMapping, labels,
};

/// Removes the test's containers, then its network, even when it fails.
struct Cleanup {
    run: String,
    network: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let ids = Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=moor.test/run={}", self.run),
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for id in ids.split_whitespace() {
            let _ = Command::new("docker").args(["rm", "-f", id]).output();
        }
        let _ = Command::new("docker")
            .args(["network", "rm", &self.network])
            .output();
    }
}

fn container(run: &str, name: &str, image: &str, network: NetworkMode) -> ContainerSpec {
    let sandbox = matches!(network, NetworkMode::Network(_));
    let mut labels = HashMap::from([("moor.test/run".to_owned(), run.to_owned())]);
    if sandbox {
        labels.insert(labels::SANDBOX.into(), "true".into());
    }
    ContainerSpec {
        name: format!("{run}-{name}"),
        image: image.into(),
        command: Vec::new(),
        args: if sandbox {
            Vec::new()
        } else {
            vec!["serve".into()]
        },
        working_dir: String::new(),
        env: vec![format!("POD_NAME={name}")],
        labels,
        mounts: Vec::new(),
        ipc_container: None,
        hostname: sandbox.then(|| name.to_owned()),
        network,
        ports: Vec::new(),
        nano_cpus: None,
        memory_bytes: None,
    }
}

/// Creates and starts `spec`; returns its id and what the runtime reports.
async fn start(docker: &Docker, spec: &ContainerSpec) -> (String, moor_runtime::ContainerInfo) {
    let id = docker.create_container(spec).await.expect("created");
    docker.start_container(&id).await.expect("started");
    let info = docker
        .inspect_container(&id)
        .await
        .expect("inspected")
        .expect("exists");
    assert_eq!(info.state, ContainerState::Running, "{info:?}");
    (id, info)
}

/// What `conntrack` prints (entries on stdout; nothing when none match).
fn conntrack(args: &[&str]) -> String {
    let out = Command::new("conntrack")
        .args(args)
        .output()
        .expect("conntrack");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A runtime on a network of its own, made by `ensure_network`, named
/// `prefix` and this process's id (also the run label of the containers);
/// both go when the cleanup drops.
async fn on_new_network(prefix: &str) -> (String, Cleanup, Docker) {
    let run = format!("{prefix}{}", std::process::id());
    let cleanup = Cleanup {
        run: run.clone(),
        network: run.clone(),
    };
    let docker = Docker::connect(&run).await.expect("Docker answers");
    docker.ensure_network(&run).await.expect("network");
    (run, cleanup, docker)
}

fn docker_cli(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    assert!(out.status.success(), "docker {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test]
async fn sandboxes_get_moor_addresses_reach_each_other_and_give_them_back() {
    let (run, cleanup, docker) = on_new_network("moor-podnet-").await;

    // The network is split: Docker's IPRange below, moor's range above.
    let range = docker_cli(&[
        "network",
        "inspect",
        &cleanup.network,
        "--format",
        &format!("{{{{index .Labels \"{POD_RANGE_LABEL}\"}}}}"),
    ]);
    let range: ipnet::Ipv4Net = range.parse().expect("a moor range label");
    let docker_range = docker_cli(&[
        "network",
        "inspect",
        &cleanup.network,
        "--format",
        "{{(index .IPAM.Config 0).IPRange}} {{.Id}}",
    ]);
    let (docker_range, network_id) = docker_range.split_once(' ').expect("two fields");
    let docker_range: ipnet::Ipv4Net = docker_range.parse().expect("an IPRange");
    assert!(
        !docker_range.contains(&range.network()),
        "{docker_range} {range}"
    );

    let net = NetworkMode::Network(cleanup.network.clone());
    let (a, a_info) = start(
        &docker,
        &container(&run, "a", "moor/pause:0.1", net.clone()),
    )
    .await;
    let (_b, b_info) = start(
        &docker,
        &container(&run, "b", "moor/pause:0.1", net.clone()),
    )
    .await;
    let ip_a: Ipv4Addr = a_info
        .ip
        .clone()
        .expect("a has an ip")
        .parse()
        .expect("ipv4");
    let ip_b: Ipv4Addr = b_info
        .ip
        .clone()
        .expect("b has an ip")
        .parse()
        .expect("ipv4");
    assert!(
        range.contains(&ip_a) && range.contains(&ip_b),
        "{ip_a} {ip_b} {range}"
    );
    assert_ne!(ip_a, ip_b);
    let reservation = std::path::Path::new(IPAM_DIR)
        .join(network_id)
        .join(ip_a.to_string());
    assert_eq!(
        std::fs::read_to_string(&reservation).expect("reserved"),
        format!("{run}-a")
    );

    // An app container in a's namespace serves on a's address; b's
    // namespace reaches it across the bridge, and so does a itself through
    // its own address.
    let server = container(
        &run,
        "a-web",
        "moor/echo:0.1",
        NetworkMode::Container(a.clone()),
    );
    let (_web, _) = start(&docker, &server).await;
    for (from, name) in [(&b_info, "b"), (&a_info, "a")] {
        let client = ContainerSpec {
            args: vec![
                "get".into(),
                format!("http://{ip_a}:8080/"),
                "--expect".into(),
                "pod=a-web".into(),
                "--retry-seconds".into(),
                "20".into(),
            ],
            ..container(
                &run,
                &format!("{name}-client"),
                "moor/echo:0.1",
                NetworkMode::Container(from.id.clone()),
            )
        };
        let id = docker.create_container(&client).await.expect("created");
        docker.start_container(&id).await.expect("started");
        let mut exited = None;
        for _ in 0..250 {
            let info = docker.inspect_container(&id).await.expect("inspect");
            if let Some(info) = info.filter(|i| i.state == ContainerState::Exited) {
                exited = Some(info);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let exited = exited.expect("the client finished");
        assert_eq!(exited.exit_code, 0, "{name} did not reach a: {exited:?}");
    }

    // A sandbox that publishes a host port is Docker's to attach, in
    // Docker's range.
    let mut published = container(&run, "c", "moor/pause:0.1", net);
    published.ports = vec![PortMapping {
        container_port: 8080,
        host_port: 0,
        protocol: "tcp".into(),
        host_ip: "127.0.0.1".into(),
    }];
    let (_c, c_info) = start(&docker, &published).await;
    let ip_c: Ipv4Addr = c_info.ip.expect("c has an ip").parse().expect("ipv4");
    assert!(docker_range.contains(&ip_c), "{ip_c} {docker_range}");

    // Removing a sandbox gives its address back and forgets its flows, as
    // Docker does for its endpoints (the host's connection to a here).
    let flows_to_a = || conntrack(&["-L", "--orig-dst", &ip_a.to_string()]);
    let mut stream = std::net::TcpStream::connect((ip_a, 8080)).expect("the host reaches a");
    std::io::Write::write_all(&mut stream, b"GET / HTTP/1.0\r\n\r\n").expect("request");
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).expect("answer");
    assert!(answer.contains("pod=a-web"), "{answer}");
    assert!(
        flows_to_a().contains(&format!("dst={ip_a} ")),
        "a flow to {ip_a} is tracked"
    );
    docker.remove_container(&a).await.expect("removed");
    let left = flows_to_a();
    assert!(
        !left.contains(&format!("dst={ip_a} ")),
        "flows to {ip_a} left: {left}"
    );
    assert!(
        !reservation.exists(),
        "{} still reserved",
        reservation.display()
    );
    drop(cleanup);
}

#[tokio::test]
async fn a_sandbox_restarted_behind_moors_back_is_removed() {
    let (run, cleanup, docker) = on_new_network("moor-podnet-restart-").await;
    let net = NetworkMode::Network(cleanup.network.clone());
    let (kept, _) = start(
        &docker,
        &container(&run, "kept", "moor/pause:0.1", net.clone()),
    )
    .await;
    let (lost, _) = start(&docker, &container(&run, "lost", "moor/pause:0.1", net)).await;
    // `docker restart` gives the sandbox a new namespace, without moor's
    // interface.
    docker_cli(&["restart", "-t", "0", &lost]);

    assert_eq!(docker.remove_unattached(Duration::ZERO).await, 1);
    assert!(
        docker
            .inspect_container(&lost)
            .await
            .expect("inspect")
            .is_none(),
        "the sandbox without its network is gone"
    );
    assert!(
        docker
            .inspect_container(&kept)
            .await
            .expect("inspect")
            .is_some(),
        "the attached one stays"
    );
    drop(cleanup);
}
