//! `moor` as an operator runs it: log lines with no colour codes when
//! written to a file or pipe, one JSON object per line with
//! `--log-format json`, and simulated nodes without a data directory.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// The first `lines` lines `moor apiserver` prints to a pipe with `flags`.
fn first_lines(flags: &[&str], lines: usize) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", moor_testkit::free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_moor"))
        .args(["apiserver", "--listen", &listen, "--log", "info"])
        .args(flags)
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let read: Vec<String> = out.lines().take(lines).map(Result::unwrap).collect();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(read.len(), lines, "moor apiserver logged {read:?}");
    read
}

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let lines = first_lines(&[], 2);
    for line in &lines {
        assert!(!line.contains('\u{1b}'), "an escape code in {line:?}");
        assert!(line.contains("INFO"), "a level in {line:?}");
    }
}

#[test]
fn json_logs_are_one_object_per_line() {
    let lines = first_lines(&["--log-format", "json"], 2);
    for line in &lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|err| panic!("{line:?}: {err}"));
        assert_eq!(value["level"], "INFO", "{line}");
        assert!(value["timestamp"].is_string(), "{line}");
        assert!(value["fields"]["message"].is_string(), "{line}");
    }
}

/// `moor node --runtime fake --count N`, as the README runs it: no
/// `--data-dir` needed (it defaults under $HOME), and the nodes register.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_nodes_need_no_data_dir() {
    let home = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", moor_testkit::free_port());
    let url = format!("http://{listen}");
    let spawn = |args: &[&str]| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_moor"))
            .args(args)
            .env("HOME", home.path())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let store_dir = store.path().to_str().unwrap().to_string();
    let _apiserver = spawn(&[
        "apiserver",
        "--insecure",
        "--listen",
        &listen,
        "--data-dir",
        &store_dir,
    ]);
    let client = moor_client::Client::new(&url).unwrap();
    client
        .wait_ready(std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let mut nodes = spawn(&[
        "node",
        "--server",
        &url,
        "--runtime",
        "fake",
        "--count",
        "3",
        "--name",
        "hollow",
    ]);
    let api = client.api::<moor_api::core::v1::Node>();
    moor_testkit::assert_eventually!(
        api.list(&Default::default())
            .await
            .is_ok_and(|(nodes, _)| nodes.len() == 3),
        std::time::Duration::from_secs(30),
        "3 simulated nodes registered (moor node exited: {:?})",
        nodes.try_wait()
    );
    assert!(
        home.path().join(".moor/nodes/hollow").is_dir(),
        "the data directory defaults under $HOME"
    );
}
