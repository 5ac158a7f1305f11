//! The HTTP/1.1 plumbing both servers share: the accept loop with graceful shutdown, one log
//! line and an `X-Served-By` header on every response, bodies capped at 64 KiB, and the
//! small response builders.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A complete response: every handler answers with its whole body in memory.
pub type Response = hyper::Response<Full<Bytes>>;

/// The largest request body either server reads; larger ones get 413.
pub const BODY_LIMIT: usize = 64 * 1024;

/// How long in-flight requests may take to finish once shutdown begins.
const DRAIN: Duration = Duration::from_secs(10);

/// The header naming the pod that answered.
pub const SERVED_BY: &str = "x-served-by";

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Over [`BODY_LIMIT`].
    #[error("the body is larger than {BODY_LIMIT} bytes")]
    TooLarge,
    /// The connection failed mid-body.
    #[error("cannot read the body: {0}")]
    Read(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Serves `handler` on `listener` until `shutdown` is cancelled, then stops accepting and
/// gives in-flight requests [`DRAIN`] to finish. Each response gets `X-Served-By: pod` and
/// a log line.
pub async fn serve<H, F>(
    listener: TcpListener,
    pod: &str,
    handler: H,
    shutdown: CancellationToken,
) -> io::Result<()>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let served_by = HeaderValue::from_str(pod).unwrap_or(HeaderValue::from_static("unknown"));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let handler = handler.clone();
                    connections.spawn(connection(stream, handler, served_by.clone(), shutdown.clone()));
                }
                // Out of file descriptors, most likely: pause instead of spinning.
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed; retrying in 100 ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "requests still running after {DRAIN:?}; dropping them"
        );
        connections.abort_all();
    }
    Ok(())
}

/// Answers one request with `handler`, marks the response with `X-Served-By` and logs it.
async fn logged<H, F>(handler: H, served_by: HeaderValue, request: Request<Incoming>) -> Response
where
    H: Fn(Request<Incoming>) -> F,
    F: Future<Output = Response>,
{
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let mut response = handler(request).await;
    response.headers_mut().insert(SERVED_BY, served_by);
    let micros = started.elapsed().as_micros();
    tracing::info!(
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        duration_ms = micros as f64 / 1000.0,
        "request"
    );
    response
}

async fn connection<H, F>(
    stream: TcpStream,
    handler: H,
    served_by: HeaderValue,
    shutdown: CancellationToken,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let service = service_fn(move |request| {
        let answer = logged(handler.clone(), served_by.clone(), request);
        async move { Ok::<_, Infallible>(answer.await) }
    });
    let conn = http1::Builder::new()
        // A timer lets hyper bound how long a client may take to send its headers.
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = shutdown.cancelled() => {
            // Finishes the request in flight (if any), then closes.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(error = %err, "connection ended with an error");
    }
}

/// Runs `server` until it ends or SIGTERM or SIGINT arrives; on a signal, cancels
/// `shutdown` and waits for the server to finish its in-flight requests.
pub async fn run_until_signal(
    server: impl Future<Output = io::Result<()>>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::pin!(server);
    let name = tokio::select! {
        result = &mut server => return result,
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(
        signal = name,
        "stopping: no new connections; finishing requests in flight"
    );
    shutdown.cancel();
    let result = server.await;
    tracing::info!("stopped");
    result
}

/// The body of `request`, refused past [`BODY_LIMIT`] (by its length header if it has one,
/// else while reading).
pub async fn read_body(request: Request<Incoming>) -> Result<Bytes, BodyError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return Err(BodyError::TooLarge);
    }
    match Limited::new(request.into_body(), BODY_LIMIT)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<LengthLimitError>() => Err(BodyError::TooLarge),
        Err(err) => Err(BodyError::Read(err)),
    }
}

/// The pod's name: `$POD_NAME`, else the host name, else `unknown`.
pub fn pod_name() -> String {
    let from_env = std::env::var("POD_NAME").ok();
    let from_host = || {
        ["/proc/sys/kernel/hostname", "/etc/hostname"]
            .into_iter()
            .find_map(|path| std::fs::read_to_string(path).ok())
    };
    from_env
        .or_else(from_host)
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// A response with `body` of `content_type`.
pub fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response {
    let mut response = hyper::Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Plain text.
pub fn text(status: StatusCode, body: impl Into<String>) -> Response {
    respond(status, "text/plain; charset=utf-8", body.into())
}

/// `value` as JSON.
pub fn json(status: StatusCode, value: &impl Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => respond(status, "application/json", body),
        Err(err) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot encode the answer: {err}"),
        ),
    }
}

/// `{"error": message}`.
pub fn error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    respond(status, "application/json", body)
}

/// 405, naming the methods `path` allows.
pub fn method_not_allowed(path: &str, allow: &'static str) -> Response {
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("{path} allows only {allow}"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// 404 for `path`.
pub fn not_found(path: &str) -> Response {
    error(StatusCode::NOT_FOUND, &format!("no such path: {path}"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::{Notify, mpsc};

    use super::*;
    use crate::client::Client;

    #[tokio::test]
    async fn shutdown_lets_the_request_in_flight_finish() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (started, mut in_flight) = mpsc::channel(1);
        let release = Arc::new(Notify::new());
        let handler = {
            let release = release.clone();
            move |_request| {
                let (started, release) = (started.clone(), release.clone());
                async move {
                    let _ = started.send(()).await;
                    release.notified().await;
                    text(StatusCode::OK, "finished")
                }
            }
        };
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(listener, "pod-0", handler, shutdown.clone()));
        let url = format!("http://{addr}").parse().unwrap();
        let client = Client::new(url, "/nonexistent/resolv.conf");
        let request = tokio::spawn(async move { client.get("/slow").await });

        in_flight.recv().await.unwrap();
        shutdown.cancel();
        release.notify_one();
        let answer = request.await.unwrap().unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(&answer.body[..], b"finished");
        assert_eq!(answer.served_by.as_deref(), Some("pod-0"));
        server.await.unwrap().unwrap();
        assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
    }
}
