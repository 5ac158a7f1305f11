//! `echo`: a tiny static HTTP server and test helper, packed as `moor/echo:0.1`.
//!
//! The binary is linked statically, so it cannot use glibc's NSS for names: every name is
//! resolved with `moor_dns::client` through `/etc/resolv.conf` (search list and `ndots`).
//!
//! Modes (the first argument):
//! - `serve [--port N] [--echo-port N] [--trap-sigterm FILE]`: answers every HTTP request on
//!   TCP port N with `pod=$POD_NAME ip=$POD_IP peer=CALLER_IP`, and every UDP datagram on the
//!   same port with `pod=$POD_NAME ip=$POD_IP peer=CALLER_IP ` followed by the datagram. With `--echo-port` it also runs a
//!   raw TCP echo server there (for benchmarks). With `--trap-sigterm` it appends `SIGTERM` to
//!   FILE on SIGTERM and keeps serving (to test grace periods); otherwise it exits 0 on SIGTERM
//!   or SIGINT.
//! - `get URL [--expect TEXT] [--retry-seconds N]`: exits 0 when the URL answers 200 (with
//!   TEXT in the body), retrying for N seconds; the host may be a DNS name; usable as a probe.
//! - `udp HOST:PORT PAYLOAD [--expect TEXT] [--retry-seconds N]`: sends PAYLOAD, prints the
//!   reply and exits 0 when it contains TEXT.
//! - `lookup NAME [--type A|SRV] [--expect TEXT] [--retry-seconds N]`: prints one line per
//!   answer (`A 10.96.0.12`, `SRV 0 100 80 web.default.svc.cluster.local.`); exits 0 when
//!   there are answers (one containing TEXT, if given), 1 on NXDOMAIN or no answers.
//! - `write PATH TEXT`: writes TEXT to PATH.
//! - `wait-file PATH TEXT [--seconds N]`: exits 0 once PATH holds TEXT.
//! - `exit CODE`: exits with CODE at once.
//! - `cat`: copies stdin to stdout until end of input (to test `exec -i`).

mod probe;
mod serve;

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

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
        "serve" => serve::serve(rest).await,
        "get" => probe::get(rest).await,
        "udp" => probe::udp(rest).await,
        "lookup" => probe::lookup(rest).await,
        "write" => {
            let (path, text) = two(rest)?;
            tokio::fs::write(path, text).await?;
            println!("wrote {path}");
            Ok(0)
        }
        "wait-file" => wait_file(rest).await,
        "exit" => Ok(rest.first().and_then(|c| c.parse().ok()).unwrap_or(1)),
        "cat" => {
            let mut stdout = tokio::io::stdout();
            tokio::io::copy(&mut tokio::io::stdin(), &mut stdout).await?;
            tokio::io::AsyncWriteExt::flush(&mut stdout).await?;
            Ok(0)
        }
        other => Err(invalid(format!("unknown mode {other:?}"))),
    }
}

async fn wait_file(args: &[String]) -> std::io::Result<u8> {
    let (path, text) = two(args)?;
    let seconds: u64 = flag(args, "--seconds").map_or(Ok(30), |s| s.parse().map_err(invalid))?;
    let found = retry(seconds, Duration::from_millis(100), || async {
        tokio::fs::read_to_string(path)
            .await
            .is_ok_and(|c| c.contains(text))
    })
    .await;
    if found {
        println!("{path} holds {text:?}");
        Ok(0)
    } else {
        eprintln!("{path} did not hold {text:?} within {seconds}s");
        Ok(1)
    }
}

/// Runs `attempt` until it succeeds or `seconds` have passed (at least once); true on success.
async fn retry<F, Fut>(seconds: u64, pause: Duration, mut attempt: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        if attempt().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(pause).await;
    }
}

/// `--retry-seconds N`, 0 by default.
fn retry_seconds(args: &[String]) -> std::io::Result<u64> {
    flag(args, "--retry-seconds").map_or(Ok(0), |s| s.parse().map_err(invalid))
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
