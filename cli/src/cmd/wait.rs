//! `wait --for=delete|condition=TYPE[=STATUS] KIND/NAME [--timeout D]`,
//! following the object with a watch until it matches or time runs out.

use std::time::Duration;

use futures::StreamExt;
use prost_reflect::DynamicMessage;
use serde_json::Value;
use tonic::Code;

use crate::args::WaitArgs;
use crate::cmd::{Ctx, kind_and_name, out};
use crate::error::{Error, Result};
use crate::objects::{self, Filter};

/// What is waited for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Goal {
    /// The object is gone.
    Delete,
    /// `status.conditions` has this type with this status.
    Condition(String, String),
}

/// Runs `wait`.
pub async fn run(ctx: &Ctx, args: WaitArgs) -> Result<()> {
    let goal = parse_goal(&args.condition)?;
    let timeout = parse_duration(&args.timeout)?;
    let (info, name) = match args.target.as_slice() {
        [one] => kind_and_name(one, None)?,
        [kind, name] => kind_and_name(kind, Some(name))?,
        _ => return Err(Error::Usage("give KIND/NAME or KIND NAME".to_string())),
    };
    let client = ctx.client()?;
    let filter = Filter {
        namespace: ctx.namespace(),
        fields: format!("metadata.name={name}"),
        ..Filter::default()
    };
    let what = format!("{}/{name}", info.kind.to_lowercase());
    let follow = async {
        let current = match objects::get(&client, info, &filter.namespace, &name).await {
            Ok(object) => Some(object),
            Err(err) if err.code() == Some(Code::NotFound) => None,
            Err(err) => return Err(err),
        };
        match (&goal, &current) {
            (Goal::Delete, None) => return Ok(()),
            (Goal::Condition(..), None) => {
                return Err(Error::Server {
                    code: Code::NotFound,
                    message: format!("{} {name:?} not found", info.plural),
                });
            }
            (Goal::Condition(t, s), Some(object)) if has_condition(object, t, s)? => return Ok(()),
            _ => {}
        }
        // From the version just read: a change (the delete) between the read
        // and the watch is not missed.
        let version = current
            .as_ref()
            .map(|o| objects::meta_str(o, "resource_version"))
            .unwrap_or_default();
        let mut changes = Box::pin(objects::watch(&client, info, &filter, &version).await?);
        while let Some(change) = changes.next().await {
            let change = change?;
            match &goal {
                Goal::Delete if change.kind == "DELETED" => return Ok(()),
                Goal::Condition(t, s)
                    if change.kind != "DELETED" && has_condition(&change.object, t, s)? =>
                {
                    return Ok(());
                }
                _ => {}
            }
        }
        Err(Error::Usage(format!("the watch of {what} ended")))
    };
    match tokio::time::timeout(timeout, follow).await {
        Ok(Ok(())) => match goal {
            Goal::Delete => out(&format!("{what} deleted\n")),
            Goal::Condition(..) => out(&format!("{what} condition met\n")),
        },
        Ok(Err(err)) => Err(err),
        Err(_) => Err(Error::Timeout(what)),
    }
}

fn has_condition(object: &DynamicMessage, kind: &str, status: &str) -> Result<bool> {
    let json = moor_codec::encode_json(object)?;
    let conditions = json
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    Ok(conditions.iter().any(|c| {
        c.get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.eq_ignore_ascii_case(kind))
            && c.get("status")
                .and_then(Value::as_str)
                .is_some_and(|s| s.eq_ignore_ascii_case(status))
    }))
}

fn parse_goal(arg: &str) -> Result<Goal> {
    if arg == "delete" {
        return Ok(Goal::Delete);
    }
    if let Some(rest) = arg.strip_prefix("condition=") {
        let (kind, status) = rest.split_once('=').unwrap_or((rest, "True"));
        if !kind.is_empty() {
            return Ok(Goal::Condition(kind.to_string(), status.to_string()));
        }
    }
    Err(Error::Usage(format!(
        "--for={arg}: use delete or condition=TYPE[=STATUS]"
    )))
}

/// `30s`, `2m`, `1h` or a number of seconds.
pub fn parse_duration(arg: &str) -> Result<Duration> {
    let bad = || Error::Usage(format!("bad duration {arg:?}: use e.g. 30s, 2m, 1h"));
    let (number, unit) = match arg.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => arg.split_at(i),
        None => (arg, "s"),
    };
    let n: u64 = number.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals_and_durations() {
        assert_eq!(parse_goal("delete").unwrap(), Goal::Delete);
        assert_eq!(
            parse_goal("condition=Ready").unwrap(),
            Goal::Condition("Ready".into(), "True".into())
        );
        assert!(parse_goal("ready").is_err());
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert!(parse_duration("5x").is_err());
    }
}
