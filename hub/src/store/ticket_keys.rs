//! The TLS ticket keys the hubs of one store share (`crate::tickets`), as one settings row.
//!
//! The row is a secret: it opens (and forges) session tickets. It is written only whole: by the
//! first hub (an insert that loses to a concurrent one changes nothing) and by a rotation, which
//! replaces exactly the value it read, so two hubs rotating at once rotate once.

use super::db::{params, Db};
use super::settings::setting;
use super::StoreError;

/// The settings row holding the keys.
pub const SETTING: &str = "tls_ticket_keys";

/// The stored keys, if any hub has made them.
pub fn stored(conn: &Db) -> Result<Option<String>, StoreError> {
    setting(conn, SETTING)
}

/// Store `keys` unless a set is already stored.
pub fn insert_first(conn: &Db, keys: &str) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO NOTHING",
        params![SETTING, keys],
    )?;
    Ok(())
}

/// Replace the stored keys `old` by `new`; false if they are no longer `old` (another hub
/// rotated first), and nothing is written.
pub fn replace(conn: &Db, old: &str, new: &str) -> Result<bool, StoreError> {
    let changed = conn.execute(
        "UPDATE settings SET value = ?1 WHERE key = ?2 AND value = ?3",
        params![new, SETTING, old],
    )?;
    Ok(changed == 1)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::test_backends::{both_backends, Backend};
    use super::super::Store;
    use crate::tickets::{settle, StoreTicketer, TicketKeys};
    use rustls::server::ProducesTickets as _;

    const PERIOD: Duration = Duration::from_secs(1000);

    fn settled(store: &Store, now: i64) -> TicketKeys {
        settle(&store.lock(), now, PERIOD).unwrap()
    }

    fn hubs_on_one_store_share_their_keys_and_a_restart_keeps_them(backend: Backend) {
        let (place, hub1) = backend.open();
        let hub2 = Store::open_location(&place.location()).unwrap();
        let first = settled(&hub1, 100);
        assert_eq!(settled(&hub2, 150), first);
        let ticket = StoreTicketer::new(&first).encrypt(b"agent 7").unwrap();
        assert!(StoreTicketer::new(&settled(&hub2, 160))
            .decrypt(&ticket)
            .is_some());
        // Hub 1 restarts: a new process on the same store opens its own old ticket.
        drop(hub1);
        let restarted = Store::open_location(&place.location()).unwrap();
        assert!(StoreTicketer::new(&settled(&restarted, 170))
            .decrypt(&ticket)
            .is_some());
    }

    fn the_first_hub_past_the_period_rotates_once_and_the_others_follow(backend: Backend) {
        let (place, hub1) = backend.open();
        let hub2 = Store::open_location(&place.location()).unwrap();
        let first = settled(&hub1, 100);
        let ticket = StoreTicketer::new(&first).encrypt(b"agent 7").unwrap();
        let once = settled(&hub2, 1_100);
        assert_eq!(once.previous.as_ref(), Some(&first.current));
        assert_eq!(once.rotated_at, 1_100);
        // Hub 1's clock is a little behind, then past the same rotation: no second rotation.
        assert_eq!(settled(&hub1, 1_050), once);
        assert_eq!(settled(&hub1, 1_200), once);
        assert!(StoreTicketer::new(&once).decrypt(&ticket).is_some());
        // Two rotations later the ticket is refused: a full handshake, not an error.
        let twice = settled(&hub1, 2_100);
        assert_ne!(twice, once);
        assert_eq!(StoreTicketer::new(&twice).decrypt(&ticket), None);
    }

    fn a_rotation_loses_to_a_concurrent_one_and_takes_it(backend: Backend) {
        let (_place, store) = backend.open();
        let first = settled(&store, 100);
        let conn = store.lock();
        let theirs = first.rotated(1_100, crate::tickets::TicketKey::generate().unwrap());
        assert!(super::replace(&conn, &first.encode(), &theirs.encode()).unwrap());
        let ours = first.rotated(1_101, crate::tickets::TicketKey::generate().unwrap());
        assert!(!super::replace(&conn, &first.encode(), &ours.encode()).unwrap());
        drop(conn);
        assert_eq!(settled(&store, 1_102), theirs);
    }

    both_backends!(
        hubs_on_one_store_share_their_keys_and_a_restart_keeps_them,
        the_first_hub_past_the_period_rotates_once_and_the_others_follow,
        a_rotation_loses_to_a_concurrent_one_and_takes_it,
    );
}
