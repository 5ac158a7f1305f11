//! `exec`: runs a command in a container over one bidirectional stream:
//! the start, then stdin and terminal resizes up; stdout, stderr and at the
//! end the exit code down. moorctl exits with the command's code.

use std::io::{Read, Write};

use futures::stream;
use moor_api::core::v1::{PodExecRequest, PodExecResponse, PodExecStart};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::args::ExecArgs;
use crate::cmd::{Ctx, pods};
use crate::error::{Error, Result};
use crate::rpc::Client;
use crate::term::{self, RawMode};

/// kubectl's warning when -t is asked without a terminal on stdin.
const NO_TTY: &str = "Unable to use a TTY - input is not a terminal or the right kind of file";

/// Messages queued for the server before the sender waits.
const QUEUE: usize = 16;

/// Stdin is read in pieces of at most this many bytes.
const STDIN_CHUNK: usize = 8192;

/// Runs `exec`.
pub async fn run(ctx: &Ctx, args: ExecArgs) -> Result<()> {
    let (target, command) = command(&args)?;
    let (tty, warning) = use_tty(args.tty, args.stdin, term::stdin_is_terminal());
    if let (Some(warning), false) = (warning, args.quiet) {
        eprintln!("{warning}");
    }
    let client = ctx.client()?;
    let namespace = ctx.namespace();
    let name = pods::pod_of(&client, &namespace, &target).await?;
    let start = PodExecStart {
        namespace,
        name,
        container: args.container.clone().unwrap_or_default(),
        command,
        stdin: args.stdin,
        tty,
        size: if tty { term::size() } else { None },
    };
    let (tx, rx) = mpsc::channel(QUEUE);
    let first = PodExecRequest {
        start: Some(start),
        ..Default::default()
    };
    // The channel is new and has room.
    let _ = tx.try_send(first);
    // Restored when `run` returns, before main prints an error.
    let _raw = if tty { Some(RawMode::enter()?) } else { None };
    let mut tasks = JoinSet::new();
    if tty {
        tasks.spawn(resizes(tx.clone()));
    }
    if args.stdin {
        copy_stdin(tx.clone());
    }
    let code = relay(&client, rx).await;
    // Only now: while `tx` lives the request stream stays open, so the
    // server never takes the end of our messages for a hang-up.
    drop(tx);
    tasks.abort_all();
    outcome(code?)
}

/// The pod and the command, or kubectl's message for what is missing.
fn command(args: &ExecArgs) -> Result<(String, Vec<String>)> {
    let Some(pod) = &args.pod else {
        return Err(Error::Usage(
            "expected 'exec POD -- COMMAND [ARG1] [ARG2] ... [ARGN]': POD or TYPE/NAME is a \
             required argument for the exec command"
                .to_string(),
        ));
    };
    if !args.before_dash.is_empty() {
        return Err(Error::Usage(
            "exec [POD] [COMMAND] is not supported anymore. Use exec [POD] -- [COMMAND] instead"
                .to_string(),
        ));
    }
    if args.command.is_empty() {
        return Err(Error::Usage(
            "you must specify at least one command for the container".to_string(),
        ));
    }
    Ok((pod.clone(), args.command.clone()))
}

/// Whether the command gets a terminal, and the warning to print if -t
/// cannot be honoured. As kubectl: -t without -i is quietly dropped; -t with
/// -i but no terminal on stdin is dropped with a warning.
fn use_tty(tty: bool, stdin: bool, is_terminal: bool) -> (bool, Option<&'static str>) {
    match (tty, stdin, is_terminal) {
        (true, true, true) => (true, None),
        (true, true, false) => (false, Some(NO_TTY)),
        _ => (false, None),
    }
}

/// What the command's exit code makes of moorctl's run.
fn outcome(code: Option<i32>) -> Result<()> {
    match code {
        Some(0) => Ok(()),
        Some(code) => Err(Error::Exited(code)),
        None => Err(Error::NoExitCode),
    }
}

