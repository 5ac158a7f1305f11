//! `describe KIND NAME`: the object as readable `Key: value` lines, then
//! its recent events (those about this very object: same kind, name and
//! uid). The apiserver has no field selector on involvedObject, so events are
//! filtered here.

use std::time::SystemTime;

use prost_reflect::DynamicMessage;
use serde_json::Value;

use crate::args::ObjectArgs;
use crate::cmd::{Ctx, kind, kind_and_name, out};
use crate::columns;
use crate::error::Result;
use crate::objects::{self, Filter};
use crate::table::Table;

/// Width of the key column of the header lines.
const KEY_WIDTH: usize = 14;

/// Runs `describe`.
pub async fn run(ctx: &Ctx, args: ObjectArgs) -> Result<()> {
    let (info, name) = kind_and_name(&args.kind, args.name.as_deref())?;
    let client = ctx.client()?;
    let namespace = objects::scoped(info, &ctx.namespace());
    let object = objects::get(&client, info, &namespace, &name).await?;
    let json = moor_codec::encode_json(&object)?;
    let mut text = String::new();
    let meta = json.get("metadata").cloned().unwrap_or(Value::Null);
    let line = |key: &str, value: String| format!("{:<KEY_WIDTH$}{value}\n", format!("{key}:"));
    let str_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    text.push_str(&line("Name", str_of(&meta, "name")));
    if info.namespaced {
        text.push_str(&line("Namespace", str_of(&meta, "namespace")));
    }
    text.push_str(&line(
        "Kind",
        format!("{} ({})", info.kind, info.api_version),
    ));
    text.push_str(&line("Labels", pairs(meta.get("labels"))));
    text.push_str(&line("Annotations", pairs(meta.get("annotations"))));
    text.push_str(&line("Created", str_of(&meta, "creationTimestamp")));
    if let Some(deleted) = meta.get("deletionTimestamp").and_then(Value::as_str) {
        text.push_str(&line("Deleting", deleted.to_string()));
    }
    text.push_str(&sections(&moor_codec::to_yaml(&object)?));
    let uid = str_of(&meta, "uid");
    text.push_str(&events(&client, info, &namespace, &name, &uid).await?);
    out(&text)
}

/// `k=v` pairs one per line under the key column, or `<none>`.
fn pairs(map: Option<&Value>) -> String {
    let Some(Value::Object(map)) = map else {
        return columns::NONE.to_string();
    };
    if map.is_empty() {
        return columns::NONE.to_string();
    }
    let lines: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{k}={}", crate::jsonpath::text(v)))
        .collect();
    lines.join(&format!("\n{:KEY_WIDTH$}", ""))
}

/// The top-level parts after metadata (spec, status, data...) as indented
/// YAML blocks under a capitalised title, in the codec's Kubernetes order.
fn sections(yaml: &str) -> String {
    let mut text = String::new();
    let mut skipping = true;
    for line in yaml.lines() {
        if !line.starts_with(' ') && !line.starts_with('-') {
            let (key, rest) = line.split_once(':').unwrap_or((line, ""));
            skipping = matches!(key, "apiVersion" | "kind" | "metadata");
            if skipping {
                continue;
            }
            let mut title = key.to_string();
            if let Some(first) = title.get(..1).map(str::to_uppercase) {
                title.replace_range(..1, &first);
            }
            text.push_str(&format!("{title}:{rest}\n"));
        } else if !skipping {
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

/// When an event was last seen (its first time when it has no last), as
/// (seconds, nanoseconds); events without either sort first.
fn last_seen(event: &DynamicMessage) -> (i64, i32) {
    let stamp = |field: &str| {
        let time = event.get_field_by_name(field)?;
        let time = time.as_message()?;
        let seconds = time.get_field_by_name("seconds")?.as_i64()?;
        let nanos = time.get_field_by_name("nanos")?.as_i32()?;
        Some((seconds, nanos))
    };
    stamp("last_timestamp")
        .or_else(|| stamp("first_timestamp"))
        .unwrap_or_default()
}

async fn events(
    client: &crate::rpc::Client,
    info: &moor_codec::KindInfo,
    namespace: &str,
    name: &str,
    uid: &str,
) -> Result<String> {
    let event_kind = kind("events")?;
    let filter = Filter {
        namespace: if info.namespaced {
            namespace.to_string()
        } else {
            String::new()
        },
        ..Filter::default()
    };
    let all = objects::list(client, event_kind, &filter).await?;
    let now = SystemTime::now();
    let mut rows = Vec::new();
    for event in &all {
        let json = moor_codec::encode_json(event)?;
        let involved = |k: &str| {
            json.pointer(&format!("/involvedObject/{k}"))
                .and_then(Value::as_str)
        };
        if involved("kind") != Some(info.kind.as_str()) || involved("name") != Some(name) {
            continue;
        }
        // An earlier object of the same name (a pod deleted and created
        // again) has its own events; they are not this one's.
        if involved("uid").is_some_and(|u| !u.is_empty() && u != uid) {
            continue;
        }
        let cell = |p: &str| columns::cell(p, &json, &event_kind.message, now);
        let source = json
            .pointer("/source/component")
            .and_then(Value::as_str)
            .unwrap_or("");
        rows.push((
            last_seen(event),
            vec![
                cell(".type"),
                cell(".reason"),
                cell("@lastSeen"),
                source.to_string(),
                cell(".message"),
            ],
        ));
    }
    // Oldest first, as kubectl shows them: names do not order events (a
    // controller's carry a random suffix), and they are written in the
    // background, so the list's order is not theirs.
    rows.sort_by_key(|(seen, _)| *seen);
    let rows: Vec<Vec<String>> = rows.into_iter().map(|(_, row)| row).collect();
    if rows.is_empty() {
        return Ok("Events:       <none>\n".to_string());
    }
    let table = Table {
        headers: ["Type", "Reason", "Age", "From", "Message"]
            .map(String::from)
            .to_vec(),
        rows,
    };
    let body: Vec<String> = table
        .render(true)
        .lines()
        .map(|l| format!("  {l}"))
        .collect();
    Ok(format!("Events:\n{}\n", body.join("\n")))
}
