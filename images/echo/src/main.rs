//! `echo`: a tiny static HTTP server and test helper, packed as `moor/echo:0.1`.
//!
//! Modes (the first argument):
//! - `serve [--port N] [--trap-sigterm FILE]`: answers every HTTP request with
//!   `pod=$POD_NAME ip=$POD_IP`. With `--trap-sigterm` it appends `SIGTERM` to
//!   FILE on SIGTERM and keeps serving (to test grace periods); otherwise it
//!   exits 0 on SIGTERM or SIGINT.
//! - `get URL [--expect TEXT] [--retry-seconds N]`: exits 0 when the URL answers
//!   200 (with TEXT in the body), retrying for N seconds; usable as a probe.
//! - `write PATH TEXT`: writes TEXT to PATH.
//! - `wait-file PATH TEXT [--seconds N]`: exits 0 once PATH holds TEXT.
//! - `exit CODE`: exits with CODE at once.

use std::process::ExitCode;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("echo: cannot start: {err}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(dispatch(&args)) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("echo: {err}");
            ExitCode::from(1)
        }
    }
}

async fn dispatch(args: &[String]) -> std::io::Result<u8> {
    let mode = args.first().map(String::as_str).unwrap_or("serve");
    let rest = args.get(1..).unwrap_or_default();
    match mode {
        "serve" => serve(rest).await,
        "get" => get(rest).await,
        "write" => {
            let (path, text) = two(rest)?;
            tokio::fs::write(path, text).await?;
            println!("wrote {path}");
            Ok(0)
        }
        "wait-file" => wait_file(rest).await,
        "exit" => Ok(rest.first().and_then(|c| c.parse().ok()).unwrap_or(1)),
        other => Err(invalid(format!("unknown mode {other:?}"))),
    }
}

async fn serve(args: &[String]) -> std::io::Result<u8> {
    let port: u16 = flag(args, "--port").map_or(Ok(8080), |p| p.parse().map_err(invalid))?;
    let trap = flag(args, "--trap-sigterm").map(str::to_owned);
    let listener = TcpListener::bind(("0.0.0.0", port)).await?;
    println!("serving on :{port}");
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    tokio::spawn(answer(stream));
                }
            }
            _ = term.recv() => match &trap {
                Some(path) => {
                    println!("got SIGTERM; ignoring it");
                    let mut file = tokio::fs::OpenOptions::new().create(true).append(true).open(path).await?;
                    file.write_all(b"SIGTERM\n").await?;
                    file.sync_all().await?;
                }
                None => return Ok(0),
            },
            _ = int.recv() => return Ok(0),
        }
    }
}

async fn answer(mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = [0u8; 4096];
    let _ = stream.read(&mut buf).await?;
    let pod = std::env::var("POD_NAME").unwrap_or_default();
    let ip = std::env::var("POD_IP").unwrap_or_default();
    let body = format!("pod={pod} ip={ip}\n");
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

async fn get(args: &[String]) -> std::io::Result<u8> {
    let url = args.first().ok_or_else(|| invalid("get needs a URL"))?;
    let expect = flag(args, "--expect").unwrap_or_default();
    let seconds: u64 =
        flag(args, "--retry-seconds").map_or(Ok(0), |s| s.parse().map_err(invalid))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        match fetch(url).await {
            Ok((200, body)) if body.contains(expect) => {
                print!("{body}");
                return Ok(0);
            }
            Ok((status, body)) => eprintln!("{url}: status {status}: {body}"),
            Err(err) => eprintln!("{url}: {err}"),
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(1);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A minimal HTTP/1.1 GET of `http://HOST:PORT/PATH`: status and body.
async fn fetch(url: &str) -> std::io::Result<(u16, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| invalid("only http:// URLs"))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut stream = TcpStream::connect(authority).await?;
    let request = format!("GET /{path} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("malformed response"))?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_owned()))
}

async fn wait_file(args: &[String]) -> std::io::Result<u8> {
    let (path, text) = two(args)?;
    let seconds: u64 = flag(args, "--seconds").map_or(Ok(30), |s| s.parse().map_err(invalid))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        if tokio::fs::read_to_string(path)
            .await
            .is_ok_and(|c| c.contains(text))
        {
            println!("{path} holds {text:?}");
            return Ok(0);
        }
        if tokio::time::Instant::now() >= deadline {
            eprintln!("{path} did not hold {text:?} within {seconds}s");
            return Ok(1);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1).map(String::as_str)
}

fn two(args: &[String]) -> std::io::Result<(&str, &str)> {
    match args {
        [a, b, ..] => Ok((a, b)),
        _ => Err(invalid("needs PATH and TEXT")),
    }
}

fn invalid(message: impl ToString) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, message.to_string())
}
