//! The campaign loop: acquire, renew, step down, release.

use std::future::Future;
use std::time::SystemTime;

use moor_api::coordination::v1::{Lease, LeaseSpec};
use moor_api::meta::v1::ObjectMeta;
use std::sync::{Arc, Mutex};

use moor_client::{Api, Client, Fence};
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
    /// Until when this candidate may act as leader by its own clock: the
    /// start of its last successful acquire or renewal plus the renew
    /// deadline; `None` while it does not lead.
    valid_until: Arc<Mutex<Option<Instant>>>,
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
            valid_until: Arc::new(Mutex::new(None)),
        }
    }

    /// A fence for the writes of work done while leading (see
    /// [`Client::fenced`]): it shuts as soon as the renew deadline has
    /// passed since the last renewal began, by this process's monotonic
    /// clock, whether or not the campaign loop has run since. A process
    /// paused past its lease writes nothing once it resumes, even before
    /// it learns that another leads.
    pub fn fence(&self) -> Fence {
        let valid_until = self.valid_until.clone();
        let name = self.config.name.clone();
        Fence::new(move || match *lock(&valid_until) {
            Some(until) if Instant::now() < until => Ok(()),
            Some(_) => Err(format!(
                "the lease {name} was last renewed longer ago than the renew deadline"
            )),
            None => Err(format!("not leading (lease {name})")),
        })
    }

    fn set_valid_until(&self, until: Option<Instant>) {
        *lock(&self.valid_until) = until;
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
            let Some(won) = self.campaign(&shutdown).await else {
                return;
            };
            self.set_valid_until(Some(won + self.config.renew_deadline));
            let term = CancellationToken::new();
            tracing::info!(lease = %self.config.name, identity = %self.config.identity, "became leader");
            self.leader.send_replace(true);
            self.terms.send_replace(Some(term.clone()));
            let shut = self.lead(won, &shutdown).await;
            self.set_valid_until(None);
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

    /// Tries until the lease is ours: when the winning attempt began;
    /// `None` when shut down first.
    async fn campaign(&mut self, shutdown: &CancellationToken) -> Option<Instant> {
        loop {
            if shutdown.is_cancelled() {
                return None;
            }
            let deadline = self.config.renew_deadline;
            let began = Instant::now();
            match self.timed(deadline, shutdown).await {
                Some(Ok(())) => return Some(began),
                Some(Err(error)) => {
                    tracing::debug!(lease = %self.config.name, %error, "not acquired; retrying");
                }
                None => return None,
            }
            tokio::select! {
                () = tokio::time::sleep(self.config.retry_period) => {}
                () = shutdown.cancelled() => return None,
            }
        }
    }

    /// Renews until the renew deadline passes without success (false) or
    /// shutdown (true). A renewal counts from when it began: the lease may
    /// have been written at any moment after.
    async fn lead(&mut self, won: Instant, shutdown: &CancellationToken) -> bool {
        let mut renewed = won;
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.config.retry_period) => {}
                () = shutdown.cancelled() => return true,
            }
            let left = self.config.renew_deadline.saturating_sub(renewed.elapsed());
            let began = Instant::now();
            match self.timed(left, shutdown).await {
                Some(Ok(())) => {
                    renewed = began;
                    self.set_valid_until(Some(began + self.config.renew_deadline));
                }
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

/// The lock, whatever a panic elsewhere left in it (an instant is always
/// valid).
fn lock(valid_until: &Mutex<Option<Instant>>) -> std::sync::MutexGuard<'_, Option<Instant>> {
    valid_until
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_fence_shuts_at_the_renew_deadline_without_the_loop_running() {
        // Nothing is sent: the client connects on its first call.
        let client = Client::new("http://127.0.0.1:9").unwrap();
        let elector = Elector::new(&client, Config::new("lease", "me"));
        let fence = elector.fence();
        assert!(fence.check().is_err(), "shut while not leading");
        let deadline = elector.config.renew_deadline;
        elector.set_valid_until(Some(Instant::now() + deadline));
        assert!(fence.check().is_ok(), "open right after a renewal");
        // As if the process had been stopped: time passes, no task runs.
        tokio::time::advance(deadline).await;
        assert!(fence.check().is_err(), "shut once the deadline passed");
    }
}
