//! moor-rpc's server and channel over TLS with certificates from the
//! cluster PKI: who may connect, and the caller a client certificate names.

use std::time::Duration;

use futures::stream::BoxStream;
use moor_api::proxy::v1::proxy_config_client::ProxyConfigClient;
use moor_api::proxy::v1::proxy_config_server::{ProxyConfig, ProxyConfigServer};
use moor_api::proxy::v1::{
    ClusterNetwork, GetClusterNetworkRequest, ProxyConfigRequest, ProxyConfigUpdate,
};
use moor_pki::{Ca, DEFAULT_CA_VALIDITY, DEFAULT_LEAF_VALIDITY, Identity};
use moor_rpc::{ClientAuth, ClientTls, ServerTls};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

/// Answers GetClusterNetwork with the caller in `cluster_domain`
/// (`user/group,group`, or `anonymous`): a service to ask who we are.
struct WhoAmI;

#[tonic::async_trait]
impl ProxyConfig for WhoAmI {
    type StreamStream = BoxStream<'static, Result<ProxyConfigUpdate, Status>>;

    async fn stream(
        &self,
        _: Request<Streaming<ProxyConfigRequest>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn get_cluster_network(
        &self,
        request: Request<GetClusterNetworkRequest>,
    ) -> Result<Response<ClusterNetwork>, Status> {
        let who = moor_rpc::caller(&request).map_or("anonymous".to_string(), |c| {
            format!("{}/{}", c.user, c.groups.join(","))
        });
        Ok(Response::new(ClusterNetwork {
            cluster_domain: who,
            ..Default::default()
        }))
    }
}

struct Pki {
    ca: Ca,
    server: Identity,
    alice: Identity,
    /// Signed by another CA, with the same names.
    mallory: Identity,
    other_ca: Ca,
}

fn pki() -> Pki {
    let ca = Ca::generate("moor-test-ca", DEFAULT_CA_VALIDITY).expect("a CA");
    let other_ca = Ca::generate("moor-test-ca", DEFAULT_CA_VALIDITY).expect("another CA");
    let ip = std::net::IpAddr::from([127, 0, 0, 1]);
    Pki {
        server: ca
            .issue_server("apiserver", &["localhost"], &[ip], DEFAULT_LEAF_VALIDITY)
            .expect("a server certificate"),
        alice: ca
            .issue_client("alice", &["devs", "ops"], DEFAULT_LEAF_VALIDITY)
            .expect("a client certificate"),
        mallory: other_ca
            .issue_client("alice", &["devs", "ops"], DEFAULT_LEAF_VALIDITY)
            .expect("a client certificate"),
        ca,
        other_ca,
    }
}

/// Serves WhoAmI over TLS on 127.0.0.1:0; the port and the stop handle.
async fn serve(tls: ServerTls) -> (u16, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("local address").port();
    let mut server = moor_rpc::Server::new().expect("server");
    server.add(ProxyConfigServer::new(WhoAmI)).await;
    server.tls(tls);
    let stop = CancellationToken::new();
    tokio::spawn(server.serve(listener, stop.clone()));
    (port, stop)
}

/// Who the server says we are, or the call's error.
async fn whoami(url: &str, tls: Option<&ClientTls>) -> Result<String, String> {
    let channel = moor_rpc::channel_with(url, tls).map_err(|e| e.to_string())?;
    let mut client = ProxyConfigClient::new(channel);
    let call = client.get_cluster_network(GetClusterNetworkRequest::default());
    match tokio::time::timeout(Duration::from_secs(10), call).await {
        Ok(Ok(response)) => Ok(response.into_inner().cluster_domain),
        Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
        Err(_) => Err("no answer within 10 s".into()),
    }
}

#[tokio::test]
async fn mutual_tls_names_the_caller_and_refuses_everyone_else() {
    let pki = pki();
    let (port, stop) = serve(ServerTls::new(
        &pki.server,
        pki.ca.cert_pem(),
        ClientAuth::Required,
    ))
    .await;
    let https = format!("https://127.0.0.1:{port}");
    let trusting = ClientTls::new(pki.ca.cert_pem());

    let alice = trusting.clone().identity(&pki.alice);
    assert_eq!(
        whoami(&https, Some(&alice)).await,
        Ok("alice/devs,ops".to_string()),
        "the verified certificate names the caller"
    );
    // By name too: the server's certificate covers localhost.
    let by_name = format!("https://localhost:{port}");
    assert_eq!(
        whoami(&by_name, Some(&alice)).await,
        Ok("alice/devs,ops".to_string())
    );

    let mut attempts = 0;
    let mut refused = 0;
    let mut attempt = |name: &str, result: Result<String, String>| {
        attempts += 1;
        match result {
            Err(why) => {
                refused += 1;
                eprintln!("{name}: refused ({why})");
            }
            Ok(who) => eprintln!("{name}: let in as {who}"),
        }
    };
    attempt(
        "no client certificate",
        whoami(&https, Some(&trusting)).await,
    );
    let mallory = trusting.clone().identity(&pki.mallory);
    attempt(
        "a certificate from another CA",
        whoami(&https, Some(&mallory)).await,
    );
    attempt(
        "plain text to the TLS port",
        whoami(&format!("http://127.0.0.1:{port}"), None).await,
    );
    // The client's side: a server its CA did not sign is not trusted.
    let misled = ClientTls::new(pki.other_ca.cert_pem()).identity(&pki.alice);
    attempt(
        "a server from another CA",
        whoami(&https, Some(&misled)).await,
    );
    println!("attempts refused / attempts: {refused} / {attempts}");
    assert_eq!(
        refused, attempts,
        "every attempt without a good certificate is refused"
    );
    stop.cancel();
}

#[tokio::test]
async fn optional_client_auth_lets_anonymous_callers_in_unnamed() {
    let pki = pki();
    let (port, stop) = serve(ServerTls::new(
        &pki.server,
        pki.ca.cert_pem(),
        ClientAuth::Optional,
    ))
    .await;
    let https = format!("https://127.0.0.1:{port}");
    let trusting = ClientTls::new(pki.ca.cert_pem());
    assert_eq!(
        whoami(&https, Some(&trusting)).await,
        Ok("anonymous".to_string()),
        "no certificate, no name: a token must say who it is"
    );
    assert_eq!(
        whoami(&https, Some(&trusting.clone().identity(&pki.alice))).await,
        Ok("alice/devs,ops".to_string())
    );
    // A certificate that is presented must still verify.
    assert!(
        whoami(&https, Some(&trusting.identity(&pki.mallory)))
            .await
            .is_err(),
        "a certificate from another CA is refused even when optional"
    );
    stop.cancel();
}
