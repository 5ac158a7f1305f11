//! The `moorctl` binary: parses flags, runs the verb, prints an error as one
//! line on stderr with exit code 1 (for `exec`, the remote command's code).

use clap::Parser;
use moorctl::args::Cli;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(moorctl::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(moorctl::Error::Output(err)) if err.kind() == std::io::ErrorKind::BrokenPipe => {
            std::process::ExitCode::SUCCESS
        }
        Err(err @ (moorctl::Error::Server { .. } | moorctl::Error::Exited(_))) => {
            eprintln!("{err}");
            std::process::ExitCode::from(err.exit_status())
        }
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::from(err.exit_status())
        }
    }
}
