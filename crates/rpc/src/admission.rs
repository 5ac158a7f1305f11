//! Admission: a bounded number of requests in flight, so that a server
//! under more load than it can serve refuses the excess with
//! RESOURCE_EXHAUSTED instead of absorbing it until it runs out of memory
//! or starves what keeps the cluster alive.
//!
//! Kubernetes' priority and fairness, cut down to what moor needs: the
//! server ranks each request ([`Priority`]); critical requests (lease
//! renewals, node status, binds) have seats of their own, so a flood of
//! lists cannot delay a heartbeat; the other requests share the workload
//! seats fairly, each caller (a user, or without authentication a
//! connection) holding at most [`Limits::per_caller`] of them and queueing
//! at most as many more. A request that finds its queue full, or waits
//! longer than [`Limits::queue_timeout`], is refused at once with a hint of
//! when to retry (`grpc-retry-pushback-ms`, the header gRPC's own retry
//! policy reads). Streams that stay open (watches, logs, exec) hold no seat.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use crate::Caller;

/// How the server ranks a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// Holds no seat: health checks, streams that stay open, the cluster's
    /// administrators (who must be able to reach an overloaded server).
    Exempt,
    /// What keeps the cluster alive: lease renewals (node heartbeats and
    /// leader election), node status, binds.
    Critical,
    /// Everything else, shared fairly between callers, holding this many
    /// seats: one for most requests, more for a list of many objects, as
    /// Kubernetes' priority and fairness weighs a list by what it returns.
    Workload(usize),
}

/// Ranks a request by its path (`/package.Service/Method`) and caller
/// (`None` on a server that authenticates nobody).
pub type Classify = Arc<dyn Fn(&str, Option<&Caller>) -> Priority + Send + Sync>;

/// How many requests a server serves at once.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Critical requests served at once.
    pub critical: usize,
    /// Workload requests served at once.
    pub workload: usize,
    /// Workload requests one caller may have served at once, and as many
    /// again waiting.
    pub per_caller: usize,
    /// Requests that may wait for a seat, per priority.
    pub queue: usize,
    /// How long a request may wait for a seat.
    pub queue_timeout: Duration,
}

impl Default for Limits {
    /// 2,000 workload seats: at Kubernetes' 400 (its default, for
    /// requests that cost more than moor's), 5,000 simulated nodes ran a
    /// fifth fewer pods in the same time (BENCHMARKS.md); the flood
    /// protection comes from each caller's share, not the total.
    fn default() -> Self {
        Self {
            critical: 200,
            workload: 2000,
            per_caller: 100,
            queue: 1000,
            queue_timeout: Duration::from_secs(10),
        }
    }
}

/// When a refused client should try again.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// The metadata key of that hint, in milliseconds (gRPC's own retry policy
/// reads it).
const PUSHBACK_KEY: &str = "grpc-retry-pushback-ms";
/// The longest pause a server's hint may ask a client for.
const MAX_PUSHBACK: Duration = Duration::from_secs(30);
/// How many times a client sends a call again that a server refused for
/// overload, as client-go retries a 429.
pub const OVERLOAD_RETRIES: u32 = 10;

/// When a call the server refused for overload may be sent again: the hint
/// of a RESOURCE_EXHAUSTED status (such a call was never served, so it is
/// safe to repeat). `None` for any other status, or one without the hint
/// (an object too large will not fit on a second try).
pub fn pushback(status: &Status) -> Option<Duration> {
    if status.code() != tonic::Code::ResourceExhausted {
        return None;
    }
    let millis: u64 = status
        .metadata()
        .get(PUSHBACK_KEY)?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    Some(Duration::from_millis(millis).min(MAX_PUSHBACK))
}
/// Callers remembered before idle ones are swept out.
const CALLERS_SWEEP: usize = 4096;

/// The seats of one priority.
struct Seats {
    name: &'static str,
    seats: Arc<Semaphore>,
    capacity: usize,
    waiting: AtomicUsize,
}

/// One caller's share of the workload seats.
struct Share {
    seats: Arc<Semaphore>,
    waiting: AtomicUsize,
}

/// The layer's state, shared by every connection.
pub(crate) struct Admission {
    limits: Limits,
    classify: Classify,
    critical: Seats,
    workload: Seats,
    callers: Mutex<HashMap<String, Arc<Share>>>,
}

