//! Engine snapshots: the latest one per endpoint, as the session admitted it.

use outpost_protocol::snapshot::EngineSnapshot;
use outpost_protocol::EndpointId;

use super::db::{params, Db, OptionalExtension};
use super::StoreError;

/// Replace an endpoint's snapshot: one the session admitted, so its JSON is at most
/// [`MAX_STORED_SNAPSHOT`](crate::registry::MAX_STORED_SNAPSHOT) bytes.
pub fn save_snapshot(
    conn: &Db,
    id: EndpointId,
    snapshot: &EngineSnapshot,
) -> Result<(), StoreError> {
    let body = serde_json::to_string(snapshot).unwrap_or_default();
    conn.execute(
        "INSERT INTO snapshots (endpoint_id, taken_at, body) VALUES (?1, ?2, ?3)
         ON CONFLICT(endpoint_id) DO UPDATE SET taken_at = excluded.taken_at, body = excluded.body",
        params![id.0 as i64, snapshot.taken_at, body],
    )?;
    Ok(())
}

/// An endpoint's latest snapshot.
pub fn snapshot(conn: &Db, id: EndpointId) -> Result<Option<EngineSnapshot>, StoreError> {
    let body: Option<String> = conn
        .query_row(
            "SELECT body FROM snapshots WHERE endpoint_id = ?1",
            [id.0 as i64],
            |r| r.get(0),
        )
        .optional()?;
    Ok(body.and_then(|b| serde_json::from_str(&b).ok()))
}

#[cfg(test)]
mod tests {
    use crate::store::test_backends::{both_backends, Backend};
    use outpost_protocol::snapshot::{
        ContainerSummary, MAX_LISTED_CONTAINERS, MAX_NAMES, SNAPSHOT_BUDGET,
    };
    use outpost_protocol::Secret;

    use super::*;
    use crate::registry::MAX_STORED_SNAPSHOT;
    use crate::store::endpoints::{self, EndpointKind};
    use crate::store::tests::new_endpoint;

    /// The worst a device can store within the hub's gate: every list at its cap, every text
    /// filled to the encoded budget with the character JSON escapes (`"`), after sanitizing.
    fn worst(text: &str) -> EngineSnapshot {
        let mut snapshot = EngineSnapshot {
            containers: vec![
                ContainerSummary {
                    names: vec![String::new(); MAX_NAMES],
                    ..ContainerSummary::default()
                };
                MAX_LISTED_CONTAINERS
            ],
            ..EngineSnapshot::default()
        };
        let mut room = SNAPSHOT_BUDGET - snapshot.encoded_len();
        // One-byte lengths grow to two at 128 bytes: fill in 127-byte pieces.
        'fill: for container in &mut snapshot.containers {
            for field in [
                &mut container.image,
                &mut container.status,
                &mut container.id,
            ] {
                let take = room.min(127);
                field.push_str(&text.repeat(take / text.len()));
                room -= take;
                if room < text.len() {
                    break 'fill;
                }
            }
        }
        snapshot.sanitize();
        snapshot
    }

    fn a_stored_snapshot_is_at_most_the_stated_bound(backend: Backend) {
        let (_dir, store) = backend.open();
        let conn = store.lock();
        let secret = Secret::generate();
        let new = new_endpoint("kiosk", EndpointKind::Device, &secret, None);
        let id = endpoints::create(&conn, &new, 0).unwrap().id;
        for (what, snapshot) in [("quotes", worst("\"")), ("backslashes", worst("\\"))] {
            assert!(snapshot.encoded_len() <= SNAPSHOT_BUDGET, "{what}");
            save_snapshot(&conn, id, &snapshot).unwrap();
            let stored: usize = conn
                .query_row("SELECT octet_length(body) FROM snapshots", [], |r| r.get(0))
                .unwrap();
            println!(
                "{what}: {} encoded bytes stored as {stored} bytes of JSON",
                snapshot.encoded_len()
            );
            assert!(stored <= MAX_STORED_SNAPSHOT, "{what}: {stored}");
        }
    }

    both_backends!(a_stored_snapshot_is_at_most_the_stated_bound);
}
