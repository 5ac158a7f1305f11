//! The writer: one OS thread that owns the only write connection.
//!
//! Async callers send commands over a channel and await a oneshot reply, so
//! no SQLite call ever blocks the runtime, and revisions are handed out by
//! one thread in one order. The thread takes whatever commands are queued
//! (up to [`MAX_BATCH`]) and applies them in one transaction: one fsync for
//! many writes under load. A command refused on its merits (`Conflict`,
//! `NotFound`...) writes nothing and does not spoil the batch; a SQLite
//! failure rolls the batch back, and its commands are retried one per
//! transaction so that only the failing ones fail. Only after a commit does
//! the thread publish the events, in revision order, and then answer the
//! callers.

use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use moor_storage::{Error as StorageError, Event, KeyValue};
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::apply::{Applied, apply};
use crate::error::storage_error;

/// Most commands applied in one transaction.
const MAX_BATCH: usize = 128;
/// Commands waiting for the writer before callers wait to send.
const QUEUE: usize = 1024;

/// A write the thread can apply.
#[derive(Debug)]
pub(crate) enum Op {
    /// Create a key that must be absent.
    Create { key: String, value: Bytes },
    /// Replace a key whose revision must be `expected`.
    Update {
        key: String,
        value: Bytes,
        expected: i64,
    },
    /// Delete a key, whose revision must be `expected` if given.
    Delete { key: String, expected: Option<i64> },
    /// Forget history at and before `revision`.
    Compact { revision: i64 },
}

/// What an applied op returns.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The revision of a create or an update.
    Written(i64),
    /// The deleted key's last state, and the revision of the delete.
    Deleted(KeyValue, i64),
    /// Compaction done (or nothing to do).
    Compacted,
}

/// An op, with where to send its result.
struct Command {
    op: Op,
    reply: oneshot::Sender<Result<Outcome, StorageError>>,
}

/// The handle on the writer thread; dropping it lets the thread finish the
/// queued commands and waits for it to exit.
pub(crate) struct Writer {
    commands: Option<mpsc::Sender<Command>>,
    thread: Option<JoinHandle<()>>,
}

// === impl Writer ===

impl Writer {
    /// Starts the writer thread on `conn`, publishing events on `events`.
    pub(crate) fn spawn(
        conn: Connection,
        events: broadcast::Sender<Arc<Event>>,
    ) -> std::io::Result<Self> {
        let (commands, queue) = mpsc::channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("moor-sqlite-writer".into())
            .spawn(move || run(conn, queue, &events))?;
        Ok(Self {
            commands: Some(commands),
            thread: Some(thread),
        })
    }

    /// Applies `op` and returns its outcome.
    pub(crate) async fn call(&self, op: Op) -> Result<Outcome, StorageError> {
        let stopped = || StorageError::Internal("the sqlite writer thread has stopped".into());
        let commands = self.commands.as_ref().ok_or_else(stopped)?;
        let (reply, outcome) = oneshot::channel();
        commands
            .send(Command { op, reply })
            .await
            .map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue ends the thread's loop after the queued commands.
        // Joining makes "store dropped" mean "file closed", so the directory
        // can be reopened or removed right away; the wait is at most one
        // batch, since no caller can queue more.
        self.commands = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the sqlite writer thread panicked");
        }
    }
}

/// The thread's loop: batch, apply, commit, publish, reply.
fn run(
    mut conn: Connection,
    mut queue: mpsc::Receiver<Command>,
    events: &broadcast::Sender<Arc<Event>>,
) {
    tracing::debug!("sqlite writer started");
    while let Some(first) = queue.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
        let results = commit(&mut conn, &batch);
        for (command, (result, event)) in batch.into_iter().zip(results) {
            if let Some(event) = event {
                // No receiver means no watcher: nothing to do.
                let _ = events.send(Arc::new(event));
            }
            // The caller may have given up waiting; the write stands.
            let _ = command.reply.send(result);
        }
    }
    tracing::debug!("sqlite writer stopped: the store was dropped");
}

/// Commits `batch` in one transaction. If SQLite fails it, commits each
/// command alone, so that one bad command (a value too big, say) fails only
/// itself; a failure that persists then (a full disk) fails them all.
fn commit(conn: &mut Connection, batch: &[Command]) -> Vec<Applied> {
    let error = match apply_batch(conn, batch) {
        Ok(results) => return results,
        Err(e) => e,
    };
    if batch.len() == 1 {
        tracing::warn!(error = %error, "sqlite write failed and was rolled back; the caller gets the error");
        return vec![(Err(storage_error(&error)), None)];
    }
    tracing::warn!(error = %error, commands = batch.len(), "sqlite batch failed and was rolled back; retrying its commands one by one");
    batch
        .iter()
        .flat_map(|command| commit(conn, std::slice::from_ref(command)))
        .collect()
}

/// Applies a batch in one immediate transaction.
fn apply_batch(conn: &mut Connection, batch: &[Command]) -> rusqlite::Result<Vec<Applied>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let results = batch
        .iter()
        .map(|command| apply(&tx, &command.op))
        .collect::<rusqlite::Result<Vec<_>>>()?;
    tx.commit()?;
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failing_command_fails_alone() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let conn = crate::schema::open_writer(&dir.path().join("test.db")).expect("open");
        // A write SQLite itself rejects, whatever batch it lands in.
        conn.execute_batch(
            "CREATE TRIGGER reject BEFORE INSERT ON log WHEN NEW.name = CAST('/bad' AS BLOB) \
             BEGIN SELECT RAISE(ABORT, 'rejected by test'); END;",
        )
        .expect("trigger");
        let (events, _) = broadcast::channel(16);
        let writer = Writer::spawn(conn, events).expect("spawn");

        let keys: Vec<String> = (0..20)
            .map(|i| {
                if i % 5 == 2 {
                    "/bad".into()
                } else {
                    format!("/good/{i}")
                }
            })
            .collect();
        let calls = keys.iter().map(|key| {
            let op = Op::Create {
                key: key.clone(),
                value: Bytes::new(),
            };
            writer.call(op)
        });
        let results = futures::future::join_all(calls).await;
        for (key, result) in keys.iter().zip(results) {
            match (key.as_str(), result) {
                ("/bad", Err(StorageError::Internal(message))) => {
                    assert!(message.contains("rejected by test"), "{message}");
                }
                ("/bad", other) => panic!("rejected write: {other:?}"),
                (_, Ok(Outcome::Written(_))) => {}
                (key, other) => panic!("{key} failed with its batch: {other:?}"),
            }
        }
    }
}
