//! The `moorctl` binary against a whole cluster on Docker
//! (`moor_integration_tests::Cluster`), with a config dir of its own.

#![allow(dead_code)]

use std::process::Stdio;
use std::time::Duration;

use moor_integration_tests::Cluster;
use tokio::io::AsyncWriteExt;

/// Bound for one moorctl run: a guard against hangs, not a timing assertion.
const RUN_PATIENCE: Duration = Duration::from_secs(120);

/// What a moorctl run printed.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// What a finished process printed.
    pub fn of(out: std::process::Output) -> Self {
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// moorctl against the cluster, with a config dir of its own.
pub struct Moorctl {
    pub server: String,
    pub dir: tempfile::TempDir,
}

impl Moorctl {
    pub fn new(cluster: &Cluster) -> Self {
        Self {
            server: cluster.url.clone(),
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_moorctl"));
        cmd.args(args)
            .env("MOOR_SERVER", &self.server)
            .env("MOOR_CONFIG", self.dir.path().join("config"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Runs with `input` on stdin (None: /dev/null).
    pub async fn run_with(&self, args: &[&str], input: Option<&str>) -> Out {
        let mut cmd = self.command(args);
        if input.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().expect("moorctl starts");
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(input.as_bytes()).await.expect("stdin");
        }
        let out = tokio::time::timeout(RUN_PATIENCE, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("moorctl {args:?} did not end within {RUN_PATIENCE:?}"))
            .expect("moorctl runs");
        Out::of(out)
    }

    pub async fn run(&self, args: &[&str]) -> Out {
        self.run_with(args, None).await
    }

    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert_eq!(out.code, 0, "moorctl {args:?} failed: {out:?}");
        out.stdout
    }

    pub async fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert_eq!(out.code, 1, "moorctl {args:?} should fail: {out:?}");
        out.stderr.trim_end().to_string()
    }

    /// Writes a file in the config dir; its path.
    pub fn write(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write manifest");
        path.to_str().expect("utf-8 path").to_string()
    }

    pub async fn apply(&self, name: &str, text: &str) {
        let path = self.write(name, text);
        self.ok(&["apply", "-f", &path]).await;
    }
}
