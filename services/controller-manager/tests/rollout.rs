//! Deployment rollouts as `kubectl rollout` sees them, against a real
//! apiserver and controller-manager: revisions, rollback, history limit,
//! pause and resume, restart and the progress deadline. The test acts as
//! the node agent: new pods are reported Running, and Ready unless their
//! image says `broken` (a readiness probe that never passes).

#![allow(clippy::unwrap_used)] // tests: a failed call is a failed test

mod support;

use std::collections::HashMap;

use futures::StreamExt;
use moor_api::Resource;
use moor_api::apps::v1::{Deployment, DeploymentSpec, ReplicaSet};
use moor_api::core::v1::Pod;
use moor_api::meta::v1::{Condition, EventType, LabelSelector};
use moor_client::{Client, ListParams, WatchParams};
use moor_testkit::assert_eventually;
use tokio::task::JoinHandle;

use support::{CONVERGE, Cluster, events, set_ready};

const REVISION: &str = "deployment.kubernetes.io/revision";
const HASH: &str = "pod-template-hash";

/// Reports every new pod Running, and Ready unless its image is broken.
async fn agent(client: Client) -> JoinHandle<()> {
    let mut events = client
        .api::<Pod>()
        .watch(&WatchParams::default())
        .await
        .unwrap();
    tokio::spawn(async move {
        let mut next_ip = 1;
        while let Some(Ok(event)) = events.next().await {
            let (Some(EventType::Added), Some(pod)) = (event.event_type(), event.object.as_ref())
            else {
                continue;
            };
            let image = &pod.spec.as_ref().unwrap().containers[0].image;
            let ready = !image.contains("broken");
            let ip = format!("10.8.{}.{}", next_ip / 250, next_ip % 250 + 1);
            next_ip += 1;
            set_ready(&client, "default", &pod.meta().name, &ip, ready).await;
        }
    })
}