impl Admission {
    pub(crate) fn new(limits: Limits, classify: Classify) -> Self {
        let seats = |name, capacity: usize| Seats {
            name,
            seats: Arc::new(Semaphore::new(capacity)),
            capacity,
            waiting: AtomicUsize::new(0),
        };
        Self {
            critical: seats("critical", limits.critical),
            workload: seats("workload", limits.workload),
            limits,
            classify,
            callers: Mutex::new(HashMap::new()),
        }
    }

    /// The share of the caller `key`.
    fn share(&self, key: String) -> Arc<Share> {
        let mut callers = self
            .callers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if callers.len() >= CALLERS_SWEEP {
            // A share none of whose seats is taken and for which nothing
            // waits is idle (its permits outlive the `Arc<Share>` clones,
            // so the count of those says nothing).
            let per_caller = self.limits.per_caller;
            callers.retain(|_, share| {
                share.seats.available_permits() < per_caller
                    || share.waiting.load(Ordering::Acquire) > 0
            });
        }
        callers
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Share {
                    seats: Arc::new(Semaphore::new(self.limits.per_caller)),
                    waiting: AtomicUsize::new(0),
                })
            })
            .clone()
    }

    /// Waits for a seat of `priority` (and, for workload, of the caller's
    /// share); the permits free the seats when dropped.
    async fn admit(
        &self,
        priority: Priority,
        caller: impl FnOnce() -> String,
    ) -> Result<Vec<OwnedSemaphorePermit>, Status> {
        let (seats, wanted) = match priority {
            Priority::Exempt => return Ok(Vec::new()),
            Priority::Critical => (&self.critical, 1),
            // Never more than there are, so a heavy request can be served.
            Priority::Workload(wanted) => (
                &self.workload,
                wanted
                    .clamp(1, self.limits.per_caller.min(self.workload.capacity))
                    .try_into()
                    .unwrap_or(1),
            ),
        };
        let deadline = tokio::time::Instant::now() + self.limits.queue_timeout;
        let mut permits = Vec::with_capacity(2);
        if let Priority::Workload(_) = priority {
            let who = caller();
            let share = self.share(who.clone());
            let per_caller = self.limits.per_caller;
            let full =
                || format!("{who} has {per_caller} seats taken and {per_caller} requests waiting");
            let permit = self
                .seat(
                    &share.seats,
                    wanted,
                    &share.waiting,
                    per_caller,
                    deadline,
                    full,
                )
                .await?;
            permits.push(permit);
        }
        let full = || {
            format!(
                "{} {} seats taken and {} requests waiting",
                seats.capacity, seats.name, self.limits.queue
            )
        };
        let permit = self
            .seat(
                &seats.seats,
                wanted,
                &seats.waiting,
                self.limits.queue,
                deadline,
                full,
            )
            .await?;
        permits.push(permit);
        Ok(permits)
    }

    /// `wanted` seats of `seats`, now or, if fewer than `bound` wait, once
    /// they free before `deadline`; refused, saying `full()`, when too many
    /// wait.
    async fn seat(
        &self,
        seats: &Arc<Semaphore>,
        wanted: u32,
        waiting: &AtomicUsize,
        bound: usize,
        deadline: tokio::time::Instant,
        full: impl FnOnce() -> String,
    ) -> Result<OwnedSemaphorePermit, Status> {
        if let Ok(permit) = seats.clone().try_acquire_many_owned(wanted) {
            return Ok(permit);
        }
        let _waiting = Waiting::enter(waiting, bound).ok_or_else(|| busy(full()))?;
        match tokio::time::timeout_at(deadline, seats.clone().acquire_many_owned(wanted)).await {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphores are never closed.
            Ok(Err(_)) => Err(busy("its seats are closed".to_string())),
            Err(_) => Err(busy(format!(
                "waited {:?} for a seat",
                self.limits.queue_timeout
            ))),
        }
    }
}

