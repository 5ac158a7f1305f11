//! `DIR/results.jsonl`, one record per line, shared by every replica that mounts `DIR`.
//!
//! Promises: a line is appended whole (one `O_APPEND` write under an exclusive `flock`) and is
//! on disk (fsync) before `append` returns; readers take a shared `flock`, so they never see
//! half a line of a living writer. Nothing is cached: every read re-reads the file, because
//! another replica may have appended since. A line torn by a crash is skipped and logged, and
//! the next append starts on a fresh line so that the torn piece cannot swallow it.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::record::Record;

/// The file's name inside the data directory.
pub const FILE_NAME: &str = "results.jsonl";

/// The results file of one data directory. Cheap to clone; holds no open file.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
}

// === impl Store ===

impl Store {
    /// The store of `dir` (nothing is opened until used).
    pub fn new(dir: &Path) -> Store {
        Store {
            path: dir.join(FILE_NAME),
        }
    }

    /// The results file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `record` as one line, durably; waits for other writers (all replicas).
    pub async fn append(&self, record: Record) -> io::Result<()> {
        let store = self.clone();
        blocking(move || store.append_blocking(&record)).await
    }

    /// Every readable record, in file order (oldest appended first).
    pub async fn read(&self) -> io::Result<Vec<Record>> {
        let store = self.clone();
        blocking(move || store.read_blocking()).await
    }

    /// Ok when the file can be appended to (created if need be) and read: readiness.
    pub async fn check(&self) -> io::Result<()> {
        let store = self.clone();
        blocking(move || {
            store.open_for_append()?;
            File::open(&store.path).map(drop)
        })
        .await
    }

    /// [`Store::append`], blocking the calling thread.
    pub fn append_blocking(&self, record: &Record) -> io::Result<()> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        let mut file = self.open_for_append()?;
        // Exclusive across processes (replicas) and open files alike; released on close.
        file.lock()?;
        let len = file.metadata()?.len();
        if len > 0 {
            let mut last = [0u8];
            file.read_exact_at(&mut last, len - 1)?;
            if last != *b"\n" {
                tracing::warn!(file = %self.path.display(), "the last line is torn (a writer died mid-line); ending it so the new record starts on its own line");
                line.insert(0, b'\n');
            }
        }
        // Under the exclusive lock no other writer can come between the pieces of a short
        // write, and readers (shared lock) see the line only once it is whole.
        file.write_all(&line)?;
        file.sync_data()
    }

    /// [`Store::read`], blocking the calling thread. A missing file is an empty store.
    pub fn read_blocking(&self) -> io::Result<Vec<Record>> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(err),
        };
        file.lock_shared()?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(parse(&bytes, &self.path))
    }

    fn open_for_append(&self) -> io::Result<File> {
        // Readable too: the append checks the file's last byte.
        OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)
    }
}

/// The records of the file's text; lines that are not records are logged and skipped.
fn parse(bytes: &[u8], path: &Path) -> Vec<Record> {
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    // After the last newline: empty, unless the last writer died mid-line.
    let tail = lines.pop().unwrap_or_default();
    if !tail.is_empty() {
        tracing::warn!(file = %path.display(), bytes = tail.len(), "skipping a torn last line (a writer died mid-line)");
    }
    lines
        .iter()
        .enumerate()
        .filter(|(_, line)| !line.is_empty())
        .filter_map(|(at, line)| match serde_json::from_slice(line) {
            Ok(record) => Some(record),
            Err(err) => {
                tracing::warn!(file = %path.display(), line = at + 1, error = %err, "skipping a line that is not a record");
                None
            }
        })
        .collect()
}

/// Runs file I/O off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(suite: &str, n: u32) -> Record {
        Record {
            id: format!("{suite}-{n}"),
            suite: suite.into(),
            passed: n,
            failed: 1,
            duration_seconds: 0.5,
            time: "2026-01-02T03:04:05Z".into(),
        }
    }

    #[test]
    fn concurrent_writers_never_interleave_lines() {
        let dir = tempfile::tempdir().unwrap();
        // Long suites make each line several hundred bytes, so a torn write would show.
        let writers: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|letter| {
                // A store each, as two replicas would have: separate opens, separate locks.
                let store = Store::new(dir.path());
                let suite = letter.repeat(63);
                std::thread::spawn(move || {
                    for n in 0..200 {
                        store.append_blocking(&record(&suite, n)).unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(text.lines().count(), 400);
        for line in text.lines() {
            serde_json::from_str::<Record>(line).unwrap();
        }
        let records = Store::new(dir.path()).read_blocking().unwrap();
        for letter in ["a", "b"] {
            let passed: Vec<_> = records
                .iter()
                .filter(|r| r.suite.starts_with(letter))
                .map(|r| r.passed)
                .collect();
            assert_eq!(
                passed,
                (0..200).collect::<Vec<_>>(),
                "{letter}'s records in order"
            );
        }
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_does_not_swallow_the_next_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        assert_eq!(store.read_blocking().unwrap(), []);
        store.append_blocking(&record("a", 1)).unwrap();
        let mut file = OpenOptions::new().append(true).open(store.path()).unwrap();
        file.write_all(br#"{"id":"torn","sui"#).unwrap();
        assert_eq!(store.read_blocking().unwrap(), [record("a", 1)]);
        store.append_blocking(&record("b", 2)).unwrap();
        assert_eq!(
            store.read_blocking().unwrap(),
            [record("a", 1), record("b", 2)]
        );
    }
}
