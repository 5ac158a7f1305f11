//! The result record both binaries speak: what a client submits, what the API stores and
//! lists, and the per-suite summary. Validation refuses input with the name of the field.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The fields `POST /results` accepts; the server assigns `id` (and `time` when absent).
pub const FIELDS: &[&str] = &["suite", "passed", "failed", "duration_seconds", "time"];

/// One stored test run: a line of `results.jsonl` and an element of `GET /results`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Unique across replicas: milliseconds since the epoch and 32 random bits.
    pub id: String,
    /// 1 to 63 characters of `a-z`, `0-9`, `-`, `.`, `_`.
    pub suite: String,
    /// Tests that passed.
    pub passed: u32,
    /// Tests that failed.
    pub failed: u32,
    /// How long the run took: finite and not negative.
    pub duration_seconds: f64,
    /// When the run happened, RFC 3339 in UTC (`Z`).
    pub time: String,
}

/// What a client submits: a record without its id, the time optional.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    /// See [`Record::suite`].
    pub suite: String,
    /// See [`Record::passed`].
    pub passed: u32,
    /// See [`Record::failed`].
    pub failed: u32,
    /// See [`Record::duration_seconds`].
    pub duration_seconds: f64,
    /// See [`Record::time`]; the server's clock when absent.
    pub time: Option<String>,
}

/// Per-suite totals, as `GET /summary` lists them (sorted by suite).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The suite.
    pub suite: String,
    /// How many runs were recorded.
    pub runs: u64,
    /// Tests passed over all runs.
    pub passed: u64,
    /// Tests failed over all runs.
    pub failed: u64,
    /// `passed / (passed + failed)` in percent; 0 when no test ran.
    pub pass_rate: f64,
}

/// Input refused: which field, and what it must be.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    /// The offending field (`body` when the input is not a JSON object at all).
    pub field: String,
    /// What the field must be.
    pub reason: String,
}

// === impl Submission ===

impl Submission {
    /// Reads a JSON object, field by field so that every refusal names its field (serde's
    /// own messages do not for wrong types). Unknown fields are refused: a typo must not
    /// silently drop a count.
    pub fn from_json(body: &[u8]) -> Result<Submission, Invalid> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|err| Invalid::new("body", format!("not valid JSON: {err}")))?;
        let Value::Object(map) = value else {
            return Err(Invalid::new("body", "must be a JSON object"));
        };
        if let Some(unknown) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            let reason = match unknown.as_str() {
                "id" => "assigned by the server".to_owned(),
                _ => format!("unknown field; expected {}", FIELDS.join(", ")),
            };
            return Err(Invalid::new(unknown, reason));
        }
        let suite = match map.get("suite") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(Invalid::new("suite", SUITE_RULE)),
        };
        let duration_seconds = match map.get("duration_seconds") {
            Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
            _ => f64::NAN,
        };
        let time = match map.get("time") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(Invalid::new("time", TIME_RULE)),
        };
        Ok(Submission {
            suite,
            passed: count(&map, "passed")?,
            failed: count(&map, "failed")?,
            duration_seconds,
            time,
        })
    }

    /// The JSON object [`Submission::from_json`] reads. Cannot fail: every field is a string
    /// or a number, and a duration JSON cannot hold (NaN, infinite) becomes `null`, which the
    /// API refuses by name.
    pub fn to_json(&self) -> Vec<u8> {
        let mut map = Map::new();
        map.insert("suite".into(), Value::from(self.suite.as_str()));
        map.insert("passed".into(), Value::from(self.passed));
        map.insert("failed".into(), Value::from(self.failed));
        map.insert(
            "duration_seconds".into(),
            Value::from(self.duration_seconds),
        );
        if let Some(time) = &self.time {
            map.insert("time".into(), Value::from(time.as_str()));
        }
        Value::Object(map).to_string().into_bytes()
    }

    /// Checks every field and makes the record to store, stamped with `id` and, when the
    /// client gave no time, `now`. The time is stored in one canonical UTC form.
    pub fn into_record(self, id: String, now: OffsetDateTime) -> Result<Record, Invalid> {
        if !valid_suite(&self.suite) {
            return Err(Invalid::new("suite", SUITE_RULE));
        }
        if !(self.duration_seconds.is_finite() && self.duration_seconds >= 0.0) {
            return Err(Invalid::new("duration_seconds", DURATION_RULE));
        }
        let time = match &self.time {
            None => now,
            Some(text) => match OffsetDateTime::parse(text, &Rfc3339) {
                Ok(t) if t.offset().is_utc() => t,
                _ => return Err(Invalid::new("time", TIME_RULE)),
            },
        };
        Ok(Record {
            id,
            suite: self.suite,
            passed: self.passed,
            failed: self.failed,
            duration_seconds: self.duration_seconds,
            time: rfc3339(time),
        })
    }
}

