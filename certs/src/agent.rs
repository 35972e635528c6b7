//! The agent's own key pair and the certificate signing request it enrols with.

use std::fmt;
use std::path::Path;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use uuid::Uuid;

use crate::pem::{read_text, write_private_file};
use crate::{Fingerprint, PkiError};

/// An agent's key pair (ECDSA P-256). The private key never leaves the device: the hub sees only
/// the CSR, and the agent later presents the issued certificate with this key.
pub struct AgentKey {
    key: KeyPair,
}

impl AgentKey {
    /// A fresh ECDSA P-256 key pair.
    pub fn generate() -> Result<Self, PkiError> {
        Ok(Self {
            key: KeyPair::generate()?,
        })
    }

    /// Load a key from PKCS#8 PEM (as written by [`to_pem`](Self::to_pem)).
    pub fn from_pem(pem: &str) -> Result<Self, PkiError> {
        KeyPair::from_pem(pem)
            .map(|key| Self { key })
            .map_err(|e| PkiError::BadKey {
                what: "agent key PEM".to_owned(),
                detail: e.to_string(),
            })
    }

    /// Load the key at `path`, or generate one and write it there (mode 0600, atomically).
    pub fn load_or_generate(path: &Path) -> Result<Self, PkiError> {
        match path.try_exists() {
            Ok(true) => Self::from_pem(&read_text(path)?).map_err(|e| match e {
                PkiError::BadKey { detail, .. } => PkiError::BadKey {
                    what: path.display().to_string(),
                    detail,
                },
                other => other,
            }),
            Ok(false) => {
                let key = Self::generate()?;
                write_private_file(path, key.to_pem().as_bytes())?;
                Ok(key)
            }
            Err(e) => Err(PkiError::io("read", path, e)),
        }
    }

    /// The private key as PKCS#8 PEM, for persisting (with [`write_private_file`]).
    pub fn to_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// A PKCS#10 CSR (DER) for this key, signed with it. The subject is `CN=agent <uuid>`; the
    /// hub ignores it and sets its own, but it makes the request readable in logs and tools.
    pub fn csr_der(&self, agent_id: Uuid) -> Result<Vec<u8>, PkiError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            format!("agent {}", agent_id.hyphenated()),
        );
        params.distinguished_name = dn;
        Ok(params.serialize_request(&self.key)?.der().to_vec())
    }

    /// The private key, DER, for a rustls client config.
    pub fn private_key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()))
    }

    /// The public key as DER SubjectPublicKeyInfo.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.key.public_key_der()
    }
}

/// Shows a fingerprint of the public key; never the private key.
impl fmt::Debug for AgentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentKey")
            .field(
                "public_key_sha256",
                &Fingerprint::of(&self.public_key_der()),
            )
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trips_through_pem() {
        let key = AgentKey::generate().unwrap();
        let back = AgentKey::from_pem(&key.to_pem()).unwrap();
        assert_eq!(back.public_key_der(), key.public_key_der());
        assert!(matches!(
            AgentKey::from_pem("not a key"),
            Err(PkiError::BadKey { .. })
        ));
    }

    #[test]
    fn load_or_generate_persists_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.key");
        let first = AgentKey::load_or_generate(&path).unwrap();
        let second = AgentKey::load_or_generate(&path).unwrap();
        assert_eq!(first.public_key_der(), second.public_key_der());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn debug_does_not_leak_the_key() {
        let key = AgentKey::generate().unwrap();
        let shown = format!("{key:?}");
        assert!(!shown.contains(key.to_pem().lines().nth(1).unwrap()));
    }
}
