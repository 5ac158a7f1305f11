//! The client side: a channel to a server, over TLS when the URL is
//! `https://`, carrying a bearer token when the caller has one instead of a
//! client certificate.

use std::task::{Context, Poll};
use std::time::Duration;

use moor_failover::Failover;
use tonic::transport::Endpoint;

use crate::{ClientTls, Error};

/// How long connecting to one server may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 pings notice a server process that hangs while its machine still
/// acknowledges (a machine cut off is noticed sooner, by the kernel: see
/// `moor_failover::DEAD_AFTER`), so that watches on it end and move on.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// How long a ping may go unanswered.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// How a client reaches and proves itself to a server.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    /// TLS settings (the CA to trust, and a client certificate if any);
    /// needed for an `https://` URL.
    pub tls: Option<ClientTls>,
    /// A bearer token, sent with every call.
    pub token: Option<String>,
}

/// A lazily connecting channel to one server, or to the first that works
/// of several (see [`moor_failover`]): the first call connects, a broken
/// connection is made again on the next call, and a dead server is left for
/// the next one. Cheap to clone; clones share the connections.
#[derive(Clone, Debug)]
pub struct Channel {
    inner: Failover,
    authorization: Option<http::HeaderValue>,
    /// The servers given, which stay in the set whatever is learned.
    given: Vec<String>,
    credentials: Credentials,
}

/// A channel to `url` (`http://HOST:PORT`, plain text, for an `--insecure`
/// server or a test on loopback).
pub fn channel(url: &str) -> Result<Channel, Error> {
    connect(url, &Credentials::default())
}

/// A channel to `urls` with `credentials`: one server URL, or several
/// separated by commas (`https://a:6443,https://b:6443`), servers of one
/// cluster that the channel fails over between. An `https://` URL needs
/// TLS settings, and TLS settings need an `https://` URL: a mismatch is an
/// error naming it rather than a connection that fails later.
pub fn connect(urls: &str, credentials: &Credentials) -> Result<Channel, Error> {
    let given: Vec<String> = urls
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(str::to_string)
        .collect();
    let endpoints = given
        .iter()
        .map(|url| endpoint(url, credentials))
        .collect::<Result<Vec<_>, _>>()?;
    let inner = Failover::new(endpoints, moor_failover::Start::Random).ok_or_else(|| {
        Error::Credentials {
            url: urls.to_string(),
            reason: "no server URL given".to_string(),
        }
    })?;
    let authorization = match &credentials.token {
        Some(token) => {
            let mut value =
                http::HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                    Error::Credentials {
                        url: urls.to_string(),
                        reason: "the token holds characters a header cannot carry".to_string(),
                    }
                })?;
            value.set_sensitive(true);
            Some(value)
        }
        None => None,
    };
    Ok(Channel {
        inner,
        authorization,
        given,
        credentials: credentials.clone(),
    })
}

// === impl Channel ===

impl Channel {
    /// Sets the servers to those given at the start and `learned` (URLs of
    /// the same scheme, e.g. from the cluster's published apiservers), for
    /// every clone of this channel.
    pub fn learn(&self, learned: &[String]) -> Result<(), Error> {
        let mut urls = self.given.clone();
        for url in learned {
            if !urls.contains(url) {
                urls.push(url.clone());
            }
        }
        let endpoints = urls
            .iter()
            .map(|url| endpoint(url, &self.credentials))
            .collect::<Result<Vec<_>, _>>()?;
        self.inner.set_servers(endpoints);
        Ok(())
    }

    /// The servers of the set now, as URLs without a path.
    pub fn servers(&self) -> Vec<String> {
        self.inner
            .servers()
            .iter()
            .map(|uri| uri.to_string().trim_end_matches('/').to_string())
            .collect()
    }

    /// The scheme of the servers given (`https` or `http`).
    pub fn scheme(&self) -> &str {
        match self.given.first() {
            Some(url) if url.starts_with("http://") => "http",
            _ => "https",
        }
    }
}

/// The connection settings for the server at `url`.
fn endpoint(url: &str, credentials: &Credentials) -> Result<Endpoint, Error> {
    let invalid = |reason: &str| Error::Credentials {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let mut endpoint =
        Endpoint::from_shared(url.to_string()).map_err(|source| Error::InvalidUrl {
            url: url.to_string(),
            source,
        })?;
    let https = endpoint.uri().scheme_str() == Some("https");
    match (&credentials.tls, https) {
        (Some(tls), true) => {
            endpoint = endpoint.tls_config(tls.config()).map_err(Error::Tls)?;
        }
        (None, true) => {
            return Err(invalid(
                "an https:// server needs the cluster CA to check it against (no CA given)",
            ));
        }
        (Some(_), false) => {
            return Err(invalid(
                "TLS credentials are given but the URL is not https:// (credentials would go in plain text)",
            ));
        }
        (None, false) => {}
    }
    if credentials.token.is_some() && !https {
        return Err(invalid(
            "a bearer token is only sent over https://, never in plain text",
        ));
    }
    Ok(endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .keep_alive_while_idle(true))
}

impl tower_service::Service<http::Request<tonic::body::Body>> for Channel {
    type Response = http::Response<tonic::body::Body>;
    type Error = moor_failover::BoxError;
    type Future = <Failover as tower_service::Service<http::Request<tonic::body::Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower_service::Service::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        if let Some(value) = &self.authorization {
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, value.clone());
        }
        tower_service::Service::call(&mut self.inner, request)
    }
}

/// What went wrong below a failed call, in words a user can act on: the
/// root cause of a transport error (a TLS alert, a refused connection),
/// with a hint where the cause is a known misconfiguration. `None` when the
/// error did not come from the transport.
pub fn transport_failure(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut root = error.source()?;
    while let Some(next) = root.source() {
        root = next;
    }
    let cause = root.to_string();
    let hint = [
        (
            "CertificateRequired",
            "the server requires a client certificate or a token",
        ),
        (
            "CertificateExpired",
            "the server says the client certificate has expired: renew it",
        ),
        (
            "DecryptError",
            "the server does not accept the client certificate: it is not signed by the cluster's CA",
        ),
        (
            "UnknownCA",
            "the server does not accept the client certificate: it is not signed by the cluster's CA",
        ),
        (
            "BadSignature",
            "the server's certificate is not signed by the CA this client trusts (another cluster?)",
        ),
        (
            "UnknownIssuer",
            "the server's certificate is not signed by the CA this client trusts (another cluster?)",
        ),
        (
            "NotValidForName",
            "the server's certificate does not name this address: use a name it covers, or restart it with --tls-san",
        ),
        (
            "broken pipe",
            "the server closed the connection: it may want a client certificate, or TLS (https://) where this spoke plain text",
        ),
        (
            "InvalidContentType",
            "the server does not speak TLS: is it http:// (started with --insecure)?",
        ),
    ]
    .iter()
    .find(|(needle, _)| cause.contains(needle))
    .map(|(_, hint)| *hint);
    Some(match hint {
        Some(hint) => format!("{cause} ({hint})"),
        None => cause,
    })
}
