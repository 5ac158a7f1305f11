//! The scheduling queue: pods to try now (active), pods waiting out a
//! back-off, and unschedulable pods parked until something changes that
//! could make them fit (a node added or changed, a pod deleted).
//!
//! Promise: a pod is in at most one of the three places; a change that
//! happens while a pod is being tried is not lost (the pod goes to back-off
//! instead of being parked, as Kubernetes' "move request cycle" does).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use moor_client::ObjectKey;
use tokio::sync::Notify;
use tokio::time::Instant;

/// First back-off after a failed attempt.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Longest back-off.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Parked pods are retried at least this often, changes or not.
pub const MAX_PARKED: Duration = Duration::from_secs(60);

/// The queue; shared by reference, safe from many tasks.
#[derive(Debug, Default)]
pub struct Queue {
    // A std lock: held only for a few map operations, never across an await.
    inner: Mutex<Inner>,
    notify: Notify,
}

#[derive(Debug, Default)]
struct Inner {
    active: VecDeque<ObjectKey>,
    /// Keys in `active`, `backoff` or `parked`.
    queued: HashSet<ObjectKey>,
    backoff: BTreeSet<(Instant, ObjectKey)>,
    backoff_until: HashMap<ObjectKey, Instant>,
    parked: HashMap<ObjectKey, Instant>,
    attempts: HashMap<ObjectKey, u32>,
    /// Bumped by every change that could make parked pods fit.
    cycle: u64,
}

// === impl Queue ===