fn deployment(replicas: i32, image: &str) -> Deployment {
    let mut template = support::template(&[("app", "web")]);
    template.spec.as_mut().unwrap().containers[0].image = image.into();
    Deployment {
        metadata: Some(support::meta("default", "web")),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: Some(LabelSelector {
                match_labels: support::labels(&[("app", "web")]),
                ..Default::default()
            }),
            template: Some(template),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn get(client: &Client) -> Deployment {
    client
        .api::<Deployment>()
        .get("default", "web")
        .await
        .unwrap()
}

/// Changes the deployment as a user would, retrying conflicts with the
/// controller's own writes.
async fn edit(client: &Client, change: impl Fn(&mut DeploymentSpec)) {
    let api = client.api::<Deployment>();
    for _ in 0..20 {
        let mut d = get(client).await;
        change(d.spec.as_mut().unwrap());
        match api.update(&d).await {
            Ok(_) => return,
            Err(moor_client::Error::Conflict(_)) => continue,
            Err(e) => panic!("update deployment: {e}"),
        }
    }
    panic!("update deployment: too many conflicts");
}

async fn set_image(client: &Client, image: &str) {
    edit(client, |spec| {
        let pod = spec.template.as_mut().unwrap().spec.as_mut().unwrap();
        pod.containers[0].image = image.into();
    })
    .await;
}

/// The deployment's replica sets, oldest revision first.
async fn replica_sets(client: &Client) -> Vec<ReplicaSet> {
    let params = ListParams::default().namespace("default");
    let (mut sets, _) = client.api::<ReplicaSet>().list(&params).await.unwrap();
    sets.retain(|rs| rs.meta().deletion_timestamp.is_none());
    sets.sort_by_key(revision);
    sets
}

fn revision(rs: &ReplicaSet) -> i64 {
    rs.meta().annotations[REVISION].parse().unwrap()
}

fn image(rs: &ReplicaSet) -> String {
    let template = rs.spec.as_ref().unwrap().template.as_ref().unwrap();
    template.spec.as_ref().unwrap().containers[0].image.clone()
}

fn progressing(d: &Deployment) -> Option<Condition> {
    let status = d.status.as_ref()?;
    let found = status.conditions.iter().find(|c| c.r#type == "Progressing");
    found.cloned()
}

/// Whether the rollout to `image` is complete, as `kubectl rollout status`
/// decides: every replica updated and available at the current generation,
/// the other replica sets at zero.
async fn rolled_out(client: &Client, image_wanted: &str) -> bool {
    let d = get(client).await;
    let desired = d.spec.as_ref().unwrap().replicas.unwrap();
    let s = d.status.clone().unwrap_or_default();
    let sets = replica_sets(client).await;
    s.observed_generation == d.meta().generation
        && (s.replicas, s.updated_replicas, s.available_replicas) == (desired, desired, desired)
        && sets.iter().all(|rs| {
            let replicas = rs.spec.as_ref().unwrap().replicas.unwrap();
            (image(rs) == image_wanted) == (replicas == desired)
        })
}

/// (image, revision) of every replica set, oldest revision first.
async fn history(client: &Client) -> Vec<(String, i64)> {
    let sets = replica_sets(client).await;
    sets.iter().map(|rs| (image(rs), revision(rs))).collect()
}

#[tokio::test]
async fn revisions_grow_and_rollback_brings_the_first_set_back() {
    let cluster = Cluster::start().await.unwrap();
    let client = &cluster.client;
    let agent = agent(client.clone()).await;
    client
        .api::<Deployment>()
        .create(&deployment(2, "app:v1"))
        .await
        .unwrap();
    assert_eventually!(rolled_out(client, "app:v1").await, CONVERGE);
    let first = replica_sets(client).await.remove(0);
    for image in ["app:v2", "app:v3"] {
        set_image(client, image).await;
        assert_eventually!(
            rolled_out(client, image).await,
            CONVERGE,
            "rollout to {image}"
        );
    }
    let expected = [("app:v1", 1), ("app:v2", 2), ("app:v3", 3)];
    let expected: Vec<(String, i64)> = expected.iter().map(|(i, r)| (i.to_string(), *r)).collect();
    assert_eq!(history(client).await, expected);
    assert_eq!(get(client).await.meta().annotations[REVISION], "3");

    // `kubectl rollout undo --to-revision=1`: the template of revision 1,
    // without its hash label, copied into the deployment.
    let mut template = first.spec.clone().unwrap().template.unwrap();
    template.metadata.as_mut().unwrap().labels.remove(HASH);
    edit(client, |spec| spec.template = Some(template.clone())).await;
    assert_eventually!(rolled_out(client, "app:v1").await, CONVERGE, "rollback");
    let sets = replica_sets(client).await;
    assert_eq!(sets.len(), 3, "the first replica set came back, no new one");
    let newest = sets.last().unwrap();
    assert_eq!(newest.meta().name, first.meta().name);
    assert_eq!(revision(newest), 4);
    assert_eq!(
        newest.meta().annotations["deployment.kubernetes.io/revision-history"],
        "1"
    );
    assert_eventually!(
        get(client).await.meta().annotations.get(REVISION) == Some(&"4".to_string()),
        CONVERGE
    );
    let hash = &first.meta().labels[HASH];
    let pods = support::live_pods(client, "default", "app=web").await;
    assert!(pods.iter().all(|p| &p.meta().labels[HASH] == hash));

    // Every scale was reported, kubectl's way.
    let scaled_up = format!("Scaled up replica set {} from 0 to 1", first.meta().name);
    // Events are written in the background: wait for it.
    assert_eventually!(
        events(client, "ScalingReplicaSet")
            .await
            .iter()
            .any(|e| e.message == scaled_up),
        CONVERGE,
        "no event {scaled_up:?}"
    );
    agent.abort();
}

#[tokio::test]
async fn history_beyond_the_limit_is_deleted_oldest_first() {
    let cluster = Cluster::start().await.unwrap();
    let client = &cluster.client;
    let agent = agent(client.clone()).await;
    let mut d = deployment(1, "app:v1");
    d.spec.as_mut().unwrap().revision_history_limit = Some(2);
    client.api::<Deployment>().create(&d).await.unwrap();
    for image in ["app:v1", "app:v2", "app:v3", "app:v4"] {
        set_image(client, image).await;
        assert_eventually!(
            rolled_out(client, image).await,
            CONVERGE,
            "rollout to {image}"
        );
    }
    let expected = [("app:v2", 2), ("app:v3", 3), ("app:v4", 4)];
    let expected: Vec<(String, i64)> = expected.iter().map(|(i, r)| (i.to_string(), *r)).collect();
    assert_eventually!(
        history(client).await == expected,
        CONVERGE,
        "the current set and two old ones kept: {:?}",
        history(client).await
    );
    agent.abort();
}

#[tokio::test]
async fn a_paused_deployment_scales_but_rolls_out_only_once_resumed() {
    let cluster = Cluster::start().await.unwrap();
    let client = &cluster.client;
    let agent = agent(client.clone()).await;
    client
        .api::<Deployment>()
        .create(&deployment(2, "app:v1"))
        .await
        .unwrap();
    assert_eventually!(rolled_out(client, "app:v1").await, CONVERGE);
    edit(client, |spec| spec.paused = true).await;
    set_image(client, "app:v2").await;
    edit(client, |spec| spec.replicas = Some(3)).await;
    let paused_and_seen = || async {
        let d = get(client).await;
        let status = d.status.clone().unwrap_or_default();
        status.observed_generation == d.meta().generation
            && progressing(&d).is_some_and(|c| c.reason == "DeploymentPaused")
            && status.available_replicas == 3
    };
    assert_eventually!(paused_and_seen().await, CONVERGE, "paused, scaled to 3");
    let images: Vec<String> = replica_sets(client).await.iter().map(image).collect();
    assert_eq!(images, ["app:v1"], "no rollout while paused");
    assert_eq!(get(client).await.status.unwrap().updated_replicas, 0);

    edit(client, |spec| spec.paused = false).await;
    assert_eventually!(rolled_out(client, "app:v2").await, CONVERGE, "resumed");
    let d = get(client).await;
    assert_eq!(d.meta().annotations[REVISION], "2");
    assert_eventually!(
        progressing(&get(client).await).is_some_and(|c| c.reason == "NewReplicaSetAvailable"),
        CONVERGE
    );
    agent.abort();
}

#[tokio::test]
async fn restart_replaces_every_pod_after_min_ready_seconds() {
    let cluster = Cluster::start().await.unwrap();
    let client = &cluster.client;
    let agent = agent(client.clone()).await;
    let mut d = deployment(2, "app:v1");
    d.spec.as_mut().unwrap().min_ready_seconds = 1;
    client.api::<Deployment>().create(&d).await.unwrap();
    assert_eventually!(rolled_out(client, "app:v1").await, CONVERGE);
    let before = replica_sets(client).await.remove(0);

    // `kubectl rollout restart`.
    edit(client, |spec| {
        let meta = spec.template.as_mut().unwrap().metadata.as_mut().unwrap();
        meta.annotations = HashMap::from([(
            "kubectl.kubernetes.io/restartedAt".into(),
            "2025-01-01T00:00:00Z".into(),
        )]);
    })
    .await;
    let restarted = || async {
        let d = get(client).await;
        let s = d.status.clone().unwrap_or_default();
        let sets = replica_sets(client).await;
        let pods = support::live_pods(client, "default", "app=web").await;
        let replicas: Vec<i32> = sets
            .iter()
            .map(|rs| rs.spec.as_ref().unwrap().replicas.unwrap())
            .collect();
        s.observed_generation == d.meta().generation
            && (s.replicas, s.updated_replicas, s.available_replicas) == (2, 2, 2)
            && replicas == [0, 2]
            && pods.len() == 2
            && pods
                .iter()
                .all(|p| p.meta().labels[HASH] == sets[1].meta().labels[HASH])
    };
    assert_eventually!(restarted().await, CONVERGE, "every pod replaced");
    let after = replica_sets(client).await;
    assert_eq!(after[0].meta().name, before.meta().name);
    assert_eq!(after[0].spec.as_ref().unwrap().replicas, Some(0));
    assert_eq!(revision(&after[1]), 2);
    agent.abort();
}

#[tokio::test]
async fn a_rollout_that_never_gets_ready_exceeds_its_deadline() {
    let cluster = Cluster::start().await.unwrap();
    let client = &cluster.client;
    let agent = agent(client.clone()).await;
    let mut d = deployment(2, "app:v1");
    d.spec.as_mut().unwrap().progress_deadline_seconds = Some(2);
    client.api::<Deployment>().create(&d).await.unwrap();
    assert_eventually!(rolled_out(client, "app:v1").await, CONVERGE);
    set_image(client, "app:broken").await;
    let stuck = || async {
        let d = get(client).await;
        progressing(&d)
            .is_some_and(|c| c.status == "False" && c.reason == "ProgressDeadlineExceeded")
    };
    assert_eventually!(stuck().await, CONVERGE, "the deadline is reported");
    let d = get(client).await;
    let status = d.status.unwrap();
    let available = status.conditions.iter().find(|c| c.r#type == "Available");
    assert_eq!(
        available.unwrap().status,
        "True",
        "old pods kept within maxUnavailable"
    );
    assert!(status.unavailable_replicas > 0);

    // A fixed template rolls out and clears the failure.
    set_image(client, "app:v2").await;
    assert_eventually!(
        rolled_out(client, "app:v2").await,
        CONVERGE,
        "rollout to v2"
    );
    assert_eventually!(
        progressing(&get(client).await)
            .is_some_and(|c| c.status == "True" && c.reason == "NewReplicaSetAvailable"),
        CONVERGE
    );
    agent.abort();
}
