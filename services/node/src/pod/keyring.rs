//! Registry credentials from a pod's imagePullSecrets, matched to an
//! image's registry as kubelet's credential provider keyring does: entries
//! of `kubernetes.io/dockerconfigjson` and `kubernetes.io/dockercfg`
//! secrets keyed by `host[:port][/path]` (a scheme and a `/v1/` or `/v2/`
//! path are dropped; host labels may be globs such as `*.example.com`), the
//! most specific key first, and Docker Hub's `index.docker.io` for images
//! of Docker Hub that no other key matched.

use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use moor_api::core::v1::Secret;
use moor_runtime::RegistryAuth;
use serde::Deserialize;

/// The type of a secret holding a `~/.docker/config.json`.
pub const DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
/// Its key.
pub const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";
/// The type of a secret holding a legacy `~/.dockercfg`.
pub const DOCKERCFG: &str = "kubernetes.io/dockercfg";
/// Its key.
pub const DOCKERCFG_KEY: &str = ".dockercfg";

/// Docker Hub's registry, as image references name it once normalised.
const DOCKER_HUB: &str = "docker.io";
/// The key Docker Hub's credentials are filed under (`docker login` writes
/// `https://index.docker.io/v1/`).
const DOCKER_HUB_KEY: &str = "index.docker.io";

/// Credentials by key, each key's in the order the secrets gave them.
#[derive(Debug, Default)]
pub struct Keyring {
    entries: BTreeMap<String, Vec<RegistryAuth>>,
}

/// `{"auths": {...}}`, the dockerconfigjson format.
#[derive(Deserialize)]
struct ConfigJson {
    #[serde(default)]
    auths: HashMap<String, Entry>,
}

/// One registry's credentials in either format.
#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    /// `base64(username:password)`; wins over the two above.
    #[serde(default)]
    auth: String,
}

/// A key or an image, split as kubelet's keyring compares them.
#[derive(Debug, PartialEq, Eq)]
struct Location<'a> {
    /// The host name's labels (`registry`, `example`, `com`).
    labels: Vec<&'a str>,
    /// The port, "" when none.
    port: &'a str,
    /// The path, "" or starting with `/`.
    path: &'a str,
}

// === impl Keyring ===

impl Keyring {
    /// Adds the credentials of an image pull secret. `Err` says what is
    /// wrong with it (without any of its content): the secret is then left
    /// out, and the others still count.
    pub fn add(&mut self, secret: &Secret) -> Result<(), String> {
        let (key, auths) = match secret.r#type.as_str() {
            DOCKER_CONFIG_JSON => {
                let json = data(secret, DOCKER_CONFIG_JSON_KEY)?;
                let config: ConfigJson = parse(json, DOCKER_CONFIG_JSON_KEY)?;
                (DOCKER_CONFIG_JSON_KEY, config.auths)
            }
            DOCKERCFG => {
                let json = data(secret, DOCKERCFG_KEY)?;
                (DOCKERCFG_KEY, parse(json, DOCKERCFG_KEY)?)
            }
            other => {
                return Err(format!(
                    "its type is {other:?}, not {DOCKER_CONFIG_JSON} or {DOCKERCFG}"
                ));
            }
        };
        // Checked whole before any is added: a secret counts entirely or not at all.
        let mut parsed = Vec::with_capacity(auths.len());
        for (location, entry) in auths {
            let auth = entry
                .into_auth()
                .map_err(|what| format!("entry {location:?} of its {key}: {what}"))?;
            parsed.push((normalize_key(&location), auth));
        }
        // A map has no order: sorted, so two secrets' entries land alike each time.
        parsed.sort_by(|a, b| a.0.cmp(&b.0));
        for (location, auth) in parsed {
            let auths = self.entries.entry(location).or_default();
            if !auths.contains(&auth) {
                auths.push(auth);
            }
        }
        Ok(())
    }

    /// The credentials to try for `image`, in order: those of every key
    /// that matches its registry, the most specific key first; empty when
    /// none does (the pull goes out anonymously).
    pub fn lookup(&self, image: &str) -> Vec<RegistryAuth> {
        let repository = normalize_image(image);
        let target = Location::parse(&repository);
        let mut found: Vec<RegistryAuth> = Vec::new();
        // Reverse order puts `quay.io/team` before `quay.io`.
        for (key, auths) in self.entries.iter().rev() {
            if Location::parse(key).matches(&target) {
                for auth in auths {
                    if !found.contains(auth) {
                        found.push(auth.clone());
                    }
                }
            }
        }
        if found.is_empty() && repository.split('/').next() == Some(DOCKER_HUB) {
            found = self
                .entries
                .get(DOCKER_HUB_KEY)
                .cloned()
                .unwrap_or_default();
        }
        found
    }
}

