//! A client in another language, as the README runs it: Python stubs
//! generated with grpcio-tools from proto/ talk to `moor up` over TLS with a
//! token from `moor token create --user`, create a pod, list it, watch it
//! change and delete it (the scheduler and the node agent change the pod
//! too), twice in a row as a user would. A token for no one is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn moor(home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_moor"))
        .args(args)
        .env("HOME", home)
        .env_remove("MOOR_CONFIG")
        .output()
        .expect("moor runs")
}

/// Stops `moor up` and removes its node's containers, on failure too.
struct Up(std::process::Child, String);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        moor_integration_tests::remove_docker_leftovers(&self.1, "moor-py-unused-network");
        moor_integration_tests::remove_pod_network_leftovers();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_with_a_token_creates_lists_and_watches_a_pod() {
    let probe = Command::new("python3")
        .args(["-c", "import grpc, grpc_tools"])
        .status();
    assert!(
        probe.is_ok_and(|s| s.success()),
        "python3 with grpcio and grpcio-tools is needed: python3 -m pip install grpcio grpcio-tools (scripts/setup.sh does it)"
    );
    let home = tempfile::tempdir().unwrap();
    let port = moor_testkit::free_port();
    let node = format!("py-{}", std::process::id());
    let child = Command::new(env!("CARGO_BIN_EXE_moor"))
        .args([
            "up",
            "--no-registry",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--node-name",
            &node,
            "--log",
            "warn",
        ])
        .env("HOME", home.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("moor up starts");
    let _up = Up(child, node);
    let generated = tempfile::tempdir().unwrap();
    let python = repo_root().join("clients/python");
    let status = Command::new(python.join("generate.sh"))
        .arg(generated.path())
        .status()
        .unwrap();
    assert!(status.success(), "generating the Python stubs failed");

    // The token: once `moor up` has written its context and answers.
    let mut token;
    let mut last_error;
    moor_testkit::assert_eventually!(
        {
            let out = moor(
                home.path(),
                &[
                    "token",
                    "create",
                    "--user",
                    "py-script",
                    "--group",
                    "system:masters",
                    "--ttl",
                    "1h",
                ],
            );
            token = String::from_utf8_lossy(&out.stdout).trim().to_string();
            last_error = String::from_utf8_lossy(&out.stderr).into_owned();
            out.status.success()
        },
        Duration::from_secs(60),
        "moor token create never worked: {last_error}"
    );
    let ca = home.path().join(".moor/data/pki/ca.crt");
    let example = |token: &str| {
        Command::new("python3")
            .arg(python.join("example.py"))
            .args([
                "--server",
                &format!("127.0.0.1:{port}"),
                "--name",
                "py-demo",
            ])
            .arg("--ca")
            .arg(&ca)
            .args(["--token", token])
            .env("PYTHONPATH", generated.path())
            .output()
            .unwrap()
    };
    for run in 1..=2 {
        let output = example(&token);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "example.py, run {run}, failed:\n{stdout}\n{stderr}"
        );
        assert!(stdout.contains("created pod/py-demo"), "{stdout}");
        assert!(stdout.contains("listed 1 pod(s)"), "{stdout}");
        assert!(
            stdout.contains("watched MODIFIED pod/py-demo tier=frontend"),
            "{stdout}"
        );
        assert!(stdout.contains("deleted pod/py-demo"), "{stdout}");
    }
    // A component takes the same token (and the context's CA) on its command line.
    let fake = format!("py-token-node-{}", std::process::id());
    let mut node = Command::new(env!("CARGO_BIN_EXE_moor"))
        .args([
            "node",
            "--runtime",
            "fake",
            "--name",
            &fake,
            "--token",
            &token,
        ])
        .env("HOME", home.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("moor node starts");
    let listed = || {
        Command::new(PathBuf::from(env!("CARGO_BIN_EXE_moor")).with_file_name("moorctl"))
            .args(["get", "node", &fake, "-o", "name"])
            .env("HOME", home.path())
            .env_remove("MOOR_CONFIG")
            .env_remove("MOOR_SERVER")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    moor_testkit::assert_eventually!(
        listed(),
        Duration::from_secs(60),
        "the node started with --token never registered"
    );
    let _ = node.kill();
    let _ = node.wait();

    // The same token with its last character changed.
    let last = if token.ends_with('a') { 'b' } else { 'a' };
    let forged = format!("{}{last}", &token[..token.len() - 1]);
    let output = example(&forged);
    assert!(!output.status.success(), "a wrong token was let in");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("UNAUTHENTICATED"), "{stderr}");
}
