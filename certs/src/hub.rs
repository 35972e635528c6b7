//! The hub's PKI: its CA and server certificate on disk, and certificate issuance.

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, KeyPair, PublicKeyData, SubjectPublicKeyInfo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::error::X509Error;
use x509_parser::prelude::FromDer;

use crate::issue::{self, ServerNames};
use crate::pem::{certs_from_pem_named, read_text, write_private_file, write_public_file};
use crate::tls::Listener;
use crate::{cert_to_pem, CertSerial, ClientRole, Fingerprint, PkiError};

const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";
const SERVER_CERT: &str = "server.pem";
const SERVER_KEY: &str = "server.key";

/// The hub's PKI, persisted in its data directory.
///
/// Files: `ca.pem` (the CA certificate agents pin), `ca.key`, `server.pem` (the server certificate
/// followed by the CA certificate) and `server.key`. Keys are mode 0600 and every file is written
/// atomically. `ca.pem` is written last when a CA is created, so it marks a complete CA.
pub struct HubPki {
    ca: Ca,
    server_der: CertificateDer<'static>,
    server_key: PrivatePkcs8KeyDer<'static>,
    server_reissued: bool,
}

/// The hub CA, loaded and checked.
struct Ca {
    der: CertificateDer<'static>,
    fingerprint: Fingerprint,
    key: KeyPair,
    /// The CA as rcgen needs it for signing (parameters parsed back from `der`).
    signer: rcgen::Certificate,
    not_after: OffsetDateTime,
}

impl Ca {
    /// Check that `key` belongs to `der` and prepare to sign with it.
    fn new(der: CertificateDer<'static>, key: KeyPair, dir: &Path) -> Result<Self, PkiError> {
        let cert_path = dir.join(CA_CERT);
        let (_, parsed) = parse_cert(&der, &cert_path.display().to_string())?;
        if parsed.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
            return Err(PkiError::CaKeyMismatch {
                cert: cert_path,
                key: dir.join(CA_KEY),
            });
        }
        let not_after = OffsetDateTime::from(issue::not_after(&parsed));
        let signer = CertificateParams::from_ca_cert_der(&der)?.self_signed(&key)?;
        Ok(Self {
            fingerprint: Fingerprint::of(&der),
            der,
            key,
            signer,
            not_after,
        })
    }

    fn sign(
        &self,
        params: CertificateParams,
        public_key: &impl PublicKeyData,
    ) -> Result<rcgen::Certificate, PkiError> {
        Ok(params.signed_by(public_key, &self.signer, &self.key)?)
    }

    /// Issue a new server certificate and key and write them to `dir`.
    fn issue_server(
        &self,
        dir: &Path,
        names: &ServerNames,
    ) -> Result<(CertificateDer<'static>, PrivatePkcs8KeyDer<'static>), PkiError> {
        let key = KeyPair::generate()?;
        let cert = self.sign(issue::server_params(names, self.not_after)?, &key)?;
        write_private_file(&dir.join(SERVER_KEY), key.serialize_pem().as_bytes())?;
        let chain_pem = cert.pem() + &cert_to_pem(&self.der);
        write_public_file(&dir.join(SERVER_CERT), chain_pem.as_bytes())?;
        Ok((cert.der().clone(), key.serialize_der().into()))
    }
}

/// A certificate the hub issued, with what the hub records about it.
#[derive(Clone, Debug)]
pub struct IssuedCert {
    /// The certificate, DER.
    pub der: CertificateDer<'static>,
    /// Its serial number: how the store records it and how it is revoked.
    pub serial: CertSerial,
    /// When it stops being valid (second precision, as in the certificate).
    pub not_after: SystemTime,
    /// SHA-256 of the SubjectPublicKeyInfo it certifies.
    pub public_key: Fingerprint,
}

impl IssuedCert {
    fn from_der(der: Vec<u8>) -> Result<Self, PkiError> {
        let (_, cert) = parse_cert(&der, "newly issued certificate")?;
        Ok(Self {
            serial: CertSerial::from_bytes(cert.raw_serial()),
            not_after: issue::not_after(&cert),
            public_key: Fingerprint::of(cert.public_key().raw),
            der: CertificateDer::from(der),
        })
    }

