//! results-ui: one server-rendered HTML page over the API.
//!
//! - `GET /`: the page (502 with `#error` when the API cannot be asked).
//! - `GET /fragment`: the page's `#summary`, `#results` and `#api-served-by`, for its
//!   refresh script.
//! - `POST /results`: the page's form (url-encoded), posted to the API as JSON; 303 to `/`
//!   when stored, the page again with `#error` when refused (400) or when the API cannot be
//!   asked (502).
//! - `GET /healthz`, `GET /readyz`: 200 while the process serves; readiness does not depend
//!   on the API, so the UI can say itself that the API is away.

mod page;

use std::path::PathBuf;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use page::escape;

use crate::client::{self, Answer, Client, Url};
use crate::form;
use crate::http::{self, BodyError, Response};
use crate::record::{self, Invalid, Record, Submission, Summary};

/// What the UI serves.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the API lives.
    pub api: Url,
    /// The page's title.
    pub title: String,
    /// How many results the page lists (1 to 1000).
    pub page_size: u16,
    /// This pod's name, for the footer and `X-Served-By`.
    pub pod: String,
    /// The resolver configuration for the API's name (`/etc/resolv.conf`).
    pub resolv_conf: PathBuf,
}

/// What the page shows from the API.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// The latest results, newest first.
    pub results: Vec<Record>,
    /// Per-suite totals.
    pub summary: Vec<Summary>,
    /// The API pod that listed the results.
    pub api_pod: Option<String>,
}

/// The form's fields as typed, kept to show them again after a refusal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FormValues {
    /// `suite`.
    pub suite: String,
    /// `passed`.
    pub passed: String,
    /// `failed`.
    pub failed: String,
    /// `duration_seconds`.
    pub duration_seconds: String,
}

struct State {
    config: Config,
    client: Client,
}

/// Serves the UI on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let client = Client::new(config.api.clone(), &config.resolv_conf);
    let pod = config.pod.clone();
    let state = Arc::new(State { config, client });
    let handler = move |request| handle(state.clone(), request);
    http::serve(listener, &pod, handler, shutdown).await
}

async fn handle(state: Arc<State>, request: Request<Incoming>) -> Response {
    let path = request.uri().path().to_owned();
    match (path.as_str(), request.method()) {
        ("/", &Method::GET) => index(&state).await,
        ("/fragment", &Method::GET) => fragment(&state).await,
        ("/results", &Method::POST) => post(&state, request).await,
        ("/healthz" | "/readyz", &Method::GET) => http::text(StatusCode::OK, "ok\n"),
        ("/results", _) => http::method_not_allowed(&path, "POST"),
        ("/" | "/fragment" | "/healthz" | "/readyz", _) => http::method_not_allowed(&path, "GET"),
        _ => http::text(StatusCode::NOT_FOUND, format!("no such page: {path}\n")),
    }
}

async fn index(state: &State) -> Response {
    match load(state).await {
        Ok(view) => page(
            state,
            StatusCode::OK,
            Some(&view),
            None,
            &FormValues::default(),
        ),
        Err(message) => {
            let form = FormValues::default();
            page(state, StatusCode::BAD_GATEWAY, None, Some(&message), &form)
        }
    }
}

async fn fragment(state: &State) -> Response {
    match load(state).await {
        Ok(view) => html(StatusCode::OK, page::fragment(&view)),
        Err(message) => http::text(StatusCode::BAD_GATEWAY, message),
    }
}

async fn post(state: &State, request: Request<Incoming>) -> Response {
    let body = match http::read_body(request).await {
        Ok(body) => body,
        Err(err @ BodyError::TooLarge) => {
            return http::text(StatusCode::PAYLOAD_TOO_LARGE, err.to_string());
        }
        Err(err @ BodyError::Read(_)) => {
            return http::text(StatusCode::BAD_REQUEST, err.to_string());
        }
    };
    let values = FormValues::from_pairs(&form::decode(&body));
    let json = match values.submission() {
        Ok(submission) => submission.to_json(),
        Err(invalid) => {
            let message = invalid.to_string();
            return refused(state, StatusCode::BAD_REQUEST, &message, &values).await;
        }
    };
    let url = state.client.url();
    match state.client.post_json("/results", json).await {
        Ok(answer) if answer.status == StatusCode::CREATED => see_other("/"),
        Ok(answer) if answer.status == StatusCode::BAD_REQUEST => {
            refused(state, StatusCode::BAD_REQUEST, &api_error(&answer), &values).await
        }
        Ok(answer) => {
            let message = format!(
                "the results API at {url} answered {}: {}",
                answer.status,
                api_error(&answer)
            );
            refused(state, StatusCode::BAD_GATEWAY, &message, &values).await
        }
        Err(err) => {
            let message = away(url, &err);
            refused(state, StatusCode::BAD_GATEWAY, &message, &values).await
        }
    }
}

