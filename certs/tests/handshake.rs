//! Real TLS handshakes between rustls client and server connections, pumped in memory: TLS 1.3
//! everywhere, and TLS 1.2 for old Docker clients on the hub's HTTPS listener only.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use outpost_certs::{
    ca_client_config, client_identity, pinned_client_config, AgentKey, ClientAuth, ClientRole,
    HubPki, PinReport, PkiError, HUB_SERVER_NAME,
};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};
use uuid::Uuid;

const ALPN: &[u8] = b"outpost/1";
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Which end of the handshake gave up.
#[derive(Debug, PartialEq)]
enum Side {
    Client,
    Server,
}

/// A finished (or failed) in-memory handshake.
struct Handshake {
    client: Connection,
    server: Connection,
    result: Result<(), (Side, rustls::Error)>,
}

fn hub(dir: &tempfile::TempDir) -> HubPki {
    HubPki::load_or_create(dir.path(), &["hub.example.com".to_owned()]).unwrap()
}

/// Connect `config` to `hub`'s server config, dialling `name`, and run the handshake.
fn connect(hub: &HubPki, config: ClientConfig, name: &str) -> Handshake {
    connect_to(hub.server_config(&[ALPN]).unwrap(), Arc::new(config), name)
}

/// Connect `config` to `server_config`, dialling `name`, and run the handshake.
fn connect_to(server_config: ServerConfig, config: Arc<ClientConfig>, name: &str) -> Handshake {
    let server_config = Arc::new(server_config);
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let mut client = Connection::from(ClientConnection::new(config, name).unwrap());
    let mut server = Connection::from(ServerConnection::new(server_config).unwrap());
    let result = pump(&mut client, &mut server);
    Handshake {
        client,
        server,
        result,
    }
}

/// Move bytes between the two ends until both finish the handshake or one fails.
fn pump(client: &mut Connection, server: &mut Connection) -> Result<(), (Side, rustls::Error)> {
    for _ in 0..20 {
        transfer(client, server).map_err(|e| (Side::Server, e))?;
        transfer(server, client).map_err(|e| (Side::Client, e))?;
        if !client.is_handshaking() && !server.is_handshaking() {
            // In TLS 1.3 the client finishes first; deliver its last flight to the server.
            transfer(client, server).map_err(|e| (Side::Server, e))?;
            return Ok(());
        }
    }
    panic!("handshake stalled");
}

/// Everything `from` wants to send, delivered to and processed by `to`.
fn transfer(from: &mut Connection, to: &mut Connection) -> Result<(), rustls::Error> {
    let mut bytes = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut bytes).unwrap();
    }
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        to.read_tls(&mut rest).unwrap();
        to.process_new_packets()?;
    }
    Ok(())
}

fn agent_client_auth(hub: &HubPki, agent_id: Uuid) -> ClientAuth {
    let key = AgentKey::generate().unwrap();
    let csr = key.csr_der(agent_id).unwrap();
    let issued = hub
        .issue_client_cert(&ClientRole::Agent(agent_id), &csr, DAY)
        .unwrap();
    (vec![issued.der], key.private_key_der())
}

fn pinned(hub: &HubPki, client: Option<ClientAuth>) -> (ClientConfig, PinReport) {
    pinned_client_config(hub.ca_fingerprint(), client, &[ALPN]).unwrap()
}

fn peer_identity(conn: &Connection) -> Option<ClientRole> {
    let certs = conn.peer_certificates()?;
    Some(client_identity(&certs[0]).unwrap().0)
}

#[test]
fn an_agent_with_the_right_pin_connects_whatever_address_it_dialled() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(&dir);
    for dialled in [HUB_SERVER_NAME, "203.0.113.9", "moved.example.net"] {
        let (config, report) = pinned(&hub, None);
        let hs = connect(&hub, config, dialled);
        hs.result.unwrap();
        assert_eq!(hs.client.alpn_protocol(), Some(ALPN));
        assert_eq!(report.mismatch(), None);
        // Enrolment: no client certificate, and the server accepts that.
        assert!(hs.server.peer_certificates().is_none());
    }
}

