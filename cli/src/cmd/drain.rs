//! `drain NODE`: cordon the node, then delete its pods (gracefully) so their
//! controllers recreate them elsewhere, and wait until they are gone. Pods no
//! controller would recreate are refused unless `--force`, as kubectl does.

use std::time::Duration;

use prost_reflect::{DynamicMessage, Value};

use crate::args::DrainArgs;
use crate::cmd::wait::parse_duration;
use crate::cmd::{Ctx, kind, meta, out};
use crate::error::{Error, Result};
use crate::objects::{self, Filter, meta_str};
use crate::progress::Progress;

/// Runs `drain`.
pub async fn run(ctx: &Ctx, args: DrainArgs) -> Result<()> {
    let timeout = parse_duration(&args.timeout)?;
    meta::cordon(ctx, &args.node, true).await?;
    let client = ctx.client()?;
    let pods = kind("pods")?;
    let filter = Filter {
        namespace: String::new(),
        labels: String::new(),
        fields: format!("spec.nodeName={}", args.node),
        ..Filter::default()
    };
    let on_node = objects::list(&client, pods, &filter).await?;
    let (to_delete, skipped): (Vec<_>, Vec<_>) =
        on_node.into_iter().partition(|p| !is_daemon_set_pod(p));
    if !skipped.is_empty() && !args.ignore_daemonsets {
        return Err(Error::Usage(format!(
            "cannot delete DaemonSet-managed pods (use --ignore-daemonsets): {}",
            names(&skipped)
        )));
    }
    let unmanaged: Vec<_> = to_delete
        .iter()
        .filter(|p| !has_controller(p))
        .cloned()
        .collect();
    if !unmanaged.is_empty() && !args.force {
        return Err(Error::Usage(format!(
            "cannot delete pods that no controller would recreate (use --force): {}",
            names(&unmanaged)
        )));
    }
    for pod in &to_delete {
        let (namespace, name) = (meta_str(pod, "namespace"), meta_str(pod, "name"));
        objects::delete(&client, pods, &namespace, &name, args.grace_period, None).await?;
        out(&format!("evicting pod {namespace}/{name}\n"))?;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut progress = Progress::on_terminal();
    loop {
        let left = objects::list(&client, pods, &filter).await?;
        let left: Vec<_> = left.into_iter().filter(|p| !is_daemon_set_pod(p)).collect();
        if left.is_empty() {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Usage(format!(
                "drain timed out after {}; still on node/{}: {}",
                args.timeout,
                args.node,
                names(&left)
            )));
        }
        let pods = if left.len() == 1 { "pod" } else { "pods" };
        progress.set(format!(
            "waiting for {} {pods} to leave node/{}: {}",
            left.len(),
            args.node,
            names(&left)
        ));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for pod in &to_delete {
        out(&format!("pod/{} evicted\n", meta_str(pod, "name")))?;
    }
    out(&format!("node/{} drained\n", args.node))
}

fn owners(pod: &DynamicMessage) -> Vec<DynamicMessage> {
    pod.get_field_by_name("metadata")
        .and_then(|m| m.as_message().cloned())
        .and_then(|m| {
            m.get_field_by_name("owner_references")
                .map(|v| v.into_owned())
        })
        .and_then(|v| {
            v.as_list()
                .map(|l| l.iter().filter_map(Value::as_message).cloned().collect())
        })
        .unwrap_or_default()
}

fn has_controller(pod: &DynamicMessage) -> bool {
    owners(pod).iter().any(|o| {
        o.get_field_by_name("controller")
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    })
}

fn is_daemon_set_pod(pod: &DynamicMessage) -> bool {
    owners(pod).iter().any(|o| {
        o.get_field_by_name("kind")
            .and_then(|v| v.as_str().map(|k| k == "DaemonSet"))
            .unwrap_or(false)
    })
}

fn names(pods: &[DynamicMessage]) -> String {
    pods.iter()
        .map(|p| format!("{}/{}", meta_str(p, "namespace"), meta_str(p, "name")))
        .collect::<Vec<_>>()
        .join(", ")
}