    /// The certificate as PEM text (for `cert.pem`).
    pub fn pem(&self) -> String {
        cert_to_pem(&self.der)
    }
}

impl HubPki {
    /// Load the hub's PKI from `dir`, creating what is missing.
    ///
    /// On first start this creates the CA (ECDSA P-256, 10 years, `CN=Outpost hub CA <random>`)
    /// and a server certificate signed by it (5 years). On later starts it loads both. The server
    /// certificate is re-issued (the CA never is) when its names differ from `names`, when it has
    /// less than 90 days left, or when it or its key is missing, unreadable or not from this CA.
    ///
    /// The server certificate's names are [`HUB_SERVER_NAME`](crate::HUB_SERVER_NAME),
    /// `localhost`, 127.0.0.1, ::1 and every entry of `names` (a DNS name or an IP address;
    /// `[v6]` brackets and a trailing dot are accepted).
    ///
    /// Errors if `ca.pem` exists without `ca.key` (the CA can no longer sign, and silently
    /// replacing it would strand every enrolled agent) or if the two do not match.
    pub fn load_or_create(dir: &Path, names: &[String]) -> Result<Self, PkiError> {
        let names = ServerNames::new(names)?;
        create_dir(dir)?;
        let (ca_der, ca_key) = load_or_create_ca(dir)?;
        let ca = Ca::new(ca_der, ca_key, dir)?;
        let (server_der, server_key, server_reissued) = match load_server(dir, &ca.der, &names) {
            Some((der, key)) => (der, key, false),
            None => {
                let (der, key) = ca.issue_server(dir, &names)?;
                (der, key, true)
            }
        };
        Ok(Self {
            ca,
            server_der,
            server_key,
            server_reissued,
        })
    }

    /// Take the CA that other hubs of the same store share (`cert_pem`, `key_pem`, as
    /// [`ca_cert_pem`](Self::ca_cert_pem) and [`ca_key_pem`](Self::ca_key_pem) give them) into
    /// `dir`, before [`load_or_create`](Self::load_or_create): written there when `dir` has no CA
    /// yet (returns `true`), accepted when it already holds the same CA (`false`). A directory
    /// with another CA is refused: its agents trust that CA, and replacing it would strand them.
    pub fn adopt_ca(dir: &Path, cert_pem: &str, key_pem: &str) -> Result<bool, PkiError> {
        let mut certs = certs_from_pem_named(cert_pem, "the shared hub CA")?;
        let der = certs.swap_remove(0);
        let cert_path = dir.join(CA_CERT);
        if exists(&cert_path)? {
            let local =
                certs_from_pem_named(&read_text(&cert_path)?, &cert_path.display().to_string())?;
            if local.first() != Some(&der) {
                return Err(PkiError::CaDiffers {
                    path: cert_path,
                    shared: Fingerprint::of(&der).to_string(),
                });
            }
            return Ok(false);
        }
        let key = KeyPair::from_pem(key_pem).map_err(|e| PkiError::BadKey {
            what: "the shared hub CA key".into(),
            detail: e.to_string(),
        })?;
        create_dir(dir)?;
        Ca::new(der, key, dir)?;
        // The key first: `ca.pem` marks a complete CA.
        write_private_file(&dir.join(CA_KEY), key_pem.as_bytes())?;
        write_public_file(&cert_path, cert_pem.as_bytes())?;
        Ok(true)
    }

    /// The CA's private key, PEM: what the hubs sharing a store share, so that any of them signs
    /// and serves for the whole fleet. Handle it as the CA key file is handled.
    pub fn ca_key_pem(&self) -> String {
        self.ca.key.serialize_pem()
    }

    /// SHA-256 of the CA certificate: what join tokens carry and agents pin.
    pub fn ca_fingerprint(&self) -> Fingerprint {
        self.ca.fingerprint
    }