#[test]
fn agents_and_hubs_agree_on_aes_128_with_sha_256_which_the_cpu_hashes_in_hardware() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(&dir);
    let agent = agent_client_auth(&hub, Uuid::new_v4());
    let (config, _) = pinned(&hub, Some(agent));
    let hs = connect(&hub, config, HUB_SERVER_NAME);
    hs.result.unwrap();
    let suite = rustls::CipherSuite::TLS13_AES_128_GCM_SHA256;
    assert_eq!(hs.client.negotiated_cipher_suite().unwrap().suite(), suite);
    assert_eq!(hs.server.negotiated_cipher_suite().unwrap().suite(), suite);
}

#[test]
fn an_agent_refuses_a_hub_that_is_not_pinned_and_reports_what_it_saw() {
    let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (hub, impostor) = (hub(&ours), hub(&theirs));
    let (config, report) = pinned(&hub, None);

    let hs = connect(&impostor, config, HUB_SERVER_NAME);
    let (side, error) = hs.result.unwrap_err();
    assert_eq!(side, Side::Client);
    assert_eq!(report.mismatch(), Some(impostor.ca_fingerprint()));

    // Over TCP the error itself says so, too.
    let rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) = error else {
        panic!("unexpected error {error:?}");
    };
    let pki = other.0.downcast_ref::<PkiError>().unwrap();
    assert!(matches!(
        pki,
        PkiError::PinMismatch { expected, presented }
            if *expected == hub.ca_fingerprint() && *presented == impostor.ca_fingerprint()
    ));

    report.clear();
    assert_eq!(report.mismatch(), None);
}

#[test]
fn an_impostor_cannot_borrow_the_pinned_ca_certificate() {
    // The impostor presents its own server certificate but appends our (public) CA certificate,
    // hoping the pin check alone lets it through. The signature check must stop it.
    let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (hub, impostor) = (hub(&ours), hub(&theirs));
    let chain = vec![impostor.server_chain()[0].clone(), hub.ca_cert_der()];
    let server_config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, impostor.server_key())
            .unwrap();

    let (config, report) = pinned(&hub, None);
    let name = ServerName::try_from(HUB_SERVER_NAME).unwrap();
    let mut client = Connection::from(ClientConnection::new(Arc::new(config), name).unwrap());
    let mut server = Connection::from(ServerConnection::new(Arc::new(server_config)).unwrap());
    let (side, error) = pump(&mut client, &mut server).unwrap_err();
    assert_eq!(side, Side::Client);
    assert!(
        matches!(error, rustls::Error::InvalidCertificate(_)),
        "{error:?}"
    );
    assert_eq!(
        report.mismatch(),
        None,
        "the pin matched; the chain did not"
    );
}

#[test]
fn mutual_tls_tells_the_hub_which_agent_connected() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(&dir);
    let agent_id = Uuid::new_v4();
    let (config, _) = pinned(&hub, Some(agent_client_auth(&hub, agent_id)));

    let hs = connect(&hub, config, HUB_SERVER_NAME);
    hs.result.unwrap();
    assert_eq!(peer_identity(&hs.server), Some(ClientRole::Agent(agent_id)));
}

#[test]
fn the_hub_rejects_a_client_certificate_from_another_hub() {
    let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (hub, other) = (hub(&ours), hub(&theirs));
    let foreign = agent_client_auth(&other, Uuid::new_v4());
    let (config, _) = pinned(&hub, Some(foreign));

    let hs = connect(&hub, config, HUB_SERVER_NAME);
    let (side, error) = hs.result.unwrap_err();
    assert_eq!(side, Side::Server);
    assert!(
        matches!(error, rustls::Error::InvalidCertificate(_)),
        "{error:?}"
    );
}

#[test]
fn an_admin_tool_trusts_the_hub_ca_and_checks_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(&dir);
    let (issued, key_pem) = hub
        .issue_client_cert_with_key(&ClientRole::Admin("ops".to_owned()), DAY)
        .unwrap();
    let client = (
        vec![issued.der],
        outpost_certs::private_key_from_pem(&key_pem).unwrap(),
    );
    let config = ca_client_config(&hub.ca_cert_pem(), Some(client), &[]).unwrap();
    let hs = connect(&hub, config, "hub.example.com");
    hs.result.unwrap();
    assert_eq!(
        peer_identity(&hs.server),
        Some(ClientRole::Admin("ops".to_owned()))
    );

    for name in ["localhost", "127.0.0.1", "::1"] {
        let config = ca_client_config(&hub.ca_cert_pem(), None, &[]).unwrap();
        connect(&hub, config, name).result.unwrap();
    }

    let config = ca_client_config(&hub.ca_cert_pem(), None, &[]).unwrap();
    let (side, error) = connect(&hub, config, "elsewhere.example.com")
        .result
        .unwrap_err();
    assert_eq!(side, Side::Client);
    assert!(
        matches!(
            error,
            rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. }
            )
        ),
        "{error:?}"
    );
}

