//! Replication controllers and replica sets against a real apiserver.

#![allow(clippy::unwrap_used)] // tests: a failed call is a failed test

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use moor_api::Resource;
use moor_api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use moor_api::core::v1::{Pod, ReplicationController};
use moor_api::meta::v1::{EventType, LabelSelector, LabelSelectorRequirement};
use moor_client::{DeleteParams, WatchParams};
use moor_testkit::assert_eventually;

use support::{CONVERGE, Cluster, live_pods, pod, rc, set_ready};

async fn scale_to(cluster: &Cluster, name: &str, replicas: i32) {
    let api = cluster.client.api::<ReplicationController>();
    let mut scale = api.get_scale("default", name).await.unwrap();
    scale.spec.get_or_insert_default().replicas = replicas;
    api.update_scale(&scale).await.unwrap();
}

async fn rc_status(cluster: &Cluster, name: &str) -> (i32, i32, i32, i64, i64) {
    let rc = cluster
        .client
        .api::<ReplicationController>()
        .get("default", name)
        .await
        .unwrap();
    let s = rc.status.clone().unwrap_or_default();
    (
        s.replicas,
        s.ready_replicas,
        s.available_replicas,
        s.observed_generation,
        rc.meta().generation,
    )
}

fn controlled_by(pod: &Pod, uid: &str) -> bool {
    pod.meta()
        .owner_references
        .iter()
        .any(|r| r.uid == uid && r.controller == Some(true))
}

#[tokio::test]
async fn scales_up_and_down_without_overshooting() {
    let cluster = Cluster::start().await.unwrap();
    let pods = cluster.client.api::<Pod>();
    // Follow the number of pods that exist, and the most ever seen.
    let mut events = pods.watch(&WatchParams::default()).await.unwrap();
    let max_seen = Arc::new(AtomicUsize::new(0));
    let seen = max_seen.clone();
    let watcher = tokio::spawn(async move {
        let mut names = HashSet::new();
        while let Some(Ok(event)) = events.next().await {
            let Some(pod) = event.object.as_ref() else {
                continue;
            };
            match event.event_type() {
                Some(EventType::Added) => {
                    names.insert(pod.meta().name.clone());
                }
                Some(EventType::Deleted) => {
                    names.remove(&pod.meta().name);
                }
                _ => {}
            }
            seen.fetch_max(names.len(), Ordering::SeqCst);
        }
    });

    let api = cluster.client.api::<ReplicationController>();
    api.create(&rc("default", "web", 0, "web")).await.unwrap();
    assert_eventually!(rc_status(&cluster, "web").await.3 == 1, CONVERGE);
    // Scale up, and change the target again while creates are in flight.
    scale_to(&cluster, "web", 5).await;
    scale_to(&cluster, "web", 8).await;
    assert_eventually!(
        live_pods(&cluster.client, "default", "app=web").await.len() == 8
            && rc_status(&cluster, "web").await.0 == 8,
        CONVERGE,
        "8 pods and status.replicas 8"
    );
    scale_to(&cluster, "web", 2).await;
    assert_eventually!(
        live_pods(&cluster.client, "default", "app=web").await.len() == 2
            && rc_status(&cluster, "web").await.0 == 2,
        CONVERGE,
        "2 pods and status.replicas 2"
    );
    let (_, _, _, observed, generation) = rc_status(&cluster, "web").await;
    assert_eq!(
        observed, generation,
        "status observed the latest generation"
    );
    assert_eq!(
        max_seen.load(Ordering::SeqCst),
        8,
        "never more pods at once than the 8 ever asked for"
    );
    let all = live_pods(&cluster.client, "default", "app=web").await;
    let uid = api.get("default", "web").await.unwrap().meta().uid.clone();
    assert!(all.iter().all(|p| controlled_by(p, &uid)));
    assert!(all.iter().all(|p| p.meta().name.starts_with("web-")));

    // Events are written in the background: wait for all of them.
    let client = &cluster.client;
    let count = |reason| async move { support::events(client, reason).await.len() };
    assert_eventually!(
        count("SuccessfulCreate").await == 8 && count("SuccessfulDelete").await == 6,
        CONVERGE,
        "8 creates and 6 deletes recorded: {} and {}",
        count("SuccessfulCreate").await,
        count("SuccessfulDelete").await
    );
    watcher.abort();
}

