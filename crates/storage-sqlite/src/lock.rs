//! One process at a time per store: [`Lock`], an exclusive advisory lock
//! (`flock`) on the store's directory, held for as long as the store is
//! open.
//!
//! A store's watches see the writes of its own writer only (that thread
//! publishes them), so a second process writing the same file would leave
//! the first one's watchers silently behind. And a tool that moves the file
//! away (`moor migrate`) must know that no server has it open. The kernel
//! drops the lock when its holder's file is closed, however its process
//! ends: a crash leaves nothing stale behind.

use std::fs::{File, TryLockError};
use std::path::Path;

use crate::Error;

/// The exclusive lock on a store's directory; released when dropped.
#[derive(Debug)]
pub struct Lock {
    _dir: File,
}

// === impl Lock ===

impl Lock {
    /// Takes the lock on `dir`, or fails at once with [`Error::Locked`]
    /// while another holder (another process, or another open store of this
    /// one) has it.
    pub fn acquire(dir: &Path) -> Result<Self, Error> {
        let failed = |source| Error::Lock {
            path: dir.to_owned(),
            source,
        };
        // A directory opens read-only, which is all flock needs.
        let file = File::open(dir).map_err(failed)?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _dir: file }),
            Err(TryLockError::WouldBlock) => Err(Error::Locked {
                path: dir.to_owned(),
            }),
            Err(TryLockError::Error(source)) => Err(failed(source)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let held = Lock::acquire(dir.path()).expect("first lock");
        match Lock::acquire(dir.path()) {
            Err(Error::Locked { path }) => assert_eq!(path, dir.path()),
            other => panic!("a second lock: {other:?}"),
        }
        drop(held);
        Lock::acquire(dir.path()).expect("the lock again once released");
    }
}
