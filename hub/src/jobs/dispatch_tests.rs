//! The dispatch rules on a virtual clock.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use super::*;

const START: SystemTime = SystemTime::UNIX_EPOCH;
const EXPIRES: Duration = Duration::from_secs(3_600);
const TIMEOUT: Duration = Duration::from_secs(600);

fn ids(range: std::ops::Range<u64>) -> Vec<EndpointId> {
    range.map(EndpointId).collect()
}

fn job(targets: u64, concurrency: u32) -> Dispatch {
    Dispatch::new(
        concurrency,
        START + EXPIRES,
        TIMEOUT,
        ids(1..targets + 1)
            .into_iter()
            .map(|id| (id, TargetState::Queued)),
        false,
    )
}

fn at(secs: u64) -> SystemTime {
    START + Duration::from_secs(secs)
}

fn count(dispatch: &Dispatch, state: TargetState) -> u32 {
    dispatch.counts().get(&state).copied().unwrap_or(0)
}

#[test]
fn only_online_devices_are_sent_the_job_and_no_more_than_the_concurrency() {
    let mut job = job(10, 3);
    assert_eq!(job.poll(at(1)).send, vec![], "nobody online");
    for id in ids(1..6) {
        job.online(id);
    }
    let poll = job.poll(at(2));
    assert_eq!(poll.send, ids(1..4));
    assert_eq!(
        poll.changes,
        ids(1..4)
            .into_iter()
            .map(|id| (id, TargetState::Sent))
            .collect::<Vec<_>>()
    );
    assert_eq!(job.poll(at(3)).send, vec![], "every place taken");
    job.started(EndpointId(1));
    job.settled(EndpointId(1), TargetState::Succeeded);
    assert_eq!(job.poll(at(4)).send, ids(4..5), "a result frees a place");
    assert!(!job.poll(at(5)).finished);
}

#[test]
fn a_device_that_goes_offline_gives_its_place_up_and_is_sent_the_job_again_on_return() {
    let mut job = job(3, 1);
    job.online(EndpointId(1));
    job.online(EndpointId(2));
    assert_eq!(job.poll(at(1)).send, ids(1..2));
    job.offline(EndpointId(1));
    assert_eq!(
        job.poll(at(2)).send,
        ids(2..3),
        "its place went to the next"
    );
    job.online(EndpointId(1));
    let poll = job.poll(at(3));
    assert_eq!(poll.send, ids(1..2), "sent again, however full");
    assert!(poll.changes.is_empty(), "still sent: nothing to store");
}

#[test]
fn a_new_session_of_a_device_already_online_is_sent_the_job_again() {
    let mut job = job(1, 5);
    job.online(EndpointId(1));
    assert_eq!(job.poll(at(1)).send, ids(1..2));
    job.online(EndpointId(1));
    assert_eq!(job.poll(at(2)).send, ids(1..2));
    job.settled(EndpointId(1), TargetState::Failed);
    job.online(EndpointId(1));
    assert_eq!(
        job.poll(at(3)).send,
        vec![],
        "a settled device is never sent it again"
    );
}

#[test]
fn at_expiry_what_never_started_expires_and_started_ones_are_lost_after_the_timeout() {
    let mut job = job(4, 10);
    job.online(EndpointId(1));
    job.online(EndpointId(2));
    job.poll(at(1));
    job.started(EndpointId(2));
    let poll = job.poll(START + EXPIRES);
    let mut expired: Vec<_> = poll
        .changes
        .iter()
        .filter(|(_, s)| *s == TargetState::Expired)
        .map(|(id, _)| id.0)
        .collect();
    expired.sort();
    assert_eq!(
        expired,
        vec![1, 3, 4],
        "sent but not started counts as never reached"
    );
    assert!(!poll.finished, "device 2 is running");
    job.online(EndpointId(3));
    assert_eq!(
        job.poll(START + EXPIRES).send,
        vec![],
        "no sends once expired"
    );
    let poll = job.poll(START + EXPIRES + TIMEOUT);
    assert_eq!(poll.changes, vec![(EndpointId(2), TargetState::Lost)]);
    assert!(poll.finished);
}

#[test]
fn a_late_result_replaces_expired() {
    let mut job = job(1, 1);
    job.online(EndpointId(1));
    job.poll(at(1));
    job.poll(START + EXPIRES);
    assert_eq!(count(&job, TargetState::Expired), 1);
    job.settled(EndpointId(1), TargetState::Succeeded);
    assert_eq!(count(&job, TargetState::Succeeded), 1);
    assert!(job.poll(START + EXPIRES).finished);
}

#[test]
fn cancelling_stops_what_has_not_started_and_lets_running_ones_finish() {
    let mut job = job(5, 2);
    for id in ids(1..6) {
        job.online(id);
    }
    job.poll(at(1));
    job.started(EndpointId(1));
    job.offline(EndpointId(5));
    assert_eq!(
        job.cancel(),
        ids(1..3),
        "online devices holding it: running 1, sent 2"
    );
    let poll = job.poll(at(2));
    assert_eq!(poll.send, vec![], "nothing more is sent");
    assert_eq!(count(&job, TargetState::Cancelled), 4);
    assert_eq!(count(&job, TargetState::Running), 1);
    assert!(!poll.finished);
    job.settled(EndpointId(1), TargetState::Succeeded);
    assert!(job.poll(at(3)).finished);
}

#[test]
fn an_order_that_could_not_be_queued_waits_its_turn_again() {
    let mut job = job(2, 1);
    job.online(EndpointId(1));
    job.online(EndpointId(2));
    assert_eq!(job.poll(at(1)).send, ids(1..2));
    job.unsent(EndpointId(1));
    let poll = job.poll(at(2));
    assert_eq!(poll.send, ids(1..2), "first in device order again");
    assert!(poll.changes.contains(&(EndpointId(1), TargetState::Queued)));
}

#[test]
fn a_restored_job_keeps_its_states_and_resends_to_devices_that_held_it() {
    let mut job = Dispatch::new(
        1,
        START + EXPIRES,
        TIMEOUT,
        [
            (EndpointId(1), TargetState::Succeeded),
            (EndpointId(2), TargetState::Running),
            (EndpointId(3), TargetState::Queued),
        ],
        false,
    );
    job.online(EndpointId(3));
    assert_eq!(
        job.poll(at(1)).send,
        ids(3..4),
        "nobody online holds the job yet"
    );
    job.online(EndpointId(2));
    assert_eq!(job.poll(at(2)).send, ids(2..3));
    let restored_cancelled = Dispatch::new(
        5,
        START + EXPIRES,
        TIMEOUT,
        [(EndpointId(1), TargetState::Queued)],
        true,
    );
    let mut cancelled = restored_cancelled;
    cancelled.online(EndpointId(1));
    assert_eq!(
        cancelled.poll(at(1)).send,
        vec![],
        "a cancelled job sends nothing"
    );
}

#[test]
fn events_for_devices_that_are_not_targets_change_nothing() {
    let mut job = job(1, 1);
    let stranger = EndpointId(99);
    job.online(stranger);
    job.started(stranger);
    job.settled(stranger, TargetState::Succeeded);
    job.offline(stranger);
    job.unsent(stranger);
    let poll = job.poll(at(1));
    assert_eq!(poll, Poll::default());
    assert_eq!(count(&job, TargetState::Queued), 1);
}
