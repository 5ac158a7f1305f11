//! What the replica controller needs of a ReplicationController or a
//! ReplicaSet, so one implementation serves both.

use moor_api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use moor_api::core::v1::{PodTemplateSpec, ReplicationController, ReplicationControllerStatus};
use moor_client::Scalable;
use moor_labels::Selector;

use crate::selector;

/// The status fields both kinds share.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Active pods owned.
    pub replicas: i32,
    /// Of those, the ones carrying every template label.
    pub fully_labeled_replicas: i32,
    /// Of those, the ready ones.
    pub ready_replicas: i32,
    /// Of those, the ones ready for minReadySeconds.
    pub available_replicas: i32,
    /// The generation these counts were computed for.
    pub observed_generation: i64,
}

/// A kind that keeps a number of pods from a template alive.
pub trait ReplicaOwner: Scalable {
    /// The component name events are reported under.
    const COMPONENT: &'static str;

    /// Desired replicas (unset means 1, as the apiserver defaults it).
    fn replicas(&self) -> i32;
    /// Seconds a pod must be ready to count as available.
    fn min_ready_seconds(&self) -> i32;
    /// Which pods belong to it.
    fn selector(&self) -> Result<Selector, String>;
    /// The pod template.
    fn template(&self) -> Option<&PodTemplateSpec>;
    /// The status counts as last written.
    fn counts(&self) -> Counts;
    /// Sets the status counts, keeping the rest of the status.
    fn set_counts(&mut self, counts: Counts);
}

impl ReplicaOwner for ReplicationController {
    const COMPONENT: &'static str = "replication-controller";

    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().map_or(0, |s| s.min_ready_seconds)
    }

    fn selector(&self) -> Result<Selector, String> {
        let map = self.spec.as_ref().map(|s| &s.selector);
        // An empty selector would select every pod in the namespace;
        // the apiserver defaults it from the template, so refuse it here.
        match map {
            Some(map) if !map.is_empty() => {
                Selector::from_match_labels(map.clone()).map_err(|e| e.to_string())
            }
            _ => Err("empty selector".to_string()),
        }
    }

    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }

    fn counts(&self) -> Counts {
        let s = self.status.clone().unwrap_or_default();
        Counts {
            replicas: s.replicas,
            fully_labeled_replicas: s.fully_labeled_replicas,
            ready_replicas: s.ready_replicas,
            available_replicas: s.available_replicas,
            observed_generation: s.observed_generation,
        }
    }

    fn set_counts(&mut self, c: Counts) {
        let s = self
            .status
            .get_or_insert_with(ReplicationControllerStatus::default);
        s.replicas = c.replicas;
        s.fully_labeled_replicas = c.fully_labeled_replicas;
        s.ready_replicas = c.ready_replicas;
        s.available_replicas = c.available_replicas;
        s.observed_generation = c.observed_generation;
    }
}

impl ReplicaOwner for ReplicaSet {
    const COMPONENT: &'static str = "replicaset-controller";

    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().map_or(0, |s| s.min_ready_seconds)
    }

    fn selector(&self) -> Result<Selector, String> {
        let selector = self
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .ok_or_else(|| "no selector".to_string())?;
        let selector = selector::from_label_selector(selector)?;
        if selector.is_empty() {
            return Err("empty selector".to_string());
        }
        Ok(selector)
    }

    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }

    fn counts(&self) -> Counts {
        let s = self.status.clone().unwrap_or_default();
        Counts {
            replicas: s.replicas,
            fully_labeled_replicas: s.fully_labeled_replicas,
            ready_replicas: s.ready_replicas,
            available_replicas: s.available_replicas,
            observed_generation: s.observed_generation,
        }
    }

    fn set_counts(&mut self, c: Counts) {
        let s = self.status.get_or_insert_with(ReplicaSetStatus::default);
        s.replicas = c.replicas;
        s.fully_labeled_replicas = c.fully_labeled_replicas;
        s.ready_replicas = c.ready_replicas;
        s.available_replicas = c.available_replicas;
        s.observed_generation = c.observed_generation;
    }
}
