//! Node lifecycle against a real apiserver, scheduler and controller-manager
//! with two simulated nodes (the node agent on the fake runtime): a node
//! whose agent stops goes Ready=Unknown and tainted, its pods move to the
//! other node, and it comes back clean when its agent returns.

#![allow(clippy::unwrap_used)] // tests: a failed call is a failed test

mod support;

use std::collections::HashMap;
use std::time::Duration;

use moor_api::Resource;
use moor_api::core::v1::{Event, Node, Pod, ReplicationController, Toleration};
use moor_client::Client;
use moor_integration_tests::Apiserver;
use moor_testkit::assert_eventually;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use support::{CONVERGE, live_pods, rc};

const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// An apiserver, scheduler and controller-manager, and node agents that
/// can be stopped and started again; everything stops on drop.
struct Cluster {
    url: String,
    client: Client,
    dir: tempfile::TempDir,
    control: CancellationToken,
    agents: HashMap<String, (CancellationToken, JoinHandle<()>)>,
    _apiserver: Apiserver,
}

impl Cluster {
    /// Control plane with short node lifecycle periods: 3 s grace, 2 s
    /// before eviction.
    async fn start() -> Self {
        let apiserver = Apiserver::start().await.unwrap();
        let url = format!("http://{}", apiserver.addr);
        let client = Client::new(&url).unwrap();
        client.wait_ready(CONVERGE).await.unwrap();
        let control = CancellationToken::new();
        let scheduler = moor_scheduler::Config::new(url.clone());
        tokio::spawn(moor_scheduler::run(scheduler, control.clone()));
        let mut controllers = moor_controller_manager::Config::new(url.clone());
        controllers.node_monitor_grace_period = Duration::from_secs(3);
        controllers.pod_eviction_timeout = Duration::from_secs(2);
        tokio::spawn(moor_controller_manager::run(controllers, control.clone()));
        Self {
            url,
            client,
            dir: tempfile::tempdir().unwrap(),
            control,
            agents: HashMap::new(),
            _apiserver: apiserver,
        }
    }

    /// Starts (again) a simulated node agent named `name`.
    fn start_agent(&mut self, name: &str) {
        let mut config = moor_node::Config::new(self.url.clone(), name, self.dir.path().join(name));
        config.runtime = moor_node::RuntimeKind::Fake;
        config.heartbeat = Duration::from_secs(1);
        config.pod_resync = Duration::from_millis(300);
        config.agent_listen = None;
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                if let Err(err) = moor_node::run(config, stop).await {
                    eprintln!("node agent failed: {err}");
                }
            }
        });
        self.agents.insert(name.to_string(), (stop, task));
    }

    /// Stops node agent `name` and waits until it has.
    async fn stop_agent(&mut self, name: &str) {
        let (stop, task) = self.agents.remove(name).unwrap();
        stop.cancel();
        task.await.unwrap();
    }

    async fn node(&self, name: &str) -> Node {
        self.client.api::<Node>().get("", name).await.unwrap()
    }

    async fn pods_on(&self, node: &str) -> Vec<Pod> {
        live_pods(&self.client, "default", "app=web")
            .await
            .into_iter()
            .filter(|p| node_of(p) == node)
            .collect()
    }

    async fn events(&self, reason: &str) -> Vec<Event> {
        support::events(&self.client, reason).await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.control.cancel();
        for (stop, _) in self.agents.values() {
            stop.cancel();
        }
    }
}

fn node_of(pod: &Pod) -> &str {
    pod.spec.as_ref().map_or("", |s| s.node_name.as_str())
}

fn running(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|s| s.phase == "Running")
}

fn ready(node: &Node) -> Option<(String, String)> {
    let c = node
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.r#type == "Ready")?;
    Some((c.status.clone(), c.reason.clone()))
}

fn taints(node: &Node) -> Vec<String> {
    let mut taints: Vec<String> = node
        .spec
        .as_ref()
        .map(|s| s.taints.iter())
        .into_iter()
        .flatten()
        .map(|t| format!("{}:{}", t.key, t.effect))
        .collect();
    taints.sort();
    taints
}

