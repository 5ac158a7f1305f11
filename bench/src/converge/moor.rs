//! moor's side: a replication controller scaled from 0 and a deployment
//! rolled to a second tag, on the in-process cluster, each timed from the
//! request to the goal state as a watch sees it.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use futures::{Stream, StreamExt};
use moor_api::Resource;
use moor_api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use moor_api::core::v1::{
    Container, Pod, PodSpec, PodTemplateSpec, ReplicationController, ReplicationControllerSpec,
};
use moor_api::meta::v1::int_or_string::Value;
use moor_api::meta::v1::{IntOrString, LabelSelector, ObjectMeta};
use moor_client::watcher::Event;
use moor_client::{Api, ListParams};
use moor_integration_tests::Cluster;
use tokio::time::Instant;

use super::{Converged, PATIENCE, docker};

/// The replication controller, and its pods' `app` label.
const RC: &str = "converge";
/// The deployment, and its pods' `app` label.
const DEPLOYMENT: &str = "converge-roll";

/// When the watch first saw one pod in each state, from the request.
#[derive(Default)]
struct Seen {
    created: Duration,
    bound: Option<Duration>,
    running: Option<Duration>,
}

/// Scales the replication controller from 0 (creating it at 0 first) to
/// `replicas` and waits until that many of its pods are Running.
pub async fn scale(cluster: &Cluster, image: &str, replicas: usize) -> anyhow::Result<Converged> {
    let rcs = cluster.client.api::<ReplicationController>();
    if let Err(moor_client::Error::NotFound(_)) = rcs.get("default", RC).await {
        rcs.create(&controller(image)).await?;
    }
    let mut pods = watch(cluster.client.api::<Pod>(), RC).await?;

    let start = Instant::now();
    set_replicas(&rcs, replicas).await?;
    let mut seen: HashMap<String, Seen> = HashMap::new();
    let deadline = start + PATIENCE;
    while seen.values().filter(|s| s.running.is_some()).count() < replicas {
        let pod = match next(&mut pods, deadline, "pods to run").await? {
            Event::Applied(pod) => pod,
            Event::Deleted(_) | Event::Restarted(_) => continue,
        };
        let at = start.elapsed();
        let entry = seen.entry(pod.meta().name.clone()).or_insert(Seen {
            created: at,
            ..Default::default()
        });
        if pod.spec.as_ref().is_some_and(|s| !s.node_name.is_empty()) {
            entry.bound.get_or_insert(at);
        }
        if pod.status.as_ref().is_some_and(|s| s.phase == "Running") {
            entry.running.get_or_insert(at);
        }
    }
    let total = start.elapsed();
    Ok(Converged {
        total,
        milestones: scale_milestones(&seen),
    })
}

/// Scales the replication controller to 0 and waits until its pods and
/// their containers are gone, so the next measurement starts clean.
pub async fn scale_to_zero(cluster: &Cluster) -> anyhow::Result<()> {
    let rcs = cluster.client.api::<ReplicationController>();
    set_replicas(&rcs, 0).await?;
    until_gone(cluster, RC).await
}

