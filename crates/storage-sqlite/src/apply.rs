//! The writes themselves, each inside the writer's batch transaction.
//!
//! An op refused on its merits returns `Ok((Err(refusal), None))`: it wrote
//! nothing and the batch goes on. A SQLite error returns `Err` and rolls the
//! whole batch back.

use bytes::Bytes;
use moor_storage::{Error as StorageError, Event};
use rusqlite::{Transaction, params};

use crate::query::{self, COMPACT_REVISION, Row};
use crate::writer::{Op, Outcome};

/// One op's result, and the event to publish if it wrote.
pub(crate) type Applied = (Result<Outcome, StorageError>, Option<Event>);

/// Applies one op inside the batch's transaction.
pub(crate) fn apply(tx: &Transaction<'_>, op: &Op) -> rusqlite::Result<Applied> {
    match op {
        Op::Create { key, value } => create(tx, key, value),
        Op::Update {
            key,
            value,
            expected,
        } => update(tx, key, value, *expected),
        Op::Delete { key, expected } => delete(tx, key, *expected),
        Op::Compact { revision } => compact(tx, *revision),
    }
}

/// Appends a creating row, unless the key is live.
fn create(tx: &Transaction<'_>, key: &str, value: &Bytes) -> rusqlite::Result<Applied> {
    let latest = query::latest(tx, key)?;
    if latest.as_ref().is_some_and(|row| !row.deleted) {
        return Ok(refused(StorageError::AlreadyExists(key.to_owned())));
    }
    let mut row = Row {
        id: 0,
        name: key.to_owned(),
        created: true,
        deleted: false,
        create_revision: 0,
        prev_revision: latest.map_or(0, |tombstone| tombstone.id),
        value: value.clone(),
        old_value: None,
    };
    row.id = insert(tx, &row)?;
    // A creating row's create_revision is its own id, known only now.
    row.create_revision = row.id;
    tx.prepare_cached("UPDATE log SET create_revision = ?1 WHERE id = ?1")?
        .execute([row.id])?;
    Ok((Ok(Outcome::Written(row.id)), Some(row.event())))
}

/// Appends an updating row, if the key is live at `expected`.
fn update(
    tx: &Transaction<'_>,
    key: &str,
    value: &Bytes,
    expected: i64,
) -> rusqlite::Result<Applied> {
    let current = match live(tx, key, Some(expected))? {
        Ok(row) => row,
        Err(refusal) => return Ok(refused(refusal)),
    };
    let mut row = Row {
        id: 0,
        name: key.to_owned(),
        created: false,
        deleted: false,
        create_revision: current.create_revision,
        prev_revision: current.id,
        value: value.clone(),
        old_value: Some(current.value),
    };
    row.id = insert(tx, &row)?;
    Ok((Ok(Outcome::Written(row.id)), Some(row.event())))
}

/// Appends a tombstone (carrying the last value), if the key is live and,
/// when `expected` is given, at that revision.
fn delete(tx: &Transaction<'_>, key: &str, expected: Option<i64>) -> rusqlite::Result<Applied> {
    let current = match live(tx, key, expected)? {
        Ok(row) => row,
        Err(refusal) => return Ok(refused(refusal)),
    };
    let last = current.key_value();
    let mut row = Row {
        id: 0,
        name: key.to_owned(),
        created: false,
        deleted: true,
        create_revision: current.create_revision,
        prev_revision: current.id,
        value: current.value.clone(),
        old_value: Some(current.value),
    };
    row.id = insert(tx, &row)?;
    Ok((Ok(Outcome::Deleted(last, row.id)), Some(row.event())))
}

/// Deletes the rows superseded at or before `revision` and the tombstones at
/// or before it, and records `revision` as the compaction point.
fn compact(tx: &Transaction<'_>, revision: i64) -> rusqlite::Result<Applied> {
    let current = query::current_revision(tx)?;
    if revision > current {
        let message = format!("cannot compact to revision {revision}: the store is at {current}");
        return Ok(refused(StorageError::Internal(message)));
    }
    if revision <= query::compact_revision(tx)? {
        return Ok((Ok(Outcome::Compacted), None));
    }
    let removed = tx.execute(
        "DELETE FROM log WHERE id <= ?1 AND (deleted = 1 OR EXISTS \
         (SELECT 1 FROM log AS newer WHERE newer.name = log.name \
          AND newer.id > log.id AND newer.id <= ?1))",
        [revision],
    )?;
    tx.execute(
        "INSERT INTO meta (name, value) VALUES (?1, ?2) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        params![COMPACT_REVISION, revision],
    )?;
    tracing::info!(revision, removed, "compacted the sqlite revision log");
    Ok((Ok(Outcome::Compacted), None))
}

/// The live row of `key`, if it exists and (when `expected` is given) is at
/// that revision; otherwise why the write is refused.
fn live(
    tx: &Transaction<'_>,
    key: &str,
    expected: Option<i64>,
) -> rusqlite::Result<Result<Row, StorageError>> {
    Ok(match query::latest(tx, key)? {
        None => Err(StorageError::NotFound(key.to_owned())),
        Some(row) if row.deleted => Err(StorageError::NotFound(key.to_owned())),
        Some(row) => match expected {
            Some(expected) if expected != row.id => Err(StorageError::Conflict {
                key: key.to_owned(),
                expected,
                current: row.id,
            }),
            _ => Ok(row),
        },
    })
}

/// A write refused on its merits: nothing written, nothing published.
fn refused(refusal: StorageError) -> Applied {
    (Err(refusal), None)
}

/// Appends `row` to the log and returns its id: the write's revision.
fn insert(tx: &Transaction<'_>, row: &Row) -> rusqlite::Result<i64> {
    // Not `RETURNING id`: SQLite buffers returned rows in a temporary table
    // it builds and drops on every call. The writer is the only connection
    // that writes, so the last inserted rowid is this row's.
    tx.prepare_cached(
        "INSERT INTO log (name, created, deleted, create_revision, prev_revision, value, old_value) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        row.name.as_bytes(),
        row.created,
        row.deleted,
        row.create_revision,
        row.prev_revision,
        row.value.as_ref(),
        row.old_value.as_deref(),
    ])?;
    Ok(tx.last_insert_rowid())
}
