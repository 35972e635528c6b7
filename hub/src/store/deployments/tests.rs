use outpost_protocol::stack::{DesiredOrder, ServiceSpec, StackStatus, StateDigest};
use outpost_protocol::Secret;

use super::*;
use crate::store::endpoints::{self, EndpointKind};
use crate::store::stacks::{save_version, Saved};
use crate::store::test_backends::{both_backends, Backend};
use crate::store::tests::new_endpoint;

fn spec(project: &str, image: &str, version: u32) -> StackSpec {
    StackSpec {
        project: project.to_owned(),
        version,
        services: vec![ServiceSpec::new("app", image)],
        volumes: vec![],
    }
}

fn stored(conn: &mut Db, project: &str, image: &str) -> StackSpec {
    let saved = save_version(conn, project, image, |v| {
        Ok::<_, ()>(spec(project, image, v))
    });
    match saved.unwrap().unwrap() {
        Saved::Created(record) | Saved::Unchanged(record) => record.spec,
    }
}

fn device(conn: &Db, name: &str) -> EndpointId {
    let new = new_endpoint(name, EndpointKind::Device, &Secret::generate(), None);
    endpoints::create(conn, &new, 0).unwrap().id
}

fn report(project: &str, version: u32, phase: Phase) -> StackReport {
    StackReport {
        state: StateDigest([0; 8]),
        stacks: vec![StackStatus {
            project: project.to_owned(),
            version,
            phase,
        }],
    }
}

fn a_device_runs_what_is_assigned_one_version_per_stack(backend: Backend) {
    let (_dir, store) = backend.open();
    let mut conn = store.lock();
    let pos_v1 = stored(&mut conn, "pos", "pos:1");
    let pos_v2 = stored(&mut conn, "pos", "pos:2");
    let signage = stored(&mut conn, "signage", "sign:1");
    let kiosk = device(&conn, "kiosk");
    assert_eq!(
        desired_state(&conn, kiosk).unwrap(),
        DesiredOrder::default()
    );

    assert_eq!(
        assign(&conn, kiosk, "signage", 1, false).unwrap(),
        Assigned::Changed
    );
    assert_eq!(
        assign(&conn, kiosk, "pos", 1, false).unwrap(),
        Assigned::Changed
    );
    assert_eq!(
        assign(&conn, kiosk, "pos", 1, false).unwrap(),
        Assigned::Unchanged
    );
    let state = desired_state(&conn, kiosk).unwrap().state;
    assert_eq!(state.stacks, [pos_v1, signage.clone()], "by stack name");

    assert_eq!(
        assign(&conn, kiosk, "pos", 2, false).unwrap(),
        Assigned::Changed
    );
    let upgraded = desired_state(&conn, kiosk).unwrap().state;
    assert_eq!(upgraded.stacks, [pos_v2, signage]);
    assert_ne!(upgraded.digest(), state.digest());

    assert_eq!(
        assign(&conn, kiosk, "pos", 9, false).unwrap(),
        Assigned::Missing
    );
    assert_eq!(
        assign(&conn, kiosk, "ghost", 1, false).unwrap(),
        Assigned::Missing
    );
    assert_eq!(
        assign(&conn, EndpointId(999), "pos", 1, false).unwrap(),
        Assigned::Missing
    );
    assert_eq!(devices_running(&conn, "pos").unwrap(), 1);
}

fn a_drift_policy_is_part_of_what_a_device_should_run(backend: Backend) {
    let (_dir, store) = backend.open();
    let mut conn = store.lock();
    stored(&mut conn, "pos", "pos:1");
    stored(&mut conn, "signage", "sign:1");
    let kiosk = device(&conn, "kiosk");
    assign(&conn, kiosk, "signage", 1, true).unwrap();
    assign(&conn, kiosk, "pos", 1, false).unwrap();
    record_report(&conn, kiosk, &report("pos", 1, Phase::Healthy)).unwrap();
    let order = desired_state(&conn, kiosk).unwrap();
    assert_eq!(order.report_drift, ["signage"]);
    assert_eq!(order.check(), Ok(()));

    // The same version with the other policy is a change: its phase starts over.
    assert_eq!(
        assign(&conn, kiosk, "pos", 1, true).unwrap(),
        Assigned::Changed
    );
    assert_eq!(
        deployments_of(&conn, kiosk).unwrap()[0].phase,
        Phase::Queued
    );
    let both = desired_state(&conn, kiosk).unwrap();
    assert_eq!(both.report_drift, ["pos", "signage"], "sorted");
    assert_eq!(
        both.state, order.state,
        "the stacks themselves are unchanged"
    );
    assert_ne!(both.digest(), order.digest());
    assert_eq!(
        assign(&conn, kiosk, "pos", 1, true).unwrap(),
        Assigned::Unchanged
    );
}

