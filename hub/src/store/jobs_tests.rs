//! Jobs in a real SQLite file: results kept once and never overwritten by a later state, counts
//! and pages, what a restarted hub reloads.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use outpost_protocol::job::{JobOutcome, JobResult, OutputCapture, MAX_OUTPUT_PART};

use super::*;
use crate::store::job_fixtures::{devices, prune};
use crate::store::test_backends::{both_backends, Backend};

fn result(id: i64, outcome: JobOutcome, output: &[u8]) -> JobResult {
    let mut capture = OutputCapture::default();
    capture.push(output);
    capture.finish(id as u64, outcome, 1_250)
}

fn a_job_is_stored_once_with_a_queued_row_per_target(backend: Backend) {
    let (_dir, store) = backend.open();
    let conn = store.lock();
    let ids = devices(&conn, 3);
    let id = create(&conn, &prune(), &ids).unwrap();
    let stored = find(&conn, id).unwrap().unwrap();
    assert_eq!(stored.job, prune());
    assert_eq!((stored.cancelled_at, stored.finished_at), (None, None));
    assert_eq!(
        counts(&conn, id).unwrap(),
        [(TargetState::Queued, 3)].into()
    );
    let rows = targets(&conn, id, None, 0, 10).unwrap();
    assert_eq!(rows.iter().map(|r| r.endpoint).collect::<Vec<_>>(), ids);
    assert_eq!(rows[0].name.as_deref(), Some("d0"));
    assert!(rows.iter().all(|r| r.outcome.is_none()));
}

fn a_result_is_kept_with_its_output_and_a_resend_or_a_late_state_changes_nothing(backend: Backend) {
    let (_dir, store) = backend.open();
    let conn = store.lock();
    let ids = devices(&conn, 2);
    let id = create(&conn, &prune(), &ids).unwrap();
    let big: Vec<u8> = (0..3 * MAX_OUTPUT_PART).map(|i| (i % 253) as u8).collect();
    let first = result(id, JobOutcome::Exited(3), &big);
    assert!(record_result(&conn, ids[0], &first).unwrap());
    let resend = result(id, JobOutcome::Exited(0), b"other");
    assert!(
        record_result(&conn, ids[0], &resend).unwrap(),
        "known target"
    );
    set_states(&conn, id, &[(ids[0], TargetState::Expired)]).unwrap();
    let kept = output(&conn, id, ids[0]).unwrap().unwrap();
    assert_eq!(kept.row.state, TargetState::Failed);
    assert_eq!(kept.row.outcome, Some(JobOutcome::Exited(3)));
    assert_eq!(kept.row.output_bytes, Some(big.len() as u64));
    assert_eq!(kept.row.duration_ms, Some(1_250));
    assert_eq!(kept.head, big[..MAX_OUTPUT_PART]);
    assert_eq!(kept.tail, big[big.len() - MAX_OUTPUT_PART..]);
    let empty = output(&conn, id, ids[1]).unwrap().unwrap();
    assert_eq!((empty.head.len(), empty.tail.len()), (0, 0));
}

fn a_result_for_a_job_or_device_it_does_not_know_stores_nothing(backend: Backend) {
    let (_dir, store) = backend.open();
    let conn = store.lock();
    let ids = devices(&conn, 2);
    let id = create(&conn, &prune(), &ids[..1]).unwrap();
    let stranger = result(id, JobOutcome::Exited(0), b"");
    assert!(!record_result(&conn, ids[1], &stranger).unwrap());
    assert!(!record_result(&conn, ids[0], &result(id + 7, JobOutcome::Exited(0), b"")).unwrap());
    assert_eq!(
        counts(&conn, id).unwrap(),
        [(TargetState::Queued, 1)].into()
    );
    assert_eq!(output(&conn, id, ids[1]).unwrap(), None);
}

fn a_failure_reason_is_stored_without_control_characters(backend: Backend) {
    let (_dir, store) = backend.open();
    let conn = store.lock();
    let ids = devices(&conn, 1);
    let id = create(&conn, &prune(), &ids).unwrap();
    let hostile = result(
        id,
        JobOutcome::Failed("no\u{1b}[2J such\ncontainer".into()),
        b"",
    );
    record_result(&conn, ids[0], &hostile).unwrap();
    let row = &targets(&conn, id, None, 0, 1).unwrap()[0];
    let Some(JobOutcome::Failed(reason)) = &row.outcome else {
        panic!("{row:?}")
    };
    assert!(!reason.chars().any(char::is_control), "{reason:?}");
}

