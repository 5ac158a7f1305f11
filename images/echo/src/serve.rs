//! `serve`: HTTP and UDP answers naming the pod and the caller's address, and an optional raw TCP echo port.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;

use crate::{flag, invalid};

/// Serves until SIGTERM (unless trapped) or SIGINT.
pub async fn serve(args: &[String]) -> io::Result<u8> {
    let port: u16 = flag(args, "--port").map_or(Ok(8080), |p| p.parse().map_err(invalid))?;
    let echo_port: Option<u16> = flag(args, "--echo-port")
        .map(|p| p.parse().map_err(invalid))
        .transpose()?;
    let trap = flag(args, "--trap-sigterm").map(str::to_owned);
    let listener = TcpListener::bind(("0.0.0.0", port)).await?;
    let udp = UdpSocket::bind(("0.0.0.0", port)).await?;
    let mut tasks = JoinSet::new();
    if let Some(echo_port) = echo_port {
        let echo = TcpListener::bind(("0.0.0.0", echo_port)).await?;
        tasks.spawn(echo_server(echo));
        println!("echoing TCP on :{echo_port}");
    }
    println!("serving on :{port} (HTTP and UDP)");
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut buf = vec![0; usize::from(u16::MAX)];
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    tasks.spawn(answer(stream));
                }
            }
            received = udp.recv_from(&mut buf) => {
                if let Ok((n, peer)) = received {
                    answer_datagram(&udp, &buf[..n], peer).await;
                }
            }
            _ = term.recv() => match &trap {
                Some(path) => {
                    println!("got SIGTERM; ignoring it");
                    let mut file = tokio::fs::OpenOptions::new().create(true).append(true).open(path).await?;
                    file.write_all(b"SIGTERM\n").await?;
                    file.sync_all().await?;
                }
                None => return Ok(0),
            },
            _ = int.recv() => return Ok(0),
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
}

/// Who answers, and the address the request came from (tests check that
/// traffic between pods keeps its source address).
fn pod(peer: SocketAddr) -> String {
    let pod = std::env::var("POD_NAME").unwrap_or_default();
    let ip = std::env::var("POD_IP").unwrap_or_default();
    format!("pod={pod} ip={ip} peer={}", peer.ip())
}

async fn answer(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    let _ = stream.read(&mut buf).await?;
    let body = format!("{}\n", pod(stream.peer_addr()?));
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

async fn answer_datagram(udp: &UdpSocket, payload: &[u8], peer: SocketAddr) {
    let mut reply = format!("{} ", pod(peer)).into_bytes();
    reply.extend_from_slice(payload);
    if let Err(err) = udp.send_to(&reply, peer).await {
        eprintln!("udp reply to {peer}: {err}");
    }
}

/// Writes back every byte each connection sends, until it closes.
async fn echo_server(listener: TcpListener) -> io::Result<()> {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (mut stream, _) = accepted?;
                // Benchmarks send small messages and wait for each: do not let Nagle hold them.
                stream.set_nodelay(true)?;
                connections.spawn(async move {
                    let (mut read, mut write) = stream.split();
                    tokio::io::copy(&mut read, &mut write).await
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}
