//! Simulated nodes: the fake runtime with a count, no Docker needed.

mod support;

use std::time::Duration;

use moor_api::core::v1::{Node, Pod};
use moor_client::{Client, ListParams};
use moor_integration_tests::Apiserver;
use moor_node::{Config, RuntimeKind};
use moor_testkit::assert_eventually;
use tokio_util::sync::CancellationToken;

fn ready(node: &Node) -> bool {
    node.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.r#type == "Ready" && c.status == "True")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_fake_nodes_register_ready_and_run_pods() {
    let apiserver = Apiserver::start().await.unwrap();
    let url = format!("http://{}", apiserver.addr);
    let client = Client::new(&url).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(url, "hollow", dir.path().to_path_buf());
    config.runtime = RuntimeKind::Fake;
    config.count = Some(50);
    config.heartbeat = Duration::from_secs(1);
    let shutdown = CancellationToken::new();
    let agents = tokio::spawn(moor_node::run(config, shutdown.clone()));

    let nodes = client.api::<Node>();
    assert_eventually!(
        nodes
            .list(&ListParams::default())
            .await
            .is_ok_and(|(n, _)| n.len() == 50 && n.iter().all(ready)),
        Duration::from_secs(60),
        "50 Ready nodes"
    );
    let names: std::collections::BTreeSet<String> = nodes
        .list(&ListParams::default())
        .await
        .unwrap()
        .0
        .into_iter()
        .map(|n| n.metadata.unwrap().name)
        .collect();
    assert!(names.contains("hollow-0") && names.contains("hollow-49"));

    let cluster_pod = support::pod("sim", "Always", vec![support::echo("main", &["serve"])]);
    let mut p = cluster_pod;
    moor_api::Resource::set_type_meta(&mut p);
    client.api::<Pod>().create(&p).await.unwrap();
    let binding = moor_api::core::v1::Binding {
        metadata: Some(moor_api::meta::v1::ObjectMeta {
            name: "sim".into(),
            namespace: "default".into(),
            ..Default::default()
        }),
        target: Some(moor_api::meta::v1::ObjectReference {
            kind: "Node".into(),
            name: "hollow-7".into(),
            ..Default::default()
        }),
    };
    client.api::<Pod>().bind(&binding).await.unwrap();
    assert_eventually!(
        client
            .api::<Pod>()
            .get("default", "sim")
            .await
            .is_ok_and(|p| p
                .status
                .is_some_and(|s| s.phase == "Running" && !s.pod_ip.is_empty())),
        Duration::from_secs(30),
        "the simulated pod runs"
    );
    shutdown.cancel();
    agents.await.unwrap().unwrap();
}

/// One agent on a fake runtime the test drives, against its own apiserver;
/// [`OneAgent::stop`] ends it and checks it ended cleanly.
struct OneAgent {
    client: Client,
    runtime: std::sync::Arc<moor_runtime::Fake>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), moor_node::Error>>,
    _dir: tempfile::TempDir,
    _apiserver: Apiserver,
}

