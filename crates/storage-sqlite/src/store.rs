//! [`SqliteStore`]: the `Store` implementation tying writer, readers and
//! watches together.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use moor_storage::{Error as StorageError, Event, KeyValue, Page, Store, WatchStream};
use tokio::sync::broadcast;

use crate::readers::Readers;
use crate::writer::{Op, Outcome, Writer};
use crate::{Error, Lock, query, schema, watch};

/// Tuning for [`SqliteStore::open_with`].
#[derive(Clone, Debug)]
pub struct Options {
    /// Committed events kept for watchers that have not taken them yet. A
    /// watcher further behind rereads the log, which is correct but slower.
    pub event_buffer: usize,
}

/// A revisioned key-value store in `<dir>/moor.db`.
///
/// Dropping it waits for the writes already queued to commit and closes the
/// file; open watch streams then end with `Unavailable`. While it is open,
/// no other process can open the store in `<dir>` ([`Lock`]).
pub struct SqliteStore {
    path: PathBuf,
    // Fields drop in order: the writer thread stops (committing what was
    // queued, dropping its event sender) before `events` goes, which then
    // closes the channel and ends the watches; the lock goes last, once
    // nothing of this store writes.
    writer: Writer,
    events: broadcast::Sender<Arc<Event>>,
    readers: Arc<Readers>,
    lock: Lock,
}

// === impl Options ===

impl Default for Options {
    fn default() -> Self {
        Self { event_buffer: 1024 }
    }
}

// === impl SqliteStore ===

impl SqliteStore {
    /// Opens the store in `dir` (created if missing) with default options.
    /// Blocks while it opens the file: call it at startup, not per request.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        Self::open_with(dir, &Options::default())
    }

    /// Opens the store in `dir` (created if missing) with `options`.
    pub fn open_with(dir: &Path, options: &Options) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|source| Error::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        // Before the file is touched: another process may be writing it.
        let lock = Lock::acquire(dir)?;
        let path = dir.join(schema::FILE_NAME);
        let conn = schema::open_writer(&path)?;
        let revision = query::current_revision(&conn).map_err(|source| Error::Open {
            path: path.clone(),
            source,
        })?;
        let (events, _) = broadcast::channel(options.event_buffer.max(1));
        let writer = Writer::spawn(conn, events.clone()).map_err(Error::SpawnWriter)?;
        tracing::info!(path = %path.display(), revision, "opened the sqlite store");
        Ok(Self {
            readers: Readers::new(path.clone()),
            path,
            writer,
            events,
            lock,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the store as dropping it does, but hands back its directory's
    /// lock: a caller that moves the files away (`moor migrate`) keeps
    /// every other process out until it is done. The file is closed once
    /// open watch streams, which read it too, have ended as well.
    pub fn close(self) -> Lock {
        let Self {
            path: _,
            writer,
            events,
            readers,
            lock,
        } = self;
        // The readers first, so that the writer's connection is the last
        // to close, which folds the write-ahead log into the database file
        // and removes it (a read-only connection cannot): one file to move.
        drop(readers);
        drop(writer);
        drop(events);
        lock
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StorageError> {
        let key = key.to_owned();
        let row = self
            .readers
            .read(move |conn| query::latest(conn, &key))
            .await?;
        Ok(row.filter(|row| !row.deleted).map(|row| row.key_value()))
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64), StorageError> {
        let prefix = prefix.to_owned();
        let read = move |conn: &rusqlite::Connection| {
            Ok((query::list(conn, &prefix)?, query::current_revision(conn)?))
        };
        self.readers.read(read).await
    }

    async fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<i64>,
    ) -> Result<Page, StorageError> {
        let prefix = prefix.to_owned();
        let from = start_after.map(moor_storage::key_after);
        let limit = limit.max(1);
        let read = move |conn: &rusqlite::Connection| {
            let current = query::current_revision(conn)?;
            let compacted = query::compact_revision(conn)?;
            let at = revision.unwrap_or(current);
            if at > current || at < compacted {
                return Ok(Err((at, current, compacted)));
            }
            // One more than asked tells whether the page is the last.
            let mut items = query::page(conn, &prefix, from.as_deref(), at, limit + 1)?;
            let more = items.len() > limit;
            items.truncate(limit);
            Ok(Ok(Page {
                items,
                revision: at,
                more,
            }))
        };
        match self.readers.read(read).await? {
            Ok(page) => Ok(page),
            Err((requested, current, _)) if requested > current => {
                Err(StorageError::FutureRevision(requested))
            }
            Err((requested, _, compacted)) => Err(StorageError::Compacted {
                requested,
                compacted,
            }),
        }
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<i64, StorageError> {
        let key = key.to_owned();
        match self.writer.call(Op::Create { key, value }).await? {
            Outcome::Written(revision) => Ok(revision),
            other => Err(unexpected("create", &other)),
        }
    }

    async fn update(&self, key: &str, value: Bytes, expected: i64) -> Result<i64, StorageError> {
        let key = key.to_owned();
        match self
            .writer
            .call(Op::Update {
                key,
                value,
                expected,
            })
            .await?
        {
            Outcome::Written(revision) => Ok(revision),
            other => Err(unexpected("update", &other)),
        }
    }

    async fn delete(
        &self,
        key: &str,
        expected: Option<i64>,
    ) -> Result<(KeyValue, i64), StorageError> {
        let key = key.to_owned();
        match self.writer.call(Op::Delete { key, expected }).await? {
            Outcome::Deleted(last, revision) => Ok((last, revision)),
            other => Err(unexpected("delete", &other)),
        }
    }

    async fn current_revision(&self) -> Result<i64, StorageError> {
        self.readers.read(query::current_revision).await
    }

    async fn watch(&self, prefix: &str, after: i64) -> Result<WatchStream, StorageError> {
        watch::watch(self.readers.clone(), &self.events, prefix, after).await
    }

    async fn compact(&self, revision: i64) -> Result<(), StorageError> {
        match self.writer.call(Op::Compact { revision }).await? {
            Outcome::Compacted => Ok(()),
            other => Err(unexpected("compact", &other)),
        }
    }
}

/// The writer answered an op with another op's outcome: a bug.
fn unexpected(op: &str, outcome: &Outcome) -> StorageError {
    StorageError::Internal(format!("sqlite writer answered {op} with {outcome:?}"))
}
