//! Tests of the CA: what it issues must verify with rustls' own verifier
//! (webpki) for the right usage and names only, and what it stores must
//! load back, or fail naming the file at fault.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use rustls_pki_types::{ServerName, UnixTime};
use webpki::{EndEntityCert, KeyUsage};

use super::*;

const HOUR: Duration = Duration::from_secs(60 * 60);

fn ca() -> Ca {
    Ca::generate("moor-ca", DEFAULT_CA_VALIDITY).unwrap()
}

/// Verifies `leaf` (DER) against `ca` for `usage` at `now`.
fn verify_at(ca: &Ca, leaf: &[u8], usage: KeyUsage, now: SystemTime) -> Result<(), webpki::Error> {
    let ca_der = ca.cert_der();
    let anchor = webpki::anchor_from_trusted_cert(&ca_der)?;
    let leaf = CertificateDer::from(leaf.to_vec());
    let cert = EndEntityCert::try_from(&leaf)?;
    let now = UnixTime::since_unix_epoch(now.duration_since(UNIX_EPOCH).unwrap());
    cert.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &[anchor],
        &[],
        now,
        usage,
        None,
        None,
    )
    .map(|_| ())
}

fn verify(ca: &Ca, id: &Identity, usage: KeyUsage) -> Result<(), webpki::Error> {
    verify_at(ca, &id.cert_chain_der()[0], usage, SystemTime::now())
}

fn valid_for_name(id: &Identity, name: &str) -> bool {
    let leaf = id.cert_chain_der().remove(0);
    let cert = EndEntityCert::try_from(&leaf).unwrap();
    let name = ServerName::try_from(name).unwrap();
    cert.verify_is_valid_for_subject_name(&name).is_ok()
}

fn near(a: SystemTime, b: SystemTime, slack: Duration) -> bool {
    let diff = a
        .duration_since(b)
        .or_else(|_| b.duration_since(a))
        .unwrap();
    diff <= slack
}

#[test]
fn generated_ca_is_a_ca_for_ten_years_with_its_digest() {
    let before = SystemTime::now();
    let ca = ca();
    let info = ca.info();
    assert!(info.is_ca);
    assert_eq!(info.common_name.as_deref(), Some("moor-ca"));
    assert_eq!(info.issuer_common_name.as_deref(), Some("moor-ca"));
    assert!(near(
        info.not_after,
        before + DEFAULT_CA_VALIDITY,
        Duration::from_secs(5)
    ));
    assert!(near(
        info.not_before,
        before - MAX_BACKDATE,
        Duration::from_secs(5)
    ));
    assert_eq!(ca.digest(), cert::sha256_hex(&ca.cert_der()));
    assert_eq!(ca.digest().len(), 64);
    assert_eq!(crate::ca_digest(ca.cert_pem()).unwrap(), ca.digest());
    assert_ne!(ca.digest(), self::ca().digest(), "each CA has its own key");
    assert!(CertInfo::parse(ca.cert_pem()).unwrap().is_ca);
}

#[test]
fn server_certificate_carries_its_names_and_verifies_for_them_only() {
    let ca = ca();
    let ip: IpAddr = "10.0.0.7".parse().unwrap();
    let ip6: IpAddr = "::1".parse().unwrap();
    let before = SystemTime::now();
    let id = ca
        .issue_server(
            "moor-apiserver",
            &["server-1", "localhost"],
            &[ip, ip6],
            DEFAULT_LEAF_VALIDITY,
        )
        .unwrap();

    let info = id.info();
    assert_eq!(info, &CertInfo::parse(id.cert_pem()).unwrap());
    assert_eq!(info.common_name.as_deref(), Some("moor-apiserver"));
    assert_eq!(info.issuer_common_name.as_deref(), Some("moor-ca"));
    assert_eq!(info.dns_names, ["server-1", "localhost"]);
    assert_eq!(info.ip_addresses, [ip, ip6]);
    assert!(!info.is_ca);
    assert!(info.organizations.is_empty());
    assert!(near(
        info.not_after,
        before + DEFAULT_LEAF_VALIDITY,
        Duration::from_secs(5)
    ));

    verify(&ca, &id, KeyUsage::server_auth()).unwrap();
    assert!(valid_for_name(&id, "server-1"));
    assert!(valid_for_name(&id, "localhost"));
    assert!(valid_for_name(&id, "10.0.0.7"));
    assert!(valid_for_name(&id, "::1"));
    assert!(!valid_for_name(&id, "server-2"));
    assert!(!valid_for_name(&id, "10.0.0.8"));
    assert!(
        verify(&ca, &id, KeyUsage::client_auth()).is_err(),
        "server only"
    );
    assert!(
        verify(&self::ca(), &id, KeyUsage::server_auth()).is_err(),
        "another CA"
    );
}

