//! The server over real sockets on loopback: cluster answers over UDP and TCP, forwarding to
//! fake upstreams (including TCP retry and SERVFAIL), runtime record swaps and hostile input.

#![allow(clippy::unwrap_used)] // tests: a failed call is a failed test

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use moor_dns::client::{self, Response};
use moor_dns::wire::{CLASS_IN, Header, Message, Name, Question, RData, Record};
use moor_dns::{EndpointEntry, PortEntry, QType, Rcode, Records, ResolvConf, Server, ServiceEntry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Bounds every wait in these tests; generous, since nothing should come close.
const PATIENCE: Duration = Duration::from_secs(10);

struct Running {
    addr: SocketAddr,
    records: watch::Sender<Arc<Records>>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    async fn start(records: Records, upstreams: Vec<SocketAddr>, timeout: Duration) -> Running {
        let (tx, rx) = watch::channel(Arc::new(records));
        let server = Server::bind("127.0.0.1:0".parse().unwrap(), upstreams, rx)
            .await
            .unwrap()
            .with_upstream_timeout(timeout);
        let addr = server.local_addr();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.serve(shutdown.clone()));
        Running {
            addr,
            records: tx,
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the server stops when cancelled")
            .unwrap();
    }

    async fn query(&self, name: &str, qtype: QType) -> Response {
        tokio::time::timeout(PATIENCE, client::query(self.addr, name, qtype))
            .await
            .expect("the server answers in time")
            .unwrap()
    }
}

fn web(ip: [u8; 4]) -> ServiceEntry {
    ServiceEntry {
        namespace: "default".into(),
        name: "web".into(),
        cluster_ip: Some(Ipv4Addr::from(ip)),
        ports: vec![PortEntry {
            name: "http".into(),
            protocol: "TCP".into(),
            port: 80,
        }],
        endpoints: vec![],
    }
}

fn headless(count: u8) -> ServiceEntry {
    ServiceEntry {
        namespace: "default".into(),
        name: "many".into(),
        cluster_ip: None,
        ports: vec![PortEntry {
            name: "http".into(),
            protocol: "TCP".into(),
            port: 80,
        }],
        endpoints: (0..count)
            .map(|i| EndpointEntry {
                ip: Ipv4Addr::new(10, 0, 0, i),
                hostname: None,
                ports: BTreeMap::from([("http".to_owned(), 8080)]),
            })
            .collect(),
    }
}

fn zone() -> Records {
    Records::new("cluster.local", [web([10, 96, 0, 12]), headless(3)])
}

fn query_bytes(id: u16, name: &str, qtype: QType) -> Vec<u8> {
    Message {
        header: Header {
            id,
            recursion_desired: true,
            ..Header::default()
        },
        questions: vec![Question {
            name: Name::parse(name).unwrap(),
            qtype,
            qclass: CLASS_IN,
        }],
        ..Message::default()
    }
    .to_bytes()
}

/// A fake upstream on UDP and TCP of one port: it reports each query it receives and answers
/// `A 192.0.2.1`, over UDP only with TC set when `truncate` is on; when `silent`, it never
/// answers.
struct Upstream {
    addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<(&'static str, Vec<u8>)>,
}

impl Upstream {
    async fn start(truncate: bool, silent: bool) -> Upstream {
        let (udp, tcp) = moor_dns::bind_both("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = udp.local_addr().unwrap();
        let (tx, seen) = mpsc::unbounded_channel();
        let udp_tx = tx.clone();
        tokio::spawn(async move {
            let mut buf = vec![0; 65535];
            while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
                let query = buf[..n].to_vec();
                let _ = udp_tx.send(("udp", query.clone()));
                if !silent {
                    let reply = Upstream::answer(&query, truncate);
                    udp.send_to(&reply, peer).await.unwrap();
                }
            }
        });
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = tcp.accept().await {
                let len = stream.read_u16().await.unwrap();
                let mut query = vec![0; usize::from(len)];
                stream.read_exact(&mut query).await.unwrap();
                let _ = tx.send(("tcp", query.clone()));
                let reply = Upstream::answer(&query, false);
                stream.write_u16(reply.len() as u16).await.unwrap();
                stream.write_all(&reply).await.unwrap();
            }
        });
        Upstream { addr, seen }
    }

    fn answer(query: &[u8], truncate: bool) -> Vec<u8> {
        let query = Message::parse(query).unwrap();
        let answers = if truncate {
            vec![]
        } else {
            vec![Record {
                name: query.questions[0].name.clone(),
                class: CLASS_IN,
                ttl: 300,
                data: RData::A(Ipv4Addr::new(192, 0, 2, 1)),
            }]
        };
        Message {
            header: Header {
                response: true,
                truncated: truncate,
                recursion_available: true,
                ..query.header.clone()
            },
            answers,
            ..query
        }
        .to_bytes()
    }
}

