//! Store tests against a real SQLite file in a temporary directory.

use super::hubs::test_hub;
use std::time::Duration;

use outpost_protocol::wire::RefusalReason;
use outpost_protocol::{AgentId, EndpointId, Secret};
use outpost_transport::congestion::PathEstimate;

use super::certs;
use super::db::Dialect;
use super::endpoints::{self, EndpointKind, NewEndpoint, SavedPath};
use super::enroll::{self, EnrollInput, EnrollOutcome};
use super::list::{self, ListQuery, StatusFilter};
use super::liveness::{self, LivenessUpdate};
use super::{Store, StoreLocation};
use crate::store::test_backends::{both_backends, Backend};

pub(super) fn new_endpoint(
    name: &str,
    kind: EndpointKind,
    secret: &Secret,
    preassigned: Option<AgentId>,
) -> NewEndpoint {
    NewEndpoint {
        name: name.into(),
        kind,
        preassigned,
        secret_hash: secret.hash(),
    }
}

fn input(endpoint: EndpointId, secret: &Secret, agent: AgentId, serial: &str) -> EnrollInput {
    EnrollInput {
        endpoint,
        secret_hash: secret.hash(),
        agent_id: agent,
        agent_version: "test".into(),
        cert_serial: serial.into(),
        cert_not_after: 2_000_000_000,
        public_key: key_of(agent),
        max_pending: 100,
    }
}

/// A stand-in for the SHA-256 of an agent's public key: one key per agent.
pub(super) fn key_of(agent: AgentId) -> [u8; 32] {
    let mut key = [0; 32];
    key[..16].copy_from_slice(agent.0.as_bytes());
    key
}

fn first_enrolment_binds_and_a_second_device_is_refused_without_harm(backend: Backend) {
    let (_dir, store) = backend.open();
    let mut conn = store.lock();
    let secret = Secret::generate();
    let ep = endpoints::create(
        &conn,
        &new_endpoint("kiosk-1", EndpointKind::Device, &secret, None),
        1,
    )
    .unwrap();
    let first = AgentId::generate();
    let outcome = enroll::enroll(&mut conn, &input(ep.id, &secret, first, "aa"), 2)
        .unwrap()
        .unwrap();
    assert_eq!(
        outcome,
        EnrollOutcome {
            endpoint: ep.id,
            pending: false,
            superseded: false,
        }
    );

    let intruder = AgentId::generate();
    let refusal = enroll::enroll(&mut conn, &input(ep.id, &secret, intruder, "bb"), 3)
        .unwrap()
        .unwrap_err();
    assert_eq!(refusal.reason, RefusalReason::AlreadyBound);
    let record = endpoints::find(&conn, ep.id).unwrap().unwrap();
    assert_eq!(record.agent_id, Some(first));
    assert_eq!(record.enroll_count, 1);
    assert!(certs::cert_status(&conn, "bb").unwrap().is_none());
    assert!(!certs::cert_status(&conn, "aa").unwrap().unwrap().revoked);
}

fn wrong_secret_unknown_endpoint_and_preassigned_mismatch_are_refused(backend: Backend) {
    let (_dir, store) = backend.open();
    let mut conn = store.lock();
    let secret = Secret::generate();
    let reserved = AgentId::generate();
    let ep = endpoints::create(
        &conn,
        &new_endpoint("pos-9", EndpointKind::Device, &secret, Some(reserved)),
        1,
    )
    .unwrap();
    let other = AgentId::generate();
    let wrong = Secret::generate();
    let cases = [
        (
            input(ep.id, &wrong, reserved, "1"),
            RefusalReason::BadSecret,
        ),
        (
            input(EndpointId(999), &secret, reserved, "2"),
            RefusalReason::BadSecret,
        ),
        (
            input(ep.id, &secret, other, "3"),
            RefusalReason::AgentIdMismatch,
        ),
    ];
    for (attempt, expected) in cases {
        let refusal = enroll::enroll(&mut conn, &attempt, 2).unwrap().unwrap_err();
        assert_eq!(refusal.reason, expected, "{}", refusal.message);
    }
    assert_eq!(
        endpoints::find(&conn, ep.id).unwrap().unwrap().agent_id,
        None
    );
    let ok = enroll::enroll(&mut conn, &input(ep.id, &secret, reserved, "4"), 3).unwrap();
    assert!(ok.is_ok());
}

