//! Which pods' containers changed through a runtime, and when: what lets a
//! shared listing of every container stand in for a listing of one pod's
//! for as long as that pod's containers did not change, however busy the
//! runtime is with other pods (a burst of new pods would otherwise void the
//! listing for everyone at every create and start), and, when they changed
//! through known containers only, with just those inspected afresh.

use std::collections::{HashMap, HashSet};
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
#[derive(Clone, Debug, Default)]
struct Changes {
    /// Asked and not yet answered.
    in_flight: u32,
    /// When the last one was answered.
    answered: Option<Instant>,
    /// When the last one that names no container was answered (a create
    /// that failed: it may have made one all the same).
    anonymous: Option<Instant>,
    /// When the last change to each container was answered.
    ids: HashMap<String, Instant>,
}

impl Changes {
    /// No change in flight, and none answered at or after `at`.
    fn none_since(&self, at: Instant) -> bool {
        self.in_flight == 0 && self.answered.is_none_or(|answered| answered < at)
    }

    /// The containers changed at or after `at`, when every such change
    /// named its container and none is in flight.
    fn known_since(&self, at: Instant, into: &mut HashSet<String>) -> bool {
        if self.in_flight > 0 || self.anonymous.is_some_and(|a| a >= at) {
            return false;
        }
        into.extend(
            self.ids
                .iter()
                .filter(|(_, answered)| **answered >= at)
                .map(|(id, _)| id.clone()),
        );
        true
    }
}

/// A change under way, from [`ChangeLog::begin`] to [`ChangeLog::end`].
#[derive(Debug)]
pub(crate) struct Change {
    pod: Option<String>,
    /// The container changed, once known (a create learns it at the end).
    pub(crate) id: Option<String>,
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

    /// A change to container `id` (a new one: `None`) of pod `pod`
    /// (unknown: `None`) is asked.
    pub(crate) fn begin(&self, pod: Option<String>, id: Option<String>) -> Change {
        let mut inner = self.inner();
        let changes = match &pod {
            Some(uid) => inner.pods.entry(uid.clone()).or_default(),
            None => &mut inner.unknown,
        };
        changes.in_flight += 1;
        Change { pod, id }
    }

    /// The change was answered (done or failed: either may have changed something).
    pub(crate) fn end(&self, change: Change) {
        let mut inner = self.inner();
        let changes = match &change.pod {
            Some(uid) => inner.pods.entry(uid.clone()).or_default(),
            None => &mut inner.unknown,
        };
        let now = Instant::now();
        changes.in_flight = changes.in_flight.saturating_sub(1);
        changes.answered = Some(now);
        match change.id {
            Some(id) => {
                changes.ids.insert(id, now);
            }
            None => changes.anonymous = Some(now),
        }
    }

    /// The containers of pod `uid` (of any pod when `None`) changed from
    /// `at` until now, so that a listing asked at `at`, with those inspected
    /// afresh, shows the containers as this runtime left them; `None` when
    /// that cannot be told (a change in flight, one that named no container,
    /// or a change to a container of no known pod).
    pub(crate) fn changed_since(&self, uid: Option<&str>, at: Instant) -> Option<HashSet<String>> {
        let inner = self.inner();
        if !inner.unknown.none_since(at) {
            return None;
        }
        let mut changed = HashSet::new();
        let known = match uid {
            Some(uid) => inner
                .pods
                .get(uid)
                .is_none_or(|c| c.known_since(at, &mut changed)),
            None => inner.pods.values().all(|c| c.known_since(at, &mut changed)),
        };
        known.then_some(changed)
    }

    /// Drops what no listing asked at or after `at` can need: pods with
    /// nothing in flight and nothing answered since, and older changes of
    /// the others.
    pub(crate) fn prune(&self, at: Instant) {
        let mut inner = self.inner();
        inner.pods.retain(|_, c| !c.none_since(at));
        for changes in inner.pods.values_mut() {
            changes.ids.retain(|_, answered| *answered >= at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing changed: a listing asked at `at` stands as it is.
    fn unchanged(log: &ChangeLog, uid: Option<&str>, at: Instant) -> bool {
        log.changed_since(uid, at).is_some_and(|c| c.is_empty())
    }

    #[tokio::test(start_paused = true)]
    async fn a_pod_is_unchanged_until_its_own_containers_change() {
        let log = ChangeLog::default();
        log.learn("a1", "a");
        log.learn("b1", "b");
        let listed = Instant::now();
        tokio::time::advance(std::time::Duration::from_millis(1)).await;
        assert_eq!(log.changed_since(Some("a"), listed), Some(HashSet::new()));

        // A change of b, in flight and then answered, leaves a alone.
        let change = log.begin(log.pod_of("b1"), Some("b1".into()));
        assert!(!unchanged(&log, Some("b"), listed), "in flight");
        assert_eq!(log.changed_since(Some("a"), listed), Some(HashSet::new()));
        log.end(change);
        assert!(
            !unchanged(&log, Some("b"), listed),
            "answered after the listing"
        );
        assert_eq!(log.changed_since(Some("a"), listed), Some(HashSet::new()));
        tokio::time::advance(std::time::Duration::from_millis(1)).await;
        assert!(
            unchanged(&log, Some("b"), Instant::now()),
            "a later listing"
        );
        assert!(!unchanged(&log, None, listed), "any pod: b changed");

        // A container of no known pod may be anybody's.
        let change = log.begin(log.pod_of("x1"), Some("x1".into()));
        assert!(!unchanged(&log, Some("a"), listed));
        log.end(change);
        assert!(!unchanged(&log, Some("a"), listed));

        // Pruning keeps what a listing asked then still needs.
        let change = log.begin(Some("c".into()), None);
        log.prune(Instant::now());
        assert!(
            !unchanged(&log, Some("c"), listed),
            "in flight survives pruning"
        );
        log.end(change);
        log.forget("a1");
        assert_eq!(log.pod_of("a1"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn changes_that_name_their_containers_are_told_apart() {
        let log = ChangeLog::default();
        log.learn("a1", "a");
        let listed = Instant::now();
        tokio::time::advance(std::time::Duration::from_millis(1)).await;
        let none = HashSet::new();
        assert_eq!(log.changed_since(Some("a"), listed), Some(none.clone()));

        // A start of a1, then a create that named its container.
        let start = log.begin(log.pod_of("a1"), Some("a1".into()));
        assert_eq!(log.changed_since(Some("a"), listed), None, "in flight");
        log.end(start);
        let mut create = log.begin(Some("a".into()), None);
        create.id = Some("a2".into());
        log.end(create);
        let both = HashSet::from(["a1".to_owned(), "a2".to_owned()]);
        assert_eq!(log.changed_since(Some("a"), listed), Some(both.clone()));
        assert_eq!(log.changed_since(None, listed), Some(both));
        tokio::time::advance(std::time::Duration::from_millis(1)).await;
        assert_eq!(
            log.changed_since(Some("a"), Instant::now()),
            Some(none.clone()),
            "a later listing"
        );

        // A create that failed names nothing: the pod needs a listing.
        log.end(log.begin(Some("a".into()), None));
        assert_eq!(log.changed_since(Some("a"), listed), None);
        assert_eq!(log.changed_since(Some("b"), listed), Some(none));

        // Pruning keeps the changes a listing asked then still needs.
        let asked = Instant::now();
        tokio::time::advance(std::time::Duration::from_millis(1)).await;
        log.end(log.begin(Some("b".into()), Some("b1".into())));
        log.prune(asked);
        assert_eq!(
            log.changed_since(Some("b"), asked),
            Some(HashSet::from(["b1".to_owned()]))
        );
    }
}
