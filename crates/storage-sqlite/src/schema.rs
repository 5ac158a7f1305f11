//! The database file: its tables, and how connections to it are opened.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::Error;

/// The database's file name inside the data directory.
pub const FILE_NAME: &str = "moor.db";

/// The schema version this build reads and writes.
const SCHEMA_VERSION: i64 = 1;

/// How long a connection waits on a lock before failing with "busy". Only
/// checkpoints and a second process opening the file ever contend.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The tables, after kine's: `log` is the append-only revision log (row id =
/// revision; `AUTOINCREMENT` so that ids are never reused, even after
/// compaction deletes the newest rows); `meta` holds the schema version and
/// the compaction point.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name BLOB NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    value BLOB NOT NULL,
    old_value BLOB
);
CREATE INDEX IF NOT EXISTS log_name_id ON log (name, id);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Opens (creating if needed) the database for writing: WAL mode, the
/// schema in place, its version checked.
pub(crate) fn open_writer(path: &Path) -> Result<Connection, Error> {
    let open_error = |source| Error::Open {
        path: path.to_owned(),
        source,
    };
    let conn = Connection::open(path).map_err(open_error)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
    // WAL lets the readers work alongside the writer. `synchronous = FULL`
    // syncs every commit: an acknowledged write survives a power cut, as it
    // does in etcd. The writer batches commits to keep that affordable.
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(open_error)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::NoWal {
            path: path.to_owned(),
            mode,
        });
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(open_error)?;
    conn.execute_batch(SCHEMA).map_err(open_error)?;
    conn.execute(
        "INSERT INTO meta (name, value) VALUES ('schema_version', ?1) ON CONFLICT DO NOTHING",
        [SCHEMA_VERSION],
    )
    .map_err(open_error)?;
    let found: Option<i64> = conn
        .query_row(
            "SELECT value FROM meta WHERE name = 'schema_version'",
            [],
            |row| row.get(0),
        )
        .optional()
        .map_err(open_error)?;
    match found {
        Some(SCHEMA_VERSION) => Ok(conn),
        found => Err(Error::SchemaVersion {
            path: path.to_owned(),
            found: found.unwrap_or(0),
            supported: SCHEMA_VERSION,
        }),
    }
}

/// Opens a read-only connection to a database the writer has set up.
pub(crate) fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    // NO_MUTEX: a pooled connection is used by one thread at a time.
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}
