//! `schedule --dry-run`: asks the active scheduler where a pod would go,
//! without binding it. The scheduler is found through the Endpoints it
//! publishes (`moor-system/moor-scheduler`, port "grpc"), or `--scheduler`.
//! A pod that fits nowhere is an answer, not an error: the exit code is 0.

use moor_api::core::v1::{Endpoints, Pod};
use moor_api::meta::v1::GetRequest;
use moor_api::scheduler::v1::{NodePlan, PlanRequest, PlanResponse};
use tonic::Code;

use crate::args::ScheduleArgs;
use crate::cmd::{Ctx, kind, out};
use crate::config::Target;
use crate::error::{Error, Result};
use crate::manifest;
use crate::rpc::Client;
use crate::table::Table;

use moor_api::well_known::SCHEDULER_ENDPOINTS as PUBLISHED_AS;

/// Runs `schedule`.
pub async fn run(ctx: &Ctx, args: ScheduleArgs) -> Result<()> {
    if !args.dry_run {
        return Err(Error::Usage("only --dry-run is supported".to_string()));
    }
    let namespace = ctx.namespace();
    let (request, name) = request(&args, &namespace)?;
    let scheduler = match &args.scheduler {
        Some(url) => Target {
            server: url.clone(),
            chosen_by: "the --scheduler flag".to_string(),
            namespace: None,
            credentials: moor_rpc::Credentials::default(),
        },
        None => find(&ctx.client()?).await?,
    };
    let scheduler = Client::new(scheduler)?;
    let plan = scheduler
        .scheduler()
        .plan(request)
        .await
        .map_err(|s| scheduler.status(s))?
        .into_inner();
    out(&render(&plan, &name))
}

/// The request for the pod the arguments name, and its name.
fn request(args: &ScheduleArgs, namespace: &str) -> Result<(PlanRequest, String)> {
    if let Some(file) = &args.file {
        let items = manifest::read(std::slice::from_ref(file))?;
        let [item] = items.as_slice() else {
            return Err(Error::Usage(format!(
                "{}: expected one pod, found {} objects",
                file.display(),
                items.len()
            )));
        };
        let pod: Pod = moor_codec::decode_as(&item.document).map_err(|source| Error::Manifest {
            file: item.file.clone(),
            source: Box::new(source),
        })?;
        let meta = pod.metadata.clone().unwrap_or_default();
        let namespace = if meta.namespace.is_empty() {
            namespace.to_string()
        } else {
            meta.namespace
        };
        let request = PlanRequest {
            namespace,
            name: String::new(),
            pod: Some(pod),
        };
        return Ok((request, meta.name));
    }
    let target = args.pod.as_deref().unwrap_or_default();
    let name = match target.split_once('/') {
        Some((k, name)) if kind(k)?.kind == "Pod" => name,
        Some((k, _)) => return Err(Error::Usage(format!("{k}: only pods are scheduled"))),
        None => target,
    };
    let request = PlanRequest {
        namespace: namespace.to_string(),
        name: name.to_string(),
        pod: None,
    };
    Ok((request, name.to_string()))
}

/// The scheduler's address, from the Endpoints it publishes.
async fn find(client: &Client) -> Result<Target> {
    let (namespace, name) = PUBLISHED_AS;
    let missing = |why: &str| {
        Error::Usage(format!(
            "no scheduler is serving plans (Endpoints {namespace}/{name} {why}); pass --scheduler URL"
        ))
    };
    let request = GetRequest {
        namespace: namespace.to_string(),
        name: name.to_string(),
    };
    let endpoints = match client.endpoints().get(request).await {
        Ok(response) => response.into_inner(),
        Err(status) if status.code() == Code::NotFound => return Err(missing("not found")),
        Err(status) => return Err(client.status(status)),
    };
    let server = address(&endpoints).ok_or_else(|| missing("has no address"))?;
    Ok(Target {
        server,
        chosen_by: format!("the Endpoints {namespace}/{name}"),
        namespace: None,
        credentials: moor_rpc::Credentials::default(),
    })
}

