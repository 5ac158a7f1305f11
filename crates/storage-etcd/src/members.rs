//! [`Members`]: an etcd cluster's membership, for servers that run their
//! own member (`moor up --cluster-init`, `moor join --control-plane`,
//! `moor leave`). A new member joins as a learner, which has no vote, so
//! the cluster keeps its quorum while the member catches up and until it is
//! promoted; only then does it count.

use std::time::Duration;

use etcd_client::{Client, MemberAddOptions};

use crate::EtcdTls;
use crate::error::{Error, storage_error};

/// Bound on one membership request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One member of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its id, as etcd numbers it.
    pub id: u64,
    /// Its name; empty until it has started.
    pub name: String,
    /// Where the other members reach it.
    pub peer_urls: Vec<String>,
    /// Where clients reach it; empty until it has started.
    pub client_urls: Vec<String>,
    /// A learner follows the log but does not vote, nor serve clients.
    pub is_learner: bool,
}

impl From<&etcd_client::Member> for Member {
    fn from(m: &etcd_client::Member) -> Self {
        Self {
            id: m.id(),
            name: m.name().to_string(),
            peer_urls: m.peer_urls().to_vec(),
            client_urls: m.client_urls().to_vec(),
            is_learner: m.is_learner(),
        }
    }
}

/// The membership API of a cluster, through one of its members at a time.
#[derive(Clone)]
pub struct Members {
    client: Client,
}

impl Members {
    /// Connects to the cluster at `endpoints` (nothing is sent yet), asking
    /// the first while it answers: list this machine's member first.
    pub async fn connect(endpoints: &[String], tls: Option<&EtcdTls>) -> Result<Self, Error> {
        Ok(Self {
            client: crate::store::client(endpoints, tls, moor_failover::Start::First).await?,
        })
    }

    /// Every member, learners included.
    pub async fn list(&self) -> Result<Vec<Member>, moor_storage::Error> {
        let mut client = self.client.clone();
        let response = timed(client.member_list()).await?;
        Ok(response.members().iter().map(Member::from).collect())
    }

    /// Adds a learner reached at `peer_url`; returns its id and the
    /// members after the change (the new one without a name yet).
    pub async fn add_learner(
        &self,
        peer_url: &str,
    ) -> Result<(u64, Vec<Member>), moor_storage::Error> {
        let mut client = self.client.clone();
        let response =
            timed(client.member_add([peer_url], Some(MemberAddOptions::new().with_is_learner())))
                .await?;
        let id = response.member().map(|m| m.id()).ok_or_else(|| {
            moor_storage::Error::Internal("etcd added a member without an id".into())
        })?;
        Ok((
            id,
            response.member_list().iter().map(Member::from).collect(),
        ))
    }

    /// Makes learner `id` a voting member. etcd refuses while the learner
    /// is behind the leader's log (`FAILED_PRECONDITION`): call again.
    pub async fn promote(&self, id: u64) -> Result<(), moor_storage::Error> {
        let mut client = self.client.clone();
        timed(client.member_promote(id)).await.map(drop)
    }

    /// The id of the leader, as the member asked knows it.
    pub async fn leader(&self) -> Result<u64, moor_storage::Error> {
        let mut client = self.client.clone();
        Ok(timed(client.status()).await?.leader())
    }

    /// Removes member `id`.
    pub async fn remove(&self, id: u64) -> Result<(), moor_storage::Error> {
        let mut client = self.client.clone();
        timed(client.member_remove(id)).await.map(drop)
    }
}

/// Runs a membership request under the timeout.
async fn timed<T>(
    request: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, moor_storage::Error> {
    tokio::time::timeout(REQUEST_TIMEOUT, request)
        .await
        .map_err(|_| {
            moor_storage::Error::Unavailable(format!(
                "etcd did not answer within {REQUEST_TIMEOUT:?}"
            ))
        })?
        .map_err(storage_error)
}
