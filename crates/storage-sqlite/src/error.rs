//! Errors of opening the store, and how SQLite's errors become
//! [`moor_storage::Error`]s.

use std::path::PathBuf;

use rusqlite::ErrorCode;

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The data directory could not be created.
    #[error("cannot create data directory {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// Another process (or another open store of this one) holds the
    /// directory's lock: it has the store open.
    #[error("data directory {path} is in use by another process (a running moor?)")]
    Locked {
        /// The directory.
        path: PathBuf,
    },
    /// The directory's lock could not be taken for another reason.
    #[error("cannot lock data directory {path}")]
    Lock {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// SQLite could not open or set up the database file.
    #[error("cannot open database {path}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: rusqlite::Error,
    },
    /// The file system does not support WAL mode (e.g. some network file
    /// systems), without which readers would block the writer.
    #[error("database {path} cannot use WAL mode (got journal mode {mode})")]
    NoWal {
        /// The database file.
        path: PathBuf,
        /// The journal mode SQLite kept.
        mode: String,
    },
    /// The file was written by a build with another schema.
    #[error(
        "database {path} has schema version {found} but this build of moor reads version {supported}: \
         run the moor that wrote it, or start a new cluster in another --data-dir (or move that one away)"
    )]
    SchemaVersion {
        /// The database file.
        path: PathBuf,
        /// The version in the file.
        found: i64,
        /// The version this build supports.
        supported: i64,
    },
    /// The writer thread could not be started.
    #[error("cannot start the sqlite writer thread")]
    SpawnWriter(#[source] std::io::Error),
}

impl From<Error> for moor_storage::Error {
    fn from(e: Error) -> Self {
        let message = match &e {
            Error::CreateDir { source, .. } => format!("{e}: {source}"),
            Error::Lock { source, .. } => format!("{e}: {source}"),
            Error::Open { source, .. } => format!("{e}: {source}"),
            Error::SpawnWriter(source) => format!("{e}: {source}"),
            Error::Locked { .. } | Error::NoWal { .. } | Error::SchemaVersion { .. } => {
                e.to_string()
            }
        };
        moor_storage::Error::Internal(message)
    }
}

/// Classifies a SQLite failure: contention, I/O and resource trouble may pass
/// (`Unavailable`); anything else is a bug or a damaged file (`Internal`).
pub(crate) fn storage_error(e: &rusqlite::Error) -> moor_storage::Error {
    // `ErrorCode` is `#[non_exhaustive]`, so this match cannot list every
    // code; new codes land in `Internal`, the conservative side.
    match e.sqlite_error_code() {
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::OutOfMemory
            | ErrorCode::CannotOpen
            | ErrorCode::FileLockingProtocolFailed
            | ErrorCode::OperationInterrupted,
        ) => moor_storage::Error::Unavailable(format!("sqlite: {e}")),
        _ => moor_storage::Error::Internal(format!("sqlite: {e}")),
    }
}