    /// The CA certificate, DER.
    pub fn ca_cert_der(&self) -> CertificateDer<'static> {
        self.ca.der.clone()
    }

    /// The CA certificate, PEM (what admins save as `ca.pem`).
    pub fn ca_cert_pem(&self) -> String {
        cert_to_pem(&self.ca.der)
    }

    /// When the CA expires. After that no agent can connect; a new CA means re-enrolment.
    pub fn ca_not_after(&self) -> SystemTime {
        self.ca.not_after.into()
    }

    /// Whether [`load_or_create`](Self::load_or_create) issued a new server certificate (worth
    /// a log line: its names changed, it was close to expiry, or this is a fresh hub).
    pub fn server_cert_reissued(&self) -> bool {
        self.server_reissued
    }

    /// The server chain `[server certificate, CA certificate]` for rustls server configs.
    pub fn server_chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.server_der.clone(), self.ca.der.clone()]
    }

    /// The server certificate's private key.
    pub fn server_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.server_key.clone_key())
    }

    /// A rustls server config (ring, TLS 1.3 only) for the agents' QUIC endpoint.
    ///
    /// It presents [`server_chain`](Self::server_chain) and offers `alpn`. Client certificates
    /// are optional (enrolment connections have none) but, when presented, must chain to this CA
    /// and carry EKU clientAuth, or the handshake fails. Whether a client without a certificate
    /// may do anything is the caller's decision (see `peer_certificates()`), as is checking the
    /// certificate's serial against the revocation list.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<rustls::ServerConfig, PkiError> {
        let (chain, key) = (self.server_chain(), self.server_key());
        crate::tls::server_config(chain, key, &self.ca.der, alpn, Listener::Quic)
    }

    /// The admin HTTPS listener's config (ALPN `http/1.1`): as [`server_config`](Self::server_config)
    /// but accepting TLS 1.2 as well as 1.3, since the listener stands in for `dockerd` and must
    /// serve the Docker clients it serves (docker-py 5, Debian's `docker-compose` 1.29, pins 1.2).
    pub fn https_server_config(&self) -> Result<rustls::ServerConfig, PkiError> {
        let (chain, key) = (self.server_chain(), self.server_key());
        crate::tls::server_config(chain, key, &self.ca.der, &[b"http/1.1"], Listener::Https)
    }

    /// Issue a client certificate for the key in a PKCS#10 certificate signing request (DER).
    ///
    /// The CSR's signature is checked (proof that the requester holds the key); everything else
    /// in it (subject, requested extensions) is ignored. The certificate gets `CN=<role>`, the
    /// role's SAN URI, EKU clientAuth, a random 16-byte serial, and is valid from an hour ago
    /// (clock skew) for `validity`, capped at the CA's own expiry.
    pub fn issue_client_cert(
        &self,
        role: &ClientRole,
        csr_der: &[u8],
        validity: Duration,
    ) -> Result<IssuedCert, PkiError> {
        let params = issue::client_params(role, validity, self.ca.not_after)?;
        let cert = self.ca.sign(params, &csr_public_key(csr_der)?)?;
        IssuedCert::from_der(cert.der().to_vec())
    }

    /// Issue a client certificate for a key pair the hub generates (ECDSA P-256), for admin
    /// certificates handed out as files. Returns the certificate and the key as PKCS#8 PEM.
    pub fn issue_client_cert_with_key(
        &self,
        role: &ClientRole,
        validity: Duration,
    ) -> Result<(IssuedCert, String), PkiError> {
        let params = issue::client_params(role, validity, self.ca.not_after)?;
        let key = KeyPair::generate()?;
        let cert = self.ca.sign(params, &key)?;
        Ok((
            IssuedCert::from_der(cert.der().to_vec())?,
            key.serialize_pem(),
        ))
    }
}

/// Shows what identifies this PKI; never the keys.
impl fmt::Debug for HubPki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubPki")
            .field("ca_fingerprint", &self.ca.fingerprint)
            .field("ca_not_after", &self.ca.not_after)
            .field("server_reissued", &self.server_reissued)
            .finish_non_exhaustive()
    }
}

