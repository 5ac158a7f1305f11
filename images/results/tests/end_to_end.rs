//! End to end, in-process: results-api and results-ui on 127.0.0.1 ports chosen by the
//! kernel, the UI pointed at the API by IP (no DNS), asked over real HTTP.
#![allow(clippy::unwrap_used)] // tests: a failed call is a failed test

use std::net::SocketAddr;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use moor_results::client::{Answer, Client};
use moor_results::record::Summary;
use moor_results::{api, ui};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

const FORM: &str = "application/x-www-form-urlencoded";

/// Both servers, stopped (gracefully) by [`Servers::stop`].
struct Servers {
    api: Client,
    ui: Client,
    shutdown: CancellationToken,
    tasks: JoinSet<std::io::Result<()>>,
    _data: tempfile::TempDir,
}

impl Servers {
    /// The API on a fresh data directory, and the UI in front of the API at `api_url` (the
    /// real API's when `None`).
    async fn start(api_url: Option<&str>) -> Servers {
        let data = tempfile::tempdir().unwrap();
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let (listener, api_addr) = listen().await;
        let config = api::Config {
            data: data.path().to_owned(),
            pod: "api-0".into(),
        };
        tasks.spawn(api::serve(listener, config, shutdown.clone()));
        let (listener, ui_addr) = listen().await;
        let api_url = api_url.map_or_else(|| format!("http://{api_addr}"), str::to_owned);
        let config = ui::Config {
            api: api_url.parse().unwrap(),
            title: "E2E <results>".into(),
            page_size: 20,
            pod: "ui-0".into(),
            resolv_conf: "/nonexistent/resolv.conf".into(),
        };
        tasks.spawn(ui::serve(listener, config, shutdown.clone()));
        Servers {
            api: client(api_addr),
            ui: client(ui_addr),
            shutdown,
            tasks,
            _data: data,
        }
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        while let Some(served) = self.tasks.join_next().await {
            served.unwrap().unwrap();
        }
    }
}

/// A listener on a free port: bound before the server starts, so no waiting is needed.
async fn listen() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

fn client(addr: SocketAddr) -> Client {
    Client::new(
        format!("http://{addr}").parse().unwrap(),
        "/nonexistent/resolv.conf",
    )
}

async fn send(
    client: &Client,
    method: Method,
    path: &str,
    kind: &'static str,
    body: &str,
) -> Answer {
    let body = Bytes::copy_from_slice(body.as_bytes());
    client.send(method, path, Some(kind), body).await.unwrap()
}

fn text(answer: &Answer) -> String {
    String::from_utf8_lossy(&answer.body).into_owned()
}

fn json(answer: &Answer) -> Value {
    serde_json::from_slice(&answer.body).unwrap()
}

#[tokio::test]
async fn a_run_posted_through_the_form_shows_in_the_page_and_the_summary() {
    let servers = Servers::start(None).await;
    let form = "suite=e2e.smoke&passed=2&failed=1&duration_seconds=1.5";
    let posted = send(&servers.ui, Method::POST, "/results", FORM, form).await;
    assert_eq!(posted.status, StatusCode::SEE_OTHER, "{}", text(&posted));
    assert_eq!(posted.served_by.as_deref(), Some("ui-0"));

    let page = servers.ui.get("/").await.unwrap();
    let html = text(&page);
    assert_eq!(page.status, StatusCode::OK, "{html}");
    for part in [
        "<title>E2E &lt;results&gt;</title>",
        "id=\"results\"",
        "<tr class=\"result\" data-suite=\"e2e.smoke\" data-id=\"",
        "<td class=\"num\">1.50 s</td>",
        "<div class=\"bar\" data-suite=\"e2e.smoke\" data-pass-rate=\"66.7\" style=\"width:66.7%\">",
        "<span id=\"served-by\">ui-0</span>",
        "<span id=\"api-served-by\">api-0</span>",
        "<form id=\"post-result\" method=\"post\" action=\"/results\">",
    ] {
        assert!(html.contains(part), "{part} missing from {html}");
    }
    let fragment = text(&servers.ui.get("/fragment").await.unwrap());
    assert!(fragment.contains("data-suite=\"e2e.smoke\""), "{fragment}");
    assert!(!fragment.contains("<form"), "{fragment}");

    let summary = servers.api.get("/summary").await.unwrap();
    assert_eq!(summary.served_by.as_deref(), Some("api-0"));
    let summary: Vec<Summary> = serde_json::from_slice(&summary.body).unwrap();
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0].suite, "e2e.smoke");
    assert_eq!(
        (summary[0].runs, summary[0].passed, summary[0].failed),
        (1, 2, 1)
    );
    assert!((summary[0].pass_rate - 200.0 / 3.0).abs() < 1e-9);
    servers.stop().await;
}

