//! Tracing output for tests.

use std::sync::Once;

use tracing_subscriber::EnvFilter;

/// Sends `tracing` output to the test harness's captured output (shown for
/// failing tests), filtered by `RUST_LOG` (default `info`). Safe to call from
/// every test: only the first call in a process installs anything, and an
/// already installed global subscriber is left alone.
pub fn init_tracing() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
        // Fails only if another subscriber is already global; that one wins.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_twice_is_harmless() {
        init_tracing();
        init_tracing();
        tracing::info!(check = "init_twice_is_harmless", "tracing works");
    }
}
