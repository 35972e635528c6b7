//! rustls configurations: the hub's server side, the agent's pinned client side, and a plain
//! "trust exactly this CA" client for admin tools.
//!
//! All use the ring provider. Everything is TLS 1.3 only except one server config: the HTTPS
//! listener's ([`Listener::Https`]) accepts TLS 1.2 too,
//! because the admin listener stands in for `dockerd` and must serve the clients `dockerd` serves:
//! docker-py 5 (Debian's `docker-compose` 1.29) pins TLS 1.2 and would be refused before it sent a
//! byte. QUIC requires 1.3, so the agents' configs (hub and agent side) never offer 1.2, and our
//! own admin tools ([`ca_client_config`]) speak 1.3.
//!
//! TLS 1.2 here is only what rustls implements: ECDHE key exchange with AEAD suites (AES-GCM,
//! ChaCha20-Poly1305), no RSA key exchange, CBC or renegotiation; and this config also demands
//! the extended master secret (RFC 7627), so a 1.2 session (and a ticket resuming it) is bound to
//! its own handshake, client certificate included.

use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore, ServerConfig,
    SignatureScheme,
};

use crate::{certs_from_pem, Fingerprint, PkiError, HUB_SERVER_NAME};

/// A client certificate chain and its private key, for mutual TLS.
pub type ClientAuth = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// ring's provider, preferring AES-128-GCM with SHA-256 in TLS 1.3 (QUIC's own Initial keys use
/// it too): SHA-256 runs on the CPU's SHA instructions where SHA-384 runs in software, and a key
/// schedule is a few dozen HMACs. ring's default order puts AES-256-GCM with SHA-384 first.
/// Suites, versions and key exchanges offered are otherwise ring's defaults.
fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    let preferred = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256;
    provider
        .cipher_suites
        .sort_by_key(|suite| suite.suite() != preferred.suite());
    Arc::new(provider)
}

fn alpn_list(alpn: &[&[u8]]) -> Vec<Vec<u8>> {
    alpn.iter().map(|p| p.to_vec()).collect()
}

/// Which listener a hub server config is for: its TLS versions follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Listener {
    /// The agents' QUIC endpoint: TLS 1.3 only (QUIC requires it).
    Quic,
    /// The admin HTTPS listener: TLS 1.2 and 1.3, as `dockerd` accepts (docker-py 5 pins 1.2).
    Https,
}

impl Listener {
    fn versions(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static HTTPS: [&rustls::SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        static QUIC: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        match self {
            Self::Quic => &QUIC,
            Self::Https => &HTTPS,
        }
    }
}

/// The hub's server config for `listener` offering `alpn`; client certificates optional, checked
/// against `ca_der`.
pub(crate) fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    ca_der: &CertificateDer<'static>,
    alpn: &[&[u8]],
    listener: Listener,
) -> Result<ServerConfig, PkiError> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    roots.add(ca_der.clone())?;
    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone())
            .allow_unauthenticated()
            .build()?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(listener.versions())?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = alpn_list(alpn);
    // Only a TLS 1.2 handshake reads this: without the extended master secret a man in the middle
    // can give two 1.2 sessions one master secret and carry a client's certificate authentication
    // into its own (the triple-handshake attack). The clients that pin 1.2 send it (OpenSSL, and
    // so Python, since 1.1.0; Go since 1.21).
    config.require_ems = true;
    // Stateless resumption: a reconnecting agent presents a ticket sealed with a key only this
    // process holds (the hub replaces this ticketer on its agents' QUIC config with one whose keys
    // the hubs of its store share, `outpost_hub::tickets`), skipping the certificate signature and chain checks on both sides and the
    // certificates on the wire. The ticket carries the client certificate chain, so the hub still
    // sees (and checks against its store) which agent it is. Nothing is kept per ticket, so the
    // stateful cache goes; one ticket is enough for an agent that holds one connection at a time.
    // Early data stays off (`max_early_data_size` 0): nothing an agent sends first is safe to
    // replay blindly. A TLS 1.2 client of an HTTPS listener resumes with the same ticketer
    // (RFC 5077 tickets, also carrying its client certificate).
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    config.send_tls13_tickets = 1;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(config)
}

