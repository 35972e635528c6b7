//! The CA the hubs of one store share (issue #18): agents pin one CA, so every hub of the fleet
//! must present a server certificate it signed and sign the agents' certificates with it.
//!
//! The first hub to start on a store puts its CA (certificate and key) into the store's settings;
//! a hub that starts on a data directory without a CA takes the stored one, and one whose data
//! directory holds another CA refuses to start (its own agents trust that CA). On SQLite the store
//! sits in the same data directory as the CA files, so this changes nothing there; on PostgreSQL
//! the database holds the CA key and must be protected as the key file is.

use std::path::Path;

use outpost_certs::{HubPki, PkiError};
use tracing::info;

use crate::store::db::params;
use crate::store::settings::setting;
use crate::store::{Store, StoreError};

/// The settings rows holding the shared CA.
const CA_CERT_SETTING: &str = "hub_ca_cert";
const CA_KEY_SETTING: &str = "hub_ca_key";

/// Why the shared CA could not be settled.
#[derive(Debug, thiserror::Error)]
pub enum SharedCaError {
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The CA files could not be read, written or loaded.
    #[error(transparent)]
    Pki(#[from] PkiError),
}

/// Load the hub's PKI from `dir` (server certificate for `names`) on the CA its store shares,
/// taking the stored CA into an empty `dir` or storing this hub's CA if it is the first.
pub fn load(store: &Store, dir: &Path, names: &[String]) -> Result<HubPki, SharedCaError> {
    if let Some((cert, key)) = stored(store)? {
        if HubPki::adopt_ca(dir, &cert, &key)? {
            info!("took the CA the other hubs of this store share");
        }
        return Ok(HubPki::load_or_create(dir, names)?);
    }
    let pki = HubPki::load_or_create(dir, names)?;
    let (cert, key) = (pki.ca_cert_pem(), pki.ca_key_pem());
    {
        let conn = store.lock();
        conn.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2), (?3, ?4)
             ON CONFLICT(key) DO NOTHING",
            params![CA_CERT_SETTING, cert, CA_KEY_SETTING, key],
        )
        .map_err(StoreError::from)?;
    }
    // Two hubs that started on an empty store at once: the first one's CA is the fleet's.
    if let Some((shared, key)) = stored(store)? {
        HubPki::adopt_ca(dir, &shared, &key)?;
    }
    Ok(pki)
}

fn stored(store: &Store) -> Result<Option<(String, String)>, StoreError> {
    let conn = store.lock();
    Ok(setting(&conn, CA_CERT_SETTING)?.zip(setting(&conn, CA_KEY_SETTING)?))
}
