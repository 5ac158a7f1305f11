//! Running work only while leading: the loop every leader-elected component
//! needs, written once.

use std::future::Future;
use std::time::Duration;

use moor_client::Client;
use tokio_util::sync::CancellationToken;

use crate::{Config, Elector};

/// Lease timing of an election (Kubernetes' defaults: 15 s, 10 s, 2 s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long a lease is valid after its last renewal.
    pub duration: Duration,
    /// How long the leader keeps trying to renew before stepping down.
    pub renew_deadline: Duration,
    /// Pause between attempts to acquire or renew.
    pub retry: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    }
}

/// Campaigns for the Lease `moor-system/<name>` as `identity` and runs
/// `work(fenced, term)` for each term won: `fenced` is `client` with its
/// writes fenced by the term ([`Elector::fence`]), `term` is cancelled
/// when the term ends. Returns once `shutdown` is cancelled (the lease is
/// then released).
pub async fn lead<F, Fut>(
    client: &Client,
    name: &str,
    identity: &str,
    timing: Timing,
    shutdown: CancellationToken,
    mut work: F,
) where
    F: FnMut(Client, CancellationToken) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut config = Config::new(name, identity);
    config.lease_duration = timing.duration;
    config.renew_deadline = timing.renew_deadline;
    config.retry_period = timing.retry;
    let elector = Elector::new(client, config);
    let fenced = client.fenced(elector.fence());
    let mut terms = elector.terms();
    let election = tokio::spawn(elector.run(shutdown.clone()));
    tracing::info!(lease = %name, %identity, "waiting to become leader");
    loop {
        let term = tokio::select! {
            term = async { terms.wait_for(Option::is_some).await.map(|t| t.clone()) } => match term {
                Ok(Some(term)) => term,
                Ok(None) => continue,
                Err(_) => break,
            },
            () = shutdown.cancelled() => break,
        };
        tracing::info!(lease = %name, %identity, "leading");
        work(fenced.clone(), term).await;
        tracing::info!(lease = %name, %identity, "term ended");
    }
    // The elector ends its term and releases the lease on shutdown.
    if let Err(err) = election.await {
        tracing::error!(%err, "leader election task failed");
    }
}