/// A place in a bounded queue, left on drop.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    /// Takes a place if fewer than `bound` wait.
    fn enter(count: &'a AtomicUsize, bound: usize) -> Option<Self> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < bound).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(count))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// RESOURCE_EXHAUSTED saying why and when to retry.
fn busy(why: String) -> Status {
    let retry = RETRY_AFTER.as_millis();
    let mut status =
        Status::resource_exhausted(format!("the server is busy ({why}); retry in {retry} ms"));
    if let Ok(value) = retry.to_string().parse() {
        status
            .metadata_mut()
            .insert("grpc-retry-pushback-ms", value);
    }
    status
}

/// Who a request comes from, for fairness: its authenticated user, else
/// its connection's address.
fn caller_key<B>(request: &http::Request<B>) -> String {
    if let Some(caller) = request.extensions().get::<Caller>() {
        return format!("user {}", caller.user);
    }
    let extensions = request.extensions();
    let remote = extensions
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|info| info.get_ref().remote_addr())
        });
    match remote {
        Some(addr) => format!("connection {addr}"),
        None => "unknown caller".to_string(),
    }
}

/// The tower layer putting [`Admission`] in front of every route.
#[derive(Clone)]
pub(crate) struct AdmissionLayer(pub(crate) Option<Arc<Admission>>);

impl<S> tower_layer::Layer<S> for AdmissionLayer {
    type Service = Admit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admit {
            inner,
            admission: self.0.clone(),
        }
    }
}

/// The service [`AdmissionLayer`] wraps around the routes.
#[derive(Clone)]
pub(crate) struct Admit<S> {
    inner: S,
    admission: Option<Arc<Admission>>,
}

type BoxResponse<E> =
    Pin<Box<dyn Future<Output = Result<http::Response<tonic::body::Body>, E>> + Send>>;

impl<S> tower_service::Service<http::Request<tonic::body::Body>> for Admit<S>
where
    S: tower_service::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxResponse<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        // The clone is ready only after poll_ready; swap so the ready one serves.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let Some(admission) = self.admission.clone() else {
            return Box::pin(inner.call(request));
        };
        let priority =
            (admission.classify)(request.uri().path(), request.extensions().get::<Caller>());
        if priority == Priority::Exempt {
            return Box::pin(inner.call(request));
        }
        let caller = caller_key(&request);
        Box::pin(async move {
            match admission.admit(priority, move || caller).await {
                // The seats stay taken until the response is sent: a list's
                // megabytes wait in the connection's buffers for a slow
                // client, and freeing the seats when the handler returns
                // let a flood of them fill memory (6 GB seen).
                Ok(permits) => Ok(inner.call(request).await?.map(|body| {
                    tonic::body::Body::new(Holding {
                        body,
                        _permits: permits,
                    })
                })),
                Err(status) => {
                    tracing::debug!(message = status.message(), "refused a request");
                    Ok(status.into_http())
                }
            }
        })
    }
}

/// A response body that holds its request's seats until it is sent (or
/// dropped with its connection).
struct Holding {
    body: tonic::body::Body,
    _permits: Vec<OwnedSemaphorePermit>,
}

impl http_body::Body for Holding {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(limits: Limits) -> Admission {
        Admission::new(limits, Arc::new(|_, _| Priority::Workload(1)))
    }

    fn limits(workload: usize, per_caller: usize, queue: usize) -> Limits {
        Limits {
            critical: 1,
            workload,
            per_caller,
            queue,
            queue_timeout: Duration::from_secs(3600),
        }
    }

    #[tokio::test]
    async fn a_caller_past_its_share_and_queue_is_refused_with_a_hint() {
        let admission = admission(limits(10, 2, 100));
        let a1 = admission.admit(Priority::Workload(1), || "a".into()).await;
        let a2 = admission.admit(Priority::Workload(1), || "a".into()).await;
        assert!(a1.is_ok() && a2.is_ok());
        // Two more of a's may wait; the fifth is refused at once.
        let waiting: Vec<_> = (0..2)
            .map(|_| {
                let admission = &admission;
                Box::pin(async move { admission.admit(Priority::Workload(1), || "a".into()).await })
            })
            .collect();
        let mut waiting = futures::future::join_all(waiting);
        assert!(futures::poll!(&mut waiting).is_pending());
        let refused = admission
            .admit(Priority::Workload(1), || "a".into())
            .await
            .expect_err("past its share and queue");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(
            refused.message().contains("a has 2 seats taken"),
            "{}",
            refused.message()
        );
        assert_eq!(
            refused
                .metadata()
                .get("grpc-retry-pushback-ms")
                .map(|v| v.to_str().ok()),
            Some(Some("1000"))
        );
        // Another caller still gets a seat.
        assert!(
            admission
                .admit(Priority::Workload(1), || "b".into())
                .await
                .is_ok()
        );
        // When a's seats free, its waiting requests get them.
        drop((a1, a2));
        let admitted = waiting.await;
        assert!(admitted.iter().all(Result::is_ok));
    }