impl Queue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new or changed pending pod: try it now (or after its back-off, if
    /// it failed before).
    pub fn add(&self, key: ObjectKey) {
        let mut inner = self.lock();
        if inner.parked.remove(&key).is_some() {
            inner.queued.remove(&key);
        }
        if inner.queued.contains(&key) {
            return;
        }
        if inner.attempts.get(&key).copied().unwrap_or(0) > 0 {
            inner.push_backoff_locked(key, Instant::now());
        } else {
            inner.queued.insert(key.clone());
            inner.active.push_back(key);
        }
        drop(inner);
        self.notify.notify_one();
    }

    /// The pod fit nowhere in the attempt that began at `cycle`: park it
    /// until a change, or back it off if a change came meanwhile.
    pub fn unschedulable(&self, key: ObjectKey, cycle: u64) {
        let mut inner = self.lock();
        *inner.attempts.entry(key.clone()).or_default() += 1;
        if inner.queued.contains(&key) {
            return;
        }
        if inner.cycle > cycle {
            inner.push_backoff_locked(key, Instant::now());
        } else {
            inner.queued.insert(key.clone());
            inner.parked.insert(key, Instant::now());
        }
        drop(inner);
        self.notify.notify_one();
    }

    /// The attempt failed for a passing reason (a failed bind): retry after
    /// a back-off.
    pub fn backoff(&self, key: ObjectKey) {
        let mut inner = self.lock();
        *inner.attempts.entry(key.clone()).or_default() += 1;
        if !inner.queued.contains(&key) {
            inner.push_backoff_locked(key, Instant::now());
        }
        drop(inner);
        self.notify.notify_one();
    }

    /// Something changed that could make parked pods fit: back them off.
    pub fn move_all(&self) {
        let mut inner = self.lock();
        inner.cycle += 1;
        let parked: Vec<ObjectKey> = inner.parked.drain().map(|(k, _)| k).collect();
        let now = Instant::now();
        for key in parked {
            inner.queued.remove(&key);
            inner.push_backoff_locked(key, now);
        }
        drop(inner);
        self.notify.notify_one();
    }

    /// The pod is bound or gone: forget it.
    pub fn done(&self, key: &ObjectKey) {
        let mut inner = self.lock();
        inner.attempts.remove(key);
        inner.remove_locked(key);
    }

    /// Number of pods in the queue, in any state.
    pub fn len(&self) -> usize {
        self.lock().queued.len()
    }

    /// Whether the queue holds no pod.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of parked (unschedulable) pods.
    pub fn parked(&self) -> usize {
        self.lock().parked.len()
    }

    /// Waits for the next pod to try; returns it with the current change
    /// cycle (hand that back to [`Queue::unschedulable`]).
    pub async fn pop(&self) -> (ObjectKey, u64) {
        loop {
            let wake = {
                let mut inner = self.lock();
                let now = Instant::now();
                inner.flush_locked(now);
                if let Some(key) = inner.active.pop_front() {
                    inner.queued.remove(&key);
                    return (key, inner.cycle);
                }
                inner.next_wake_locked(now)
            };
            let notified = self.notify.notified();
            match wake {
                Some(at) => {
                    tokio::select! {
                        () = notified => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }
}

// === impl Inner ===

impl Inner {
    fn push_backoff_locked(&mut self, key: ObjectKey, now: Instant) {
        let attempts = self.attempts.get(&key).copied().unwrap_or(1).max(1);
        let shift = (attempts - 1).min(16);
        let delay = INITIAL_BACKOFF
            .checked_mul(1 << shift)
            .map_or(MAX_BACKOFF, |d| d.min(MAX_BACKOFF));
        let until = now + delay;
        self.queued.insert(key.clone());
        self.backoff_until.insert(key.clone(), until);
        self.backoff.insert((until, key));
    }

    fn remove_locked(&mut self, key: &ObjectKey) {
        if !self.queued.remove(key) {
            return;
        }
        self.parked.remove(key);
        if let Some(until) = self.backoff_until.remove(key) {
            self.backoff.remove(&(until, key.clone()));
        }
        self.active.retain(|k| k != key);
    }

    /// Moves expired back-offs to active, and long-parked pods to back-off.
    fn flush_locked(&mut self, now: Instant) {
        while let Some((until, _)) = self.backoff.first() {
            if *until > now {
                break;
            }
            if let Some((_, key)) = self.backoff.pop_first() {
                self.backoff_until.remove(&key);
                self.active.push_back(key);
            }
        }
        let stale: Vec<ObjectKey> = self
            .parked
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= MAX_PARKED)
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            self.parked.remove(&key);
            self.active.push_back(key);
        }
    }

    fn next_wake_locked(&self, now: Instant) -> Option<Instant> {
        let backoff = self.backoff.first().map(|(t, _)| *t);
        let parked = self.parked.values().min().map(|s| *s + MAX_PARKED);
        [backoff, parked]
            .into_iter()
            .flatten()
            .min()
            .map(|t| t.max(now))
    }
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

    async fn pop_within(q: &Queue, d: Duration) -> Option<ObjectKey> {
        tokio::time::timeout(d, q.pop()).await.ok().map(|(k, _)| k)
    }

    #[tokio::test(start_paused = true)]
    async fn fifo_and_no_duplicates() {
        let q = Queue::new();
        q.add(key("a"));
        q.add(key("b"));
        q.add(key("a"));
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop().await.0, key("a"));
        assert_eq!(q.pop().await.0, key("b"));
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn parked_until_a_change_then_backed_off() {
        let q = Queue::new();
        q.add(key("a"));
        let (k, cycle) = q.pop().await;
        q.unschedulable(k, cycle);
        assert_eq!(q.parked(), 1);
        assert_eq!(pop_within(&q, Duration::from_secs(30)).await, None);
        q.move_all();
        assert_eq!(q.parked(), 0);
        // Back-off of the first failure is 1 s.
        assert_eq!(pop_within(&q, Duration::from_millis(900)).await, None);
        assert_eq!(
            pop_within(&q, Duration::from_millis(200)).await,
            Some(key("a"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_during_the_attempt_is_not_lost() {
        let q = Queue::new();
        q.add(key("a"));
        let (k, cycle) = q.pop().await;
        q.move_all(); // a node appeared while we were deciding
        q.unschedulable(k, cycle);
        assert_eq!(q.parked(), 0);
        assert_eq!(pop_within(&q, Duration::from_secs(2)).await, Some(key("a")));
    }

    #[tokio::test(start_paused = true)]
    async fn parked_pods_retry_eventually_and_backoff_grows() {
        let q = Queue::new();
        q.add(key("a"));
        let (k, c) = q.pop().await;
        q.unschedulable(k, c);
        assert_eq!(
            pop_within(&q, MAX_PARKED + Duration::from_secs(1)).await,
            Some(key("a"))
        );
        q.backoff(key("a")); // second failure: 2 s
        assert_eq!(pop_within(&q, Duration::from_millis(1900)).await, None);
        assert_eq!(
            pop_within(&q, Duration::from_millis(200)).await,
            Some(key("a"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn done_removes_from_everywhere() {
        let q = Queue::new();
        q.add(key("a"));
        q.backoff(key("b"));
        q.done(&key("a"));
        q.done(&key("b"));
        assert!(q.is_empty());
        assert_eq!(pop_within(&q, Duration::from_secs(20)).await, None);
    }
}
