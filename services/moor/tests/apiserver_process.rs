//! `moor apiserver` as a process, as an operator runs it: killed with SIGKILL
//! mid-stream and restarted on the same data, no acknowledged write is lost
//! and watchers (listing again where the new apiserver has no history that
//! old) see each change once, in order; a busy
//! port is a clear error; SIGTERM stops it cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

mod common;

use common::{Seen, config_map};

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use std::collections::BTreeMap;

use moor_api::core::v1::config_maps_client::ConfigMapsClient;
use tokio::process::{Child, Command};
use tonic::Code;

fn spawn(addr: SocketAddr, dir: &Path) -> anyhow::Result<Child> {
    Ok(Command::new(env!("CARGO_BIN_EXE_moor"))
        .args([
            "apiserver",
            "--insecure",
            "--listen",
            &addr.to_string(),
            "--log",
            "warn",
        ])
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?)
}

async fn wait_ready(url: &str) -> ConfigMapsClient<moor_rpc::Channel> {
    let mut client = ConfigMapsClient::new(moor_rpc::channel(url).unwrap());
    moor_testkit::assert_eventually!(
        client
            .list(moor_api::meta::v1::ListRequest::default())
            .await
            .is_ok(),
        Duration::from_secs(30),
        "apiserver at {url} never answered"
    );
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_see_every_change_once_across_two_sigkills() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let addr: SocketAddr = format!("127.0.0.1:{}", moor_testkit::free_port()).parse()?;
    let url = format!("http://{addr}");
    let mut server = spawn(addr, dir.path())?;
    let mut client = wait_ready(&url).await;
    client.create(config_map("seed", "0")).await?;

    const WATCHERS: usize = 20;
    const MUTATIONS: usize = 1000;
    let (done_tx, done_rx) = tokio::sync::watch::channel(None);
    let (receivers, mut tasks) = common::watchers(&url, WATCHERS, &done_rx);
    // The truth: every acknowledged write, in order.
    let mut truth: Vec<(i64, String, String)> = Vec::new();
    let mut i = 0u32;
    while truth.len() < MUTATIONS {
        if truth.len() == 300 || truth.len() == 700 {
            // SIGKILL: no graceful shutdown, no chance to flush anything.
            server.kill().await?;
            server = spawn(addr, dir.path())?;
            client = wait_ready(&url).await;
        }
        i += 1;
        let name = format!("cm-{}", i % 40);
        let result = match client.update(config_map(&name, &i.to_string())).await {
            Err(status) if status.code() == Code::NotFound => {
                client.create(config_map(&name, &i.to_string())).await
            }
            other => other,
        };
        match result {
            Ok(object) => {
                let meta = object.into_inner().metadata.unwrap_or_default();
                truth.push((meta.resource_version.parse()?, name, i.to_string()));
            }
            Err(status) if status.code() == Code::Unavailable => continue,
            Err(status) => anyhow::bail!("mutation failed: {status}"),
        }
    }
    // The state after the first `n` writes.
    let state_after = |n: usize| {
        let mut state = BTreeMap::from([("seed".to_string(), "0".to_string())]);
        for (_, name, value) in &truth[..n] {
            state.insert(name.clone(), value.clone());
        }
        state
    };
    let last = state_after(truth.len());
    done_tx.send(Some(last.clone()))?;
    for (w, mut rx) in receivers.into_iter().enumerate() {
        // Each change is an acknowledged write, each once, in order; each
        // list is the state after some write at or after the last change
        // seen; and the watcher ends holding the final state.
        let mut at = 0usize; // writes accounted for
        let mut lists = 0;
        loop {
            match tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
                Ok(Some(Seen::Change(rv, name, value))) => {
                    let Some(k) = truth[at..].iter().position(|t| t.0 == rv) else {
                        anyhow::bail!(
                            "watcher {w}: change at {rv} is not a write after the {at}th"
                        );
                    };
                    assert_eq!(k, 0, "watcher {w}: {k} writes skipped before {rv}");
                    assert_eq!(
                        (&truth[at].1, &truth[at].2),
                        (&name, &value),
                        "watcher {w} at {rv}"
                    );
                    at += 1;
                }
                Ok(Some(Seen::Listed(state))) => {
                    lists += 1;
                    let Some(n) = (at..=truth.len()).find(|n| state_after(*n) == state) else {
                        anyhow::bail!("watcher {w}: a list matching no state after write {at}");
                    };
                    at = n;
                }
                Ok(None) => break,
                Err(_) => anyhow::bail!("watcher {w} stalled after write {at} of {}", truth.len()),
            }
        }
        assert_eq!(state_after(at), last, "watcher {w} ends with every write");
        // The first list, and at most one again per restart.
        assert!(lists <= 3, "watcher {w} listed {lists} times");
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

#[tokio::test]
async fn a_busy_port_is_a_clear_error_and_sigterm_stops_cleanly() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let addr: SocketAddr = format!("127.0.0.1:{}", moor_testkit::free_port()).parse()?;
    let server = spawn(addr, dir.path())?;
    wait_ready(&format!("http://{addr}")).await;

    let other = tempfile::tempdir()?;
    let output = Command::new(env!("CARGO_BIN_EXE_moor"))
        .args(["apiserver", "--listen", &addr.to_string()])
        .arg("--data-dir")
        .arg(other.path())
        .output()
        .await?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );

    let pid = server.id().expect("running");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    assert!(status.success());
    let mut server = server;
    let exit = tokio::time::timeout(Duration::from_secs(30), server.wait()).await??;
    assert!(
        exit.success(),
        "SIGTERM should stop the apiserver cleanly, got {exit}"
    );
    Ok(())
}
