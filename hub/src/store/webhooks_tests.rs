//! The webhook queue and the alert tables in a real SQLite file: subscriptions pick the
//! deliveries, the cap refuses beyond it, attempts are recorded, thresholds resolve group then
//! default then fallback, a certificate's expiry is warned of once.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use outpost_protocol::Secret;

use super::*;
use crate::store::endpoints::{self, EndpointKind};
use crate::store::labels;
use crate::store::test_backends::{both_backends, Backend};
use crate::store::tests::new_endpoint;
use crate::store::Label;

fn device(conn: &Db, name: &str) -> EndpointId {
    let new = new_endpoint(name, EndpointKind::Device, &Secret::generate(), None);
    endpoints::create(conn, &new, 0).unwrap().id
}

fn names(events: &[&str]) -> Vec<String> {
    events.iter().map(|e| (*e).to_owned()).collect()
}

fn an_event_is_queued_once_per_subscribed_webhook_and_the_cap_refuses_the_rest(backend: Backend) {
    let (_dir, store) = backend.open();
    let mut conn = store.lock();
    let both = add(&conn, "http://a/", &names(&["offline", "online"]), "k1", 1).unwrap();
    let jobs = add(&conn, "http://b/", &names(&["job"]), "k2", 1).unwrap();
    assert_eq!(
        enqueue(&mut conn, "offline", "{}", 5_000, 10).unwrap(),
        (1, 0)
    );
    assert_eq!(
        enqueue(&mut conn, "rollout", "{}", 5_000, 10).unwrap(),
        (0, 0)
    );
    let due_now = due(&conn, 5_000, 10).unwrap();
    assert_eq!(due_now.len(), 1);
    assert_eq!(
        (due_now[0].url.as_str(), due_now[0].secret.as_str()),
        ("http://a/", "k1")
    );
    assert!(
        due(&conn, 4_999, 10).unwrap().is_empty(),
        "not due before its time"
    );

    add(&conn, "http://c/", &names(&["job"]), "k3", 1).unwrap();
    assert_eq!(enqueue(&mut conn, "job", "{}", 5_000, 2).unwrap(), (1, 1));
    assert_eq!(pending(&conn).unwrap(), 2);
    assert!(remove(&conn, jobs.id).unwrap());
    assert_eq!(list(&conn).unwrap().len(), 2);
    assert_eq!(deliveries(&conn, Some(both.id), 10).unwrap().len(), 1);
}

fn attempts_are_recorded_and_done_deliveries_leave_the_queue(backend: Backend) {
    let (_dir, store) = backend.open();
    let mut conn = store.lock();
    add(&conn, "http://a/", &names(&["job"]), "k", 1).unwrap();
    enqueue(&mut conn, "job", "{\"job\":1}", 1_000, 10).unwrap();
    enqueue(&mut conn, "job", "{\"job\":2}", 1_000, 10).unwrap();
    let ids: Vec<i64> = due(&conn, 1_000, 10)
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    let retry = Attempt::Retry {
        status: Some(503),
        error: "the receiver answered 503".into(),
        next_attempt_ms: 3_000,
    };
    record(
        &mut conn,
        &[
            (ids[0], retry),
            (ids[1], Attempt::Delivered { status: 200 }),
        ],
        2,
    )
    .unwrap();
    assert_eq!(next_due(&conn).unwrap(), Some(3_000));
    let gave_up = Attempt::GaveUp {
        status: None,
        error: "connection refused".into(),
    };
    record(&mut conn, &[(ids[0], gave_up)], 4).unwrap();
    assert_eq!(next_due(&conn).unwrap(), None);
    let shown = deliveries(&conn, None, 10).unwrap();
    let first = shown.iter().find(|d| d.id == ids[0]).unwrap();
    assert_eq!(
        (
            first.attempts,
            first.last_status,
            first.gave_up_at,
            first.delivered_at
        ),
        (2, None, Some(4), None)
    );
    assert_eq!(first.last_error.as_deref(), Some("connection refused"));
    assert_eq!(prune(&mut conn, 100).unwrap(), 2);
    assert!(deliveries(&conn, None, 10).unwrap().is_empty());
}

