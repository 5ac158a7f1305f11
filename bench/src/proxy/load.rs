//! The load generator: persistent TCP connections, each doing request and
//! response exchanges of a fixed size back to back (closed loop, so at most
//! one exchange per connection is in flight).
//!
//! It runs on its own runtime and threads (named `bench-load`), apart from
//! the cluster's runtime where the proxy runs, as a separate client process
//! would; the threads' names let the CPU split tell the two apart.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::stats::Samples;

/// Name of the load generator's threads (at most 15 bytes: /proc's `comm`).
pub const THREAD_NAME: &str = "bench-load";

/// What one round measured.
pub struct Round {
    /// Latency of every completed exchange.
    pub samples: Samples,
    /// From the first write to the last connection's end.
    pub elapsed: Duration,
    /// Whether the wall-clock cap cut the round short.
    pub capped: bool,
}

/// The shape of one round.
#[derive(Clone, Copy)]
pub struct Shape {
    /// Concurrent connections.
    pub connections: usize,
    /// Exchanges on each connection.
    pub per_connection: usize,
    /// Bytes in each request and each response.
    pub size: usize,
    /// The most a round may take.
    pub cap: Duration,
}

/// The load generator's runtime.
pub struct Generator {
    runtime: Option<Runtime>,
}

// === impl Generator ===

impl Generator {
    /// A runtime of `threads` worker threads.
    pub fn new(threads: usize) -> anyhow::Result<Self> {
        Self::build(threads, None)
    }

    /// A runtime of `threads` worker threads whose sockets are in the
    /// network namespace `netns` (`/run/netns/NAME`, `/proc/PID/ns/net`):
    /// each thread enters it as it starts.
    pub fn in_namespace(threads: usize, netns: &std::path::Path) -> anyhow::Result<Self> {
        let file = std::fs::File::open(netns)
            .with_context(|| format!("opening network namespace {}", netns.display()))?;
        Self::build(threads, Some(std::sync::Arc::new(file)))
    }

    fn build(threads: usize, netns: Option<std::sync::Arc<std::fs::File>>) -> anyhow::Result<Self> {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder
            .worker_threads(threads)
            .thread_name(THREAD_NAME)
            .enable_all();
        if let Some(netns) = netns {
            builder.on_thread_start(move || {
                if let Err(err) = enter(&netns) {
                    // A thread on the wrong network would measure the wrong path.
                    panic!("cannot enter the load generator's network namespace: {err}");
                }
            });
        }
        let runtime = builder.build()?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    /// Serves a raw TCP echo on `addr` from the generator's threads (in its
    /// namespace) until the generator is dropped; returns once it listens.
    pub async fn serve_echo(&self, addr: SocketAddr) -> anyhow::Result<()> {
        let runtime = self.runtime.as_ref().context("load generator stopped")?;
        let listener = runtime
            .spawn(async move { tokio::net::TcpListener::bind(addr).await })
            .await?
            .with_context(|| format!("listening on {addr}"))?;
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    let (mut read, mut write) = stream.into_split();
                    tokio::io::copy(&mut read, &mut write).await
                });
            }
        });
        Ok(())
    }

    /// Moves `bytes` to `addr` and back on one connection (an echo server):
    /// the time it took.
    pub async fn bulk(&self, addr: SocketAddr, bytes: usize) -> anyhow::Result<Duration> {
        let runtime = self.runtime.as_ref().context("load generator stopped")?;
        runtime.spawn(bulk(addr, bytes)).await?
    }

    /// Runs one round against `addr` on the generator's threads.
    pub async fn round(&self, addr: SocketAddr, shape: Shape) -> anyhow::Result<Round> {
        let runtime = self.runtime.as_ref().context("load generator stopped")?;
        runtime.spawn(round(addr, shape)).await?
    }

    /// One exchange against `addr` on a fresh connection: whether it answers.
    pub async fn answers(&self, addr: SocketAddr, size: usize) -> bool {
        let Some(runtime) = self.runtime.as_ref() else {
            return false;
        };
        let probe = async move {
            let mut stream = TcpStream::connect(addr).await?;
            let request = payload(size, 0);
            let mut response = vec![0; size];
            exchange(&mut stream, &request, &mut response).await
        };
        let probe = tokio::time::timeout(Duration::from_secs(2), probe);
        matches!(runtime.spawn(probe).await, Ok(Ok(Ok(()))))
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        // A runtime may not be dropped (blocking) inside another one.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Enters network namespace `netns` on the calling thread.
pub fn enter(netns: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsFd;
    rustix::thread::move_into_link_name_space(
        netns.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .map_err(std::io::Error::from)
}

/// Writes `bytes` in 64 KiB chunks while reading as many back.
async fn bulk(addr: SocketAddr, bytes: usize) -> anyhow::Result<Duration> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let (mut read, mut write) = stream.into_split();
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        let chunk = vec![0x5a_u8; 64 * 1024];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len());
            write.write_all(&chunk[..n]).await?;
            left -= n;
        }
        write.shutdown().await
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < bytes {
        let n = read.read(&mut buf).await?;
        anyhow::ensure!(n > 0, "{addr} closed after {got} of {bytes} bytes");
        got += n;
    }
    writer.await??;
    Ok(started.elapsed())
}

/// Connects every connection first, so connection set-up is not measured,
/// then runs them all at once.
async fn round(addr: SocketAddr, shape: Shape) -> anyhow::Result<Round> {
    let mut streams = Vec::with_capacity(shape.connections);
    for _ in 0..shape.connections {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        streams.push(stream);
    }
    let started = Instant::now();
    let deadline = started + shape.cap;
    let mut tasks = JoinSet::new();
    for (c, stream) in streams.into_iter().enumerate() {
        tasks.spawn(connection(stream, c, shape, deadline));
    }
    let mut samples = Samples::default();
    let mut capped = false;
    while let Some(done) = tasks.join_next().await {
        let (connection_samples, cut) = done??;
        samples.extend(connection_samples);
        capped |= cut;
    }
    Ok(Round {
        samples,
        elapsed: started.elapsed(),
        capped,
    })
}

/// One connection's exchanges; true when the deadline cut them short.
async fn connection(
    mut stream: TcpStream,
    c: usize,
    shape: Shape,
    deadline: Instant,
) -> anyhow::Result<(Samples, bool)> {
    let mut samples = Samples::default();
    let mut response = vec![0; shape.size];
    for i in 0..shape.per_connection {
        // A distinct request each time, so a stale or misrouted reply shows.
        let request = payload(shape.size, c * shape.per_connection + i);
        let t = Instant::now();
        match tokio::time::timeout_at(deadline, exchange(&mut stream, &request, &mut response))
            .await
        {
            Ok(done) => done.with_context(|| format!("exchange {i} on connection {c}"))?,
            Err(_) => return Ok((samples, true)),
        }
        samples.push(t.elapsed());
        anyhow::ensure!(response == request, "connection {c}: reply differs");
    }
    Ok((samples, false))
}

/// Writes the request and reads exactly as many bytes back.
async fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    response: &mut [u8],
) -> std::io::Result<()> {
    stream.write_all(request).await?;
    stream.read_exact(response).await?;
    Ok(())
}

/// `size` bytes starting with the exchange's number.
fn payload(size: usize, n: usize) -> Vec<u8> {
    let mut bytes = vec![b'x'; size];
    let tag = n.to_le_bytes();
    let len = tag.len().min(size);
    bytes[..len].copy_from_slice(&tag[..len]);
    bytes
}
