//! The node agent against the real Docker Engine. Needs dockerd running; the
//! images come from images/build.sh (run here once when missing).

mod support;

use std::time::Duration;

use moor_api::core::v1::{EmptyDirVolumeSource, Node, Volume, VolumeMount};
use moor_runtime::ContainerState;
use moor_testkit::assert_eventually;
use support::{
    Cluster, PATIENCE, container_status, echo, phase, pod, sigterm_trapping_pod, wait_pod,
    with_volumes,
};

fn running(p: &moor_api::core::v1::Pod, name: &str) -> bool {
    container_status(p, name).is_some_and(|s| s.state.is_some_and(|st| st.running.is_some()))
}

fn exited_with(p: &moor_api::core::v1::Pod, name: &str, code: i32) -> bool {
    container_status(p, name)
        .and_then(|s| s.state?.terminated)
        .is_some_and(|t| t.exit_code == code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_registers_ready_with_capacity_and_lease() {
    let cluster = Cluster::start("node").await;
    let nodes = cluster.client.api::<Node>();
    assert_eventually!(
        nodes
            .get("", cluster.node())
            .await
            .is_ok_and(|n| n.status.is_some_and(|s| s
                .conditions
                .iter()
                .any(|c| c.r#type == "Ready" && c.status == "True"))),
        PATIENCE
    );
    let node = nodes.get("", cluster.node()).await.unwrap();
    let status = node.status.unwrap();
    for key in ["cpu", "memory", "pods"] {
        assert!(
            status.capacity.contains_key(key),
            "capacity {key}: {:?}",
            status.capacity
        );
    }
    assert_eq!(status.capacity["pods"], "110");
    assert!(status.addresses.iter().any(|a| a.r#type == "InternalIP"));
    assert!(
        status
            .node_info
            .unwrap()
            .container_runtime_version
            .starts_with("docker://")
    );
    let labels = node.metadata.unwrap().labels;
    assert_eq!(labels["kubernetes.io/hostname"], cluster.node());
    assert_eq!(labels["kubernetes.io/os"], "linux");
    // The Lease is renewed right after the status is written.
    let leases = cluster.client.api::<moor_api::coordination::v1::Lease>();
    assert_eventually!(
        leases
            .get("moor-system", cluster.node())
            .await
            .ok()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .as_deref()
            == Some(cluster.node()),
        PATIENCE,
        "the node's lease, held by the node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_of_a_pod_share_localhost_and_the_pod_ip() {
    let cluster = Cluster::start("localhost").await;
    let server = echo("server", &["serve", "--port", "8080"]);
    let client = echo(
        "client",
        &[
            "get",
            "http://127.0.0.1:8080/",
            "--expect",
            "pod=web",
            "--retry-seconds",
            "30",
        ],
    );
    cluster
        .run_pod(pod("web", "Never", vec![server, client]))
        .await;
    let web = wait_pod(&cluster, "web", "client exited 0, server running", |p| {
        exited_with(p, "client", 0) && running(p, "server")
    })
    .await;
    let status = web.status.clone().unwrap();
    assert_eq!(status.phase, "Running");
    assert!(!status.host_ip.is_empty());
    let server = container_status(&web, "server").unwrap();
    assert!(server.container_id.starts_with("docker://"), "{server:?}");
    assert!(server.image_id.starts_with("sha256:"), "{server:?}");
    // The pod IP is the sandbox's address on the cluster network, and the
    // env carries the pod's name and IP.
    let ip = status.pod_ip;
    let response = support::http_get(&format!("{ip}:8080"))
        .await
        .expect("pod IP answers");
    assert!(response.contains(&format!("pod=web ip={ip}")), "{response}");

    // Status is written only on change: many syncs later (two lease
    // renewals, at a 300 ms resync) the pod's resourceVersion is the same.
    let version =
        |p: &moor_api::core::v1::Pod| p.metadata.as_ref().unwrap().resource_version.clone();
    let before = version(&cluster.pod("web").await.unwrap());
    let leases = cluster.client.api::<moor_api::coordination::v1::Lease>();
    let renewed = || async {
        leases
            .get("moor-system", cluster.node())
            .await
            .unwrap()
            .spec
            .unwrap()
            .renew_time
    };
    for _ in 0..2 {
        let last = renewed().await;
        assert_eventually!(renewed().await != last, PATIENCE, "the lease is renewed");
    }
    assert_eq!(
        version(&cluster.pod("web").await.unwrap()),
        before,
        "no status writes without a change"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_dir_is_shared_between_containers_and_removed_with_the_pod() {
    let cluster = Cluster::start("emptydir").await;
    let mount = VolumeMount {
        name: "data".into(),
        mount_path: "/data".into(),
        ..Default::default()
    };
    let mut writer = echo("writer", &["write", "/data/msg", "hello"]);
    writer.volume_mounts = vec![mount.clone()];
    let mut reader = echo("reader", &["wait-file", "/data/msg", "hello"]);
    reader.volume_mounts = vec![mount];
    let volume = Volume {
        name: "data".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    };
    let created = cluster
        .run_pod(with_volumes(
            pod("share", "Never", vec![writer, reader]),
            vec![volume],
        ))
        .await;
    let uid = created.metadata.unwrap().uid;
    let done = wait_pod(&cluster, "share", "Succeeded", |p| phase(p) == "Succeeded").await;
    assert!(exited_with(&done, "reader", 0) && exited_with(&done, "writer", 0));
    let dir = cluster
        .data_dir
        .path()
        .join("pods")
        .join(&uid)
        .join("volumes")
        .join("data");
    assert_eq!(std::fs::read_to_string(dir.join("msg")).unwrap(), "hello");

    cluster.delete_pod("share", 1).await;
    assert_eventually!(cluster.pod("share").await.is_none(), PATIENCE);
    assert!(!dir.exists(), "the emptyDir goes with the pod");
    assert!(
        cluster.containers(&uid).await.is_empty(),
        "containers go with the pod"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_policies_and_crash_loop_back_off() {
    let cluster = Cluster::start("restarts").await;
    cluster
        .run_pod(pod("crash", "Always", vec![echo("main", &["exit", "3"])]))
        .await;
    cluster
        .run_pod(pod("once", "OnFailure", vec![echo("main", &["exit", "0"])]))
        .await;
    cluster
        .run_pod(pod("fail", "Never", vec![echo("main", &["exit", "3"])]))
        .await;

    let crash = wait_pod(
        &cluster,
        "crash",
        "CrashLoopBackOff after 2 restarts",
        |p| {
            container_status(p, "main").is_some_and(|s| {
                let waiting = s
                    .state
                    .and_then(|st| st.waiting)
                    .is_some_and(|w| w.reason == "CrashLoopBackOff");
                s.restart_count >= 2 && waiting
            })
        },
    )
    .await;
    let main = container_status(&crash, "main").unwrap();
    let last = main.last_state.unwrap().terminated.unwrap();
    assert_eq!((last.exit_code, last.reason.as_str()), (3, "Error"));
    assert_eq!(
        phase(&crash),
        "Running",
        "a pod restarting its container is Running"
    );

    let once = wait_pod(&cluster, "once", "Succeeded", |p| phase(p) == "Succeeded").await;
    assert_eq!(container_status(&once, "main").unwrap().restart_count, 0);
    let fail = wait_pod(&cluster, "fail", "Failed", |p| phase(p) == "Failed").await;
    assert!(exited_with(&fail, "main", 3));
    assert_eq!(container_status(&fail, "main").unwrap().restart_count, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_images_report_pull_errors_and_leave_other_pods_alone() {
    let cluster = Cluster::start("pull").await;
    let mut absent = echo("main", &[]);
    absent.image = "127.0.0.1:1/moor/absent:0.1".into();
    absent.image_pull_policy = "IfNotPresent".into();
    let mut never = echo("main", &[]);
    never.image = "moor/absent:0.1".into();
    never.image_pull_policy = "Never".into();
    cluster.run_pod(pod("absent", "Always", vec![absent])).await;
    cluster.run_pod(pod("never", "Always", vec![never])).await;
    cluster
        .run_pod(pod("fine", "Always", vec![echo("main", &["serve"])]))
        .await;

    let reason = |p: &moor_api::core::v1::Pod| {
        container_status(p, "main")
            .and_then(|s| s.state?.waiting)
            .map(|w| (w.reason, w.message))
    };
    let first = wait_pod(&cluster, "absent", "ErrImagePull", |p| {
        reason(p).is_some_and(|r| r.0 == "ErrImagePull")
    })
    .await;
    let (_, message) = reason(&first).unwrap();
    assert!(
        message.contains("127.0.0.1:1"),
        "Docker's message is shown: {message}"
    );
    wait_pod(&cluster, "absent", "ImagePullBackOff", |p| {
        reason(p).is_some_and(|r| r.0 == "ImagePullBackOff")
    })
    .await;
    wait_pod(&cluster, "never", "ErrImageNeverPull", |p| {
        reason(p).is_some_and(|r| r.0 == "ErrImageNeverPull")
    })
    .await;
    wait_pod(&cluster, "fine", "Running", |p| running(p, "main")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_sends_sigterm_then_kills_at_the_grace_period() {
    let cluster = Cluster::start("grace").await;
    let host_dir = tempfile::tempdir().unwrap();
    let created = cluster
        .run_pod(sigterm_trapping_pod("stubborn", host_dir.path(), |_| {}))
        .await;
    let uid = created.metadata.unwrap().uid;
    wait_pod(&cluster, "stubborn", "Running", |p| running(p, "main")).await;

    let grace = 3;
    let started = tokio::time::Instant::now();
    let marked = cluster.delete_pod("stubborn", grace).await;
    assert!(
        marked.metadata.unwrap().deletion_timestamp.is_some(),
        "a bound pod is deleted gracefully"
    );
    assert_eventually!(cluster.pod("stubborn").await.is_none(), PATIENCE);
    let term =
        std::fs::read_to_string(host_dir.path().join("term")).expect("the container got SIGTERM");
    assert!(term.contains("SIGTERM"));
    assert!(
        started.elapsed() >= Duration::from_secs(grace as u64),
        "a container ignoring SIGTERM is killed only at the end of the grace period"
    );
    assert!(cluster.containers(&uid).await.is_empty());
}

/// R8 of the fault suite: a pod with a 30 s grace period deleted, and its
/// node agent killed and started again while the grace period runs: the
/// container gets SIGTERM once, and SIGKILL when the grace period ends,
/// not before (nor a whole grace period after the restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_across_an_agent_restart_signals_once_and_kills_at_the_grace_period() {
    let mut cluster = Cluster::start("r8").await;
    let host_dir = tempfile::tempdir().unwrap();
    let created = cluster
        .run_pod(sigterm_trapping_pod("stubborn", host_dir.path(), |_| {}))
        .await;
    let uid = created.metadata.unwrap().uid;
    wait_pod(&cluster, "stubborn", "Running", |p| running(p, "main")).await;
    let app = cluster
        .containers(&uid)
        .await
        .into_iter()
        .find(|c| !c.is_sandbox())
        .expect("the app container")
        .id;
    // `docker wait` returns the moment the container exits.
    let exit = tokio::spawn(async move {
        tokio::process::Command::new("docker")
            .args(["wait", &app])
            .output()
            .await
            .expect("docker wait runs");
        std::time::SystemTime::now()
    });

    let grace = Duration::from_secs(30);
    let deleted = std::time::SystemTime::now();
    cluster
        .delete_pod("stubborn", i64::try_from(grace.as_secs()).unwrap())
        .await;
    let term = host_dir.path().join("term");
    // The agent records the grace period's end in the pod's directory once
    // the signal has gone out. (Killed in the milliseconds between the two,
    // an agent signals again when it is back: the one window left.)
    let recorded = cluster
        .data_dir
        .path()
        .join("pods")
        .join(&uid)
        .join("stopping");
    assert_eventually!(
        std::fs::read_to_string(&term).is_ok_and(|t| t.contains("SIGTERM")) && recorded.exists(),
        PATIENCE,
        "the agent sends SIGTERM and records it"
    );
    // Killed in the middle of the grace period, and back.
    cluster.kill_agent().await;
    cluster.start_agent();
    assert_eventually!(cluster.pod("stubborn").await.is_none(), PATIENCE + grace);
    let exited = exit.await.unwrap();
    let signals = std::fs::read_to_string(&term).unwrap();
    assert_eq!(
        signals.matches("SIGTERM").count(),
        1,
        "SIGTERM once, across the restart: {signals:?}"
    );
    let killed_after = exited.duration_since(deleted).unwrap_or_default();
    assert!(
        killed_after >= grace,
        "killed {killed_after:?} after the deletion, before its grace period of {grace:?}"
    );
    assert!(cluster.containers(&uid).await.is_empty());
    println!(
        "R8: SIGTERM once; the container ignoring it was killed {killed_after:.2?} after the \
         deletion (grace period {grace:?}), across an agent restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_adopts_running_containers() {
    let mut cluster = Cluster::start("adopt").await;
    let created = cluster
        .run_pod(pod("keep", "Always", vec![echo("main", &["serve"])]))
        .await;
    let uid = created.metadata.unwrap().uid;
    let before = wait_pod(&cluster, "keep", "Running", |p| running(p, "main")).await;
    let ids_before: Vec<String> = cluster
        .containers(&uid)
        .await
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids_before.len(), 2, "sandbox and one app container");

    cluster.stop_agent().await;
    cluster.start_agent();
    // A new pod running proves the new agent has listed and synced its pods.
    cluster
        .run_pod(pod("probe", "Always", vec![echo("main", &["serve"])]))
        .await;
    wait_pod(&cluster, "probe", "Running", |p| running(p, "main")).await;

    let after = cluster.pod("keep").await.unwrap();
    let mut ids_after: Vec<String> = cluster
        .containers(&uid)
        .await
        .into_iter()
        .map(|c| c.id)
        .collect();
    let mut ids_before = ids_before;
    ids_before.sort();
    ids_after.sort();
    assert_eq!(ids_before, ids_after, "the same containers, none recreated");
    assert!(
        cluster
            .containers(&uid)
            .await
            .iter()
            .all(|c| c.state == ContainerState::Running)
    );
    let main = container_status(&after, "main").unwrap();
    assert_eq!(main.restart_count, 0);
    assert_eq!(
        main.container_id,
        container_status(&before, "main").unwrap().container_id
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_of_vanished_pods_are_removed() {
    let cluster = Cluster::start("orphans").await;
    let created = cluster
        .run_pod(pod("gone", "Always", vec![echo("main", &["serve"])]))
        .await;
    let uid = created.metadata.unwrap().uid;
    wait_pod(&cluster, "gone", "Running", |p| running(p, "main")).await;
    // Grace 0 removes the pod at once, without the agent's confirmation.
    cluster.delete_pod("gone", 0).await;
    assert!(cluster.pod("gone").await.is_none());
    assert_eventually!(
        cluster.containers(&uid).await.is_empty(),
        PATIENCE,
        "orphaned containers removed"
    );
    let dir = cluster.data_dir.path().join("pods").join(&uid);
    assert_eventually!(!dir.exists(), PATIENCE, "orphaned pod directory removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_cannot_start_fails_the_container() {
    let cluster = Cluster::start("starterror").await;
    let mut broken = echo("main", &[]);
    broken.command = vec!["/no/such/binary".into()];
    cluster.run_pod(pod("broken", "Never", vec![broken])).await;
    let failed = wait_pod(&cluster, "broken", "Failed", |p| phase(p) == "Failed").await;
    let terminated = container_status(&failed, "main")
        .unwrap()
        .state
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(terminated.reason, "StartError");
    assert!(
        terminated.message.contains("/no/such/binary"),
        "{terminated:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_sandbox_image_says_how_to_build_it() {
    let cluster = Cluster::start_with("nosandbox", |c| {
        c.sandbox_image = "moor/no-such-pause:0.1".into()
    })
    .await;
    cluster
        .run_pod(pod("stuck", "Always", vec![echo("main", &["serve"])]))
        .await;
    let stuck = wait_pod(&cluster, "stuck", "SandboxImageMissing", |p| {
        p.status
            .as_ref()
            .is_some_and(|s| s.reason == "SandboxImageMissing")
    })
    .await;
    let status = stuck.status.unwrap();
    assert_eq!(status.phase, "Pending");
    assert!(
        status.message.contains("images/build.sh"),
        "{}",
        status.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_ports_and_resource_limits_reach_docker() {
    let cluster = Cluster::start("ports").await;
    let host_port = moor_testkit::free_port();
    let mut server = echo("main", &["serve", "--port", "8080"]);
    server.ports = vec![moor_api::core::v1::ContainerPort {
        container_port: 8080,
        host_port: i32::from(host_port),
        ..Default::default()
    }];
    server.resources = Some(moor_api::core::v1::ResourceRequirements {
        limits: [
            ("cpu".to_owned(), "500m".to_owned()),
            ("memory".to_owned(), "64Mi".to_owned()),
        ]
        .into(),
        ..Default::default()
    });
    let created = cluster
        .run_pod(pod("published", "Always", vec![server]))
        .await;
    let uid = created.metadata.unwrap().uid;
    wait_pod(&cluster, "published", "Running", |p| running(p, "main")).await;
    assert_eventually!(
        support::http_get(&format!("127.0.0.1:{host_port}"))
            .await
            .is_ok_and(|r| r.contains("pod=published")),
        PATIENCE,
        "the hostPort answers"
    );
    let app = cluster
        .containers(&uid)
        .await
        .into_iter()
        .find(|c| !c.is_sandbox())
        .unwrap();
    let out = std::process::Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}}",
            &app.id,
        ])
        .output()
        .expect("docker inspect runs");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("500000000 {}", 64 << 20)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_maps_and_secrets_reach_env_and_files() {
    use moor_api::core::v1::{
        ConfigMap, ConfigMapKeySelector, ConfigMapVolumeSource, EnvVar, EnvVarSource, Secret,
        SecretKeySelector, SecretVolumeSource,
    };
    use moor_api::meta::v1::ObjectMeta;
    let cluster = Cluster::start("sources").await;
    let meta = |name: &str| {
        Some(ObjectMeta {
            name: name.into(),
            ..Default::default()
        })
    };
    let mut cm = ConfigMap {
        metadata: meta("settings"),
        ..Default::default()
    };
    cm.data.insert("greeting".into(), "hello".into());
    cluster.client.api::<ConfigMap>().create(&cm).await.unwrap();
    let mut secret = Secret {
        metadata: meta("creds"),
        ..Default::default()
    };
    secret.data.insert("token".into(), b"s3cret".to_vec());
    cluster
        .client
        .api::<Secret>()
        .create(&secret)
        .await
        .unwrap();

    // The server's POD_NAME comes from the config map, its POD_IP from the
    // secret; a neighbour checks the answer. Two more read the files.
    let mut server = echo("server", &["serve"]);
    server.env = vec![
        EnvVar {
            name: "POD_NAME".into(),
            value_from: Some(EnvVarSource {
                config_map_key_ref: Some(ConfigMapKeySelector {
                    name: "settings".into(),
                    key: "greeting".into(),
                    optional: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        EnvVar {
            name: "POD_IP".into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: "creds".into(),
                    key: "token".into(),
                    optional: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    let check = echo(
        "check",
        &[
            "get",
            "http://127.0.0.1:8080/",
            "--expect",
            "pod=hello ip=s3cret",
            "--retry-seconds",
            "30",
        ],
    );
    let mut cfg_reader = echo("cfg", &["wait-file", "/cfg/greeting", "hello"]);
    cfg_reader.volume_mounts = vec![VolumeMount {
        name: "cfg".into(),
        mount_path: "/cfg".into(),
        ..Default::default()
    }];
    let mut secret_reader = echo("sec", &["wait-file", "/sec/token", "s3cret"]);
    secret_reader.volume_mounts = vec![VolumeMount {
        name: "sec".into(),
        mount_path: "/sec".into(),
        ..Default::default()
    }];
    let volumes = vec![
        Volume {
            name: "cfg".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: "settings".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "sec".into(),
            secret: Some(SecretVolumeSource {
                secret_name: "creds".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    cluster
        .run_pod(with_volumes(
            pod(
                "sources",
                "Never",
                vec![server, check, cfg_reader, secret_reader],
            ),
            volumes,
        ))
        .await;
    let done = wait_pod(&cluster, "sources", "readers done", |p| {
        exited_with(p, "check", 0) && exited_with(p, "cfg", 0) && exited_with(p, "sec", 0)
    })
    .await;
    assert!(running(&done, "server"));

    // A missing config map is a config error naming it; nothing starts.
    let mut needs = echo("needs", &["serve"]);
    needs.env = vec![EnvVar {
        name: "X".into(),
        value_from: Some(EnvVarSource {
            config_map_key_ref: Some(ConfigMapKeySelector {
                name: "nope".into(),
                key: "k".into(),
                optional: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }];
    cluster.run_pod(pod("missing", "Always", vec![needs])).await;
    let stuck = wait_pod(&cluster, "missing", "a config error", |p| {
        container_status(p, "needs")
            .and_then(|s| s.state)
            .and_then(|s| s.waiting)
            .is_some_and(|w| w.reason == "CreateContainerConfigError")
    })
    .await;
    let waiting = container_status(&stuck, "needs")
        .unwrap()
        .state
        .unwrap()
        .waiting
        .unwrap();
    assert!(
        waiting.message.contains("configmap \"nope\" not found"),
        "{}",
        waiting.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_removed_behind_the_agents_back_is_made_again() {
    let cluster = Cluster::start("netgone").await;
    cluster
        .run_pod(pod("first", "Always", vec![echo("main", &["serve"])]))
        .await;
    wait_pod(&cluster, "first", "Running", |p| running(p, "main")).await;
    // moor attaches sandboxes itself, so Docker sees no container on the
    // network and lets it go.
    let removed = std::process::Command::new("docker")
        .args(["network", "rm", &cluster.config.network])
        .output()
        .expect("docker CLI");
    assert!(removed.status.success(), "{removed:?}");

    cluster
        .run_pod(pod("second", "Always", vec![echo("main", &["serve"])]))
        .await;
    let second = wait_pod(&cluster, "second", "Running with an IP", |p| {
        running(p, "main") && p.status.as_ref().is_some_and(|s| !s.pod_ip.is_empty())
    })
    .await;
    let ip = second.status.unwrap().pod_ip;
    let mut response: String;
    assert_eventually!(
        {
            response = support::http_get(&format!("{ip}:8080"))
                .await
                .unwrap_or_default();
            response.contains("pod=second")
        },
        PATIENCE,
        "the new pod answers on {ip}: {response}"
    );
}
