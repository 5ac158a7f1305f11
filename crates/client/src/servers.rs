//! Following the cluster's apiservers: a long-running client given one
//! server (or a few) learns every apiserver the cluster publishes in the
//! Endpoints `default/kubernetes` (see `moor_api::well_known::apiservers`),
//! so that when its server dies it moves to another that it was never told
//! of, as k3s' agents do with their client-side load balancer.

use futures::StreamExt;
use moor_api::core::v1::Endpoints;
use moor_api::well_known::apiservers;

use tokio_util::sync::CancellationToken;

use crate::watcher::Event;
use crate::{Client, ListParams};

/// Keeps `client`'s set of servers (every clone's) to those it was given
/// and those the cluster publishes, in a task of its own until `shutdown`.
/// Failures are the watcher's to retry.
pub fn follow_servers(client: &Client, shutdown: CancellationToken) {
    let client = client.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = follow(client) => {}
        }
    });
}

async fn follow(client: Client) {
    let params = ListParams::default()
        .namespace(apiservers::ENDPOINTS_NAMESPACE)
        .fields(format!("metadata.name={}", apiservers::ENDPOINTS_NAME));
    let channel = client.channel();
    let scheme = channel.scheme().to_string();
    let mut events = std::pin::pin!(crate::watcher(client.api::<Endpoints>(), params));
    while let Some(event) = events.next().await {
        let published = match event {
            Ok(Event::Applied(endpoints)) => urls(&scheme, &endpoints),
            Ok(Event::Restarted(all)) => all.iter().flat_map(|e| urls(&scheme, e)).collect(),
            Ok(Event::Deleted(_)) => Vec::new(),
            Err(err) => {
                tracing::debug!(%err, "watching the published apiservers");
                continue;
            }
        };
        match channel.learn(&published) {
            Ok(()) => tracing::debug!(servers = ?channel.servers(), "apiservers"),
            Err(err) => tracing::warn!(%err, "cannot use the published apiservers"),
        }
    }
}

/// The apiservers' URLs in `endpoints`.
fn urls(scheme: &str, endpoints: &Endpoints) -> Vec<String> {
    endpoints
        .subsets
        .iter()
        .flat_map(|subset| {
            subset.ports.iter().flat_map(move |port| {
                subset.addresses.iter().filter_map(move |address| {
                    let ip: std::net::IpAddr = address.ip.parse().ok()?;
                    let port = u16::try_from(port.port).ok()?;
                    Some(format!(
                        "{scheme}://{}",
                        std::net::SocketAddr::new(ip, port)
                    ))
                })
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use moor_api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset};

    #[test]
    fn urls_of_every_address_and_port() {
        let endpoints = Endpoints {
            subsets: vec![EndpointSubset {
                addresses: vec![
                    EndpointAddress {
                        ip: "10.0.0.1".into(),
                        ..Default::default()
                    },
                    EndpointAddress {
                        ip: "fd00::1".into(),
                        ..Default::default()
                    },
                ],
                ports: vec![EndpointPort {
                    name: "https".into(),
                    port: 6443,
                    protocol: "TCP".into(),
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            urls("https", &endpoints),
            ["https://10.0.0.1:6443", "https://[fd00::1]:6443"]
        );
    }
}