#[test]
fn client_certificate_names_user_and_groups_and_verifies_for_clients_only() {
    let ca = ca();
    let id = ca
        .issue_client(
            "system:node:web-1",
            &["system:nodes", "moor:lab"],
            DEFAULT_LEAF_VALIDITY,
        )
        .unwrap();
    let info = id.info();
    assert_eq!(info.common_name.as_deref(), Some("system:node:web-1"));
    assert_eq!(info.organizations, ["system:nodes", "moor:lab"]);
    assert!(info.dns_names.is_empty() && info.ip_addresses.is_empty());
    assert!(!info.is_ca);
    verify(&ca, &id, KeyUsage::client_auth()).unwrap();
    assert!(
        verify(&ca, &id, KeyUsage::server_auth()).is_err(),
        "client only"
    );
    assert!(
        verify(&self::ca(), &id, KeyUsage::client_auth()).is_err(),
        "another CA"
    );

    let alone = ca
        .issue_client("alice", &[], DEFAULT_LEAF_VALIDITY)
        .unwrap();
    assert!(alone.info().organizations.is_empty());
    verify(&ca, &alone, KeyUsage::client_auth()).unwrap();
}

#[test]
fn leaf_validity_can_be_seconds_and_never_outlives_the_ca() {
    let ca = ca();
    let before = SystemTime::now();
    let id = ca
        .issue_client("alice", &[], Duration::from_secs(10))
        .unwrap();
    let info = id.info();
    assert!(near(
        info.not_after,
        before + Duration::from_secs(10),
        Duration::from_secs(2)
    ));
    // A tenth of the validity at most goes to backdating.
    assert!(
        info.lifetime() <= Duration::from_secs(12),
        "{:?}",
        info.lifetime()
    );
    assert!(!info.needs_renewal(SystemTime::now()));
    assert!(info.needs_renewal(before + Duration::from_secs(9)));
    // Expired: rustls refuses it.
    let later = before + Duration::from_secs(60);
    let err = verify_at(&ca, &id.cert_chain_der()[0], KeyUsage::client_auth(), later);
    assert!(
        matches!(err, Err(webpki::Error::CertExpired { .. })),
        "{err:?}"
    );

    let short_ca = Ca::generate("short", HOUR).unwrap();
    let leaf = short_ca
        .issue_client("bob", &[], DEFAULT_LEAF_VALIDITY)
        .unwrap();
    assert!(leaf.info().not_after <= short_ca.info().not_after);
}

#[test]
fn zero_or_huge_validity_is_refused() {
    let ca = ca();
    for validity in [Duration::ZERO, Duration::from_millis(999), Duration::MAX] {
        let err = ca.issue_client("alice", &[], validity).unwrap_err();
        assert!(
            matches!(err, Error::Validity { .. }),
            "{validity:?}: {err:?}"
        );
    }
    let err = Ca::generate("x", Duration::from_secs(20_000 * 365 * 24 * 3600)).unwrap_err();
    assert!(matches!(err, Error::Validity { .. }), "{err:?}");
}

#[test]
fn bad_names_are_refused() {
    let ca = ca();
    let no_sans = ca.issue_server("api", &[], &[], HOUR).unwrap_err();
    assert!(matches!(no_sans, Error::InvalidName { .. }), "{no_sans:?}");
    let ip_as_dns = ca
        .issue_server("api", &["10.0.0.1"], &[], HOUR)
        .unwrap_err();
    assert!(ip_as_dns.to_string().contains("IP"), "{ip_as_dns}");
    let unicode = ca
        .issue_server("api", &["bücher.example"], &[], HOUR)
        .unwrap_err();
    assert!(matches!(unicode, Error::InvalidName { .. }), "{unicode:?}");
    assert!(matches!(
        ca.issue_client("", &[], HOUR),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        ca.issue_client("a", &[""], HOUR),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        Ca::generate("", HOUR),
        Err(Error::InvalidName { .. })
    ));
}

#[test]
fn serial_numbers_are_random() {
    let ca = ca();
    let a = ca.issue_client("alice", &[], HOUR).unwrap();
    let b = ca.issue_client("alice", &[], HOUR).unwrap();
    assert_ne!(a.info().serial, b.info().serial);
    assert_eq!(a.info().serial.len(), 32, "16 bytes");
}

#[test]
fn signing_a_request_uses_its_key_and_the_signers_groups() {
    let ca = ca();
    // The requester asks for more than it may have; the signer decides.
    let csr = crate::Csr::new("system:node:web-1", &["system:masters"]).unwrap();
    let cert_pem = ca
        .sign_csr(csr.pem(), "system:node:web-1", &["system:nodes"], HOUR)
        .unwrap();
    let id = csr.into_identity(cert_pem).unwrap();
    assert_eq!(id.info().common_name.as_deref(), Some("system:node:web-1"));
    assert_eq!(id.info().organizations, ["system:nodes"]);
    verify(&ca, &id, KeyUsage::client_auth()).unwrap();
}

