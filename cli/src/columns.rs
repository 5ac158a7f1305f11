//! Table cells: a column's `.path` evaluated on the object's Kubernetes JSON,
//! or a computed `@name` value shaped like kubectl's printers.

use std::time::{Duration, SystemTime};

use prost_reflect::{Kind, MessageDescriptor};
use serde_json::Value;

use crate::jsonpath;

/// Shown for an absent value, as kubectl does.
pub const NONE: &str = "<none>";

/// The cell of column `path` for `object`, of message `desc`, at `now`.
pub fn cell(path: &str, object: &Value, desc: &MessageDescriptor, now: SystemTime) -> String {
    if let Some(name) = path.strip_prefix('@') {
        return computed(name, object, now);
    }
    let values = jsonpath::eval(object, path).unwrap_or_default();
    if values.is_empty() {
        return zero_of(desc, path).unwrap_or(NONE).to_string();
    }
    let texts: Vec<String> = values.into_iter().map(jsonpath::text).collect();
    texts.join(",")
}

/// The printed zero of a scalar field that proto3 JSON leaves out ("0" for
/// numbers), found by walking the descriptor along a plain `.a.b` path.
fn zero_of(desc: &MessageDescriptor, path: &str) -> Option<&'static str> {
    let mut message = desc.clone();
    let mut parts = path.trim_start_matches('.').split('.').peekable();
    while let Some(part) = parts.next() {
        let field = message.get_field_by_json_name(part)?;
        if field.is_list() || field.is_map() {
            return None;
        }
        match field.kind() {
            Kind::Message(inner) if parts.peek().is_some() => message = inner,
            Kind::Message(_) | Kind::String | Kind::Bytes | Kind::Enum(_) => return None,
            Kind::Bool => return Some("false"),
            _ if parts.peek().is_none() => return Some("0"),
            _ => return None,
        }
    }
    None
}

fn computed(name: &str, o: &Value, now: SystemTime) -> String {
    match name {
        "age" => age_of(o, &["/metadata/creationTimestamp"], now),
        "lastSeen" => age_of(
            o,
            &[
                "/lastTimestamp",
                "/eventTime",
                "/firstTimestamp",
                "/metadata/creationTimestamp",
            ],
            now,
        ),
        "ready" => {
            let total = array(o, "/spec/containers").len();
            let ready = array(o, "/status/containerStatuses")
                .iter()
                .filter(|s| s.get("ready").and_then(Value::as_bool).unwrap_or(false))
                .count();
            format!("{ready}/{total}")
        }
        "podStatus" => pod_status(o),
        "restarts" => array(o, "/status/containerStatuses")
            .iter()
            .filter_map(|s| s.get("restartCount").and_then(Value::as_i64))
            .sum::<i64>()
            .to_string(),
        "servicePorts" => service_ports(o),
        "selector" => selector(o.pointer("/spec/selector")),
        "containers" => template_containers(o, "name"),
        "images" => template_containers(o, "image"),
        "readyOfReplicas" => format!(
            "{}/{}",
            int(o, "/status/readyReplicas"),
            int(o, "/spec/replicas")
        ),
        "endpoints" => endpoints(o),
        "dataCount" => {
            let count = |p: &str| {
                o.pointer(p)
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.len())
            };
            (count("/data") + count("/binaryData") + count("/stringData")).to_string()
        }
        "nodeStatus" => node_status(o),
        "internalIP" => array(o, "/status/addresses")
            .iter()
            .find(|a| a.get("type").and_then(Value::as_str) == Some("InternalIP"))
            .and_then(|a| a.get("address").and_then(Value::as_str))
            .unwrap_or(NONE)
            .to_string(),
        "involvedObject" => {
            let kind = string(o, "/involvedObject/kind").to_lowercase();
            format!("{kind}/{}", string(o, "/involvedObject/name"))
        }
        _ => "<unknown>".to_string(),
    }
}