/// `http://IP:PORT` of the first address and the port named "grpc" (or
/// the only port).
fn address(endpoints: &Endpoints) -> Option<String> {
    endpoints.subsets.iter().find_map(|subset| {
        let ip = &subset.addresses.first()?.ip;
        let port =
            subset
                .ports
                .iter()
                .find(|p| p.name == "grpc")
                .or(match subset.ports.as_slice() {
                    [only] => Some(only),
                    _ => None,
                })?;
        let host = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.clone()
        };
        Some(format!("http://{host}:{}", port.port))
    })
}

/// The plan as a table, best node first, then the verdict.
fn render(plan: &PlanResponse, pod: &str) -> String {
    let mut nodes: Vec<&NodePlan> = plan.nodes.iter().collect();
    // Fitting nodes by score, highest first; then the others; by name within.
    nodes.sort_by_key(|n| {
        let fits = n.failed_filter.is_empty();
        (
            !fits,
            std::cmp::Reverse(n.score.unwrap_or(0)),
            n.node.clone(),
        )
    });
    let rows = nodes
        .iter()
        .map(|n| {
            let fits = n.failed_filter.is_empty();
            let reason = if fits {
                "-".to_string()
            } else if n.reasons.is_empty() {
                n.failed_filter.clone()
            } else {
                format!("{}: {}", n.failed_filter, n.reasons.join(", "))
            };
            vec![
                n.node.clone(),
                if fits { "yes" } else { "no" }.to_string(),
                n.score.map_or("-".to_string(), |s| s.to_string()),
                reason,
            ]
        })
        .collect();
    let table = Table {
        headers: ["NODE", "FITS", "SCORE", "REASON"]
            .map(String::from)
            .to_vec(),
        rows,
    };
    let mut text = if plan.nodes.is_empty() {
        String::new()
    } else {
        table.render(true)
    };
    if plan.node.is_empty() {
        text.push_str(&plan.message);
    } else {
        text.push_str(&format!("pod/{pod} would be bound to node {}", plan.node));
    }
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use moor_api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset};

    use super::*;

    fn node(name: &str, score: Option<i64>, filter: &str, reasons: &[&str]) -> NodePlan {
        NodePlan {
            node: name.into(),
            failed_filter: filter.into(),
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
            score,
        }
    }

    #[test]
    fn the_plan_lists_the_best_node_first() {
        let plan = PlanResponse {
            nodes: vec![
                node("a", None, "NodeResourcesFit", &["Insufficient cpu"]),
                node("b", Some(40), "", &[]),
                node("c", Some(90), "", &[]),
            ],
            node: "c".into(),
            message: String::new(),
        };
        assert_eq!(
            render(&plan, "web"),
            "NODE   FITS   SCORE   REASON\n\
             c      yes    90      -\n\
             b      yes    40      -\n\
             a      no     -       NodeResourcesFit: Insufficient cpu\n\
             pod/web would be bound to node c\n"
        );
        let nowhere = PlanResponse {
            nodes: vec![node("a", None, "NodeResourcesFit", &["Insufficient cpu"])],
            node: String::new(),
            message: "0/1 nodes are available: 1 Insufficient cpu.".into(),
        };
        assert!(
            render(&nowhere, "web").ends_with("\n0/1 nodes are available: 1 Insufficient cpu.\n")
        );
    }

    #[test]
    fn the_address_is_the_grpc_port_of_the_first_address() {
        let subset = |ports: Vec<EndpointPort>| EndpointSubset {
            addresses: vec![EndpointAddress {
                ip: "10.0.0.5".into(),
                ..Default::default()
            }],
            ports,
            ..Default::default()
        };
        let port = |name: &str, port| EndpointPort {
            name: name.into(),
            port,
            protocol: "TCP".into(),
        };
        let endpoints = Endpoints {
            subsets: vec![subset(vec![port("metrics", 9000), port("grpc", 7000)])],
            ..Default::default()
        };
        assert_eq!(address(&endpoints).as_deref(), Some("http://10.0.0.5:7000"));
        let only = Endpoints {
            subsets: vec![subset(vec![port("", 7001)])],
            ..Default::default()
        };
        assert_eq!(address(&only).as_deref(), Some("http://10.0.0.5:7001"));
        assert_eq!(address(&Endpoints::default()), None);
    }
}
