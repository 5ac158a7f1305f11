//! A Deployment rolled to a new image and back on the real Docker daemon:
//! with RollingUpdate (maxUnavailable 1, maxSurge 1) and a readiness probe,
//! the service in front of its 4 pods never has fewer than 3 ready
//! endpoints, the rollout completes, and a client-side `rollout undo` brings
//! the old replica set back by name instead of making a new one.
//! Needs dockerd and the images of images/build.sh.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use moor_api::Resource;
use moor_api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, ReplicaSet, RollingUpdateDeployment,
};
use moor_api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, HttpGetAction, ObjectFieldSelector, Pod,
    PodSpec, PodTemplateSpec, Probe, Service, ServicePort, ServiceSpec,
};
use moor_api::meta::v1::int_or_string::Value;
use moor_api::meta::v1::{IntOrString, LabelSelector, ObjectMeta};
use moor_client::watcher::Event;
use moor_client::{Client, ListParams};
use moor_integration_tests::Cluster;
use moor_testkit::assert_eventually;
use tokio_util::sync::CancellationToken;

/// Bound for anything involving Docker and the whole control loop.
const PATIENCE: Duration = Duration::from_secs(120);
/// The deployment, its pods' `app` label and its service.
const APP: &str = "web";
/// The image the deployment starts with.
const OLD_IMAGE: &str = "moor/echo:0.1";
/// Pods of the deployment.
const REPLICAS: usize = 4;
/// Ready endpoints the rollout may never go below: replicas - maxUnavailable.
const MIN_READY: usize = REPLICAS - 1;
/// The replica set and deployment annotation holding the revision.
const REVISION: &str = "deployment.kubernetes.io/revision";
/// The label the deployment controller adds to each revision's pods.
const HASH_LABEL: &str = "pod-template-hash";

/// A second tag of the echo image, made for this test and removed on drop
/// (also when the test panicked).
struct ImageTag(String);

/// What the watcher task saw of the service's ready endpoints.
#[derive(Debug, Default)]
struct Samples {
    /// Whether all replicas were ready once (counting starts then).
    armed: bool,
    /// Endpoints versions seen.
    versions: usize,
    /// The fewest ready addresses seen once armed.
    fewest: Option<usize>,
    /// Every ready count seen once armed, in order (for the failure message).
    trail: Vec<usize>,
}

/// Where a rollout stands, compared whole against the finished state.
#[derive(Debug, Default, PartialEq)]
struct Rollout {
    /// The image of each live pod, marked when it is not running and ready.
    pods: Vec<String>,
    /// Pods being deleted.
    terminating: usize,
    /// Deployment status: replicas, updatedReplicas, availableReplicas.
    counts: (i32, i32, i32),
    /// Whether the status is of the current generation.
    observed: bool,
    /// The Progressing condition's reason.
    progressing: String,
}

// === impl ImageTag ===

