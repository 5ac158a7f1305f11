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
use crate::progress::Progress;

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
    let what = crate::output::ref_of(info, &name);
    let mut progress = Progress::on_terminal();
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
                    message: format!("{} {name:?} not found", crate::output::resource_ref(info)),
                });
            }
            (Goal::Condition(t, s), Some(object)) if has_condition(object, t, s)? => return Ok(()),
            (_, Some(object)) => progress.set(awaiting(&what, &goal, object)?),
        }
        // From the version just read: a change (the delete) between the read
        // and the watch is not missed.
        let version = current
            .as_ref()
            .map(|o| objects::meta_str(o, "resource_version"))
            .unwrap_or_default();
        let mut changes = Box::pin(objects::watch(&client, info, &filter, &version).await?);
        let mut clock = tokio::time::interval(Duration::from_secs(1));
        loop {
            let change = tokio::select! {
                change = changes.next() => change,
                _ = clock.tick() => {
                    progress.redraw();
                    continue;
                }
            };
            let Some(change) = change else { break };
            let change = change?;
            match &goal {
                Goal::Delete if change.kind == "DELETED" => return Ok(()),
                Goal::Condition(t, s)
                    if change.kind != "DELETED" && has_condition(&change.object, t, s)? =>
                {
                    return Ok(());
                }
                _ if change.kind != "DELETED" => {
                    progress.set(awaiting(&what, &goal, &change.object)?);
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

/// The status line while waiting: the goal and where the object stands.
fn awaiting(what: &str, goal: &Goal, object: &DynamicMessage) -> Result<String> {
    Ok(match goal {
        Goal::Delete => format!("waiting for {what} to be deleted"),
        Goal::Condition(kind, wanted) => {
            let now = condition_status(object, kind)?;
            let now = now.as_deref().unwrap_or("not reported");
            format!("waiting for {what}: condition {kind} is {now}, waiting for {wanted}")
        }
    })
}

/// The status of condition `kind` in `status.conditions`, if reported.
fn condition_status(object: &DynamicMessage, kind: &str) -> Result<Option<String>> {
    let json = moor_codec::encode_json(object)?;
    let conditions = json
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    Ok(conditions.iter().find_map(|c| {
        let matches = c
            .get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.eq_ignore_ascii_case(kind));
        matches.then(|| {
            c.get("status")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        })
    }))
}

fn has_condition(object: &DynamicMessage, kind: &str, status: &str) -> Result<bool> {
    let now = condition_status(object, kind)?;
    Ok(now.is_some_and(|now| now.eq_ignore_ascii_case(status)))
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
