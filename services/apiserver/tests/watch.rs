//! Watch fan-out: every watcher sees every change exactly once, in order,
//! also across apiserver restarts (listing again where the new cache has
//! no history that old); filters; bookmarks; OUT_OF_RANGE.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use std::time::Duration;

use common::{TestServer, config_map};
use futures::StreamExt;
use moor_api::core::v1::config_maps_client::ConfigMapsClient;
use moor_api::meta::v1::{EventType, WatchRequest};
use tokio::sync::mpsc;
use tonic::Code;

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
    let start_rv: i64 = first.metadata.unwrap().resource_version.parse()?;

    const WATCHERS: usize = 20;
    const MUTATIONS: usize = 1000;
    let (done_tx, done_rx) = tokio::sync::watch::channel(None::<i64>);
    let mut receivers = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..WATCHERS {
        let (tx, rx) = mpsc::unbounded_channel();
        receivers.push(rx);
        tasks.spawn(resuming_watcher(
            server.url(),
            start_rv,
            done_rx.clone(),
            tx,
        ));
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
    let last_rv = truth.last().map(|t| t.0).unwrap_or(start_rv);
    done_tx.send(Some(last_rv))?;

    // The state the truth gives at a revision (the seed excluded).
    let state_at = |rv: i64| {
        let mut state = std::collections::BTreeMap::new();
        for (at, kind, name, value) in truth.iter().take_while(|t| t.0 <= rv) {
            let _ = at;
            if *kind == EventType::Deleted as i32 {
                state.remove(name);
            } else {
                state.insert(name.clone(), value.clone());
            }
        }
        state
    };
    for (w, mut rx) in receivers.into_iter().enumerate() {
        // Segments of the watcher's history: each starts at the version it
        // watched from (the start, or a list's) and must hold exactly the
        // truth's changes after it up to the last it got, in order. A list
        // must hold exactly the truth's state at its version.
        let mut from = start_rv;
        let mut segment: Vec<Seen> = Vec::new();
        let mut relists = 0;
        let check_segment = |from: i64, segment: &[Seen]| {
            let to = segment.last().map_or(from, |s| s.0);
            let want: Vec<Seen> = truth
                .iter()
                .filter(|t| t.0 > from && t.0 <= to)
                .cloned()
                .collect();
            assert_eq!(
                segment, want,
                "watcher {w}: changes after {from} up to {to}"
            );
        };
        let mut last = start_rv;
        loop {
            let next = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await;
            match next {
                Ok(Some(Record::Change(seen))) => {
                    last = seen.0;
                    segment.push(seen);
                }
                Ok(Some(Record::Listed(rv, items))) => {
                    check_segment(from, &segment);
                    let mut want = state_at(rv);
                    want.insert("seed".into(), "0".into());
                    assert_eq!(items, want, "watcher {w}: list at {rv}");
                    segment.clear();
                    from = rv;
                    last = rv;
                    relists += 1;
                }
                Ok(None) => break,
                Err(_) => anyhow::bail!("watcher {w} stalled at {last} (truth ends at {last_rv})"),
            }
        }
        check_segment(from, &segment);
        assert!(
            last >= last_rv,
            "watcher {w} ended at {last}, before {last_rv}"
        );
        // Two restarts, each at most one list again (history before the
        // restart is gone from the new cache).
        assert!(relists <= 2, "watcher {w} listed {relists} times");
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    Ok(())
}

/// What a resuming watcher reports.
enum Record {
    /// A change it got.
    Change(Seen),
    /// It listed again, at this version, and found these names and values.
    Listed(i64, std::collections::BTreeMap<String, String>),
}

/// Watches from `rv`, resuming from the last seen resourceVersion when the
/// stream ends or the server is away, and listing again (as an informer
/// does) when that version is gone; until it has seen the version `done`
/// names.
async fn resuming_watcher(
    url: String,
    rv: i64,
    mut done: tokio::sync::watch::Receiver<Option<i64>>,
    out: mpsc::UnboundedSender<Record>,
) -> anyhow::Result<()> {
    let mut last = rv;
    let finished = |last: i64, done: &tokio::sync::watch::Receiver<Option<i64>>| {
        done.borrow().is_some_and(|end| last >= end)
    };
    while !finished(last, &done) {
        let mut client = ConfigMapsClient::new(moor_rpc::channel(&url)?);
        let req = WatchRequest {
            namespace: "default".into(),
            resource_version: last.to_string(),
            allow_bookmarks: true,
            ..Default::default()
        };
        let mut stream = match client.watch(req).await {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == Code::OutOfRange => {
                let list = client
                    .list(moor_api::meta::v1::ListRequest {
                        namespace: "default".into(),
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                last = list.metadata.unwrap_or_default().resource_version.parse()?;
                let items = list
                    .items
                    .into_iter()
                    .map(|cm| {
                        let name = cm.metadata.unwrap_or_default().name;
                        (name, cm.data.get("v").cloned().unwrap_or_default())
                    })
                    .collect();
                out.send(Record::Listed(last, items))?;
                continue;
            }
            Err(_) => {
                common::wait_ready(&url).await;
                continue;
            }
        };
        loop {
            let item = tokio::select! {
                item = stream.next() => item,
                changed = done.changed() => {
                    // The test gave up (its sender is gone): so does this.
                    if changed.is_err() {
                        return Ok(());
                    }
                    if finished(last, &done) {
                        break;
                    }
                    continue;
                }
            };
            let Some(Ok(event)) = item else { break };
            let object = event.object.clone().unwrap_or_default();
            let meta = object.metadata.clone().unwrap_or_default();
            last = meta.resource_version.parse()?;
            if event.r#type != EventType::Bookmark as i32 {
                out.send(Record::Change((
                    last,
                    event.r#type,
                    meta.name,
                    object.data.get("v").cloned().unwrap_or_default(),
                )))?;
            }
            if finished(last, &done) {
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

/// A watch from a resourceVersion older than the watch cache's changes
/// (as a watcher moving to an apiserver started since asks for) gets the
/// store's history up to the cache's feed, then the feed: every change
/// once, in order, with no OUT_OF_RANGE and so no list again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_before_the_cache_is_replayed_from_the_store() -> anyhow::Result<()> {
    let tiny_cache = |config: &mut moor_apiserver::Config| config.watch_cache_events = 2;
    for server in [
        TestServer::sqlite_with(tiny_cache).await?,
        TestServer::etcd_with(tiny_cache).await?,
    ] {
        let mut client = ConfigMapsClient::new(server.channel());
        let seed = client
            .create(config_map("c0", &[], "0"))
            .await?
            .into_inner();
        let from = seed.metadata.unwrap().resource_version;
        let mut written = Vec::new();
        for i in 1..10 {
            let cm = client
                .create(config_map(&format!("c{i}"), &[], "1"))
                .await?
                .into_inner();
            written.push(cm.metadata.unwrap().resource_version);
        }
        let mut stream = client
            .watch(WatchRequest {
                namespace: "default".into(),
                resource_version: from.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        // One more once the watch runs: it comes from the cache's feed.
        let last = client
            .create(config_map("c10", &[], "1"))
            .await?
            .into_inner();
        written.push(last.metadata.unwrap().resource_version);
        let mut seen = Vec::new();
        while seen.len() < written.len() {
            let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await?
                .expect("the watch goes on")?;
            assert_eq!(event.event_type(), Some(EventType::Added));
            let meta = event.object.unwrap().metadata.unwrap();
            seen.push(meta.resource_version);
        }
        assert_eq!(seen, written, "every change after {from}, once, in order");

        // With nothing written since, nothing proves the store's history
        // complete: after it, the watcher is sent to list again rather than
        // held on a store watch of its own.
        let mut quiet = client
            .watch(WatchRequest {
                namespace: "default".into(),
                resource_version: from.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        let mut replayed = Vec::new();
        let end = loop {
            match tokio::time::timeout(Duration::from_secs(10), quiet.next()).await? {
                Some(Ok(event)) => {
                    replayed.push(event.object.unwrap().metadata.unwrap().resource_version)
                }
                Some(Err(status)) => break status,
                None => panic!("the watch ended without a status"),
            }
        };
        assert_eq!(end.code(), Code::OutOfRange, "{end:?}");
        assert_eq!(replayed, written, "the history, then OUT_OF_RANGE");
    }
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
