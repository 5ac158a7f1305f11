//! A stopping server is bounded: calls still open after [`moor_rpc::DRAIN`]
//! are closed, so a client that keeps a stream open (here a health Watch,
//! which never ends by itself) cannot hold the server up.

use tokio_util::sync::CancellationToken;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

#[tokio::test]
async fn a_stream_left_open_does_not_hold_a_stopping_server() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = moor_rpc::Server::new().unwrap();
    let serving = tokio::spawn(server.serve(listener, shutdown.clone()));

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut watch = HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        watch.message().await.unwrap().is_some(),
        "the watch answers"
    );

    shutdown.cancel();
    // Bounded, not timed: a server that waited for the client would never
    // return; this one returns once DRAIN has passed.
    let stopped = tokio::time::timeout(moor_rpc::DRAIN * 6, serving).await;
    assert!(
        matches!(stopped, Ok(Ok(Ok(())))),
        "the server stops with the watch still open: {stopped:?}"
    );
    drop(watch);
}