#[tokio::test]
async fn replaces_deleted_pods_and_reports_readiness() {
    let cluster = Cluster::start().await.unwrap();
    cluster
        .client
        .api::<ReplicationController>()
        .create(&rc("default", "web", 3, "web"))
        .await
        .unwrap();
    assert_eventually!(
        live_pods(&cluster.client, "default", "app=web").await.len() == 3,
        CONVERGE
    );
    let victim = live_pods(&cluster.client, "default", "app=web").await[0]
        .meta()
        .name
        .clone();
    cluster
        .client
        .api::<Pod>()
        .delete("default", &victim, &DeleteParams::default())
        .await
        .unwrap();
    assert_eventually!(
        {
            let pods = live_pods(&cluster.client, "default", "app=web").await;
            pods.len() == 3 && pods.iter().all(|p| p.meta().name != victim)
        },
        CONVERGE,
        "the deleted pod is replaced"
    );
    let pods = live_pods(&cluster.client, "default", "app=web").await;
    for (i, p) in pods.iter().take(2).enumerate() {
        set_ready(
            &cluster.client,
            "default",
            &p.meta().name,
            &format!("10.1.0.{i}"),
            true,
        )
        .await;
    }
    assert_eventually!(
        {
            let (replicas, ready, available, ..) = rc_status(&cluster, "web").await;
            (replicas, ready, available) == (3, 2, 2)
        },
        CONVERGE,
        "status counts the ready pods"
    );
}

#[tokio::test]
async fn adopts_matching_orphans_and_releases_pods_that_stop_matching() {
    let cluster = Cluster::start().await.unwrap();
    let pods = cluster.client.api::<Pod>();
    pods.create(&pod("default", "orphan", &[("app", "web")]))
        .await
        .unwrap();
    let rc = cluster
        .client
        .api::<ReplicationController>()
        .create(&rc("default", "web", 2, "web"))
        .await
        .unwrap();
    let uid = rc.meta().uid.clone();
    assert_eventually!(
        controlled_by(&pods.get("default", "orphan").await.unwrap(), &uid),
        CONVERGE,
        "the orphan is adopted"
    );
    assert_eventually!(
        live_pods(&cluster.client, "default", "app=web").await.len() == 2,
        CONVERGE
    );
    // The orphan counts toward the two replicas. Pod and controller events
    // arrive on separate watches, so the controller may see the controller
    // before the orphan and create one pod too many, then delete it (as
    // Kubernetes' controllers may): the net is one created pod.
    let client = &cluster.client;
    let net_creates = || async {
        let count = |reason| async move { support::events(client, reason).await.len() as i64 };
        count("SuccessfulCreate").await - count("SuccessfulDelete").await
    };
    assert_eventually!(
        net_creates().await == 1,
        CONVERGE,
        "the adopted orphan counts: net one pod was created"
    );

    // The orphan leaves the selector: it is released and replaced.
    let mut orphan = pods.get("default", "orphan").await.unwrap();
    orphan
        .meta_mut()
        .labels
        .insert("app".into(), "other".into());
    pods.update(&orphan).await.unwrap();
    assert_eventually!(
        pods.get("default", "orphan")
            .await
            .unwrap()
            .meta()
            .owner_references
            .is_empty(),
        CONVERGE,
        "the pod is released"
    );
    assert_eventually!(
        {
            let web = live_pods(&cluster.client, "default", "app=web").await;
            web.len() == 2 && web.iter().all(|p| controlled_by(p, &uid))
        },
        CONVERGE,
        "a replacement is created"
    );
}

#[tokio::test]
async fn replica_set_uses_set_based_selectors() {
    let cluster = Cluster::start().await.unwrap();
    let pods = cluster.client.api::<Pod>();
    // Matches app=web but not the tier expression: never adopted.
    pods.create(&pod(
        "default",
        "stranger",
        &[("app", "web"), ("tier", "c")],
    ))
    .await
    .unwrap();
    let rs = ReplicaSet {
        metadata: Some(support::meta("default", "front")),
        spec: Some(ReplicaSetSpec {
            replicas: Some(3),
            selector: Some(LabelSelector {
                match_labels: support::labels(&[("app", "web")]),
                match_expressions: vec![LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: vec!["a".into(), "b".into()],
                }],
            }),
            template: Some(support::template(&[("app", "web"), ("tier", "a")])),
            ..Default::default()
        }),
        ..Default::default()
    };
    let api = cluster.client.api::<ReplicaSet>();
    let rs = api.create(&rs).await.unwrap();
    assert_eventually!(
        live_pods(&cluster.client, "default", "app=web,tier in (a,b)")
            .await
            .len()
            == 3,
        CONVERGE
    );
    let stranger = pods.get("default", "stranger").await.unwrap();
    assert!(stranger.meta().owner_references.is_empty());
    let created = live_pods(&cluster.client, "default", "app=web,tier=a").await;
    set_ready(
        &cluster.client,
        "default",
        &created[0].meta().name,
        "10.2.0.1",
        true,
    )
    .await;
    assert_eventually!(
        {
            let s = api
                .get("default", "front")
                .await
                .unwrap()
                .status
                .unwrap_or_default();
            (
                s.replicas,
                s.fully_labeled_replicas,
                s.ready_replicas,
                s.available_replicas,
            ) == (3, 3, 1, 1)
        },
        CONVERGE,
        "replica set status"
    );
    assert!(
        created
            .iter()
            .all(|p| controlled_by(p, &rs.meta().uid) && p.meta().name.starts_with("front-"))
    );
}
