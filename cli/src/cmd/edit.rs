//! `edit`: the object as YAML in `$EDITOR`; saved changes are applied with
//! the resourceVersion that was read, so a concurrent change is not lost. A
//! bad edit reopens the editor with the error on top, as kubectl does.

use std::path::{Path, PathBuf};
use std::process::Command;

use prost_reflect::DynamicMessage;

use crate::args::EditArgs;
use crate::cmd::{Ctx, kind_and_name, out};
use crate::error::{Error, Result};
use crate::objects;
use crate::rpc::Client;

const HELP: &str = "# Edit the object below and save to apply it; quit without saving to cancel.\n";

/// Runs `edit`.
pub async fn run(ctx: &Ctx, args: EditArgs) -> Result<()> {
    let (info, name) = kind_and_name(&args.kind, args.name.as_deref())?;
    let client = ctx.client()?;
    let namespace = ctx.namespace();
    let object = objects::get(&client, info, &namespace, &name).await?;
    let path = std::env::temp_dir().join(format!(
        "moorctl-edit-{}-{name}-{}.yaml",
        info.plural,
        std::process::id()
    ));
    let mut body = moor_codec::to_yaml(&object)?;
    let mut header = HELP.to_string();
    let result = loop {
        write(&path, &format!("{header}{body}"))?;
        run_editor(&path)?;
        let edited = strip_comments(&read(&path)?);
        if edited == body {
            break if header == HELP {
                out("Edit cancelled, no changes made.\n")
            } else {
                Err(Error::Usage(format!(
                    "edit abandoned; the last attempt failed: {}",
                    last_error(&header)
                )))
            };
        }
        match apply(&client, info, &name, &edited).await {
            Ok(_) => break out(&format!("{} edited\n", crate::output::ref_of(info, &name))),
            Err(err) => {
                header = format!(
                    "{HELP}# The edit could not be applied; fix it and save again:\n#   {err}\n#\n"
                );
                body = edited;
            }
        }
    };
    // The file holds the user's last attempt; keep it when that failed.
    if result.is_ok() {
        let _ = std::fs::remove_file(&path);
    } else {
        eprintln!("your changes are in {}", path.display());
    }
    result
}

async fn apply(
    client: &Client,
    info: &moor_codec::KindInfo,
    name: &str,
    text: &str,
) -> Result<DynamicMessage> {
    let documents = moor_codec::decode_documents(text)?;
    let [document] = documents.as_slice() else {
        return Err(Error::Usage(format!(
            "expected one object, found {}",
            documents.len()
        )));
    };
    if document.info.kind != info.kind || document.name() != name {
        return Err(Error::Usage(format!(
            "the kind and name cannot change: expected {}/{name}, found {}/{}",
            info.kind,
            document.info.kind,
            document.name()
        )));
    }
    objects::update(client, info, document.message.clone()).await
}

/// Runs `$EDITOR` (then `$VISUAL`, then `vi`) through the shell, so an editor
/// with arguments ("code --wait") works.
fn run_editor(path: &Path) -> Result<()> {
    let editor = std::env::var("EDITOR")
        .or_else(|_| std::env::var("VISUAL"))
        .unwrap_or_else(|_| "vi".to_string());
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(path)
        .status()
        .map_err(|source| Error::Read {
            path: PathBuf::from(&editor),
            source,
        })?;
    if !status.success() {
        return Err(Error::Usage(format!(
            "the editor {editor:?} exited with {status}; nothing was changed"
        )));
    }
    Ok(())
}

/// The text without the leading `#` lines this command wrote.
fn strip_comments(text: &str) -> String {
    let mut rest = text;
    while rest.starts_with('#') {
        rest = rest.split_once('\n').map_or("", |(_, tail)| tail);
    }
    rest.to_string()
}

fn last_error(header: &str) -> String {
    header
        .lines()
        .find_map(|l| l.strip_prefix("#   "))
        .unwrap_or("unknown error")
        .to_string()
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_only_the_leading_comments() {
        assert_eq!(
            strip_comments("# a\n# b\nkind: Pod\n# c\n"),
            "kind: Pod\n# c\n"
        );
        assert_eq!(strip_comments("kind: Pod\n"), "kind: Pod\n");
    }
}