impl OneAgent {
    /// Node `name`, its settings adjusted by `tweak`, on a fake runtime
    /// prepared by `prepare` before the agent starts.
    async fn start(
        name: &str,
        tweak: impl FnOnce(&mut Config),
        prepare: impl FnOnce(&moor_runtime::Fake),
    ) -> Self {
        let apiserver = Apiserver::start().await.expect("the apiserver starts");
        let url = format!("http://{}", apiserver.addr);
        let client = Client::new(&url).expect("a client");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut config = Config::new(url, name, dir.path().to_path_buf());
        tweak(&mut config);
        let runtime = std::sync::Arc::new(moor_runtime::Fake::new(2, 1 << 30));
        prepare(&runtime);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(moor_node::run_with_runtime(
            config,
            runtime.clone(),
            shutdown.clone(),
        ));
        Self {
            client,
            runtime,
            shutdown,
            task,
            _dir: dir,
            _apiserver: apiserver,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task
            .await
            .expect("the agent task ends")
            .expect("the agent stops cleanly");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_goes_not_ready_while_the_runtime_is_down_and_recovers() {
    let agent = OneAgent::start(
        "flaky",
        |config| config.heartbeat = Duration::from_millis(200),
        |_| {},
    )
    .await;
    let (client, runtime) = (&agent.client, &agent.runtime);
    let nodes = client.api::<Node>();
    let condition = |node: Node| {
        node.status
            .and_then(|s| s.conditions.into_iter().find(|c| c.r#type == "Ready"))
            .map(|c| (c.status, c.reason))
    };
    assert_eventually!(
        nodes
            .get("", "flaky")
            .await
            .is_ok_and(|n| condition(n).is_some_and(|c| c.0 == "True")),
        Duration::from_secs(30)
    );
    runtime.set_down(true);
    assert_eventually!(
        nodes.get("", "flaky").await.is_ok_and(
            |n| condition(n) == Some(("False".into(), "ContainerRuntimeUnavailable".into()))
        ),
        Duration::from_secs(30),
        "NotReady with the reason"
    );
    runtime.set_down(false);
    assert_eventually!(
        nodes
            .get("", "flaky")
            .await
            .is_ok_and(|n| condition(n).is_some_and(|c| c.0 == "True")),
        Duration::from_secs(30),
        "Ready again by itself"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_and_liveness_probes_run_through_the_fake_runtime() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};

    // `ready` answers what the test says; `alive` always fails.
    let ready_code = Arc::new(AtomicI64::new(1));
    let code = ready_code.clone();
    let answer = move |_: &_, command: &[String]| {
        let exit_code = match command.first().map(String::as_str) {
            Some("ready") => code.load(Ordering::Relaxed),
            _ => 1,
        };
        Ok(moor_runtime::ExecOutput {
            exit_code,
            output: String::new(),
        })
    };
    let agent = OneAgent::start(
        "probed",
        |config| {
            config.backoff_base = Duration::from_millis(200);
            config.backoff_max = Duration::from_secs(1);
        },
        |runtime| runtime.set_exec(answer),
    )
    .await;
    let client = &agent.client;
    let probe = |command: &str| {
        Some(moor_api::core::v1::Probe {
            exec: Some(moor_api::core::v1::ExecAction {
                command: vec![command.into()],
            }),
            period_seconds: 1,
            failure_threshold: 1,
            ..Default::default()
        })
    };
    let mut gated = support::echo("main", &["serve"]);
    gated.readiness_probe = probe("ready");
    let mut dying = support::echo("main", &["serve"]);
    dying.liveness_probe = probe("alive");
    support::create_and_bind(
        client,
        support::pod("gated", "Always", vec![gated]),
        "probed",
    )
    .await;
    support::create_and_bind(
        client,
        support::pod("dying", "Always", vec![dying]),
        "probed",
    )
    .await;
    let pods = client.api::<Pod>();
    let ready = |p: &Pod| {
        p.status.as_ref().and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.r#type == "Ready")
                .map(|c| c.status.clone())
        })
    };
    assert_eventually!(
        pods.get("default", "gated").await.is_ok_and(|p| {
            support::phase(&p) == "Running" && ready(&p).as_deref() == Some("False")
        }),
        Duration::from_secs(30),
        "running, not ready"
    );
    ready_code.store(0, Ordering::Relaxed);
    assert_eventually!(
        pods.get("default", "gated")
            .await
            .is_ok_and(|p| ready(&p).as_deref() == Some("True")),
        Duration::from_secs(30),
        "ready once the probe succeeds"
    );
    assert_eventually!(
        pods.get("default", "dying").await.is_ok_and(|p| {
            support::container_status(&p, "main").is_some_and(|s| s.restart_count >= 2)
        }),
        Duration::from_secs(30),
        "a failing liveness probe restarts the container"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_renew_the_lease_and_leave_an_unchanged_node_alone() {
    use moor_api::coordination::v1::Lease;

    let agent = OneAgent::start(
        "steady",
        |config| config.heartbeat = Duration::from_millis(100),
        |_| {},
    )
    .await;
    let (client, runtime) = (&agent.client, &agent.runtime);
    let nodes = client.api::<Node>();
    assert_eventually!(
        nodes.get("", "steady").await.is_ok_and(|n| ready(&n)),
        Duration::from_secs(30)
    );
    let version = |object: Option<&moor_api::meta::v1::ObjectMeta>| {
        object
            .map(|m| m.resource_version.clone())
            .unwrap_or_default()
    };
    let node_version = version(nodes.get("", "steady").await.unwrap().metadata.as_ref());
    let leases = client.api::<Lease>();
    let lease_version = || async {
        version(
            leases
                .get("moor-system", "steady")
                .await
                .ok()
                .and_then(|l| l.metadata)
                .as_ref(),
        )
    };
    // Five renewals of the lease, each seen as a new version.
    let mut seen = vec![lease_version().await];
    while seen.len() < 6 {
        assert_eventually!(
            lease_version().await != *seen.last().unwrap(),
            Duration::from_secs(30),
            "the lease is renewed"
        );
        seen.push(lease_version().await);
    }
    assert_eq!(
        version(nodes.get("", "steady").await.unwrap().metadata.as_ref()),
        node_version,
        "the Node is not rewritten while nothing in its status changes"
    );
    // A change is written at once, without waiting for the refresh.
    runtime.set_down(true);
    assert_eventually!(
        nodes.get("", "steady").await.is_ok_and(|n| !ready(&n)),
        Duration::from_secs(30),
        "NotReady is reported"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_pull_secrets_are_tried_in_order_until_a_pull_succeeds() {
    use moor_api::core::v1::{Event, LocalObjectReference, Secret};
    use moor_runtime::RegistryAuth;

    // The registry takes alice's current password only.
    let agent = OneAgent::start(
        "private",
        |_| {},
        |runtime| {
            runtime.set_pull(|_, auth| match auth {
                Some(auth) if auth.username == "alice" && auth.password == "current" => Ok(()),
                _ => Err(moor_runtime::Error::Pull("unauthorized".into())),
            })
        },
    )
    .await;
    let client = &agent.client;
    let secret = |name: &str, kind: &str, key: &str, json: &str| Secret {
        metadata: Some(moor_api::meta::v1::ObjectMeta {
            name: name.into(),
            namespace: "default".into(),
            ..Default::default()
        }),
        r#type: kind.into(),
        data: [(key.to_owned(), json.as_bytes().to_vec())].into(),
        ..Default::default()
    };
    for secret in [
        secret(
            "legacy",
            "kubernetes.io/dockercfg",
            ".dockercfg",
            r#"{"registry.example.com": {"username": "alice", "password": "old"}}"#,
        ),
        secret("opaque", "Opaque", "token", "x"),
        secret(
            "current",
            "kubernetes.io/dockerconfigjson",
            ".dockerconfigjson",
            r#"{"auths": {"https://registry.example.com/v1/": {"username": "alice", "password": "current"}}}"#,
        ),
    ] {
        client.api::<Secret>().create(&secret).await.unwrap();
    }
    let image = "registry.example.com/app:1";
    let mut main = support::echo("main", &["serve"]);
    main.image = image.into();
    main.image_pull_policy = "Always".into();
    let mut pod = support::pod("private", "Always", vec![main]);
    if let Some(spec) = pod.spec.as_mut() {
        spec.image_pull_secrets = ["legacy", "opaque", "current"]
            .into_iter()
            .map(|name| LocalObjectReference { name: name.into() })
            .collect();
    }
    support::create_and_bind(client, pod, "private").await;

    assert_eventually!(
        client
            .api::<Pod>()
            .get("default", "private")
            .await
            .is_ok_and(|p| support::phase(&p) == "Running"),
        Duration::from_secs(30),
        "the pod runs once a pull succeeds"
    );
    let auth = |password: &str| {
        Some(RegistryAuth {
            username: "alice".into(),
            password: password.into(),
        })
    };
    assert_eq!(
        agent.runtime.pulls(),
        [
            (image.to_owned(), auth("old")),
            (image.to_owned(), auth("current"))
        ],
        "each matching secret in order, until one pull succeeds"
    );
    let events = client
        .api::<Event>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .0;
    assert!(
        events
            .iter()
            .any(|e| e.reason == "FailedToRetrieveImagePullSecret"
                && e.message.contains(r#"image pull secret "opaque""#)
                && e.message.contains(r#"its type is "Opaque""#)),
        "an event says why a secret was left out: {events:?}"
    );
    agent.stop().await;
}
