//! Programs a server runs beside itself (its etcd member, the image
//! registry): started through `setpriv --pdeathsig KILL`, so a crashed or
//! killed server leaves none behind holding ports and data; their output
//! appended to a log file of their own; restarted with a backoff when they
//! exit; stopped with SIGTERM (SIGKILL after 10 s) when the server stops.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// Longest wait before restarting a program that keeps exiting.
const RESTART_MAX: Duration = Duration::from_secs(30);
/// A program that ran this long before it exited is restarted at once.
const RAN_WELL: Duration = Duration::from_secs(60);
/// How long a program gets to stop after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// `program` under setpriv's parent-death signal, its stdout and stderr
/// appended to `log`; the caller adds the arguments and spawns it.
pub fn command(program: &str, log: &Path) -> anyhow::Result<Command> {
    let out = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("{}: cannot open", log.display()))?;
    let err = out
        .try_clone()
        .with_context(|| format!("{}: cannot duplicate", log.display()))?;
    let mut command = Command::new("setpriv");
    command
        .args(["--pdeathsig", "KILL", "--", program])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true);
    Ok(command)
}

/// Runs what `spawn` starts until `shutdown`, restarting it whenever it
/// exits (its log's last line is logged); then stops it.
pub async fn keep_running(
    what: &str,
    log: PathBuf,
    mut spawn: impl FnMut() -> anyhow::Result<Child>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut restarts = moor_client::Backoff::new(Duration::from_secs(1), RESTART_MAX);
    loop {
        let started = tokio::time::Instant::now();
        let mut child = spawn()?;
        tokio::select! {
            status = child.wait() => {
                let status = status.with_context(|| format!("waiting for {what}"))?;
                tracing::error!(
                    %status,
                    log = %log.display(),
                    last = %last_line(&log),
                    "{what} exited; restarting it"
                );
                if started.elapsed() > RAN_WELL {
                    restarts.reset();
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(restarts.failed()) => {}
                }
            }
            _ = shutdown.cancelled() => {
                stop(what, &mut child).await;
                return Ok(());
            }
        }
    }
}

/// Sends SIGTERM and waits for the program to exit (SIGKILL after
/// [`STOP_GRACE`]).
async fn stop(what: &str, child: &mut Child) {
    if let Some(pid) = child
        .id()
        .and_then(|id| rustix::process::Pid::from_raw(id as i32))
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        tracing::warn!("{what} did not stop within {STOP_GRACE:?} of SIGTERM; killing it");
        let _ = child.kill().await;
    }
}

/// The last line of a log file, for an error message.
pub fn last_line(path: &Path) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.lines().last().map(str::to_string))
        .unwrap_or_default()
}
