//! Deployments against a real apiserver, with the test acting as the node
//! agent: every new pod is reported Running and Ready at once.

#![allow(clippy::unwrap_used)] // tests: a failed call is a failed test

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use moor_api::Resource;
use moor_api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, ReplicaSet, RollingUpdateDeployment,
};
use moor_api::core::v1::Pod;
use moor_api::meta::v1::int_or_string::Value;
use moor_api::meta::v1::{EventType, IntOrString, LabelSelector};
use moor_client::{Client, DeleteParams, ListParams, WatchParams};
use moor_testkit::assert_eventually;
use tokio::task::JoinHandle;

use support::{CONVERGE, Cluster, set_ready};

/// Live pods per pod-template-hash, and the worst moments seen.
#[derive(Default)]
struct Census {
    live: HashMap<String, String>,
    max_total: usize,
    max_templates: usize,
}

/// Marks every new pod ready (as a node agent would) and keeps a census.
/// A pod deleted gracefully (one bound to a node) goes after `linger`, as
/// its containers' grace period would let it.
async fn agent(client: Client, linger: Duration) -> (JoinHandle<()>, Arc<Mutex<Census>>) {
    let census = Arc::new(Mutex::new(Census::default()));
    let seen = census.clone();
    let mut events = client
        .api::<Pod>()
        .watch(&WatchParams::default())
        .await
        .unwrap();
    let task = tokio::spawn(async move {
        let mut next_ip = 1;
        while let Some(Ok(event)) = events.next().await {
            let Some(pod) = event.object.as_ref() else {
                continue;
            };
            let name = pod.meta().name.clone();
            let hash = pod.meta().labels.get("pod-template-hash").cloned();
            match event.event_type() {
                Some(EventType::Added) => {
                    seen.lock()
                        .unwrap()
                        .live
                        .insert(name.clone(), hash.unwrap_or_default());
                    let ip = format!("10.7.{}.{}", next_ip / 250, next_ip % 250 + 1);
                    next_ip += 1;
                    set_ready(&client, "default", &name, &ip, true).await;
                }
                Some(EventType::Deleted) => {
                    seen.lock().unwrap().live.remove(&name);
                }
                Some(EventType::Modified) if pod.meta().deletion_timestamp.is_some() => {
                    let (client, uid) = (client.clone(), pod.meta().uid.clone());
                    tokio::spawn(async move {
                        tokio::time::sleep(linger).await;
                        let params = DeleteParams {
                            uid: Some(uid),
                            grace_period_seconds: Some(0),
                            ..Default::default()
                        };
                        // Gone already is fine: the census counts the Deleted event.
                        let _ = client.api::<Pod>().delete("default", &name, &params).await;
                    });
                }
                _ => {}
            }
            let mut census = seen.lock().unwrap();
            let total = census.live.len();
            let mut templates: Vec<&String> = census.live.values().collect();
            templates.sort();
            templates.dedup();
            let templates = templates.len();
            census.max_total = census.max_total.max(total);
            census.max_templates = census.max_templates.max(templates);
        }
    });
    (task, census)
}

fn deployment(strategy: &str, replicas: i32, image: &str) -> Deployment {
    let mut template = support::template(&[("app", "web")]);
    template.spec.as_mut().unwrap().containers[0].image = image.into();
    let int = |n| {
        Some(IntOrString {
            value: Some(Value::IntVal(n)),
        })
    };
    let rolling_update = (strategy == "RollingUpdate").then(|| RollingUpdateDeployment {
        max_surge: int(1),
        max_unavailable: int(1),
    });
    Deployment {
        metadata: Some(support::meta("default", "web")),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: Some(LabelSelector {
                match_labels: support::labels(&[("app", "web")]),
                ..Default::default()
            }),
            template: Some(template),
            strategy: Some(DeploymentStrategy {
                r#type: strategy.into(),
                rolling_update,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn set_image(client: &Client, image: &str) {
    let api = client.api::<Deployment>();
    let mut d = api.get("default", "web").await.unwrap();
    let spec = d.spec.as_mut().unwrap();
    spec.template
        .as_mut()
        .unwrap()
        .spec
        .as_mut()
        .unwrap()
        .containers[0]
        .image = image.into();
    api.update(&d).await.unwrap();
}

/// Whether the rollout to `image` is complete: one replica set of that
/// image with every replica available, the others at zero.
async fn rolled_out(client: &Client, replicas: i32, image: &str) -> bool {
    let d = client
        .api::<Deployment>()
        .get("default", "web")
        .await
        .unwrap();
    let s = d.status.clone().unwrap_or_default();
    let (sets, _) = client
        .api::<ReplicaSet>()
        .list(&ListParams::default())
        .await
        .unwrap();
    let image_of = |rs: &ReplicaSet| {
        rs.spec
            .as_ref()
            .unwrap()
            .template
            .as_ref()
            .unwrap()
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .image
            .clone()
    };
    let replicas_of = |rs: &ReplicaSet| rs.spec.as_ref().unwrap().replicas.unwrap_or(0);
    s.observed_generation == d.meta().generation
        && (s.replicas, s.updated_replicas, s.available_replicas) == (replicas, replicas, replicas)
        && sets
            .iter()
            .all(|rs| (image_of(rs) == image) == (replicas_of(rs) == replicas))
}

#[tokio::test]
async fn rolling_update_stays_within_surge_and_finishes() {
    let cluster = Cluster::start().await.unwrap();
    let (agent, census) = agent(cluster.client.clone(), Duration::ZERO).await;
    let api = cluster.client.api::<Deployment>();
    api.create(&deployment("RollingUpdate", 4, "app:v1"))
        .await
        .unwrap();
    assert_eventually!(rolled_out(&cluster.client, 4, "app:v1").await, CONVERGE);
    set_image(&cluster.client, "app:v2").await;
    assert_eventually!(
        rolled_out(&cluster.client, 4, "app:v2").await,
        CONVERGE,
        "the rollout to v2 finishes"
    );
    let (sets, _) = cluster
        .client
        .api::<ReplicaSet>()
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(sets.len(), 2, "one replica set per template");
    let max_total = census.lock().unwrap().max_total;
    assert!(
        max_total <= 5,
        "{max_total} pods at once, more than 4 + maxSurge 1"
    );
    let d = api.get("default", "web").await.unwrap();
    let available = d
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.r#type == "Available")
        .unwrap();
    assert_eq!(available.status, "True");
    agent.abort();
}

#[tokio::test]
async fn recreate_removes_old_pods_before_starting_new_ones() {
    let cluster = Cluster::start().await.unwrap();
    let (agent, census) = agent(cluster.client.clone(), Duration::from_millis(500)).await;
    let api = cluster.client.api::<Deployment>();
    // Bound pods are deleted gracefully: each stays, terminating, until
    // the agent above lets it go.
    let mut recreate = deployment("Recreate", 3, "app:v1");
    let template = recreate.spec.as_mut().unwrap().template.as_mut().unwrap();
    template.spec.as_mut().unwrap().node_name = "node-a".into();
    api.create(&recreate).await.unwrap();
    assert_eventually!(rolled_out(&cluster.client, 3, "app:v1").await, CONVERGE);
    set_image(&cluster.client, "app:v2").await;
    assert_eventually!(
        rolled_out(&cluster.client, 3, "app:v2").await,
        CONVERGE,
        "the rollout to v2 finishes"
    );
    let census = census.lock().unwrap();
    assert_eq!(
        census.max_templates, 1,
        "old and new pods never ran together, terminating ones included"
    );
    assert!(census.max_total <= 3);
    drop(census);
    agent.abort();
}
