//! `-o` formats: tables, YAML, JSON, names and JSONPath templates.

use moor_codec::KindInfo;
use prost_reflect::DynamicMessage;

use crate::error::{Error, Result};
use crate::jsonpath;
use crate::objects::meta_str;
use crate::table::{Layout, Table};

/// An output format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Format {
    /// The kind's table.
    Table,
    /// The table with its `-o wide` columns.
    Wide,
    /// YAML.
    Yaml,
    /// JSON.
    Json,
    /// `kind/name` lines.
    Name,
    /// A kubectl JSONPath template.
    JsonPath(String),
}

// === impl Format ===

impl Format {
    /// Parses `-o`; none is the table.
    pub fn parse(output: Option<&str>) -> Result<Self> {
        Ok(match output {
            None | Some("") => Self::Table,
            Some("wide") => Self::Wide,
            Some("yaml") => Self::Yaml,
            Some("json") => Self::Json,
            Some("name") => Self::Name,
            Some(other) => match other.split_once('=') {
                Some(("jsonpath", expr)) => Self::JsonPath(expr.to_string()),
                _ => {
                    return Err(Error::Usage(format!(
                        "unknown output format {other:?}: use wide, yaml, json, name or jsonpath=EXPR"
                    )));
                }
            },
        })
    }

    /// Whether this is a table format.
    pub fn is_table(&self) -> bool {
        matches!(self, Self::Table | Self::Wide)
    }
}

/// The kind as kubectl names it in the lines it prints: `pod`,
/// `deployment.apps` (qualified by its API group unless core).
pub fn kind_ref(info: &KindInfo) -> String {
    qualified(&info.kind.to_lowercase(), info.group())
}

/// The resource as kubectl names it in its errors and deletions: `pods`,
/// `deployments.apps`.
pub fn resource_ref(info: &KindInfo) -> String {
    qualified(&info.plural, info.group())
}

fn qualified(name: &str, group: &str) -> String {
    if group.is_empty() {
        name.to_string()
    } else {
        format!("{name}.{group}")
    }
}

/// `kind/name` as kubectl prints it: `pod/web`, `deployment.apps/web`.
pub fn name_of(info: &KindInfo, object: &DynamicMessage) -> String {
    ref_of(info, &meta_str(object, "name"))
}

/// `kind/name` for a name.
pub fn ref_of(info: &KindInfo, name: &str) -> String {
    format!("{}/{name}", kind_ref(info))
}

/// Objects in a non-table format: one object alone when `single`, else a List.
pub fn render(
    format: &Format,
    infos: &[(&KindInfo, Vec<DynamicMessage>)],
    single: bool,
) -> Result<String> {
    let all: Vec<DynamicMessage> = infos.iter().flat_map(|(_, o)| o.iter().cloned()).collect();
    let one = if single { all.first() } else { None };
    Ok(match format {
        Format::Yaml => match one {
            Some(object) => moor_codec::to_yaml(object)?,
            None => moor_codec::list_to_yaml(&all)?,
        },
        Format::Json => match one {
            Some(object) => moor_codec::to_json_string(object)?,
            None => moor_codec::list_to_json_string(&all)?,
        },
        Format::Name => infos
            .iter()
            .flat_map(|(info, objects)| objects.iter().map(|o| name_of(info, o) + "\n"))
            .collect(),
        Format::JsonPath(expr) => {
            let value = match one {
                Some(object) => moor_codec::encode_json(object)?,
                None => moor_codec::encode_list(&all)?,
            };
            jsonpath::render(expr, &value)?
        }
        Format::Table | Format::Wide => {
            let mut out = String::new();
            for (info, objects) in infos {
                let layout = Layout {
                    wide: *format == Format::Wide,
                    ..Layout::default()
                };
                out.push_str(&Table::of(info, objects, layout)?.render(true));
            }
            out
        }
    })
}
