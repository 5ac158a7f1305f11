//! Read-only connections, used on tokio's blocking pool.
//!
//! Why not read on the writer thread: in WAL mode readers never wait for the
//! writer nor it for them, so a large `list` or a watch catching up on
//! history does not delay writes, and writes do not queue reads. Why
//! `spawn_blocking`: SQLite calls block, and the runtime's workers must not.
//! Each read runs in one transaction, so it sees one consistent snapshot.
//!
//! Reads at once are bounded, and their connections kept: under a burst,
//! reads queue for a connection (an await, cheap) rather than each taking a
//! blocking thread and a connection of its own. Unbounded, thousands of node
//! agents' writes (each reads the key first) opened hundreds of connections,
//! each reading the file into a cold page cache of its own, and the
//! apiserver spent its cores and gigabytes of memory there.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use moor_storage::Error as StorageError;
use rusqlite::Connection;

use crate::error::storage_error;
use crate::schema;

/// Reads running at once, each on its own connection (kept for reuse).
/// Reads are CPU work on a warm page cache: a few per core keep the cores
/// busy while one waits on the disk.
const MAX_READERS: usize = 8;

/// A small pool of read-only connections to the database file.
pub(crate) struct Readers {
    path: PathBuf,
    // A std mutex, held only for a push or a pop on a blocking-pool thread,
    // never across an await.
    idle: Mutex<Vec<Connection>>,
    /// One permit per read running.
    running: Arc<tokio::sync::Semaphore>,
}

// === impl Readers ===

impl Readers {
    /// A pool for the database at `path`, which the writer has set up.
    pub(crate) fn new(path: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            path,
            idle: Mutex::new(Vec::new()),
            running: Arc::new(tokio::sync::Semaphore::new(MAX_READERS)),
        })
    }

    /// Runs `read` in a read transaction on a pooled connection, off the
    /// async workers.
    pub(crate) async fn read<T, F>(self: &Arc<Self>, read: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        // Held by the blocking task: a caller that gives up waiting does not
        // free its permit before the read is done.
        let permit = Arc::clone(&self.running)
            .acquire_owned()
            .await
            .map_err(|_| StorageError::Internal("sqlite readers closed".to_owned()))?;
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
            drop(permit);
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

    /// Returns a connection to the pool (it never holds more than
    /// `MAX_READERS`: one per permit).
    fn give_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_READERS {
            idle.push(conn);
        }
    }
}
