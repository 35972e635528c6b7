//! The liveness flush writes the same on both backends: a batch comes to what its updates do one
//! at a time, whether the batch names an endpoint once or many times (SQLite runs them one by one;
//! PostgreSQL folds them into one change per endpoint and writes them in one statement).

use std::time::Duration;

use outpost_protocol::{EndpointId, Secret};
use outpost_transport::congestion::PathEstimate;

use super::db::{params, Db};
use super::endpoints::{self, EndpointKind, NewEndpoint, SavedPath};
use super::hubs::{self, test_hub, HubId, HubRegistration};
use super::liveness::{self, LivenessUpdate};
use crate::store::test_backends::{both_backends, Backend};

/// Endpoints each batch spreads its updates over.
const ENDPOINTS: u64 = 5;

fn hub(conn: &Db, name: &str) -> HubId {
    let registration = HubRegistration {
        name,
        agent_addrs: &[],
        api_url: "https://127.0.0.1:1",
        instance: name,
    };
    hubs::register(conn, &registration, 1).unwrap()
}

fn device(conn: &Db, name: &str) -> EndpointId {
    let new = NewEndpoint {
        name: name.into(),
        kind: EndpointKind::Device,
        preassigned: None,
        secret_hash: Secret::generate().hash(),
    };
    endpoints::create(conn, &new, 1).unwrap().id
}

/// The `k`th update of a mixed sequence over endpoints `first`…`first + ENDPOINTS - 1`: each
/// endpoint named many times, check-ins that go back as well as forward or are absent,
/// departures with and without bytes and a measured path, reconnections.
fn mixed(first: u64, k: u64) -> LivenessUpdate {
    let step = k * 7 + 3;
    let ended = step % 3 == 0;
    LivenessUpdate {
        id: EndpointId(first + k % ENDPOINTS),
        last_checkin: (step % 4 != 0).then_some(((step * 37) % 101) as i64),
        addr: format!("198.18.0.{}:4433", step % 9),
        migrations: (step % 6) as i64,
        connected: !ended,
        claim: !ended && step % 5 == 0,
        wire_ended: ended.then_some((step * 1_000, step)),
        path_ended: (ended && step % 2 == 0).then_some(SavedPath {
            estimate: PathEstimate {
                rate: step * 10_000,
                min_rtt: Duration::from_micros(step * 100),
            },
            measured_at: step as i64,
        }),
        path_mtu: (ended && step % 3 == 0).then_some(1_300 + (step % 150) as u16),
    }
}