// === impl Entry ===

impl Entry {
    fn into_auth(self) -> Result<RegistryAuth, String> {
        if self.auth.is_empty() {
            return Ok(RegistryAuth {
                username: self.username,
                password: self.password,
            });
        }
        let malformed = "auth is not base64(username:password)";
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(self.auth.trim())
            .map_err(|_| malformed.to_owned())?;
        let text = String::from_utf8(decoded).map_err(|_| malformed.to_owned())?;
        let (username, password) = text.split_once(':').ok_or_else(|| malformed.to_owned())?;
        Ok(RegistryAuth {
            username: username.to_owned(),
            password: password.to_owned(),
        })
    }
}

// === impl Location ===

impl<'a> Location<'a> {
    /// Splits a schemeless `host[:port][/path]`.
    fn parse(text: &'a str) -> Self {
        let (authority, path) = match text.find('/') {
            Some(slash) => text.split_at(slash),
            None => (text, ""),
        };
        // An IPv6 address keeps its colons inside brackets.
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => (host, port),
            _ => (authority, ""),
        };
        Self {
            labels: host.split('.').collect(),
            port,
            path,
        }
    }

    /// Whether a key (`self`) covers `target`: the same port, as many host
    /// labels each matching its glob, and a path that starts with the key's.
    fn matches(&self, target: &Location<'_>) -> bool {
        self.port == target.port
            && self.labels.len() == target.labels.len()
            && target.path.starts_with(self.path)
            && self
                .labels
                .iter()
                .zip(&target.labels)
                .all(|(glob, label)| glob_matches(glob, label))
    }
}

/// The secret's value at `key`, which must be there and not empty.
fn data<'a>(secret: &'a Secret, key: &str) -> Result<&'a [u8], String> {
    match secret.data.get(key) {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(format!("it has no {key} key")),
    }
}

/// Parses a secret's JSON; the error gives where, never what (serde's
/// messages may quote the content).
fn parse<T: serde::de::DeserializeOwned>(json: &[u8], key: &str) -> Result<T, String> {
    serde_json::from_slice(json).map_err(|err| {
        let what = match err.classify() {
            serde_json::error::Category::Data => "not the expected shape",
            serde_json::error::Category::Syntax
            | serde_json::error::Category::Eof
            | serde_json::error::Category::Io => "not valid JSON",
        };
        format!(
            "its {key} is {what} at line {} column {}",
            err.line(),
            err.column()
        )
    })
}

/// A config's key as kubelet files it: schemeless, lower case, with a
/// `/v1/` or `/v2/` path (what `docker login` writes) as none.
fn normalize_key(location: &str) -> String {
    let location = location.trim();
    let schemeless = location
        .strip_prefix("https://")
        .or_else(|| location.strip_prefix("http://"))
        .unwrap_or(location);
    let (host, path) = match schemeless.find('/') {
        Some(slash) => schemeless.split_at(slash),
        None => (schemeless, ""),
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    // `/v2/team` is `/team`: the version's slash stays as the path's.
    let path = if path.starts_with("/v1/") || path.starts_with("/v2/") {
        path.get(3..).unwrap_or(path)
    } else {
        path
    };
    let path = if path == "/" { "" } else { path };
    format!("{}{path}", host.to_ascii_lowercase())
}

/// The repository of an image reference with its registry made explicit,
/// as Docker normalises it: `nginx:1` is `docker.io/library/nginx`,
/// `index.docker.io/team/app` is `docker.io/team/app`, and a first part
/// with no `.` or `:` that is not `localhost` is a Docker Hub namespace.
fn normalize_image(image: &str) -> String {
    let name = image.split('@').next().unwrap_or(image);
    let name = match name.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => repository,
        _ => name,
    };
    let (domain, remainder) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':']) || first.eq_ignore_ascii_case("localhost") =>
        {
            (first.to_ascii_lowercase(), rest)
        }
        _ => (DOCKER_HUB.to_owned(), name),
    };
    let domain = if domain == DOCKER_HUB_KEY {
        DOCKER_HUB.to_owned()
    } else {
        domain
    };
    if domain == DOCKER_HUB && !remainder.contains('/') {
        format!("{domain}/library/{remainder}")
    } else {
        format!("{domain}/{remainder}")
    }
}

