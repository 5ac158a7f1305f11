//! Reads of the log table, shared by the writer thread and the readers.
//!
//! The log is append-only (until compaction): one row per write, its id the
//! write's revision. A key's current value is its latest row, unless that
//! row is a tombstone. Key names are stored as BLOBs so that prefix ranges
//! are plain byte ranges (SQLite compares BLOBs with `memcmp`).
//!
//! Some bound values go through `CAST`: the bundled SQLite is built with
//! STAT4, and a statement whose plan looked at a bound value (an equality
//! with `ORDER BY ... LIMIT`, a `LIMIT ?`) is re-prepared from its SQL text
//! at every run. Behind a `CAST` the planner cannot see the value, so the
//! cached statement is reused; the plan (the index) is the same.

use bytes::Bytes;
use moor_storage::{Event, EventKind, KeyValue};
use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, params};

/// The meta row holding the compaction point.
pub(crate) const COMPACT_REVISION: &str = "compact_revision";

/// `SELECT` of a log row's columns, in the order [`Row::read`] expects,
/// followed by the rest of the statement: the SQL is a constant, with no
/// text built on the writer's hot path.
macro_rules! select_rows {
    ($($rest:literal)+) => {
        concat!(
            "SELECT id, name, created, deleted, create_revision, prev_revision, value, old_value ",
            $($rest),+
        )
    };
}

/// A key's latest row.
const LATEST: &str =
    select_rows!("FROM log WHERE name = CAST(?1 AS BLOB) ORDER BY id DESC LIMIT 1");
/// The live rows under a key range.
const LIST: &str = select_rows!(
    "FROM log WHERE id IN "
    "(SELECT MAX(id) FROM log WHERE name >= ?1 AND name < ?2 GROUP BY name) "
    "AND deleted = 0 ORDER BY name"
);
/// The rows live at a revision under a key range, from a first key on, at
/// most a limit: each key's latest row at or before the revision, unless
/// that row is a tombstone. Compaction keeps exactly those rows for every
/// revision from its point on (kine's model). Walks the (name, id) index
/// in key order and stops at the limit, so a page costs the rows of its
/// own keys, not of every key after it.
const PAGE: &str = select_rows!(
    "FROM log AS l WHERE l.name >= ?1 AND l.name < ?2 AND l.id <= CAST(?3 AS INTEGER) "
    "AND l.deleted = 0 AND NOT EXISTS (SELECT 1 FROM log AS n WHERE n.name = l.name "
    "AND n.id > l.id AND n.id <= CAST(?3 AS INTEGER)) "
    "ORDER BY l.name LIMIT CAST(?4 AS INTEGER)"
);
/// Writes under a key range after a revision, at most a limit.
const HISTORY: &str = select_rows!(
    "FROM log WHERE id > ?1 AND name >= ?2 AND name < ?3 "
    "ORDER BY id LIMIT CAST(?4 AS INTEGER)"
);

/// One row of the log: one write.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    /// The write's revision.
    pub id: i64,
    /// The key.
    pub name: String,
    /// The write created the key.
    pub created: bool,
    /// The write deleted the key (a tombstone).
    pub deleted: bool,
    /// Revision of the write that created the key.
    pub create_revision: i64,
    /// Revision of the key's previous write, or 0.
    pub prev_revision: i64,
    /// The value written; for a tombstone, the key's last value.
    pub value: Bytes,
    /// The value before this write, where there was one.
    pub old_value: Option<Bytes>,
}

// === impl Row ===

impl Row {
    /// Decodes a row selected with `select_rows!`.
    fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        let name: Vec<u8> = row.get(1)?;
        let name = String::from_utf8(name)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(1, Type::Blob, Box::new(e)))?;
        Ok(Self {
            id: row.get(0)?,
            name,
            created: row.get(2)?,
            deleted: row.get(3)?,
            create_revision: row.get(4)?,
            prev_revision: row.get(5)?,
            value: Bytes::from(row.get::<_, Vec<u8>>(6)?),
            old_value: row.get::<_, Option<Vec<u8>>>(7)?.map(Bytes::from),
        })
    }

    /// The key as this write left it (for a tombstone: its last value, at
    /// the delete's revision).
    pub(crate) fn key_value(&self) -> KeyValue {
        KeyValue {
            key: self.name.clone(),
            value: self.value.clone(),
            create_revision: self.create_revision,
            mod_revision: self.id,
        }
    }

    /// The change this write made, as a watch reports it.
    pub(crate) fn event(&self) -> Event {
        let kind = match (self.created, self.deleted) {
            (_, true) => EventKind::Delete,
            (true, false) => EventKind::Create,
            (false, false) => EventKind::Update,
        };
        let prev = self.old_value.as_ref().map(|value| KeyValue {
            key: self.name.clone(),
            value: value.clone(),
            create_revision: self.create_revision,
            mod_revision: self.prev_revision,
        });
        Event {
            kind,
            kv: self.key_value(),
            prev,
        }
    }
}

