//! Outpost's public-key infrastructure: the hub's CA, its server certificate, client
//! certificates for agents and admins, and the rustls configurations that use them.
//!
//! Why this crate exists: identity is the one thing the reference design got wrong (a shared,
//! long-lived string trusted on first use, with the hub's URL baked in). Here every device holds
//! its own key, proven at enrolment with a CSR, and every agent connection after that is mutual TLS
//! 1.3 (the admin HTTPS listener also accepts TLS 1.2, for older Docker clients).
//! Agents do not trust the hub by name or by a public CA: they pin the SHA-256 fingerprint of the
//! hub's CA certificate, carried in the join token. Every hub server certificate carries the fixed
//! name [`HUB_SERVER_NAME`], so the address an agent dials (NAT'd, a raw IP, changed since the token
//! was made) never has to match the certificate.
//!
//! Keeping all of this in one small crate, with no I/O beyond the hub's four PKI files, means the
//! hub and the agent share one definition of "who is this peer" ([`client_identity`]) and one
//! definition of "is this our hub" ([`pinned_client_config`]).
//!
//! # Files
//! [`HubPki::load_or_create`] keeps `ca.pem`, `ca.key`, `server.pem` and `server.key` in the hub's
//! data directory. Keys are mode 0600; every file is written atomically (temporary file + rename).
//!
//! # Crypto
//! ECDSA P-256 keys, the rustls `ring` provider, TLS 1.3 only — except the admin HTTPS listener
//! ([`HubPki::https_server_config`]), which accepts TLS 1.2 with rustls's ECDHE + AEAD suites.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod agent;
mod error;
mod fingerprint;
mod hub;
mod identity;
mod inspect;
mod issue;
mod pem;
mod tls;

pub use agent::AgentKey;
pub use error::PkiError;
pub use fingerprint::{CertSerial, Fingerprint};
pub use hub::{HubPki, IssuedCert};
pub use identity::{client_identity, valid_name, ClientRole};
pub use inspect::{cert_public_key, cert_validity, Validity};
pub use pem::{
    cert_to_pem, certs_from_pem, private_key_from_pem, write_private_file, write_public_file,
};
pub use tls::{ca_client_config, pinned_client_config, ClientAuth, PinReport};

/// Re-exported so callers name the same types this crate's signatures use.
pub use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The fixed TLS server name that every hub server certificate carries and every agent verifies.
///
/// Agents pin the hub's CA by fingerprint, so the address they dial (which may change, be NAT'd
/// or be a raw IP) need not match the certificate. Agents should also pass this name as the
/// server name when connecting (it is what goes into SNI).
pub const HUB_SERVER_NAME: &str = "outpost-hub";

#[cfg(test)]
mod tests {
    use super::*;

    /// The hub shares its PKI across tasks, and errors cross thread boundaries.
    #[test]
    fn shared_types_are_send_and_sync() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<HubPki>();
        send_sync::<AgentKey>();
        send_sync::<PinReport>();
        send_sync::<PkiError>();
        send_sync::<IssuedCert>();
    }
}
