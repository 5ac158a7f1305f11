//! Runs the real `moorctl` binary against an in-process apiserver, with
//! `$MOOR_CONFIG` in a temp dir, and compares tables with golden files.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;

use moor_integration_tests::Apiserver;
use tokio::io::AsyncWriteExt;

/// An apiserver and a private config dir.
pub struct Cluster {
    pub api: Apiserver,
    pub dir: tempfile::TempDir,
    pub server: String,
}

/// What a moorctl run printed.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Cluster {
    pub async fn start() -> Self {
        let api = Apiserver::start().await.expect("apiserver starts");
        let server = format!("http://{}", api.addr);
        let dir = tempfile::tempdir().expect("temp dir");
        Self { api, dir, server }
    }

    /// The config file the runs use.
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    /// A moorctl command with $MOOR_SERVER set to this cluster.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = self.bare(args);
        cmd.env("MOOR_SERVER", &self.server);
        cmd
    }

    /// A moorctl command with only $MOOR_CONFIG set.
    pub fn bare(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_moorctl"));
        cmd.args(args)
            .env("MOOR_CONFIG", self.config())
            .env_remove("MOOR_SERVER")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    pub async fn run(&self, args: &[&str]) -> Out {
        output(self.command(args)).await
    }

    /// Runs and expects success.
    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert_eq!(out.code, 0, "moorctl {args:?} failed: {out:?}");
        out.stdout
    }

    /// Runs and expects failure with exit code 1 and one line on stderr.
    pub async fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert_eq!(out.code, 1, "moorctl {args:?} should fail: {out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "one line: {out:?}");
        out.stderr.trim_end().to_string()
    }

    /// Runs with `input` on stdin.
    pub async fn run_stdin(&self, args: &[&str], input: &str) -> Out {
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("moorctl starts");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(input.as_bytes())
            .await
            .expect("write stdin");
        drop(stdin);
        let out = child.wait_with_output().await.expect("moorctl runs");
        convert(out)
    }

    /// Writes a manifest into the temp dir.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, text).expect("write manifest");
        path
    }

    /// Applies a manifest given as text.
    pub async fn apply(&self, name: &str, text: &str) -> String {
        let path = self.write(name, text);
        self.ok(&["apply", "-f", path_str(&path)]).await
    }
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

impl Cluster {
    /// Runs moorctl with a terminal for stdin, stdout and stderr (through
    /// util-linux's `script`), as a user at a shell would; what the
    /// terminal showed, stdout and stderr together, is in `stdout`.
    pub async fn on_terminal(&self, args: &[&str]) -> Out {
        let quoted: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_moorctl"))
            .chain(args.iter().copied())
            .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
            .collect();
        let mut cmd = tokio::process::Command::new("script");
        cmd.args([
            "--quiet",
            "--return",
            "--command",
            &quoted.join(" "),
            "/dev/null",
        ])
        .env("MOOR_CONFIG", self.config())
        .env("MOOR_SERVER", &self.server)
        .stdin(Stdio::null())
        .kill_on_drop(true);
        output(cmd).await
    }
}

pub async fn output(mut cmd: tokio::process::Command) -> Out {
    convert(cmd.output().await.expect("moorctl runs"))
}

fn convert(out: std::process::Output) -> Out {
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A pod manifest.
pub fn pod(name: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\nspec:\n  containers:\n  - name: app\n    image: nginx:1.14.2\n"
    )
}

/// Where each column of a header line starts.
fn column_starts(line: &str) -> Vec<usize> {
    let bytes = line.as_bytes();
    (0..bytes.len())
        .filter(|&i| bytes[i] != b' ' && (i == 0 || (i >= 3 && &line[i - 3..i] == "   ")))
        .collect()
}

/// Whether every row's cells start where the headers start.
pub fn assert_aligned(table: &str) {
    let mut lines = table.lines();
    let header = lines.next().expect("a header");
    let starts = column_starts;
    let want = starts(header);
    for line in lines.filter(|l| !l.is_empty()) {
        let got = starts(line);
        assert!(
            want.iter().all(|s| got.contains(s)),
            "row not aligned with header:\n{table}"
        );
    }
}

/// A table with generated values masked (ages, cluster IPs, node ports)
/// and aligned again, for golden files.
pub fn mask(table: &str) -> String {
    let mut out = String::new();
    for (i, block) in table.split("\n\n").enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let starts = column_starts(block.lines().next().unwrap_or_default());
        let rows: Vec<Vec<String>> = block
            .lines()
            .map(|line| {
                starts
                    .iter()
                    .enumerate()
                    .map(|(i, &start)| {
                        let end = starts
                            .get(i + 1)
                            .copied()
                            .unwrap_or(line.len())
                            .min(line.len());
                        mask_cell(line.get(start.min(end)..end).unwrap_or_default().trim())
                    })
                    .collect()
            })
            .collect();
        let mut widths = Vec::new();
        for row in &rows {
            for (i, cell) in row.iter().enumerate() {
                if widths.len() <= i {
                    widths.push(0);
                }
                widths[i] = widths[i].max(cell.len());
            }
        }
        for row in rows {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if i + 1 < row.len() {
                        format!("{c:<w$}", w = widths[i])
                    } else {
                        c.clone()
                    }
                })
                .collect();
            out.push_str(&cells.join("   "));
            out.push('\n');
        }
    }
    out
}

fn mask_cell(cell: &str) -> String {
    let is_age = !cell.is_empty()
        && cell.chars().next().is_some_and(|c| c.is_ascii_digit())
        && cell
            .chars()
            .all(|c| c.is_ascii_digit() || "smhdy".contains(c))
        && cell.chars().last().is_some_and(|c| "smhdy".contains(c));
    if is_age {
        return "<age>".to_string();
    }
    if cell.starts_with("10.") && cell.split('.').count() == 4 {
        return "<ip>".to_string();
    }
    cell.split(',')
        .map(|p| match p.split_once(':') {
            Some((port, rest)) if rest.starts_with('3') && rest.contains('/') => {
                let proto = rest.split_once('/').map(|(_, p)| p).unwrap_or("");
                format!("{port}:<nodeport>/{proto}")
            }
            _ => p.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Compares with cli/tests/golden/NAME.txt; MOOR_UPDATE_GOLDEN=1 rewrites it.
pub fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.txt"));
    let masked = mask(actual);
    if std::env::var_os("MOOR_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &masked).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing {}: run with MOOR_UPDATE_GOLDEN=1", path.display()));
    assert_eq!(masked, want, "golden {name} differs; raw output:\n{actual}");
}
