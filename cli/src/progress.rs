//! The status line of a long wait (`wait`, `drain`): what is still awaited
//! and for how long, rewritten in place on stderr while stderr is a
//! terminal; nothing otherwise, so scripts and pipes see only the result.

use std::io::{IsTerminal, Write};
use tokio::time::Instant;

/// A status line, cleared when dropped.
pub struct Progress {
    enabled: bool,
    started: Instant,
    line: String,
    shown: bool,
}

// === impl Progress ===

impl Progress {
    /// A status line on stderr, if stderr is a terminal.
    pub fn on_terminal() -> Self {
        Self {
            enabled: std::io::stderr().is_terminal(),
            started: Instant::now(),
            line: String::new(),
            shown: false,
        }
    }

    /// Sets what is awaited and redraws.
    pub fn set(&mut self, line: String) {
        self.line = line;
        self.redraw();
    }

    /// Redraws the line with the time waited so far (call it every second
    /// or so to keep the clock moving).
    pub fn redraw(&mut self) {
        if !self.enabled || self.line.is_empty() {
            return;
        }
        let waited = self.started.elapsed().as_secs();
        let mut stderr = std::io::stderr().lock();
        // Carriage return and erase-line: the line is rewritten in place.
        let _ = write!(stderr, "\r\x1b[K{} ({waited}s)", self.line);
        let _ = stderr.flush();
        self.shown = true;
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.shown {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}
