//! Expectations: the pod creates and deletes a replica controller issued and
//! has not yet seen on the watch. While any are outstanding its cache is
//! known to lag, so it does not act on it: that is what keeps it from
//! creating a second batch of pods for the same shortfall.

use std::collections::{HashMap, HashSet};
// A std lock: held only for map operations, never across an await.
use std::sync::Mutex;
use std::time::Duration;

use moor_client::ObjectKey;
use tokio::time::Instant;

/// Outstanding creates and deletes per owner.
#[derive(Debug)]
pub struct Expectations {
    timeout: Duration,
    owners: Mutex<HashMap<ObjectKey, Pending>>,
}

#[derive(Debug)]
struct Pending {
    creates: i64,
    deletes: HashSet<String>,
    since: Instant,
}

// === impl Expectations ===

impl Expectations {
    /// Expectations older than `timeout` are given up on.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            owners: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the owner's cache can be trusted: nothing outstanding, or
    /// what is outstanding is too old to wait for.
    pub fn satisfied(&self, owner: &ObjectKey) -> bool {
        let owners = self.lock();
        owners.get(owner).is_none_or(|p| {
            (p.creates <= 0 && p.deletes.is_empty()) || p.since.elapsed() > self.timeout
        })
    }

    /// Records `count` creates about to be issued (replacing what was).
    pub fn expect_creates(&self, owner: &ObjectKey, count: usize) {
        let pending = Pending {
            creates: i64::try_from(count).unwrap_or(i64::MAX),
            deletes: HashSet::new(),
            since: Instant::now(),
        };
        self.lock().insert(owner.clone(), pending);
    }

    /// Records deletes of the named pods about to be issued (replacing what was).
    pub fn expect_deletes(&self, owner: &ObjectKey, pods: impl IntoIterator<Item = String>) {
        let pending = Pending {
            creates: 0,
            deletes: pods.into_iter().collect(),
            since: Instant::now(),
        };
        self.lock().insert(owner.clone(), pending);
    }

    /// One create seen on the watch, or one that failed and never will be.
    pub fn creation_observed(&self, owner: &ObjectKey) {
        if let Some(p) = self.lock().get_mut(owner) {
            p.creates -= 1;
        }
    }

    /// A delete seen on the watch, or one that failed and never will be.
    pub fn deletion_observed(&self, owner: &ObjectKey, pod: &str) {
        if let Some(p) = self.lock().get_mut(owner) {
            p.deletes.remove(pod);
        }
    }

    /// Whether the owner deleted pod `pod` and has not yet seen it on the
    /// watch (the delete went through: a failed one counts as observed).
    pub fn deleting(&self, owner: &ObjectKey, pod: &str) -> bool {
        self.lock()
            .get(owner)
            .is_some_and(|p| p.deletes.contains(pod))
    }

    /// Drops a deleted owner's record.
    pub fn forget(&self, owner: &ObjectKey) {
        self.lock().remove(owner);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, Pending>> {
        self.owners.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ObjectKey {
        ObjectKey {
            namespace: "default".into(),
            name: "web".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn waits_for_observations_or_the_timeout() {
        let e = Expectations::new(Duration::from_secs(10));
        assert!(e.satisfied(&key()));
        e.expect_creates(&key(), 2);
        e.creation_observed(&key());
        assert!(!e.satisfied(&key()));
        e.creation_observed(&key());
        assert!(e.satisfied(&key()));
        e.expect_deletes(&key(), ["a".to_string()]);
        assert!(!e.satisfied(&key()));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(e.satisfied(&key()), "stale expectations expire");
        e.expect_deletes(&key(), ["a".to_string()]);
        assert!(e.deleting(&key(), "a"));
        assert!(!e.deleting(&key(), "b"));
        e.deletion_observed(&key(), "a");
        assert!(e.satisfied(&key()));
        assert!(!e.deleting(&key(), "a"));
    }
}
