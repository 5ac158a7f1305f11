//! The verbs every kind has (Get, List, Create, Update, Delete, Watch), on
//! `DynamicMessage`s, through the kind's service named in its descriptor.

use futures::{Stream, StreamExt};
use moor_codec::KindInfo;
use prost_reflect::{DynamicMessage, ReflectMessage, Value};

use crate::error::Result;
use crate::rpc::Client;

/// Filters of a list or watch.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Namespace; empty: every namespace.
    pub namespace: String,
    /// Label selector.
    pub labels: String,
    /// Field selector.
    pub fields: String,
    /// Lists only: read in pages of at most this many objects, all at the
    /// first page's version (0: in one answer).
    pub chunk_size: i64,
}

/// One change reported by a watch.
#[derive(Clone, Debug)]
pub struct Change {
    /// ADDED, MODIFIED, DELETED or BOOKMARK.
    pub kind: String,
    /// The object.
    pub object: DynamicMessage,
}

/// Reads a string field of `metadata`.
pub fn meta_str(object: &DynamicMessage, field: &str) -> String {
    object
        .get_field_by_name("metadata")
        .and_then(|m| m.as_message().and_then(|m| str_field(m, field)))
        .unwrap_or_default()
}

/// Sets a string field of `metadata`.
pub fn set_meta_str(object: &mut DynamicMessage, field: &str, value: &str) {
    if let Some(meta) = object
        .get_field_by_name_mut("metadata")
        .and_then(Value::as_message_mut)
    {
        meta.set_field_by_name(field, Value::String(value.to_string()));
    }
}

fn str_field(message: &DynamicMessage, field: &str) -> Option<String> {
    message
        .get_field_by_name(field)
        .and_then(|v| v.as_str().map(str::to_string))
}

/// The namespace a request uses for this kind: `namespace` for namespaced
/// kinds, "" for cluster-scoped ones.
pub fn scoped(info: &KindInfo, namespace: &str) -> String {
    if info.namespaced {
        namespace.to_string()
    } else {
        String::new()
    }
}

/// Reads one object.
pub async fn get(
    client: &Client,
    info: &KindInfo,
    namespace: &str,
    name: &str,
) -> Result<DynamicMessage> {
    let method = Client::method(&info.service, "Get")?;
    let mut request = Client::request(&method);
    request.set_field_by_name("namespace", Value::String(scoped(info, namespace)));
    request.set_field_by_name("name", Value::String(name.to_string()));
    client.unary(&method, request).await
}

/// Lists objects, in the server's order.
pub async fn list(
    client: &Client,
    info: &KindInfo,
    filter: &Filter,
) -> Result<Vec<DynamicMessage>> {
    Ok(list_at(client, info, filter).await?.0)
}

/// Lists objects, with the resourceVersion the list is consistent at.
pub async fn list_at(
    client: &Client,
    info: &KindInfo,
    filter: &Filter,
) -> Result<(Vec<DynamicMessage>, String)> {
    let method = Client::method(&info.service, "List")?;
    let mut items = Vec::new();
    let mut token = String::new();
    loop {
        let mut request = filter_request(&method, info, filter);
        request.set_field_by_name("limit", Value::I64(filter.chunk_size));
        request.set_field_by_name("continue", Value::String(token));
        let response = client.unary(&method, request).await?;
        if let Some(Value::List(page)) = response.get_field_by_name("items").as_deref() {
            items.extend(page.iter().filter_map(|i| i.as_message().cloned()));
        }
        token = meta_str(&response, "continue");
        if token.is_empty() {
            return Ok((items, meta_str(&response, "resource_version")));
        }
    }
}

/// Creates an object; returns it as stored.
pub async fn create(
    client: &Client,
    info: &KindInfo,
    object: DynamicMessage,
) -> Result<DynamicMessage> {
    let method = Client::method(&info.service, "Create")?;
    client.unary(&method, object).await
}

/// Updates an object (spec and metadata); returns it as stored.
pub async fn update(
    client: &Client,
    info: &KindInfo,
    object: DynamicMessage,
) -> Result<DynamicMessage> {
    let method = Client::method(&info.service, "Update")?;
    client.unary(&method, object).await
}

/// Deletes an object; returns it as it was (or as marked for deletion).
pub async fn delete(
    client: &Client,
    info: &KindInfo,
    namespace: &str,
    name: &str,
    grace_period: Option<i64>,
    propagation: Option<&str>,
) -> Result<DynamicMessage> {
    let method = Client::method(&info.service, "Delete")?;
    let mut request = Client::request(&method);
    request.set_field_by_name("namespace", Value::String(scoped(info, namespace)));
    request.set_field_by_name("name", Value::String(name.to_string()));
    if let Some(grace) = grace_period {
        request.set_field_by_name("grace_period_seconds", Value::I64(grace));
    }
    if let Some(policy) = propagation {
        request.set_field_by_name("propagation_policy", Value::String(policy.to_string()));
    }
    client.unary(&method, request).await
}

/// Watches objects: an ADDED for each current one, then every change.
/// With a `version` (from a list), only the changes after it.
pub async fn watch(
    client: &Client,
    info: &KindInfo,
    filter: &Filter,
    version: &str,
) -> Result<impl Stream<Item = Result<Change>> + use<>> {
    let method = Client::method(&info.service, "Watch")?;
    let mut request = filter_request(&method, info, filter);
    request.set_field_by_name("resource_version", Value::String(version.to_string()));
    let stream = client.stream(&method, request).await?;
    Ok(stream.map(|event| {
        let event = event?;
        let kind = match event
            .get_field_by_name("type")
            .and_then(|v| v.as_enum_number())
        {
            Some(1) => "ADDED",
            Some(2) => "MODIFIED",
            Some(3) => "DELETED",
            Some(4) => "BOOKMARK",
            _ => "UNKNOWN",
        }
        .to_string();
        let object = event
            .get_field_by_name("object")
            .and_then(|v| v.as_message().cloned())
            .unwrap_or_else(|| DynamicMessage::new(event.descriptor()));
        Ok(Change { kind, object })
    }))
}

fn filter_request(
    method: &prost_reflect::MethodDescriptor,
    info: &KindInfo,
    filter: &Filter,
) -> DynamicMessage {
    let mut request = Client::request(method);
    request.set_field_by_name("namespace", Value::String(scoped(info, &filter.namespace)));
    request.set_field_by_name("label_selector", Value::String(filter.labels.clone()));
    request.set_field_by_name("field_selector", Value::String(filter.fields.clone()));
    request
}
