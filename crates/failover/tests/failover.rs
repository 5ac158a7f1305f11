//! A failover channel against real gRPC servers on loopback, each in its own
//! runtime so that stopping one closes its sockets as a dying process would.

use std::net::SocketAddr;
use std::thread::JoinHandle;

use moor_failover::Failover;
use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// A gRPC health server on a free loopback port, in a thread of its own.
struct TestServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let (_reporter, service) = tonic_health::server::health_reporter();
                let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
                let serve = tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming(incoming);
                tokio::select! {
                    result = serve => result.expect("serve"),
                    _ = stopped => {}
                }
            });
            // Dropping the runtime drops every connection task: the
            // sockets close, as when a process dies.
        });
        Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().expect("server thread");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn failover(urls: &[String]) -> Failover {
    let endpoints = urls
        .iter()
        .map(|url| Endpoint::from_shared(url.clone()).expect("url"))
        .collect();
    Failover::new(endpoints, moor_failover::Start::Random).expect("servers")
}

/// Stops the server `channel` sends to now; returns its URI.
fn stop_current(channel: &Failover, servers: &mut [TestServer]) -> String {
    let current = channel.current().to_string();
    let server = servers
        .iter_mut()
        .find(|server| format!("{}/", server.url()) == current)
        .expect("current is one of the servers");
    server.stop();
    current
}

async fn check(client: &mut HealthClient<Failover>) -> Result<(), tonic::Status> {
    client
        .check(HealthCheckRequest::default())
        .await
        .map(|_| ())
}

#[tokio::test]
async fn a_server_that_cannot_be_reached_costs_no_call() {
    let live = TestServer::start();
    let dead = format!("http://127.0.0.1:{}", moor_testkit::free_port());
    // Each channel starts at a random server: enough of them start at the
    // dead one.
    for _ in 0..20 {
        let channel = failover(&[dead.clone(), live.url()]);
        let mut client = HealthClient::new(channel.clone());
        check(&mut client)
            .await
            .expect("the call goes to the live server");
        assert_eq!(channel.current().to_string(), format!("{}/", live.url()));
    }
}

#[tokio::test]
async fn a_broken_stream_moves_on_before_any_call_fails() {
    let mut servers = [TestServer::start(), TestServer::start()];
    let urls: Vec<String> = servers.iter().map(TestServer::url).collect();
    let channel = failover(&urls);
    let mut client = HealthClient::new(channel.clone());
    let mut watch = client
        .watch(HealthCheckRequest::default())
        .await
        .expect("watch")
        .into_inner();
    watch.message().await.expect("first status");

    let first = stop_current(&channel, &mut servers);
    assert!(
        watch.message().await.is_err(),
        "the stream from a stopped server ends in an error"
    );
    assert_ne!(
        channel.current().to_string(),
        first,
        "moved off the dead server"
    );
    for call in 0..10 {
        check(&mut client)
            .await
            .unwrap_or_else(|e| panic!("call {call} after the move failed: {e}"));
    }
}

#[tokio::test]
async fn a_server_that_dies_while_idle_costs_at_most_one_call() {
    let mut servers = [TestServer::start(), TestServer::start()];
    let urls: Vec<String> = servers.iter().map(TestServer::url).collect();
    let channel = failover(&urls);
    let mut client = HealthClient::new(channel.clone());
    check(&mut client).await.expect("first call");

    let first = stop_current(&channel, &mut servers);
    let mut failed = 0;
    for _ in 0..10 {
        if check(&mut client).await.is_err() {
            failed += 1;
        }
    }
    assert!(
        failed <= 1,
        "{failed} of 10 calls failed after the server died"
    );
    assert_ne!(
        channel.current().to_string(),
        first,
        "moved off the dead server"
    );
}

#[tokio::test]
async fn servers_learned_later_take_over_when_the_first_dies() {
    let mut first = TestServer::start();
    let second = TestServer::start();
    let channel = failover(&[first.url()]);
    let mut client = HealthClient::new(channel.clone());
    check(&mut client).await.expect("the first server answers");
    let learned = [first.url(), second.url()]
        .iter()
        .map(|url| Endpoint::from_shared(url.clone()).expect("url"))
        .collect();
    channel.set_servers(learned);
    assert_eq!(
        channel.current().to_string(),
        format!("{}/", first.url()),
        "calls stay on the server in use"
    );
    first.stop();
    // The connection to the first broke under no call; the next call may
    // be the one that finds it out, the one after goes to the second.
    let _ = check(&mut client).await;
    check(&mut client)
        .await
        .expect("the learned server answers once the first is gone");
    assert_eq!(channel.current().to_string(), format!("{}/", second.url()));
    assert_eq!(channel.servers().len(), 2);
}