#[tokio::test]
async fn answers_cluster_names_over_udp() {
    let server = Running::start(zone(), vec![], Duration::from_secs(2)).await;
    let response = server
        .query("web.default.svc.cluster.local", QType::A)
        .await;
    assert_eq!(response.rcode, Rcode::NoError);
    assert!(response.authoritative);
    assert_eq!(response.a(), vec![Ipv4Addr::new(10, 96, 0, 12)]);
    assert_eq!(response.answers[0].ttl, 5);

    let srv = server
        .query("_http._tcp.many.default.svc.cluster.local.", QType::Srv)
        .await;
    let mut targets: Vec<String> = srv
        .srv()
        .iter()
        .map(|s| format!("{} {}", s.port, s.target))
        .collect();
    targets.sort();
    assert_eq!(
        targets,
        vec![
            "8080 10-0-0-0.many.default.svc.cluster.local.",
            "8080 10-0-0-1.many.default.svc.cluster.local.",
            "8080 10-0-0-2.many.default.svc.cluster.local.",
        ]
    );
    assert_eq!(srv.additionals.len(), 3);

    let missing = server
        .query("nope.default.svc.cluster.local", QType::A)
        .await;
    assert_eq!(missing.rcode, Rcode::NxDomain);
    assert!(missing.authoritative);
    let nodata = server
        .query("web.default.svc.cluster.local", QType::Aaaa)
        .await;
    assert_eq!(nodata.rcode, Rcode::NoError);
    assert!(nodata.answers.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn answers_pipelined_queries_over_tcp() {
    let server = Running::start(zone(), vec![], Duration::from_secs(2)).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    for (id, name) in [
        (1, "web.default.svc.cluster.local"),
        (2, "nope.cluster.local"),
    ] {
        let query = query_bytes(id, name, QType::A);
        stream.write_u16(query.len() as u16).await.unwrap();
        stream.write_all(&query).await.unwrap();
    }
    let mut replies = Vec::new();
    for _ in 0..2 {
        let len = stream.read_u16().await.unwrap();
        let mut reply = vec![0; usize::from(len)];
        stream.read_exact(&mut reply).await.unwrap();
        let reply = Message::parse(&reply).unwrap();
        replies.push((reply.header.id, reply.header.rcode, reply.answers.len()));
    }
    replies.sort_by_key(|r| r.0);
    assert_eq!(
        replies,
        vec![(1, Rcode::NoError, 1), (2, Rcode::NxDomain, 0)]
    );
    server.stop().await;
}

#[tokio::test]
async fn large_answers_are_truncated_over_udp_and_complete_over_tcp() {
    let records = Records::new("cluster.local", [headless(120)]);
    let server = Running::start(records, vec![], Duration::from_secs(2)).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket
        .send_to(
            &query_bytes(7, "many.default.svc.cluster.local", QType::A),
            server.addr,
        )
        .await
        .unwrap();
    let mut buf = vec![0; 65535];
    let (n, _) = socket.recv_from(&mut buf).await.unwrap();
    assert!(n <= 512);
    let header = Header::parse(&buf[..n]).unwrap();
    assert!(header.truncated);
    assert_eq!(header.id, 7);

    // The client retries over TCP on its own.
    let response = server
        .query("many.default.svc.cluster.local", QType::A)
        .await;
    assert_eq!(response.a().len(), 120);
    server.stop().await;
}

#[tokio::test]
async fn swapped_records_take_effect() {
    let server = Running::start(zone(), vec![], Duration::from_secs(2)).await;
    let before = server
        .query("web.default.svc.cluster.local", QType::A)
        .await;
    assert_eq!(before.a(), vec![Ipv4Addr::new(10, 96, 0, 12)]);
    let new = Records::new("cluster.local", [web([10, 96, 0, 99])]);
    server.records.send(Arc::new(new)).unwrap();
    let after = server
        .query("web.default.svc.cluster.local", QType::A)
        .await;
    assert_eq!(after.a(), vec![Ipv4Addr::new(10, 96, 0, 99)]);
    let gone = server
        .query("many.default.svc.cluster.local", QType::A)
        .await;
    assert_eq!(gone.rcode, Rcode::NxDomain);
    server.stop().await;
}

#[tokio::test]
async fn forwards_other_names_verbatim_and_keeps_the_client_id() {
    let mut upstream = Upstream::start(false, false).await;
    let server = Running::start(zone(), vec![upstream.addr], Duration::from_secs(2)).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let query = query_bytes(0x4242, "Example.COM", QType::A);
    socket.send_to(&query, server.addr).await.unwrap();
    let mut buf = vec![0; 65535];
    let (n, _) = tokio::time::timeout(PATIENCE, socket.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let reply = Message::parse(&buf[..n]).unwrap();
    assert_eq!(reply.header.id, 0x4242);
    assert_eq!(reply.header.rcode, Rcode::NoError);
    assert_eq!(reply.answers[0].data, RData::A(Ipv4Addr::new(192, 0, 2, 1)));
    // The upstream saw the same bytes but for the ID.
    let (transport, seen) = upstream.seen.recv().await.unwrap();
    assert_eq!(transport, "udp");
    assert_eq!(seen[2..], query[2..]);
    server.stop().await;
}

#[tokio::test]
async fn truncated_upstream_answers_are_fetched_again_over_tcp() {
    let mut upstream = Upstream::start(true, false).await;
    let server = Running::start(zone(), vec![upstream.addr], Duration::from_secs(2)).await;
    // Over TCP to us, so the complete answer fits.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let query = query_bytes(9, "example.org", QType::A);
    stream.write_u16(query.len() as u16).await.unwrap();
    stream.write_all(&query).await.unwrap();
    let len = stream.read_u16().await.unwrap();
    let mut reply = vec![0; usize::from(len)];
    stream.read_exact(&mut reply).await.unwrap();
    let reply = Message::parse(&reply).unwrap();
    assert_eq!(reply.header.id, 9);
    assert!(!reply.header.truncated);
    assert_eq!(reply.answers.len(), 1);
    assert_eq!(upstream.seen.recv().await.unwrap().0, "udp");
    assert_eq!(upstream.seen.recv().await.unwrap().0, "tcp");
    server.stop().await;
}

#[tokio::test]
async fn tries_upstreams_in_order_and_fails_with_servfail() {
    let mut silent = Upstream::start(false, true).await;
    let answering = Upstream::start(false, false).await;
    let timeout = Duration::from_millis(300);
    let server = Running::start(zone(), vec![silent.addr, answering.addr], timeout).await;
    let response = server.query("example.net", QType::A).await;
    assert_eq!(response.a(), vec![Ipv4Addr::new(192, 0, 2, 1)]);
    assert!(
        silent.seen.recv().await.is_some(),
        "the first upstream was asked first"
    );
    server.stop().await;

    let server = Running::start(zone(), vec![silent.addr], timeout).await;
    let response = server.query("example.net", QType::A).await;
    assert_eq!(response.rcode, Rcode::ServFail);
    server.stop().await;

    let server = Running::start(zone(), vec![], timeout).await;
    let response = server.query("example.net", QType::A).await;
    assert_eq!(response.rcode, Rcode::ServFail);
    server.stop().await;
}

#[tokio::test]
async fn a_slow_upstream_does_not_stall_cluster_answers() {
    let silent = Upstream::start(false, true).await;
    let server = Running::start(zone(), vec![silent.addr], Duration::from_secs(30)).await;
    let addr = server.addr;
    let slow = tokio::spawn(client::query(addr, "slow.example", QType::A));
    let fast = tokio::time::timeout(
        Duration::from_secs(5),
        client::query(addr, "web.default.svc.cluster.local", QType::A),
    )
    .await
    .expect("a cluster answer does not wait for the upstream")
    .unwrap();
    assert_eq!(fast.a(), vec![Ipv4Addr::new(10, 96, 0, 12)]);
    assert!(!slow.is_finished());
    slow.abort();
    server.stop().await;
}

#[tokio::test]
async fn malformed_queries_get_formerr_or_silence_and_never_stop_the_server() {
    let server = Running::start(zone(), vec![], Duration::from_secs(2)).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(server.addr).await.unwrap();
    let mut buf = vec![0; 65535];

    // Too short for a header: dropped. Then a header claiming a question that is missing.
    socket.send(&[1, 2, 3]).await.unwrap();
    let mut bad = query_bytes(0x1234, "web.default.svc.cluster.local", QType::A);
    bad.truncate(20);
    socket.send(&bad).await.unwrap();
    let n = socket.recv(&mut buf).await.unwrap();
    let header = Header::parse(&buf[..n]).unwrap();
    assert_eq!((header.id, header.rcode), (0x1234, Rcode::FormErr));

    // Noise, over UDP and TCP.
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..500 {
        let len = (next() % 64) as usize;
        let mut noise: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if let Some(flags) = noise.get_mut(2) {
            *flags &= 0x7F; // a query, so that it is not dropped as a response
        }
        socket.send(&noise).await.unwrap();
    }
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(&[0, 5, 1, 2, 3, 4, 5, 0, 40])
        .await
        .unwrap();
    drop(stream);

    let response = server
        .query("web.default.svc.cluster.local", QType::A)
        .await;
    assert_eq!(response.a(), vec![Ipv4Addr::new(10, 96, 0, 12)]);
    server.stop().await;
}

#[tokio::test]
async fn resolve_applies_the_search_list() {
    let server = Running::start(zone(), vec![], Duration::from_secs(2)).await;
    let conf = ResolvConf {
        nameservers: vec![server.addr],
        ..ResolvConf::parse("search default.svc.cluster.local svc.cluster.local\noptions ndots:5")
    };
    let short = client::resolve_with("web", QType::A, &conf).await.unwrap();
    assert_eq!(short.a(), vec![Ipv4Addr::new(10, 96, 0, 12)]);
    let qualified = client::resolve_with("web.default", QType::A, &conf)
        .await
        .unwrap();
    assert_eq!(qualified.a(), vec![Ipv4Addr::new(10, 96, 0, 12)]);
    let srv = client::resolve_with("_http._tcp.web", QType::Srv, &conf)
        .await
        .unwrap();
    assert_eq!(srv.srv()[0].port, 80);
    let missing = client::resolve_with("nope", QType::A, &conf).await.unwrap();
    assert_eq!(missing.rcode, Rcode::NxDomain);
    // A trailing dot means absolute: the search list is not applied.
    let absolute = client::resolve_with("web.", QType::A, &conf).await.unwrap();
    assert!(!absolute.has_answers());
    server.stop().await;
}
