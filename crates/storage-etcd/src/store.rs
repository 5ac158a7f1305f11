//! [`EtcdStore`]: each `Store` call as one etcd request.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions,
    KvClient, Txn, TxnOp, TxnOpResponse, TxnResponse,
};
use moor_failover::{Failover, Start};
use moor_storage::{Error as StorageError, KeyValue, Page, Store, WatchStream};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tower::util::BoxCloneSyncService;

use crate::convert::key_value;
use crate::error::{is_compacted, is_future_revision, is_no_leader, storage_error};
use crate::{Error, watch};

/// Default bound on one request, so that a dead cluster fails calls with
/// `Unavailable` instead of hanging them.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Keys per `list` page; pages are read at one pinned revision.
const PAGE: i64 = 500;
/// A key no one writes, for requests that only want the store's revision.
const PROBE_KEY: &[u8] = b"\0";

/// TLS towards etcd: the CA its server certificate chains to, and the
/// client certificate and key (PEM) it asks for.
#[derive(Clone)]
pub struct EtcdTls {
    /// The CA, PEM.
    pub ca_pem: String,
    /// The client certificate and its key, PEM.
    pub client: Option<(String, String)>,
}

impl std::fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("EtcdTls")
            .field("client_certificate", &self.client.is_some())
            .finish_non_exhaustive()
    }
}

/// A [`Store`] on an etcd v3 cluster.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    request_timeout: Duration,
}

// === impl EtcdStore ===

impl EtcdStore {
    /// Connects to the cluster at `endpoints` (`http://host:port`) and checks
    /// that it answers.
    pub async fn connect(endpoints: &[String]) -> Result<Self, Error> {
        Self::connect_with(endpoints, None, Start::Random).await
    }

    /// [`EtcdStore::connect`] over TLS with `tls` (`https://host:port`
    /// endpoints), for an etcd that serves TLS and checks client
    /// certificates, starting at the member `start` says (`First` for a
    /// server whose own member comes first).
    pub async fn connect_with(
        endpoints: &[String],
        tls: Option<&EtcdTls>,
        start: Start,
    ) -> Result<Self, Error> {
        let client = client(endpoints, tls, start).await?;
        let store = Self {
            client,
            request_timeout: REQUEST_TIMEOUT,
        };
        let revision = store
            .current_revision()
            .await
            .map_err(|source| Error::Unreachable {
                endpoints: endpoints.to_vec(),
                source,
            })?;
        tracing::info!(?endpoints, revision, "connected to etcd");
        Ok(store)
    }

    /// Sets the bound on each request (10 s by default); a request that
    /// takes longer fails with `Unavailable`.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// A KV client; cheap, it shares the connection.
    fn kv(&self) -> KvClient {
        self.client.kv_client()
    }

    /// Runs a request under the request timeout.
    async fn timed<T>(&self, request: impl Future<Output = T>) -> Result<T, StorageError> {
        tokio::time::timeout(self.request_timeout, request)
            .await
            .map_err(|_| {
                let timeout = self.request_timeout;
                StorageError::Unavailable(format!("etcd did not answer within {timeout:?}"))
            })
    }

    /// Runs a transaction under the request timeout; once more, on the
    /// next member, when the first member refused it for want of a leader
    /// (nothing was applied then, so it is safe to repeat).
    async fn txn(&self, txn: Txn) -> Result<TxnResponse, StorageError> {
        match self.timed(self.kv().txn(txn.clone())).await? {
            Err(e) if is_no_leader(&e) => {
                tracing::debug!(error = %e, "etcd member has no leader; writing through the next");
                self.timed(self.kv().txn(txn)).await?.map_err(storage_error)
            }
            done => done.map_err(storage_error),
        }
    }

    /// Runs a read, and runs it again if it failed with `Unavailable`: a
    /// read is safe to repeat, and by then the failover channel has moved
    /// to the next member.
    async fn read<T, F>(&self, once: impl Fn() -> F) -> Result<T, StorageError>
    where
        F: Future<Output = Result<T, StorageError>>,
    {
        match once().await {
            Err(StorageError::Unavailable(why)) => {
                tracing::debug!(%why, "etcd read failed; reading from the next member");
                once().await
            }
            done => done,
        }
    }

    async fn get_once(&self, key: &str) -> Result<Option<KeyValue>, StorageError> {
        let response = self.timed(self.kv().get(key, None)).await?;
        let response = response.map_err(storage_error)?;
        response.kvs().first().map(key_value).transpose()
    }