/// Opens the stream with the queued messages and copies the output to
/// stdout and stderr until it ends; returns the exit code if one came.
async fn relay(client: &Client, rx: mpsc::Receiver<PodExecRequest>) -> Result<Option<i32>> {
    let requests = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let mut responses = client
        .pods()
        .exec(requests)
        .await
        .map_err(|s| client.status(s))?
        .into_inner();
    let mut code = None;
    while let Some(response) = responses.message().await.map_err(|s| client.status(s))? {
        code = response.exit_code.or(code);
        write(&response)?;
    }
    Ok(code)
}

/// Writes a response's output, at once.
fn write(response: &PodExecResponse) -> Result<()> {
    if !response.stdout.is_empty() {
        let mut out = std::io::stdout().lock();
        out.write_all(&response.stdout)?;
        out.flush()?;
    }
    if !response.stderr.is_empty() {
        let mut err = std::io::stderr().lock();
        err.write_all(&response.stderr)?;
        err.flush()?;
    }
    Ok(())
}

/// Copies stdin to the stream, then says it closed. A detached thread, not
/// tokio's stdin: a blocking read cannot be cancelled, and the runtime would
/// wait for it at exit, after the command ended; a plain thread simply dies
/// with the process.
fn copy_stdin(tx: mpsc::Sender<PodExecRequest>) {
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0; STDIN_CHUNK];
        loop {
            let message = match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => PodExecRequest {
                    stdin: buf[..n].to_vec(),
                    ..Default::default()
                },
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            if tx.blocking_send(message).is_err() {
                return;
            }
        }
        let _ = tx.blocking_send(PodExecRequest {
            stdin_closed: true,
            ..Default::default()
        });
    });
}

/// Sends the terminal's new size on every SIGWINCH.
async fn resizes(tx: mpsc::Sender<PodExecRequest>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut winch) = signal(SignalKind::window_change()) else {
        return;
    };
    while winch.recv().await.is_some() {
        let Some(size) = term::size() else { continue };
        let message = PodExecRequest {
            resize: Some(size),
            ..Default::default()
        };
        if tx.send(message).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command};

    fn exec(args: &[&str]) -> std::result::Result<ExecArgs, clap::Error> {
        let cli = Cli::try_parse_from([&["moorctl", "exec"], args].concat())?;
        match cli.command {
            Command::Exec(args) => Ok(args),
            other => panic!("not exec: {other:?}"),
        }
    }

    #[test]
    fn the_command_follows_the_dash() {
        let args = exec(&["-it", "web", "-c", "app", "--", "/echo", "exit", "-3"]).unwrap();
        assert!(args.stdin && args.tty);
        assert_eq!(args.container.as_deref(), Some("app"));
        let (pod, cmd) = command(&args).unwrap();
        assert_eq!(pod, "web");
        assert_eq!(cmd, ["/echo", "exit", "-3"]);
        let args = exec(&["pod/web", "--", "ls", "--all"]).unwrap();
        assert_eq!(command(&args).unwrap().1, ["ls", "--all"]);
    }

    #[test]
    fn argument_errors_read_like_kubectl() {
        let err = |args: &[&str]| command(&exec(args).unwrap()).unwrap_err().to_string();
        assert!(err(&["web", "ls"]).contains("Use exec [POD] -- [COMMAND] instead"));
        assert_eq!(
            err(&["web"]),
            "you must specify at least one command for the container"
        );
        assert_eq!(
            err(&["web", "--"]),
            "you must specify at least one command for the container"
        );
        assert!(err(&[]).contains("POD or TYPE/NAME is a required argument"));
    }

    #[test]
    fn tty_needs_stdin_and_a_terminal() {
        assert_eq!(use_tty(true, true, true), (true, None));
        assert_eq!(use_tty(true, true, false), (false, Some(NO_TTY)));
        assert_eq!(use_tty(true, false, true), (false, None));
        assert_eq!(use_tty(false, true, true), (false, None));
    }

    #[test]
    fn the_exit_code_decides() {
        assert!(outcome(Some(0)).is_ok());
        assert!(matches!(outcome(Some(3)), Err(Error::Exited(3))));
        assert!(matches!(outcome(None), Err(Error::NoExitCode)));
    }
}
