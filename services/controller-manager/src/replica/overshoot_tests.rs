//! The replica controller against a real apiserver, with a pod cache that
//! lags behind on purpose: only expectations keep it from creating a second
//! round of pods for a shortfall it already acted on.

#![allow(clippy::unwrap_used)] // tests: a failed call is a failed test

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use moor_api::core::v1::{
    Container, PodSpec, PodTemplateSpec, ReplicationController, ReplicationControllerSpec,
};
use moor_api::meta::v1::EventType;
use moor_client::{ListParams, WatchParams};
use moor_integration_tests::Apiserver;
use moor_testkit::assert_eventually;
use tokio::task::JoinSet;

use super::*;

/// How late each pod event reaches the controller's cache.
const LAG: Duration = Duration::from_millis(150);

/// A replication controller `default/web` of `replicas` pods (app=web).
pub(crate) fn web(replicas: i32) -> ReplicationController {
    let labels = HashMap::from([("app".to_string(), "web".to_string())]);
    ReplicationController {
        metadata: Some(ObjectMeta {
            name: "web".into(),
            namespace: "default".into(),
            ..Default::default()
        }),
        spec: Some(ReplicationControllerSpec {
            replicas: Some(replicas),
            selector: labels.clone(),
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels,
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "app".into(),
                        image: "moor/test:latest".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The pods' watch as the test feeds it to the controller's pod cache.
type PodEvents = futures::stream::BoxStream<
    'static,
    Result<moor_client::watcher::Event<Pod>, moor_client::Error>,
>;

/// A replication controller running against a real apiserver.
struct Harness {
    _apiserver: Apiserver,
    client: Client,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl Harness {
    /// Starts the apiserver and the controller, whose pod cache gets the
    /// pods' watch through `feed` (delayed, filtered).
    async fn start(feed: impl FnOnce(PodEvents) -> PodEvents) -> Self {
        let apiserver = Apiserver::start().await.unwrap();
        let url = format!("http://{}", apiserver.addr);
        let client = Client::new(&url).unwrap();
        let config = Config::new(url);
        let mut pods = Informer::<Pod>::new();
        let mut rcs = Informer::<ReplicationController>::new();
        let controller = Controller::new(&client, rcs.reader(), pods.reader(), &config);
        controller.register(&mut rcs, &mut pods);
        let events = feed(moor_client::watcher(client.api::<Pod>(), ListParams::default()).boxed());
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        tasks.spawn(pods.run_stream(events, shutdown.clone()));
        tasks.spawn(rcs.run(client.api(), shutdown.clone()));
        tasks.spawn(controller.run(shutdown.clone()));
        Self {
            _apiserver: apiserver,
            client,
            shutdown,
            tasks,
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.tasks.abort_all();
    }
}

#[tokio::test]
async fn a_lagging_pod_cache_never_overshoots() {
    let mut harness = Harness::start(|events| {
        events
            .then(|e| async {
                tokio::time::sleep(LAG).await;
                e
            })
            .boxed()
    })
    .await;
    let client = harness.client.clone();

    // Count the pods that exist at once, from an undelayed watch.
    let mut events = client
        .api::<Pod>()
        .watch(&WatchParams::default())
        .await
        .unwrap();
    let max_seen = Arc::new(AtomicUsize::new(0));
    let seen = max_seen.clone();
    harness.tasks.spawn(async move {
        let mut names = HashSet::new();
        while let Some(Ok(event)) = events.next().await {
            let Some(pod) = event.object.as_ref() else {
                continue;
            };
            match event.event_type() {
                Some(EventType::Added) => names.insert(pod.meta().name.clone()),
                Some(EventType::Deleted) => names.remove(&pod.meta().name),
                _ => false,
            };
            seen.fetch_max(names.len(), Ordering::SeqCst);
        }
    });

    let api = client.api::<ReplicationController>();
    api.create(&web(6)).await.unwrap();
    // Once the status counts 6, the cache has caught up and the controller
    // has reconciled with it.
    assert_eventually!(
        api.get("default", "web")
            .await
            .unwrap()
            .status
            .is_some_and(|s| s.replicas == 6),
        Duration::from_secs(30)
    );
    let (all, _) = client
        .api::<Pod>()
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 6);
    assert_eq!(
        max_seen.load(Ordering::SeqCst),
        6,
        "no pod beyond the 6 asked for"
    );
}

#[tokio::test]
async fn the_status_counts_a_deleted_pod_out_before_the_cache_sees_it_go() {
    // A pod cache that never learns of deletions: only the controller's own
    // record of the deletes it issued can take the pods out of the count.
    let harness = Harness::start(|events| {
        events
            .filter(|e| {
                let deletion = match e {
                    Ok(moor_client::watcher::Event::Deleted(_)) => true,
                    Ok(moor_client::watcher::Event::Applied(pod)) => {
                        pod.meta().deletion_timestamp.is_some()
                    }
                    _ => false,
                };
                std::future::ready(!deletion)
            })
            .boxed()
    })
    .await;
    let client = &harness.client;

    let api = client.api::<ReplicationController>();
    let replicas = |n: i32| {
        let api = api.clone();
        async move {
            api.get("default", "web")
                .await
                .unwrap()
                .status
                .is_some_and(|s| s.replicas == n)
        }
    };
    api.create(&web(3)).await.unwrap();
    assert_eventually!(replicas(3).await, Duration::from_secs(30));
    let mut rc = api.get("default", "web").await.unwrap();
    rc.spec.as_mut().unwrap().replicas = Some(1);
    api.update(&rc).await.unwrap();
    assert_eventually!(replicas(1).await, Duration::from_secs(30));
    let (left, _) = client
        .api::<Pod>()
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(left.len(), 1, "two of the three pods went");
}