    async fn list_once(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64), StorageError> {
        let (mut from, end) = prefix_range(prefix);
        let mut items = Vec::new();
        let mut revision = 0;
        loop {
            let mut options = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
            if revision > 0 {
                options = options.with_revision(revision);
            }
            let response = self.timed(self.kv().get(from, Some(options))).await?;
            let response = response.map_err(|e| match e {
                // Compaction overtook the pinned revision: listing again works.
                e if is_compacted(&e) => StorageError::Unavailable(format!("etcd list: {e}")),
                e => storage_error(e),
            })?;
            if revision == 0 {
                revision = header_revision(response.header())?;
            }
            for kv in response.kvs() {
                items.push(key_value(kv)?);
            }
            match (response.more(), items.last()) {
                (true, Some(last)) => from = moor_storage::key_after(&last.key),
                _ => return Ok((items, revision)),
            }
        }
    }

    async fn list_page_once(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<i64>,
    ) -> Result<Page, StorageError> {
        let (start, end) = prefix_range(prefix);
        let from = match start_after {
            Some(key) if key.as_bytes() >= start.as_slice() => moor_storage::key_after(key),
            _ => start,
        };
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        let mut options = GetOptions::new().with_range(end).with_limit(limit);
        if let Some(revision) = revision {
            options = options.with_revision(revision);
        }
        let response = self.timed(self.kv().get(from, Some(options))).await?;
        let response = response.map_err(|e| match (revision, e) {
            (Some(requested), e) if is_compacted(&e) => StorageError::Compacted {
                requested,
                // etcd does not say where its compaction point is.
                compacted: requested,
            },
            (Some(requested), e) if is_future_revision(&e) => {
                StorageError::FutureRevision(requested)
            }
            (_, e) => storage_error(e),
        })?;
        let items = response
            .kvs()
            .iter()
            .map(key_value)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page {
            revision: match revision {
                Some(revision) => revision,
                None => header_revision(response.header())?,
            },
            more: response.more(),
            items,
        })
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StorageError> {
        self.read(|| self.get_once(key)).await
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64), StorageError> {
        self.read(|| self.list_once(prefix)).await
    }

    async fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<i64>,
    ) -> Result<Page, StorageError> {
        self.read(|| self.list_page_once(prefix, start_after, limit, revision))
            .await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<i64, StorageError> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, None)]);
        let response = self.txn(txn).await?;
        if !response.succeeded() {
            return Err(StorageError::AlreadyExists(key.to_owned()));
        }
        header_revision(response.header())
    }

    async fn update(&self, key: &str, value: Bytes, expected: i64) -> Result<i64, StorageError> {
        let txn = Txn::new()
            .when(guard(key, Some(expected)))
            .and_then([TxnOp::put(key, value, None)])
            .or_else([TxnOp::get(key, None)]);
        let response = self.txn(txn).await?;
        if !response.succeeded() {
            return Err(refusal(key, expected, &response));
        }
        header_revision(response.header())
    }

    async fn delete(
        &self,
        key: &str,
        expected: Option<i64>,
    ) -> Result<(KeyValue, i64), StorageError> {
        let txn = Txn::new()
            .when(guard(key, expected))
            .and_then([TxnOp::delete(
                key,
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let response = self.txn(txn).await?;
        if !response.succeeded() {
            return Err(refusal(key, expected.unwrap_or(0), &response));
        }
        let last = response.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Delete(deleted) => deleted.prev_kvs().first().map(key_value),
            _ => None,
        });
        let last = last.ok_or_else(|| StorageError::NotFound(key.to_owned()))??;
        Ok((last, header_revision(response.header())?))
    }

    async fn current_revision(&self) -> Result<i64, StorageError> {
        self.read(|| async {
            let options = GetOptions::new().with_count_only();
            let response = self.timed(self.kv().get(PROBE_KEY, Some(options))).await?;
            header_revision(response.map_err(storage_error)?.header())
        })
        .await
    }

    async fn watch(&self, prefix: &str, after: i64) -> Result<WatchStream, StorageError> {
        let started = self.timed(watch::watch(self.client.watch_client(), prefix, after));
        started.await?
    }

    async fn compact(&self, revision: i64) -> Result<(), StorageError> {
        // Physical: return once the history is gone, not merely scheduled.
        let options = CompactionOptions::new().with_physical();
        match self
            .timed(self.kv().compact(revision, Some(options)))
            .await?
        {
            Ok(_) => Ok(()),
            // At or below the compaction point already: nothing to forget.
            Err(e) if is_compacted(&e) => Ok(()),
            Err(e) => Err(storage_error(e)),
        }
    }
}

