//! Watch fan-out: every watcher sees every change exactly once, in order,
//! also across apiserver restarts; filters; bookmarks; OUT_OF_RANGE.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::time::Duration;

use common::TestServer;
use futures::StreamExt;
use moor_api::core::v1::ConfigMap;
use moor_api::core::v1::config_maps_client::ConfigMapsClient;
use moor_api::meta::v1::{EventType, ObjectMeta, WatchRequest};
use tokio::sync::mpsc;
use tonic::Code;

fn config_map(name: &str, labels: &[(&str, &str)], value: &str) -> ConfigMap {
    let mut cm = ConfigMap {
        metadata: Some(ObjectMeta {
            name: name.to_string(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    cm.data.insert("v".into(), value.into());
    cm
}

/// What a watcher records: (resourceVersion, type, name, value).
type Seen = (i64, i32, String, String);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_watcher_sees_every_change_once_in_order_across_restarts() -> anyhow::Result<()> {
    let mut server = TestServer::sqlite().await?;
    let mut client = ConfigMapsClient::new(server.channel());
    // The watchers start after a first write, from its resourceVersion.
    let first = client
        .create(config_map("seed", &[], "0"))
        .await?
        .into_inner();
    let start_rv = first.metadata.unwrap().resource_version;

    const WATCHERS: usize = 20;
    const MUTATIONS: usize = 1000;
    let mut receivers = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..WATCHERS {
        let (tx, rx) = mpsc::unbounded_channel();
        receivers.push(rx);
        let url = server.url();
        let rv = start_rv.clone();
        tasks.spawn(resuming_watcher(url, rv, MUTATIONS, tx));
    }

    // 1000 mutations: creates, updates and deletes over 50 names, with two
    // apiserver restarts in the middle. Each mutation's result is the truth.
    let mut truth: Vec<Seen> = Vec::new();
    let mut values = std::collections::HashMap::<String, u32>::new();
    let mut i = 0;
    while truth.len() < MUTATIONS {
        if truth.len() == 300 || truth.len() == 700 {
            server.restart().await?;
            client = ConfigMapsClient::new(server.channel());
        }
        let name = format!("cm-{}", i % 50);
        i += 1;
        let result = match values.get(&name).copied() {
            None => client
                .create(config_map(&name, &[], "1"))
                .await
                .map(|r| (EventType::Added, r.into_inner())),
            Some(n) if n % 3 == 0 => client
                .delete(moor_api::meta::v1::DeleteRequest {
                    namespace: "default".into(),
                    name: name.clone(),
                    ..Default::default()
                })
                .await
                .map(|r| (EventType::Deleted, r.into_inner())),
            Some(n) => client
                .update(config_map(&name, &[], &(n + 1).to_string()))
                .await
                .map(|r| (EventType::Modified, r.into_inner())),
        };
        let (kind, object) = match result {
            Ok(done) => done,
            Err(status) if status.code() == Code::Unavailable => {
                common::wait_ready(&server.url()).await;
                continue;
            }
            Err(status) => anyhow::bail!("mutation failed: {status}"),
        };
        let meta = object.metadata.clone().unwrap_or_default();
        let value = object.data.get("v").cloned().unwrap_or_default();
        match kind {
            EventType::Deleted => {
                values.remove(&name);
            }
            _ => {
                values.insert(name.clone(), value.parse()?);
            }
        }
        truth.push((meta.resource_version.parse()?, kind as i32, name, value));
    }

    for (w, mut rx) in receivers.into_iter().enumerate() {
        let mut got = Vec::with_capacity(MUTATIONS);
        while got.len() < MUTATIONS {
            let next = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await;
            match next {
                Ok(Some(seen)) => got.push(seen),
                _ => anyhow::bail!(
                    "watcher {w} saw only {} of {MUTATIONS} changes; last {:?}",
                    got.len(),
                    got.last()
                ),
            }
        }
        assert_eq!(got, truth, "watcher {w} saw a different history");
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    Ok(())
}

/// Watches from `rv`, reconnecting from the last seen resourceVersion when
/// the stream ends or the server is away, until `total` changes were seen.
async fn resuming_watcher(
    url: String,
    rv: String,
    total: usize,
    out: mpsc::UnboundedSender<Seen>,
) -> anyhow::Result<()> {
    let mut last = rv;
    let mut seen = 0;
    while seen < total {
        let mut client = ConfigMapsClient::new(moor_rpc::channel(&url)?);
        let req = WatchRequest {
            namespace: "default".into(),
            resource_version: last.clone(),
            allow_bookmarks: true,
            ..Default::default()
        };
        let mut stream = match client.watch(req).await {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() != Code::OutOfRange => {
                common::wait_ready(&url).await;
                continue;
            }
            Err(status) => anyhow::bail!("watch failed: {status}"),
        };
        while let Some(item) = stream.next().await {
            let Ok(event) = item else { break };
            let object = event.object.clone().unwrap_or_default();
            let meta = object.metadata.clone().unwrap_or_default();
            last = meta.resource_version.clone();
            if event.r#type == EventType::Bookmark as i32 {
                continue;
            }
            out.send((
                meta.resource_version.parse()?,
                event.r#type,
                meta.name,
                object.data.get("v").cloned().unwrap_or_default(),
            ))?;
            seen += 1;
            if seen == total {
                break;
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn label_filters_turn_changes_into_added_and_deleted() -> anyhow::Result<()> {
    let server = TestServer::sqlite().await?;
    let mut client = ConfigMapsClient::new(server.channel());
    let req = WatchRequest {
        namespace: "default".into(),
        label_selector: "app=web".into(),
        ..Default::default()
    };
    let mut stream = client.watch(req).await?.into_inner();
    client
        .create(config_map("a", &[("app", "db")], "1"))
        .await?;
    client
        .update(config_map("a", &[("app", "web")], "2"))
        .await?;
    client
        .update(config_map("a", &[("app", "web")], "3"))
        .await?;
    client
        .update(config_map("a", &[("app", "db")], "4"))
        .await?;
    let mut types = Vec::new();
    for _ in 0..3 {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await?
            .expect("event")?;
        types.push(event.event_type().expect("known type"));
    }
    assert_eq!(
        types,
        vec![EventType::Added, EventType::Modified, EventType::Deleted]
    );
    Ok(())
}

#[tokio::test]
async fn watch_without_version_starts_with_current_objects_and_bookmarks() -> anyhow::Result<()> {
    let server = TestServer::sqlite().await?;
    let mut client = ConfigMapsClient::new(server.channel());
    client.create(config_map("one", &[], "1")).await?;
    let req = WatchRequest {
        namespace: "default".into(),
        allow_bookmarks: true,
        ..Default::default()
    };
    let mut stream = client.watch(req).await?.into_inner();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await?
        .expect("event")?;
    assert_eq!(first.event_type(), Some(EventType::Added));
    assert_eq!(first.object.unwrap().metadata.unwrap().name, "one");
    client.create(config_map("two", &[], "2")).await?;
    let second = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await?
        .expect("event")?;
    let rv = second.object.unwrap().metadata.unwrap().resource_version;
    // Nothing else changes: the next event is a bookmark at the last version.
    let third = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await?
        .expect("event")?;
    assert_eq!(third.event_type(), Some(EventType::Bookmark));
    assert_eq!(third.object.unwrap().metadata.unwrap().resource_version, rv);
    Ok(())
}

#[tokio::test]
async fn watch_from_compacted_history_is_out_of_range() -> anyhow::Result<()> {
    // A tiny cache buffer and fast compaction, so old history goes quickly.
    let server = TestServer::sqlite_with(|config| {
        config.watch_cache_events = 2;
        config.compaction_interval = Duration::from_millis(50);
    })
    .await?;
    let mut client = ConfigMapsClient::new(server.channel());
    let first = client
        .create(config_map("c0", &[], "1"))
        .await?
        .into_inner();
    let old_rv = first.metadata.unwrap().resource_version;
    for i in 1..10 {
        client
            .create(config_map(&format!("c{i}"), &[], "1"))
            .await?;
    }
    moor_testkit::assert_eventually!(
        {
            // Keep writing so the compactor has new revisions to move to.
            client
                .create(config_map(&format!("x{}", uuid_like()), &[], "1"))
                .await?;
            watch_is_out_of_range(&mut client, &old_rv).await
        },
        Duration::from_secs(30),
        "a watch from compacted resourceVersion {old_rv} never failed with OUT_OF_RANGE"
    );
    let bad = WatchRequest {
        namespace: "default".into(),
        resource_version: "abc".into(),
        ..Default::default()
    };
    let err = client.watch(bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    Ok(())
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Whether a watch from `rv` fails with OUT_OF_RANGE, at the call or as the
/// stream's first item (rather than replaying history).
async fn watch_is_out_of_range(client: &mut ConfigMapsClient<moor_rpc::Channel>, rv: &str) -> bool {
    let req = WatchRequest {
        namespace: "default".into(),
        resource_version: rv.to_string(),
        ..Default::default()
    };
    match client.watch(req).await {
        Err(status) => status.code() == Code::OutOfRange,
        Ok(response) => {
            let mut stream = response.into_inner();
            let first = tokio::time::timeout(Duration::from_secs(5), stream.next()).await;
            matches!(first, Ok(Some(Err(status))) if status.code() == Code::OutOfRange)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_cannot_keep_up_is_ended_and_others_are_not_slowed() -> anyhow::Result<()> {
    // A small shared buffer, so a stalled watcher falls behind quickly.
    let server = TestServer::sqlite_with(|config| config.watch_cache_events = 32).await?;
    let mut client = ConfigMapsClient::new(server.channel());
    let from = client
        .create(config_map("load", &[], "0"))
        .await?
        .into_inner()
        .metadata
        .unwrap()
        .resource_version;
    let req = || WatchRequest {
        namespace: "default".into(),
        resource_version: from.clone(),
        ..Default::default()
    };
    // The slow watcher has its own connection and does not read until the end.
    let mut slow = ConfigMapsClient::new(server.channel())
        .watch(req())
        .await?
        .into_inner();
    let mut fast = ConfigMapsClient::new(server.channel())
        .watch(req())
        .await?
        .into_inner();
    const CHANGES: usize = 600;
    let reader = tokio::spawn(async move {
        let mut seen = 0;
        while seen < CHANGES {
            match fast.next().await {
                Some(Ok(_)) => seen += 1,
                other => anyhow::bail!("fast watcher ended after {seen}: {other:?}"),
            }
        }
        anyhow::Ok(seen)
    });
    // Large values fill the slow watcher's HTTP/2 window quickly.
    let padding = "x".repeat(4096);
    for i in 0..CHANGES {
        client
            .update(config_map("load", &[], &format!("{i}{padding}")))
            .await?;
    }
    assert_eq!(reader.await??, CHANGES, "the fast watcher saw every change");
    let mut ended = None;
    while let Some(item) = tokio::time::timeout(Duration::from_secs(30), slow.next()).await? {
        if let Err(status) = item {
            ended = Some(status);
            break;
        }
    }
    let status = ended.expect("the slow watcher is ended with a status");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("too slow"),
        "{}",
        status.message()
    );
    Ok(())
}
