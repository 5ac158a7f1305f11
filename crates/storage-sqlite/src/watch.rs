//! Watches: history from the log, then live events from the writer.
//!
//! A watch subscribes to the writer's broadcast *before* it first reads the
//! log. Every write is either committed before that read's snapshot (so the
//! read returns it) or committed after it, and then published after the
//! subscription (so the receiver gets it). Events the receiver gets that the
//! read already returned are skipped by revision. If the receiver lags (the
//! broadcast dropped events it had not taken yet), the watch goes back to
//! reading the log from its last delivered revision: nothing is lost.
//!
//! A watch also moves past writes to other prefixes, seen live or read past
//! in the log: a watch of a quiet prefix that falls behind rereads the log
//! from the last write it saw anywhere, not from its own last event. (From
//! its own, each of the apiserver's quiet caches rescanned the whole log of a
//! busy cluster at every lag.)

use std::collections::VecDeque;
use std::sync::Arc;

use futures::StreamExt;
use moor_storage::{Error as StorageError, Event, WatchStream};
use tokio::sync::broadcast::{self, error::RecvError};

use crate::query;
use crate::readers::Readers;

/// Rows read from the log at a time while catching up.
const PAGE: usize = 512;

/// Where a watch gets its next events from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Reading the log after `last`: history at the start, and again after
    /// the live receiver lagged. Ends when a read comes back empty.
    CatchUp,
    /// Caught up: following the writer's broadcast.
    Live,
    /// An error was delivered, or the store is gone: the stream ends.
    Done,
}

/// One client's watch.
struct Watcher {
    readers: Arc<Readers>,
    live: broadcast::Receiver<Arc<Event>>,
    prefix: String,
    /// Revision of the last event delivered (or the watch's `after`).
    last: i64,
    /// Events read from the log, not yet delivered.
    pending: VecDeque<Event>,
    /// The revision of the snapshot a finished catch-up read: the log holds
    /// nothing more for the prefix up to it, so `last` moves there once
    /// `pending` is delivered.
    read_to: i64,
    phase: Phase,
}

/// Starts a watch of `prefix` after `after`. Fails with `Compacted` here,
/// rather than on the stream, when `after` is below the compaction point.
pub(crate) async fn watch(
    readers: Arc<Readers>,
    events: &broadcast::Sender<Arc<Event>>,
    prefix: &str,
    after: i64,
) -> Result<WatchStream, StorageError> {
    let mut watcher = Watcher {
        readers,
        live: events.subscribe(),
        prefix: prefix.to_owned(),
        // Revisions start at 1: any `after` below that means "everything".
        last: after.max(0),
        pending: VecDeque::new(),
        read_to: 0,
        phase: Phase::CatchUp,
    };
    watcher.catch_up().await?;
    let stream = futures::stream::unfold(watcher, |mut watcher| async move {
        let item = watcher.next().await?;
        Some((item, watcher))
    });
    Ok(stream.boxed())
}

// === impl Watcher ===

impl Watcher {
    /// The next item of the stream; `None` once it has ended.
    async fn next(&mut self) -> Option<Result<Event, StorageError>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.last = event.kv.mod_revision;
                return Some(Ok(event));
            }
            match self.phase {
                Phase::Done => return None,
                Phase::CatchUp => {
                    if let Err(e) = self.catch_up().await {
                        self.phase = Phase::Done;
                        return Some(Err(e));
                    }
                }
                Phase::Live => match self.live.recv().await {
                    Ok(event) => {
                        self.last = self.last.max(self.read_to);
                        let revision = event.kv.mod_revision;
                        if revision > self.last {
                            // The broadcast is in revision order and lossless
                            // until it reports a lag: whatever the key, every
                            // change of the prefix up to here is delivered.
                            self.last = revision;
                            if event.kv.key.starts_with(&self.prefix) {
                                return Some(Ok(Event::clone(&event)));
                            }
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::debug!(prefix = %self.prefix, last = self.last, missed, "watch fell behind; rereading the log");
                        self.phase = Phase::CatchUp;
                    }
                    Err(RecvError::Closed) => {
                        self.phase = Phase::Done;
                        let closed = "the sqlite store was closed".to_owned();
                        return Some(Err(StorageError::Unavailable(closed)));
                    }
                },
            }
        }
    }

    /// Reads the next page of the log after `last` into `pending`, or goes
    /// live if there is none. Fails if that history is compacted.
    async fn catch_up(&mut self) -> Result<(), StorageError> {
        let (prefix, after) = (self.prefix.clone(), self.last.max(self.read_to));
        let (compacted, current, rows) = self
            .readers
            .read(move |conn| {
                let compacted = query::compact_revision(conn)?;
                let current = query::current_revision(conn)?;
                Ok((
                    compacted,
                    current,
                    query::history(conn, &prefix, after, PAGE)?,
                ))
            })
            .await?;
        if after < compacted {
            return Err(StorageError::Compacted {
                requested: after,
                compacted,
            });
        }
        // A short page is the end of the prefix's log at this snapshot.
        if rows.len() < PAGE {
            self.read_to = current;
            self.phase = Phase::Live;
        }
        self.pending.extend(rows.iter().map(query::Row::event));
        Ok(())
    }
}