fn array<'a>(o: &'a Value, pointer: &str) -> &'a [Value] {
    o.pointer(pointer)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn string<'a>(o: &'a Value, pointer: &str) -> &'a str {
    o.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn int(o: &Value, pointer: &str) -> i64 {
    o.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn age_of(o: &Value, pointers: &[&str], now: SystemTime) -> String {
    let Some(stamp) = pointers
        .iter()
        .map(|p| string(o, p))
        .find(|s| !s.is_empty())
    else {
        return "<unknown>".to_string();
    };
    match parse_time(stamp) {
        Some(then) => match now.duration_since(then) {
            Ok(elapsed) => human_duration(elapsed),
            Err(_) => "0s".to_string(),
        },
        None => "<invalid>".to_string(),
    }
}

/// An RFC 3339 timestamp as a time.
pub fn parse_time(stamp: &str) -> Option<SystemTime> {
    let ts: prost_types::Timestamp = stamp.parse().ok()?;
    SystemTime::try_from(ts).ok()
}

/// A duration the way kubectl prints ages: 5s, 3m20s, 45m, 5h3m, 2d, 3y20d.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (m, h) = (s / 60, s / 3600);
    let (days, years) = (h / 24, h / (24 * 365));
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s.is_multiple_of(60) {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m.is_multiple_of(60) {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h.is_multiple_of(24) {
            format!("{days}d")
        } else {
            format!("{days}d{}h", h % 24)
        }
    } else if h < 24 * 365 * 2 {
        format!("{days}d")
    } else if h < 24 * 365 * 8 {
        format!("{years}y{}d", days % 365)
    } else {
        format!("{years}y")
    }
}

fn pod_status(o: &Value) -> String {
    if o.pointer("/metadata/deletionTimestamp").is_some() {
        return "Terminating".to_string();
    }
    let mut status = string(o, "/status/reason").to_string();
    if status.is_empty() {
        status = string(o, "/status/phase").to_string();
    }
    // As kubectl: the last container with a waiting or terminated reason
    // names the status, but a finished sidecar next to running containers
    // does not make a running pod look "Completed".
    let mut has_running = false;
    for s in array(o, "/status/containerStatuses").iter().rev() {
        let waiting = s.pointer("/state/waiting/reason").and_then(Value::as_str);
        let terminated = s
            .pointer("/state/terminated/reason")
            .and_then(Value::as_str);
        if let Some(reason) = waiting.or(terminated).filter(|r| !r.is_empty()) {
            status = reason.to_string();
        } else if s.pointer("/state/running").is_some()
            && s.get("ready").and_then(Value::as_bool).unwrap_or(false)
        {
            has_running = true;
        }
    }
    if status == "Completed" && has_running {
        let ready = array(o, "/status/conditions").iter().any(|c| {
            c.get("type").and_then(Value::as_str) == Some("Ready")
                && c.get("status").and_then(Value::as_str) == Some("True")
        });
        status = if ready { "Running" } else { "NotReady" }.to_string();
    }
    if status.is_empty() {
        "Pending".to_string()
    } else {
        status
    }
}

fn service_ports(o: &Value) -> String {
    let ports: Vec<String> = array(o, "/spec/ports")
        .iter()
        .map(|p| {
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            match p.get("nodePort").and_then(Value::as_i64) {
                Some(node) if node != 0 => format!("{port}:{node}/{proto}"),
                _ => format!("{port}/{proto}"),
            }
        })
        .collect();
    if ports.is_empty() {
        NONE.to_string()
    } else {
        ports.join(",")
    }
}

/// A map selector (`app=web`) or a LabelSelector with matchLabels and
/// matchExpressions, in selector syntax.
fn selector(value: Option<&Value>) -> String {
    selector_text(value).unwrap_or_else(|| NONE.to_string())
}

/// A selector's text in selector syntax; None when it selects nothing.
pub fn selector_text(value: Option<&Value>) -> Option<String> {
    let Some(Value::Object(map)) = value else {
        return None;
    };
    let labels = |m: &serde_json::Map<String, Value>| -> Vec<String> {
        m.iter()
            .map(|(k, v)| format!("{k}={}", jsonpath::text(v)))
            .collect()
    };
    let mut parts = Vec::new();
    if map.contains_key("matchLabels") || map.contains_key("matchExpressions") {
        if let Some(Value::Object(m)) = map.get("matchLabels") {
            parts.extend(labels(m));
        }
        for e in map
            .get("matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = string(e, "/key");
            let values: Vec<String> = array(e, "/values").iter().map(jsonpath::text).collect();
            parts.push(match string(e, "/operator") {
                "Exists" => key.to_string(),
                "DoesNotExist" => format!("!{key}"),
                op => format!("{key} {} ({})", op.to_lowercase(), values.join(",")),
            });
        }
    } else {
        parts = labels(map);
    }
    (!parts.is_empty()).then(|| parts.join(","))
}

fn template_containers(o: &Value, field: &str) -> String {
    let names: Vec<&str> = array(o, "/spec/template/spec/containers")
        .iter()
        .filter_map(|c| c.get(field).and_then(Value::as_str))
        .collect();
    if names.is_empty() {
        NONE.to_string()
    } else {
        names.join(",")
    }
}

fn endpoints(o: &Value) -> String {
    let mut all = Vec::new();
    for subset in array(o, "/subsets") {
        for address in array(subset, "/addresses") {
            let ip = string(address, "/ip");
            let ports = array(subset, "/ports");
            if ports.is_empty() {
                all.push(ip.to_string());
            }
            for port in ports {
                all.push(format!("{ip}:{}", int(port, "/port")));
            }
        }
    }
    match all.len() {
        0 => NONE.to_string(),
        1..=3 => all.join(","),
        n => format!("{} + {} more...", all[..3].join(","), n - 3),
    }
}

fn node_status(o: &Value) -> String {
    let ready = array(o, "/status/conditions")
        .iter()
        .find(|c| string(c, "/type") == "Ready")
        .map(|c| string(c, "/status"));
    let mut status = match ready {
        Some("True") => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }
    .to_string();
    if o.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_finished_sidecar_does_not_hide_a_running_pod() {
        let pod = |ready: &str| {
            json!({"status": {"phase": "Running",
            "conditions": [{"type": "Ready", "status": ready}],
            "containerStatuses": [
                {"name": "web", "ready": true, "state": {"running": {}}},
                {"name": "job", "ready": false, "state": {"terminated": {"reason": "Completed"}}}
            ]}})
        };
        assert_eq!(pod_status(&pod("True")), "Running");
        assert_eq!(pod_status(&pod("False")), "NotReady");
        let crash = json!({"status": {"phase": "Running", "containerStatuses": [
            {"name": "web", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        assert_eq!(pod_status(&crash), "CrashLoopBackOff");
    }

    fn pod_desc() -> MessageDescriptor {
        moor_api::descriptor_pool()
            .get_message_by_name("moor.core.v1.Pod")
            .unwrap()
    }

    #[test]
    fn ages_like_kubectl() {
        let cases = [
            (5, "5s"),
            (119, "119s"),
            (200, "3m20s"),
            (600, "10m"),
            (3 * 3600 + 60, "3h1m"),
            (20 * 3600, "20h"),
            (50 * 3600, "2d2h"),
            (10 * 86400, "10d"),
            (800 * 86400, "2y70d"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(Duration::from_secs(secs)), want, "{secs}");
        }
    }

    #[test]
    fn computed_cells() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let pod = json!({"metadata": {"creationTimestamp": "1970-01-12T13:46:10Z"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"ready": true, "restartCount": 2},
                {"state": {"waiting": {"reason": "CrashLoopBackOff"}}, "restartCount": 1}]}});
        let d = pod_desc();
        assert_eq!(cell("@ready", &pod, &d, now), "1/2");
        assert_eq!(cell("@podStatus", &pod, &d, now), "CrashLoopBackOff");
        assert_eq!(cell("@restarts", &pod, &d, now), "3");
        assert_eq!(cell("@age", &pod, &d, now), "30s");
        assert_eq!(cell("@nope", &pod, &d, now), "<unknown>");
        assert_eq!(cell(".status.podIP", &pod, &d, now), "<none>");
        let svc = json!({"spec": {"ports": [{"port": 80, "protocol": "TCP"}, {"port": 443, "nodePort": 30443, "protocol": "TCP"}],
            "selector": {"app": "web"}}});
        assert_eq!(cell("@servicePorts", &svc, &d, now), "80/TCP,443:30443/TCP");
        assert_eq!(cell("@selector", &svc, &d, now), "app=web");
        let deploy = json!({"spec": {"selector": {"matchLabels": {"app": "web"}}}});
        assert_eq!(cell("@selector", &deploy, &d, now), "app=web");
    }

    #[test]
    fn omitted_numbers_print_zero() {
        let desc = moor_api::descriptor_pool()
            .get_message_by_name("moor.apps.v1.Deployment")
            .unwrap();
        let now = SystemTime::now();
        assert_eq!(cell(".status.replicas", &json!({}), &desc, now), "0");
    }
}
