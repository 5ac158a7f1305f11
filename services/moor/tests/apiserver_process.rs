//! `moor apiserver` as a process, as an operator runs it: killed with SIGKILL
//! mid-stream and restarted on the same data, watchers lose nothing; a busy
//! port is a clear error; SIGTERM stops it cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use futures::StreamExt;
use moor_api::core::v1::ConfigMap;
use moor_api::core::v1::config_maps_client::ConfigMapsClient;
use moor_api::meta::v1::{EventType, ObjectMeta, WatchRequest};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
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

fn config_map(name: &str, value: &str) -> ConfigMap {
    let mut cm = ConfigMap {
        metadata: Some(ObjectMeta {
            name: name.to_string(),
            ..Default::default()
        }),
        ..Default::default()
    };
    cm.data.insert("v".into(), value.into());
    cm
}

type Seen = (String, i32, String, String);

async fn watcher(
    url: String,
    from: String,
    total: usize,
    out: mpsc::UnboundedSender<Seen>,
) -> anyhow::Result<()> {
    let mut last = from;
    let mut seen = 0;
    while seen < total {
        let mut client = ConfigMapsClient::new(moor_rpc::channel(&url)?);
        let req = WatchRequest {
            namespace: "default".into(),
            resource_version: last.clone(),
            ..Default::default()
        };
        let mut stream = match client.watch(req).await {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == Code::OutOfRange => {
                anyhow::bail!("history lost: {status}")
            }
            Err(_) => {
                wait_ready(&url).await;
                continue;
            }
        };
        while let Some(Ok(event)) = stream.next().await {
            let object = event.object.unwrap_or_default();
            let meta = object.metadata.unwrap_or_default();
            last = meta.resource_version.clone();
            if event.r#type == EventType::Bookmark as i32 {
                continue;
            }
            out.send((
                meta.resource_version,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_see_every_change_once_across_two_sigkills() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let addr: SocketAddr = format!("127.0.0.1:{}", moor_testkit::free_port()).parse()?;
    let url = format!("http://{addr}");
    let mut server = spawn(addr, dir.path())?;
    let mut client = wait_ready(&url).await;
    let from = client
        .create(config_map("seed", "0"))
        .await?
        .into_inner()
        .metadata
        .unwrap()
        .resource_version;

    const WATCHERS: usize = 20;
    const MUTATIONS: usize = 1000;
    let mut receivers = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..WATCHERS {
        let (tx, rx) = mpsc::unbounded_channel();
        receivers.push(rx);
        tasks.spawn(watcher(url.clone(), from.clone(), MUTATIONS, tx));
    }
    let mut truth = Vec::new();
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
            Err(status) if status.code() == Code::NotFound => client
                .create(config_map(&name, &i.to_string()))
                .await
                .map(|r| (EventType::Added, r.into_inner())),
            other => other.map(|r| (EventType::Modified, r.into_inner())),
        };
        match result {
            Ok((kind, object)) => {
                let meta = object.metadata.unwrap_or_default();
                truth.push((meta.resource_version, kind as i32, name, i.to_string()));
            }
            Err(status) if status.code() == Code::Unavailable => continue,
            Err(status) => anyhow::bail!("mutation failed: {status}"),
        }
    }
    for (w, mut rx) in receivers.into_iter().enumerate() {
        let mut got = Vec::new();
        while got.len() < MUTATIONS {
            match tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
                Ok(Some(seen)) => got.push(seen),
                _ => anyhow::bail!("watcher {w} saw {} of {MUTATIONS} changes", got.len()),
            }
        }
        assert_eq!(got, truth, "watcher {w}");
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