fn create_dir(dir: &Path) -> Result<(), PkiError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| PkiError::io("create", dir, e))
}

fn exists(path: &Path) -> Result<bool, PkiError> {
    path.try_exists().map_err(|e| PkiError::io("read", path, e))
}

/// Load `ca.pem` + `ca.key`, or create both if `ca.pem` does not exist.
///
/// `ca.key` without `ca.pem` is the trace of a first start that died half way: no token can
/// carry that CA's fingerprint yet, so it is safe to replace.
fn load_or_create_ca(dir: &Path) -> Result<(CertificateDer<'static>, KeyPair), PkiError> {
    let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
    if !exists(&cert_path)? {
        let key = KeyPair::generate()?;
        let cert = issue::ca_params()?.self_signed(&key)?;
        write_private_file(&key_path, key.serialize_pem().as_bytes())?;
        write_public_file(&cert_path, cert.pem().as_bytes())?;
        return Ok((cert.der().clone(), key));
    }
    if !exists(&key_path)? {
        return Err(PkiError::MissingCaKey { path: key_path });
    }
    let mut certs =
        certs_from_pem_named(&read_text(&cert_path)?, &cert_path.display().to_string())?;
    let key = KeyPair::from_pem(&read_text(&key_path)?).map_err(|e| PkiError::BadKey {
        what: key_path.display().to_string(),
        detail: e.to_string(),
    })?;
    Ok((certs.swap_remove(0), key))
}

/// The stored server certificate and key, if they are usable as they are: both readable, the
/// key matches, signed by this CA, the same names, and not close to expiry.
fn load_server(
    dir: &Path,
    ca_der: &[u8],
    names: &ServerNames,
) -> Option<(CertificateDer<'static>, PrivatePkcs8KeyDer<'static>)> {
    let cert_pem = std::fs::read_to_string(dir.join(SERVER_CERT)).ok()?;
    let key = KeyPair::from_pem(&std::fs::read_to_string(dir.join(SERVER_KEY)).ok()?).ok()?;
    let der = certs_from_pem_named(&cert_pem, SERVER_CERT)
        .ok()?
        .into_iter()
        .next()?;
    let (_, cert) = X509Certificate::from_der(&der).ok()?;
    let (_, ca) = X509Certificate::from_der(ca_der).ok()?;
    let usable = cert.verify_signature(Some(ca.public_key())).is_ok()
        && cert.public_key().subject_public_key.data.as_ref() == key.der_bytes()
        && ServerNames::of_cert(&cert).as_ref() == Some(names)
        && issue::lasts_at_least(&cert, issue::SERVER_RENEW_BEFORE);
    usable.then(|| (der.clone(), PrivatePkcs8KeyDer::from(key.serialize_der())))
}

/// Parse a DER CSR, check its self-signature and return the public key it carries.
fn csr_public_key(csr_der: &[u8]) -> Result<SubjectPublicKeyInfo, PkiError> {
    let (rest, csr) = X509CertificationRequest::from_der(csr_der)
        .map_err(|e| PkiError::MalformedCsr(e.to_string()))?;
    if !rest.is_empty() {
        return Err(PkiError::MalformedCsr(format!(
            "{} bytes after the request",
            rest.len()
        )));
    }
    csr.verify_signature().map_err(|e| match e {
        X509Error::SignatureVerificationError => PkiError::CsrSignature,
        X509Error::SignatureUnsupportedAlgorithm => PkiError::UnsupportedKey(e.to_string()),
        other => PkiError::MalformedCsr(other.to_string()),
    })?;
    SubjectPublicKeyInfo::from_der(csr.certification_request_info.subject_pki.raw)
        .map_err(|e| PkiError::UnsupportedKey(e.to_string()))
}

fn parse_cert<'a>(der: &'a [u8], what: &str) -> Result<(&'a [u8], X509Certificate<'a>), PkiError> {
    X509Certificate::from_der(der).map_err(|e| PkiError::BadCertificate {
        what: what.to_owned(),
        detail: e.to_string(),
    })
}
