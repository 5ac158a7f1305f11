//! Reading and writing PEM files. A write is atomic: the contents go to a
//! temporary file in the same directory, created with its final mode (so a
//! key is never readable by others, not even for an instant), synced, then
//! renamed over the target, and the directory synced. A crash leaves either
//! the old file or the new one, never a half-written one.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::Error;

/// Mode of private key files: the owner alone reads them.
pub(crate) const KEY_MODE: u32 = 0o600;
/// Mode of certificate files: public.
pub(crate) const CERT_MODE: u32 = 0o644;
/// Mode of a directory this crate creates to hold keys.
const DIR_MODE: u32 = 0o700;

/// Reads a whole file as text, naming the file in the error.
pub(crate) fn read(path: &Path) -> Result<String, Error> {
    fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}

/// Creates `dir` (and its parents) with mode 0700 if it does not exist yet.
pub(crate) fn create_dir(dir: &Path) -> Result<(), Error> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|source| Error::Write {
            path: dir.to_owned(),
            source,
        })
}

/// Replaces `path` with `contents` atomically; the file has `mode` from its
/// creation on.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), Error> {
    let err = |source| Error::Write {
        path: path.to_owned(),
        source,
    };
    let temp = temp_path(path)?;
    let result = write_new(&temp, contents, mode).and_then(|()| fs::rename(&temp, path));
    if let Err(source) = result {
        // Best effort: the temporary file is garbage whatever happened.
        let _ = fs::remove_file(&temp);
        return Err(err(source));
    }
    // The rename is durable only once the directory entry is on disk.
    let dir = parent(path);
    File::open(dir).and_then(|d| d.sync_all()).map_err(err)
}

/// Writes a file that must not exist yet, with `mode`, and syncs it.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// A fresh name beside `path`: hidden, and unguessable so two writers (or a
/// leftover from a crash) never collide.
fn temp_path(path: &Path) -> Result<PathBuf, Error> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|source| Error::Random { source })?;
    let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    Ok(parent(path).join(format!(".{name}.{nonce}.tmp")))
}

/// The directory holding `path` (`.` for a bare file name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn key_files_are_created_0600_and_certs_0644() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("a.key");
        let crt = dir.path().join("a.crt");
        write_atomic(&key, b"secret", KEY_MODE).unwrap();
        write_atomic(&crt, b"public", CERT_MODE).unwrap();
        assert_eq!(
            fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // umask may only take bits away from 0644.
        let crt_mode = fs::metadata(&crt).unwrap().permissions().mode() & 0o777;
        assert_eq!(crt_mode & !0o644, 0, "{crt_mode:o}");
        assert_eq!(read(&key).unwrap(), "secret");
    }

    #[test]
    fn overwriting_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.key");
        write_atomic(&path, b"old", KEY_MODE).unwrap();
        let before = fs::metadata(&path).unwrap().ino();
        write_atomic(&path, b"new", KEY_MODE).unwrap();
        // A new inode: the file was renamed over, not truncated and rewritten
        // in place (where a crash would leave it empty or half-written).
        assert_ne!(fs::metadata(&path).unwrap().ino(), before);
        assert_eq!(read(&path).unwrap(), "new");
        assert_eq!(entries(dir.path()), ["ca.key"]);
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_and_names_the_target() {
        let dir = tempfile::tempdir().unwrap();
        // A non-empty directory cannot be renamed over.
        let path = dir.path().join("taken");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("x"), b"x").unwrap();
        let err = write_atomic(&path, b"new", KEY_MODE).unwrap_err();
        assert!(
            matches!(&err, Error::Write { path: p, .. } if *p == path),
            "{err:?}"
        );
        assert_eq!(entries(dir.path()), ["taken"]);
    }

    #[test]
    fn missing_file_error_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.crt");
        let err = read(&path).unwrap_err();
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
    }

    #[test]
    fn create_dir_makes_a_private_directory() {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("a/pki");
        create_dir(&pki).unwrap();
        create_dir(&pki).unwrap();
        assert_eq!(
            fs::metadata(&pki).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
}
