//! The client config file (`~/.moor/config`, or `$MOOR_CONFIG`): named
//! contexts with a server, the credentials for it and a default namespace,
//! and the current one; and the choice of server: `--server`, then
//! `$MOOR_SERVER`, then the context. The file holds private keys and
//! tokens, so it is written readable by its owner alone.

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

/// A named server, the credentials for it, and a default namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Context {
    /// The context's name.
    pub name: String,
    /// Server URL, `https://HOST:PORT` (`http://` for an `--insecure` server).
    pub server: String,
    /// Namespace used when a command names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The cluster CA certificate (PEM text) the server's must chain to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority_data: Option<String>,
    /// The user's client certificate (PEM text), signed by the cluster CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_data: Option<String>,
    /// The private key of the client certificate (PEM text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_data: Option<String>,
    /// A bearer token, instead of a client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// The server to talk to, and how it was chosen.
#[derive(Clone, Debug)]
pub struct Target {
    /// Server URL.
    pub server: String,
    /// "the --server flag", "$MOOR_SERVER" or "context NAME in PATH".
    pub chosen_by: String,
    /// The context's default namespace, if any.
    pub namespace: Option<String>,
    /// The current context's credentials, for an `https://` server.
    pub credentials: moor_rpc::Credentials,
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

    /// Writes the config, creating its directory: to a temporary file of
    /// mode 0600 (it holds keys and tokens) renamed over the old one, so a
    /// failed write leaves the old config whole.
    pub fn save(&self, path: &Path) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| config_error(path, e))?;
        let text = self.to_yaml(path)?;
        let temp = dir.join(format!(
            ".{}.{}.tmp",
            path.file_name()
                .map_or_else(|| "config".into(), |n| n.to_string_lossy()),
            std::process::id()
        ));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .and_then(|mut file| {
                file.write_all(text.as_bytes())?;
                file.sync_all()
            })
            .and_then(|()| std::fs::rename(&temp, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(config_error(path, e));
        }
        Ok(())
    }

    /// The config as YAML.
    pub fn to_yaml(&self, path: &Path) -> Result<String> {
        serde_yaml_ng::to_string(self).map_err(|e| config_error(path, e))
    }

    /// The config as YAML with private keys and tokens replaced by
    /// `REDACTED`, for showing (`moorctl config view`).
    pub fn to_redacted_yaml(&self, path: &Path) -> Result<String> {
        let mut shown = self.clone();
        for context in &mut shown.contexts {
            for secret in [&mut context.client_key_data, &mut context.token] {
                if secret.is_some() {
                    *secret = Some("REDACTED".to_string());
                }
            }
        }
        shown.to_yaml(path)
    }

    /// The current context, if it exists.
    pub fn current(&self) -> Option<&Context> {
        self.context(&self.current_context)
    }

    /// The context of this name.
    pub fn context(&self, name: &str) -> Option<&Context> {
        self.contexts.iter().find(|c| c.name == name)
    }

    /// Sets the credentials of context `name` (created if missing): the CA,
    /// and a client certificate and key, replacing what it had.
    pub fn set_credentials(&mut self, name: &str, ca: &str, cert: &str, key: &str) {
        self.set_context(name, None, None);
        if let Some(context) = self.contexts.iter_mut().find(|c| c.name == name) {
            context.certificate_authority_data = Some(ca.to_string());
            context.client_certificate_data = Some(cert.to_string());
            context.client_key_data = Some(key.to_string());
            context.token = None;
        }
    }

    /// Removes the CA, certificate, key and token of context `name`.
    pub fn clear_credentials(&mut self, name: &str) {
        if let Some(context) = self.contexts.iter_mut().find(|c| c.name == name) {
            context.certificate_authority_data = None;
            context.client_certificate_data = None;
            context.client_key_data = None;
            context.token = None;
        }
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
pub const DEFAULT_SERVER: &str = "https://127.0.0.1:6443";

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
    let server = normalize(&server);
    // The context's credentials go with whichever server was chosen (as
    // kubectl's do), but never over plain text.
    let credentials = match context {
        Some(context) if server.starts_with("https://") => credentials(context, path)?,
        _ => moor_rpc::Credentials::default(),
    };
    Ok(Target {
        server,
        chosen_by,
        namespace,
        credentials,
    })
}

/// The TLS settings and token of `context`.
fn credentials(context: &Context, path: &Path) -> Result<moor_rpc::Credentials> {
    let field_error = |field: &str, reason: String| Error::Config {
        path: path.to_path_buf(),
        reason: format!("context {:?}: {field}: {reason}", context.name),
    };
    let tls = match &context.certificate_authority_data {
        Some(ca) => {
            moor_pki::certs_from_pem(ca)
                .map_err(|e| field_error("certificate-authority-data", e.to_string()))?;
            let tls = moor_rpc::ClientTls::new(ca);
            match (&context.client_certificate_data, &context.client_key_data) {
                (Some(cert), Some(key)) => {
                    let identity = moor_pki::Identity::from_pem(cert.as_str(), key.as_str())
                        .map_err(|e| field_error("client-certificate-data", e.to_string()))?;
                    Some(tls.identity(&identity))
                }
                (None, None) => Some(tls),
                (Some(_), None) => {
                    return Err(field_error(
                        "client-key-data",
                        "missing (client-certificate-data needs its key)".to_string(),
                    ));
                }
                (None, Some(_)) => {
                    return Err(field_error(
                        "client-certificate-data",
                        "missing (client-key-data needs its certificate)".to_string(),
                    ));
                }
            }
        }
        None => None,
    };
    Ok(moor_rpc::Credentials {
        tls,
        token: context.token.clone(),
    })
}

/// Adds `https://` to a bare `HOST:PORT`.
fn normalize(server: &str) -> String {
    if server.contains("://") {
        server.to_string()
    } else {
        format!("https://{server}")
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
            ("https://h:2", "the --server flag")
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
