//! Deletion propagation: how a delete's `propagationPolicy` becomes the
//! garbage collector's finalizers on the object, as Kubernetes does it.
//!
//! Orphan and Foreground do not delete at once: the object gets the
//! `orphan` or `foregroundDeletion` finalizer and a deletionTimestamp; the
//! garbage collector (controller-manager) orphans or deletes the dependents,
//! then removes the finalizer, and the registry removes the object. Background
//! deletes at once and leaves the dependents to the collector.

use crate::error::Error;

pub use moor_api::well_known::{FINALIZER_FOREGROUND as FOREGROUND, FINALIZER_ORPHAN as ORPHAN};

/// The kinds whose changes the garbage collector follows, and so the only
/// ones whose finalizers it removes (controller-manager's `gc` registers an
/// informer for exactly these). A propagation finalizer on any other kind
/// would hold the object forever, so there the policy is ignored: moor
/// collects nothing against those kinds anyway.
const COLLECTED: &[&str] = &[
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "Service",
    "Endpoints",
    "ConfigMap",
    "Secret",
];

/// What happens to an object's dependents when it is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// The object goes at once; the collector deletes the dependents after.
    Background,
    /// The dependents go first, then the object.
    Foreground,
    /// The dependents lose their reference to the object and stay.
    Orphan,
}

// === impl Policy ===

impl Policy {
    /// Parses a request's policy; empty gives `None`: the finalizers the
    /// object already has decide, and without any it is Background.
    pub fn parse(text: &str) -> Result<Option<Self>, Error> {
        match text {
            "" => Ok(None),
            "Background" => Ok(Some(Self::Background)),
            "Foreground" => Ok(Some(Self::Foreground)),
            "Orphan" => Ok(Some(Self::Orphan)),
            other => Err(Error::BadRequest(format!(
                "invalid propagationPolicy {other:?}: use Background, Foreground or Orphan"
            ))),
        }
    }

    /// Sets the propagation finalizers of an object of `kind` for `policy`
    /// (replacing another policy's, as a second delete may change its mind);
    /// returns whether they changed.
    pub fn apply(policy: Option<Self>, kind: &str, finalizers: &mut Vec<String>) -> bool {
        let Some(policy) = policy else {
            return false;
        };
        if !COLLECTED.contains(&kind) {
            return false;
        }
        let before = finalizers.len();
        let (wanted, unwanted): (&[&str], &[&str]) = match policy {
            Self::Background => (&[], &[ORPHAN, FOREGROUND]),
            Self::Foreground => (&[FOREGROUND], &[ORPHAN]),
            Self::Orphan => (&[ORPHAN], &[FOREGROUND]),
        };
        finalizers.retain(|f| !unwanted.contains(&f.as_str()));
        let mut changed = finalizers.len() != before;
        for wanted in wanted {
            if !finalizers.iter().any(|f| f == wanted) {
                finalizers.push(wanted.to_string());
                changed = true;
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(policy: Option<Policy>, kind: &str, start: &[&str]) -> (bool, Vec<String>) {
        let mut finalizers: Vec<String> = start.iter().map(|f| f.to_string()).collect();
        let changed = Policy::apply(policy, kind, &mut finalizers);
        (changed, finalizers)
    }

    #[test]
    fn policies_parse_and_unknown_ones_are_refused() {
        assert_eq!(Policy::parse("").unwrap(), None);
        assert_eq!(Policy::parse("Orphan").unwrap(), Some(Policy::Orphan));
        assert!(matches!(Policy::parse("orphan"), Err(Error::BadRequest(_))));
    }

    #[test]
    fn each_policy_sets_its_own_finalizer_only() {
        let hold = "example.com/hold";
        assert_eq!(
            apply(Some(Policy::Orphan), "Deployment", &[hold]),
            (true, vec![hold.to_string(), ORPHAN.to_string()])
        );
        assert_eq!(
            apply(Some(Policy::Foreground), "Deployment", &[ORPHAN]),
            (true, vec![FOREGROUND.to_string()])
        );
        assert_eq!(
            apply(Some(Policy::Background), "Pod", &[FOREGROUND, hold]),
            (true, vec![hold.to_string()])
        );
        assert_eq!(
            apply(Some(Policy::Orphan), "Pod", &[ORPHAN]),
            (false, vec![ORPHAN.to_string()])
        );
        assert_eq!(apply(None, "Pod", &[]), (false, vec![]));
    }

    #[test]
    fn kinds_the_collector_does_not_follow_get_no_finalizer() {
        assert_eq!(apply(Some(Policy::Orphan), "Node", &[]), (false, vec![]));
        assert_eq!(
            apply(Some(Policy::Foreground), "Namespace", &[]),
            (false, vec![])
        );
    }
}
