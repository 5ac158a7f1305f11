//! Read-only connections, used on tokio's blocking pool.
//!
//! Why not read on the writer thread: in WAL mode readers never wait for the
//! writer nor it for them, so a large `list` or a watch catching up on
//! history does not delay writes, and writes do not queue reads. Why
//! `spawn_blocking`: SQLite calls block, and the runtime's workers must not.
//! Each read runs in one transaction, so it sees one consistent snapshot.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use moor_storage::Error as StorageError;
use rusqlite::Connection;

use crate::error::storage_error;
use crate::schema;

/// Idle connections kept for reuse; more are opened under load and closed
/// once returned past this count.
const MAX_IDLE: usize = 4;

/// A small pool of read-only connections to the database file.
pub(crate) struct Readers {
    path: PathBuf,
    // A std mutex, held only for a push or a pop on a blocking-pool thread,
    // never across an await.
    idle: Mutex<Vec<Connection>>,
}

// === impl Readers ===

impl Readers {
    /// A pool for the database at `path`, which the writer has set up.
    pub(crate) fn new(path: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            path,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Runs `read` in a read transaction on a pooled connection, off the
    /// async workers.
    pub(crate) async fn read<T, F>(self: &Arc<Self>, read: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let this = Arc::clone(self);
        let task = tokio::task::spawn_blocking(move || {
            let mut conn = match this.take() {
                Some(conn) => conn,
                None => schema::open_reader(&this.path)?,
            };
            let result = conn.transaction().and_then(|tx| {
                let value = read(&tx)?;
                tx.commit()?;
                Ok(value)
            });
            this.give_back(conn);
            result
        });
        match task.await {
            Ok(result) => result.map_err(|e| storage_error(&e)),
            Err(e) => Err(StorageError::Internal(format!(
                "sqlite read task failed: {e}"
            ))),
        }
    }

    /// An idle connection, if any.
    fn take(&self) -> Option<Connection> {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
    }

    /// Returns a connection to the pool, or closes it if the pool is full.
    fn give_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }
}