    #[tokio::test]
    async fn a_busy_callers_share_survives_the_sweep_of_idle_ones() {
        let admission = admission(limits(CALLERS_SWEEP * 2, 1, 10));
        let held = admission.admit(Priority::Workload(1), || "a".into()).await;
        assert!(held.is_ok());
        for i in 0..CALLERS_SWEEP {
            let permits = admission
                .admit(Priority::Workload(1), || format!("idle-{i}"))
                .await;
            assert!(permits.is_ok());
        }
        // a's one seat is still taken: its next request waits.
        let next = admission.admit(Priority::Workload(1), || "a".into());
        let mut next = std::pin::pin!(next);
        assert!(
            futures::poll!(&mut next).is_pending(),
            "a got a second seat"
        );
        drop(held);
        assert!(next.await.is_ok());
    }

    #[test]
    fn only_a_busy_server_with_a_hint_is_called_again() {
        let hint = |status: &mut Status, millis: &'static str| {
            status.metadata_mut().insert(
                PUSHBACK_KEY,
                tonic::metadata::MetadataValue::from_static(millis),
            );
        };
        let mut too_large = Status::resource_exhausted("too large");
        assert_eq!(pushback(&too_large), None, "no hint");
        hint(&mut too_large, "not a number");
        assert_eq!(pushback(&too_large), None);
        assert_eq!(pushback(&busy("full".into())), Some(RETRY_AFTER));
        let mut long = Status::resource_exhausted("busy");
        hint(&mut long, "99999999");
        assert_eq!(pushback(&long), Some(MAX_PUSHBACK));
        let mut other = Status::unavailable("gone");
        hint(&mut other, "1000");
        assert_eq!(pushback(&other), None);
    }

    #[tokio::test]
    async fn critical_requests_pass_a_full_workload() {
        let admission = admission(limits(1, 1, 0));
        let _held = admission.admit(Priority::Workload(1), || "a".into()).await;
        let refused = admission.admit(Priority::Workload(1), || "b".into()).await;
        assert!(
            refused.is_err(),
            "the workload seat is taken and no one may wait"
        );
        assert!(
            admission
                .admit(Priority::Critical, || "b".into())
                .await
                .is_ok()
        );
        assert!(
            admission
                .admit(Priority::Exempt, || "c".into())
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn a_heavy_request_holds_its_weight_in_seats() {
        let admission = admission(limits(10, 10, 0));
        let heavy = admission.admit(Priority::Workload(8), || "a".into()).await;
        assert!(heavy.is_ok());
        let light = admission.admit(Priority::Workload(2), || "b".into()).await;
        assert!(light.is_ok(), "two seats are left");
        assert!(
            admission
                .admit(Priority::Workload(1), || "c".into())
                .await
                .is_err(),
            "the ten seats are taken"
        );
        drop((heavy, light));
        // Asking for more seats than there are holds them all, rather than
        // never being served.
        let all = admission.admit(Priority::Workload(50), || "d".into()).await;
        assert!(all.is_ok(), "a request of 50 holds the 10 there are");
        assert!(
            admission
                .admit(Priority::Workload(1), || "e".into())
                .await
                .is_err(),
            "it holds all ten"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_waits_at_most_the_queue_timeout() {
        let mut limits = limits(1, 1, 10);
        limits.queue_timeout = Duration::from_secs(5);
        let admission = admission(limits);
        let _held = admission.admit(Priority::Workload(1), || "a".into()).await;
        let refused = admission
            .admit(Priority::Workload(1), || "b".into())
            .await
            .expect_err("no seat within the timeout");
        assert!(
            refused.message().contains("waited 5s"),
            "{}",
            refused.message()
        );
    }
}
