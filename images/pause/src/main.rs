//! `pause`: the process of every pod sandbox. It holds the pod's network and
//! IPC namespaces and does nothing else; as PID 1 it must handle SIGTERM and
//! SIGINT itself (the kernel ignores unhandled signals for PID 1), so that
//! stopping a sandbox is quick instead of waiting for the SIGKILL.

use tokio::signal::unix::{SignalKind, signal};

fn main() -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok(())
    })
}
