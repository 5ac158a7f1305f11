//! `moor apiserver` is secure by default, as an operator starts it: on an
//! empty data directory it creates the cluster CA (its key readable by the
//! owner alone), serves TLS, and lets in only callers with a certificate
//! from that CA; every other attempt is refused and writes nothing.
//! `--insecure` serves plain text and says so.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use moor_api::authentication::v1::WhoAmIRequest;
use moor_api::authentication::v1::authentication_client::AuthenticationClient;
use moor_api::core::v1::ConfigMap;
use moor_api::meta::v1::ObjectMeta;
use moor_client::Client;
use moor_pki::{Ca, DEFAULT_CA_VALIDITY, DEFAULT_LEAF_VALIDITY};
use moor_rpc::{ClientTls, Credentials};
use tokio::process::{Child, Command};

fn apiserver(dir: &Path, home: &Path, port: u16, flags: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_moor"))
        .args(["apiserver", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--log", "warn"])
        .args(flags)
        .arg("--data-dir")
        .arg(dir)
        .env("HOME", home)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("moor apiserver starts")
}

/// Credentials of an administrator, "ops" in system:masters, from `ca`:
/// whoever holds the CA can let users in.
fn administrator(ca: &Ca) -> Credentials {
    let identity = ca
        .issue_client("ops", &["system:masters"], DEFAULT_LEAF_VALIDITY)
        .unwrap();
    Credentials {
        tls: Some(ClientTls::new(ca.cert_pem()).identity(&identity)),
        token: None,
    }
}

fn config_map(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: Some(ObjectMeta {
            name: name.to_string(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Creates the ConfigMap `name` through `credentials`: the attempt an
/// attacker makes. The error's code and message, if refused.
async fn attempt_write(url: &str, credentials: &Credentials, name: &str) -> Result<(), String> {
    let client = Client::connect(url, credentials).map_err(|e| e.to_string())?;
    match tokio::time::timeout(
        Duration::from_secs(10),
        client.api::<ConfigMap>().create(&config_map(name)),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err("no answer within 10 s".to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apiserver_serves_tls_by_default_and_refuses_every_unauthenticated_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let port = moor_testkit::free_port();
    let _server = apiserver(dir.path(), home.path(), port, &[]);
    let https = format!("https://127.0.0.1:{port}");

    // The CA is created with the data, its key for the owner alone.
    let pki = dir.path().join("pki");
    moor_testkit::assert_eventually!(
        pki.join("ca.key").exists() && pki.join("apiserver.crt").exists(),
        Duration::from_secs(30),
        "no CA and server certificate in {}",
        pki.display()
    );
    let mode = std::fs::metadata(pki.join("ca.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "ca.key mode {mode:o}");

    // Whoever holds the CA can let users in: here an administrator.
    let ca = Ca::load(&pki).expect("the CA loads");
    let trusting = ClientTls::new(ca.cert_pem());
    let admin = administrator(&ca);
    let admin_client = Client::connect(&https, &admin).unwrap();
    admin_client
        .wait_ready(Duration::from_secs(30))
        .await
        .expect("the apiserver answers an administrator over TLS");
    let channel = moor_rpc::connect(&https, &admin).unwrap();
    let me = AuthenticationClient::new(channel)
        .who_am_i(WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.username, "ops");
    assert_eq!(me.groups, ["system:masters", "system:authenticated"]);

    // The attempts, each with its own name so "nothing written" is checkable.
    let other_ca = Ca::generate("moor-ca", DEFAULT_CA_VALIDITY).unwrap();
    let expired = ca
        .issue_client("ops", &["system:masters"], Duration::from_secs(1))
        .unwrap();
    moor_testkit::assert_eventually!(
        !expired.info().is_valid_at(SystemTime::now()),
        Duration::from_secs(10),
        "the short certificate expires"
    );
    let attempts: Vec<(&str, String, Credentials)> = vec![
        (
            "no client certificate and no token",
            https.clone(),
            Credentials {
                tls: Some(trusting.clone()),
                token: None,
            },
        ),
        (
            "a certificate from another CA",
            https.clone(),
            Credentials {
                tls: Some(
                    trusting.clone().identity(
                        &other_ca
                            .issue_client("ops", &["system:masters"], DEFAULT_LEAF_VALIDITY)
                            .unwrap(),
                    ),
                ),
                token: None,
            },
        ),
        (
            "an expired certificate",
            https.clone(),
            Credentials {
                tls: Some(trusting.clone().identity(&expired)),
                token: None,
            },
        ),
        (
            "an unknown bearer token",
            https.clone(),
            Credentials {
                tls: Some(trusting.clone()),
                token: Some("MOOR1-guess".to_string()),
            },
        ),
        (
            "plain text to the TLS port",
            format!("http://127.0.0.1:{port}"),
            Credentials::default(),
        ),
    ];
    let total = attempts.len();
    let mut refused = 0;
    for (i, (what, url, credentials)) in attempts.iter().enumerate() {
        match attempt_write(url, credentials, &format!("attack-{i}")).await {
            Err(why) => {
                refused += 1;
                println!("{what}: refused ({why})");
            }
            Ok(()) => println!("{what}: LET IN"),
        }
    }
    println!("attempts refused / attempts: {refused} / {total}");
    assert_eq!(refused, total, "every attempt is refused");
    let written: Vec<String> = admin_client
        .api::<ConfigMap>()
        .list(&Default::default())
        .await
        .unwrap()
        .0
        .into_iter()
        .filter_map(|c| c.metadata.map(|m| m.name))
        .filter(|n| n.starts_with("attack-"))
        .collect();
    assert!(written.is_empty(), "refused attempts wrote {written:?}");

    // `moor certs check` lists them; one from another CA makes it fail.
    let check = |pki: &Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_moor"))
            .args(["certs", "check", "--pki-dir"])
            .arg(pki)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = check(&pki);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("apiserver") && l.ends_with(" ok")),
        "{out}"
    );
    assert!(out.lines().any(|l| l.starts_with("ca ")), "{out}");
    other_ca
        .issue_client("stranger", &[], DEFAULT_LEAF_VALIDITY)
        .unwrap()
        .save(&pki, "stranger")
        .unwrap();
    let (code, out, err) = check(&pki);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("stranger") && l.ends_with("not from this CA")),
        "{out}"
    );
    assert!(
        err.contains("1 certificate(s) expired or not from this CA"),
        "{err}"
    );

    // `moor certs rotate` reissues them all, and the running apiserver
    // serves its new one (its check runs every second with short lives,
    // hourly with a year's: this server has a year's, so only the files
    // are checked here; the renewal test covers serving).
    std::fs::remove_file(pki.join("stranger.crt")).unwrap();
    std::fs::remove_file(pki.join("stranger.key")).unwrap();
    let before = moor_pki::Identity::load(&pki, "apiserver").unwrap();
    let rotated = std::process::Command::new(env!("CARGO_BIN_EXE_moor"))
        .args(["certs", "rotate", "--pki-dir"])
        .arg(&pki)
        .output()
        .unwrap();
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    assert!(String::from_utf8_lossy(&rotated.stdout).contains("reissued apiserver"));
    let after = moor_pki::Identity::load(&pki, "apiserver").unwrap();
    assert_ne!(before.info().serial, after.info().serial);
    assert_eq!(before.info().ip_addresses, after.info().ip_addresses);
    let (code, _, err) = check(&pki);
    assert_eq!(code, Some(0), "{err}");

    // A standalone node of a TLS cluster serves no plain-text agent service.
    let admin_identity = ca
        .issue_client("ops", &["system:masters"], DEFAULT_LEAF_VALIDITY)
        .unwrap();
    let files = tempfile::tempdir().unwrap();
    admin_identity.save(files.path(), "admin").unwrap();
    let node_name = format!("secure-fake-{}", std::process::id());
    let _node = Command::new(env!("CARGO_BIN_EXE_moor"))
        .args([
            "node",
            "--runtime",
            "fake",
            "--name",
            &node_name,
            "--server",
            &https,
        ])
        .arg("--certificate-authority")
        .arg(pki.join("ca.crt"))
        .arg("--client-certificate")
        .arg(files.path().join("admin.crt"))
        .arg("--client-key")
        .arg(files.path().join("admin.key"))
        .env("HOME", home.path())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let nodes = admin_client.api::<moor_api::core::v1::Node>();
    moor_testkit::assert_eventually!(
        nodes.get("", &node_name).await.is_ok(),
        Duration::from_secs(30),
        "the fake node registers over TLS"
    );
    let node = nodes.get("", &node_name).await.unwrap();
    let port = node
        .status
        .unwrap_or_default()
        .daemon_endpoints
        .and_then(|d| d.kubelet_endpoint)
        .map_or(0, |e| e.port);
    assert_eq!(port, 0, "no agent service is advertised");

    // The client side: a server the client's CA did not sign is not trusted.
    let misled = Credentials {
        tls: Some(ClientTls::new(other_ca.cert_pem())),
        token: None,
    };
    let err = attempt_write(&https, &misled, "misled").await;
    assert!(err.is_err(), "a client trusting another CA connected");
}

#[test]
fn insecure_serves_plain_text_and_warns() {
    let dir = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", moor_testkit::free_port());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_moor"))
        .args([
            "apiserver",
            "--insecure",
            "--listen",
            &listen,
            "--log",
            "warn",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env("HOME", home.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let first = out.lines().next().map(Result::unwrap).unwrap_or_default();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        first.contains("WARN") && first.contains("--insecure") && first.contains(&listen),
        "{first}"
    );
    assert!(
        !dir.path().join("pki").exists(),
        "an insecure server creates no PKI"
    );
}

/// The serial of the certificate the server at `url` presents.
async fn served_serial(url: &str) -> Option<String> {
    let chain = moor_rpc::server_chain(url).await.ok()?;
    let leaf = chain.first()?;
    Some(moor_pki::CertInfo::from_der(leaf.as_ref()).ok()?.serial)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_certificate_is_renewed_while_serving_and_a_watch_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let port = moor_testkit::free_port();
    // Certificates of 12 s: the API's is due after 8.
    let _server = apiserver(
        dir.path(),
        home.path(),
        port,
        &["--certificate-lifetime-seconds", "12"],
    );
    let https = format!("https://127.0.0.1:{port}");
    let pki = dir.path().join("pki");
    moor_testkit::assert_eventually!(
        pki.join("apiserver.crt").exists(),
        Duration::from_secs(30),
        "no certificate"
    );
    let ca = Ca::load(&pki).unwrap();
    let admin = administrator(&ca);
    let client = Client::connect(&https, &admin).unwrap();
    client.wait_ready(Duration::from_secs(30)).await.unwrap();
    let first = served_serial(&https)
        .await
        .expect("a certificate is served");

    // A watch opened on the first certificate's connection.
    let configs = client.api::<ConfigMap>();
    let before = configs.create(&config_map("before")).await.unwrap();
    let mut watch = configs
        .watch(&moor_client::WatchParams {
            filters: moor_client::ListParams::default().namespace("default"),
            resource_version: before.metadata.unwrap().resource_version,
            allow_bookmarks: false,
        })
        .await
        .unwrap();

    moor_testkit::assert_eventually!(
        served_serial(&https).await.is_some_and(|s| s != first),
        Duration::from_secs(60),
        "the API's certificate is never renewed"
    );
    // New connections take the renewed certificate; the watch goes on.
    let fresh = Client::connect(&https, &admin).unwrap();
    fresh
        .api::<ConfigMap>()
        .create(&config_map("after"))
        .await
        .unwrap();
    let event = tokio::time::timeout(
        Duration::from_secs(10),
        futures::StreamExt::next(&mut watch),
    )
    .await
    .expect("the watch delivers the change made after the renewal")
    .expect("the watch is open")
    .expect("an event");
    assert_eq!(
        event
            .object
            .and_then(|o| o.metadata)
            .map(|m| m.name)
            .as_deref(),
        Some("after")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apiserver_reaches_an_etcd_that_requires_tls_and_refuses_to_start_without_it() {
    // An etcd with its own CA that serves TLS and checks client certificates.
    let files = tempfile::tempdir().unwrap();
    let etcd_ca = Ca::generate("etcd-ca", DEFAULT_CA_VALIDITY).unwrap();
    let server = etcd_ca
        .issue_server(
            "etcd",
            &["localhost"],
            &[std::net::IpAddr::from([127, 0, 0, 1])],
            DEFAULT_LEAF_VALIDITY,
        )
        .unwrap();
    server.save(files.path(), "server").unwrap();
    etcd_ca
        .issue_client("moor-apiserver", &[], DEFAULT_LEAF_VALIDITY)
        .unwrap()
        .save(files.path(), "client")
        .unwrap();
    let ca_file = files.path().join("etcd-ca.crt");
    std::fs::write(&ca_file, etcd_ca.cert_pem()).unwrap();
    let etcd = moor_testkit::EtcdServer::start_tls(&moor_testkit::EtcdTlsFiles {
        ca: ca_file.clone(),
        cert: files.path().join("server.crt"),
        key: files.path().join("server.key"),
    })
    .await
    .unwrap();
    let endpoint = etcd.tls_endpoint().unwrap();
    let path = |name: &str| files.path().join(name).to_str().unwrap().to_string();
    let ca_arg = ca_file.to_str().unwrap().to_string();

    // Without a client certificate etcd refuses, and so the apiserver does not start.
    let home = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", moor_testkit::free_port());
    let refused = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(env!("CARGO_BIN_EXE_moor"))
            .args([
                "apiserver",
                "--listen",
                &listen,
                "--etcd-endpoints",
                &endpoint,
            ])
            .args(["--etcd-cafile", &ca_arg])
            .env("HOME", home.path())
            .output(),
    )
    .await
    .expect("it gives up within a minute")
    .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("etcd"), "{stderr}");
    // https:// without a CA is a usage error, before any connection.
    let unusable = Command::new(env!("CARGO_BIN_EXE_moor"))
        .args([
            "apiserver",
            "--listen",
            &listen,
            "--etcd-endpoints",
            &endpoint,
        ])
        .env("HOME", home.path())
        .output()
        .await
        .unwrap();
    assert!(!unusable.status.success());
    assert!(
        String::from_utf8_lossy(&unusable.stderr).contains("need --etcd-cafile"),
        "{}",
        String::from_utf8_lossy(&unusable.stderr)
    );

    // With one, it serves from that etcd.
    let port = moor_testkit::free_port();
    let _apiserver = Command::new(env!("CARGO_BIN_EXE_moor"))
        .args(["apiserver", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--etcd-endpoints", &endpoint, "--etcd-cafile", &ca_arg])
        .args([
            "--etcd-certfile",
            &path("client.crt"),
            "--etcd-keyfile",
            &path("client.key"),
        ])
        .args(["--log", "warn"])
        .env("HOME", home.path())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pki = home.path().join(".moor/pki");
    moor_testkit::assert_eventually!(
        pki.join("apiserver.crt").exists(),
        Duration::from_secs(30),
        "no API certificate in {}",
        pki.display()
    );
    let ca = Ca::load(&pki).unwrap();
    let admin = administrator(&ca);
    let client = Client::connect(&format!("https://127.0.0.1:{port}"), &admin).unwrap();
    client.wait_ready(Duration::from_secs(30)).await.unwrap();
    client
        .api::<ConfigMap>()
        .create(&config_map("over-tls"))
        .await
        .unwrap();
    let stored = client
        .api::<ConfigMap>()
        .get("default", "over-tls")
        .await
        .unwrap();
    assert_eq!(stored.metadata.unwrap().name, "over-tls");
}
