//! The campaign loop: acquire, renew, step down, release.

use std::future::Future;
use std::time::SystemTime;

use moor_api::coordination::v1::{Lease, LeaseSpec};
use moor_api::meta::v1::ObjectMeta;
use moor_client::{Api, Client};
use prost_types::Timestamp;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::record::{self, Decision, Observed};
use crate::{Config, Error};

/// One candidate in one election. Create it, take [`Elector::subscribe`] or
/// [`Elector::terms`], then spawn [`Elector::run`].
pub struct Elector {
    api: Api<Lease>,
    config: Config,
    leader: watch::Sender<bool>,
    terms: watch::Sender<Option<CancellationToken>>,
    observed: Option<Observed>,
}

// === impl Elector ===

impl Elector {
    /// A candidate talking to the apiserver through `client`.
    pub fn new(client: &Client, config: Config) -> Self {
        Self {
            api: client.api::<Lease>(),
            config,
            leader: watch::channel(false).0,
            terms: watch::channel(None).0,
            observed: None,
        }
    }

    /// "Am I the leader", as it changes.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leader.subscribe()
    }

    /// The current term's token while leading (cancelled when the term ends),
    /// `None` while not.
    pub fn terms(&self) -> watch::Receiver<Option<CancellationToken>> {
        self.terms.subscribe()
    }

    /// Campaigns, leads and campaigns again after a loss, until `shutdown`;
    /// then ends the term and, if configured, releases the lease.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            if !self.campaign(&shutdown).await {
                return;
            }
            let term = CancellationToken::new();
            tracing::info!(lease = %self.config.name, identity = %self.config.identity, "became leader");
            self.leader.send_replace(true);
            self.terms.send_replace(Some(term.clone()));
            let shut = self.lead(&shutdown).await;
            term.cancel();
            self.terms.send_replace(None);
            self.leader.send_replace(false);
            if shut {
                if self.config.release_on_cancel {
                    self.release().await;
                }
                return;
            }
            tracing::warn!(lease = %self.config.name, identity = %self.config.identity, "lost leadership; campaigning again");
        }
    }

    /// Tries until the lease is ours; false when shut down first.
    async fn campaign(&mut self, shutdown: &CancellationToken) -> bool {
        loop {
            if shutdown.is_cancelled() {
                return false;
            }
            let deadline = self.config.renew_deadline;
            match self.timed(deadline, shutdown).await {
                Some(Ok(())) => return true,
                Some(Err(error)) => {
                    tracing::debug!(lease = %self.config.name, %error, "not acquired; retrying");
                }
                None => return false,
            }
            tokio::select! {
                () = tokio::time::sleep(self.config.retry_period) => {}
                () = shutdown.cancelled() => return false,
            }
        }
    }

    /// Renews until the renew deadline passes without success (false) or
    /// shutdown (true).
    async fn lead(&mut self, shutdown: &CancellationToken) -> bool {
        let mut renewed = Instant::now();
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.config.retry_period) => {}
                () = shutdown.cancelled() => return true,
            }
            let left = self.config.renew_deadline.saturating_sub(renewed.elapsed());
            match self.timed(left, shutdown).await {
                Some(Ok(())) => renewed = Instant::now(),
                Some(Err(Error::HeldByOther { holder })) => {
                    tracing::warn!(lease = %self.config.name, %holder, "lease taken by another candidate");
                    return false;
                }
                Some(Err(error)) => {
                    tracing::warn!(lease = %self.config.name, %error, "renewal failed");
                    if renewed.elapsed() >= self.config.renew_deadline {
                        return false;
                    }
                }
                None => return true,
            }
        }
    }

    /// One acquire-or-renew attempt bounded by `limit`; `None` on shutdown.
    async fn timed(
        &mut self,
        limit: std::time::Duration,
        shutdown: &CancellationToken,
    ) -> Option<Result<(), Error>> {
        let attempt = bounded(limit, self.try_acquire_or_renew());
        tokio::select! {
            result = attempt => Some(result),
            () = shutdown.cancelled() => None,
        }
    }

    /// Reads the lease and takes or renews it when allowed, conditionally on
    /// the version read.
    async fn try_acquire_or_renew(&mut self) -> Result<(), Error> {
        let ns = self.config.namespace.clone();
        let now = Timestamp::from(SystemTime::now());
        let mut lease = match self.api.get(&ns, &self.config.name).await {
            Ok(lease) => lease,
            Err(moor_client::Error::NotFound(_)) => {
                let spec = self.fresh_spec(now, 0);
                let lease = Lease {
                    metadata: Some(ObjectMeta {
                        name: self.config.name.clone(),
                        namespace: ns,
                        ..Default::default()
                    }),
                    spec: Some(spec.clone()),
                    ..Default::default()
                };
                self.api.create(&lease).await?;
                record::wrote(&mut self.observed, &spec, Instant::now());
                return Ok(());
            }
            Err(error) => return Err(error.into()),
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let next = match record::decide(
            &spec,
            &self.config.identity,
            &mut self.observed,
            Instant::now(),
            self.config.lease_duration,
        ) {
            Decision::Wait { holder } => return Err(Error::HeldByOther { holder }),
            Decision::Renew => LeaseSpec {
                renew_time: Some(now),
                lease_duration_seconds: Some(self.config.lease_seconds()),
                ..spec
            },
            Decision::Take => self.fresh_spec(now, spec.lease_transitions.unwrap_or(0) + 1),
        };
        lease.spec = Some(next.clone());
        self.api.update(&lease).await?;
        record::wrote(&mut self.observed, &next, Instant::now());
        Ok(())
    }

    /// Gives the lease up if we still hold it.
    async fn release(&mut self) {
        let result = async {
            let mut lease = self
                .api
                .get(&self.config.namespace, &self.config.name)
                .await?;
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
                return Ok(());
            }
            spec.holder_identity = Some(String::new());
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(Timestamp::from(SystemTime::now()));
            self.api.update(&lease).await.map(|_| ())
        };
        match bounded(self.config.renew_deadline, async { Ok(result.await?) }).await {
            Ok(()) => tracing::info!(lease = %self.config.name, "released the lease"),
            Err(error) => {
                tracing::warn!(lease = %self.config.name, %error, "could not release the lease; it will expire");
            }
        }
    }

    fn fresh_spec(&self, now: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(self.config.lease_seconds()),
            acquire_time: Some(now),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
        }
    }
}

/// Runs `attempt` for at most `limit`.
async fn bounded<F>(limit: std::time::Duration, attempt: F) -> Result<(), Error>
where
    F: Future<Output = Result<(), Error>>,
{
    tokio::time::timeout(limit, attempt)
        .await
        .unwrap_or(Err(Error::Timeout))
}