fn pod_ready(pod: &Pod) -> Option<&str> {
    let status = pod.status.as_ref()?;
    let ready = status.conditions.iter().find(|c| c.r#type == "Ready")?;
    Some(ready.status.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_leave_a_node_whose_agent_stopped_and_it_comes_back_clean() {
    let mut cluster = Cluster::start().await;
    cluster.start_agent("node-a");
    cluster.start_agent("node-b");
    for name in ["node-a", "node-b"] {
        assert_eventually!(
            cluster
                .client
                .api::<Node>()
                .get("", name)
                .await
                .is_ok_and(|n| ready(&n).is_some_and(|(s, _)| s == "True")),
            CONVERGE,
            "{name} registers Ready"
        );
    }

    // A pod that tolerates unreachable nodes forever, on node-a.
    let mut tolerant = support::pod("default", "tolerant", &[("app", "tolerant")]);
    let spec = tolerant.spec.as_mut().unwrap();
    spec.node_name = "node-a".into();
    spec.tolerations = vec![Toleration {
        key: UNREACHABLE.into(),
        operator: "Exists".into(),
        ..Default::default()
    }];
    tolerant.set_type_meta();
    let pods = cluster.client.api::<Pod>();
    pods.create(&tolerant).await.unwrap();

    cluster
        .client
        .api::<ReplicationController>()
        .create(&rc("default", "web", 4, "web"))
        .await
        .unwrap();
    assert_eventually!(
        {
            let web = live_pods(&cluster.client, "default", "app=web").await;
            web.len() == 4
                && web.iter().all(running)
                && web.iter().any(|p| node_of(p) == "node-a")
                && web.iter().any(|p| node_of(p) == "node-b")
        },
        CONVERGE,
        "4 pods run, spread over both nodes"
    );
    assert_eventually!(
        pods.get("default", "tolerant")
            .await
            .is_ok_and(|p| pod_ready(&p) == Some("True")),
        CONVERGE,
        "the tolerant pod is ready"
    );
    let doomed: Vec<String> = cluster
        .pods_on("node-a")
        .await
        .iter()
        .map(|p| p.meta().name.clone())
        .collect();

    cluster.stop_agent("node-a").await;
    assert_eventually!(
        {
            let node = cluster.node("node-a").await;
            ready(&node) == Some(("Unknown".into(), "NodeStatusUnknown".into()))
                && taints(&node)
                    == [
                        format!("{UNREACHABLE}:NoExecute"),
                        format!("{UNREACHABLE}:NoSchedule"),
                    ]
        },
        CONVERGE,
        "node-a goes Unknown and tainted unreachable; now {:?}",
        cluster.node("node-a").await.spec
    );
    assert_eventually!(
        {
            let web = live_pods(&cluster.client, "default", "app=web").await;
            web.len() == 4
                && web.iter().all(|p| node_of(p) == "node-b" && running(p))
                && web.iter().all(|p| !doomed.contains(&p.meta().name))
        },
        CONVERGE,
        "node-a's pods are replaced on node-b"
    );
    for name in &doomed {
        assert!(
            matches!(
                pods.get("default", name).await,
                Err(moor_client::Error::NotFound(_))
            ),
            "evicted pod {name} is gone, not left terminating"
        );
    }
    let tolerant = pods.get("default", "tolerant").await.unwrap();
    assert!(
        tolerant.meta().deletion_timestamp.is_none(),
        "tolerant pod stays"
    );
    assert_eq!(pod_ready(&tolerant), Some("False"), "but is not ready");

    // Events are written in the background: wait for them.
    let mut expected = doomed.clone();
    expected.sort();
    let evicted = || async {
        let mut names: Vec<String> = cluster
            .events("TaintManagerEviction")
            .await
            .iter()
            .filter_map(|e| e.involved_object.as_ref().map(|o| o.name.clone()))
            .collect();
        names.sort();
        names
    };
    assert_eventually!(
        evicted().await == expected,
        CONVERGE,
        "one eviction Event per evicted pod: {:?}",
        evicted().await
    );
    assert_eventually!(
        cluster.events("NodeNotReady").await.iter().any(|e| e
            .involved_object
            .as_ref()
            .is_some_and(|o| o.name == "node-a")),
        CONVERGE,
        "NodeNotReady recorded for node-a"
    );

    cluster.start_agent("node-a");
    assert_eventually!(
        {
            let node = cluster.node("node-a").await;
            ready(&node).is_some_and(|(s, _)| s == "True") && taints(&node).is_empty()
        },
        CONVERGE,
        "node-a is Ready again and untainted"
    );
    assert_eq!(
        cluster.pods_on("node-b").await.len(),
        4,
        "nothing moves back"
    );
}