/// What `suite` must be.
pub const SUITE_RULE: &str = "must be 1-63 characters of a-z, 0-9, '-', '.', '_'";
/// What `passed` and `failed` must be.
pub const COUNT_RULE: &str = "must be a whole number from 0 to 4294967295";
/// What `duration_seconds` must be.
pub const DURATION_RULE: &str = "must be a number of seconds, finite and not negative";
/// What `time` must be.
pub const TIME_RULE: &str = "must be an RFC 3339 time in UTC, such as 2026-01-02T03:04:05Z";

fn count(map: &Map<String, Value>, field: &str) -> Result<u32, Invalid> {
    map.get(field)
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| Invalid::new(field, COUNT_RULE))
}

/// Whether `suite` is 1 to 63 characters of `a-z`, `0-9`, `-`, `.`, `_`.
pub fn valid_suite(suite: &str) -> bool {
    (1..=63).contains(&suite.len())
        && suite
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_'))
}

// === impl Invalid ===

impl Invalid {
    /// A refusal of `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Invalid {
        Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

// === impl Record ===

impl Record {
    /// The record's time, for ordering; `None` for a time that does not parse (a hand-edited
    /// file), which sorts as the oldest.
    pub fn parsed_time(&self) -> Option<OffsetDateTime> {
        OffsetDateTime::parse(&self.time, &Rfc3339).ok()
    }
}

/// Sorts newest first: by time, then by position in the file (later appended first).
pub fn newest_first(records: Vec<Record>) -> Vec<Record> {
    let mut keyed: Vec<_> = records
        .into_iter()
        .enumerate()
        .map(|(at, r)| ((r.parsed_time(), at), r))
        .collect();
    keyed.sort_by_key(|(key, _)| std::cmp::Reverse(*key));
    keyed.into_iter().map(|(_, r)| r).collect()
}

/// Totals per suite, sorted by suite. Counts are summed in u64 (saturating), so no number of
/// runs overflows, and a suite with no tests has a pass rate of 0, not NaN.
pub fn summarize(records: &[Record]) -> Vec<Summary> {
    let mut totals: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
    for record in records {
        let (runs, passed, failed) = totals.entry(&record.suite).or_default();
        *runs = runs.saturating_add(1);
        *passed = passed.saturating_add(u64::from(record.passed));
        *failed = failed.saturating_add(u64::from(record.failed));
    }
    totals
        .into_iter()
        .map(|(suite, (runs, passed, failed))| Summary {
            suite: suite.to_owned(),
            runs,
            passed,
            failed,
            pass_rate: pass_rate(passed, failed),
        })
        .collect()
}

/// `passed / (passed + failed)` in percent; 0 when no test ran.
pub fn pass_rate(passed: u64, failed: u64) -> f64 {
    match passed.saturating_add(failed) {
        0 => 0.0,
        // u64 to f64 loses precision only past 2^53 tests, far beyond a percentage's needs.
        total => passed as f64 * 100.0 / total as f64,
    }
}

/// A new record id: milliseconds since the epoch (so ids roughly sort by creation) and 32
/// random bits (so replicas sharing the file do not collide within a millisecond).
pub fn new_id(now: OffsetDateTime) -> String {
    static FALLBACK: AtomicU32 = AtomicU32::new(0);
    let millis = now.unix_timestamp_nanos() / 1_000_000;
    // Without the kernel's randomness, the process id and a counter still tell replicas'
    // ids apart (each replica runs in its own PID namespace, though, hence only a fallback).
    let random = getrandom::u32()
        .unwrap_or_else(|_| std::process::id() ^ FALLBACK.fetch_add(1, Ordering::Relaxed) << 16);
    format!("{millis}-{random:08x}")
}

/// `time` as RFC 3339 in UTC with exactly three fractional digits, so that every time has
/// one width and text order is time order (for people reading the file, too).
pub fn rfc3339(time: OffsetDateTime) -> String {
    let t = time.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(suite: &str, passed: u32, failed: u32, time: &str) -> Record {
        Record {
            id: format!("{suite}-{time}"),
            suite: suite.into(),
            passed,
            failed,
            duration_seconds: 1.0,
            time: time.into(),
        }
    }

    fn refusal(json: &str) -> Invalid {
        let now = OffsetDateTime::UNIX_EPOCH;
        match Submission::from_json(json.as_bytes()).and_then(|s| s.into_record("x".into(), now)) {
            Ok(record) => panic!("{json} was accepted as {record:?}"),
            Err(invalid) => invalid,
        }
    }

    #[test]
    fn refusals_name_the_field() {
        let good = r#""suite":"unit","passed":1,"failed":0,"duration_seconds":2.5"#;
        let cases = [
            (
                r#"{"suite":"Unit","passed":1,"failed":0,"duration_seconds":1}"#,
                "suite",
            ),
            (
                r#"{"suite":"","passed":1,"failed":0,"duration_seconds":1}"#,
                "suite",
            ),
            (r#"{"passed":1,"failed":0,"duration_seconds":1}"#, "suite"),
            (
                r#"{"suite":"u","passed":-1,"failed":0,"duration_seconds":1}"#,
                "passed",
            ),
            (
                r#"{"suite":"u","passed":1,"failed":4294967296,"duration_seconds":1}"#,
                "failed",
            ),
            (
                r#"{"suite":"u","passed":1,"failed":"2","duration_seconds":1}"#,
                "failed",
            ),
            (
                r#"{"suite":"u","passed":1,"failed":0,"duration_seconds":-1}"#,
                "duration_seconds",
            ),
            (r#"{"suite":"u","passed":1,"failed":0}"#, "duration_seconds"),
            (
                &format!(r#"{{{good},"time":"2026-01-02T03:04:05+01:00"}}"#),
                "time",
            ),
            (&format!(r#"{{{good},"time":"yesterday"}}"#), "time"),
            (&format!(r#"{{{good},"id":"mine"}}"#), "id"),
            (&format!(r#"{{{good},"pased":3}}"#), "pased"),
            ("[1]", "body"),
            ("{", "body"),
        ];
        for (json, field) in cases {
            let invalid = refusal(json);
            assert_eq!(invalid.field, field, "{json}: {invalid}");
            assert!(invalid.to_string().starts_with(&format!("{field}: ")));
        }
        assert_eq!(
            refusal(r#"{"suite":"a b","passed":1,"failed":0,"duration_seconds":1}"#).to_string(),
            "suite: must be 1-63 characters of a-z, 0-9, '-', '.', '_'"
        );
    }

    #[test]
    fn submissions_round_trip_through_json() {
        let submission = Submission {
            suite: "unit".into(),
            passed: u32::MAX,
            failed: 0,
            duration_seconds: 0.25,
            time: Some("2026-01-02T03:04:05Z".into()),
        };
        assert_eq!(Submission::from_json(&submission.to_json()), Ok(submission));
        let nan = Submission {
            suite: "unit".into(),
            passed: 1,
            failed: 0,
            duration_seconds: f64::NAN,
            time: None,
        };
        let refused = Submission::from_json(&nan.to_json())
            .and_then(|s| s.into_record("x".into(), OffsetDateTime::UNIX_EPOCH));
        assert_eq!(refused.map_err(|e| e.field), Err("duration_seconds".into()));
    }

    #[test]
    fn accepted_records_get_an_id_and_a_canonical_utc_time() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let json = br#"{"suite":"e2e.v1_x-9","passed":3,"failed":1,"duration_seconds":0}"#;
        let record = Submission::from_json(json)
            .and_then(|s| s.into_record("id-1".into(), now))
            .unwrap();
        assert_eq!(record.id, "id-1");
        assert_eq!(record.time, "2027-01-15T08:00:00.000Z");
        let given = br#"{"suite":"a","passed":0,"failed":0,"duration_seconds":1,"time":"2026-01-02T03:04:05.5+00:00"}"#;
        let record = Submission::from_json(given)
            .and_then(|s| s.into_record("id-2".into(), now))
            .unwrap();
        assert_eq!(record.time, "2026-01-02T03:04:05.500Z");
        assert!(valid_suite(&"a".repeat(63)));
        assert!(!valid_suite(&"a".repeat(64)));
    }

    #[test]
    fn summary_sums_without_overflow_or_division_by_zero() {
        let records = [
            record("b", u32::MAX, u32::MAX, "2026-01-01T00:00:00Z"),
            record("b", u32::MAX, 0, "2026-01-01T00:00:01Z"),
            record("a", 2, 1, "2026-01-01T00:00:02Z"),
            record("empty", 0, 0, "2026-01-01T00:00:03Z"),
        ];
        let summary = summarize(&records);
        let suites: Vec<_> = summary.iter().map(|s| s.suite.as_str()).collect();
        assert_eq!(suites, ["a", "b", "empty"]);
        assert_eq!(
            (summary[0].runs, summary[0].passed, summary[0].failed),
            (1, 2, 1)
        );
        assert!((summary[0].pass_rate - 200.0 / 3.0).abs() < 1e-9);
        assert_eq!(summary[1].passed, 2 * u64::from(u32::MAX));
        assert!((summary[1].pass_rate - 200.0 / 3.0).abs() < 1e-9);
        assert_eq!(summary[2].pass_rate, 0.0);
        assert_eq!(pass_rate(u64::MAX, u64::MAX), 100.0);
    }

    #[test]
    fn newest_first_orders_by_time_then_by_file_position() {
        let records = vec![
            record("a", 0, 0, "2026-01-01T00:00:05Z"),
            record("b", 0, 0, "2026-01-01T00:00:05.5Z"),
            record("c", 0, 0, "not a time"),
            record("d", 0, 0, "2026-01-01T00:00:05Z"),
        ];
        let order: Vec<_> = newest_first(records).into_iter().map(|r| r.suite).collect();
        assert_eq!(order, ["b", "d", "a", "c"]);
    }

    #[test]
    fn ids_differ_within_one_millisecond() {
        let now = OffsetDateTime::now_utc();
        assert_ne!(new_id(now), new_id(now));
    }
}
