//! The hub's PKI on disk and certificate issuance, with real keys and real files.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::time::{Duration, SystemTime};

use outpost_certs::{
    certs_from_pem, client_identity, private_key_from_pem, AgentKey, ClientRole, Fingerprint,
    HubPki, PkiError,
};
use uuid::Uuid;
use x509_parser::extensions::GeneralName;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn a_restarted_hub_keeps_its_ca_and_server_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let first = HubPki::load_or_create(dir.path(), &names(&["hub.example.com"])).unwrap();
    assert!(
        first.server_cert_reissued(),
        "a fresh hub issues its server certificate"
    );

    let second = HubPki::load_or_create(dir.path(), &names(&["hub.example.com"])).unwrap();
    assert_eq!(second.ca_fingerprint(), first.ca_fingerprint());
    assert_eq!(second.ca_cert_der(), first.ca_cert_der());
    assert_eq!(second.server_chain(), first.server_chain());
    assert!(!second.server_cert_reissued());

    let on_disk = certs_from_pem(&fs::read_to_string(dir.path().join("ca.pem")).unwrap()).unwrap();
    assert_eq!(Fingerprint::of(&on_disk[0]), first.ca_fingerprint());
    assert_eq!(
        first.ca_cert_pem(),
        fs::read_to_string(dir.path().join("ca.pem")).unwrap()
    );
}

#[cfg(unix)]
#[test]
fn key_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    HubPki::load_or_create(dir.path(), &[]).unwrap();
    for file in ["ca.key", "server.key"] {
        let mode = fs::metadata(dir.path().join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    let files: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        files.len(),
        4,
        "only the four PKI files, no temporaries: {files:?}"
    );
}

#[test]
fn changing_the_hub_names_reissues_the_server_certificate_but_not_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let before = HubPki::load_or_create(dir.path(), &names(&["old.example.com"])).unwrap();
    let after =
        HubPki::load_or_create(dir.path(), &names(&["new.example.com", "198.51.100.7"])).unwrap();

    assert!(after.server_cert_reissued());
    assert_eq!(after.ca_fingerprint(), before.ca_fingerprint());
    assert_ne!(after.server_chain()[0], before.server_chain()[0]);

    let chain = after.server_chain();
    let (_, cert) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    for name in &san.value.general_names {
        match name {
            GeneralName::DNSName(d) => dns.push(d.to_string()),
            GeneralName::IPAddress(ip) => ips.push(ip.to_vec()),
            other => panic!("unexpected SAN {other:?}"),
        }
    }
    dns.sort();
    assert_eq!(dns, ["localhost", "new.example.com", "outpost-hub"]);
    assert!(ips.contains(&vec![198, 51, 100, 7]));
    assert!(ips.contains(&vec![127, 0, 0, 1]));
    assert_eq!(ips.len(), 3);

    // The same names in another order and case are the same set: no re-issue.
    let again =
        HubPki::load_or_create(dir.path(), &names(&["198.51.100.7", "NEW.example.com"])).unwrap();
    assert!(!again.server_cert_reissued());
}

#[test]
fn a_damaged_server_key_is_replaced_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let before = HubPki::load_or_create(dir.path(), &[]).unwrap();
    fs::write(dir.path().join("server.key"), "garbage").unwrap();
    let after = HubPki::load_or_create(dir.path(), &[]).unwrap();
    assert!(after.server_cert_reissued());
    assert_eq!(after.ca_fingerprint(), before.ca_fingerprint());
}

#[test]
fn a_missing_ca_key_is_an_error_and_nothing_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    HubPki::load_or_create(dir.path(), &[]).unwrap();
    let ca_pem = fs::read_to_string(dir.path().join("ca.pem")).unwrap();
    fs::remove_file(dir.path().join("ca.key")).unwrap();

    let err = HubPki::load_or_create(dir.path(), &[]).unwrap_err();
    assert!(matches!(err, PkiError::MissingCaKey { .. }), "{err}");
    assert_eq!(
        fs::read_to_string(dir.path().join("ca.pem")).unwrap(),
        ca_pem
    );
}