/// What a reader sees of an endpoint's liveness, whatever its id.
fn seen(conn: &Db, id: EndpointId) -> impl PartialEq + std::fmt::Debug {
    let record = endpoints::find(conn, id).unwrap().unwrap();
    let (connected, held_by, path_mtu): (bool, Option<i64>, Option<i64>) = conn
        .query_row(
            "SELECT connected, held_by,
                 (SELECT path_mtu FROM endpoint_paths WHERE endpoint_id = endpoints.id)
             FROM endpoints WHERE id = ?1",
            params![id.0 as i64],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    (
        record.last_checkin,
        record.last_addr,
        record.migrations,
        connected,
        held_by,
        (record.wire_tx_bytes, record.wire_rx_bytes),
        record.path,
        path_mtu,
    )
}

fn a_batch_comes_to_what_its_updates_do_one_at_a_time(backend: Backend) {
    let (_place, store) = backend.open();
    let mut conn = store.lock();
    let batched: Vec<EndpointId> = (0..ENDPOINTS)
        .map(|i| device(&conn, &format!("batched-{i}")))
        .collect();
    let single: Vec<EndpointId> = (0..ENDPOINTS)
        .map(|i| device(&conn, &format!("single-{i}")))
        .collect();
    // Another hub holds every device first, with a stored check-in the batch's earlier ones must
    // not move back: this hub's writes change liveness only once one of them claims it.
    let (other, mine) = (hub(&conn, "other"), hub(&conn, "mine"));
    let start = LivenessUpdate {
        last_checkin: Some(60),
        connected: true,
        claim: true,
        ..mixed(0, 1)
    };
    for id in batched.iter().chain(&single) {
        let start = LivenessUpdate {
            id: *id,
            ..start.clone()
        };
        liveness::write_liveness(&mut conn, other, &[start]).unwrap();
    }

    let updates = 0..200;
    let batch: Vec<LivenessUpdate> = updates.clone().map(|k| mixed(batched[0].0, k)).collect();
    liveness::write_liveness(&mut conn, mine, &batch).unwrap();
    for k in updates {
        liveness::write_liveness(&mut conn, mine, &[mixed(single[0].0, k)]).unwrap();
    }
    for (one, other) in batched.iter().zip(&single) {
        assert_eq!(seen(&conn, *one), seen(&conn, *other), "{one:?}");
    }
}

fn a_departure_then_a_reconnection_in_one_batch_ends_connected_with_the_bytes_added(
    backend: Backend,
) {
    let (_place, store) = backend.open();
    let mut conn = store.lock();
    let (id, other) = (device(&conn, "roaming"), device(&conn, "steady"));
    let update = |id, at, connected, wire_ended| LivenessUpdate {
        id,
        last_checkin: Some(at),
        addr: format!("127.0.0.1:{at}"),
        migrations: 1,
        connected,
        claim: connected,
        wire_ended,
        path_ended: None,
        path_mtu: None,
    };
    let batch = [
        update(id, 50, false, Some((700, 70))),
        update(other, 40, true, None),
        update(id, 30, true, None),
        update(id, 45, false, Some((300, 30))),
        update(id, 45, true, None),
    ];
    let hub = test_hub(&conn);
    liveness::write_liveness(&mut conn, hub, &batch).unwrap();
    let record = endpoints::find(&conn, id).unwrap().unwrap();
    assert_eq!(
        record.last_checkin,
        Some(50),
        "the check-in never moves back"
    );
    assert_eq!(record.last_addr.as_deref(), Some("127.0.0.1:45"));
    assert_eq!((record.wire_tx_bytes, record.wire_rx_bytes), (1_000, 100));
    let connected = |id: EndpointId| -> bool {
        conn.query_row(
            "SELECT connected FROM endpoints WHERE id = ?1",
            params![id.0 as i64],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert!(connected(id) && connected(other));
}

fn an_endpoint_removed_before_its_flush_is_skipped(backend: Backend) {
    let (_place, store) = backend.open();
    let mut conn = store.lock();
    let kept = device(&conn, "kept");
    let gone = device(&conn, "gone");
    endpoints::remove(&mut conn, gone, 2).unwrap();
    let batch = [mixed(gone.0, 0), mixed(kept.0, 0)];
    let hub = test_hub(&conn);
    liveness::write_liveness(&mut conn, hub, &batch).unwrap();
    assert!(endpoints::find(&conn, gone).unwrap().is_none());
    let record = endpoints::find(&conn, kept).unwrap().unwrap();
    assert_eq!(record.last_addr, Some(batch[1].addr.clone()));
}

fn the_last_path_mtu_found_is_kept_with_the_device_s_last_address(backend: Backend) {
    let (_place, store) = backend.open();
    let mut conn = store.lock();
    let (found, never) = (device(&conn, "found"), device(&conn, "never"));
    let ended = |id, addr: &str, path_mtu| LivenessUpdate {
        id,
        last_checkin: Some(10),
        addr: addr.into(),
        migrations: 0,
        connected: false,
        claim: false,
        wire_ended: Some((1, 1)),
        path_ended: None,
        path_mtu,
    };
    let hub = test_hub(&conn);
    let batch = [
        ended(found, "198.18.0.1:4000", Some(1_452)),
        ended(never, "198.18.0.2:4000", None),
    ];
    liveness::write_liveness(&mut conn, hub, &batch).unwrap();
    // A later connection over a tunnel (no MTU) keeps what the last UDP one found.
    liveness::write_liveness(&mut conn, hub, &[ended(found, "198.18.0.1:4001", None)]).unwrap();
    assert_eq!(
        liveness::saved_path_mtus(&conn).unwrap(),
        vec![("198.18.0.1:4001".to_string(), 1_452)]
    );
}

both_backends!(
    the_last_path_mtu_found_is_kept_with_the_device_s_last_address,
    a_batch_comes_to_what_its_updates_do_one_at_a_time,
    a_departure_then_a_reconnection_in_one_batch_ends_connected_with_the_bytes_added,
    an_endpoint_removed_before_its_flush_is_skipped
);