/// Waits until no pod labelled `app=<app>` and no container of the node is left.
async fn until_gone(cluster: &Cluster, app: &str) -> anyhow::Result<()> {
    let pods = cluster.client.api::<Pod>();
    let params = ListParams::default()
        .namespace("default")
        .labels(format!("app={app}"));
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (left, _) = pods.list(&params).await?;
        let containers = docker::count(&format!("label=moor.node={}", cluster.node)).await?;
        if left.is_empty() && containers == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "timed out removing {app}: {} pods and {containers} containers left",
            left.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Creates the deployment of `replicas` with `from` and waits until it is
/// available (untimed), then changes its image to `to` and times the
/// rollout until the status says updated = available = replicas and no pod
/// of the old image is left.
pub async fn rollout(
    cluster: &Cluster,
    from: &str,
    to: &str,
    replicas: usize,
) -> anyhow::Result<Converged> {
    let deployments = cluster.client.api::<Deployment>();
    let pods = watch(cluster.client.api::<Pod>(), DEPLOYMENT).await?;
    let status = watch(deployments.clone(), DEPLOYMENT).await?;
    let mut events = futures::stream::select(
        pods.map(|e| e.map(Change::of_pod)),
        status.map(|e| e.map(Change::of_deployment)),
    );
    let mut state = Rollout::default();

    let created = deployments.create(&deployment(from, replicas)).await?;
    let generation = created.meta().generation;
    let deadline = Instant::now() + PATIENCE;
    while !state.done(from, generation, replicas) {
        state.apply(next(&mut events, deadline, "the deployment to be available").await?);
    }

    let start = Instant::now();
    let generation = set_image(&deployments, to).await?;
    let deadline = start + PATIENCE;
    let mut last_old_gone = Duration::ZERO;
    while !state.done(to, generation, replicas) {
        state.apply(next(&mut events, deadline, "the rollout to complete").await?);
        if state.old_pods(to) > 0 {
            last_old_gone = start.elapsed();
        }
    }
    let total = start.elapsed();
    deployments
        .delete("default", DEPLOYMENT, &Default::default())
        .await?;
    until_gone(cluster, DEPLOYMENT).await?;
    Ok(Converged {
        total,
        milestones: vec![("last old pod seen", last_old_gone)],
    })
}

/// What the rollout's two watches report, boiled down.
enum Change {
    /// A pod and its image; `None`: the pod is gone.
    Pod(String, Option<String>),
    /// Every pod and its image, after a (re-)list.
    Pods(Vec<(String, String)>),
    /// Status of the deployment: observed generation, replicas, updated, available.
    Status((i64, i32, i32, i32)),
    /// Nothing the rollout looks at.
    Nothing,
}

/// The deployment's pods and status as last seen.
#[derive(Default)]
struct Rollout {
    /// Each live pod's image.
    pods: HashMap<String, String>,
    /// Status of the deployment: observed generation, replicas, updated, available.
    status: (i64, i32, i32, i32),
}

// === impl Change ===

impl Change {
    fn of_pod(event: Event<Pod>) -> Self {
        let image = |pod: &Pod| {
            pod.spec
                .as_ref()
                .and_then(|s| s.containers.first())
                .map(|c| c.image.clone())
                .unwrap_or_default()
        };
        match event {
            Event::Applied(pod) => Self::Pod(pod.meta().name.clone(), Some(image(&pod))),
            Event::Deleted(pod) => Self::Pod(pod.meta().name.clone(), None),
            Event::Restarted(pods) => Self::Pods(
                pods.iter()
                    .map(|p| (p.meta().name.clone(), image(p)))
                    .collect(),
            ),
        }
    }

    fn of_deployment(event: Event<Deployment>) -> Self {
        let Event::Applied(deployment) = event else {
            return Self::Nothing;
        };
        let s = deployment.status.unwrap_or_default();
        Self::Status((
            s.observed_generation,
            s.replicas,
            s.updated_replicas,
            s.available_replicas,
        ))
    }
}

// === impl Rollout ===

impl Rollout {
    fn apply(&mut self, change: Change) {
        match change {
            Change::Pod(name, Some(image)) => {
                self.pods.insert(name, image);
            }
            Change::Pod(name, None) => {
                self.pods.remove(&name);
            }
            Change::Pods(pods) => self.pods = pods.into_iter().collect(),
            Change::Status(status) => self.status = status,
            Change::Nothing => {}
        }
    }

    fn old_pods(&self, image: &str) -> usize {
        self.pods.values().filter(|i| *i != image).count()
    }

    fn done(&self, image: &str, generation: i64, replicas: usize) -> bool {
        let n = i32::try_from(replicas).unwrap_or(i32::MAX);
        let (observed, total, updated, available) = self.status;
        observed >= generation
            && (total, updated, available) == (n, n, n)
            && self.pods.len() == replicas
            && self.old_pods(image) == 0
    }
}

/// A watch of the objects labelled `app=<app>` (deployments are filtered
/// the same way: ours carries its own name as label), past its first list.
async fn watch<K: Resource>(
    api: Api<K>,
    app: &str,
) -> anyhow::Result<impl Stream<Item = Result<Event<K>, moor_client::Error>> + Unpin> {
    let params = ListParams::default()
        .namespace("default")
        .labels(format!("app={app}"));
    let mut stream = Box::pin(moor_client::watcher(api, params));
    match stream.next().await {
        Some(Ok(Event::Restarted(_))) => Ok(stream),
        Some(Err(err)) => Err(err.into()),
        _ => anyhow::bail!("the watch of {} did not start with a list", K::KIND),
    }
}

/// The next event, or an error once `deadline` passed.
async fn next<T>(
    stream: &mut (impl Stream<Item = Result<T, moor_client::Error>> + Unpin),
    deadline: Instant,
    what: &str,
) -> anyhow::Result<T> {
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => anyhow::bail!("timed out waiting for {what}"),
            Ok(None) => anyhow::bail!("the watch ended while waiting for {what}"),
            // The watcher resumes by itself after an error.
            Ok(Some(Err(_))) => continue,
            Ok(Some(Ok(item))) => return Ok(item),
        }
    }
}

