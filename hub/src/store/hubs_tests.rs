//! The hubs sharing a store, and which of them holds each device: registration, health, release,
//! and the liveness flush's rule that only the holder (or a claim) changes a device's liveness.

use outpost_protocol::{EndpointId, Secret};

use super::db::Db;
use super::hubs::{self, HubHealth, HubId, HubRegistration};
use super::liveness::{self, LivenessUpdate};
use super::test_backends::{both_backends, Backend};
use super::tests::new_endpoint;
use super::{endpoints, EndpointKind};

fn hub(conn: &Db, name: &str, addr: &str, now: i64) -> HubId {
    let addrs = [addr.to_owned()];
    let registration = HubRegistration {
        name,
        agent_addrs: &addrs,
        api_url: "https://127.0.0.1:9443",
        instance: name,
    };
    hubs::register(conn, &registration, now).unwrap()
}

fn device(conn: &Db, name: &str) -> EndpointId {
    let new = new_endpoint(name, EndpointKind::Device, &Secret::generate(), None);
    endpoints::create(conn, &new, 1).unwrap().id
}

/// A write of `id`'s liveness: `connected` or not, a claim (the session just went live) or not.
fn write(
    conn: &mut Db,
    hub: HubId,
    id: EndpointId,
    connected: bool,
    claim: bool,
) -> Vec<EndpointId> {
    let update = LivenessUpdate {
        id,
        last_checkin: Some(100),
        addr: format!("198.18.0.{}:4433", hub.0),
        migrations: 0,
        connected,
        claim,
        wire_ended: (!connected).then_some((10, 1)),
        path_ended: None,
        path_mtu: None,
    };
    liveness::write_liveness(conn, hub, &[update]).unwrap()
}

/// `id`'s row: connected, and the hub holding it.
fn held(conn: &Db, id: EndpointId) -> (bool, Option<i64>) {
    conn.query_row(
        "SELECT connected, held_by FROM endpoints WHERE id = ?1",
        [id.0 as i64],
        |r| Ok((r.get::<i64>(0)? == 1, r.get(1)?)),
    )
    .unwrap()
}

fn devices_by_hub(conn: &Db) -> Vec<(String, u64)> {
    hubs::list(conn)
        .unwrap()
        .into_iter()
        .map(|h| (h.name, h.devices))
        .collect()
}

fn a_restarted_hub_keeps_its_row_and_takes_its_new_addresses(backend: Backend) {
    let (_place, store) = backend.open();
    let conn = store.lock();
    let first = hub(&conn, "a", "198.18.0.1:4433", 10);
    hubs::stopped(&conn, first, 20).unwrap();
    let again = hub(&conn, "a", "198.18.0.9:4433", 30);
    assert_eq!(first, again);
    let listed = hubs::list(&conn).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].agent_addrs, ["198.18.0.9:4433"]);
    assert_eq!((listed[0].started_at, listed[0].stopped_at), (30, None));
    assert_eq!(hubs::find(&conn, "a").unwrap(), Some(first));
    assert_eq!(hubs::find(&conn, "b").unwrap(), None);
}

fn a_hub_is_alive_while_its_heartbeat_is_recent(backend: Backend) {
    let (_place, store) = backend.open();
    let conn = store.lock();
    let a = hub(&conn, "a", "198.18.0.1:4433", 100);
    let record = |conn: &Db| hubs::list(conn).unwrap().remove(0);
    assert_eq!(record(&conn).health(130, 30), HubHealth::Alive);
    assert_eq!(record(&conn).health(131, 30), HubHealth::Silent);
    hubs::heartbeat(&conn, a, 125).unwrap();
    assert_eq!(record(&conn).health(131, 30), HubHealth::Alive);
    hubs::stopped(&conn, a, 140).unwrap();
    assert_eq!(record(&conn).health(141, 30), HubHealth::Stopped);
}

