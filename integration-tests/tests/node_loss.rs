//! A node lost under a replication controller, on the real Docker daemon:
//! two node agents share the cluster, one stops (its containers keep
//! running, as on a machine cut off from the network), and with short node
//! lifecycle periods the controller-manager marks that node Ready=Unknown,
//! taints it unreachable and evicts its pods, which come back Running on
//! the node that is left. Needs dockerd and the images of images/build.sh.

use std::collections::BTreeMap;
use std::time::Duration;

use moor_api::Resource;
use moor_api::core::v1::{
    Container, Node, Pod, PodSpec, PodTemplateSpec, ReplicationController,
    ReplicationControllerSpec,
};
use moor_api::meta::v1::ObjectMeta;
use moor_client::ListParams;
use moor_integration_tests::Cluster;
use moor_testkit::assert_eventually;

/// How long a node's agent may go unheard before it is Ready=Unknown.
const GRACE: Duration = Duration::from_secs(4);
/// How long pods stay on an unreachable node.
const TOLERATION: Duration = Duration::from_secs(3);
/// Bound for anything involving Docker and the whole control loop; the
/// node loss itself should take GRACE + TOLERATION + some 15 s.
const PATIENCE: Duration = Duration::from_secs(120);
/// The replication controller and its pods' `app` label.
const APP: &str = "spread";
/// Pods of the replication controller.
const REPLICAS: usize = 4;
/// The taint of a node nobody hears from.
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// What the cluster looks like from the apiserver, compared whole against
/// the state wanted.
#[derive(Debug, Default, PartialEq)]
struct View {
    /// Running pods of the controller per node (live ones only).
    running: BTreeMap<String, usize>,
    /// Pods of the controller not Running, or being deleted.
    other: usize,
    /// The lost node's Ready condition status.
    lost_ready: String,
    /// Whether the lost node carries the unreachable NoExecute taint.
    lost_tainted: bool,
}

fn rc() -> ReplicationController {
    let labels: std::collections::HashMap<String, String> =
        [("app".to_string(), APP.to_string())].into();
    let mut rc = ReplicationController {
        metadata: Some(ObjectMeta {
            name: APP.into(),
            namespace: "default".into(),
            ..Default::default()
        }),
        spec: Some(ReplicationControllerSpec {
            replicas: Some(i32::try_from(REPLICAS).expect("a small count")),
            selector: labels.clone(),
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels,
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "echo".into(),
                        image: "moor/echo:0.1".into(),
                        image_pull_policy: "Never".into(),
                        args: vec!["serve".into(), "--port".into(), "8080".into()],
                        ..Default::default()
                    }],
                    termination_grace_period_seconds: Some(2),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    rc.set_type_meta();
    rc
}

async fn node_ready(cluster: &Cluster, name: &str) -> String {
    cluster
        .client
        .api::<Node>()
        .get("", name)
        .await
        .ok()
        .and_then(|n| n.status)
        .and_then(|s| s.conditions.into_iter().find(|c| c.r#type == "Ready"))
        .map(|c| c.status)
        .unwrap_or_default()
}

async fn view(cluster: &Cluster, lost: &str) -> View {
    let params = ListParams::default()
        .namespace("default")
        .labels(format!("app={APP}"));
    let pods = match cluster.client.api::<Pod>().list(&params).await {
        Ok((pods, _)) => pods,
        Err(_) => return View::default(),
    };
    let mut view = View::default();
    for pod in &pods {
        let node = pod.spec.as_ref().map_or("", |s| s.node_name.as_str());
        let running = pod.status.as_ref().is_some_and(|s| s.phase == "Running");
        if running && pod.meta().deletion_timestamp.is_none() {
            *view.running.entry(node.to_string()).or_default() += 1;
        } else {
            view.other += 1;
        }
    }
    view.lost_ready = node_ready(cluster, lost).await;
    view.lost_tainted = cluster
        .client
        .api::<Node>()
        .get("", lost)
        .await
        .ok()
        .and_then(|n| n.spec)
        .is_some_and(|s| {
            s.taints
                .iter()
                .any(|t| t.key == UNREACHABLE && t.effect == "NoExecute")
        });
    view
}

/// Names of the controller's pods on `node`.
async fn pods_on(cluster: &Cluster, node: &str) -> Vec<String> {
    let params = ListParams::default()
        .namespace("default")
        .labels(format!("app={APP}"));
    let (pods, _) = cluster
        .client
        .api::<Pod>()
        .list(&params)
        .await
        .expect("pods listed");
    pods.iter()
        .filter(|p| p.spec.as_ref().is_some_and(|s| s.node_name == node))
        .map(|p| p.meta().name.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_a_lost_node_come_back_on_the_other_one() {
    let mut cluster = Cluster::start_with("node-loss", None, |config| {
        config.node_monitor_grace_period = GRACE;
        config.pod_eviction_timeout = TOLERATION;
    })
    .await
    .expect("cluster starts");
    let kept = cluster.node.clone();
    let lost = cluster.start_node("b");
    // Both nodes ready before any pod, so the scheduler sees both.
    assert_eventually!(
        node_ready(&cluster, &kept).await == "True" && node_ready(&cluster, &lost).await == "True",
        PATIENCE,
        "nodes {kept} and {lost} are Ready"
    );
    cluster
        .client
        .api::<ReplicationController>()
        .create(&rc())
        .await
        .expect("rc created");
    let mut state: View;
    assert_eventually!(
        {
            state = view(&cluster, &lost).await;
            state.running.values().sum::<usize>() == REPLICAS
                && state.other == 0
                && state.running.len() == 2
        },
        PATIENCE,
        "{REPLICAS} pods running, spread over both nodes: {state:?}"
    );
    let spread = state.running.clone();
    let evicted = pods_on(&cluster, &lost).await;

    let stopped = tokio::time::Instant::now();
    assert!(cluster.stop_node(&lost).await, "agent {lost} stops");
    let wanted = View {
        running: [(kept.clone(), REPLICAS)].into(),
        other: 0,
        lost_ready: "Unknown".into(),
        lost_tainted: true,
    };
    assert_eventually!(
        {
            state = view(&cluster, &lost).await;
            state == wanted
        },
        PATIENCE,
        "all pods Running on {kept}, {lost} Ready=Unknown and tainted: {state:?}"
    );
    let recovered = stopped.elapsed();
    let left = pods_on(&cluster, &lost).await;
    assert!(left.is_empty(), "nothing left on {lost}: {left:?}");
    let on_kept = pods_on(&cluster, &kept).await;
    assert!(
        evicted.iter().all(|p| !on_kept.contains(p)),
        "the evicted pods {evicted:?} were replaced, not moved: {on_kept:?}"
    );
    eprintln!(
        "spread {spread:?}; {} pods evicted from {lost}, running again on {kept} {recovered:?} after its agent stopped (grace {GRACE:?} + toleration {TOLERATION:?}): {state:?}",
        evicted.len()
    );
    cluster.stop().await;
}
