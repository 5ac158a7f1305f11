//! Merges log chunks of several sources into whole lines, each prefixed with
//! its source (`[pod/web-1/app] `), so lines of two containers never mix
//! mid-line on the terminal. Pure: no I/O, so the merge is unit-tested.

use std::collections::HashMap;

/// Which of the process's outputs a chunk belongs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Bytes ready to be written to one output.
pub type Output = (Stream, Vec<u8>);

/// Line buffers of every source, keyed by source and stream: a partial line
/// waits until its newline (or the end of its source).
#[derive(Debug, Default)]
pub struct Lines {
    prefixes: Vec<String>,
    partial: HashMap<(usize, Stream), Vec<u8>>,
}

// === impl Stream ===

impl Stream {
    /// The stream of a `PodLogChunk`: "stderr", else stdout.
    pub fn of(name: &str) -> Self {
        if name == "stderr" {
            Self::Stderr
        } else {
            Self::Stdout
        }
    }
}

// === impl Lines ===

impl Lines {
    /// Sources numbered in the order of their prefixes ("" for none).
    pub fn new(prefixes: Vec<String>) -> Self {
        Self {
            prefixes,
            partial: HashMap::new(),
        }
    }

    /// Takes a chunk of `source`; returns the lines it completes, prefixed.
    pub fn push(&mut self, source: usize, stream: Stream, data: &[u8]) -> Option<Output> {
        let prefix = self.prefixes.get(source).map_or("", String::as_str);
        let buffer = self.partial.entry((source, stream)).or_default();
        let mut out = Vec::new();
        let mut rest = data;
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            if buffer.is_empty() {
                out.extend_from_slice(prefix.as_bytes());
            } else {
                out.append(buffer);
            }
            out.extend_from_slice(&rest[..=end]);
            rest = &rest[end + 1..];
        }
        if !rest.is_empty() {
            if buffer.is_empty() {
                buffer.extend_from_slice(prefix.as_bytes());
            }
            buffer.extend_from_slice(rest);
        }
        (!out.is_empty()).then_some((stream, out))
    }

    /// The last, unterminated lines of `source` when it ends. A newline is
    /// added only when lines are prefixed, so the next prefix starts a line;
    /// a lone stream keeps its bytes exactly.
    pub fn finish(&mut self, source: usize) -> Vec<Output> {
        let prefixed = self.prefixes.get(source).is_some_and(|p| !p.is_empty());
        [Stream::Stdout, Stream::Stderr]
            .into_iter()
            .filter_map(|stream| {
                let mut line = self.partial.remove(&(source, stream))?;
                if line.is_empty() {
                    return None;
                }
                if prefixed {
                    line.push(b'\n');
                }
                Some((stream, line))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Merges chunks `(source, stream, bytes)` in arrival order, as `moorctl
    /// logs` does while following; every source ends after its last chunk.
    fn merge<'a>(
        prefixes: Vec<String>,
        chunks: impl IntoIterator<Item = (usize, Stream, &'a [u8])>,
    ) -> Vec<Output> {
        let sources = prefixes.len();
        let mut lines = Lines::new(prefixes);
        let mut out: Vec<Output> = chunks
            .into_iter()
            .filter_map(|(source, stream, data)| lines.push(source, stream, data))
            .collect();
        for source in 0..sources {
            out.extend(lines.finish(source));
        }
        out
    }

    fn text(out: &[Output], want: Stream) -> String {
        out.iter()
            .filter(|(s, _)| *s == want)
            .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    #[test]
    fn lines_of_two_sources_do_not_mix() {
        let prefixes = vec!["[pod/a/app] ".to_string(), "[pod/b/app] ".to_string()];
        let out = merge(
            prefixes,
            [
                (0, Stream::Stdout, &b"hel"[..]),
                (1, Stream::Stdout, b"one\ntw"),
                (0, Stream::Stdout, b"lo\nwor"),
                (1, Stream::Stdout, b"o\n"),
                (0, Stream::Stdout, b"ld"),
            ],
        );
        assert_eq!(
            text(&out, Stream::Stdout),
            "[pod/b/app] one\n[pod/a/app] hello\n[pod/b/app] two\n[pod/a/app] world\n"
        );
    }

    #[test]
    fn stderr_goes_apart_and_is_prefixed_too() {
        let out = merge(
            vec!["[pod/a/app] ".to_string()],
            [
                (0, Stream::Stderr, &b"oops\n"[..]),
                (0, Stream::Stdout, b"fine\n"),
                (0, Stream::Stderr, b"half"),
            ],
        );
        assert_eq!(text(&out, Stream::Stdout), "[pod/a/app] fine\n");
        assert_eq!(
            text(&out, Stream::Stderr),
            "[pod/a/app] oops\n[pod/a/app] half\n"
        );
    }

    #[test]
    fn many_lines_in_one_chunk_and_empty_lines() {
        let out = merge(
            vec!["> ".to_string()],
            [(0, Stream::Stdout, &b"a\n\nb\n"[..])],
        );
        assert_eq!(text(&out, Stream::Stdout), "> a\n> \n> b\n");
    }

    #[test]
    fn without_prefix_bytes_pass_unchanged() {
        let out = merge(
            vec![String::new()],
            [(0, Stream::Stdout, &b"a\nb"[..]), (0, Stream::Stdout, b"c")],
        );
        assert_eq!(text(&out, Stream::Stdout), "a\nbc");
        assert_eq!(Stream::of("stderr"), Stream::Stderr);
        assert_eq!(Stream::of("stdout"), Stream::Stdout);
        assert_eq!(Stream::of(""), Stream::Stdout);
    }
}