fn reports_update_the_assigned_version_only(backend: Backend) {
    let (_dir, store) = backend.open();
    let mut conn = store.lock();
    stored(&mut conn, "pos", "pos:1");
    stored(&mut conn, "pos", "pos:2");
    let kiosk = device(&conn, "kiosk");
    assign(&conn, kiosk, "pos", 2, false).unwrap();

    let pulling = Phase::Pulling {
        done: 10,
        total: 40,
    };
    assert_eq!(
        record_report(&conn, kiosk, &report("pos", 2, pulling.clone())).unwrap(),
        1
    );
    let rows = deployments_of(&conn, kiosk).unwrap();
    assert_eq!((rows[0].version, &rows[0].phase), (2, &pulling));
    assert!(rows[0].reported_at.is_some());

    let stale = report("pos", 1, Phase::Healthy);
    assert_eq!(
        record_report(&conn, kiosk, &stale).unwrap(),
        0,
        "an older version's report"
    );
    assert_eq!(deployments_of(&conn, kiosk).unwrap()[0].phase, pulling);

    // A reason is device text: cut, flattened and made printable before it is kept.
    let hostile = format!("pull failed:\nmanifest unknown\u{1b}[2J{}", "é".repeat(400));
    record_report(
        &conn,
        kiosk,
        &report("pos", 2, Phase::Failed { reason: hostile }),
    )
    .unwrap();
    let Phase::Failed { reason } = &deployments_of(&conn, kiosk).unwrap()[0].phase else {
        panic!("failed")
    };
    assert!(
        reason.starts_with("pull failed: manifest unknown\u{fffd}[2J"),
        "{reason}"
    );
    assert!(reason.len() <= MAX_REASON);

    // A new assignment starts the phase over.
    assign(&conn, kiosk, "pos", 1, false).unwrap();
    let rows = deployments_of(&conn, kiosk).unwrap();
    assert_eq!(
        (rows[0].version, &rows[0].phase, rows[0].reported_at),
        (1, &Phase::Queued, None)
    );
}

fn removing_an_endpoint_removes_its_deployments(backend: Backend) {
    let (_dir, store) = backend.open();
    let mut conn = store.lock();
    stored(&mut conn, "pos", "pos:1");
    let kiosk = device(&conn, "kiosk");
    assign(&conn, kiosk, "pos", 1, false).unwrap();
    conn.execute("DELETE FROM endpoints WHERE id = ?1", [kiosk.0 as i64])
        .unwrap();
    assert_eq!(devices_running(&conn, "pos").unwrap(), 0);
}

fn a_deployed_stack_cannot_be_removed(backend: Backend) {
    use crate::store::stacks::{remove, Removed};
    let (_dir, store) = backend.open();
    let mut conn = store.lock();
    stored(&mut conn, "pos", "pos:1");
    let kiosk = device(&conn, "kiosk");
    assign(&conn, kiosk, "pos", 1, false).unwrap();
    assert_eq!(remove(&mut conn, "pos").unwrap(), Removed::Deployed(1));
    assert_eq!(
        desired_state(&conn, kiosk).unwrap().state.stacks.len(),
        1,
        "nothing removed"
    );
}

both_backends!(
    a_deployed_stack_cannot_be_removed,
    a_device_runs_what_is_assigned_one_version_per_stack,
    a_drift_policy_is_part_of_what_a_device_should_run,
    reports_update_the_assigned_version_only,
    removing_an_endpoint_removes_its_deployments
);
