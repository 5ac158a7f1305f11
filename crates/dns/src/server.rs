//! The DNS server: UDP and TCP on one address, cluster names answered from the current
//! [`Records`] snapshot, every other name forwarded to the upstream resolvers.
//!
//! Each query runs in its own task (at most [`MAX_IN_FLIGHT`] at once), so a slow upstream
//! never delays cluster answers. Malformed queries get FORMERR when their header can be read
//! and are dropped otherwise; responses are never answered.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::records::{Answer, Records};
use crate::transport::{self, read_frame, write_frame};
use crate::wire::{Header, Message, Name, QType, Question, RData, Rcode, Record, UDP_MIN_PAYLOAD};

/// How long one upstream gets before the next is tried.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a TCP connection may sit without a new query.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Queries handled at once; UDP queries beyond this are dropped (the client retries).
pub const MAX_IN_FLIGHT: usize = 1024;
/// The largest UDP answer we send and advertise with EDNS(0) (the DNS flag day 2020 value,
/// which avoids IP fragmentation).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// A bound DNS server; [`Server::serve`] runs it.
#[derive(Debug)]
pub struct Server {
    udp: UdpSocket,
    tcp: TcpListener,
    local_addr: SocketAddr,
    handler: Handler,
    idle_timeout: Duration,
}

/// Answers one query; cheap to clone into each query's task.
#[derive(Debug, Clone)]
struct Handler {
    records: watch::Receiver<Arc<Records>>,
    upstreams: Arc<[SocketAddr]>,
    upstream_timeout: Duration,
    in_flight: Arc<Semaphore>,
}

/// How a query arrived, which bounds the size of its answer.
#[derive(Debug, Clone, Copy)]
enum Via {
    Udp,
    Tcp,
}

// === impl Server ===

impl Server {
    /// Binds UDP and TCP on `addr` (with port 0, one free port for both). Names outside the
    /// cluster domain go to `upstreams`, in order; the zone is whatever `records` holds when a
    /// query arrives.
    pub async fn bind(
        addr: SocketAddr,
        upstreams: Vec<SocketAddr>,
        records: watch::Receiver<Arc<Records>>,
    ) -> io::Result<Server> {
        let (udp, tcp) = bind_both(addr).await?;
        let local_addr = udp.local_addr()?;
        Ok(Server {
            udp,
            tcp,
            local_addr,
            handler: Handler {
                records,
                upstreams: upstreams.into(),
                upstream_timeout: UPSTREAM_TIMEOUT,
                in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            },
            idle_timeout: IDLE_TIMEOUT,
        })
    }

    /// Sets how long each upstream gets (default [`UPSTREAM_TIMEOUT`]).
    pub fn with_upstream_timeout(mut self, timeout: Duration) -> Self {
        self.handler.upstream_timeout = timeout;
        self
    }

    /// Sets how long an idle TCP connection stays open (default [`IDLE_TIMEOUT`]).
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// The address both sockets are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Answers queries until `shutdown` is cancelled, then stops every query and connection.
    pub async fn serve(self, shutdown: CancellationToken) {
        let Server {
            udp,
            tcp,
            local_addr,
            handler,
            idle_timeout,
        } = self;
        let udp = Arc::new(udp);
        let mut tasks = JoinSet::new();
        let mut buf = vec![0; usize::from(u16::MAX)];
        tracing::info!(addr = %local_addr, upstreams = ?handler.upstreams, "serving DNS");
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                received = udp.recv_from(&mut buf) => match received {
                    Ok((n, peer)) => {
                        let Ok(permit) = handler.in_flight.clone().try_acquire_owned() else {
                            tracing::debug!(%peer, "too many queries in flight; dropping one");
                            continue;
                        };
                        let (query, handler, udp) = (buf[..n].to_vec(), handler.clone(), udp.clone());
                        tasks.spawn(async move {
                            let _permit = permit;
                            if let Some(reply) = handler.handle(&query, Via::Udp).await
                                && let Err(err) = udp.send_to(&reply, peer).await
                            {
                                tracing::debug!(%peer, %err, "could not send a UDP answer");
                            }
                        });
                    }
                    Err(err) => tracing::debug!(%err, "UDP receive failed; still serving"),
                },
                accepted = tcp.accept() => match accepted {
                    Ok((stream, peer)) => {
                        tasks.spawn(connection(stream, peer, handler.clone(), idle_timeout));
                    }
                    Err(err) => {
                        // Out of descriptors, typically: back off instead of spinning.
                        tracing::warn!(%err, "cannot accept a DNS connection; retrying shortly");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        tasks.shutdown().await;
        tracing::info!(addr = %local_addr, "DNS server stopped");
    }
}

/// Binds UDP, then TCP on the port UDP got; with port 0, tries again if TCP finds it taken.
pub async fn bind_both(addr: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    let attempts = if addr.port() == 0 { 16 } else { 1 };
    let mut last = io::Error::new(io::ErrorKind::AddrInUse, "no free port for UDP and TCP");
    for _ in 0..attempts {
        let udp = UdpSocket::bind(addr).await?;
        match TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(err) if err.kind() == io::ErrorKind::AddrInUse => last = err,
            Err(err) => return Err(err),
        }
    }
    Err(last)
}

/// Serves one TCP connection: queries may be pipelined and are answered as they complete.
async fn connection(stream: TcpStream, peer: SocketAddr, handler: Handler, idle: Duration) {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %err, "could not set TCP_NODELAY");
    }
    let (read, mut write) = stream.into_split();
    let (replies, mut outgoing) = mpsc::channel(32);
    let mut reader = JoinSet::new();
    reader.spawn(read_queries(read, peer, handler, idle, replies));
    while let Some(reply) = outgoing.recv().await {
        if let Err(err) = write_frame(&mut write, &reply).await {
            tracing::debug!(%peer, %err, "DNS connection closed while answering");
            break;
        }
    }
}