/// Sets the replication controller's replicas, retrying on a conflict with
/// its controller's status writes.
async fn set_replicas(rcs: &Api<ReplicationController>, replicas: usize) -> anyhow::Result<()> {
    loop {
        let mut scale = rcs.get_scale("default", RC).await?;
        scale.spec.get_or_insert_default().replicas = i32::try_from(replicas)?;
        match rcs.update_scale(&scale).await {
            Ok(_) => return Ok(()),
            Err(moor_client::Error::Conflict(_)) => continue,
            Err(err) => return Err(err.into()),
        }
    }
}

/// Sets the deployment's image, retrying on a conflict with its
/// controller's status writes; returns the new generation.
async fn set_image(deployments: &Api<Deployment>, image: &str) -> anyhow::Result<i64> {
    loop {
        let mut deployment = deployments.get("default", DEPLOYMENT).await?;
        let container = deployment
            .spec
            .as_mut()
            .and_then(|s| s.template.as_mut())
            .and_then(|t| t.spec.as_mut())
            .and_then(|s| s.containers.first_mut())
            .context("the deployment has no container")?;
        container.image = image.into();
        match deployments.update(&deployment).await {
            Ok(updated) => return Ok(updated.meta().generation),
            Err(moor_client::Error::Conflict(_)) => continue,
            Err(err) => return Err(err.into()),
        }
    }
}

/// Where the scale-up's time went: when the last pod was created, bound and
/// Running, and the median pod's time from bound to Running.
fn scale_milestones(seen: &HashMap<String, Seen>) -> Vec<(&'static str, Duration)> {
    let last = |f: fn(&Seen) -> Option<Duration>| seen.values().filter_map(f).max();
    let mut bound_to_running: Vec<Duration> = seen
        .values()
        .filter_map(|s| Some(s.running? - s.bound?))
        .collect();
    bound_to_running.sort();
    let median = bound_to_running
        .get(bound_to_running.len() / 2)
        .copied()
        .unwrap_or_default();
    vec![
        (
            "last pod created",
            last(|s| Some(s.created)).unwrap_or_default(),
        ),
        ("last pod bound", last(|s| s.bound).unwrap_or_default()),
        ("median pod bound to Running", median),
        ("last pod Running", last(|s| s.running).unwrap_or_default()),
    ]
}

fn meta(name: &str) -> Option<ObjectMeta> {
    Some(ObjectMeta {
        name: name.into(),
        namespace: "default".into(),
        labels: [("app".to_string(), name.to_string())].into(),
        ..Default::default()
    })
}

/// The echo server (`serve`, HTTP on 8080) with `image`, labelled `app=<app>`.
fn template(app: &str, image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: [("app".to_string(), app.to_string())].into(),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "echo".into(),
                image: image.into(),
                image_pull_policy: "Never".into(),
                args: vec!["serve".into()],
                ..Default::default()
            }],
            // Scale-downs between rounds and old pods in a rollout go quickly.
            termination_grace_period_seconds: Some(1),
            ..Default::default()
        }),
    }
}

fn controller(image: &str) -> ReplicationController {
    let mut rc = ReplicationController {
        metadata: meta(RC),
        spec: Some(ReplicationControllerSpec {
            replicas: Some(0),
            selector: [("app".to_string(), RC.to_string())].into(),
            template: Some(template(RC, image)),
            ..Default::default()
        }),
        ..Default::default()
    };
    rc.set_type_meta();
    rc
}

/// RollingUpdate with maxSurge 1 and maxUnavailable 0: one new pod at a
/// time, each old one removed once its replacement is available (Swarm's
/// `--update-parallelism 1 --update-order start-first`).
fn deployment(image: &str, replicas: usize) -> Deployment {
    let int = |n| {
        Some(IntOrString {
            value: Some(Value::IntVal(n)),
        })
    };
    let mut deployment = Deployment {
        metadata: meta(DEPLOYMENT),
        spec: Some(DeploymentSpec {
            replicas: Some(i32::try_from(replicas).unwrap_or(i32::MAX)),
            selector: Some(LabelSelector {
                match_labels: [("app".to_string(), DEPLOYMENT.to_string())].into(),
                ..Default::default()
            }),
            template: Some(template(DEPLOYMENT, image)),
            strategy: Some(DeploymentStrategy {
                r#type: "RollingUpdate".into(),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: int(0),
                    max_surge: int(1),
                }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    deployment.set_type_meta();
    deployment
}
