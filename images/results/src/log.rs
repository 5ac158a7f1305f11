//! Structured logs: one JSON object per line on stdout, `{"time","level","msg",...fields,
//! "pod"}`, so a log collector needs no parser of its own.
//!
//! tracing-subscriber's own JSON format names its keys `timestamp`, `message` and `fields`
//! and adds `target`; the application's log schema is `time`, `msg` and flat fields, hence
//! this small formatter.

use std::fmt;

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats each event as one JSON line.
#[derive(Debug, Clone)]
pub struct JsonLines {
    pod: String,
}

/// An event's fields in the order they were written.
#[derive(Debug, Default)]
struct Fields(Vec<(&'static str, Value)>);

/// Logs JSON lines to stdout, tagged with `pod`; `RUST_LOG` filters (default `info`).
pub fn init(pod: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .event_format(JsonLines::new(pod))
        .with_writer(std::io::stdout)
        .with_env_filter(filter)
        .init();
}

// === impl JsonLines ===

impl JsonLines {
    /// A formatter that adds `"pod": pod` to every line.
    pub fn new(pod: &str) -> JsonLines {
        JsonLines { pod: pod.into() }
    }

    /// The line for an event at `level` with `fields` (`message` becomes `msg`), at `time`.
    fn line(&self, time: &str, level: &str, fields: Fields) -> String {
        let mut message = Value::String(String::new());
        let mut rest = Vec::with_capacity(fields.0.len());
        for (name, value) in fields.0 {
            match name {
                "message" => message = value,
                _ => rest.push((name, value)),
            }
        }
        let mut line = format!(
            r#"{{"time":{},"level":{},"msg":{}"#,
            Value::from(time),
            Value::from(level),
            message
        );
        for (name, value) in rest {
            line.push_str(&format!(",{}:{value}", Value::from(name)));
        }
        line.push_str(&format!(r#","pod":{}}}"#, Value::from(self.pod.as_str())));
        line
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let time = crate::record::rfc3339(time::OffsetDateTime::now_utc());
        let level = event.metadata().level().as_str().to_ascii_lowercase();
        writeln!(writer, "{}", self.line(&time, &level, fields))
    }
}

// === impl Fields ===

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.push((field.name(), Value::from(value)));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.push((field.name(), Value::from(value)));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.push((field.name(), Value::from(value)));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.push((field.name(), Value::from(value)));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name(), Value::from(value)));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.push((field.name(), Value::from(value.to_string())));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%x` fields arrive here too, wrapped so that Debug prints their Display form.
        self.0
            .push((field.name(), Value::from(format!("{value:?}"))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_flat_json_with_time_level_msg_first_and_pod_last() {
        let fields = Fields(vec![
            ("message", Value::from("request")),
            ("method", Value::from("GET")),
            ("path", Value::from("/a\"b")),
            ("status", Value::from(200u64)),
            ("duration_ms", Value::from(1.5)),
        ]);
        let line = JsonLines::new("api-0").line("2026-01-02T03:04:05Z", "info", fields);
        assert_eq!(
            line,
            r#"{"time":"2026-01-02T03:04:05Z","level":"info","msg":"request","method":"GET","path":"/a\"b","status":200,"duration_ms":1.5,"pod":"api-0"}"#
        );
        serde_json::from_str::<Value>(&line).unwrap();
    }
}
