//! The one error type of this crate.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong building, loading or using Outpost's PKI.
///
/// Messages say what happened and what the operator (or the calling code) can do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// Reading, writing or renaming a PKI file failed.
    #[error("cannot {action} {path}: {source}; check that the directory exists and this process may write to it")]
    Io {
        /// What we were doing: "read", "write", "create", "rename to".
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// `ca.pem` exists but `ca.key` does not: the CA is known to agents but can no longer sign.
    #[error("{path} is missing but the hub CA certificate next to it exists; restore the CA key from backup, or delete ca.pem to create a NEW CA (every agent must then re-enrol with a new token)")]
    MissingCaKey {
        /// The missing key file.
        path: PathBuf,
    },

    /// The data directory holds a CA other than the one the hub's fleet shares (the store's).
    #[error("the hub CA in {path} is not the CA the other hubs of this store use (fingerprint {shared}); agents of the fleet would not trust this hub. Start it on an empty data directory to take the shared CA, or on its own store")]
    CaDiffers {
        /// The local CA certificate file.
        path: PathBuf,
        /// The shared CA's fingerprint.
        shared: String,
    },

    /// The CA key on disk does not belong to the CA certificate on disk.
    #[error("the hub CA key in {key} does not belong to the certificate in {cert}; restore the matching pair from backup")]
    CaKeyMismatch {
        /// The CA certificate file.
        cert: PathBuf,
        /// The CA key file.
        key: PathBuf,
    },

    /// A PEM text had no usable section of the expected kind, or was malformed.
    #[error("{what} is not usable PEM: {detail}")]
    Pem {
        /// What was being read (a path or a description).
        what: String,
        /// What the PEM decoder said.
        detail: String,
    },

    /// A DER blob is not a certificate we can parse.
    #[error("{what} is not a valid X.509 certificate: {detail}")]
    BadCertificate {
        /// What was being parsed.
        what: String,
        /// What the parser said.
        detail: String,
    },

    /// A private key could not be loaded or used.
    #[error("{what} is not a usable private key: {detail}")]
    BadKey {
        /// What was being loaded.
        what: String,
        /// Why it was refused.
        detail: String,
    },

    /// A hub name given for the server certificate is neither a DNS name nor an IP address.
    #[error("hub name {0:?} is neither a valid DNS name nor an IP address; fix the hub's name/address list")]
    InvalidName(String),

    /// An admin's or a hub's name cannot be put into a certificate identity.
    #[error("{role} name {name:?} is not allowed: use 1 to 64 characters from a-z, A-Z, 0-9, '.', '_', '-', '@'")]
    InvalidIdentityName {
        /// `admin` or `hub`.
        role: &'static str,
        /// The name refused.
        name: String,
    },

    /// A requested certificate lifetime is zero or beyond what we issue.
    #[error("certificate validity of {0:?} is not usable: it must be more than zero and at most 100 years")]
    InvalidValidity(Duration),

    /// The certificate signing request could not be parsed as DER PKCS#10.
    #[error(
        "the certificate signing request is malformed ({0}); the agent should generate a new one"
    )]
    MalformedCsr(String),

    /// The CSR's signature does not verify with the key it carries: the requester has not proven
    /// it holds the private key.
    #[error("the certificate signing request's signature does not verify, so the requester has not proven it holds the key; refusing to issue a certificate")]
    CsrSignature,

    /// The CSR carries a public key of a type we do not certify.
    #[error("the certificate signing request carries an unsupported public key type ({0}); use an ECDSA P-256 key")]
    UnsupportedKey(String),

    /// rcgen failed to build or sign a certificate, key or CSR.
    #[error("could not build a certificate: {0}")]
    Generate(#[from] rcgen::Error),

    /// rustls refused a configuration (bad key, unsupported protocol version, ...).
    #[error("TLS configuration rejected: {0}")]
    Tls(#[from] rustls::Error),

    /// rustls could not build the client-certificate verifier (e.g. the CA is not a usable root).
    #[error("could not build the client-certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),

    /// The peer certificate carries no Outpost identity URI in its subject alternative names.
    #[error("the client certificate carries no Outpost identity (no urn:uuid: or urn:outpost:admin: URI); it was not issued to an Outpost client")]
    NoIdentity,

    /// The peer certificate carries more than one Outpost identity URI.
    #[error("the client certificate carries more than one Outpost identity; refusing to guess which one applies")]
    AmbiguousIdentity,

    /// The peer certificate's identity URI has the right prefix but a malformed value.
    #[error("the client certificate's identity URI {0:?} is malformed")]
    MalformedIdentity(String),

    /// The hub presented a certificate chain without the CA the join token pins: this is not the
    /// hub the token was made for (or the token is stale after the hub's CA was replaced).
    #[error("the hub presented CA fingerprint {presented}, but the join token pins {expected}; this is not the hub the token was made for: check the address, or ask for a new token")]
    PinMismatch {
        /// The fingerprint the token pins.
        expected: crate::Fingerprint,
        /// The fingerprint of the top certificate the hub presented.
        presented: crate::Fingerprint,
    },

    /// A hex string (fingerprint or serial) could not be parsed.
    #[error("{what} {input:?} is not valid: expected {expected}")]
    BadHex {
        /// What was being parsed: "fingerprint" or "certificate serial".
        what: &'static str,
        /// The input, as given.
        input: String,
        /// What a valid value looks like.
        expected: &'static str,
    },
}

impl PkiError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