fn a_device_that_moved_is_not_written_offline_or_taken_back_by_its_old_hub(backend: Backend) {
    let (_place, store) = backend.open();
    let mut conn = store.lock();
    let (a, b) = (
        hub(&conn, "a", "198.18.0.1:1", 1),
        hub(&conn, "b", "198.18.0.2:1", 1),
    );
    let id = device(&conn, "kiosk");
    assert!(write(&mut conn, a, id, true, true).is_empty());
    assert_eq!(held(&conn, id), (true, Some(a.0)));
    // The device checks in to hub b now: b's first live write claims it.
    assert!(write(&mut conn, b, id, true, true).is_empty());
    assert_eq!(held(&conn, id), (true, Some(b.0)));
    assert_eq!(devices_by_hub(&conn), [("a".into(), 0), ("b".into(), 1)]);
    // a's session goes stale: its departure changes nothing but adds its connection's bytes.
    assert!(write(&mut conn, a, id, false, false).is_empty());
    assert_eq!(held(&conn, id), (true, Some(b.0)));
    let record = endpoints::find(&conn, id).unwrap().unwrap();
    assert_eq!(
        record.wire_tx_bytes, 10,
        "the bytes a's connection carried count"
    );
    assert_eq!(
        record.last_addr.as_deref(),
        Some(format!("198.18.0.{}:4433", b.0).as_str())
    );
    // A late live checkpoint from a does not take it back, and a learns its session is stale.
    assert_eq!(write(&mut conn, a, id, true, false), [id]);
    assert_eq!(held(&conn, id), (true, Some(b.0)));
    // b's own departure does end it.
    assert!(write(&mut conn, b, id, false, false).is_empty());
    assert_eq!(held(&conn, id), (false, None));
}

fn a_dead_hubs_devices_are_released_and_no_one_elses(backend: Backend) {
    let (_place, store) = backend.open();
    let mut conn = store.lock();
    let (a, b) = (
        hub(&conn, "a", "198.18.0.1:1", 1),
        hub(&conn, "b", "198.18.0.2:1", 1),
    );
    let on_a = [device(&conn, "a1"), device(&conn, "a2")];
    let on_b = device(&conn, "b1");
    for id in on_a {
        write(&mut conn, a, id, true, true);
    }
    write(&mut conn, b, on_b, true, true);
    assert_eq!(hubs::release(&conn, a).unwrap(), 2);
    assert_eq!(held(&conn, on_a[0]), (false, None));
    assert_eq!(held(&conn, on_b), (true, Some(b.0)));
    assert_eq!(devices_by_hub(&conn), [("a".into(), 0), ("b".into(), 1)]);
    // A device marked connected before hubs were recorded is released at a start.
    conn.execute(
        "UPDATE endpoints SET connected = 1 WHERE id = ?1",
        [on_a[1].0 as i64],
    )
    .unwrap();
    assert_eq!(hubs::release_unheld(&conn).unwrap(), 1);
    assert_eq!(held(&conn, on_b), (true, Some(b.0)));
}

fn a_running_hubs_name_is_refused_to_another_data_directory(backend: Backend) {
    let (_place, store) = backend.open();
    let conn = store.lock();
    let as_instance = |instance| HubRegistration {
        name: "edge",
        agent_addrs: &[],
        api_url: "https://127.0.0.1:9443",
        instance,
    };
    let first = as_instance("dir-1");
    assert_eq!(
        hubs::in_use_elsewhere(&conn, &first, 100, 30).unwrap(),
        None,
        "no row yet"
    );
    hubs::register(&conn, &first, 100).unwrap();
    let other = as_instance("dir-2");
    assert_eq!(
        hubs::in_use_elsewhere(&conn, &other, 112, 30).unwrap(),
        Some(12)
    );
    // The same directory again, right after a crash: a restart, not a second hub.
    assert_eq!(
        hubs::in_use_elsewhere(&conn, &first, 112, 30).unwrap(),
        None
    );
    // Silent for 30 s, or stopped: the name is free.
    assert_eq!(
        hubs::in_use_elsewhere(&conn, &other, 130, 30).unwrap(),
        None
    );
    let id = hubs::find(&conn, "edge").unwrap().unwrap();
    hubs::stopped(&conn, id, 113).unwrap();
    assert_eq!(
        hubs::in_use_elsewhere(&conn, &other, 114, 30).unwrap(),
        None
    );
    // Taken over by the other directory: now the first is the stranger.
    hubs::register(&conn, &other, 114).unwrap();
    assert_eq!(
        hubs::in_use_elsewhere(&conn, &first, 115, 30).unwrap(),
        Some(1)
    );
}

both_backends!(
    a_running_hubs_name_is_refused_to_another_data_directory,
    a_restarted_hub_keeps_its_row_and_takes_its_new_addresses,
    a_hub_is_alive_while_its_heartbeat_is_recent,
    a_device_that_moved_is_not_written_offline_or_taken_back_by_its_old_hub,
    a_dead_hubs_devices_are_released_and_no_one_elses,
);
