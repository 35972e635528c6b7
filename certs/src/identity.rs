//! Who a client certificate belongs to: an agent (by UUID), an admin or a hub (by name).
//!
//! The identity lives in a single subject-alternative-name URI, never in the subject's CN (which
//! is informational only):
//! - agent: `urn:uuid:<uuid>` (RFC 4122 URN form, lowercase, hyphenated);
//! - admin: `urn:outpost:admin:<name>`;
//! - hub: `urn:outpost:hub:<name>`, which a hub presents to the other hubs of its fleet when it
//!   forwards a request for a device another hub holds.

use std::fmt;

use uuid::Uuid;
use x509_parser::extensions::GeneralName;

use crate::{CertSerial, PkiError};

const AGENT_PREFIX: &str = "urn:uuid:";
const ADMIN_PREFIX: &str = "urn:outpost:admin:";
const HUB_PREFIX: &str = "urn:outpost:hub:";
const ADMIN_NAME_MAX: usize = 64;

/// The role a client certificate is issued for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ClientRole {
    /// An agent, named by the UUID it enrolled with.
    Agent(Uuid),
    /// An administrator (or admin tool), named by a short account name.
    Admin(String),
    /// A hub of the fleet, by its name among the hubs sharing a store.
    Hub(String),
}

impl ClientRole {
    /// The SAN URI that carries this role in a certificate.
    pub fn san_uri(&self) -> String {
        match self {
            Self::Agent(id) => format!("{AGENT_PREFIX}{}", id.hyphenated()),
            Self::Admin(name) => format!("{ADMIN_PREFIX}{name}"),
            Self::Hub(name) => format!("{HUB_PREFIX}{name}"),
        }
    }

    /// Refuse admin and hub names that could not round-trip through a URI or would confuse a
    /// reader.
    pub(crate) fn validate(&self) -> Result<(), PkiError> {
        match self {
            Self::Agent(_) => Ok(()),
            Self::Admin(name) | Self::Hub(name) if valid_name(name) => Ok(()),
            Self::Admin(name) => Err(PkiError::InvalidIdentityName {
                role: "admin",
                name: name.clone(),
            }),
            Self::Hub(name) => Err(PkiError::InvalidIdentityName {
                role: "hub",
                name: name.clone(),
            }),
        }
    }

    fn from_san_uri(uri: &str) -> Option<Result<Self, PkiError>> {
        let malformed = || PkiError::MalformedIdentity(uri.to_owned());
        if let Some(rest) = uri.strip_prefix(AGENT_PREFIX) {
            return Some(
                Uuid::parse_str(rest)
                    .map(Self::Agent)
                    .map_err(|_| malformed()),
            );
        }
        let (name, role): (&str, fn(String) -> Self) = match uri.strip_prefix(ADMIN_PREFIX) {
            Some(name) => (name, Self::Admin),
            None => (uri.strip_prefix(HUB_PREFIX)?, Self::Hub),
        };
        Some(if valid_name(name) {
            Ok(role(name.to_owned()))
        } else {
            Err(malformed())
        })
    }
}

/// `agent <uuid>`, `admin <name>` or `hub <name>`; used as the certificate's CN.
impl fmt::Display for ClientRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Agent(id) => write!(f, "agent {}", id.hyphenated()),
            Self::Admin(name) => write!(f, "admin {name}"),
            Self::Hub(name) => write!(f, "hub {name}"),
        }
    }
}

/// Whether `name` may name an admin or a hub: 1–64 of `A-Za-z0-9._-@`.
pub fn valid_name(name: &str) -> bool {
    (1..=ADMIN_NAME_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
}

/// The role (from the SAN URI) and serial of a client certificate.
///
/// This does not verify anything: call it on a certificate that the TLS stack has already
/// verified against the hub CA (e.g. the first entry of `peer_certificates()` after a handshake
/// with [`HubPki::server_config`](crate::HubPki::server_config)). Exactly one Outpost identity
/// URI must be present; other SAN entries are ignored.
pub fn client_identity(der: &[u8]) -> Result<(ClientRole, CertSerial), PkiError> {
    let bad = |detail: String| PkiError::BadCertificate {
        what: "client certificate".to_owned(),
        detail,
    };
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| bad(e.to_string()))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| bad(e.to_string()))?;
    let mut roles = san
        .iter()
        .flat_map(|ext| ext.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) => ClientRole::from_san_uri(uri),
            _ => None,
        });
    let role = roles.next().ok_or(PkiError::NoIdentity)??;
    if roles.next().is_some() {
        return Err(PkiError::AmbiguousIdentity);
    }
    Ok((role, CertSerial::from_bytes(cert.raw_serial())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn san_uris_round_trip() {
        let agent = ClientRole::Agent(Uuid::new_v4());
        let admin = ClientRole::Admin("alice@ops".to_owned());
        let hub = ClientRole::Hub("hub-0a1b2c3d".to_owned());
        for role in [agent, admin, hub] {
            let back = ClientRole::from_san_uri(&role.san_uri()).unwrap().unwrap();
            assert_eq!(back, role);
        }
    }

    #[test]
    fn bad_identities_are_refused() {
        assert!(ClientRole::from_san_uri("https://example.com").is_none());
        assert!(matches!(
            ClientRole::from_san_uri("urn:uuid:not-a-uuid"),
            Some(Err(PkiError::MalformedIdentity(_)))
        ));
        assert!(matches!(
            ClientRole::from_san_uri("urn:outpost:admin:"),
            Some(Err(PkiError::MalformedIdentity(_)))
        ));
        assert!(matches!(
            ClientRole::from_san_uri("urn:outpost:hub:a/b"),
            Some(Err(PkiError::MalformedIdentity(_)))
        ));
        for name in ["", "has space", "a/b", &"x".repeat(65)] {
            assert!(
                ClientRole::Admin(name.to_owned()).validate().is_err(),
                "{name:?}"
            );
        }
    }

    #[test]
    fn garbage_der_is_an_error_not_a_panic() {
        assert!(matches!(
            client_identity(b"\x30\x03\x02\x01"),
            Err(PkiError::BadCertificate { .. })
        ));
    }
}
