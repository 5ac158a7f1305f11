//! A reconcile loop: `reconcile(object, context) -> Action`, called for every
//! object on start and after each change.
//!
//! Promises: a key (namespace/name) is never reconciled twice at once; a
//! change during a reconcile leads to one more reconcile afterwards, with the
//! latest object; many changes to a waiting key collapse into one call;
//! failures are retried with per-key exponential backoff.

use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use moor_api::Resource;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::reflector::{self, ObjectKey, Reader};
use crate::watcher::{self, Event};
use crate::{Api, ListParams};

/// First retry delay after a failed reconcile.
const RETRY_MIN: Duration = Duration::from_millis(5);
/// Longest retry delay after repeated failures.
const RETRY_MAX: Duration = Duration::from_secs(60);

/// What to do with a key after a successful reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Reconcile again after this long (or sooner, on a change).
    Requeue(Duration),
    /// Reconcile again only when the object changes.
    AwaitChange,
}

/// What a reconcile gets besides its object.
pub struct Context<K> {
    /// The key being reconciled.
    pub key: ObjectKey,
    /// How many reconciles of this key failed in a row before this one.
    pub retries: u32,
    /// The controller's cache of every watched object.
    pub reader: Reader<K>,
}

/// Reconciles every object of `K` matching the filters.
pub struct Controller<K> {
    api: Api<K>,
    params: ListParams,
}

/// The work queue: when each key is due, which run, which changed while running.
struct Queue {
    due: HashMap<ObjectKey, Instant>,
    running: HashSet<ObjectKey>,
    dirty: HashSet<ObjectKey>,
    retries: HashMap<ObjectKey, u32>,
}

// === impl Controller ===

impl<K: Resource> Controller<K> {
    /// A controller over `api`'s objects matching `params`.
    pub fn new(api: Api<K>, params: ListParams) -> Self {
        Self { api, params }
    }

    /// Runs until `shutdown` is cancelled, then waits for running reconciles.
    pub async fn run<F, Fut, E>(self, reconcile: F, shutdown: CancellationToken)
    where
        F: Fn(Arc<K>, Context<K>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Action, E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        let reconcile = Arc::new(reconcile);
        let (writer, reader) = reflector::store::<K>();
        let events = reflector::reflector(writer, watcher::watcher(self.api, self.params));
        let mut events = std::pin::pin!(events);
        let mut queue = Queue::new();
        let mut tasks: JoinSet<(ObjectKey, Result<Action, E>)> = JoinSet::new();
        loop {
            let next_due = queue.next_due();
            tokio::select! {
                () = shutdown.cancelled() => break,
                event = events.next() => match event {
                    Some(Ok(Event::Applied(object))) => queue.push_now(ObjectKey::of(&object)),
                    Some(Ok(Event::Deleted(object))) => queue.forget(&ObjectKey::of(&object)),
                    Some(Ok(Event::Restarted(objects))) => {
                        objects.iter().for_each(|o| queue.push_now(ObjectKey::of(o)));
                    }
                    Some(Err(error)) => tracing::debug!(kind = K::KIND, %error, "watch error; the watcher retries"),
                    None => break,
                },
                Some(done) = tasks.join_next(), if !tasks.is_empty() => match done {
                    Ok((key, result)) => queue.finish(key, result, K::KIND),
                    Err(error) => tracing::error!(kind = K::KIND, %error, "reconcile task panicked"),
                },
                () = sleep_until(next_due) => {
                    for key in queue.take_due(Instant::now()) {
                        let Some(object) = reader.get_key(&key) else { continue };
                        let retries = queue.retries.get(&key).copied().unwrap_or(0);
                        let ctx = Context { key: key.clone(), retries, reader: reader.clone() };
                        queue.running.insert(key.clone());
                        let reconcile = reconcile.clone();
                        tasks.spawn(async move { (key, reconcile(object, ctx).await) });
                    }
                }
            }
        }
        while tasks.join_next().await.is_some() {}
    }
}

