//! The embedded default moor storage backend: a [`Store`](moor_storage::Store)
//! in one SQLite file, designed after k3s's kine.
//!
//! Every write appends a row to a revision log (row id = revision), so
//! history for watches comes from the same table as current values. One OS
//! thread owns the write connection; reads use separate connections (WAL
//! mode); watches replay the log and then follow the writer's broadcast.
//! Data and revisions survive a restart: revisions continue, never reused.
//! One process at a time has a store open ([`Lock`]).

mod apply;
mod error;
mod lock;
mod query;
mod readers;
mod schema;
mod store;
mod watch;
mod writer;

pub use error::Error;
pub use lock::Lock;
pub use schema::FILE_NAME;
pub use store::{Options, SqliteStore};
