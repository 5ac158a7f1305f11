//! The client side: a channel to a server, over TLS when the URL is
//! `https://`, carrying a bearer token when the caller has one instead of a
//! client certificate.

use std::task::{Context, Poll};
use std::time::Duration;

use tonic::transport::Endpoint;

use crate::{ClientTls, Error};

/// How a client reaches and proves itself to a server.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    /// TLS settings (the CA to trust, and a client certificate if any);
    /// needed for an `https://` URL.
    pub tls: Option<ClientTls>,
    /// A bearer token, sent with every call.
    pub token: Option<String>,
}

/// A lazily connecting channel: the first call connects, and a broken
/// connection is re-established on the next call. Cheap to clone; clones
/// share the connection.
#[derive(Clone, Debug)]
pub struct Channel {
    inner: tonic::transport::Channel,
    authorization: Option<http::HeaderValue>,
}

/// A channel to `url` (`http://HOST:PORT`, plain text, for an `--insecure`
/// server or a test on loopback).
pub fn channel(url: &str) -> Result<Channel, Error> {
    connect(url, &Credentials::default())
}

/// A channel to `url` with `credentials`. An `https://` URL needs TLS
/// settings, and TLS settings need an `https://` URL: a mismatch is an
/// error naming it rather than a connection that fails later.
pub fn connect(url: &str, credentials: &Credentials) -> Result<Channel, Error> {
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
    let authorization = match &credentials.token {
        Some(token) => {
            if !https {
                return Err(invalid(
                    "a bearer token is only sent over https://, never in plain text",
                ));
            }
            let mut value = http::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| invalid("the token holds characters a header cannot carry"))?;
            value.set_sensitive(true);
            Some(value)
        }
        None => None,
    };
    let endpoint = endpoint
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    Ok(Channel {
        inner: endpoint.connect_lazy(),
        authorization,
    })
}

impl tower_service::Service<http::Request<tonic::body::Body>> for Channel {
    type Response = http::Response<tonic::body::Body>;
    type Error = tonic::transport::Error;
    type Future = tonic::transport::channel::ResponseFuture;

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
