//! Events about objects, as `kubectl describe` shows them, recorded the one
//! way every component records them:
//! - in the background: an event never delays the action it reports (a
//!   bind, a rolling update's next step, a container start);
//! - dropped past a bound of writes in flight, as Kubernetes' broadcaster
//!   drops past its queue: under load an event is worth less than the
//!   writes the cluster is busy with;
//! - aggregated: a repeat of a recent event (same object, type, reason and
//!   message) raises that event's `count` and `lastTimestamp` instead of
//!   adding one, as Kubernetes' event correlator does.
//!
//! Failures are logged, never returned.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use moor_api::Resource;
use moor_api::core::v1::{Event, EventSource};
use moor_api::meta::v1::{ObjectMeta, ObjectReference};

use crate::{Api, Client};

/// Event writes in flight at most, per recorder; past it new events are
/// dropped.
const MAX_IN_FLIGHT: usize = 1000;
/// Recent events remembered for aggregation, per recorder; past it the
/// memory starts over (a repeat then adds an event).
const MAX_SERIES: usize = 4096;

/// What makes two events one series: the object (by uid), type, reason
/// and message.
type SeriesKey = (String, String, String, String);

/// Records events on behalf of one component. Cheap to clone; clones share
/// the bound and the aggregation.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

struct Inner {
    api: Api<Event>,
    component: String,
    host: String,
    instance: String,
    in_flight: AtomicUsize,
    recent: Mutex<HashMap<SeriesKey, Event>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("component", &self.inner.component)
            .field("host", &self.inner.host)
            .finish_non_exhaustive()
    }
}

// === impl Recorder ===

impl Recorder {
    /// A recorder for `component` (e.g. `replicaset-controller`).
    pub fn new(client: &Client, component: &str) -> Self {
        Self::build(client, component, "", "")
    }

    /// A recorder for `component` running as `instance` (a scheduler's
    /// identity) on `host` (a node agent's node; empty for the control
    /// plane).
    pub fn reporting(client: &Client, component: &str, instance: &str, host: &str) -> Self {
        Self::build(client, component, instance, host)
    }

    fn build(client: &Client, component: &str, instance: &str, host: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                api: client.api(),
                component: component.to_owned(),
                host: host.to_owned(),
                instance: instance.to_owned(),
                in_flight: AtomicUsize::new(0),
                recent: Mutex::default(),
            }),
        }
    }

    /// Records a Normal event about `object`.
    pub fn normal<K: Resource>(&self, object: &K, reason: &str, message: String) {
        self.record(object, "Normal", reason, "", message);
    }

    /// Records a Warning event about `object`: something a user must fix.
    pub fn warning<K: Resource>(&self, object: &K, reason: &str, message: String) {
        self.record(object, "Warning", reason, "", message);
    }

    /// Records an event of `kind` (Normal or Warning) about `object`, with
    /// the `action` taken, if one is worth naming.
    pub fn record<K: Resource>(
        &self,
        object: &K,
        kind: &str,
        reason: &str,
        action: &str,
        message: String,
    ) {
        let inner = &self.inner;
        if inner.in_flight.fetch_add(1, Ordering::Relaxed) >= MAX_IN_FLIGHT {
            inner.in_flight.fetch_sub(1, Ordering::Relaxed);
            tracing::debug!(component = %inner.component, %reason, "event dropped: too many being written");
            return;
        }
        let meta = object.meta();
        let now = SystemTime::now();
        let key = (
            meta.uid.clone(),
            kind.to_owned(),
            reason.to_owned(),
            message.clone(),
        );
        let (event, repeat) = {
            let mut recent = inner.recent.lock().unwrap_or_else(PoisonError::into_inner);
            match recent.get_mut(&key) {
                Some(event) => {
                    event.count = event.count.saturating_add(1);
                    event.last_timestamp = Some(now.into());
                    (event.clone(), true)
                }
                None => {
                    let event = inner.event(object, kind, reason, action, message, now);
                    if recent.len() >= MAX_SERIES {
                        recent.clear();
                    }
                    recent.insert(key, event.clone());
                    (event, false)
                }
            }
        };
        let this = self.inner.clone();
        tokio::spawn(async move {
            let written = if repeat {
                this.api.update(&event).await
            } else {
                this.api.create(&event).await
            };
            if let Err(error) = written {
                let reason = &event.reason;
                tracing::debug!(component = %this.component, %reason, %error, "event not recorded");
            }
            this.in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

// === impl Inner ===

impl Inner {
    fn event<K: Resource>(
        &self,
        object: &K,
        kind: &str,
        reason: &str,
        action: &str,
        message: String,
        now: SystemTime,
    ) -> Event {
        let meta = object.meta();
        let nanos = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Event {
            metadata: Some(ObjectMeta {
                // Kubernetes names events "<object>.<hex nanoseconds>".
                name: format!("{}.{nanos:x}", meta.name),
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
            reason: reason.to_owned(),
            message,
            source: Some(EventSource {
                component: self.component.clone(),
                host: self.host.clone(),
            }),
            first_timestamp: Some(now.into()),
            last_timestamp: Some(now.into()),
            count: 1,
            r#type: kind.to_owned(),
            action: action.to_owned(),
            reporting_component: self.component.clone(),
            reporting_instance: self.instance.clone(),
            ..Default::default()
        }
    }
}