/// How long a connection to one member may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// HTTP/2 pings notice a member whose process hangs while its machine
/// still acknowledges (a machine cut off is noticed by the kernel: see
/// `moor_failover::DEAD_AFTER`), so that requests and watches move on.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(3);
/// How long a ping may go unanswered.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(3);

/// The connection settings for one member at `url` (`http://` or, with
/// TLS, `https://`; a bare `host:port` takes the scheme TLS implies).
/// A client of the cluster at `endpoints`, on one member at a time.
pub(crate) async fn client(
    endpoints: &[String],
    tls: Option<&EtcdTls>,
    start: Start,
) -> Result<Client, Error> {
    let invalid = |reason: String| Error::Endpoints {
        endpoints: endpoints.to_vec(),
        reason,
    };
    let members = endpoints
        .iter()
        .map(|url| member_endpoint(url, tls).map_err(&invalid))
        .collect::<Result<Vec<_>, _>>()?;
    // One member at a time, the next when it fails: see moor-failover.
    let failover =
        Failover::new(members, start).ok_or_else(|| invalid("no endpoint given".into()))?;
    let channel = etcd_client::Channel::Custom(BoxCloneSyncService::new(failover));
    // A member cut off from its leader answers at once (UNAVAILABLE, and
    // the channel moves on) instead of holding requests.
    let options = ConnectOptions::new().with_require_leader(true);
    Client::from_channel(channel, Some(options))
        .await
        .map_err(|e| invalid(e.to_string()))
}

fn member_endpoint(url: &str, tls: Option<&EtcdTls>) -> Result<Endpoint, String> {
    let url = match (url.split_once("://"), tls) {
        (Some(_), _) => url.to_owned(),
        (None, Some(_)) => format!("https://{url}"),
        (None, None) => format!("http://{url}"),
    };
    let mut endpoint = Endpoint::from_shared(url.clone()).map_err(|e| format!("{url}: {e}"))?;
    match (endpoint.uri().scheme_str(), tls) {
        (Some("https"), Some(tls)) => {
            let mut settings =
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
            if let Some((cert, key)) = &tls.client {
                settings = settings.identity(Identity::from_pem(cert, key));
            }
            endpoint = endpoint
                .tls_config(settings)
                .map_err(|e| format!("{url}: {e}"))?;
        }
        (Some("https"), None) => {
            return Err(format!(
                "{url}: an https:// member needs a CA to check it against"
            ));
        }
        (Some("http"), Some(_)) => {
            return Err(format!("{url}: TLS is set but the URL is not https://"));
        }
        (Some("http"), None) => {}
        _ => return Err(format!("{url}: not an http:// or https:// URL")),
    }
    Ok(endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .keep_alive_while_idle(true))
}

/// The comparisons for a write to an existing key: it exists and, if
/// `expected` is given, is at that revision.
fn guard(key: &str, expected: Option<i64>) -> Vec<Compare> {
    // A missing key has mod_revision 0, so the existence check is needed
    // even with an expected revision.
    let mut compares = vec![Compare::create_revision(key, CompareOp::Greater, 0)];
    if let Some(expected) = expected {
        compares.push(Compare::mod_revision(key, CompareOp::Equal, expected));
    }
    compares
}

/// Why a guarded write failed, from the `get` in its else branch.
fn refusal(key: &str, expected: i64, response: &TxnResponse) -> StorageError {
    let current = response.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(got) => got.kvs().first().map(|kv| kv.mod_revision()),
        _ => None,
    });
    match current {
        Some(current) => StorageError::Conflict {
            key: key.to_owned(),
            expected,
            current,
        },
        None => StorageError::NotFound(key.to_owned()),
    }
}

/// The revision in a response header, which etcd always sends.
fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Result<i64, StorageError> {
    header
        .map(etcd_client::ResponseHeader::revision)
        .ok_or_else(|| StorageError::Internal("etcd response without a header".into()))
}

/// The `[start, end)` range of keys under `prefix`, as etcd takes it (`\0`
/// as both ends means every key).
pub(crate) fn prefix_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return (prefix.as_bytes().to_vec(), end);
        }
    }
    (vec![0], vec![0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges() {
        assert_eq!(prefix_range("/a/"), (b"/a/".to_vec(), b"/a0".to_vec()));
        assert_eq!(prefix_range(""), (vec![0], vec![0]));
    }
}
