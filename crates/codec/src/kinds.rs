//! The registry of API kinds, read from the `(moor.meta.v1.resource)` option
//! of the messages in the descriptor pool: adding a kind to proto/ adds it
//! here, with no table to keep in step.

use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, Value};

use crate::error::{Error, ErrorKind};
use crate::suggest;

/// Full name of the message option that marks and describes a kind.
const RESOURCE_OPTION: &str = "moor.meta.v1.resource";

/// One API kind, as its resource option describes it.
#[derive(Clone, Debug)]
pub struct KindInfo {
    /// apiVersion in manifests, e.g. "apps/v1".
    pub api_version: String,
    /// Kind name, e.g. "Deployment".
    pub kind: String,
    /// Lowercase plural, e.g. "deployments".
    pub plural: String,
    /// Short names the CLI accepts, e.g. "deploy".
    pub short_names: Vec<String>,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Fully qualified gRPC service, e.g. "moor.apps.v1.Deployments".
    pub service: String,
    /// The kind's message.
    pub message: MessageDescriptor,
    /// Columns of the CLI's table output, in order.
    pub columns: Vec<Column>,
}

/// One column of the CLI's table output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Header, e.g. "STATUS".
    pub name: String,
    /// JSONPath into the object's JSON form, or "@name" for a computed value.
    pub json_path: String,
    /// 0: always shown; 1: only with `-o wide`.
    pub priority: i32,
}

/// Every kind of a descriptor pool.
#[derive(Clone, Debug)]
pub struct Kinds {
    kinds: Vec<KindInfo>,
}

// === impl KindInfo ===

impl KindInfo {
    /// The API group: "" for core ("v1"), "apps" for "apps/v1".
    pub fn group(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map_or("", |(group, _)| group)
    }

    /// Whether a CLI resource name (kind, plural or short name, any case,
    /// optionally followed by `.group`) names this kind.
    pub fn matches(&self, name: &str) -> bool {
        let name = name.to_lowercase();
        let bare = |n: &str| {
            n == self.kind.to_lowercase()
                || n == self.plural
                || self.short_names.iter().any(|s| s == n)
        };
        bare(&name)
            || name
                .split_once('.')
                .is_some_and(|(resource, group)| group == self.group() && bare(resource))
    }

    fn from_options(message: MessageDescriptor, options: &DynamicMessage) -> Self {
        let columns = list(options, "columns")
            .iter()
            .filter_map(Value::as_message)
            .map(|c| Column {
                name: string(c, "name"),
                json_path: string(c, "json_path"),
                priority: c
                    .get_field_by_name("priority")
                    .and_then(|v| v.as_i32())
                    .unwrap_or(0),
            })
            .collect();
        Self {
            api_version: string(options, "api_version"),
            kind: string(options, "kind"),
            plural: string(options, "plural"),
            short_names: list(options, "short_names")
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            namespaced: options
                .get_field_by_name("namespaced")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            service: string(options, "service"),
            message,
            columns,
        }
    }
}

