//! The browser driver on its own: headless Chromium loads a page served
//! here, a script fills in and submits its form, the page that answers the
//! post shows what was sent, and a screenshot is a PNG.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::time::Duration;

use moor_integration_tests::browser::Browser;
use moor_testkit::assert_eventually;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const FORM: &str = "<!doctype html><title>form</title>\
    <form id=f method=post action=/sent><input name=word><button>send</button></form>";

/// Serves FORM on GET and echoes a posted body in `<p id=sent>`.
async fn serve(listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            let mut stream = BufReader::new(stream);
            let mut request = String::new();
            stream.read_line(&mut request).await.unwrap();
            let mut length = 0;
            loop {
                let mut line = String::new();
                stream.read_line(&mut line).await.unwrap();
                if line.trim_end().is_empty() {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            stream.read_exact(&mut body).await.unwrap();
            let page = if request.starts_with("POST") {
                format!("<p id=sent>{}</p>", String::from_utf8_lossy(&body))
            } else {
                FORM.to_string()
            };
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = stream.get_mut().write_all(response.as_bytes()).await;
        });
    }
}

#[tokio::test]
async fn chromium_submits_a_form_and_takes_a_screenshot() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener));
    let browser = Browser::start().await.unwrap();
    browser.navigate(&format!("http://{addr}/")).await.unwrap();
    assert_eventually!(
        browser
            .evaluate("document.readyState === 'complete' && !!document.querySelector('#f')")
            .await
            .ok()
            == Some(Value::Bool(true)),
        Duration::from_secs(30),
        "the form is shown"
    );
    browser
        .evaluate("(() => { const f = document.querySelector('#f'); f.elements['word'].value = 'a b+c'; f.requestSubmit(); return true; })()")
        .await
        .unwrap();
    assert_eventually!(
        browser
            .evaluate("document.querySelector('#sent')?.textContent ?? ''")
            .await
            .ok()
            == Some(Value::String("word=a+b%2Bc".to_string())),
        Duration::from_secs(30),
        "the browser posts the form, encoded"
    );
    let shot = tempfile::tempdir().unwrap();
    let path = shot.path().join("page.png");
    browser.screenshot(&path).await.unwrap();
    let png = std::fs::read(&path).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
}