/// Go's `filepath.Match` for one host label, with `*` and `?` (kubelet's
/// keyring allows them; character classes are taken literally).
fn glob_matches(glob: &str, text: &str) -> bool {
    let (glob, text): (Vec<char>, Vec<char>) = (glob.chars().collect(), text.chars().collect());
    // The classic two-pointer match with backtracking to the last `*`.
    let (mut g, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match glob.get(g) {
            Some('*') => {
                star = Some((g, t));
                g += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                g += 1;
                t += 1;
            }
            _ => match star {
                Some((star_g, star_t)) => {
                    g = star_g + 1;
                    t = star_t + 1;
                    star = Some((star_g, star_t + 1));
                }
                None => return false,
            },
        }
    }
    glob[g..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(kind: &str, key: &str, json: &str) -> Secret {
        Secret {
            r#type: kind.into(),
            data: [(key.to_owned(), json.as_bytes().to_vec())].into(),
            ..Default::default()
        }
    }

    fn config_json(json: &str) -> Secret {
        secret(DOCKER_CONFIG_JSON, DOCKER_CONFIG_JSON_KEY, json)
    }

    fn auth(username: &str, password: &str) -> RegistryAuth {
        RegistryAuth {
            username: username.into(),
            password: password.into(),
        }
    }

    fn keyring(secrets: &[Secret]) -> Keyring {
        let mut keyring = Keyring::default();
        for secret in secrets {
            keyring.add(secret).unwrap();
        }
        keyring
    }

    #[test]
    fn parses_dockerconfigjson_with_username_and_password_or_auth() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("bob:p+a/ss:word");
        let keyring = keyring(&[config_json(&format!(
            r#"{{"auths": {{
                "registry.example.com": {{"username": "alice", "password": "secret", "email": "a@b.c"}},
                "127.0.0.1:5000": {{"auth": "{encoded}"}}
            }}}}"#
        ))]);
        assert_eq!(
            keyring.lookup("registry.example.com/app:1"),
            [auth("alice", "secret")]
        );
        // The password keeps its colons: only the first one splits.
        assert_eq!(
            keyring.lookup("127.0.0.1:5000/app"),
            [auth("bob", "p+a/ss:word")]
        );
        assert!(keyring.lookup("other.example.com/app").is_empty());
    }

    #[test]
    fn parses_legacy_dockercfg() {
        let keyring = keyring(&[secret(
            DOCKERCFG,
            DOCKERCFG_KEY,
            r#"{"https://registry.example.com": {"username": "alice", "password": "secret"}}"#,
        )]);
        assert_eq!(
            keyring.lookup("registry.example.com/team/app@sha256:abc"),
            [auth("alice", "secret")]
        );
    }

    #[test]
    fn says_what_is_wrong_without_quoting_the_secret() {
        let mut keyring = Keyring::default();
        let err = keyring.add(&config_json("{not json")).unwrap_err();
        assert!(err.contains("not valid JSON"), "{err}");
        let err = keyring
            .add(&config_json(r#"{"auths": {"h": "hunter2"}}"#))
            .unwrap_err();
        assert!(err.contains("not the expected shape"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = keyring
            .add(&config_json(
                r#"{"auths": {"h": {"auth": "aHVudGVyMg=="}}}"#,
            ))
            .unwrap_err();
        assert_eq!(
            err,
            r#"entry "h" of its .dockerconfigjson: auth is not base64(username:password)"#
        );
        let err = keyring
            .add(&secret(DOCKER_CONFIG_JSON, DOCKERCFG_KEY, "{}"))
            .unwrap_err();
        assert_eq!(err, "it has no .dockerconfigjson key");
        let err = keyring.add(&secret("Opaque", "x", "{}")).unwrap_err();
        assert!(err.contains(r#"type is "Opaque""#), "{err}");
        assert!(keyring.entries.is_empty(), "nothing of a bad secret counts");
    }

    #[test]
    fn keys_match_on_host_and_port_whatever_their_scheme_and_version_path() {
        for key in [
            "registry.example.com:5000",
            "https://registry.example.com:5000",
            "http://registry.example.com:5000/v2/",
            "https://registry.example.com:5000/v1/",
            "REGISTRY.example.com:5000/",
        ] {
            let keyring = keyring(&[config_json(&format!(
                r#"{{"auths": {{"{key}": {{"username": "u", "password": "p"}}}}}}"#
            ))]);
            assert_eq!(
                keyring.lookup("registry.example.com:5000/app:1"),
                [auth("u", "p")],
                "{key}"
            );
            assert!(
                keyring.lookup("registry.example.com/app:1").is_empty(),
                "{key}: another port"
            );
            assert!(
                keyring.lookup("registry.example.com:5001/app").is_empty(),
                "{key}: another port"
            );
            assert!(
                keyring.lookup("example.com:5000/app").is_empty(),
                "{key}: another host"
            );
        }
    }

    #[test]
    fn docker_hub_answers_to_its_aliases() {
        for key in [
            "https://index.docker.io/v1/",
            "index.docker.io",
            "docker.io",
        ] {
            let keyring = keyring(&[config_json(&format!(
                r#"{{"auths": {{"{key}": {{"username": "u", "password": "p"}}}}}}"#
            ))]);
            for image in [
                "nginx",
                "nginx:1.27",
                "library/nginx",
                "team/app:1",
                "docker.io/team/app",
                "index.docker.io/team/app",
            ] {
                assert_eq!(keyring.lookup(image), [auth("u", "p")], "{key} {image}");
            }
            assert!(keyring.lookup("quay.io/team/app").is_empty(), "{key}");
            assert!(keyring.lookup("localhost/app").is_empty(), "{key}");
        }
    }

    #[test]
    fn the_most_specific_key_comes_first_then_secrets_in_order() {
        let keyring = keyring(&[
            config_json(r#"{"auths": {"quay.io": {"username": "any", "password": "1"}}}"#),
            config_json(
                r#"{"auths": {"quay.io/team": {"username": "team", "password": "2"},
                              "*.quay.io": {"username": "glob", "password": "3"}}}"#,
            ),
            config_json(r#"{"auths": {"quay.io": {"username": "other", "password": "4"}}}"#),
        ]);
        assert_eq!(
            keyring.lookup("quay.io/team/app"),
            [auth("team", "2"), auth("any", "1"), auth("other", "4")]
        );
        assert_eq!(
            keyring.lookup("quay.io/elsewhere/app"),
            [auth("any", "1"), auth("other", "4")]
        );
        assert_eq!(keyring.lookup("eu.quay.io/x"), [auth("glob", "3")]);
        assert!(
            keyring.lookup("a.eu.quay.io/x").is_empty(),
            "a glob covers one label"
        );
    }

    #[test]
    fn globs_match_as_go_does() {
        assert!(glob_matches("*", "registry"));
        assert!(glob_matches("reg*", "registry"));
        assert!(glob_matches("*try", "registry"));
        assert!(glob_matches("r?g*y", "registry"));
        assert!(glob_matches("*e*i*", "registry"));
        assert!(!glob_matches("reg", "registry"));
        assert!(!glob_matches("*x*", "registry"));
        assert!(!glob_matches("?", ""));
    }

    #[test]
    fn images_are_normalised_as_docker_does() {
        assert_eq!(normalize_image("nginx"), "docker.io/library/nginx");
        assert_eq!(normalize_image("nginx:1"), "docker.io/library/nginx");
        assert_eq!(normalize_image("team/app"), "docker.io/team/app");
        assert_eq!(
            normalize_image("index.docker.io/nginx"),
            "docker.io/library/nginx"
        );
        assert_eq!(
            normalize_image("127.0.0.1:5000/app:1"),
            "127.0.0.1:5000/app"
        );
        assert_eq!(normalize_image("localhost/app@sha256:0"), "localhost/app");
    }
}
