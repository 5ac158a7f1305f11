//! Reads manifests from files, directories (their .yaml, .yml and .json
//! files, sorted) or stdin (`-`), each object with the file it came from.

use std::io::Read;
use std::path::{Path, PathBuf};

use moor_codec::Document;

use crate::error::{Error, Result};

/// One object of a manifest, with where it came from.
#[derive(Debug)]
pub struct Item {
    /// The file ("-" for stdin).
    pub file: String,
    /// The decoded object.
    pub document: Document,
}

/// Every object of every path, in order. The first bad document stops the
/// read, so nothing is written from a half-valid set.
pub fn read(paths: &[PathBuf]) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    for path in paths {
        for file in expand(path)? {
            let text = read_text(&file)?;
            let name = file.display().to_string();
            let documents =
                moor_codec::decode_documents(&text).map_err(|source| Error::Manifest {
                    file: name.clone(),
                    source: Box::new(source),
                })?;
            items.extend(documents.into_iter().map(|document| Item {
                file: name.clone(),
                document,
            }));
        }
    }
    Ok(items)
}

fn expand(path: &Path) -> Result<Vec<PathBuf>> {
    if path.as_os_str() == "-" || !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        })
        .collect();
    files.sort();
    Ok(files)
}

fn read_text(path: &Path) -> Result<String> {
    let err = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(err)?;
        return Ok(text);
    }
    std::fs::read_to_string(path).map_err(err)
}
