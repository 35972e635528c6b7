//! What the hub and the agent read from a certificate they hold: its validity and which key it
//! certifies.
//!
//! The key is named by the SHA-256 of its SubjectPublicKeyInfo: the hub records it for every agent
//! certificate it issues, so a re-enrolment or a renewal can be tied to the key of the certificate
//! on record (a leaked join token alone proves nothing about a bound device).

use std::time::SystemTime;

use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::{issue, Fingerprint, PkiError};

/// When a certificate starts and stops being valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// Not valid before (second precision).
    pub not_before: SystemTime,
    /// Not valid after (second precision).
    pub not_after: SystemTime,
}

/// The validity of the certificate `der`.
pub fn cert_validity(der: &[u8]) -> Result<Validity, PkiError> {
    let cert = parse(der)?;
    let secs = cert.validity().not_before.timestamp();
    let not_before = u64::try_from(secs)
        .map(|s| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    Ok(Validity {
        not_before,
        not_after: issue::not_after(&cert),
    })
}

/// SHA-256 of the SubjectPublicKeyInfo the certificate `der` certifies.
pub fn cert_public_key(der: &[u8]) -> Result<Fingerprint, PkiError> {
    Ok(Fingerprint::of(parse(der)?.public_key().raw))
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, PkiError> {
    X509Certificate::from_der(der)
        .map(|(_, cert)| cert)
        .map_err(|e| PkiError::BadCertificate {
            what: "certificate".into(),
            detail: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{AgentKey, ClientRole, HubPki};

    #[test]
    fn an_issued_certificate_names_the_key_of_its_request() {
        let dir = tempfile::tempdir().unwrap();
        let pki = HubPki::load_or_create(dir.path(), &[]).unwrap();
        let key = AgentKey::generate().unwrap();
        let id = uuid::Uuid::new_v4();
        let csr = key.csr_der(id).unwrap();
        let validity = Duration::from_secs(3600);
        let cert = pki
            .issue_client_cert(&ClientRole::Agent(id), &csr, validity)
            .unwrap();
        let expected = Fingerprint::of(&key.public_key_der());
        assert_eq!(cert.public_key, expected);
        assert_eq!(cert_public_key(&cert.der).unwrap(), expected);
        let other = AgentKey::generate().unwrap();
        assert_ne!(Fingerprint::of(&other.public_key_der()), expected);
        let span = cert_validity(&cert.der).unwrap();
        assert_eq!(span.not_after, cert.not_after);
        assert!(span.not_before < SystemTime::now());
        assert!(matches!(
            cert_validity(b"junk"),
            Err(PkiError::BadCertificate { .. })
        ));
    }
}