impl ImageTag {
    /// Tags the echo image `moor/echo:v2-<pid>`.
    fn create() -> Self {
        let tag = format!("moor/echo:v2-{}", std::process::id());
        let out = std::process::Command::new("docker")
            .args(["tag", OLD_IMAGE, &tag])
            .output()
            .expect("docker runs (install Docker and start dockerd)");
        assert!(
            out.status.success(),
            "docker tag {OLD_IMAGE} {tag}: {} (build the images with images/build.sh)",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(tag)
    }
}

impl Drop for ImageTag {
    fn drop(&mut self) {
        // Only the tag goes: the image keeps its moor/echo:0.1 name.
        let _ = std::process::Command::new("docker")
            .args(["rmi", &self.0])
            .output();
    }
}

// === impl Samples ===

impl Samples {
    fn record(&mut self, ready: usize) {
        self.versions += 1;
        self.armed |= ready >= REPLICAS;
        if self.armed {
            self.fewest = Some(self.fewest.map_or(ready, |f| f.min(ready)));
            self.trail.push(ready);
        }
    }
}

fn meta(name: &str, labels: &[(&str, &str)]) -> Option<ObjectMeta> {
    Some(ObjectMeta {
        name: name.into(),
        namespace: "default".into(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
        ..Default::default()
    })
}

fn int(value: i32) -> Option<IntOrString> {
    Some(IntOrString {
        value: Some(Value::IntVal(value)),
    })
}

/// The echo server on 8080 with `image`, ready once it answers HTTP.
fn template(image: &str) -> PodTemplateSpec {
    let pod_name = EnvVar {
        name: "POD_NAME".into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "metadata.name".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let readiness = Probe {
        http_get: Some(HttpGetAction {
            path: "/".into(),
            port: int(8080),
            ..Default::default()
        }),
        period_seconds: 1,
        ..Default::default()
    };
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: [("app".to_string(), APP.to_string())].into(),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "echo".into(),
                image: image.into(),
                image_pull_policy: "Never".into(),
                args: vec!["serve".into(), "--port".into(), "8080".into()],
                env: vec![pod_name],
                ports: vec![ContainerPort {
                    name: "http".into(),
                    container_port: 8080,
                    ..Default::default()
                }],
                readiness_probe: Some(readiness),
                ..Default::default()
            }],
            termination_grace_period_seconds: Some(2),
            ..Default::default()
        }),
    }
}