fn pages_filter_by_state_and_list_newest_first(backend: Backend) {
    let (_dir, store) = backend.open();
    let conn = store.lock();
    let ids = devices(&conn, 5);
    let first = create(&conn, &prune(), &ids).unwrap();
    let second = create(&conn, &prune(), &ids[..1]).unwrap();
    set_states(
        &conn,
        first,
        &[(ids[1], TargetState::Sent), (ids[3], TargetState::Sent)],
    )
    .unwrap();
    let sent = targets(&conn, first, Some(TargetState::Sent), 0, 10).unwrap();
    assert_eq!(
        sent.iter().map(|r| r.endpoint).collect::<Vec<_>>(),
        vec![ids[1], ids[3]]
    );
    let page = targets(&conn, first, None, 2, 2).unwrap();
    assert_eq!(
        page.iter().map(|r| r.endpoint).collect::<Vec<_>>(),
        ids[2..4]
    );
    let (jobs, total) = list(&conn, 0, 10, None).unwrap();
    assert_eq!(total, 2);
    assert_eq!(
        jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![second, first]
    );
}

fn a_restarted_hub_reloads_only_jobs_not_finished_with_their_states(backend: Backend) {
    let (_dir, store) = backend.open();
    let conn = store.lock();
    let ids = devices(&conn, 2);
    let done = create(&conn, &prune(), &ids).unwrap();
    finish(&conn, done).unwrap();
    let open_job = create(&conn, &prune(), &ids).unwrap();
    cancel(&conn, open_job).unwrap();
    set_states(&conn, open_job, &[(ids[1], TargetState::Running)]).unwrap();
    let loaded = load_open(&conn).unwrap();
    assert_eq!(loaded.len(), 1);
    let (job, states) = &loaded[0];
    assert_eq!(job.id, open_job);
    assert!(job.cancelled_at.is_some());
    assert_eq!(
        states,
        &vec![
            (ids[0], TargetState::Queued),
            (ids[1], TargetState::Running)
        ]
    );
}

fn pruning_removes_jobs_finished_before_the_cut_with_their_rows_and_keeps_the_rest(
    backend: Backend,
) {
    let (_dir, store) = backend.open();
    let conn = store.lock();
    let ids = devices(&conn, 2);
    let old = create(&conn, &prune(), &ids).unwrap();
    record_result(
        &conn,
        ids[0],
        &result(old, JobOutcome::Exited(0), b"old output"),
    )
    .unwrap();
    finish(&conn, old).unwrap();
    conn.execute("UPDATE jobs SET finished_at = 100 WHERE id = ?1", [old])
        .unwrap();
    let recent = create(&conn, &prune(), &ids).unwrap();
    finish(&conn, recent).unwrap();
    let open_job = create(&conn, &prune(), &ids).unwrap();
    conn.execute("UPDATE jobs SET created_at = 1 WHERE id = ?1", [open_job])
        .unwrap();
    assert_eq!(prune_finished(&conn, 1_000).unwrap(), 1);
    assert_eq!(find(&conn, old).unwrap(), None);
    assert_eq!(
        output(&conn, old, ids[0]).unwrap(),
        None,
        "its output went too"
    );
    let left: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM job_targets WHERE job_id = ?1",
            [old],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);
    assert!(find(&conn, recent).unwrap().is_some());
    assert!(
        find(&conn, open_job).unwrap().is_some(),
        "open jobs stay however old"
    );
}

both_backends!(
    a_job_is_stored_once_with_a_queued_row_per_target,
    a_result_is_kept_with_its_output_and_a_resend_or_a_late_state_changes_nothing,
    a_result_for_a_job_or_device_it_does_not_know_stores_nothing,
    a_failure_reason_is_stored_without_control_characters,
    pages_filter_by_state_and_list_newest_first,
    a_restarted_hub_reloads_only_jobs_not_finished_with_their_states,
    pruning_removes_jobs_finished_before_the_cut_with_their_rows_and_keeps_the_rest
);
