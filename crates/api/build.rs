//! Compiles proto/ into Rust types, tonic clients and servers, and the file
//! descriptor set that reflection, the codec and the CLI read.

use std::path::PathBuf;

/// Every kind's watch event message, mapped to the hand-written
/// `WatchEvent<K>` so an event can be encoded once and sent to many watchers.
const EVENTS: &[(&str, &str)] = &[
    ("core", "Namespace"),
    ("core", "Node"),
    ("core", "Pod"),
    ("core", "Service"),
    ("core", "Endpoints"),
    ("core", "ConfigMap"),
    ("core", "Secret"),
    ("core", "Event"),
    ("core", "ReplicationController"),
    ("apps", "ReplicaSet"),
    ("apps", "Deployment"),
    ("coordination", "Lease"),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time: a build script binary may be reused for a checkout
    // at another path that shares the target directory.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let mut protos = Vec::new();
    collect(&root, &mut protos)?;
    protos.sort();
    let out = PathBuf::from(std::env::var("OUT_DIR")?);

    let mut builder =
        tonic_prost_build::configure().file_descriptor_set_path(out.join("moor_descriptor.bin"));
    for (group, kind) in EVENTS {
        builder = builder.extern_path(
            format!(".moor.{group}.v1.{kind}Event"),
            format!("crate::watch::{kind}WatchEvent"),
        );
    }
    builder.compile_protos(&protos, std::slice::from_ref(&root))?;
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}

fn collect(dir: &std::path::Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}