/// Reads queries until EOF, an error or `idle` without one; returns once every query it
/// started has answered, which closes `replies`.
async fn read_queries(
    mut read: OwnedReadHalf,
    peer: SocketAddr,
    handler: Handler,
    idle: Duration,
    replies: mpsc::Sender<Vec<u8>>,
) {
    let mut queries = JoinSet::new();
    while let Ok(Ok(query)) = tokio::time::timeout(idle, read_frame(&mut read)).await {
        let Ok(permit) = handler.in_flight.clone().acquire_owned().await else {
            break;
        };
        let (handler, replies) = (handler.clone(), replies.clone());
        queries.spawn(async move {
            let _permit = permit;
            if let Some(reply) = handler.handle(&query, Via::Tcp).await {
                // The writer is gone only if the connection broke.
                let _ = replies.send(reply).await;
            }
        });
        while queries.try_join_next().is_some() {}
    }
    tracing::debug!(%peer, "DNS connection done reading");
    while queries.join_next().await.is_some() {}
}

// === impl Handler ===

impl Handler {
    /// The reply to one query, or `None` to stay silent.
    async fn handle(&self, query: &[u8], via: Via) -> Option<Vec<u8>> {
        let header = Header::parse(query).ok()?;
        if header.response {
            return None;
        }
        let message = match Message::parse(query) {
            Ok(message) => message,
            Err(err) => {
                tracing::debug!(%err, "malformed query; answering FORMERR");
                return Some(self.error(&header, None, Rcode::FormErr));
            }
        };
        if header.opcode != 0 {
            return Some(self.error(&header, None, Rcode::NotImp));
        }
        let [question] = message.questions.as_slice() else {
            return Some(self.error(&header, None, Rcode::FormErr));
        };
        let limit = match via {
            Via::Tcp => usize::from(u16::MAX),
            Via::Udp => message.edns_payload().map_or(UDP_MIN_PAYLOAD, |size| {
                usize::from(size.min(MAX_UDP_PAYLOAD)).max(UDP_MIN_PAYLOAD)
            }),
        };
        let records = Arc::clone(&self.records.borrow());
        let reply = match records.answer(question) {
            Some(answer) => self.local(&message, question, answer),
            None => match self.forward(query).await {
                Some(reply) => reply,
                None => self.error(&header, Some(question), Rcode::ServFail),
            },
        };
        Some(fit(reply, limit, question))
    }

    /// An authoritative answer from the zone.
    fn local(&self, query: &Message, question: &Question, answer: Answer) -> Vec<u8> {
        let mut additionals = answer.additionals;
        if query.edns_payload().is_some() {
            additionals.push(Record {
                name: Name::root(),
                class: MAX_UDP_PAYLOAD,
                ttl: 0,
                data: RData::Other {
                    rtype: QType::Opt,
                    data: Vec::new(),
                },
            });
        }
        Message {
            header: Header {
                authoritative: true,
                rcode: answer.rcode,
                ..self.reply_header(&query.header)
            },
            questions: vec![question.clone()],
            answers: answer.answers,
            authorities: answer.authorities,
            additionals,
        }
        .to_bytes()
    }

    /// The first upstream answer, already carrying the client's ID; `None` if none answered.
    async fn forward(&self, query: &[u8]) -> Option<Vec<u8>> {
        for &upstream in self.upstreams.iter() {
            match transport::exchange(upstream, query, self.upstream_timeout).await {
                Ok(reply) => return Some(reply),
                Err(err) => {
                    tracing::debug!(%upstream, %err, "upstream did not answer; trying the next")
                }
            }
        }
        tracing::warn!(upstreams = ?self.upstreams, "no upstream resolver answered; answering SERVFAIL");
        None
    }

    fn error(&self, query: &Header, question: Option<&Question>, rcode: Rcode) -> Vec<u8> {
        Message {
            header: Header {
                rcode,
                ..self.reply_header(query)
            },
            questions: question.into_iter().cloned().collect(),
            ..Message::default()
        }
        .to_bytes()
    }

    fn reply_header(&self, query: &Header) -> Header {
        Header {
            id: query.id,
            response: true,
            opcode: query.opcode,
            recursion_desired: query.recursion_desired,
            recursion_available: !self.upstreams.is_empty(),
            ..Header::default()
        }
    }
}

/// `reply` if it fits in `limit` bytes, else its header with TC set and only the question,
/// telling the client to ask again over TCP.
fn fit(reply: Vec<u8>, limit: usize, question: &Question) -> Vec<u8> {
    if reply.len() <= limit {
        return reply;
    }
    let Ok(header) = Header::parse(&reply) else {
        return reply;
    };
    Message {
        header: Header {
            truncated: true,
            ..header
        },
        questions: vec![question.clone()],
        ..Message::default()
    }
    .to_bytes()
}