#[test]
fn the_configs_are_usable_by_quinn() {
    use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(&dir);
    QuicServerConfig::try_from(hub.server_config(&[ALPN]).unwrap()).unwrap();
    let agent = agent_client_auth(&hub, Uuid::new_v4());
    let (config, _) = pinned(&hub, Some(agent));
    QuicClientConfig::try_from(config).unwrap();
}

/// Counts the tickets the hub accepted, around the hub's own ticketer.
#[derive(Debug)]
struct CountingTicketer {
    inner: Arc<dyn rustls::server::ProducesTickets>,
    resumed: Arc<AtomicUsize>,
}

impl rustls::server::ProducesTickets for CountingTicketer {
    fn enabled(&self) -> bool {
        self.inner.enabled()
    }
    fn lifetime(&self) -> u32 {
        self.inner.lifetime()
    }
    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.inner.encrypt(plain)
    }
    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let plain = self.inner.decrypt(cipher);
        if plain.is_some() {
            self.resumed.fetch_add(1, Ordering::SeqCst);
        }
        plain
    }
}

/// The role in a quinn connection's client certificate, as the hub reads it.
fn quinn_peer_role(conn: &quinn::Connection) -> ClientRole {
    let chain = conn
        .peer_identity()
        .unwrap()
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .unwrap();
    client_identity(&chain[0]).unwrap().0
}

#[tokio::test]
async fn a_reconnecting_agent_resumes_and_the_hub_still_sees_its_certificate() {
    use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(&dir);
    let resumed = Arc::new(AtomicUsize::new(0));
    let mut tls = hub.server_config(&[ALPN]).unwrap();
    assert_eq!(tls.max_early_data_size, 0, "0-RTT stays off");
    tls.ticketer = Arc::new(CountingTicketer {
        inner: tls.ticketer.clone(),
        resumed: resumed.clone(),
    });
    let server_config =
        quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls).unwrap()));
    let server = quinn::Endpoint::server(server_config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let server_addr = server.local_addr().unwrap();
    let agent_id = Uuid::new_v4();
    // The agent keeps one client config (and so its ticket) across reconnects.
    let (config, _) = pinned(&hub, Some(agent_client_auth(&hub, agent_id)));
    let client_config =
        quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(config).unwrap()));
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    client.set_default_client_config(client_config);

    for attempt in 0..3 {
        let dial = client.connect(server_addr, HUB_SERVER_NAME).unwrap();
        let (dialled, accepted) = tokio::join!(dial, async {
            server.accept().await.unwrap().await.unwrap()
        });
        let dialled = dialled.unwrap();
        assert_eq!(quinn_peer_role(&accepted), ClientRole::Agent(agent_id));
        // The ticket travels after the handshake; give it a round trip before hanging up.
        tokio::time::sleep(Duration::from_millis(100)).await;
        dialled.close(0u32.into(), b"");
        accepted.closed().await;
        assert_eq!(
            resumed.load(Ordering::SeqCst),
            attempt,
            "every connection after the first resumes"
        );
    }
}

/// The ALPN the hub's admin HTTPS listener offers.
const HTTPS: &[u8] = b"http/1.1";

/// A client like docker-py 5 (Debian's `docker-compose` 1.29): TLS 1.2 only, no ALPN, trusting
/// the hub CA, with or without an admin certificate.
fn tls12_client(hub: &HubPki, client: Option<ClientAuth>) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(hub.ca_cert_der()).unwrap();
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(roots);
    Arc::new(match client {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    })
}

fn admin_client_auth(hub: &HubPki, name: &str) -> ClientAuth {
    let (issued, key_pem) = hub
        .issue_client_cert_with_key(&ClientRole::Admin(name.to_owned()), DAY)
        .unwrap();
    let key = outpost_certs::private_key_from_pem(&key_pem).unwrap();
    (vec![issued.der], key)
}