#[test]
fn a_request_for_another_identity_is_refused() {
    let ca = ca();
    let csr = crate::Csr::new("system:node:admin", &["system:nodes"]).unwrap();
    let err = ca
        .sign_csr(csr.pem(), "system:node:web-1", &["system:nodes"], HOUR)
        .unwrap_err();
    match &err {
        Error::CsrIdentity { expected, found } => {
            assert_eq!(expected, "system:node:web-1");
            assert_eq!(found, "system:node:admin");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("system:node:admin"), "{err}");
}

#[test]
fn a_forged_or_garbled_request_is_refused() {
    let ca = ca();
    let garbage = ca.sign_csr("not a csr", "alice", &[], HOUR).unwrap_err();
    assert!(matches!(garbage, Error::InvalidCsr { .. }), "{garbage:?}");

    // Swap the subject of a real request without re-signing: the signature
    // no longer matches, so the requester does not hold the key it claims.
    let csr = crate::Csr::new("mallory", &[]).unwrap();
    let der = pem::parse(csr.pem()).unwrap().into_contents();
    let mut forged = der.clone();
    let at = forged.windows(7).position(|w| w == b"mallory").unwrap();
    forged[at..at + 7].copy_from_slice(b"alice00");
    let forged = der::pem("CERTIFICATE REQUEST", &forged);
    let err = ca.sign_csr(&forged, "alice00", &[], HOUR).unwrap_err();
    assert!(matches!(err, Error::InvalidCsr { .. }), "{err:?}");
}

#[test]
fn saved_ca_loads_back_and_issues_for_the_same_trust() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("data/pki");
    let ca = ca();
    ca.save(&pki).unwrap();

    let key_mode = fs::metadata(pki.join(CA_KEY_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    let dir_mode = fs::metadata(&pki).unwrap().permissions().mode();
    assert_eq!(dir_mode & 0o777, 0o700);

    let loaded = Ca::load(&pki).unwrap();
    assert_eq!(loaded.digest(), ca.digest());
    assert_eq!(loaded.cert_pem(), ca.cert_pem());
    let id = loaded.issue_client("alice", &["dev"], HOUR).unwrap();
    verify(&ca, &id, KeyUsage::client_auth()).unwrap();

    // Saving again replaces both files and leaves nothing else behind.
    loaded.save(&pki).unwrap();
    let mut names: Vec<_> = fs::read_dir(&pki)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, [CA_CERT_FILE, CA_KEY_FILE]);
}

#[test]
fn loading_a_missing_or_corrupt_file_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join(CA_CERT_FILE);
    let key_path = dir.path().join(CA_KEY_FILE);
    let names = |err: &Error, path: &Path| {
        let text = format!("{err}");
        assert!(text.contains(&*path.to_string_lossy()), "{text}");
    };

    let err = Ca::load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Read { path, .. } if *path == cert_path),
        "{err:?}"
    );
    names(&err, &cert_path);

    let ca = ca();
    ca.save(dir.path()).unwrap();
    fs::write(
        &cert_path,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = Ca::load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { path, .. } if *path == cert_path),
        "{err:?}"
    );
    names(&err, &cert_path);

    ca.save(dir.path()).unwrap();
    fs::write(&key_path, "garbage").unwrap();
    let err = Ca::load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { path, .. } if *path == key_path),
        "{err:?}"
    );
    names(&err, &key_path);

    // Another CA's key beside this certificate.
    ca.save(dir.path()).unwrap();
    fs::write(&key_path, self::ca().key_pem()).unwrap();
    let err = Ca::load(dir.path()).unwrap_err();
    match &err {
        Error::Corrupt { path, source } => {
            assert_eq!(path, &key_path);
            assert!(matches!(**source, Error::KeyMismatch), "{source:?}");
        }
        other => panic!("unexpected {other:?}"),
    }

    // A leaf certificate where the CA's should be.
    let leaf = ca.issue_client("alice", &[], HOUR).unwrap();
    leaf.save(dir.path(), "ca").unwrap();
    let err = Ca::load(dir.path()).unwrap_err();
    match &err {
        Error::Corrupt { path, source } => {
            assert_eq!(path, &cert_path);
            assert!(matches!(**source, Error::NotCa { .. }), "{source:?}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn debug_hides_the_key() {
    let ca = ca();
    let key = ca.key_pem();
    assert!(key.contains("PRIVATE KEY"));
    let shown = format!("{ca:?}");
    assert!(
        !shown.contains("PRIVATE KEY") && shown.contains(ca.digest()),
        "{shown}"
    );
}

#[test]
fn ca_and_errors_can_cross_threads() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Ca>();
    send_sync::<Identity>();
    send_sync::<crate::Csr>();
    send_sync::<crate::Token>();
    send_sync::<Error>();
}

#[test]
fn an_expired_ca_issues_nothing() {
    let key = generate_key().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name_only("old-ca");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.not_before = OffsetDateTime::from_unix_timestamp(1_000_000_000).unwrap();
    params.not_after = OffsetDateTime::from_unix_timestamp(1_100_000_000).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let ca = Ca::from_pem(&cert.pem(), &key.serialize_pem()).unwrap();
    let err = ca.issue_client("alice", &[], HOUR).unwrap_err();
    assert!(matches!(err, Error::CaExpired { .. }), "{err:?}");
    assert!(err.to_string().contains("2004-11-09T11:33:20Z"), "{err}");
}
