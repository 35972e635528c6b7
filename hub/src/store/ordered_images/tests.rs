//! What a device was ordered to run or pull, on both backends: stacks deployed to it, live jobs
//! aimed at it, and nothing of another device's or of a cancelled or settled, expired job.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use outpost_protocol::job::{JobOutcome, JobSpec, OutputCapture};
use outpost_protocol::stack::{ServiceSpec, StackSpec};
use outpost_protocol::Secret;

use super::*;
use crate::jobs::TargetState;
use crate::store::deployments::assign;
use crate::store::endpoints::{self, EndpointKind};
use crate::store::jobs::{self, NewJob};
use crate::store::rollouts::Selector;
use crate::store::stacks::save_version;
use crate::store::test_backends::{both_backends, Backend};
use crate::store::tests::new_endpoint;
use crate::store::unix_now;

fn device(conn: &Db, name: &str) -> EndpointId {
    let new = new_endpoint(name, EndpointKind::Device, &Secret::generate(), None);
    endpoints::create(conn, &new, 0).unwrap().id
}

fn deploy(conn: &mut Db, to: EndpointId, project: &str, images: &[&str]) {
    let services = images
        .iter()
        .enumerate()
        .map(|(i, image)| ServiceSpec::new(format!("s{i}"), *image))
        .collect();
    let spec = |version| StackSpec {
        project: project.to_owned(),
        version,
        services,
        volumes: vec![],
    };
    save_version(conn, project, project, |v| Ok::<_, ()>(spec(v)))
        .unwrap()
        .unwrap();
    assign(conn, to, project, 1, false).unwrap();
}

fn job(conn: &Db, spec: JobSpec, targets: &[EndpointId], expires_at: i64) -> i64 {
    let new = NewJob {
        spec,
        selector: Selector::default(),
        concurrency: 10,
        timeout_ms: 60_000,
        expires_at,
    };
    jobs::create(conn, &new, targets).unwrap()
}

fn pull(image: &str) -> JobSpec {
    JobSpec::PullImage {
        image: image.into(),
    }
}

fn stacks_and_live_jobs_name_a_devices_images_and_no_one_elses(backend: Backend) {
    let (_place, store) = backend.open();
    let mut conn = store.lock();
    let kiosk = device(&conn, "kiosk");
    let till = device(&conn, "till");
    let now = unix_now();
    assert!(ordered_images(&conn, kiosk, now).unwrap().is_empty());

    deploy(
        &mut conn,
        kiosk,
        "pos",
        &["pos/web:4", "redis:7", "pos/web:4"],
    );
    deploy(&mut conn, till, "till", &["till/app:1"]);
    job(
        &conn,
        pull("198.18.0.1:5000/pos/agent:2"),
        &[kiosk],
        now + 3600,
    );
    let run = JobSpec::Run {
        image: "busybox".into(),
        cmd: vec![],
    };
    job(&conn, run, &[kiosk, till], now + 3600);
    job(&conn, pull("secret/other:1"), &[till], now + 3600);
    let engine = JobSpec::Engine {
        method: outpost_protocol::job::EngineMethod::Post,
        path: "/images/prune".into(),
        body: vec![],
    };
    job(&conn, engine, &[kiosk], now + 3600);

    assert_eq!(
        ordered_images(&conn, kiosk, now).unwrap(),
        [
            "pos/web:4",
            "redis:7",
            "198.18.0.1:5000/pos/agent:2",
            "busybox"
        ]
    );
    assert_eq!(
        ordered_images(&conn, till, now).unwrap(),
        ["till/app:1", "busybox", "secret/other:1"]
    );
}

fn a_cancelled_job_or_one_expired_and_settled_orders_nothing(backend: Backend) {
    let (_place, store) = backend.open();
    let conn = store.lock();
    let kiosk = device(&conn, "kiosk");
    let now = unix_now();
    let cancelled = job(&conn, pull("pos/cancelled:1"), &[kiosk], now + 3600);
    jobs::cancel(&conn, cancelled).unwrap();
    let pulled = job(&conn, pull("pos/pulled:1"), &[kiosk], now + 3600);
    let mut output = OutputCapture::default();
    output.push(b"pulled");
    let result = output.finish(pulled as u64, JobOutcome::Exited(0), 10);
    assert!(jobs::record_result(&conn, kiosk, &result).unwrap());
    let running = job(&conn, pull("pos/running:1"), &[kiosk], now - 10);
    jobs::set_states(&conn, running, &[(kiosk, TargetState::Running)]).unwrap();
    let expired = job(&conn, pull("pos/expired:1"), &[kiosk], now - 10);
    jobs::set_states(&conn, expired, &[(kiosk, TargetState::Expired)]).unwrap();

    // A pull that succeeded stays ordered until its job expires (the engine may have pruned it);
    // one past its expiry still running there goes on.
    assert_eq!(
        ordered_images(&conn, kiosk, now).unwrap(),
        ["pos/pulled:1", "pos/running:1"]
    );
    assert_eq!(
        ordered_images(&conn, kiosk, now + 7200).unwrap(),
        ["pos/running:1"]
    );
}

both_backends!(
    stacks_and_live_jobs_name_a_devices_images_and_no_one_elses,
    a_cancelled_job_or_one_expired_and_settled_orders_nothing
);
