//! Events about an object, as `kubectl describe` shows them.

use moor_api::Resource;
use moor_api::core::v1::{Event, EventSource};
use moor_api::meta::v1::{ObjectMeta, ObjectReference};
use moor_client::{Api, Client};

use crate::pods;

/// Writes events on behalf of one component; failures are logged, never
/// returned: an event is worth less than the decision it reports.
#[derive(Clone, Debug)]
pub struct Recorder {
    api: Api<Event>,
    component: &'static str,
}

// === impl Recorder ===

impl Recorder {
    /// A recorder for `component` (e.g. `replicaset-controller`).
    pub fn new(client: &Client, component: &'static str) -> Self {
        Self {
            api: client.api(),
            component,
        }
    }

    /// Records a Normal event about `object`.
    pub async fn normal<K: Resource>(&self, object: &K, reason: &str, message: String) {
        self.record(object, "Normal", reason, message).await;
    }

    /// Records a Warning event about `object`: something a user must fix.
    pub async fn warning<K: Resource>(&self, object: &K, reason: &str, message: String) {
        self.record(object, "Warning", reason, message).await;
    }

    async fn record<K: Resource>(&self, object: &K, kind: &str, reason: &str, message: String) {
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
        if let Err(error) = self.api.create(&event).await {
            tracing::debug!(component = self.component, %reason, %error, "event not recorded");
        }
    }
}