/// The negotiated suite is TLS 1.2's modern kind: ephemeral ECDH, an AEAD cipher.
fn assert_modern_tls12(conn: &Connection) {
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let suite = format!("{:?}", conn.negotiated_cipher_suite().unwrap().suite());
    assert!(suite.starts_with("TLS_ECDHE_ECDSA_WITH_"), "{suite}");
    assert!(
        suite.ends_with("_GCM_SHA256")
            || suite.ends_with("_GCM_SHA384")
            || suite.contains("CHACHA20_POLY1305"),
        "{suite}"
    );
}

#[test]
fn an_old_docker_client_on_tls12_reaches_the_https_listener_with_its_admin_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(&dir);
    let server = || hub.https_server_config().unwrap();

    let with_cert = tls12_client(&hub, Some(admin_client_auth(&hub, "ops")));
    let hs = connect_to(server(), with_cert, "127.0.0.1");
    hs.result.unwrap();
    assert_modern_tls12(&hs.server);
    assert_eq!(
        peer_identity(&hs.server),
        Some(ClientRole::Admin("ops".to_owned()))
    );

    // Without a certificate the handshake completes too (a bearer token may follow); the API then
    // sees no peer certificate.
    let hs = connect_to(server(), tls12_client(&hub, None), "localhost");
    hs.result.unwrap();
    assert_modern_tls12(&hs.server);
    assert!(hs.server.peer_certificates().is_none());

    // The stock CLI and our own tools still get TLS 1.3 from the same listener.
    let modern = ca_client_config(&hub.ca_cert_pem(), None, &[HTTPS]).unwrap();
    let hs = connect_to(server(), Arc::new(modern), "localhost");
    hs.result.unwrap();
    assert_eq!(
        hs.server.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
}

#[test]
fn on_tls12_the_https_listener_rejects_a_client_certificate_from_another_hub() {
    let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (hub, other) = (hub(&ours), hub(&theirs));
    let foreign = tls12_client(&hub, Some(admin_client_auth(&other, "intruder")));
    let (side, error) = connect_to(hub.https_server_config().unwrap(), foreign, "localhost")
        .result
        .unwrap_err();
    assert_eq!(side, Side::Server);
    assert!(
        matches!(error, rustls::Error::InvalidCertificate(_)),
        "{error:?}"
    );
}

#[test]
fn a_tls12_admin_resumes_with_a_ticket_and_the_hub_still_sees_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(&dir);
    let server = hub.https_server_config().unwrap();
    // One client config (and so one session cache) across both connections, as a client process
    // keeps; the second handshake presents the ticket from the first.
    let client = tls12_client(&hub, Some(admin_client_auth(&hub, "ops")));
    let first = connect_to(server.clone(), client.clone(), "localhost");
    first.result.unwrap();
    assert_eq!(
        first.server.handshake_kind(),
        Some(rustls::HandshakeKind::Full)
    );

    let again = connect_to(server, client, "localhost");
    again.result.unwrap();
    assert_eq!(
        again.server.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    assert_modern_tls12(&again.server);
    assert_eq!(
        peer_identity(&again.server),
        Some(ClientRole::Admin("ops".to_owned()))
    );
}

#[test]
fn the_agents_configs_refuse_tls12() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(&dir);
    // The agents' QUIC configs, whatever they offer (the hub offers enrolment and session
    // together): TLS 1.3 only, even with HTTP among the protocols or no ALPN at all.
    let configs: [&[&[u8]]; 4] = [
        &[ALPN],
        &[b"outpost-enroll/1", b"outpost-session/1"],
        &[HTTPS, ALPN],
        &[],
    ];
    for alpn in configs {
        let agent = agent_client_auth(&hub, Uuid::new_v4());
        let old = tls12_client(&hub, Some(agent));
        let mut hs = connect_to(hub.server_config(alpn).unwrap(), old, "localhost");
        let (side, error) = hs.result.unwrap_err();
        assert_eq!(side, Side::Server, "{alpn:?}");
        assert!(
            matches!(
                error,
                rustls::Error::PeerIncompatible(
                    rustls::PeerIncompatible::Tls12NotOfferedOrEnabled
                        | rustls::PeerIncompatible::SupportedVersionsExtensionRequired
                )
            ),
            "{alpn:?}: {error:?}"
        );
        // The client hears why: a protocol_version alert, what docker-py printed before.
        assert_eq!(
            transfer(&mut hs.server, &mut hs.client).unwrap_err(),
            rustls::Error::AlertReceived(rustls::AlertDescription::ProtocolVersion)
        );
    }
}