#[test]
fn a_ca_key_from_another_hub_is_refused() {
    let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    HubPki::load_or_create(ours.path(), &[]).unwrap();
    HubPki::load_or_create(theirs.path(), &[]).unwrap();
    fs::copy(theirs.path().join("ca.key"), ours.path().join("ca.key")).unwrap();
    let err = HubPki::load_or_create(ours.path(), &[]).unwrap_err();
    assert!(matches!(err, PkiError::CaKeyMismatch { .. }), "{err}");
}

#[test]
fn an_invalid_hub_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = HubPki::load_or_create(dir.path(), &names(&["hub:4433"])).unwrap_err();
    assert!(
        matches!(err, PkiError::InvalidName(ref n) if n == "hub:4433"),
        "{err}"
    );
}

#[test]
fn an_agent_certificate_carries_the_agent_uuid() {
    let dir = tempfile::tempdir().unwrap();
    let hub = HubPki::load_or_create(dir.path(), &[]).unwrap();
    let agent_id = Uuid::new_v4();
    let key = AgentKey::generate().unwrap();
    let csr = key.csr_der(agent_id).unwrap();

    let issued = hub
        .issue_client_cert(&ClientRole::Agent(agent_id), &csr, 365 * DAY)
        .unwrap();
    let (role, serial) = client_identity(&issued.der).unwrap();
    assert_eq!(role, ClientRole::Agent(agent_id));
    assert_eq!(serial, issued.serial);
    assert_eq!(serial.as_bytes().len(), 16);
    assert_eq!(
        serial
            .to_string()
            .parse::<outpost_certs::CertSerial>()
            .unwrap(),
        serial
    );

    let left = issued.not_after.duration_since(SystemTime::now()).unwrap();
    assert!(left > 364 * DAY && left <= 365 * DAY, "{left:?}");

    // The certificate is for the agent's own key.
    let (_, cert) = x509_parser::parse_x509_certificate(&issued.der).unwrap();
    assert_eq!(cert.public_key().raw, key.public_key_der().as_slice());
    assert!(issued.pem().starts_with("-----BEGIN CERTIFICATE-----"));

    // Two certificates never share a serial.
    let again = hub
        .issue_client_cert(&ClientRole::Agent(agent_id), &csr, DAY)
        .unwrap();
    assert_ne!(again.serial, issued.serial);
}

#[test]
fn a_csr_with_a_broken_signature_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hub = HubPki::load_or_create(dir.path(), &[]).unwrap();
    let mut csr = AgentKey::generate()
        .unwrap()
        .csr_der(Uuid::new_v4())
        .unwrap();
    let last = csr.len() - 1;
    csr[last] ^= 0x01;

    let role = ClientRole::Agent(Uuid::new_v4());
    let err = hub.issue_client_cert(&role, &csr, DAY).unwrap_err();
    assert!(matches!(err, PkiError::CsrSignature), "{err}");

    for garbage in [&b""[..], b"\x30\x03\x02\x01", &csr[..csr.len() / 2]] {
        let err = hub.issue_client_cert(&role, garbage, DAY).unwrap_err();
        assert!(matches!(err, PkiError::MalformedCsr(_)), "{err}");
    }
}

#[test]
fn an_admin_certificate_comes_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let hub = HubPki::load_or_create(dir.path(), &[]).unwrap();
    let role = ClientRole::Admin("alice".to_owned());
    let (issued, key_pem) = hub.issue_client_cert_with_key(&role, 30 * DAY).unwrap();
    assert_eq!(client_identity(&issued.der).unwrap().0, role);
    private_key_from_pem(&key_pem).unwrap();

    let err = hub
        .issue_client_cert_with_key(&ClientRole::Admin("alice smith".to_owned()), DAY)
        .unwrap_err();
    assert!(
        matches!(err, PkiError::InvalidIdentityName { role: "admin", .. }),
        "{err}"
    );
}

#[test]
fn a_server_certificate_has_no_client_identity() {
    let dir = tempfile::tempdir().unwrap();
    let hub = HubPki::load_or_create(dir.path(), &[]).unwrap();
    let err = client_identity(&hub.server_chain()[0]).unwrap_err();
    assert!(matches!(err, PkiError::NoIdentity), "{err}");
}