/// A client config that trusts exactly the CA(s) in `ca_pem` and checks the server name as usual.
///
/// For admin tools talking to the hub's HTTPS API with the hub's `ca.pem` (the hub certificate
/// carries its configured names, `localhost`, 127.0.0.1, ::1 and
/// [`HUB_SERVER_NAME`]). Optionally presents an admin client certificate.
pub fn ca_client_config(
    ca_pem: &str,
    client: Option<ClientAuth>,
    alpn: &[&[u8]],
) -> Result<ClientConfig, PkiError> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from_pem(ca_pem)? {
        roots.add(cert)?;
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots);
    finish_client(builder, client, alpn)
}

/// An agent's client config: it trusts only a hub whose chain contains the CA certificate with
/// fingerprint `pin`.
///
/// The verifier looks for the pinned certificate among the certificates the hub presents after
/// its own, then verifies the hub's certificate against it as the only root (signature, validity,
/// and the name [`HUB_SERVER_NAME`], whatever name or address was dialled). Optionally presents a
/// client certificate chain and key (mutual TLS after enrolment).
///
/// The returned [`PinReport`] tells a pin mismatch apart from other handshake failures, which
/// QUIC reduces to an alert code.
pub fn pinned_client_config(
    pin: Fingerprint,
    client: Option<ClientAuth>,
    alpn: &[&[u8]],
) -> Result<(ClientConfig, PinReport), PkiError> {
    let provider = provider();
    let report = PinReport::default();
    let verifier = PinnedVerifier {
        pin,
        report: report.clone(),
        algorithms: provider.signature_verification_algorithms,
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    Ok((finish_client(builder, client, alpn)?, report))
}

fn finish_client(
    builder: rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>,
    client: Option<ClientAuth>,
    alpn: &[&[u8]],
) -> Result<ClientConfig, PkiError> {
    let mut config = match client {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn_list(alpn);
    Ok(config)
}

/// What the pinned verifier saw, shared with the caller.
///
/// After a failed handshake, [`mismatch`](Self::mismatch) says whether the hub presented a chain
/// without the pinned CA, and what it presented instead. A successful pin check clears it. One
/// report is shared by every connection made with its config, so dial one connection at a time
/// (as the agent does) and [`clear`](Self::clear) it before each attempt if a stale value from
/// an earlier attempt would mislead.
#[derive(Clone, Debug, Default)]
pub struct PinReport(Arc<Mutex<Option<Fingerprint>>>);

impl PinReport {
    /// The fingerprint the hub presented (the top certificate of its chain) if the last
    /// verification failed because it did not match the pin.
    pub fn mismatch(&self) -> Option<Fingerprint> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forget the last mismatch.
    pub fn clear(&self) {
        self.set(None);
    }

    fn set(&self, value: Option<Fingerprint>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = value;
    }
}

#[derive(Debug)]
struct PinnedVerifier {
    pin: Fingerprint,
    report: PinReport,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedVerifier {
    fn mismatch(&self, presented: Fingerprint) -> rustls::Error {
        self.report.set(Some(presented));
        let error = PkiError::PinMismatch {
            expected: self.pin,
            presented,
        };
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(error))))
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = intermediates
            .iter()
            .find(|cert| Fingerprint::of(cert) == self.pin)
        else {
            let top = intermediates.last().unwrap_or(end_entity);
            return Err(self.mismatch(Fingerprint::of(top)));
        };
        self.report.clear();
        let mut root = RootCertStore::empty();
        root.add(ca.clone().into_owned())?;
        let others: Vec<_> = intermediates.iter().filter(|c| *c != ca).cloned().collect();
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(&cert, &root, &others, now, self.algorithms.all)?;
        let name = ServerName::try_from(HUB_SERVER_NAME)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        verify_server_name(&cert, &name)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
