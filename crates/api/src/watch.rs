//! Watch events, encoded once and shared by every watcher.
//!
//! Every kind's `<Kind>Event` proto message (`type`, `object`) maps to
//! `WatchEvent<Kind>`. It encodes exactly like the generated message would, but
//! can also carry its bytes pre-encoded: the apiserver encodes each change once
//! and hands the same bytes to a thousand watch streams.

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{DecodeContext, WireType};

use crate::meta::v1::EventType;

/// One change in a watch stream: what happened, and the object.
#[derive(Clone, Default, PartialEq)]
pub struct WatchEvent<K> {
    /// ADDED, MODIFIED, DELETED or BOOKMARK (a `meta.v1.EventType`).
    pub r#type: i32,
    /// The object (for BOOKMARK, only its metadata.resourceVersion is set).
    pub object: Option<K>,
    /// The encoded form, when built with `WatchEvent::encode_once`.
    encoded: Option<Bytes>,
}

// === impl WatchEvent ===

impl<K: prost::Message + Default> WatchEvent<K> {
    /// An event with a decoded object.
    pub fn new(r#type: EventType, object: K) -> Self {
        Self {
            r#type: r#type as i32,
            object: Some(object),
            encoded: None,
        }
    }

    /// Encodes the event once; the result encodes by copying those bytes and
    /// carries no decoded object.
    pub fn encode_once(r#type: EventType, object: &K) -> Self {
        let event = Self {
            r#type: r#type as i32,
            object: None,
            encoded: None,
        };
        let mut buf = Vec::with_capacity(object.encoded_len() + 8);
        prost::encoding::int32::encode(1, &event.r#type, &mut buf);
        prost::encoding::message::encode(2, object, &mut buf);
        Self {
            encoded: Some(buf.into()),
            ..event
        }
    }

    /// The kind of event, or `None` for a value this build does not know.
    pub fn event_type(&self) -> Option<EventType> {
        EventType::try_from(self.r#type).ok()
    }
}

impl<K> std::fmt::Debug for WatchEvent<K>
where
    K: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchEvent")
            .field("type", &self.r#type)
            .field("object", &self.object)
            .field("pre_encoded", &self.encoded.as_ref().map(Bytes::len))
            .finish()
    }
}

impl<K> prost::Message for WatchEvent<K>
where
    K: prost::Message + Default,
{
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if let Some(bytes) = &self.encoded {
            buf.put_slice(bytes);
            return;
        }
        if self.r#type != 0 {
            prost::encoding::int32::encode(1, &self.r#type, buf);
        }
        if let Some(object) = &self.object {
            prost::encoding::message::encode(2, object, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        self.encoded = None;
        match tag {
            1 => prost::encoding::int32::merge(wire_type, &mut self.r#type, buf, ctx),
            2 => prost::encoding::message::merge(
                wire_type,
                self.object.get_or_insert_with(K::default),
                buf,
                ctx,
            ),
            _ => prost::encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        if let Some(bytes) = &self.encoded {
            return bytes.len();
        }
        let mut len = 0;
        if self.r#type != 0 {
            len += prost::encoding::int32::encoded_len(1, &self.r#type);
        }
        if let Some(object) = &self.object {
            len += prost::encoding::message::encoded_len(2, object);
        }
        len
    }

    fn clear(&mut self) {
        self.r#type = 0;
        self.object = None;
        self.encoded = None;
    }
}

macro_rules! aliases {
    ($($alias:ident = $ty:ty;)*) => {
        $(
            #[doc = concat!("The watch event of `", stringify!($ty), "`.")]
            pub type $alias = WatchEvent<$ty>;
        )*
    };
}

aliases! {
    NamespaceWatchEvent = crate::core::v1::Namespace;
    NodeWatchEvent = crate::core::v1::Node;
    PodWatchEvent = crate::core::v1::Pod;
    ServiceWatchEvent = crate::core::v1::Service;
    EndpointsWatchEvent = crate::core::v1::Endpoints;
    ConfigMapWatchEvent = crate::core::v1::ConfigMap;
    SecretWatchEvent = crate::core::v1::Secret;
    EventWatchEvent = crate::core::v1::Event;
    ReplicationControllerWatchEvent = crate::core::v1::ReplicationController;
    ReplicaSetWatchEvent = crate::apps::v1::ReplicaSet;
    DeploymentWatchEvent = crate::apps::v1::Deployment;
    LeaseWatchEvent = crate::coordination::v1::Lease;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::v1::Pod;
    use crate::meta::v1::ObjectMeta;
    use prost::Message;

    #[test]
    fn pre_encoded_event_matches_plain_encoding_and_decodes() {
        let pod = Pod {
            metadata: Some(ObjectMeta {
                name: "web".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let plain = WatchEvent::new(EventType::Modified, pod.clone()).encode_to_vec();
        let once = WatchEvent::encode_once(EventType::Modified, &pod).encode_to_vec();
        assert_eq!(plain, once);
        let decoded = WatchEvent::<Pod>::decode(once.as_slice()).unwrap();
        assert_eq!(decoded.event_type(), Some(EventType::Modified));
        assert_eq!(decoded.object, Some(pod));
    }
}
