//! Events about objects, as `kubectl describe` shows them, recorded the one
//! way every component records them:
//! - in the background: an event never delays the action it reports (a
//!   bind, a rolling update's next step, a container start);
//! - dropped past a bound of writes in flight, as Kubernetes' broadcaster
//!   drops past its queue: under load an event is worth less than the
//!   writes the cluster is busy with;
//! - aggregated: a repeat of a recent event (same object, type, reason and
//!   message) raises that event's `count` and `lastTimestamp` instead of
//!   adding one, as Kubernetes' event correlator does. One write per series
//!   is in flight at a time, carrying the latest count when it is sent:
//!   counts never go backwards, and a burst of repeats costs a few writes.
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
    recent: Mutex<HashMap<SeriesKey, Series>>,
}

/// A recent event and the state of its writes.
struct Series {
    /// The event as last recorded (its count the latest).
    event: Event,
    /// A write of this series is in flight.
    writing: bool,
    /// Recorded again since the write in flight was sent.
    dirty: bool,
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
                // Unfenced: a leader's term may end between a bind (or any
                // write it reports) and its event; the work was done, and
                // its event tells the truth after the term as before.
                api: client.unfenced().api(),
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
                Some(series) => {
                    series.event.count = series.event.count.saturating_add(1);
                    series.event.last_timestamp = Some(now.into());
                    if series.writing {
                        // The write in flight sends this count when it is done.
                        series.dirty = true;
                        inner.in_flight.fetch_sub(1, Ordering::Relaxed);
                        return;
                    }
                    series.writing = true;
                    (series.event.clone(), true)
                }
                None => {
                    let event = inner.event(object, kind, reason, action, message, now);
                    if recent.len() >= MAX_SERIES {
                        recent.clear();
                    }
                    let series = Series {
                        event: event.clone(),
                        writing: true,
                        dirty: false,
                    };
                    recent.insert(key.clone(), series);
                    (event, false)
                }
            }
        };
        let this = self.inner.clone();
        tokio::spawn(async move {
            this.write(key, event, repeat).await;
            this.in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

// === impl Inner ===

impl Inner {
    /// Writes `event` (a new one, or a repeat's update), then again while
    /// the series was recorded meanwhile, each time with its latest count.
    async fn write(&self, key: SeriesKey, mut event: Event, mut repeat: bool) {
        loop {
            let written = if repeat {
                self.api.update(&event).await
            } else {
                self.api.create(&event).await
            };
            if let Err(error) = written {
                let reason = &event.reason;
                tracing::debug!(component = %self.component, %reason, %error, "event not recorded");
            }
            let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
            // Forgotten meanwhile (the memory started over): nothing to add.
            let Some(series) = recent.get_mut(&key) else {
                return;
            };
            if !series.dirty {
                series.writing = false;
                return;
            }
            series.dirty = false;
            event = series.event.clone();
            repeat = true;
        }
    }

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
