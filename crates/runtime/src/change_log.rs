//! Which pods' containers changed through a runtime, and when: what lets a
//! shared listing of every container stand in for a listing of one pod's
//! for as long as that pod's containers did not change, however busy the
//! runtime is with other pods (a burst of new pods would otherwise void the
//! listing for everyone at every create and start).

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::time::Instant;

/// Past this many known containers the map of their pods starts again (a
/// container of no known pod only makes listings less reusable).
const MAX_KNOWN: usize = 10_000;

/// Changes per pod uid; containers of no known pod count for every pod.
#[derive(Debug, Default)]
pub(crate) struct ChangeLog {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The pod uid of each container created or listed.
    pod_of: HashMap<String, String>,
    /// Per pod uid.
    pods: HashMap<String, Changes>,
    /// Changes to containers of no known pod.
    unknown: Changes,
}

/// The changes to one pod's containers.
#[derive(Clone, Copy, Debug, Default)]
struct Changes {
    /// Asked and not yet answered.
    in_flight: u32,
    /// When the last one was answered.
    answered: Option<Instant>,
}

impl Changes {
    /// No change in flight, and none answered at or after `at`.
    fn none_since(&self, at: Instant) -> bool {
        self.in_flight == 0 && self.answered.is_none_or(|answered| answered < at)
    }
}

/// A change under way, from [`ChangeLog::begin`] to [`ChangeLog::end`].
#[derive(Debug)]
pub(crate) struct Change {
    pod: Option<String>,
}

impl ChangeLog {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Counters only: a panic elsewhere leaves them usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The pod of container `id`, when known.
    pub(crate) fn pod_of(&self, id: &str) -> Option<String> {
        self.inner().pod_of.get(id).cloned()
    }

    /// Records that container `id` belongs to pod `uid`.
    pub(crate) fn learn(&self, id: &str, uid: &str) {
        let mut inner = self.inner();
        if inner.pod_of.len() >= MAX_KNOWN && !inner.pod_of.contains_key(id) {
            inner.pod_of.clear();
        }
        inner.pod_of.insert(id.to_owned(), uid.to_owned());
    }

    /// Forgets a removed container.
    pub(crate) fn forget(&self, id: &str) {
        self.inner().pod_of.remove(id);
    }

    /// A change to a container of pod `pod` (unknown: `None`) is asked.
    pub(crate) fn begin(&self, pod: Option<String>) -> Change {
        let mut inner = self.inner();
        let changes = match &pod {
            Some(uid) => inner.pods.entry(uid.clone()).or_default(),
            None => &mut inner.unknown,
        };
        changes.in_flight += 1;
        Change { pod }
    }

    /// The change was answered (done or failed: either may have changed something).
    pub(crate) fn end(&self, change: Change) {
        let mut inner = self.inner();
        let changes = match &change.pod {
            Some(uid) => inner.pods.entry(uid.clone()).or_default(),
            None => &mut inner.unknown,
        };
        changes.in_flight = changes.in_flight.saturating_sub(1);
        changes.answered = Some(Instant::now());
    }

    /// Whether no container of pod `uid` (of any pod when `None`) changed
    /// from `at` until now, nor any container of no known pod, so a listing
    /// asked at `at` still shows those containers as this runtime left them.
    pub(crate) fn unchanged_since(&self, uid: Option<&str>, at: Instant) -> bool {
        let inner = self.inner();
        inner.unknown.none_since(at)
            && match uid {
                Some(uid) => inner.pods.get(uid).is_none_or(|c| c.none_since(at)),
                None => inner.pods.values().all(|c| c.none_since(at)),
            }
    }

    /// Drops what no listing asked at or after `at` can need: pods with
    /// nothing in flight and nothing answered since.
    pub(crate) fn prune(&self, at: Instant) {
        self.inner().pods.retain(|_, c| !c.none_since(at));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_pod_is_unchanged_until_its_own_containers_change() {
        let log = ChangeLog::default();
        log.learn("a1", "a");
        log.learn("b1", "b");
        let listed = Instant::now();
        tokio::time::advance(std::time::Duration::from_millis(1)).await;
        assert!(log.unchanged_since(Some("a"), listed));

        // A change of b, in flight and then answered, leaves a alone.
        let change = log.begin(log.pod_of("b1"));
        assert!(!log.unchanged_since(Some("b"), listed), "in flight");
        assert!(log.unchanged_since(Some("a"), listed));
        log.end(change);
        assert!(
            !log.unchanged_since(Some("b"), listed),
            "answered after the listing"
        );
        assert!(log.unchanged_since(Some("a"), listed));
        tokio::time::advance(std::time::Duration::from_millis(1)).await;
        assert!(
            log.unchanged_since(Some("b"), Instant::now()),
            "a later listing"
        );
        assert!(!log.unchanged_since(None, listed), "any pod: b changed");

        // A container of no known pod may be anybody's.
        let change = log.begin(log.pod_of("x1"));
        assert!(!log.unchanged_since(Some("a"), listed));
        log.end(change);
        assert!(!log.unchanged_since(Some("a"), listed));

        // Pruning keeps what a listing asked then still needs.
        let change = log.begin(Some("c".into()));
        log.prune(Instant::now());
        assert!(
            !log.unchanged_since(Some("c"), listed),
            "in flight survives pruning"
        );
        log.end(change);
        log.forget("a1");
        assert_eq!(log.pod_of("a1"), None);
    }
}
