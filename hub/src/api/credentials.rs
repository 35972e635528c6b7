//! The admin credentials a running hub accepts, and how their withdrawal reaches open connections.
//!
//! Three kinds: the bootstrap admin token (the hub keeps its SHA-256 and compares in constant
//! time), named API tokens (SHA-256 in the store) and admin client certificates issued by this hub
//! (checked against the store's revocation on every request, not once per TLS connection). Each
//! resolves to a [`Principal`]: a name, a role and a scope. Rotating the token or revoking a named
//! token or a certificate publishes a new [`Epoch`]; every request in flight holds a
//! [`Revocation`] that wakes on each epoch, checks its own credential again and, when that is gone,
//! ends the request's response stream or upgraded connection (`docker logs -f`, `exec -it`) at
//! once.

use std::path::PathBuf;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use outpost_certs::{Fingerprint, PkiError};
use rand::RngCore;
use subtle::ConstantTimeEq;
use tokio::sync::watch;

use crate::access::Principal;
use crate::context::HubContext;
use crate::store::access;

/// What admin credentials are worth right now: the token hash, and a counter of revocations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Epoch {
    token_hash: [u8; 32],
    revocations: u64,
}

/// The hub's admin credentials; see the module docs.
#[derive(Debug)]
pub struct AdminCredentials {
    epoch: watch::Sender<Epoch>,
    token_file: PathBuf,
}

/// A new random admin token and its hash.
pub fn new_admin_token() -> (String, Fingerprint) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = Fingerprint::of(token.as_bytes());
    (token, hash)
}

/// Write `token` to `path`, readable by the hub's user only.
pub fn write_admin_token(path: &std::path::Path, token: &str) -> Result<(), PkiError> {
    outpost_certs::write_private_file(path, format!("{token}\n").as_bytes())
}

impl AdminCredentials {
    /// Accept the token whose SHA-256 is `token_hash`; rotation writes the new token to `token_file`.
    pub fn new(token_hash: [u8; 32], token_file: PathBuf) -> Self {
        let epoch = Epoch {
            token_hash,
            revocations: 0,
        };
        Self {
            epoch: watch::Sender::new(epoch),
            token_file,
        }
    }

    /// Where the current token is written for admin commands on the hub's machine.
    pub fn token_file(&self) -> &std::path::Path {
        &self.token_file
    }

    /// Whether `token` is the current admin token (constant time).
    pub fn token_hash_matches(&self, hash: &[u8; 32]) -> bool {
        bool::from(hash.ct_eq(&self.epoch.borrow().token_hash))
    }

    /// From now on only the token hashing to `hash` is accepted; requests on the old one end.
    pub fn rotate_token(&self, hash: Fingerprint) {
        self.epoch.send_modify(|e| e.token_hash = hash.0);
    }

    /// Named tokens or certificates were revoked in the store: requests on them end.
    pub fn credentials_revoked(&self) {
        self.epoch.send_modify(|e| e.revocations += 1);
    }

    /// Start watching for withdrawals, before a request's credential is checked.
    pub(crate) fn watch(&self) -> Changes {
        Changes(self.epoch.subscribe())
    }
}

/// Marks the answer of a request that withdrew credentials (perhaps its own): it is delivered
/// whole, not ended by the withdrawal it reports.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Withdrew;

/// The credential one request was admitted on.
#[derive(Clone, Debug)]
pub(crate) enum Credential {
    /// The bootstrap admin token with this hash.
    Token([u8; 32]),
    /// The named API token with this hash.
    Named([u8; 32]),
    /// The admin certificate with this serial.
    Certificate(String),
}

impl Credential {
    /// Who it is, while the hub still accepts it.
    pub(crate) async fn principal(&self, ctx: &HubContext) -> Option<Principal> {
        let found = match self {
            Self::Token(hash) => {
                return ctx
                    .admin_credentials
                    .token_hash_matches(hash)
                    .then(Principal::bootstrap)
            }
            Self::Named(hash) => {
                let hex = Fingerprint(*hash).to_string();
                ctx.store
                    .read(move |c| access::token_principal(c, &hex))
                    .await
            }
            Self::Certificate(serial) => {
                let serial = serial.clone();
                ctx.store
                    .read(move |c| access::certificate_principal(c, &serial))
                    .await
            }
        };
        found.ok().flatten()
    }

    /// Whether the hub still accepts it.
    pub(crate) async fn is_valid(&self, ctx: &HubContext) -> bool {
        self.principal(ctx).await.is_some()
    }
}

/// Withdrawals since [`AdminCredentials::watch`].
#[derive(Debug)]
pub(crate) struct Changes(watch::Receiver<Epoch>);

/// Resolves when a request's credential is withdrawn. Its [`Changes`] were taken before the
/// credential was checked, so a withdrawal between the check and the request's end is never missed.
#[derive(Clone, Debug)]
pub(crate) struct Revocation {
    ctx: Arc<HubContext>,
    credential: Credential,
    changes: watch::Receiver<Epoch>,
}

impl Revocation {
    /// Watch `credential`, found valid after `changes` were taken.
    pub(crate) fn new(ctx: Arc<HubContext>, credential: Credential, changes: Changes) -> Self {
        Self {
            ctx,
            credential,
            changes: changes.0,
        }
    }

    /// Wait until the credential is withdrawn (forever if it never is).
    pub(crate) async fn withdrawn(mut self) {
        while self.changes.changed().await.is_ok() {
            if !self.credential.is_valid(&self.ctx).await {
                return;
            }
        }
        std::future::pending().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotated_token_replaces_the_old_one_and_is_announced() {
        let (old, old_hash) = new_admin_token();
        let credentials = AdminCredentials::new(old_hash.0, PathBuf::from("admin.token"));
        let mut changes = credentials.watch().0;
        assert!(credentials.token_hash_matches(&Fingerprint::of(old.as_bytes()).0));

        let (new, new_hash) = new_admin_token();
        assert_ne!(old, new);
        credentials.rotate_token(new_hash);
        assert!(changes.has_changed().unwrap_or(false));
        assert!(!credentials.token_hash_matches(&old_hash.0));
        assert!(credentials.token_hash_matches(&Fingerprint::of(new.as_bytes()).0));

        changes.mark_unchanged();
        credentials.credentials_revoked();
        assert!(changes.has_changed().unwrap_or(false));
    }
}
