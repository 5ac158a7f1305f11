//! The watcher against a real apiserver, including a restart of it.

// Helpers outside #[test] fns unwrap poisoned test locks: a panic there is a test failure.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use moor_api::Resource;
use moor_api::core::v1::ConfigMap;
use moor_client::watcher::{Event, watcher};
use moor_client::{Api, Client, DeleteParams, Error, ListParams, WatchParams};
use moor_testkit::assert_eventually;
use support::{Server, config_map};
use tokio_util::sync::CancellationToken;

const TIMEOUT: Duration = Duration::from_secs(30);

/// What the watcher reported, as `"applied name value"`, `"deleted name"`,
/// `"restarted name,name"` lines.
type Log = Arc<Mutex<Vec<String>>>;

/// How many errors the watcher reported.
type Errors = Arc<AtomicUsize>;

/// Runs a watcher over ConfigMaps in "default" and logs its events.
fn spawn_watcher(client: &Client, shutdown: CancellationToken) -> (Log, Errors) {
    let log = Log::default();
    let errors = Errors::default();
    let (sink, error_count) = (log.clone(), errors.clone());
    let stream = watcher(
        client.api::<ConfigMap>(),
        ListParams::default().namespace("default"),
    );
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            let item = tokio::select! {
                () = shutdown.cancelled() => return,
                item = stream.next() => item,
            };
            let line = match item {
                Some(Ok(Event::Applied(o))) => {
                    format!(
                        "applied {} {}",
                        o.meta().name,
                        o.data.get("value").cloned().unwrap_or_default()
                    )
                }
                Some(Ok(Event::Deleted(o))) => format!("deleted {}", o.meta().name),
                Some(Ok(Event::Restarted(list))) => {
                    let mut names: Vec<_> = list.iter().map(|o| o.meta().name.clone()).collect();
                    names.sort();
                    format!("restarted {}", names.join(","))
                }
                Some(Err(_)) => {
                    error_count.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                None => return,
            };
            sink.lock().unwrap().push(line);
        }
    });
    (log, errors)
}

fn lines(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

#[tokio::test]
async fn sees_create_update_delete_in_order() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), "127.0.0.1:0".parse()?).await?;
    let client = Client::new(&server.url())?;
    let api = client.api::<ConfigMap>();
    api.create(&config_map("before", "0", &[])).await?;

    let stop = CancellationToken::new();
    let (log, _) = spawn_watcher(&client, stop.clone());
    assert_eventually!(
        lines(&log).len() == 1,
        TIMEOUT,
        "no restart: {:?}",
        lines(&log)
    );
    assert_eq!(lines(&log), ["restarted before"]);

    let created = api.create(&config_map("web", "1", &[])).await?;
    let mut changed = created.clone();
    changed.data.insert("value".into(), "2".into());
    api.update(&changed).await?;
    api.delete("default", "web", &DeleteParams::default())
        .await?;

    let want = [
        "restarted before",
        "applied web 1",
        "applied web 2",
        "deleted web",
    ];
    assert_eventually!(
        lines(&log).len() >= want.len(),
        TIMEOUT,
        "got {:?}",
        lines(&log)
    );
    assert_eq!(lines(&log), want);

    stop.cancel();
    server.stop().await
}

#[tokio::test]
async fn resumes_after_an_apiserver_restart_without_duplicates() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), "127.0.0.1:0".parse()?).await?;
    let addr = server.addr;
    let client = Client::new(&server.url())?;
    let api = client.api::<ConfigMap>();

    let stop = CancellationToken::new();
    let (log, _) = spawn_watcher(&client, stop.clone());
    assert_eventually!(lines(&log).len() == 1, TIMEOUT, "no restart");
    api.create(&config_map("one", "1", &[])).await?;
    assert_eventually!(lines(&log).len() == 2, TIMEOUT, "got {:?}", lines(&log));

    server.stop().await?;
    let server = Server::start(dir.path(), addr).await?;

    api.create(&config_map("two", "2", &[])).await?;
    api.delete("default", "one", &DeleteParams::default())
        .await?;

    let want = [
        "restarted ",
        "applied one 1",
        "applied two 2",
        "deleted one",
    ];
    assert_eventually!(
        lines(&log).len() >= want.len(),
        TIMEOUT,
        "got {:?}",
        lines(&log)
    );
    // Let any duplicate that would follow arrive before checking.
    let marker = api.create(&config_map("marker", "m", &[])).await?;
    assert_eventually!(
        lines(&log).len() > want.len(),
        TIMEOUT,
        "got {:?}",
        lines(&log)
    );
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.push(format!("applied {} m", marker.meta().name));
    assert_eq!(lines(&log), want);

    stop.cancel();
    server.stop().await
}

