//! A deduplicating work queue fed from several watches (an owner's own
//! changes and its pods'), which moor-client's `Controller` cannot do: it
//! only follows one kind.
//!
//! Promises: an item waiting in the queue is there once however often it is
//! added; items are handed out one at a time by [`Worker::next`]; failures
//! come back after a per-item exponential backoff.

use std::collections::HashMap;
use std::fmt::Display;
use std::hash::Hash;
use std::time::Duration;

use moor_client::Action;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// First retry delay after a failed reconcile.
const RETRY_MIN: Duration = Duration::from_millis(5);
/// Longest retry delay after repeated failures.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// The cloneable producer side: event handlers add items here.
#[derive(Debug)]
pub struct Queue<T> {
    tx: mpsc::UnboundedSender<T>,
}

/// The consumer side, owned by the controller's loop.
#[derive(Debug)]
pub struct Worker<T> {
    rx: mpsc::UnboundedReceiver<T>,
    due: HashMap<T, Instant>,
    retries: HashMap<T, u32>,
}

/// A new queue: its producer and its worker.
pub fn queue<T: Hash + Eq + Clone>() -> (Queue<T>, Worker<T>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let worker = Worker {
        rx,
        due: HashMap::new(),
        retries: HashMap::new(),
    };
    (Queue { tx }, worker)
}

// === impl Queue ===

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<T> Queue<T> {
    /// Asks for `item` to be processed as soon as possible.
    pub fn add(&self, item: T) {
        // Fails only once the worker is gone, at shutdown: nothing to do.
        let _ = self.tx.send(item);
    }
}

// === impl Worker ===

impl<T: Hash + Eq + Clone> Worker<T> {
    /// The next due item, or `None` once `shutdown` is cancelled.
    pub async fn next(&mut self, shutdown: &CancellationToken) -> Option<T> {
        loop {
            while let Ok(item) = self.rx.try_recv() {
                self.push_at(item, Instant::now());
            }
            let now = Instant::now();
            let earliest = self.due.iter().min_by_key(|(_, at)| **at);
            if let Some((item, at)) = earliest
                && *at <= now
            {
                let item = item.clone();
                self.due.remove(&item);
                return Some(item);
            }
            let next_due = earliest.map(|(_, at)| *at);
            tokio::select! {
                () = shutdown.cancelled() => return None,
                received = self.rx.recv() => match received {
                    Some(item) => self.push_at(item, Instant::now()),
                    None => return None,
                },
                () = sleep_until(next_due) => {}
            }
        }
    }

    /// Records how processing `item` went and schedules what follows.
    pub fn done<E: Failure>(&mut self, item: T, result: Result<Action, E>, what: &str)
    where
        T: Display,
    {
        match result {
            Ok(action) => {
                self.retries.remove(&item);
                if let Action::Requeue(after) = action {
                    self.push_at(item, Instant::now() + after);
                }
            }
            Err(error) => {
                let retries = self.retries.entry(item.clone()).or_insert(0);
                let delay = retry_delay(*retries);
                *retries = retries.saturating_add(1);
                if error.is_conflict() {
                    tracing::debug!(controller = what, key = %item, %error, ?delay, "object changed meanwhile; retrying");
                } else {
                    tracing::warn!(controller = what, key = %item, %error, ?delay, "reconcile failed; retrying");
                }
                self.push_at(item, Instant::now() + delay);
            }
        }
    }

    fn push_at(&mut self, item: T, at: Instant) {
        let due = self.due.entry(item).or_insert(at);
        *due = (*due).min(at);
    }
}

/// A failed reconcile, as the queue logs it.
pub trait Failure: Display {
    /// Optimistic concurrency at work (the object changed since it was
    /// read): retried without a warning.
    fn is_conflict(&self) -> bool;
}

impl Failure for crate::Error {
    fn is_conflict(&self) -> bool {
        crate::Error::is_conflict(self)
    }
}

#[cfg(test)]
impl Failure for &str {
    fn is_conflict(&self) -> bool {
        false
    }
}

/// Sleeps until `at`, or forever when nothing is due.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The delay before retry number `retries + 1`.
fn retry_delay(retries: u32) -> Duration {
    RETRY_MIN
        .saturating_mul(2u32.saturating_pow(retries.min(31)))
        .min(RETRY_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn dedups_and_backs_off() {
        let (queue, mut worker) = queue::<String>();
        let shutdown = CancellationToken::new();
        queue.add("a".into());
        queue.add("a".into());
        queue.add("b".into());
        let mut got = vec![
            worker.next(&shutdown).await.unwrap(),
            worker.next(&shutdown).await.unwrap(),
        ];
        got.sort();
        assert_eq!(got, ["a", "b"]);
        worker.done("a".to_string(), Err::<Action, _>("boom"), "test");
        let start = Instant::now();
        assert_eq!(worker.next(&shutdown).await.unwrap(), "a");
        assert_eq!(Instant::now() - start, RETRY_MIN);
        worker.done("a".to_string(), Ok::<_, &str>(Action::AwaitChange), "test");
        shutdown.cancel();
        assert!(worker.next(&shutdown).await.is_none());
    }
}
