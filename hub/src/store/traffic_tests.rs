//! Traffic per period and class, and which budget applies, on a real SQLite file.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use outpost_protocol::{EndpointId, Secret};

use super::db::Db;
use super::endpoints::{self, EndpointKind};
use super::labels::{self, Label};
use super::tests::new_endpoint;
use super::traffic::*;
use crate::store::test_backends::{both_backends, Backend};

fn device(conn: &Db, name: &str, group: Option<&str>) -> EndpointId {
    let new = new_endpoint(name, EndpointKind::Device, &Secret::generate(), None);
    let id = endpoints::create(conn, &new, 1).unwrap().id;
    if let Some(group) = group {
        let group: Label = group.parse().unwrap();
        labels::set_group(conn, id, Some(&group)).unwrap();
    }
    id
}

fn row(endpoint: EndpointId, class: &'static str, up: u64, down: u64) -> TrafficRow {
    TrafficRow {
        endpoint,
        class,
        up,
        down,
    }
}

fn flushes_add_up_per_period_and_class(backend: Backend) {
    let (_dir, store) = backend.open();
    let mut conn = store.lock();
    let kiosk = device(&conn, "kiosk", None);
    add(
        &mut conn,
        100,
        &[
            row(kiosk, "control", 10, 20),
            row(kiosk, "images", 1, 5_000),
        ],
    )
    .unwrap();
    add(&mut conn, 100, &[row(kiosk, "control", 5, 5)]).unwrap();
    add(&mut conn, 200, &[row(kiosk, "control", 7, 7)]).unwrap();
    let mut by_class = of_endpoint(&conn, kiosk, 100).unwrap();
    by_class.sort();
    assert_eq!(
        by_class,
        vec![("control".into(), 15, 25), ("images".into(), 1, 5_000)]
    );
    assert_eq!(used(&conn, kiosk, 100).unwrap(), 15 + 25 + 1 + 5_000);
    assert_eq!(used(&conn, kiosk, 200).unwrap(), 14);
    assert_eq!(used(&conn, kiosk, 300).unwrap(), 0);
    assert_eq!(
        history(&conn, kiosk, 300, 12).unwrap(),
        vec![(200, 14), (100, 15 + 25 + 1 + 5_000)]
    );
    assert_eq!(history(&conn, kiosk, 200, 12).unwrap(), vec![(100, 5_041)]);
    assert_eq!(history(&conn, kiosk, 300, 1).unwrap(), vec![(200, 14)]);
}

fn a_removed_device_gains_no_rows_and_loses_its_own(backend: Backend) {
    let (_dir, store) = backend.open();
    let mut conn = store.lock();
    let gone = device(&conn, "gone", None);
    let kept = device(&conn, "kept", None);
    add(&mut conn, 100, &[row(gone, "control", 1, 1)]).unwrap();
    endpoints::remove(&mut conn, gone, 1).unwrap();
    add(
        &mut conn,
        100,
        &[row(gone, "control", 1, 1), row(kept, "control", 2, 2)],
    )
    .unwrap();
    assert_eq!(used(&conn, gone, 100).unwrap(), 0);
    assert_eq!(used(&conn, kept, 100).unwrap(), 4);
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM traffic", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 1);
}

fn the_most_specific_budget_applies(backend: Backend) {
    let (_dir, store) = backend.open();
    let conn = store.lock();
    let berlin = device(&conn, "berlin-1", Some("berlin"));
    let paris = device(&conn, "paris-1", Some("paris"));
    let loose = device(&conn, "loose", None);
    assert_eq!(budget_for(&conn, berlin).unwrap(), None);
    set_budget(&conn, &BudgetScope::Fleet, 500).unwrap();
    set_budget(&conn, &BudgetScope::Group("Berlin".into()), 300).unwrap();
    set_budget(&conn, &BudgetScope::Endpoint(paris), 100).unwrap();
    assert_eq!(
        budget_for(&conn, berlin).unwrap(),
        Some((BudgetScope::Group("Berlin".into()), 300)),
        "group names match as groups do, without case"
    );
    assert_eq!(
        budget_for(&conn, paris).unwrap(),
        Some((BudgetScope::Endpoint(paris), 100))
    );
    assert_eq!(
        budget_for(&conn, loose).unwrap(),
        Some((BudgetScope::Fleet, 500))
    );
    set_budget(&conn, &BudgetScope::Fleet, 700).unwrap();
    assert_eq!(
        budget_for(&conn, loose).unwrap(),
        Some((BudgetScope::Fleet, 700))
    );
    assert_eq!(
        budgets(&conn).unwrap(),
        vec![
            (BudgetScope::Fleet, 700),
            (BudgetScope::Group("Berlin".into()), 300),
            (BudgetScope::Endpoint(paris), 100),
        ]
    );
    assert!(remove_budget(&conn, &BudgetScope::Group("berlin".into())).unwrap());
    assert!(!remove_budget(&conn, &BudgetScope::Group("berlin".into())).unwrap());
    assert_eq!(
        budget_for(&conn, berlin).unwrap(),
        Some((BudgetScope::Fleet, 700))
    );
}

fn the_most_specific_window_applies(backend: Backend) {
    let (_dir, store) = backend.open();
    let conn = store.lock();
    let berlin = device(&conn, "berlin-1", Some("berlin"));
    let loose = device(&conn, "loose", None);
    let night = "01:00-05:00".parse().unwrap();
    let late = "22:00-04:00".parse().unwrap();
    assert_eq!(window_for(&conn, berlin).unwrap(), None);
    set_window(&conn, &BudgetScope::Fleet, night).unwrap();
    set_window(&conn, &BudgetScope::Group("berlin".into()), late).unwrap();
    assert_eq!(window_for(&conn, berlin).unwrap(), Some(late));
    assert_eq!(window_for(&conn, loose).unwrap(), Some(night));
    assert_eq!(windows(&conn).unwrap().len(), 2);
    assert!(remove_window(&conn, &BudgetScope::Group("BERLIN".into())).unwrap());
    assert_eq!(window_for(&conn, berlin).unwrap(), Some(night));
    let stored = conn.execute(
        "INSERT INTO transfer_windows VALUES ('group', 'x', 1440, 5)",
        [],
    );
    assert!(stored.is_err(), "the schema refuses a minute past the day");
}

both_backends!(
    flushes_add_up_per_period_and_class,
    a_removed_device_gains_no_rows_and_loses_its_own,
    the_most_specific_budget_applies,
    the_most_specific_window_applies
);
