//! moor-rpc's server and channel over TLS with certificates from the
//! cluster PKI: who may connect, and the caller a client certificate or a
//! bearer token names.

use std::time::Duration;

use futures::stream::BoxStream;
use moor_api::proxy::v1::proxy_config_client::ProxyConfigClient;
use moor_api::proxy::v1::proxy_config_server::{ProxyConfig, ProxyConfigServer};
use moor_api::proxy::v1::{
    ClusterNetwork, GetClusterNetworkRequest, ProxyConfigRequest, ProxyConfigUpdate,
};
use moor_pki::{Ca, DEFAULT_CA_VALIDITY, DEFAULT_LEAF_VALIDITY, Identity};
use moor_rpc::{Caller, ClientAuth, ClientTls, Credentials, ServerTls, TokenFuture};
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

/// Knows one token, for "robot" in "bots".
struct OneToken;

impl moor_rpc::Authenticator for OneToken {
    fn token(&self, token: &str) -> TokenFuture {
        let caller = (token == "let-me-in").then(|| Caller {
            user: "robot".into(),
            groups: vec!["bots".into()],
        });
        Box::pin(std::future::ready(Ok(caller)))
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
    server.tls(tls).authenticate(std::sync::Arc::new(OneToken));
    let stop = CancellationToken::new();
    tokio::spawn(server.serve(listener, stop.clone()));
    (port, stop)
}

/// Who the server says we are, or the call's error.
async fn whoami(url: &str, tls: Option<&ClientTls>) -> Result<String, String> {
    whoami_with(url, tls, None).await
}

/// [`whoami`] with a bearer token; an error names the transport's cause.
async fn whoami_with(
    url: &str,
    tls: Option<&ClientTls>,
    token: Option<&str>,
) -> Result<String, String> {
    let credentials = Credentials {
        tls: tls.cloned(),
        token: token.map(str::to_string),
    };
    let channel = moor_rpc::connect(url, &credentials).map_err(|e| e.to_string())?;
    let mut client = ProxyConfigClient::new(channel);
    let call = client.get_cluster_network(GetClusterNetworkRequest::default());
    match tokio::time::timeout(Duration::from_secs(10), call).await {
        Ok(Ok(response)) => Ok(response.into_inner().cluster_domain),
        Ok(Err(status)) => Err(format!(
            "{:?}: {}{}",
            status.code(),
            status.message(),
            moor_rpc::transport_failure(&status)
                .map(|cause| format!(": {cause}"))
                .unwrap_or_default()
        )),
        Err(_) => Err("no answer within 10 s".into()),
    }
}

#[tokio::test]
async fn mutual_tls_names_the_caller_and_refuses_everyone_else() {
    let pki = pki();
    let (port, stop) = serve(
        ServerTls::new(&pki.server, pki.ca.cert_pem(), ClientAuth::Required).expect("TLS settings"),
    )
    .await;
    let https = format!("https://127.0.0.1:{port}");
    let trusting = ClientTls::new(pki.ca.cert_pem());

    let alice = trusting.clone().identity(&pki.alice);
    assert_eq!(
        whoami(&https, Some(&alice)).await,
        Ok("alice/devs,ops,system:authenticated".to_string()),
        "the verified certificate names the caller"
    );
    // By name too: the server's certificate covers localhost.
    let by_name = format!("https://localhost:{port}");
    assert_eq!(
        whoami(&by_name, Some(&alice)).await,
        Ok("alice/devs,ops,system:authenticated".to_string())
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
    let expired = pki
        .ca
        .issue_client("alice", &["devs"], Duration::from_secs(1))
        .expect("a short certificate");
    moor_testkit::assert_eventually!(
        !expired.info().is_valid_at(std::time::SystemTime::now()),
        Duration::from_secs(10),
        "the short certificate expires"
    );
    let result = whoami(&https, Some(&trusting.clone().identity(&expired))).await;
    assert!(
        result
            .as_ref()
            .is_err_and(|e| e.contains("CertificateExpired")),
        "the refusal names the cause: {result:?}"
    );
    attempt("an expired certificate", result);
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
async fn optional_client_auth_takes_a_token_instead_and_refuses_anonymous_callers() {
    let pki = pki();
    let (port, stop) = serve(
        ServerTls::new(&pki.server, pki.ca.cert_pem(), ClientAuth::Optional).expect("TLS settings"),
    )
    .await;
    let https = format!("https://127.0.0.1:{port}");
    let trusting = ClientTls::new(pki.ca.cert_pem());
    assert_eq!(
        whoami_with(&https, Some(&trusting), Some("let-me-in")).await,
        Ok("robot/bots,system:authenticated".to_string()),
        "a known token names its caller"
    );
    assert_eq!(
        whoami(&https, Some(&trusting.clone().identity(&pki.alice))).await,
        Ok("alice/devs,ops,system:authenticated".to_string())
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
    let anonymous = whoami(&https, Some(&trusting)).await;
    assert!(
        anonymous.as_ref().is_err_and(
            |e| e.starts_with("Unauthenticated") && e.contains("no client certificate")
        ),
        "{anonymous:?}"
    );
    attempt("no certificate and no token", anonymous);
    attempt(
        "an unknown token",
        whoami_with(&https, Some(&trusting), Some("guess")).await,
    );
    // A certificate that is presented must still verify.
    attempt(
        "a certificate from another CA",
        whoami(&https, Some(&trusting.clone().identity(&pki.mallory))).await,
    );
    attempt(
        "a token over plain text",
        whoami_with(&format!("http://127.0.0.1:{port}"), None, Some("let-me-in")).await,
    );
    println!("attempts refused / attempts: {refused} / {attempts}");
    assert_eq!(
        refused, attempts,
        "every attempt without credentials is refused"
    );

    // Health checks need no credentials: probes and load balancers hold none.
    let channel = moor_rpc::connect(
        &https,
        &Credentials {
            tls: Some(trusting),
            token: None,
        },
    )
    .expect("a channel");
    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health answers anonymous callers");
    assert_eq!(health.into_inner().status, 1, "SERVING");
    stop.cancel();
}
