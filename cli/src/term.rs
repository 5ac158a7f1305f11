//! The local terminal for `exec -t`: raw mode while the remote command runs
//! (restored on drop, so also on errors and panics) and the window size.

use std::io::IsTerminal;

use moor_api::core::v1::TerminalSize;
use rustix::termios::{OptionalActions, Termios, tcgetattr, tcgetwinsize, tcsetattr};

/// Stdin in raw mode until dropped: keys go to the remote command as typed,
/// Ctrl-C included, with no local echo.
pub struct RawMode {
    saved: Termios,
}

// === impl RawMode ===

impl RawMode {
    /// Puts the terminal on stdin in raw mode.
    pub fn enter() -> std::io::Result<Self> {
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin)?;
        let mut raw = saved.clone();
        raw.make_raw();
        tcsetattr(&stdin, OptionalActions::Now, &raw)?;
        Ok(Self { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // Nothing better to do on failure: the terminal is gone or not ours.
        let _ = tcsetattr(std::io::stdin(), OptionalActions::Now, &self.saved);
    }
}

/// Whether stdin is a terminal `exec -t` can use.
pub fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// The size of the terminal on stdout (else stdin), as kubectl measures it.
pub fn size() -> Option<TerminalSize> {
    let size = if std::io::stdout().is_terminal() {
        tcgetwinsize(std::io::stdout())
    } else {
        tcgetwinsize(std::io::stdin())
    }
    .ok()?;
    (size.ws_col > 0 && size.ws_row > 0).then_some(TerminalSize {
        width: u32::from(size.ws_col),
        height: u32::from(size.ws_row),
    })
}
