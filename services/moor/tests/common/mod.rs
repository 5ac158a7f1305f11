//! What the process tests share: ConfigMaps as the objects under test, and
//! a watcher that reports what it sees, to compare with what was written.

#![allow(dead_code)] // each test binary uses a part

use std::collections::BTreeMap;
use std::process::Stdio;

use futures::StreamExt;
use moor_api::Resource;
use moor_api::core::v1::ConfigMap;
use moor_client::watcher::Event as WatcherEvent;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// `moor ARGS --log warn`, killed when dropped.
pub fn moor(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_moor"))
        .args(args)
        .args(["--log", "warn"])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("moor starts")
}

/// `moor node --runtime fake --count COUNT --name NAME` on `server`, with
/// `extra` flags; killed, and its data directory removed, when dropped.
pub struct FakeNodes {
    _process: Child,
    _data: tempfile::TempDir,
}

pub fn fake_nodes(server: &str, count: usize, name: &str, extra: &[&str]) -> FakeNodes {
    let data = tempfile::tempdir().expect("a data directory");
    let count = count.to_string();
    let dir = data.path().to_str().expect("a UTF-8 temporary path");
    let mut args = vec![
        "node",
        "--server",
        server,
        "--runtime",
        "fake",
        "--count",
        &count,
        "--name",
        name,
        "--data-dir",
        dir,
    ];
    args.extend_from_slice(extra);
    FakeNodes {
        _process: moor(&args),
        _data: data,
    }
}

/// A ConfigMap in `default` holding `value` under `v`.
pub fn config_map(name: &str, value: &str) -> ConfigMap {
    let mut cm = moor_integration_tests::servers::config_map(name);
    cm.data.insert("v".into(), value.into());
    cm
}

/// The value under `v`.
pub fn value(cm: &ConfigMap) -> String {
    cm.data.get("v").cloned().unwrap_or_default()
}

/// What a watcher reports: a change (resourceVersion, name, value),
/// or, after its first list and after each list again, the whole state.
pub enum Seen {
    Change(i64, String, String),
    Listed(BTreeMap<String, String>),
}

/// `count` [`watcher`]s of `servers`, each reporting on its own channel.
pub fn watchers(
    servers: &str,
    count: usize,
    done: &tokio::sync::watch::Receiver<Option<BTreeMap<String, String>>>,
) -> (
    Vec<mpsc::UnboundedReceiver<Seen>>,
    tokio::task::JoinSet<anyhow::Result<()>>,
) {
    let mut receivers = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..count {
        let (tx, rx) = mpsc::unbounded_channel();
        receivers.push(rx);
        tasks.spawn(watcher(servers.to_string(), done.clone(), tx));
    }
    (receivers, tasks)
}

/// Follows ConfigMaps through the client's watcher at `servers` (one URL or
/// several), which resumes after a break and lists again when the apiserver
/// no longer has its version, until `done` holds the final state and the
/// watcher does too.
pub async fn watcher(
    servers: String,
    mut done: tokio::sync::watch::Receiver<Option<BTreeMap<String, String>>>,
    out: mpsc::UnboundedSender<Seen>,
) -> anyhow::Result<()> {
    let client = moor_client::Client::new(&servers)?;
    let params = moor_client::ListParams::default().namespace("default");
    let mut events = std::pin::pin!(moor_client::watcher(client.api::<ConfigMap>(), params));
    let mut state = BTreeMap::new();
    loop {
        if done.borrow().as_ref() == Some(&state) {
            return Ok(());
        }
        let event = tokio::select! {
            event = events.next() => event,
            changed = done.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                continue;
            }
        };
        match event {
            Some(Ok(WatcherEvent::Restarted(items))) => {
                state = items
                    .iter()
                    .map(|cm| (cm.meta().name.clone(), value(cm)))
                    .collect();
                out.send(Seen::Listed(state.clone()))?;
            }
            Some(Ok(WatcherEvent::Applied(cm))) => {
                let meta = cm.meta();
                state.insert(meta.name.clone(), value(&cm));
                out.send(Seen::Change(
                    meta.resource_version.parse()?,
                    meta.name.clone(),
                    value(&cm),
                ))?;
            }
            Some(Ok(WatcherEvent::Deleted(cm))) => {
                anyhow::bail!("{} deleted: the test deletes nothing", cm.meta().name)
            }
            // The apiserver is away: the watcher retries.
            Some(Err(_)) => {}
            None => anyhow::bail!("the watcher ended"),
        }
    }
}