fn deployment() -> Deployment {
    let replicas = i32::try_from(REPLICAS).expect("a small count");
    let mut deployment = Deployment {
        metadata: meta(APP, &[]),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: Some(LabelSelector {
                match_labels: [("app".to_string(), APP.to_string())].into(),
                ..Default::default()
            }),
            template: Some(template(OLD_IMAGE)),
            strategy: Some(DeploymentStrategy {
                r#type: "RollingUpdate".into(),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: int(1),
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

fn service() -> Service {
    let mut service = Service {
        metadata: meta(APP, &[]),
        spec: Some(ServiceSpec {
            selector: [("app".to_string(), APP.to_string())].into(),
            ports: vec![ServicePort {
                name: "http".into(),
                port: 80,
                target_port: int(8080),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    service.set_type_meta();
    service
}

/// The ready addresses of Endpoints `endpoints`.
fn ready_count(endpoints: &moor_api::core::v1::Endpoints) -> usize {
    endpoints
        .subsets
        .iter()
        .flat_map(|s| s.addresses.iter().map(|a| a.ip.as_str()))
        .collect::<BTreeSet<_>>()
        .len()
}

/// Follows the Endpoints of service `APP` on a watch, recording every
/// version's ready count, until `stop` is cancelled.
async fn watch_ready(client: Client, stop: CancellationToken) -> Samples {
    let params = ListParams::default().namespace("default");
    let mut events = std::pin::pin!(moor_client::watcher(
        client.api::<moor_api::core::v1::Endpoints>(),
        params
    ));
    let mut samples = Samples::default();
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => return samples,
            event = events.next() => event,
        };
        match event {
            Some(Ok(Event::Applied(e))) if e.meta().name == APP => samples.record(ready_count(&e)),
            Some(Ok(Event::Deleted(e))) if e.meta().name == APP => samples.record(0),
            Some(Ok(Event::Restarted(all))) => {
                let ready = all.iter().find(|e| e.meta().name == APP);
                samples.record(ready.map_or(0, ready_count));
            }
            // Other objects, and breaks the watcher resumes from.
            Some(_) => {}
            None => return samples,
        }
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|s| {
        s.phase == "Running"
            && s.conditions
                .iter()
                .any(|c| c.r#type == "Ready" && c.status == "True")
    })
}

/// The image of the pod's container, marked unless it runs it and is ready.
fn pod_image(pod: &Pod) -> String {
    let spec = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .map_or("", |c| c.image.as_str());
    let running = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.first())
        .map_or("", |c| c.image.as_str());
    match is_ready(pod) && running == spec {
        true => spec.to_string(),
        false => format!("{spec} (running {running:?}, not ready)"),
    }
}

async fn app_pods(cluster: &Cluster) -> Vec<Pod> {
    let params = ListParams::default()
        .namespace("default")
        .labels(format!("app={APP}"));
    cluster
        .client
        .api::<Pod>()
        .list(&params)
        .await
        .map(|(pods, _)| pods)
        .unwrap_or_default()
}

async fn replica_sets(cluster: &Cluster) -> Vec<ReplicaSet> {
    let params = ListParams::default()
        .namespace("default")
        .labels(format!("app={APP}"));
    let (mut sets, _) = cluster
        .client
        .api::<ReplicaSet>()
        .list(&params)
        .await
        .expect("replica sets listed");
    sets.sort_by_key(revision);
    sets
}

fn revision<K: Resource>(object: &K) -> i64 {
    object
        .meta()
        .annotations
        .get(REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

async fn rollout(cluster: &Cluster) -> Rollout {
    let pods = app_pods(cluster).await;
    let (live, terminating): (Vec<&Pod>, Vec<&Pod>) = pods
        .iter()
        .partition(|p| p.meta().deletion_timestamp.is_none());
    let mut images: Vec<String> = live.iter().map(|p| pod_image(p)).collect();
    images.sort();
    let Ok(deployment) = cluster.client.api::<Deployment>().get("default", APP).await else {
        return Rollout::default();
    };
    let status = deployment.status.clone().unwrap_or_default();
    Rollout {
        pods: images,
        terminating: terminating.len(),
        counts: (
            status.replicas,
            status.updated_replicas,
            status.available_replicas,
        ),
        observed: status.observed_generation >= deployment.meta().generation,
        progressing: status
            .conditions
            .iter()
            .find(|c| c.r#type == "Progressing")
            .map(|c| c.reason.clone())
            .unwrap_or_default(),
    }
}

/// The finished rollout of `image`.
fn finished(image: &str) -> Rollout {
    let replicas = i32::try_from(REPLICAS).expect("a small count");
    Rollout {
        pods: vec![image.to_string(); REPLICAS],
        terminating: 0,
        counts: (replicas, replicas, replicas),
        observed: true,
        progressing: "NewReplicaSetAvailable".into(),
    }
}

/// Waits until the rollout of `image` is finished (`what` says which one);
/// the state it found.
async fn wait_finished(cluster: &Cluster, image: &str, what: &str) -> Rollout {
    let want = finished(image);
    let mut state: Rollout;
    assert_eventually!(
        {
            state = rollout(cluster).await;
            state == want
        },
        PATIENCE,
        "{what} ({image}): {state:?}"
    );
    state
}

/// Reads the deployment, changes it with `change` and writes it back,
/// again on a conflict (the controller writes its revision annotation).
async fn update_deployment(cluster: &Cluster, change: impl Fn(&mut Deployment)) {
    let api = cluster.client.api::<Deployment>();
    for _ in 0..20 {
        let mut deployment = api.get("default", APP).await.expect("deployment read");
        change(&mut deployment);
        match api.update(&deployment).await {
            Ok(_) => return,
            Err(moor_client::Error::Conflict(_)) => continue,
            Err(err) => panic!("deployment update failed: {err}"),
        }
    }
    panic!("deployment update conflicted 20 times in a row");
}

/// `rollout undo` as kubectl does it on the client: the previous revision's
/// pod template, without its hash label, copied into the deployment. The
/// replica set rolled back to.
async fn undo(cluster: &Cluster) -> ReplicaSet {
    let deployment = cluster
        .client
        .api::<Deployment>()
        .get("default", APP)
        .await
        .expect("deployment read");
    let current = revision(&deployment);
    let previous = replica_sets(cluster)
        .await
        .into_iter()
        .filter(|rs| revision(rs) < current)
        .max_by_key(revision)
        .expect("a previous revision");
    let mut template = previous
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .expect("the replica set has a template");
    template
        .metadata
        .get_or_insert_default()
        .labels
        .remove(HASH_LABEL);
    update_deployment(cluster, |d| {
        d.spec.get_or_insert_default().template = Some(template.clone());
    })
    .await;
    previous
}

fn names(sets: &[ReplicaSet]) -> BTreeSet<String> {
    sets.iter().map(|rs| rs.meta().name.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_keeps_three_of_four_ready_and_undo_reuses_the_old_replica_set() {
    let tag = ImageTag::create();
    let new_image = tag.0.clone();
    let cluster = Cluster::start("rollout", None)
        .await
        .expect("cluster starts");
    let started = tokio::time::Instant::now();
    cluster
        .client
        .api::<Service>()
        .create(&service())
        .await
        .expect("service created");
    cluster
        .client
        .api::<Deployment>()
        .create(&deployment())
        .await
        .expect("deployment created");
    wait_finished(&cluster, OLD_IMAGE, "the first revision runs").await;
    let first = replica_sets(&cluster).await;
    assert_eq!(first.len(), 1, "one replica set: {:?}", names(&first));
    let first_rs = first[0].meta().name.clone();

    // The watcher arms itself on the first version with all 4 ready.
    let stop = CancellationToken::new();
    let watcher = tokio::spawn(watch_ready(cluster.client.clone(), stop.clone()));
    let client = cluster.client.clone();
    assert_eventually!(
        client
            .api::<moor_api::core::v1::Endpoints>()
            .get("default", APP)
            .await
            .is_ok_and(|e| ready_count(&e) == REPLICAS),
        PATIENCE,
        "{REPLICAS} ready endpoints"
    );

    let rolling = tokio::time::Instant::now();
    update_deployment(&cluster, |d| {
        let template = d
            .spec
            .get_or_insert_default()
            .template
            .get_or_insert_default();
        let spec = template.spec.get_or_insert_default();
        spec.containers[0].image = new_image.clone();
    })
    .await;
    wait_finished(&cluster, &new_image, "the rollout finishes").await;
    let rolled = rolling.elapsed();
    let both = replica_sets(&cluster).await;
    assert_eq!(both.len(), 2, "a second replica set: {:?}", names(&both));
    assert_eq!(both[0].meta().name, first_rs, "revision 1 is the first set");
    assert_eq!(revision(&both[1]), 2, "the new set is revision 2");

    // Back to the old template: the first replica set scales up again.
    let undoing = tokio::time::Instant::now();
    let previous = undo(&cluster).await;
    assert_eq!(
        previous.meta().name,
        first_rs,
        "undo goes back to revision 1"
    );
    wait_finished(&cluster, OLD_IMAGE, "the rollback finishes").await;
    let undone = undoing.elapsed();
    stop.cancel();
    let samples = watcher.await.expect("the watcher task");

    let after = replica_sets(&cluster).await;
    assert_eq!(
        names(&after),
        names(&both),
        "no new replica set for the rollback"
    );
    let newest = after.last().expect("replica sets");
    assert_eq!(
        (newest.meta().name.as_str(), revision(newest)),
        (first_rs.as_str(), 3),
        "the old set is back as revision 3"
    );
    assert_eq!(
        newest.spec.as_ref().and_then(|s| s.replicas),
        Some(4),
        "the old set runs every pod"
    );
    let hash = newest.meta().labels.get(HASH_LABEL).cloned();
    let pods = app_pods(&cluster).await;
    assert!(
        pods.iter()
            .all(|p| p.meta().labels.get(HASH_LABEL) == hash.as_ref()),
        "every pod is the old set's ({hash:?})"
    );
    let deployment = cluster
        .client
        .api::<Deployment>()
        .get("default", APP)
        .await
        .expect("deployment read");
    assert_eq!(revision(&deployment), 3, "the deployment is at revision 3");

    eprintln!(
        "first revision ready after {:?}, rollout {rolled:?}, rollback {undone:?}; {} endpoints versions, ready counts {:?}",
        rolling.duration_since(started),
        samples.versions,
        samples.trail
    );
    assert!(
        samples.armed,
        "the watcher saw all {REPLICAS} ready: {samples:?}"
    );
    assert!(
        samples.fewest.is_some_and(|f| f >= MIN_READY),
        "never fewer than {MIN_READY} ready endpoints: {samples:?}"
    );
    cluster.stop().await;
}