fn re_enrolment_of_the_same_agent_supersedes_its_old_certificate(backend: Backend) {
    let (_dir, store) = backend.open();
    let mut conn = store.lock();
    let secret = Secret::generate();
    let ep = endpoints::create(
        &conn,
        &new_endpoint("sign-3", EndpointKind::Device, &secret, None),
        1,
    )
    .unwrap();
    let agent = AgentId::generate();
    enroll::enroll(&mut conn, &input(ep.id, &secret, agent, "old"), 2)
        .unwrap()
        .unwrap();
    enroll::enroll(&mut conn, &input(ep.id, &secret, agent, "new"), 3)
        .unwrap()
        .unwrap();
    assert!(certs::cert_status(&conn, "old").unwrap().unwrap().revoked);
    assert!(!certs::cert_status(&conn, "new").unwrap().unwrap().revoked);
    assert_eq!(
        endpoints::find(&conn, ep.id).unwrap().unwrap().enroll_count,
        2
    );
}

fn fleet_devices_land_pending_once_each_until_approved(backend: Backend) {
    let (_dir, store) = backend.open();
    let mut conn = store.lock();
    let secret = Secret::generate();
    let fleet = endpoints::create(
        &conn,
        &new_endpoint("pos", EndpointKind::Fleet, &secret, None),
        1,
    )
    .unwrap();
    let a = AgentId::generate();
    let b = AgentId::generate();
    let first = enroll::enroll(&mut conn, &input(fleet.id, &secret, a, "a1"), 2)
        .unwrap()
        .unwrap();
    let second = enroll::enroll(&mut conn, &input(fleet.id, &secret, b, "b1"), 2)
        .unwrap()
        .unwrap();
    let again = enroll::enroll(&mut conn, &input(fleet.id, &secret, a, "a2"), 3)
        .unwrap()
        .unwrap();
    assert!(first.pending && second.pending);
    assert_ne!(first.endpoint, second.endpoint);
    assert_eq!(again.endpoint, first.endpoint);

    let pending = ListQuery {
        page: 1,
        per_page: 50,
        status: Some(StatusFilter::Pending),
        ..Default::default()
    };
    assert_eq!(list::list(&conn, &pending).unwrap().1, 2);
    assert!(endpoints::approve(&conn, first.endpoint).unwrap());
    assert_eq!(list::list(&conn, &pending).unwrap().1, 1);
    let member = endpoints::find(&conn, first.endpoint).unwrap().unwrap();
    assert_eq!(member.fleet_id, Some(fleet.id));
    assert!(member.name.starts_with("pos-"));
}

fn removal_revokes_every_certificate_of_the_endpoint(backend: Backend) {
    let (_dir, store) = backend.open();
    let mut conn = store.lock();
    let secret = Secret::generate();
    let ep = endpoints::create(
        &conn,
        &new_endpoint("gone", EndpointKind::Device, &secret, None),
        1,
    )
    .unwrap();
    enroll::enroll(
        &mut conn,
        &input(ep.id, &secret, AgentId::generate(), "s1"),
        2,
    )
    .unwrap()
    .unwrap();
    assert!(endpoints::remove(&mut conn, ep.id, 3).unwrap().is_some());
    assert!(certs::cert_status(&conn, "s1").unwrap().unwrap().revoked);
    assert!(endpoints::find(&conn, ep.id).unwrap().is_none());
    assert!(endpoints::remove(&mut conn, ep.id, 4).unwrap().is_none());
}

fn liveness_is_written_in_one_batch_and_survives_reopen(backend: Backend) {
    let (place, store) = backend.open();
    let secret = Secret::generate();
    let id = {
        let mut conn = store.lock();
        let id = endpoints::create(
            &conn,
            &new_endpoint("x", EndpointKind::Device, &secret, None),
            1,
        )
        .unwrap()
        .id;
        let update = LivenessUpdate {
            id,
            last_checkin: Some(42),
            addr: "127.0.0.1:9".into(),
            migrations: 3,
            connected: true,
            claim: false,
            wire_ended: None,
            path_ended: None,
            path_mtu: None,
        };
        let hub = test_hub(&conn);
        liveness::write_liveness(&mut conn, hub, &[update]).unwrap();
        id
    };
    drop(store);
    let store = Store::open_location(&place.location()).unwrap();
    let record = endpoints::find(&store.lock(), id).unwrap().unwrap();
    assert_eq!((record.last_checkin, record.migrations), (Some(42), 3));
    assert_eq!(record.last_addr.as_deref(), Some("127.0.0.1:9"));
}