/// Sleeps until `at`, or forever when nothing is due.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

// === impl Queue ===

impl Queue {
    fn new() -> Self {
        Self {
            due: HashMap::new(),
            running: HashSet::new(),
            dirty: HashSet::new(),
            retries: HashMap::new(),
        }
    }

    /// Asks for a reconcile of `key` as soon as possible.
    fn push_now(&mut self, key: ObjectKey) {
        self.push_at(key, Instant::now());
    }

    /// Asks for a reconcile of `key` at `at` at the latest.
    fn push_at(&mut self, key: ObjectKey, at: Instant) {
        if self.running.contains(&key) {
            self.dirty.insert(key);
            return;
        }
        let due = self.due.entry(key).or_insert(at);
        *due = (*due).min(at);
    }

    /// Drops a deleted object's pending work (a running reconcile finishes).
    fn forget(&mut self, key: &ObjectKey) {
        self.due.remove(key);
        self.dirty.remove(key);
        self.retries.remove(key);
    }

    /// The earliest due time.
    fn next_due(&self) -> Option<Instant> {
        self.due.values().min().copied()
    }

    /// Removes and returns the keys due by `now`.
    fn take_due(&mut self, now: Instant) -> Vec<ObjectKey> {
        let keys: Vec<_> = self
            .due
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        keys.iter().for_each(|k| {
            self.due.remove(k);
        });
        keys
    }

    /// Records the end of a reconcile and schedules what follows.
    fn finish<E: Display>(&mut self, key: ObjectKey, result: Result<Action, E>, kind: &str) {
        self.running.remove(&key);
        let changed = self.dirty.remove(&key);
        let now = Instant::now();
        match result {
            Ok(action) => {
                self.retries.remove(&key);
                match (changed, action) {
                    (true, _) => self.push_at(key, now),
                    (false, Action::Requeue(after)) => self.push_at(key, now + after),
                    (false, Action::AwaitChange) => {}
                }
            }
            Err(error) => {
                let retries = self.retries.entry(key.clone()).or_insert(0);
                let delay = retry_delay(*retries);
                *retries = retries.saturating_add(1);
                // A single failure is usually a write that raced another
                // (a conflict) and the prompt retry settles it; a streak is
                // worth a warning.
                if *retries > 1 {
                    tracing::warn!(kind, key = %key, %error, ?delay, "reconcile failed; retrying");
                } else {
                    tracing::debug!(kind, key = %key, %error, ?delay, "reconcile failed; retrying");
                }
                self.push_at(key, now + delay);
            }
        }
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

    fn key(name: &str) -> ObjectKey {
        ObjectKey {
            namespace: "default".into(),
            name: name.into(),
        }
    }

    #[test]
    fn retry_delay_grows_and_caps() {
        assert_eq!(retry_delay(0), RETRY_MIN);
        assert_eq!(retry_delay(1), RETRY_MIN * 2);
        assert_eq!(retry_delay(40), RETRY_MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn queue_dedups_and_defers_running_keys() {
        let mut q = Queue::new();
        q.push_now(key("a"));
        q.push_now(key("a"));
        let due = q.take_due(Instant::now());
        assert_eq!(due, vec![key("a")]);
        q.running.insert(key("a"));
        q.push_now(key("a"));
        assert!(q.next_due().is_none(), "a running key is not queued twice");
        q.finish::<String>(key("a"), Ok(Action::AwaitChange), "Test");
        assert_eq!(
            q.take_due(Instant::now()),
            vec![key("a")],
            "a change while running re-runs"
        );
        q.running.insert(key("a"));
        q.finish(key("a"), Err("boom"), "Test");
        assert!(q.take_due(Instant::now()).is_empty());
        assert_eq!(q.next_due(), Some(Instant::now() + RETRY_MIN));
    }
}
