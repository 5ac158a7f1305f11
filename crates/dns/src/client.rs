//! A stub resolver for tests and for the echo image, which is static and cannot use glibc's
//! NSS: one query to one server, or a lookup that follows resolv.conf like glibc does.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::resolv::ResolvConf;
use crate::transport::{self, invalid_data};
use crate::wire::{CLASS_IN, Header, Message, Name, QType, Question, RData, Rcode, Record, Srv};

/// How long each server gets (per transport: UDP, then TCP if the answer was truncated).
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// What a server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The response code.
    pub rcode: Rcode,
    /// Whether the server is authoritative for the name.
    pub authoritative: bool,
    /// The answer section.
    pub answers: Vec<Record>,
    /// The authority section.
    pub authorities: Vec<Record>,
    /// The additional section.
    pub additionals: Vec<Record>,
}

// === impl Response ===

impl Response {
    /// The addresses of the A records in the answer section.
    pub fn a(&self) -> Vec<Ipv4Addr> {
        self.answers
            .iter()
            .filter_map(|r| match r.data {
                RData::A(ip) => Some(ip),
                _ => None,
            })
            .collect()
    }

    /// The SRV records in the answer section.
    pub fn srv(&self) -> Vec<Srv> {
        self.answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::Srv(srv) => Some(srv.clone()),
                _ => None,
            })
            .collect()
    }

    /// Whether the name exists and has records of the type asked for.
    pub fn has_answers(&self) -> bool {
        self.rcode == Rcode::NoError && !self.answers.is_empty()
    }
}

impl From<Message> for Response {
    fn from(message: Message) -> Self {
        Response {
            rcode: message.header.rcode,
            authoritative: message.header.authoritative,
            answers: message.answers,
            authorities: message.authorities,
            additionals: message.additionals,
        }
    }
}

/// Asks `server` about `name` (taken as absolute), over UDP, then TCP if the answer was
/// truncated.
pub async fn query(server: SocketAddr, name: &str, qtype: QType) -> io::Result<Response> {
    let name = Name::parse(name).map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
    let message = Message {
        header: Header {
            id: transport::random_id(),
            recursion_desired: true,
            ..Header::default()
        },
        questions: vec![Question {
            name,
            qtype,
            qclass: CLASS_IN,
        }],
        ..Message::default()
    };
    let reply = transport::exchange(server, &message.to_bytes(), TIMEOUT).await?;
    Ok(Message::parse(&reply).map_err(invalid_data)?.into())
}

/// Looks `name` up as glibc would with this resolv.conf text: the search list and `ndots`
/// decide which names are tried, the name servers are asked in order (the next one on an
/// error, SERVFAIL or REFUSED). Returns the first response with answers; else the first
/// NOERROR (no data) response, else the first NXDOMAIN, else the first other failure; an
/// error only when no server answered at all.
pub async fn resolve(name: &str, qtype: QType, resolv_conf: &str) -> io::Result<Response> {
    resolve_with(name, qtype, &ResolvConf::parse(resolv_conf)).await
}

/// [`resolve`] with an already parsed configuration (whose name servers may use any port).
pub async fn resolve_with(name: &str, qtype: QType, conf: &ResolvConf) -> io::Result<Response> {
    let servers = conf.servers();
    let mut best: Option<Response> = None;
    let mut last_error = None;
    for candidate in conf.candidates(name) {
        match ask(&servers, &candidate, qtype).await {
            Ok(response) if response.has_answers() => return Ok(response),
            Ok(response) => {
                if best.as_ref().is_none_or(|b| rank(&response) < rank(b)) {
                    best = Some(response);
                }
            }
            Err(err) => last_error = Some(err),
        }
    }
    best.ok_or_else(|| {
        last_error.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty name"))
    })
}

/// Which failed response [`resolve`] reports: lower is more telling.
fn rank(response: &Response) -> u8 {
    match response.rcode {
        Rcode::NoError => 0,
        Rcode::NxDomain => 1,
        _ => 2,
    }
}

/// Asks each server in turn until one gives a usable answer.
async fn ask(servers: &[SocketAddr], name: &str, qtype: QType) -> io::Result<Response> {
    let mut last: io::Result<Response> = Err(io::Error::new(
        io::ErrorKind::NotFound,
        "no name server to ask",
    ));
    for &server in servers {
        last = query(server, name, qtype).await;
        match &last {
            Ok(response) if !matches!(response.rcode, Rcode::ServFail | Rcode::Refused) => break,
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::InvalidInput => break,
            Err(_) => {}
        }
    }
    last
}
