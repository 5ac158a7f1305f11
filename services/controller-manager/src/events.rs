//! Events about an object, as `kubectl describe` shows them. Recording is
//! in the background, as kubelet's and the node agent's are: an event never
//! delays the decision it reports (a rolling update's next step waits on
//! the controller's next write, not on its events).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use moor_api::Resource;
use moor_api::core::v1::{Event, EventSource};
use moor_api::meta::v1::{ObjectMeta, ObjectReference};
use moor_client::{Api, Client};

use crate::pods;

/// Events being written at most, per recorder; past it new ones are
/// dropped (as Kubernetes' broadcaster drops past its queue), so a storm of
/// decisions cannot pile up writes without bound.
const MAX_IN_FLIGHT: usize = 1000;

/// Writes events on behalf of one component; failures are logged, never
/// returned: an event is worth less than the decision it reports.
#[derive(Clone, Debug)]
pub struct Recorder {
    api: Api<Event>,
    component: &'static str,
    in_flight: Arc<AtomicUsize>,
}

// === impl Recorder ===

impl Recorder {
    /// A recorder for `component` (e.g. `replicaset-controller`).
    pub fn new(client: &Client, component: &'static str) -> Self {
        Self {
            api: client.api(),
            component,
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Records a Normal event about `object`.
    pub fn normal<K: Resource>(&self, object: &K, reason: &str, message: String) {
        self.record(object, "Normal", reason, message);
    }

    /// Records a Warning event about `object`: something a user must fix.
    pub fn warning<K: Resource>(&self, object: &K, reason: &str, message: String) {
        self.record(object, "Warning", reason, message);
    }

    fn record<K: Resource>(&self, object: &K, kind: &str, reason: &str, message: String) {
        if self.in_flight.fetch_add(1, Ordering::Relaxed) >= MAX_IN_FLIGHT {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            tracing::debug!(component = self.component, %reason, "event dropped: too many being written");
            return;
        }
        let meta = object.meta();
        let now = pods::now();
        let event = Event {
            metadata: Some(ObjectMeta {
                name: format!("{}.{}", meta.name, uuid::Uuid::new_v4().simple()),
                namespace: meta.namespace.clone(),
                ..Default::default()
            }),
            involved_object: Some(ObjectReference {
                kind: K::KIND.to_string(),
                namespace: meta.namespace.clone(),
                name: meta.name.clone(),
                uid: meta.uid.clone(),
                api_version: K::API_VERSION.to_string(),
                resource_version: meta.resource_version.clone(),
                field_path: String::new(),
            }),
            reason: reason.to_string(),
            message,
            source: Some(EventSource {
                component: self.component.to_string(),
                ..Default::default()
            }),
            first_timestamp: Some(now),
            last_timestamp: Some(now),
            count: 1,
            r#type: kind.to_string(),
            reporting_component: self.component.to_string(),
            ..Default::default()
        };
        let (api, component, in_flight) =
            (self.api.clone(), self.component, self.in_flight.clone());
        let reason = reason.to_owned();
        tokio::spawn(async move {
            if let Err(error) = api.create(&event).await {
                tracing::debug!(component, %reason, %error, "event not recorded");
            }
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
}
