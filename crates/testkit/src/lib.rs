//! Helpers shared by moor's tests: a throwaway etcd server, the
//! `assert_eventually!` macro, free loopback ports, a one-shot HTTP GET and
//! tracing setup.
//!
//! A dev-dependency only; nothing here is meant for production code.

mod etcd;
mod etcd_cluster;
mod eventually;
mod lab;
mod net;
mod trace;

pub use etcd::{EtcdServer, EtcdTlsFiles};
pub use etcd_cluster::EtcdCluster;
pub use eventually::{POLL_INTERVAL, eventually};
pub use lab::{Lab, LabHost};
pub use net::{free_port, http_get};
pub use trace::init_tracing;

/// What `assert_eventually!` expands to needs, so callers need not depend on
/// tokio's `time` feature themselves.
#[doc(hidden)]
pub mod __private {
    pub use tokio::time::{Instant, sleep};
}