/// Whether a watch from `resource_version` is refused as too old.
async fn history_gone(api: &Api<ConfigMap>, resource_version: &str) -> bool {
    let params = WatchParams {
        filters: ListParams::default().namespace("default"),
        resource_version: resource_version.into(),
        allow_bookmarks: false,
    };
    match api.watch(&params).await {
        Err(Error::Gone(_)) => true,
        Ok(mut stream) => matches!(
            tokio::time::timeout(Duration::from_millis(200), stream.next()).await,
            Ok(Some(Err(Error::Gone(_))))
        ),
        Err(_) => false,
    }
}

#[tokio::test]
async fn relists_when_history_is_gone() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), "127.0.0.1:0".parse()?).await?;
    let addr = server.addr;
    let client = Client::new(&server.url())?;
    let api = client.api::<ConfigMap>();

    let stop = CancellationToken::new();
    let (log, errors) = spawn_watcher(&client, stop.clone());
    assert_eventually!(lines(&log).len() == 1, TIMEOUT, "no restart");
    let one = api.create(&config_map("one", "1", &[])).await?;
    assert_eventually!(lines(&log).len() == 2, TIMEOUT, "got {:?}", lines(&log));

    // While the watcher cannot reach its server, the history it would
    // resume from is written over and compacted away: by a server on
    // another address, which the watcher does not know, so however long
    // that takes the watcher's next connection finds the history gone.
    server.stop().await?;
    assert_eventually!(errors.load(Ordering::SeqCst) >= 1, TIMEOUT);
    let compacting = |config: &mut moor_apiserver::Config| {
        config.watch_cache_events = 1;
        config.compaction_interval = Duration::from_millis(50);
    };
    let elsewhere = Server::start_with(dir.path(), "127.0.0.1:0".parse()?, compacting).await?;
    let elsewhere_client = Client::new(&elsewhere.url())?;
    let elsewhere_api = elsewhere_client.api::<ConfigMap>();
    elsewhere_api.create(&config_map("two", "2", &[])).await?;
    elsewhere_api.create(&config_map("three", "3", &[])).await?;
    elsewhere_api
        .delete("default", "one", &DeleteParams::default())
        .await?;
    let old_rv = one.meta().resource_version.clone();
    assert_eventually!(
        history_gone(&elsewhere_api, &old_rv).await,
        TIMEOUT,
        "history never compacted"
    );
    elsewhere.stop().await?;
    let server = Server::start_with(dir.path(), addr, compacting).await?;
    assert!(
        history_gone(&api, &old_rv).await,
        "the restarted server has no history before {old_rv} either"
    );

    let want = ["restarted ", "applied one 1", "restarted three,two"];
    assert_eventually!(
        lines(&log).len() >= want.len(),
        TIMEOUT,
        "got {:?}",
        lines(&log)
    );
    api.create(&config_map("marker", "m", &[])).await?;
    assert_eventually!(
        lines(&log).len() > want.len(),
        TIMEOUT,
        "got {:?}",
        lines(&log)
    );
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.push("applied marker m".into());
    assert_eq!(lines(&log), want);

    stop.cancel();
    server.stop().await
}

/// A list larger than a page (the watcher reads the store in pages) comes
/// whole: every object once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_more_than_a_page_whole() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), "127.0.0.1:0".parse()?).await?;
    let client = Client::new(&server.url())?;
    let api = client.api::<ConfigMap>();
    let want: Vec<String> = (0..1203).map(|i| format!("cm-{i:04}")).collect();
    for name in &want {
        api.create(&config_map(name, "0", &[])).await?;
    }
    let stop = CancellationToken::new();
    let (log, _) = spawn_watcher(&client, stop.clone());
    assert_eventually!(!lines(&log).is_empty(), TIMEOUT, "no restart");
    assert_eq!(lines(&log)[0], format!("restarted {}", want.join(",")));
    stop.cancel();
    server.stop().await
}
