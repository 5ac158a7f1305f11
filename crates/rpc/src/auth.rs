//! Authentication: every request to a TLS server names its caller, by a
//! verified client certificate or a bearer token, or is refused with
//! UNAUTHENTICATED before any service sees it.
//!
//! A tower layer under every route of [`crate::Server`], so no service can
//! forget the check. The caller it finds travels in the request's
//! extensions, where [`crate::caller`] reads it. A plain-text server (the
//! explicit `--insecure` mode) authenticates nobody and lets everything in.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

use tonic::Status;
use tonic::transport::CertificateDer;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use crate::Caller;

/// Prefix of the paths anyone may call: health checks are for load
/// balancers and probes that hold no credentials.
const PUBLIC_PREFIX: &str = "/grpc.health.v1.Health/";

/// The group every authenticated caller is in (Kubernetes' name).
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// A boxed future of a token lookup.
pub type TokenFuture = Pin<Box<dyn Future<Output = Result<Option<Caller>, Status>> + Send>>;

/// Looks up bearer tokens, and says which methods a caller may call.
pub trait Authenticator: Send + Sync + 'static {
    /// The caller `token` stands for; `None` when it is unknown, expired
    /// or revoked; an error when it cannot be checked now.
    fn token(&self, token: &str) -> TokenFuture;

    /// Whether `caller` may call the method at `path`
    /// (`/package.Service/Method`); PERMISSION_DENIED otherwise. Finer
    /// checks, on the objects a call touches, are the service's.
    fn authorize(&self, _caller: &Caller, _path: &str) -> Result<(), Status> {
        Ok(())
    }
}

/// Knows no token: only client certificates get in.
#[derive(Clone, Copy, Debug, Default)]
pub struct CertificatesOnly;

impl Authenticator for CertificatesOnly {
    fn token(&self, _token: &str) -> TokenFuture {
        Box::pin(std::future::ready(Ok(None)))
    }
}

/// The layer: authenticates when `enabled` (the server speaks TLS).
#[derive(Clone)]
pub(crate) struct AuthLayer {
    pub(crate) enabled: bool,
    pub(crate) authenticator: Arc<dyn Authenticator>,
    pub(crate) callers: Arc<CallerCache>,
}

/// The caller each live connection's certificate names, so a certificate
/// is parsed once per connection rather than once per call. Keyed by the
/// address of the connection's certificate list, which is shared by every
/// request on the connection and cannot be reused while the entry's weak
/// reference still upgrades to it.
#[derive(Default)]
pub(crate) struct CallerCache {
    entries: Mutex<HashMap<usize, (Weak<PeerCerts>, Caller)>>,
}

/// A connection's certificates, as tonic keeps them.
type PeerCerts = Vec<CertificateDer<'static>>;

/// Entries kept before dead connections' are swept out.
const CALLER_CACHE_SWEEP: usize = 1024;

impl CallerCache {
    fn caller(&self, certs: &Arc<PeerCerts>) -> Option<Caller> {
        let key = Arc::as_ptr(certs) as usize;
        if let Ok(entries) = self.entries.lock()
            && let Some((weak, caller)) = entries.get(&key)
            && weak.upgrade().is_some_and(|live| Arc::ptr_eq(&live, certs))
        {
            return Some(caller.clone());
        }
        let info = moor_pki::CertInfo::from_der(certs.first()?.as_ref()).ok()?;
        let caller = Caller {
            user: info.common_name?,
            groups: info.organizations,
        };
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= CALLER_CACHE_SWEEP {
                entries.retain(|_, (weak, _)| weak.strong_count() > 0);
            }
            entries.insert(key, (Arc::downgrade(certs), caller.clone()));
        }
        Some(caller)
    }
}

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticate {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around the routes.
#[derive(Clone)]
pub(crate) struct Authenticate<S> {
    inner: S,
    layer: AuthLayer,
}

type BoxResponse<E> =
    Pin<Box<dyn Future<Output = Result<http::Response<tonic::body::Body>, E>> + Send>>;

impl<S> tower_service::Service<http::Request<tonic::body::Body>> for Authenticate<S>
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

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        // The clone is ready only after poll_ready; swap so the ready one serves.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if !self.layer.enabled || request.uri().path().starts_with(PUBLIC_PREFIX) {
            return Box::pin(inner.call(request));
        }
        if let Some(caller) = certificate_caller(&request, &self.layer.callers) {
            if let Err(status) = self
                .layer
                .authenticator
                .authorize(&caller, request.uri().path())
            {
                return refuse(status);
            }
            request.extensions_mut().insert(authenticated(caller));
            return Box::pin(inner.call(request));
        }
        let token = match bearer(&request) {
            Bearer::Token(token) => token,
            Bearer::Missing => {
                return refuse(Status::unauthenticated(
                    "no client certificate and no bearer token: present a certificate signed by \
                     the cluster CA, or send `authorization: Bearer TOKEN`",
                ));
            }
            Bearer::Malformed(why) => return refuse(Status::unauthenticated(why)),
        };
        let lookup = self.layer.authenticator.token(&token);
        let authenticator = self.layer.authenticator.clone();
        Box::pin(async move {
            match lookup.await {
                Ok(Some(caller)) => {
                    if let Err(status) = authenticator.authorize(&caller, request.uri().path()) {
                        return Ok(status.into_http());
                    }
                    request.extensions_mut().insert(authenticated(caller));
                    inner.call(request).await
                }
                Ok(None) => Ok(Status::unauthenticated(
                    "the bearer token is unknown, expired or revoked",
                )
                .into_http()),
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

/// `caller` with the group of every authenticated caller.
fn authenticated(mut caller: Caller) -> Caller {
    if !caller.groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
        caller.groups.push(AUTHENTICATED_GROUP.to_string());
    }
    caller
}

fn refuse<E: Send + 'static>(status: Status) -> BoxResponse<E> {
    tracing::debug!(
        message = status.message(),
        "refused an unauthenticated request"
    );
    Box::pin(std::future::ready(Ok(status.into_http())))
}

/// The caller named by the connection's verified client certificate.
fn certificate_caller<B>(request: &http::Request<B>, cache: &CallerCache) -> Option<Caller> {
    let certs = request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()?
        .peer_certs()?;
    cache.caller(&certs)
}

enum Bearer {
    Token(String),
    Missing,
    Malformed(&'static str),
}

fn bearer<B>(request: &http::Request<B>) -> Bearer {
    let Some(value) = request.headers().get(http::header::AUTHORIZATION) else {
        return Bearer::Missing;
    };
    let Ok(value) = value.to_str() else {
        return Bearer::Malformed("the authorization header is not text");
    };
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() => {
            Bearer::Token(token.trim().to_string())
        }
        _ => Bearer::Malformed("the authorization header is not `Bearer TOKEN`"),
    }
}