fn string(message: &DynamicMessage, field: &str) -> String {
    message
        .get_field_by_name(field)
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn list(message: &DynamicMessage, field: &str) -> Vec<Value> {
    message
        .get_field_by_name(field)
        .and_then(|v| v.as_list().map(<[Value]>::to_vec))
        .unwrap_or_default()
}

// === impl Kinds ===

impl Kinds {
    /// The kinds of moor's API (`moor_api::descriptor_pool()`), read once.
    pub fn global() -> &'static Kinds {
        static KINDS: std::sync::OnceLock<Kinds> = std::sync::OnceLock::new();
        KINDS.get_or_init(|| Kinds::from_pool(moor_api::descriptor_pool()))
    }

    /// The kinds of a pool: every message carrying the resource option, in
    /// the pool's order.
    pub fn from_pool(pool: &DescriptorPool) -> Self {
        let Some(extension) = pool.get_extension_by_name(RESOURCE_OPTION) else {
            return Self { kinds: Vec::new() };
        };
        let kinds = pool
            .all_messages()
            .filter_map(|message| {
                let options = message.options();
                if !options.has_extension(&extension) {
                    return None;
                }
                let value = options.get_extension(&extension);
                let info = KindInfo::from_options(message.clone(), value.as_message()?);
                Some(info)
            })
            .collect();
        Self { kinds }
    }

    /// Every kind.
    pub fn iter(&self) -> std::slice::Iter<'_, KindInfo> {
        self.kinds.iter()
    }

    /// The kind written as `apiVersion` and `kind` in a manifest. Errors name
    /// the right apiVersion of a known kind, or the nearest kind name.
    pub fn get(&self, api_version: &str, kind: &str) -> Result<&KindInfo, Error> {
        if let Some(info) = self
            .iter()
            .find(|k| k.api_version == api_version && k.kind == kind)
        {
            return Ok(info);
        }
        if let Some(info) = self.iter().find(|k| k.kind == kind) {
            return Err(ErrorKind::WrongApiVersion {
                kind: kind.to_string(),
                api_version: api_version.to_string(),
                expected: info.api_version.clone(),
            }
            .into());
        }
        let suggestion = suggest::nearest(kind, self.iter().map(|k| k.kind.as_str()));
        Err(ErrorKind::UnknownKind {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            suggestion: suggestion.map(str::to_string),
        }
        .into())
    }

    /// The kind a CLI name denotes: kind, plural or short name, any case,
    /// optionally qualified by group (`deployments.apps`).
    pub fn find(&self, name: &str) -> Option<&KindInfo> {
        self.iter().find(|k| k.matches(name))
    }

    /// Like [`Kinds::find`], with an error that suggests the nearest name.
    pub fn resolve(&self, name: &str) -> Result<&KindInfo, Error> {
        self.find(name).ok_or_else(|| {
            let lower: Vec<String> = self.iter().map(|k| k.kind.to_lowercase()).collect();
            let names = self
                .iter()
                .flat_map(|k| std::iter::once(&k.plural).chain(&k.short_names))
                .map(String::as_str)
                .chain(lower.iter().map(String::as_str));
            let suggestion = suggest::nearest(name, names).map(str::to_string);
            ErrorKind::UnknownResource {
                name: name.to_string(),
                suggestion,
            }
            .into()
        })
    }

    /// The kind whose message has this full name, e.g. "moor.core.v1.Pod".
    pub fn by_message(&self, full_name: &str) -> Option<&KindInfo> {
        self.iter().find(|k| k.message.full_name() == full_name)
    }
}

impl<'a> IntoIterator for &'a Kinds {
    type Item = &'a KindInfo;
    type IntoIter = std::slice::Iter<'a, KindInfo>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moor_api::Resource;

    #[test]
    fn every_kind_of_the_api_is_found() {
        fn check<K: Resource>() {
            let info = Kinds::global().get(K::API_VERSION, K::KIND).unwrap();
            assert_eq!(info.message.full_name(), K::MESSAGE);
            assert_eq!(info.plural, K::PLURAL);
            assert_eq!(info.namespaced, K::NAMESPACED);
            assert_eq!(info.service, K::SERVICE);
            assert!(!info.columns.is_empty());
        }
        check::<moor_api::core::v1::Pod>();
        check::<moor_api::core::v1::Node>();
        check::<moor_api::apps::v1::Deployment>();
        check::<moor_api::coordination::v1::Lease>();
        assert_eq!(Kinds::global().iter().count(), 12);
    }

    #[test]
    fn names_resolve_like_kubectl() {
        let kinds = Kinds::global();
        for name in [
            "deploy",
            "Deployment",
            "deployments",
            "DEPLOYMENTS",
            "deployments.apps",
        ] {
            assert_eq!(
                kinds.find(name).map(|k| k.kind.as_str()),
                Some("Deployment"),
                "{name}"
            );
        }
        assert_eq!(kinds.find("po").map(|k| k.kind.as_str()), Some("Pod"));
        assert!(kinds.find("deployments.core").is_none());
        let lease = kinds.find("leases.coordination.k8s.io").unwrap();
        assert_eq!(lease.group(), "coordination.k8s.io");
        let err = kinds.resolve("deploymnets").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"unknown resource type "deploymnets"; did you mean "deployments"?"#
        );
    }

    #[test]
    fn columns_and_short_names_are_read() {
        let pod = Kinds::global().by_message("moor.core.v1.Pod").unwrap();
        assert_eq!(pod.short_names, ["po"]);
        let ip = pod.columns.iter().find(|c| c.name == "IP").unwrap();
        assert_eq!((ip.json_path.as_str(), ip.priority), (".status.podIP", 1));
    }

    #[test]
    fn lookup_errors_name_the_fix() {
        let kinds = Kinds::global();
        let err = kinds.get("apps/v1", "Deploymnet").unwrap_err();
        assert!(
            err.to_string().ends_with(r#"did you mean "Deployment"?"#),
            "{err}"
        );
        let err = kinds.get("v1", "Deployment").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"kind Deployment is not in apiVersion "v1": Deployment is apps/v1"#
        );
        let err = kinds.get("v1", "Widget").unwrap_err();
        assert!(
            matches!(
                err.kind,
                ErrorKind::UnknownKind {
                    suggestion: None,
                    ..
                }
            ),
            "{err}"
        );
    }
}
