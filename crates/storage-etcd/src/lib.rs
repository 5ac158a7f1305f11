//! The etcd moor storage backend: a [`Store`](moor_storage::Store) on an
//! etcd v3 cluster, for control planes that need high availability.
//!
//! etcd's model is the `Store` model (one global revision, compare-and-swap
//! on `mod_revision`, watches from a revision), so each call is one etcd
//! request: writes are transactions, watches are etcd watches.

mod convert;
mod error;
mod members;
mod store;
mod watch;

pub use error::Error;
pub use members::{Member, Members};
pub use moor_failover::Start;
pub use store::{EtcdStore, EtcdTls};
