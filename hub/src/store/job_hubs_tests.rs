//! Jobs across hubs, on both backends: one coordinator per job, taken over by one hub only when
//! it dies; what a device's hub reads and writes for a job another hub coordinates.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use outpost_protocol::job::{JobOutcome, OutputCapture};
use outpost_protocol::EndpointId;

use super::*;
use crate::store::hubs::{self, HubRegistration};
use crate::store::job_fixtures::{devices, prune};
use crate::store::jobs;
use crate::store::test_backends::{both_backends, Backend};

fn hub(conn: &Db, name: &str, now: i64) -> HubId {
    let registration = HubRegistration {
        name,
        agent_addrs: &[],
        api_url: "https://127.0.0.1:1",
        instance: name,
    };
    hubs::register(conn, &registration, now).unwrap()
}

/// A job created on `hub` for `targets`.
fn created(conn: &Db, hub: HubId, targets: &[EndpointId]) -> i64 {
    let id = jobs::create(conn, &prune(), targets).unwrap();
    coordinate(conn, id, hub).unwrap();
    id
}

fn loaded(conn: &Db, hub: HubId, only: Option<&[i64]>) -> Vec<i64> {
    load_coordinated(conn, hub, only)
        .unwrap()
        .iter()
        .map(|(job, _)| job.id)
        .collect()
}

fn a_job_is_coordinated_by_one_live_hub_and_taken_over_by_one_when_it_dies(backend: Backend) {
    let (_dir, store) = backend.open();
    let conn = store.lock();
    let (a, b, c) = (
        hub(&conn, "a", 100),
        hub(&conn, "b", 100),
        hub(&conn, "c", 100),
    );
    let targets = devices(&conn, 2);
    let (on_a, on_b) = (created(&conn, a, &targets), created(&conn, b, &targets));
    let from_before = jobs::create(&conn, &prune(), &targets).unwrap();
    assert_eq!(
        loaded(&conn, a, None),
        [on_a],
        "a hub loads only its own jobs"
    );
    assert_eq!(coordinator(&conn, on_b).unwrap(), Some(b));
    assert_eq!(coordinator(&conn, from_before).unwrap(), None);
    // Hub c starts while a and b are alive: it takes the job nobody coordinates, not theirs.
    assert_eq!(claim_orphans(&conn, c, 90).unwrap(), 1);
    assert_eq!(loaded(&conn, c, None), [from_before]);
    // Two hubs adopting a's jobs at once: the first takes them, the second finds none.
    assert_eq!(adopt(&conn, a, b).unwrap(), [on_a]);
    assert_eq!(adopt(&conn, a, c).unwrap(), Vec::<i64>::new());
    assert_eq!(loaded(&conn, b, None), [on_a, on_b]);
    assert_eq!(loaded(&conn, b, Some(&[on_a])), [on_a]);
    assert_eq!(loaded(&conn, b, Some(&[])), Vec::<i64>::new());
    // A finished job is nobody's to take; a silent hub's open ones are a starting hub's.
    jobs::finish(&conn, on_a).unwrap();
    assert_eq!(adopt(&conn, b, a).unwrap(), [on_b]);
    hubs::heartbeat(&conn, c, 200).unwrap();
    assert_eq!(
        claim_orphans(&conn, c, 101).unwrap(),
        1,
        "a is silent since 100"
    );
    assert_eq!(loaded(&conn, c, None), [on_b, from_before]);
}

fn a_devices_hub_reads_the_orders_it_holds_and_writes_what_the_device_did(backend: Backend) {
    let (_dir, store) = backend.open();
    let conn = store.lock();
    let (a, b) = (hub(&conn, "a", 100), hub(&conn, "b", 100));
    let ids = devices(&conn, 3);
    let job = created(&conn, a, &ids);
    let own = created(&conn, b, &ids);
    jobs::set_states(
        &conn,
        job,
        &[(ids[0], TargetState::Sent), (ids[1], TargetState::Sent)],
    )
    .unwrap();
    jobs::set_states(&conn, own, &[(ids[0], TargetState::Sent)]).unwrap();
    assert_eq!(
        pending_elsewhere(&conn, b, &ids).unwrap(),
        [(job, ids[0]), (job, ids[1])],
        "b resends a's orders, not its own"
    );
    assert!(mark_started(&conn, job, ids[0]).unwrap());
    assert!(!mark_started(&conn, job, ids[0]).unwrap(), "once");
    let result = OutputCapture::default().finish(job as u64, JobOutcome::Exited(0), 5);
    assert!(jobs::record_result(&conn, ids[1], &result).unwrap());
    assert!(!mark_started(&conn, job, ids[1]).unwrap(), "a result wins");
    assert_eq!(
        states_of(&conn, job, &[ids[0], ids[1], ids[2], EndpointId(999)]).unwrap(),
        [
            (ids[0], TargetState::Running),
            (ids[1], TargetState::Succeeded),
            (ids[2], TargetState::Queued)
        ]
    );
    assert_eq!(pending_elsewhere(&conn, b, &ids).unwrap(), [(job, ids[0])]);
    jobs::finish(&conn, job).unwrap();
    assert!(pending_elsewhere(&conn, b, &ids).unwrap().is_empty());

    conn.execute(
        "UPDATE endpoints SET connected = 1, held_by = ?1 WHERE id = ?2",
        [b.0, ids[2].0 as i64],
    )
    .unwrap();
    conn.execute(
        "UPDATE endpoints SET connected = 1 WHERE id = ?1",
        [ids[1].0 as i64],
    )
    .unwrap();
    assert_eq!(holders_of(&conn, &ids).unwrap(), [(ids[2], b)].into());
}

both_backends!(
    a_job_is_coordinated_by_one_live_hub_and_taken_over_by_one_when_it_dies,
    a_devices_hub_reads_the_orders_it_holds_and_writes_what_the_device_did
);
