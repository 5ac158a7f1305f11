//! Watches as etcd watches.
//!
//! Each watch opens its own etcd watch stream, so dropping the returned
//! stream drops the gRPC stream, and etcd cancels the watcher with it.

use std::collections::VecDeque;

use etcd_client::{WatchClient, WatchOptions};
use futures::StreamExt;
use moor_storage::{Error as StorageError, Event, WatchStream};

use crate::convert;
use crate::error::storage_error;

/// Where a watch is.
struct Watcher {
    stream: etcd_client::WatchStream,
    /// The caller's `after`, for the `Compacted` error.
    requested: i64,
    /// Revision of the last event delivered (or `after`): events at or
    /// before it are not delivered.
    last: i64,
    /// Events of a response not yet delivered.
    pending: VecDeque<Event>,
    /// An error was delivered: the stream ends.
    done: bool,
}

/// Starts a watch of `prefix` for changes after `after`.
///
/// etcd reports a watch as compacted when its start revision is *below* the
/// compaction point, while the `Store` promises `Compacted` for every
/// `after` below it. So the etcd watch starts at `after` itself, not
/// `after + 1`, and the replayed event at `after` is skipped: then etcd's
/// "start < compaction point" is exactly "`after` < compaction point".
pub(crate) async fn watch(
    mut client: WatchClient,
    prefix: &str,
    after: i64,
) -> Result<WatchStream, StorageError> {
    // Start revision 0 means "from now" to etcd; revision 1 is the empty
    // store every cluster starts with, so starting there misses nothing.
    let options = WatchOptions::new()
        .with_prefix()
        .with_prev_key()
        .with_start_revision(after.max(1));
    let stream = client
        .watch(prefix, Some(options))
        .await
        .map_err(storage_error)?;
    let watcher = Watcher {
        stream,
        requested: after,
        last: after,
        pending: VecDeque::new(),
        done: false,
    };
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
            if self.done {
                return None;
            }
            if let Err(e) = self.receive().await {
                self.done = true;
                return Some(Err(e));
            }
        }
    }

    /// Waits for the next response from etcd and queues its events.
    async fn receive(&mut self) -> Result<(), StorageError> {
        let response = match self.stream.message().await {
            Ok(Some(response)) => response,
            Ok(None) => return Err(StorageError::Unavailable("etcd ended the watch".into())),
            Err(e) => return Err(storage_error(e)),
        };
        if response.compact_revision() != 0 {
            return Err(StorageError::Compacted {
                requested: self.requested,
                compacted: response.compact_revision(),
            });
        }
        if response.canceled() {
            let reason = response.cancel_reason();
            return Err(StorageError::Unavailable(format!(
                "etcd canceled the watch: {reason}"
            )));
        }
        for event in response.events() {
            let event = convert::event(event)?;
            if event.kv.mod_revision > self.last {
                self.pending.push_back(event);
            }
        }
        Ok(())
    }
}
