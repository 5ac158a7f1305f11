//! Free loopback ports.

use std::net::{Ipv4Addr, TcpListener};

/// A loopback TCP port that was free a moment ago: bound on `127.0.0.1:0`,
/// then released. Another process may take it before the caller does, so a
/// caller that binds it later must be ready to retry with a new one.
///
/// # Panics
///
/// If the loopback interface cannot be bound at all: no test could run.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|e| panic!("cannot bind a loopback port: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_is_nonzero_and_bindable() {
        let port = free_port();
        assert_ne!(port, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("port is free");
    }
}
