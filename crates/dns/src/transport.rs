//! Sending one query to one server: over UDP, then over TCP when the answer comes back
//! truncated. Shared by the forwarder and the stub resolver.
//!
//! Each exchange uses its own socket and a fresh random ID, and accepts only a datagram that
//! carries that ID and the same question, so stray or forged datagrams are ignored.

use std::hash::{BuildHasher, RandomState};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::wire::{self, HEADER_LEN, Header};

/// Largest datagram we read: anything a server may send.
const MAX_DATAGRAM: usize = 65535;

/// Sends `query` to `server` and returns its answer with the query's own ID, trying UDP and
/// then TCP if the UDP answer is truncated. `timeout` bounds each of the two attempts.
pub(crate) async fn exchange(
    server: SocketAddr,
    query: &[u8],
    timeout: Duration,
) -> io::Result<Vec<u8>> {
    let header = Header::parse(query).map_err(invalid_data)?;
    let mut ours = query.to_vec();
    let id = random_id();
    set_id(&mut ours, id);
    let mut answer = tokio::time::timeout(timeout, udp(server, &ours, id))
        .await
        .map_err(|_| timed_out(server))??;
    if Header::parse(&answer).is_ok_and(|h| h.truncated) {
        answer = tokio::time::timeout(timeout, tcp(server, &ours, id))
            .await
            .map_err(|_| timed_out(server))??;
    }
    set_id(&mut answer, header.id);
    Ok(answer)
}

async fn udp(server: SocketAddr, query: &[u8], id: u16) -> io::Result<Vec<u8>> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(server).await?;
    socket.send(query).await?;
    let mut buf = vec![0; MAX_DATAGRAM];
    loop {
        let n = socket.recv(&mut buf).await?;
        let datagram = &buf[..n];
        if answers(query, datagram, id) {
            return Ok(datagram.to_vec());
        }
        tracing::debug!(%server, len = n, "ignoring a datagram that does not answer our query");
    }
}

async fn tcp(server: SocketAddr, query: &[u8], id: u16) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(server).await?;
    stream.set_nodelay(true)?;
    write_frame(&mut stream, query).await?;
    let answer = read_frame(&mut stream).await?;
    if !answers(query, &answer, id) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{server} answered another query over TCP"),
        ));
    }
    Ok(answer)
}

/// Whether `answer` is a response to `query`: same ID, QR set, same questions.
fn answers(query: &[u8], answer: &[u8], id: u16) -> bool {
    let Ok(header) = Header::parse(answer) else {
        return false;
    };
    if header.id != id || !header.response {
        return false;
    }
    match (wire::questions(query), wire::questions(answer)) {
        (Ok(asked), Ok(got)) => {
            // Some servers leave the question out of error responses.
            got.is_empty()
                || (asked.len() == got.len()
                    && asked.iter().zip(&got).all(|(a, g)| {
                        a.qtype == g.qtype && a.qclass == g.qclass && a.name.eq_ignore_case(&g.name)
                    }))
        }
        _ => false,
    }
}

/// Reads one length-prefixed message (RFC 1035 section 4.2.2).
pub(crate) async fn read_frame(stream: &mut (impl AsyncReadExt + Unpin)) -> io::Result<Vec<u8>> {
    let len = stream.read_u16().await?;
    let mut message = vec![0; usize::from(len)];
    stream.read_exact(&mut message).await?;
    Ok(message)
}

/// Writes one length-prefixed message.
pub(crate) async fn write_frame(
    stream: &mut (impl AsyncWriteExt + Unpin),
    message: &[u8],
) -> io::Result<()> {
    let len = u16::try_from(message.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message over 65535 bytes"))?;
    let mut frame = Vec::with_capacity(message.len() + 2);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(message);
    stream.write_all(&frame).await
}

/// Overwrites the ID of a message that has at least a header.
pub(crate) fn set_id(message: &mut [u8], id: u16) {
    if message.len() >= HEADER_LEN {
        message[..2].copy_from_slice(&id.to_be_bytes());
    }
}

/// An unpredictable query ID: SipHash with a random key over a counter. Not cryptographic
/// randomness, but enough that an off-path sender cannot guess it.
pub(crate) fn random_id() -> u16 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    (RandomState::new().hash_one(n) & 0xFFFF) as u16
}

fn timed_out(server: SocketAddr) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{server} did not answer in time"),
    )
}

pub(crate) fn invalid_data(err: wire::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, err)
}
