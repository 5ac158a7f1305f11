//! results-api: a JSON API over the [`Store`].
//!
//! - `GET /results?suite=S&limit=N`: records, newest first (limit 1 to 1000, default 50).
//! - `POST /results`: a [`Submission`] as JSON; 201 with the stored [`Record`], 400 naming
//!   the bad field, 413 past 64 KiB.
//! - `GET /summary`: [`Summary`] per suite, sorted by suite.
//! - `GET /healthz`: 200 while the process serves; `GET /readyz`: 200 while the data file can
//!   be appended to and read, else 503.
//!
//! Every request reads the file anew: replicas share it, so no copy in memory stays true.

use std::path::PathBuf;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::form;
use crate::http::{self, BodyError, Response};
use crate::record::{self, Record, Submission, Summary, valid_suite};
use crate::store::Store;

/// How many records `GET /results` returns without `limit`, and at most.
pub const LIMIT_DEFAULT: usize = 50;
/// See [`LIMIT_DEFAULT`].
pub const LIMIT_MAX: usize = 1000;

/// What the API serves.
#[derive(Debug, Clone)]
pub struct Config {
    /// The directory holding `results.jsonl`.
    pub data: PathBuf,
    /// This pod's name, for `X-Served-By`.
    pub pod: String,
}

/// Serves the API on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let store = Arc::new(Store::new(&config.data));
    let handler = move |request| handle(store.clone(), request);
    http::serve(listener, &config.pod, handler, shutdown).await
}

async fn handle(store: Arc<Store>, request: Request<Incoming>) -> Response {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    match (path.as_str(), method) {
        ("/results", Method::GET) => list(&store, request.uri().query().unwrap_or("")).await,
        ("/results", Method::POST) => create(&store, request).await,
        ("/results", _) => http::method_not_allowed(&path, "GET, POST"),
        ("/summary", Method::GET) => summary(&store).await,
        ("/healthz", Method::GET) => http::text(StatusCode::OK, "ok\n"),
        ("/readyz", Method::GET) => ready(&store).await,
        ("/summary" | "/healthz" | "/readyz", _) => http::method_not_allowed(&path, "GET"),
        _ => http::not_found(&path),
    }
}

async fn list(store: &Store, query: &str) -> Response {
    let query = form::decode(query.as_bytes());
    let suite = form::get(&query, "suite");
    if suite.is_some_and(|s| !valid_suite(s)) {
        let message = format!("suite: {}", record::SUITE_RULE);
        return http::error(StatusCode::BAD_REQUEST, &message);
    }
    let limit = match form::get(&query, "limit").map(str::parse::<usize>) {
        None => LIMIT_DEFAULT,
        Some(Ok(n)) if (1..=LIMIT_MAX).contains(&n) => n,
        Some(_) => {
            let message = format!("limit: must be a whole number from 1 to {LIMIT_MAX}");
            return http::error(StatusCode::BAD_REQUEST, &message);
        }
    };
    let records = match read(store).await {
        Ok(records) => records,
        Err(response) => return response,
    };
    let records: Vec<Record> = record::newest_first(records)
        .into_iter()
        .filter(|r| suite.is_none_or(|s| r.suite == s))
        .take(limit)
        .collect();
    http::json(StatusCode::OK, &records)
}

async fn create(store: &Store, request: Request<Incoming>) -> Response {
    let body = match http::read_body(request).await {
        Ok(body) => body,
        Err(err @ BodyError::TooLarge) => {
            return http::error(StatusCode::PAYLOAD_TOO_LARGE, &err.to_string());
        }
        Err(err @ BodyError::Read(_)) => {
            return http::error(StatusCode::BAD_REQUEST, &err.to_string());
        }
    };
    let now = time::OffsetDateTime::now_utc();
    let record = match Submission::from_json(&body)
        .and_then(|submission| submission.into_record(record::new_id(now), now))
    {
        Ok(record) => record,
        Err(invalid) => return http::error(StatusCode::BAD_REQUEST, &invalid.to_string()),
    };
    match store.append(record.clone()).await {
        Ok(()) => http::json(StatusCode::CREATED, &record),
        Err(err) => {
            let message = format!("cannot append to {}: {err}", store.path().display());
            tracing::error!(error = %err, file = %store.path().display(), "cannot store a result; answering 500");
            http::error(StatusCode::INTERNAL_SERVER_ERROR, &message)
        }
    }
}

async fn summary(store: &Store) -> Response {
    match read(store).await {
        Ok(records) => {
            let summary: Vec<Summary> = record::summarize(&records);
            http::json(StatusCode::OK, &summary)
        }
        Err(response) => response,
    }
}

async fn ready(store: &Store) -> Response {
    match store.check().await {
        Ok(()) => http::text(StatusCode::OK, "ready\n"),
        Err(err) => {
            let message = format!("not ready: {}: {err}\n", store.path().display());
            tracing::warn!(error = %err, file = %store.path().display(), "not ready: the data file cannot be appended to or read");
            http::text(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }
}

/// The store's records, or the 500 to answer.
async fn read(store: &Store) -> Result<Vec<Record>, Response> {
    store.read().await.map_err(|err| {
        tracing::error!(error = %err, file = %store.path().display(), "cannot read the results; answering 500");
        let message = format!("cannot read {}: {err}", store.path().display());
        http::error(StatusCode::INTERNAL_SERVER_ERROR, &message)
    })
}
