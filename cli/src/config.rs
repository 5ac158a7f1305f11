//! The client config file (`~/.moor/config`, or `$MOOR_CONFIG`): named
//! contexts with a server and a default namespace, and the current one; and
//! the choice of server: `--server`, then `$MOOR_SERVER`, then the context.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Environment variable naming the server.
pub const SERVER_ENV: &str = "MOOR_SERVER";
/// Environment variable overriding the config file's path.
pub const CONFIG_ENV: &str = "MOOR_CONFIG";

/// The config file's contents.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Config {
    /// Name of the context in use.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub current_context: String,
    /// Every context.
    #[serde(default)]
    pub contexts: Vec<Context>,
}

/// A named server and default namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    /// The context's name.
    pub name: String,
    /// Server URL, `http://HOST:PORT`.
    pub server: String,
    /// Namespace used when a command names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// The server to talk to, and how it was chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Server URL.
    pub server: String,
    /// "the --server flag", "$MOOR_SERVER" or "context NAME in PATH".
    pub chosen_by: String,
    /// The context's default namespace, if any.
    pub namespace: Option<String>,
}

// === impl Config ===

impl Config {
    /// Where the config lives: `$MOOR_CONFIG`, else `~/.moor/config`.
    pub fn path() -> PathBuf {
        if let Some(path) = std::env::var_os(CONFIG_ENV).filter(|p| !p.is_empty()) {
            return PathBuf::from(path);
        }
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
        home.join(".moor").join("config")
    }

    /// Reads the config; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(config_error(path, e)),
        };
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_yaml_ng::from_str(&text).map_err(|e| config_error(path, e))
    }

    /// Writes the config, creating its directory.
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| config_error(path, e))?;
        }
        let text = self.to_yaml(path)?;
        std::fs::write(path, text).map_err(|e| config_error(path, e))
    }

    /// The config as YAML.
    pub fn to_yaml(&self, path: &Path) -> Result<String> {
        serde_yaml_ng::to_string(self).map_err(|e| config_error(path, e))
    }

    /// The current context, if it exists.
    pub fn current(&self) -> Option<&Context> {
        self.context(&self.current_context)
    }

    /// The context of this name.
    pub fn context(&self, name: &str) -> Option<&Context> {
        self.contexts.iter().find(|c| c.name == name)
    }

    /// Adds or changes a context; fields left `None` keep their value.
    pub fn set_context(&mut self, name: &str, server: Option<String>, namespace: Option<String>) {
        let index = match self.contexts.iter().position(|c| c.name == name) {
            Some(index) => index,
            None => {
                self.contexts.push(Context {
                    name: name.to_string(),
                    ..Context::default()
                });
                self.contexts.len() - 1
            }
        };
        let context = &mut self.contexts[index];
        if let Some(server) = server {
            context.server = server;
        }
        if let Some(namespace) = namespace {
            context.namespace = Some(namespace);
        }
    }
}

fn config_error(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Config {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Where `moor apiserver` and `moor up` listen unless told otherwise.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:6443";

/// Picks the server: the flag, then `$MOOR_SERVER`, then the current
/// context, then [`DEFAULT_SERVER`]. The context's namespace is kept in every case, as kubectl does.
pub fn target(flag: Option<&str>, env: Option<&str>, path: &Path) -> Result<Target> {
    let config = Config::load(path)?;
    let context = config.current();
    let namespace = context.and_then(|c| c.namespace.clone());
    let (server, chosen_by) = if let Some(server) = flag.filter(|s| !s.is_empty()) {
        (server.to_string(), "the --server flag".to_string())
    } else if let Some(server) = env.filter(|s| !s.is_empty()) {
        (server.to_string(), format!("${SERVER_ENV}"))
    } else if let Some(context) = context.filter(|c| !c.server.is_empty()) {
        (
            context.server.clone(),
            format!("context {:?} in {}", context.name, path.display()),
        )
    } else {
        // The apiserver's default address, as kubectl falls back to localhost.
        (
            DEFAULT_SERVER.to_string(),
            format!(
                "the default (no --server, ${SERVER_ENV} or current context in {})",
                path.display()
            ),
        )
    };
    Ok(Target {
        server: normalize(&server),
        chosen_by,
        namespace,
    })
}

/// Adds `http://` to a bare `HOST:PORT`.
fn normalize(server: &str) -> String {
    if server.contains("://") {
        server.to_string()
    } else {
        format!("http://{server}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_then_env_then_context() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        let mut config = Config::default();
        config.set_context("local", Some("http://ctx:1".into()), Some("team".into()));
        config.current_context = "local".into();
        config.save(&path).unwrap();

        let t = target(Some("h:2"), Some("http://env:3"), &path).unwrap();
        assert_eq!(
            (t.server.as_str(), t.chosen_by.as_str()),
            ("http://h:2", "the --server flag")
        );
        let t = target(None, Some("http://env:3"), &path).unwrap();
        assert_eq!(t.chosen_by, "$MOOR_SERVER");
        let t = target(None, None, &path).unwrap();
        assert_eq!(t.server, "http://ctx:1");
        assert_eq!(t.namespace.as_deref(), Some("team"));
        assert!(t.chosen_by.starts_with("context \"local\""));
    }

    #[test]
    fn without_flag_env_or_context_the_default_address_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let t = target(None, None, &dir.path().join("none")).unwrap();
        assert_eq!(t.server, DEFAULT_SERVER);
        assert!(t.chosen_by.starts_with("the default"), "{}", t.chosen_by);
    }
}
