//! etcd's keys and events as `moor_storage`'s.

use bytes::Bytes;
use etcd_client::EventType;
use moor_storage::{Error as StorageError, Event, EventKind, KeyValue};

/// An etcd key-value as a `KeyValue`; fails on a non-UTF-8 key, which moor
/// never writes.
pub(crate) fn key_value(kv: &etcd_client::KeyValue) -> Result<KeyValue, StorageError> {
    let key = kv
        .key_str()
        .map_err(|e| StorageError::Internal(format!("etcd key is not utf-8: {e}")))?;
    Ok(KeyValue {
        key: key.to_owned(),
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    })
}

/// An etcd watch event (from a watch with `prev_kv`) as an `Event`.
pub(crate) fn event(event: &etcd_client::Event) -> Result<Event, StorageError> {
    let kv = event
        .kv()
        .ok_or_else(|| StorageError::Internal("etcd watch event without a key".into()))?;
    let prev = event.prev_kv().map(key_value).transpose()?;
    match event.event_type() {
        EventType::Put => Ok(Event {
            // Version counts puts since the key was (re)created.
            kind: if kv.version() == 1 {
                EventKind::Create
            } else {
                EventKind::Update
            },
            kv: key_value(kv)?,
            prev,
        }),
        EventType::Delete => {
            // etcd's delete event carries only the key and the revision; the
            // `Store` promises the last value, which is in `prev_kv` (absent
            // only if compaction raced the watch).
            let last = match &prev {
                Some(prev) => KeyValue {
                    mod_revision: kv.mod_revision(),
                    ..prev.clone()
                },
                None => KeyValue {
                    mod_revision: kv.mod_revision(),
                    ..key_value(kv)?
                },
            };
            Ok(Event {
                kind: EventKind::Delete,
                kv: last,
                prev,
            })
        }
    }
}
