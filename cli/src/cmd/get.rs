//! `get` and `events`: objects as tables, YAML, JSON, names or JSONPath,
//! and with `-w` every change after them.

use futures::StreamExt;
use moor_codec::KindInfo;
use prost_reflect::DynamicMessage;

use crate::args::{EventsArgs, GetArgs};
use crate::cmd::{Ctx, kind, out};
use crate::error::{Error, Result};
use crate::objects::{self, Filter};
use crate::output::{self, Format};
use crate::rpc::Client;
use crate::table::{Layout, Table};

/// The kinds `get all` shows, as kubectl's `all` category.
const ALL: [&str; 5] = [
    "pods",
    "services",
    "deployments",
    "replicasets",
    "replicationcontrollers",
];

/// Runs `get`.
pub async fn run(ctx: &Ctx, args: GetArgs) -> Result<()> {
    let format = Format::parse(args.output.as_deref())?;
    let (kinds, mut names) = targets(&args.kind)?;
    names.extend(args.names.iter().cloned());
    if !names.is_empty() && kinds.len() > 1 {
        return Err(Error::Usage(
            "names can be given for one kind only".to_string(),
        ));
    }
    let client = ctx.client()?;
    let namespace = if args.all_namespaces {
        String::new()
    } else {
        ctx.namespace()
    };
    let filter = Filter {
        namespace: namespace.clone(),
        labels: args.selector.clone().unwrap_or_default(),
        fields: args.field_selector.clone().unwrap_or_default(),
        chunk_size: args.chunk_size,
    };
    if args.watch {
        let mut filter = filter;
        if let [name] = names.as_slice() {
            filter.fields = join_selector(&filter.fields, &format!("metadata.name={name}"));
        }
        return watch(&client, kinds[0], &filter, &format, args.all_namespaces).await;
    }
    let mut found = Vec::new();
    let mut failure = None;
    for info in &kinds {
        let objects = if names.is_empty() {
            objects::list(&client, info, &filter).await?
        } else {
            let mut objects = Vec::new();
            for name in &names {
                match objects::get(&client, info, &namespace, name).await {
                    Ok(object) => objects.push(object),
                    Err(err) => super::report(failure.replace(err)),
                }
            }
            objects
        };
        found.push((*info, objects));
    }
    let layout = Layout {
        wide: format == Format::Wide,
        namespace: args.all_namespaces,
        kind_prefix: args.kind == "all",
    };
    print(
        &format,
        &found,
        layout,
        names.len() == 1 && kinds.len() == 1,
        !args.no_headers,
    )?;
    let empty = found.iter().all(|(_, o)| o.is_empty());
    if empty && failure.is_none() && names.is_empty() {
        no_resources(&kinds, &namespace);
    }
    failure.map_or(Ok(()), Err)
}

/// Runs `events`: the namespace's events, oldest first.
pub async fn events(ctx: &Ctx, args: EventsArgs) -> Result<()> {
    let get = GetArgs {
        kind: "events".to_string(),
        names: Vec::new(),
        all_namespaces: args.all_namespaces,
        selector: None,
        field_selector: None,
        output: None,
        watch: args.watch,
        no_headers: false,
        chunk_size: 500,
    };
    run(ctx, get).await
}

/// The kinds and names of `get`'s first argument: `all`, `pods,svc` or
/// `pod/web`.
fn targets(arg: &str) -> Result<(Vec<&'static KindInfo>, Vec<String>)> {
    if arg == "all" {
        let kinds = ALL.iter().map(|k| kind(k)).collect::<Result<_>>()?;
        return Ok((kinds, Vec::new()));
    }
    if let Some((k, name)) = arg.split_once('/') {
        return Ok((vec![kind(k)?], vec![name.to_string()]));
    }
    let kinds = arg.split(',').map(kind).collect::<Result<_>>()?;
    Ok((kinds, Vec::new()))
}

fn print(
    format: &Format,
    found: &[(&KindInfo, Vec<DynamicMessage>)],
    layout: Layout,
    single: bool,
    headers: bool,
) -> Result<()> {
    if !format.is_table() {
        return out(&output::render(format, found, single)?);
    }
    let mut sections = Vec::new();
    for (info, objects) in found.iter().filter(|(_, o)| !o.is_empty()) {
        sections.push(Table::of(info, objects, layout)?.render(headers));
    }
    out(&sections.join("\n"))
}

fn join_selector(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a},{b}")
    }
}

fn no_resources(kinds: &[&KindInfo], namespace: &str) {
    if namespace.is_empty() || kinds.iter().all(|k| !k.namespaced) {
        eprintln!("No resources found");
    } else {
        eprintln!("No resources found in {namespace} namespace.");
    }
}

/// Prints the current objects, then a row (or object) per change.
async fn watch(
    client: &Client,
    info: &KindInfo,
    filter: &Filter,
    format: &Format,
    all_namespaces: bool,
) -> Result<()> {
    let layout = Layout {
        wide: *format == Format::Wide,
        namespace: all_namespaces,
        kind_prefix: false,
    };
    // Listing again gives the version to watch from; the objects printed are
    // that list's, so no change falls between the list and the watch.
    let (objects, version) = objects::list_at(client, info, filter).await?;
    let mut table = Table::of(info, &objects, layout)?;
    if format.is_table() {
        out(&table.render(true))?;
    } else {
        for object in &objects {
            out(&output::render(
                format,
                &[(info, vec![object.clone()])],
                true,
            )?)?;
        }
    }
    let mut widths = Table {
        headers: table.headers.clone(),
        rows: Vec::new(),
    };
    for row in &table.rows {
        widths.headers = widths
            .headers
            .iter()
            .zip(row)
            .map(|(h, c)| {
                if c.len() > h.len() {
                    format!("{h:<w$}", w = c.len())
                } else {
                    h.clone()
                }
            })
            .collect();
    }
    let mut changes = Box::pin(objects::watch(client, info, filter, &version).await?);
    while let Some(change) = changes.next().await {
        let change = change?;
        if change.kind == "BOOKMARK" {
            continue;
        }
        if format.is_table() {
            table = Table::of(info, std::slice::from_ref(&change.object), layout)?;
            widths.rows = table.rows;
            out(&format!("{}\n", widths.render_row(0)))?;
        } else {
            out(&output::render(
                format,
                &[(info, vec![change.object])],
                true,
            )?)?;
        }
    }
    Ok(())
}