/// The `[start, end)` byte range of keys under `prefix`.
pub(crate) fn prefix_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    let start = prefix.as_bytes().to_vec();
    let mut end = start.clone();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return (start, end);
        }
    }
    // No prefix (or all 0xFF): UTF-8 never contains 0xFF, so this bounds
    // every key.
    (start, vec![0xFF])
}

/// The latest row of `key`, tombstone or not.
pub(crate) fn latest(conn: &Connection, key: &str) -> rusqlite::Result<Option<Row>> {
    conn.prepare_cached(LATEST)?
        .query_row([key.as_bytes()], Row::read)
        .optional()
}

/// The store's revision: the last id ever handed out. `AUTOINCREMENT` keeps
/// it in `sqlite_sequence`, which compaction does not lower even when it
/// deletes the newest row.
pub(crate) fn current_revision(conn: &Connection) -> rusqlite::Result<i64> {
    let seq = conn
        .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'log'")?
        .query_row([], |row| row.get(0))
        .optional()?;
    Ok(seq.unwrap_or(0))
}

/// The compaction point: history at and before it is gone.
pub(crate) fn compact_revision(conn: &Connection) -> rusqlite::Result<i64> {
    let rev = conn
        .prepare_cached("SELECT value FROM meta WHERE name = ?1")?
        .query_row([COMPACT_REVISION], |row| row.get(0))
        .optional()?;
    Ok(rev.unwrap_or(0))
}

/// The live keys under `prefix`, in key order.
pub(crate) fn list(conn: &Connection, prefix: &str) -> rusqlite::Result<Vec<KeyValue>> {
    let (start, end) = prefix_range(prefix);
    let mut stmt = conn.prepare_cached(LIST)?;
    let rows = stmt.query_map(params![start, end], Row::read)?;
    rows.map(|row| row.map(|row| row.key_value())).collect()
}

/// Up to `limit` keys under `prefix` from `from` on (inclusive; `None`:
/// the prefix's first), as they were at `revision`, in key order.
pub(crate) fn page(
    conn: &Connection,
    prefix: &str,
    from: Option<&[u8]>,
    revision: i64,
    limit: usize,
) -> rusqlite::Result<Vec<KeyValue>> {
    let (start, end) = prefix_range(prefix);
    let start = match from {
        Some(from) if from > start.as_slice() => from.to_vec(),
        _ => start,
    };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(PAGE)?;
    let rows = stmt.query_map(params![start, end, revision, limit], Row::read)?;
    rows.map(|row| row.map(|row| row.key_value())).collect()
}

/// Up to `limit` writes under `prefix` with a revision above `after`, in
/// revision order.
pub(crate) fn history(
    conn: &Connection,
    prefix: &str,
    after: i64,
    limit: usize,
) -> rusqlite::Result<Vec<Row>> {
    let (start, end) = prefix_range(prefix);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(HISTORY)?;
    let rows = stmt.query_map(params![after, start, end, limit], Row::read)?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use rusqlite::StatementStatus;

    use super::*;

    /// The hot reads run their cached statement as prepared: a re-prepare
    /// (parsing and planning again) at every call cost the writer a third
    /// of its time.
    #[test]
    fn cached_reads_are_not_prepared_again() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let conn = crate::schema::open_writer(&dir.path().join("test.db")).expect("open");
        for i in 0..3 {
            latest(&conn, &format!("/k/{i}")).expect("latest");
            history(&conn, &format!("/k/{i}"), i, 10 + i as usize).expect("history");
            page(&conn, "/k/", None, i, 10 + i as usize).expect("page");
        }
        for sql in [LATEST, HISTORY, PAGE] {
            let stmt = conn.prepare_cached(sql).expect("cached");
            assert_eq!(stmt.get_status(StatementStatus::RePrepare), 0, "{sql}");
        }
    }

    /// A page walks the key index in order and stops at its limit: no
    /// sort of every key after the page's first.
    #[test]
    fn pages_read_the_key_index_in_order() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let conn = crate::schema::open_writer(&dir.path().join("test.db")).expect("open");
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {PAGE}"))
            .expect("explain");
        let plan: Vec<String> = stmt
            .query_map(params![b"/k/".to_vec(), b"/k0".to_vec(), 5, 10], |row| {
                row.get::<_, String>(3)
            })
            .expect("plan")
            .collect::<rusqlite::Result<_>>()
            .expect("plan rows");
        let plan = plan.join("\n");
        assert!(plan.contains("log_name_id"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }

    #[test]
    fn prefix_ranges_are_byte_ranges() {
        assert_eq!(prefix_range("/a/"), (b"/a/".to_vec(), b"/a0".to_vec()));
        assert_eq!(prefix_range("/a/x"), (b"/a/x".to_vec(), b"/a/y".to_vec()));
        assert_eq!(prefix_range(""), (Vec::new(), vec![0xFF]));
        let (start, end) = prefix_range("/\u{e9}");
        assert_eq!(
            (start, end),
            (vec![b'/', 0xC3, 0xA9], vec![b'/', 0xC3, 0xAA])
        );
    }
}