fn a_devices_threshold_is_its_groups_else_the_default_else_the_fallback(backend: Backend) {
    let (_dir, store) = backend.open();
    let conn = store.lock();
    let (grouped, plain) = (device(&conn, "a"), device(&conn, "b"));
    let kiosks: Label = "kiosks".parse().unwrap();
    labels::set_group(&conn, grouped, Some(&kiosks)).unwrap();
    let fallback = Duration::from_secs(600);
    let ids = [grouped, plain, EndpointId(999)];
    assert_eq!(
        offline_thresholds(&conn, &ids, fallback).unwrap(),
        vec![(grouped, fallback), (plain, fallback)],
        "a removed device has none"
    );
    set_threshold(&conn, "KIOSKS", Duration::from_secs(30)).unwrap();
    set_threshold(&conn, "", Duration::from_secs(120)).unwrap();
    assert_eq!(
        offline_thresholds(&conn, &ids, fallback).unwrap(),
        vec![
            (grouped, Duration::from_secs(30)),
            (plain, Duration::from_secs(120))
        ]
    );
    assert_eq!(thresholds(&conn).unwrap().len(), 2);
}

fn an_expiring_certificate_is_warned_of_once_and_again_only_for_a_new_expiry(backend: Backend) {
    let (_dir, store) = backend.open();
    let conn = store.lock();
    let id = device(&conn, "a");
    let cert = |serial: &str, not_after: i64| {
        conn.execute(
            "INSERT INTO certificates (serial, endpoint_id, agent_id, issued_at, not_after)
             VALUES (?1, ?2, 'x', 0, ?3)",
            params![serial, id.0 as i64, not_after],
        )
        .unwrap();
    };
    cert("old", 50);
    cert("new", 100);
    assert_eq!(
        expiring_certs(&conn, 100).unwrap(),
        vec![],
        "the newest is not expiring"
    );
    assert_eq!(expiring_certs(&conn, 101).unwrap(), vec![(id, 100)]);
    cert_warned(&conn, id, 100).unwrap();
    assert_eq!(expiring_certs(&conn, 101).unwrap(), vec![]);
    cert("renewed-late", 150);
    assert_eq!(expiring_certs(&conn, 200).unwrap(), vec![(id, 150)]);
}

fn an_alerted_outage_is_kept_until_its_online(backend: Backend) {
    let (_dir, store) = backend.open();
    let conn = store.lock();
    set_outage(&conn, EndpointId(4), Some(1_000)).unwrap();
    assert_eq!(
        alerted_outages(&conn).unwrap(),
        vec![(EndpointId(4), 1_000)]
    );
    set_outage(&conn, EndpointId(4), None).unwrap();
    assert!(alerted_outages(&conn).unwrap().is_empty());
}

fn a_starting_hub_counts_enrolled_devices_not_already_alerted(backend: Backend) {
    let (_dir, store) = backend.open();
    let conn = store.lock();
    let enrolled = [device(&conn, "a"), device(&conn, "b"), device(&conn, "c")];
    device(&conn, "never-enrolled");
    for (n, id) in enrolled.iter().enumerate() {
        conn.execute(
            "UPDATE endpoints SET agent_id = ?2 WHERE id = ?1",
            params![id.0 as i64, format!("agent-{n}")],
        )
        .unwrap();
    }
    set_outage(&conn, enrolled[2], Some(1)).unwrap();
    set_threshold(&conn, "", Duration::from_secs(45)).unwrap();
    assert_eq!(
        enrolled_devices(&conn, Duration::from_secs(600)).unwrap(),
        vec![
            (enrolled[0], Duration::from_secs(45)),
            (enrolled[1], Duration::from_secs(45))
        ]
    );
}

both_backends!(
    an_event_is_queued_once_per_subscribed_webhook_and_the_cap_refuses_the_rest,
    attempts_are_recorded_and_done_deliveries_leave_the_queue,
    a_devices_threshold_is_its_groups_else_the_default_else_the_fallback,
    an_expiring_certificate_is_warned_of_once_and_again_only_for_a_new_expiry,
    an_alerted_outage_is_kept_until_its_online,
    a_starting_hub_counts_enrolled_devices_not_already_alerted
);