/// The page again with `message` in `#error` and the form as the user filled it; the
/// results too, when the refusal came from the API and it can still list them.
async fn refused(
    state: &State,
    status: StatusCode,
    message: &str,
    values: &FormValues,
) -> Response {
    let view = match status {
        StatusCode::BAD_GATEWAY => None,
        _ => load(state).await.ok(),
    };
    page(state, status, view.as_ref(), Some(message), values)
}

/// The latest results and the summary, asked for at once; an error says why for `#error`.
async fn load(state: &State) -> Result<View, String> {
    let latest = format!("/results?limit={}", state.config.page_size);
    let (results, summary) = tokio::join!(state.client.get(&latest), state.client.get("/summary"));
    let (results, api_pod) = decode::<Vec<Record>>(state.client.url(), results)?;
    let (summary, _) = decode::<Vec<Summary>>(state.client.url(), summary)?;
    Ok(View {
        results,
        summary,
        api_pod,
    })
}

/// A 200's JSON body and the API pod that answered.
fn decode<T: DeserializeOwned>(
    url: &Url,
    answer: Result<Answer, client::Error>,
) -> Result<(T, Option<String>), String> {
    let answer = answer.map_err(|err| away(url, &err))?;
    if answer.status != StatusCode::OK {
        let status = answer.status;
        return Err(format!(
            "the results API at {url} answered {status}: {}",
            api_error(&answer)
        ));
    }
    match serde_json::from_slice(&answer.body) {
        Ok(value) => Ok((value, answer.served_by)),
        Err(err) => Err(format!(
            "the results API at {url} answered with JSON the UI cannot read: {err}"
        )),
    }
}

fn away(url: &Url, err: &client::Error) -> String {
    tracing::warn!(api = %url, error = %err, "cannot reach the results API; answering 502");
    format!("cannot reach the results API at {url}: {err}")
}

/// The API's `{"error": ...}` message, else the start of its body.
fn api_error(answer: &Answer) -> String {
    #[derive(serde::Deserialize)]
    struct Refusal {
        error: String,
    }
    match serde_json::from_slice::<Refusal>(&answer.body) {
        Ok(refusal) => refusal.error,
        Err(_) => String::from_utf8_lossy(&answer.body)
            .chars()
            .take(200)
            .collect(),
    }
}

fn page(
    state: &State,
    status: StatusCode,
    view: Option<&View>,
    error: Option<&str>,
    form: &FormValues,
) -> Response {
    let api_url = state.config.api.to_string();
    let body = page::render(&page::Page {
        title: &state.config.title,
        pod: &state.config.pod,
        api_url: &api_url,
        view,
        error,
        form,
    });
    html(status, body)
}

fn html(status: StatusCode, body: String) -> Response {
    http::respond(status, "text/html; charset=utf-8", body)
}

fn see_other(location: &'static str) -> Response {
    let mut response = http::text(StatusCode::SEE_OTHER, "stored\n");
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(location));
    response
}

// === impl FormValues ===

impl FormValues {
    /// The form's fields from decoded pairs; missing ones are empty.
    pub fn from_pairs(pairs: &[(String, String)]) -> FormValues {
        let field = |name| form::get(pairs, name).unwrap_or_default().to_owned();
        FormValues {
            suite: field("suite"),
            passed: field("passed"),
            failed: field("failed"),
            duration_seconds: field("duration_seconds"),
        }
    }

    /// The submission to post: numbers parsed here (a form has only text), everything
    /// else checked by the API, which owns the rules.
    pub fn submission(&self) -> Result<Submission, Invalid> {
        let count = |field: &str, text: &str| {
            text.trim()
                .parse::<u32>()
                .map_err(|_| Invalid::new(field, record::COUNT_RULE))
        };
        let duration_seconds = self
            .duration_seconds
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|d| d.is_finite())
            .ok_or_else(|| Invalid::new("duration_seconds", record::DURATION_RULE))?;
        Ok(Submission {
            suite: self.suite.clone(),
            passed: count("passed", &self.passed)?,
            failed: count("failed", &self.failed)?,
            duration_seconds,
            time: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_become_a_submission_or_a_refusal_naming_the_field() {
        let pairs =
            form::decode(b"suite=unit.v2&passed=+3+&failed=0&duration_seconds=1.5e1&extra=x");
        let values = FormValues::from_pairs(&pairs);
        assert_eq!(
            values.submission(),
            Ok(Submission {
                suite: "unit.v2".into(),
                passed: 3,
                failed: 0,
                duration_seconds: 15.0,
                time: None,
            })
        );
        for (body, field) in [
            ("suite=u&passed=x&failed=0&duration_seconds=1", "passed"),
            ("suite=u&passed=1&failed=-1&duration_seconds=1", "failed"),
            (
                "suite=u&passed=1&failed=0&duration_seconds=inf",
                "duration_seconds",
            ),
            ("suite=u&passed=1&failed=0", "duration_seconds"),
        ] {
            let values = FormValues::from_pairs(&form::decode(body.as_bytes()));
            assert_eq!(
                values.submission().map_err(|e| e.field),
                Err(field.into()),
                "{body}"
            );
        }
    }
}
