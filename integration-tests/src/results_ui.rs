//! The reference application, as its tests use it: deployed by
//! scripts/results-ui.sh, read over HTTP, and used in a real browser.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use moor_api::core::v1::Pod;
use moor_client::{Client, ListParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::browser::Browser;

/// How long one HTTP exchange with the page may take.
const EXCHANGE: Duration = Duration::from_secs(10);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// rustup's and cargo's homes as this process found them, for a command
/// run with another HOME (the script builds the images).
fn rust_homes() -> Vec<(&'static str, PathBuf)> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    [("RUSTUP_HOME", ".rustup"), ("CARGO_HOME", ".cargo")]
        .into_iter()
        .filter_map(|(var, dir)| {
            let path = std::env::var_os(var)
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(dir)))?;
            Some((var, path))
        })
        .collect()
}

/// Runs scripts/results-ui.sh as the README does, as the administrator
/// whose moorctl context is in `home`: builds and pushes the images to
/// `registry` under `tag`, applies the manifests with the API's data in
/// `data`. Fails with the script's output unless it pushed both.
pub async fn deploy(
    home: &Path,
    moorctl: &Path,
    registry: &str,
    tag: &str,
    data: &Path,
) -> anyhow::Result<()> {
    let out = tokio::process::Command::new(root().join("scripts/results-ui.sh"))
        .args(["--registry", registry, "--tag", tag])
        .arg("--data")
        .arg(data)
        .env("HOME", home)
        .envs(rust_homes())
        .env("MOORCTL", moorctl)
        .env_remove("MOOR_SERVER")
        .env_remove("MOOR_CONFIG")
        .stdin(Stdio::null())
        .output()
        .await
        .context("scripts/results-ui.sh runs")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "scripts/results-ui.sh failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    for image in ["results-api", "results-ui"] {
        anyhow::ensure!(
            stdout.contains(&format!("pushed {registry}/{image}:{tag}")),
            "{image} not pushed: {stdout}"
        );
    }
    Ok(())
}

/// The tags [`deploy`] makes in this machine's Docker for `registry` and
/// `tags`, for the test to remove.
pub fn pushed_tags(registry: &str, tags: &[&str]) -> Vec<String> {
    ["results-api", "results-ui"]
        .iter()
        .flat_map(|image| {
            tags.iter()
                .map(move |tag| format!("{registry}/{image}:{tag}"))
        })
        .collect()
}

/// An HTTP/1.1 exchange on a fresh connection, with a form body if
/// given: (status, head, body).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    form: Option<&str>,
) -> std::io::Result<(u16, String, String)> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let body = form.unwrap_or("");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(EXCHANGE, exchange)
        .await
        .map_err(|_| std::io::Error::other(format!("{method} {path} took over {EXCHANGE:?}")))??;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    Ok((status, head.to_string(), body.to_string()))
}

/// The UI's page at `ui`, if it answers 200.
pub async fn page(ui: SocketAddr) -> Option<String> {
    match http(ui, "GET", "/", None).await {
        Ok((200, _, body)) => Some(body),
        _ => None,
    }
}

/// Whether `page` lists a result of `suite`: a row and a bar.
pub fn lists(page: &str, suite: &str) -> bool {
    page.contains(&format!("class=\"result\" data-suite=\"{suite}\""))
        && page.contains(&format!("class=\"bar\" data-suite=\"{suite}\""))
}

/// The node port the `results-ui` Service was given.
pub async fn ui_node_port(client: &Client) -> anyhow::Result<u16> {
    let service = client
        .api::<moor_api::core::v1::Service>()
        .get("default", "results-ui")
        .await?;
    let port = service
        .spec
        .and_then(|s| s.ports.into_iter().next())
        .context("results-ui has no port")?
        .node_port;
    Ok(u16::try_from(port)?)
}

/// Whether the pod is Ready.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.r#type == "Ready" && c.status == "True")
    })
}

/// The pods labelled `app=APP` in `default`.
pub async fn pods(client: &Client, app: &str) -> Vec<Pod> {
    client
        .api::<Pod>()
        .list(
            &ListParams::default()
                .namespace("default")
                .labels(format!("app={app}")),
        )
        .await
        .map(|(pods, _)| pods)
        .unwrap_or_default()
}

/// Whether there are `n` pods of `app`, all ready, none deleting, each
/// running `image`.
pub async fn rolled_out(client: &Client, app: &str, image: &str, n: usize) -> bool {
    let pods = pods(client, app).await;
    pods.len() == n
        && pods.iter().all(|p| {
            p.metadata
                .as_ref()
                .is_some_and(|m| m.deletion_timestamp.is_none())
                && p.spec
                    .as_ref()
                    .is_some_and(|s| s.containers.iter().all(|c| c.image == image))
                && pod_ready(p)
        })
}

/// In headless Chromium: loads the page at `ui`, fills in the form with a
/// result of `suite` (3 passed, 1 failed) and submits it, waits until the
/// page shows its row and a 75% bar, and writes a screenshot to `shot`.
pub async fn submit_in_browser(
    ui: SocketAddr,
    suite: &str,
    shot: &Path,
    patience: Duration,
) -> anyhow::Result<()> {
    let browser = Browser::start().await?;
    browser.navigate(&format!("http://{ui}/")).await?;
    let form_ready =
        "document.readyState === 'complete' && !!document.querySelector('#post-result')";
    browser
        .wait_for(form_ready, patience)
        .await
        .context("the browser shows the page's form")?;
    let fill = format!(
        "(() => {{ const f = document.querySelector('#post-result'); \
         f.elements['suite'].value = '{suite}'; f.elements['passed'].value = '3'; \
         f.elements['failed'].value = '1'; f.elements['duration_seconds'].value = '2.5'; \
         f.requestSubmit(); return true; }})()"
    );
    browser.evaluate(&fill).await?;
    let shown = format!(
        "(() => {{ \
         const row = document.querySelector('#results tr.result[data-suite=\"{suite}\"]'); \
         const bar = document.querySelector('#summary .bar[data-suite=\"{suite}\"]'); \
         return !!row && !!bar && parseFloat(bar.dataset.passRate) === 75 \
           && bar.style.width === '75%'; }})()"
    );
    browser
        .wait_for(&shown, patience)
        .await
        .with_context(|| format!("the browser shows {suite}'s row and a 75% bar"))?;
    browser.screenshot(shot).await?;
    anyhow::ensure!(std::fs::metadata(shot)?.len() > 1000, "an empty screenshot");
    Ok(())
}
