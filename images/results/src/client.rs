//! The UI's client of the API: `http://HOST[:PORT][/PREFIX]`, the host resolved with
//! `moor_dns` through resolv.conf on every request (so a Service that moves is followed),
//! one connection per request, and the whole exchange bounded by [`TIMEOUT`].

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use moor_dns::QType;
use tokio::net::TcpStream;

use crate::http::SERVED_BY;

/// How long one request to the API may take, name lookup included.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Where the API lives, checked once at start.
#[derive(Debug, Clone, PartialEq)]
pub struct Url {
    host: String,
    port: u16,
    /// Prepended to every path; empty or starting with `/`, without a trailing `/`.
    prefix: String,
    text: String,
}

/// Why `--api` is not a usable URL.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{url:?}: {reason}")]
pub struct BadUrl {
    url: String,
    reason: &'static str,
}

/// A client of the API at one URL.
#[derive(Debug, Clone)]
pub struct Client {
    url: Url,
    resolv_conf: PathBuf,
}

/// What the API answered.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The API pod's name, from its `X-Served-By` header.
    pub served_by: Option<String>,
    /// The whole body.
    pub body: Bytes,
}

/// Why the API could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The name lookup failed.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// The API's host name.
        host: String,
        /// What the resolver said.
        #[source]
        source: io::Error,
    },
    /// The name has no A record.
    #[error("{host} has no address (DNS answered {rcode})")]
    NoAddress {
        /// The API's host name.
        host: String,
        /// The DNS response code.
        rcode: String,
    },
    /// The TCP connection failed.
    #[error("cannot connect to {address}: {source}")]
    Connect {
        /// The address tried.
        address: SocketAddr,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// The HTTP exchange failed.
    #[error("the HTTP exchange failed: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built (a path with characters a URI may not hold).
    #[error("bad request: {0}")]
    Request(#[from] hyper::http::Error),
    /// No answer within [`TIMEOUT`].
    #[error("no answer within {} s", TIMEOUT.as_secs())]
    Timeout,
}

// === impl Url ===

impl FromStr for Url {
    type Err = BadUrl;

    fn from_str(text: &str) -> Result<Url, BadUrl> {
        let bad = |reason| BadUrl {
            url: text.to_owned(),
            reason,
        };
        let rest = text
            .strip_prefix("http://")
            .ok_or_else(|| bad("must start with http://"))?;
        let (authority, prefix) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (host, port) = match authority.rsplit_once(':') {
            // An IPv6 address without a port has colons but ends in `]`.
            Some((host, port)) if !port.ends_with(']') => {
                (host, port.parse().map_err(|_| bad("has a bad port"))?)
            }
            _ => (authority, 80),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        if prefix.contains(['?', '#']) {
            return Err(bad("may not have a query or fragment"));
        }
        Ok(Url {
            host: host.to_owned(),
            port,
            prefix: prefix.trim_end_matches('/').to_owned(),
            text: text.to_owned(),
        })
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

// === impl Client ===

impl Client {
    /// A client of `url`, resolving names with the resolver configuration at `resolv_conf`.
    pub fn new(url: Url, resolv_conf: impl Into<PathBuf>) -> Client {
        Client {
            url,
            resolv_conf: resolv_conf.into(),
        }
    }

    /// The API's URL, for messages.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// `GET path` (with its query).
    pub async fn get(&self, path: &str) -> Result<Answer, Error> {
        self.send(Method::GET, path, None, Bytes::new()).await
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, body: Vec<u8>) -> Result<Answer, Error> {
        let json = Some("application/json");
        self.send(Method::POST, path, json, body.into()).await
    }

    /// Any request, within [`TIMEOUT`].
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&'static str>,
        body: Bytes,
    ) -> Result<Answer, Error> {
        let exchange = self.exchange(method, path, content_type, body);
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| Error::Timeout)?
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&'static str>,
        body: Bytes,
    ) -> Result<Answer, Error> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url.prefix))
            .header(header::HOST, self.authority())
            .header(header::CONNECTION, "close");
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let request = request.body(Full::new(body))?;
        let address = self.address().await?;
        let stream = TcpStream::connect(address)
            .await
            .map_err(|source| Error::Connect { address, source })?;
        let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        let exchange = async move {
            let response = sender.send_request(request).await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, Error>((parts, body))
            // `sender` drops here, which lets `conn` finish.
        };
        let (answer, _) = tokio::join!(exchange, conn);
        let (parts, body) = answer?;
        let served_by = parts.headers.get(SERVED_BY).map(header_text);
        Ok(Answer {
            status: parts.status,
            served_by,
            body,
        })
    }

    fn authority(&self) -> String {
        match (self.url.host.contains(':'), self.url.port) {
            (true, port) => format!("[{}]:{port}", self.url.host),
            (false, 80) => self.url.host.clone(),
            (false, port) => format!("{}:{port}", self.url.host),
        }
    }

    /// The API's address now: an IP as it is, else an A lookup through resolv.conf (no
    /// NSS in a static binary; `localhost` is the loopback address, as /etc/hosts says).
    async fn address(&self) -> Result<SocketAddr, Error> {
        let host = self.url.host.as_str();
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, self.url.port));
        }
        if host == "localhost" {
            return Ok(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), self.url.port));
        }
        // A missing resolv.conf means the defaults, as in glibc: ask 127.0.0.1.
        let conf = tokio::fs::read_to_string(&self.resolv_conf)
            .await
            .unwrap_or_default();
        let response = moor_dns::client::resolve(host, QType::A, &conf)
            .await
            .map_err(|source| Error::Resolve {
                host: host.to_owned(),
                source,
            })?;
        let ip = response
            .a()
            .into_iter()
            .next()
            .ok_or_else(|| Error::NoAddress {
                host: host.to_owned(),
                rcode: response.rcode.to_string(),
            })?;
        Ok(SocketAddr::new(ip.into(), self.url.port))
    }
}

fn header_text(value: &HeaderValue) -> String {
    String::from_utf8_lossy(value.as_bytes()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_host_port_and_prefix() {
        let url: Url = "http://results-api:8080".parse().unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.prefix.as_str()),
            ("results-api", 8080, "")
        );
        let url: Url = "http://10.0.0.1/v1/".parse().unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.prefix.as_str()),
            ("10.0.0.1", 80, "/v1")
        );
        let url: Url = "http://[::1]:9000".parse().unwrap();
        assert_eq!((url.host.as_str(), url.port), ("::1", 9000));
        assert_eq!(Client::new(url, "/x").authority(), "[::1]:9000");
        for bad in [
            "results-api:8080",
            "https://a",
            "http://",
            "http://a:x",
            "http://a/?q",
        ] {
            assert!(bad.parse::<Url>().is_err(), "{bad} was accepted");
        }
    }
}