fn each_ended_connection_adds_its_bytes_to_the_endpoint_totals(backend: Backend) {
    let (_dir, store) = backend.open();
    let secret = Secret::generate();
    let mut conn = store.lock();
    let id = endpoints::create(
        &conn,
        &new_endpoint("metered", EndpointKind::Device, &secret, None),
        1,
    )
    .unwrap()
    .id;
    let update = |wire_ended: Option<(u64, u64)>| LivenessUpdate {
        id,
        last_checkin: Some(7),
        addr: "127.0.0.1:9".into(),
        migrations: 0,
        connected: wire_ended.is_none(),
        claim: false,
        wire_ended,
        path_ended: None,
        path_mtu: None,
    };
    // A live checkpoint adds nothing; two ended connections add up.
    let batch = [
        update(None),
        update(Some((1_000, 200))),
        update(None),
        update(Some((30, 4))),
    ];
    let hub = test_hub(&conn);
    liveness::write_liveness(&mut conn, hub, &batch).unwrap();
    let record = endpoints::find(&conn, id).unwrap().unwrap();
    assert_eq!((record.wire_tx_bytes, record.wire_rx_bytes), (1_030, 204));
}

fn a_measured_path_is_kept_until_a_later_connection_measures_another(backend: Backend) {
    let (_dir, store) = backend.open();
    let secret = Secret::generate();
    let mut conn = store.lock();
    let id = endpoints::create(
        &conn,
        &new_endpoint("geo", EndpointKind::Device, &secret, None),
        1,
    )
    .unwrap()
    .id;
    assert_eq!(endpoints::find(&conn, id).unwrap().unwrap().path, None);
    let measured = |rate: u64, at: i64| SavedPath {
        estimate: PathEstimate {
            rate,
            min_rtt: Duration::from_micros(600_123),
        },
        measured_at: at,
    };
    let ended = |path_ended| LivenessUpdate {
        id,
        last_checkin: Some(7),
        addr: "127.0.0.1:9".into(),
        migrations: 0,
        connected: false,
        claim: false,
        wire_ended: Some((1, 1)),
        path_ended,
        path_mtu: None,
    };
    let hub = test_hub(&conn);
    liveness::write_liveness(&mut conn, hub, &[ended(Some(measured(2_500_000, 100)))]).unwrap();
    let path = endpoints::find(&conn, id).unwrap().unwrap().path;
    assert_eq!(path, Some(measured(2_500_000, 100)));
    // A connection that carried too little to measure leaves the last measurement in place.
    let hub = test_hub(&conn);
    liveness::write_liveness(&mut conn, hub, &[ended(None)]).unwrap();
    assert_eq!(endpoints::find(&conn, id).unwrap().unwrap().path, path);
    let hub = test_hub(&conn);
    liveness::write_liveness(&mut conn, hub, &[ended(Some(measured(600_000, 200)))]).unwrap();
    assert_eq!(
        endpoints::find(&conn, id).unwrap().unwrap().path,
        Some(measured(600_000, 200))
    );
}

fn a_database_from_a_newer_hub_is_refused(backend: Backend) {
    let (place, store) = backend.open();
    let newer = match store.lock().dialect() {
        Dialect::Sqlite => "PRAGMA user_version = 99",
        Dialect::Postgres => "UPDATE schema_version SET version = 99",
    };
    store.lock().execute_batch(newer).unwrap();
    drop(store);
    let err = Store::open_location(&place.location()).unwrap_err();
    assert!(err.to_string().contains("newer"), "{err}");
}

#[test]
fn a_store_url_is_postgres_a_path_is_sqlite_and_a_password_never_prints() {
    let url = "postgres://hub:s3cret@db.example:5432/outpost";
    let location = StoreLocation::parse(url);
    assert_eq!(location, StoreLocation::Postgres(url.into()));
    assert_eq!(
        location.to_string(),
        "postgres://hub:****@db.example:5432/outpost"
    );
    assert!(!format!("{location:?}").contains("s3cret"));
    let plain = StoreLocation::parse("postgresql://hub@db/outpost");
    assert_eq!(plain.to_string(), "postgresql://hub@db/outpost");
    assert_eq!(
        StoreLocation::parse("/var/lib/outpost/hub.db"),
        StoreLocation::Sqlite("/var/lib/outpost/hub.db".into())
    );
}

both_backends!(
    a_database_from_a_newer_hub_is_refused,
    liveness_is_written_in_one_batch_and_survives_reopen,
    first_enrolment_binds_and_a_second_device_is_refused_without_harm,
    wrong_secret_unknown_endpoint_and_preassigned_mismatch_are_refused,
    re_enrolment_of_the_same_agent_supersedes_its_old_certificate,
    fleet_devices_land_pending_once_each_until_approved,
    removal_revokes_every_certificate_of_the_endpoint,
    each_ended_connection_adds_its_bytes_to_the_endpoint_totals,
    a_measured_path_is_kept_until_a_later_connection_measures_another
);
