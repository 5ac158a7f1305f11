//! A real browser for tests of pages: Debian's Chromium, headless, driven
//! over the DevTools protocol (a WebSocket of JSON commands), as Puppeteer
//! drives it. The browser runs in a profile directory of its own and is
//! killed with its [`Browser`].

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long Chromium gets to start, and a command to answer.
const PATIENCE: Duration = Duration::from_secs(30);
/// How long one request to its HTTP endpoint may take.
const ANSWER: Duration = Duration::from_secs(5);

/// A headless Chromium and one page of it.
pub struct Browser {
    child: Child,
    // Behind a lock, so the methods take `&self` and a condition on the
    // page can be awaited with moor_testkit::eventually.
    page: tokio::sync::Mutex<WebSocketStream<MaybeTlsStream<TcpStream>>>,
    next_id: std::sync::atomic::AtomicU64,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium (as root it needs `--no-sandbox`) with one blank
    /// page; fails with what to install when it is missing.
    pub async fn start() -> anyhow::Result<Self> {
        let profile = tempfile::tempdir()?;
        let mut child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--remote-debugging-port=0",
                "--window-size=1200,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context(
                "cannot start chromium: install Debian's chromium package (scripts/setup.sh)",
            )?;
        let stderr = child.stderr.take().context("chromium's stderr")?;
        // It prints "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID".
        let endpoint = tokio::time::timeout(PATIENCE, async {
            let mut lines = BufReader::new(stderr).lines();
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    // Keep reading, so chromium never blocks on a full pipe.
                    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                    return Ok(url.trim().to_string());
                }
            }
            anyhow::bail!("chromium exited before it listened")
        })
        .await
        .context("chromium did not start within 30 s")??;
        let address = endpoint
            .strip_prefix("ws://")
            .and_then(|rest| rest.split('/').next())
            .with_context(|| format!("chromium's endpoint {endpoint}"))?
            .to_string();
        let page_url = page_endpoint(&address).await?;
        let (page, _) = tokio::time::timeout(
            PATIENCE,
            tokio_tungstenite::connect_async(page_url.as_str()),
        )
        .await
        .context("chromium's page did not answer within 30 s")?
        .with_context(|| format!("connecting to chromium's page at {page_url}"))?;
        let browser = Self {
            child,
            page: tokio::sync::Mutex::new(page),
            next_id: std::sync::atomic::AtomicU64::new(0),
            _profile: profile,
        };
        browser.call("Page.enable", json!({})).await?;
        browser.call("Runtime.enable", json!({})).await?;
        Ok(browser)
    }

    /// Sends one DevTools command to the page and returns its result,
    /// skipping the events that arrive meanwhile.
    pub async fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let command = json!({"id": id, "method": method, "params": params});
        let mut page = self.page.lock().await;
        page.send(Message::Text(command.to_string().into()))
            .await
            .with_context(|| format!("sending {method}"))?;
        tokio::time::timeout(PATIENCE, async {
            while let Some(message) = page.next().await {
                let Message::Text(text) = message? else {
                    continue;
                };
                let reply: Value = serde_json::from_str(&text)?;
                if reply["id"].as_u64() != Some(id) {
                    continue;
                }
                if let Some(error) = reply.get("error") {
                    anyhow::bail!("{method}: {error}");
                }
                return Ok(reply["result"].clone());
            }
            anyhow::bail!("chromium closed the page while {method} ran")
        })
        .await
        .with_context(|| format!("{method} did not answer within 30 s"))?
    }

    /// Loads `url` in the page (what follows waits for what it needs).
    pub async fn navigate(&self, url: &str) -> anyhow::Result<()> {
        let result = self.call("Page.navigate", json!({"url": url})).await?;
        if let Some(error) = result.get("errorText").and_then(Value::as_str) {
            anyhow::bail!("loading {url}: {error}");
        }
        Ok(())
    }

    /// The value of JavaScript `expression` in the page (promises awaited).
    pub async fn evaluate(&self, expression: &str) -> anyhow::Result<Value> {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await?;
        if let Some(exception) = result.get("exceptionDetails") {
            anyhow::bail!("{expression}: {exception}");
        }
        Ok(result["result"]["value"].clone())
    }

    /// Waits until JavaScript `expression` is `true` in the page, for
    /// `within` at most; fails with its last value.
    pub async fn wait_for(&self, expression: &str, within: Duration) -> anyhow::Result<()> {
        let last = std::sync::Mutex::new(None);
        let held = moor_testkit::eventually(within, || async {
            let value = self.evaluate(expression).await;
            let held = matches!(value, Ok(Value::Bool(true)));
            *last.lock().unwrap_or_else(|e| e.into_inner()) = Some(value);
            held.then_some(())
        })
        .await;
        held.with_context(|| {
            format!(
                "{expression} is not true after {within:?}: {:?}",
                last.lock().ok()
            )
        })
    }

    /// Writes a PNG of the page as it looks now to `path`.
    pub async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        use base64::Engine as _;
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await?;
        let data = shot["data"].as_str().context("the screenshot's data")?;
        let png = base64::engine::general_purpose::STANDARD.decode(data)?;
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// The WebSocket URL of the first page of the browser at `address`, from
/// its HTTP endpoint's `/json/list`, once it lists one.
async fn page_endpoint(address: &str) -> anyhow::Result<String> {
    let last = std::sync::Mutex::new(None);
    let found = moor_testkit::eventually(PATIENCE, || async {
        tokio::time::timeout(ANSWER, first_page(address))
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("/json/list took over {ANSWER:?}")))
            .map_err(|err| *last.lock().unwrap_or_else(|e| e.into_inner()) = Some(err))
            .ok()
    })
    .await;
    found.with_context(|| format!("chromium lists no page: {:?}", last.lock().ok()))
}

async fn first_page(address: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = TcpStream::connect(address).await?;
    let mut stream = BufReader::new(stream);
    // HTTP/1.1 (DevTools' server closes HTTP/1.0 requests unanswered), and
    // it keeps the connection open: the body is Content-Length long.
    stream
        .get_mut()
        .write_all(format!("GET /json/list HTTP/1.1\r\nHost: {address}\r\n\r\n").as_bytes())
        .await?;
    let mut length = None;
    loop {
        let mut line = String::new();
        anyhow::ensure!(
            stream.read_line(&mut line).await? > 0,
            "chromium closed /json/list"
        );
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = Some(value.trim().parse::<usize>()?);
        }
    }
    let mut body = vec![0; length.context("chromium's /json/list has no Content-Length")?];
    stream.read_exact(&mut body).await?;
    let targets: Vec<Value> = serde_json::from_slice(&body).context("chromium's /json/list")?;
    targets
        .iter()
        .find(|t| t["type"] == "page")
        .and_then(|t| t["webSocketDebuggerUrl"].as_str())
        .map(str::to_string)
        .context("no page yet")
}