#[tokio::test]
async fn the_ui_shows_the_apis_refusal_escaped_with_400() {
    let servers = Servers::start(None).await;
    let form = "suite=%3Cscript%3Ealert(1)%3C%2Fscript%3E&passed=1&failed=0&duration_seconds=1";
    let refused = send(&servers.ui, Method::POST, "/results", FORM, form).await;
    let html = text(&refused);
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{html}");
    assert!(
        html.contains(
            "<p id=\"error\" role=\"alert\">suite: must be 1-63 characters of a-z, 0-9, &#39;-&#39;"
        ),
        "{html}"
    );
    // The form keeps what was typed, escaped.
    assert!(
        html.contains("value=\"&lt;script&gt;alert(1)&lt;/script&gt;\""),
        "{html}"
    );
    assert!(!html.contains("<script>alert"), "{html}");

    let form = "suite=unit&passed=many&failed=0&duration_seconds=1";
    let refused = send(&servers.ui, Method::POST, "/results", FORM, form).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(text(&refused).contains("passed: must be a whole number"));
    servers.stop().await;
}

#[tokio::test]
async fn the_ui_answers_502_naming_the_api_when_it_is_away() {
    // A port that was free a moment ago: connections are refused at once.
    let (listener, gone) = listen().await;
    drop(listener);
    let url = format!("http://{gone}");
    let servers = Servers::start(Some(&url)).await;
    let page = servers.ui.get("/").await.unwrap();
    let html = text(&page);
    assert_eq!(page.status, StatusCode::BAD_GATEWAY, "{html}");
    assert!(
        html.contains(&format!(
            "<p id=\"error\" role=\"alert\">cannot reach the results API at {url}"
        )),
        "{html}"
    );
    let form = "suite=unit&passed=1&failed=0&duration_seconds=1";
    let posted = send(&servers.ui, Method::POST, "/results", FORM, form).await;
    assert_eq!(posted.status, StatusCode::BAD_GATEWAY);
    assert!(text(&posted).contains("id=\"error\""));
    let ready = servers.ui.get("/readyz").await.unwrap();
    assert_eq!(
        ready.status,
        StatusCode::OK,
        "the UI is ready without the API"
    );
    servers.stop().await;
}

#[tokio::test]
async fn the_api_lists_newest_first_and_refuses_bad_input_by_field() {
    let servers = Servers::start(None).await;
    let api = &servers.api;
    for (suite, time) in [
        ("unit", "2026-01-01T00:00:02Z"),
        ("e2e", "2026-01-01T00:00:03Z"),
        ("unit", "2026-01-01T00:00:01Z"),
    ] {
        let body = format!(
            r#"{{"suite":"{suite}","passed":1,"failed":0,"duration_seconds":1,"time":"{time}"}}"#
        );
        let created = send(api, Method::POST, "/results", "application/json", &body).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", text(&created));
        assert_eq!(json(&created)["time"], time.replace("Z", ".000Z"));
        assert!(
            json(&created)["id"]
                .as_str()
                .is_some_and(|id| !id.is_empty())
        );
    }
    let times = |value: Value| -> Vec<String> {
        let records = value.as_array().cloned().unwrap_or_default();
        records
            .iter()
            .map(|r| r["time"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let all = json(&api.get("/results").await.unwrap());
    assert_eq!(
        times(all),
        [
            "2026-01-01T00:00:03.000Z",
            "2026-01-01T00:00:02.000Z",
            "2026-01-01T00:00:01.000Z",
        ]
    );
    let unit = json(&api.get("/results?suite=unit&limit=1").await.unwrap());
    assert_eq!(times(unit), ["2026-01-01T00:00:02.000Z"]);

    let bad = send(
        api,
        Method::POST,
        "/results",
        "application/json",
        r#"{"suite":"u","passed":1,"failed":0,"duration_seconds":-2}"#,
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        json(&bad)["error"],
        "duration_seconds: must be a number of seconds, finite and not negative"
    );
    let limit = api.get("/results?limit=1001").await.unwrap();
    assert_eq!(limit.status, StatusCode::BAD_REQUEST);
    assert!(
        json(&limit)["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("limit: ")
    );

    let huge = format!(r#"{{"suite":"{}"}}"#, "a".repeat(64 * 1024));
    let too_large = send(api, Method::POST, "/results", "application/json", &huge).await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);

    let missing = api.get("/nope").await.unwrap();
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.served_by.as_deref(), Some("api-0"));
    let wrong = send(api, Method::DELETE, "/results", "application/json", "").await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(api.get("/healthz").await.unwrap().status, StatusCode::OK);
    assert_eq!(api.get("/readyz").await.unwrap().status, StatusCode::OK);
    servers.stop().await;
}

#[tokio::test]
async fn the_api_is_not_ready_without_its_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (listener, addr) = listen().await;
    let shutdown = CancellationToken::new();
    let config = api::Config {
        data: dir.path().join("missing"),
        pod: "api-0".into(),
    };
    let server = tokio::spawn(api::serve(listener, config, shutdown.clone()));
    let api = client(addr);
    let ready = api.get("/readyz").await.unwrap();
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        text(&ready).contains("missing/results.jsonl"),
        "{}",
        text(&ready)
    );
    assert_eq!(api.get("/healthz").await.unwrap().status, StatusCode::OK);
    std::fs::create_dir(dir.path().join("missing")).unwrap();
    assert_eq!(api.get("/readyz").await.unwrap().status, StatusCode::OK);
    shutdown.cancel();
    server.await.unwrap().unwrap();
}
