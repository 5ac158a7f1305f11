//! Client modes: `get`, `udp` and `lookup`, resolving names through `/etc/resolv.conf`.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use moor_dns::QType;
use moor_dns::client::{self, Response};
use moor_dns::wire::RData;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::{flag, invalid, retry, retry_seconds};

const RESOLV_CONF: &str = "/etc/resolv.conf";
/// How long `udp` waits for each reply.
const UDP_WAIT: Duration = Duration::from_secs(1);
const PAUSE: Duration = Duration::from_millis(200);

/// `get URL`: 0 once the URL answers 200 (with the expected text).
pub async fn get(args: &[String]) -> io::Result<u8> {
    let url = args.first().ok_or_else(|| invalid("get needs a URL"))?;
    let expect = flag(args, "--expect").unwrap_or_default();
    let ok = retry(retry_seconds(args)?, PAUSE, || async {
        match fetch(url).await {
            Ok((200, body)) if body.contains(expect) => {
                print!("{body}");
                true
            }
            Ok((status, body)) => {
                eprintln!("{url}: status {status}: {body}");
                false
            }
            Err(err) => {
                eprintln!("{url}: {err}");
                false
            }
        }
    })
    .await;
    Ok(u8::from(!ok))
}

/// A minimal HTTP/1.1 GET of `http://HOST[:PORT]/PATH`: status and body.
async fn fetch(url: &str) -> io::Result<(u16, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| invalid("only http:// URLs"))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut stream = TcpStream::connect(address(authority, 80).await?).await?;
    let request = format!("GET /{path} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("malformed response"))?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_owned()))
}

/// `udp HOST:PORT PAYLOAD`: 0 once a reply contains the expected text.
pub async fn udp(args: &[String]) -> io::Result<u8> {
    let [target, payload, ..] = args else {
        return Err(invalid("udp needs HOST:PORT and PAYLOAD"));
    };
    let expect = flag(args, "--expect").unwrap_or_default();
    let ok = retry(retry_seconds(args)?, PAUSE, || async {
        match exchange(target, payload).await {
            Ok(reply) if reply.contains(expect) => {
                println!("{reply}");
                true
            }
            Ok(reply) => {
                eprintln!("{target}: unexpected reply {reply:?}");
                false
            }
            Err(err) => {
                eprintln!("{target}: {err}");
                false
            }
        }
    })
    .await;
    Ok(u8::from(!ok))
}

async fn exchange(target: &str, payload: &str) -> io::Result<String> {
    let peer = address(target, 0).await?;
    let local: SocketAddr = if peer.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .map_err(invalid)?;
    let socket = UdpSocket::bind(local).await?;
    socket.connect(peer).await?;
    socket.send(payload.as_bytes()).await?;
    let mut buf = vec![0; usize::from(u16::MAX)];
    let n = tokio::time::timeout(UDP_WAIT, socket.recv(&mut buf))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no reply"))??;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// `lookup NAME`: 0 when the name has answers (one containing the expected text).
pub async fn lookup(args: &[String]) -> io::Result<u8> {
    let name = args.first().ok_or_else(|| invalid("lookup needs a NAME"))?;
    let qtype: QType = flag(args, "--type")
        .unwrap_or("A")
        .parse()
        .map_err(invalid)?;
    let expect = flag(args, "--expect").unwrap_or_default();
    let ok = retry(retry_seconds(args)?, PAUSE, || async {
        match resolve(name, qtype).await {
            Ok(response) if response.has_answers() => {
                let lines = lines(&response);
                for line in &lines {
                    println!("{line}");
                }
                let found = lines.iter().any(|l| l.contains(expect));
                if !found {
                    eprintln!("{name}: no {qtype} answer contains {expect:?}");
                }
                found
            }
            Ok(response) => {
                eprintln!("{name}: {} with no {qtype} answers", response.rcode);
                false
            }
            Err(err) => {
                eprintln!("{name}: {err}");
                false
            }
        }
    })
    .await;
    Ok(u8::from(!ok))
}

fn lines(response: &Response) -> Vec<String> {
    response
        .answers
        .iter()
        .map(|record| match &record.data {
            RData::A(ip) => format!("A {ip}"),
            RData::Aaaa(ip) => format!("AAAA {ip}"),
            RData::Cname(name) => format!("CNAME {name}"),
            RData::Srv(srv) => format!(
                "SRV {} {} {} {}",
                srv.priority, srv.weight, srv.port, srv.target
            ),
            other => format!("{} {other:?}", record.rtype()),
        })
        .collect()
}

async fn resolve(name: &str, qtype: QType) -> io::Result<Response> {
    // A missing resolv.conf means the defaults, as in glibc: ask 127.0.0.1.
    let conf = tokio::fs::read_to_string(RESOLV_CONF)
        .await
        .unwrap_or_default();
    client::resolve(name, qtype, &conf).await
}

/// `HOST:PORT` (or `HOST`, with `default_port` when it is not 0) as an address; a host that is
/// not an IP address is looked up (A records).
async fn address(authority: &str, default_port: u16) -> io::Result<SocketAddr> {
    if let Ok(addr) = authority.parse() {
        return Ok(addr);
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().map_err(invalid)?),
        None if default_port != 0 => (authority, default_port),
        None => return Err(invalid(format!("{authority}: needs HOST:PORT"))),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let response = resolve(host, QType::A).await?;
    let ip = response.a().into_iter().next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{host}: {} with no address", response.rcode),
        )
    })?;
    Ok(SocketAddr::new(ip.into(), port))
}
