//! What an enrolled but hostile device may cost the hub through stacks and jobs (issue #15): each
//! report is a store write, so a report flood, or a report on more stacks than a device runs,
//! closes the session as a protocol violation — and a real device's rollout is served meanwhile.
//! Job messages get the same treatment: only after the agent announced jobs, within their bounds
//! and rate, and a result for a job the device was never sent stores nothing.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use outpost_transport::close::CloseCodeVarint as _;
use std::time::Duration;

use outpost_hub::session::delivery::REPORT_BURST;
use outpost_hub::session::jobs::JOB_BURST;
use outpost_protocol::job::{Features, JobOutcome, JobResult, MAX_OUTPUT_PART};
use outpost_protocol::stack::{
    Phase, StackReport, StackStatus, StateDigest, MAX_STACKS_PER_DEVICE,
};
use outpost_protocol::wire::{AgentMessage, CloseCode};
use outpost_tests::raw_agent::{RawAgent, RawSession};
use outpost_tests::Hub;

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn report(stacks: usize) -> AgentMessage {
    let status = StackStatus {
        project: "pos".to_owned(),
        version: 1,
        phase: Phase::Pulling { done: 1, total: 2 },
    };
    AgentMessage::StackStatus(StackReport {
        state: StateDigest([9; 8]),
        stacks: vec![status; stacks],
    })
}

/// The close the hub sent, within 10 s.
async fn closed_as_violation(session: &RawSession) -> String {
    let closed = tokio::time::timeout(Duration::from_secs(10), session.conn.closed())
        .await
        .expect("the hub closes the session");
    match &closed {
        quinn::ConnectionError::ApplicationClosed(close)
            if CloseCode::from_varint(close.error_code) == Some(CloseCode::ProtocolViolation) =>
        {
            String::from_utf8_lossy(&close.reason).into_owned()
        }
        other => panic!("closed otherwise: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_flood_and_an_oversized_report_close_the_session_and_others_are_served() {
    let hub = blocking(Hub::start);
    let (_, key) = blocking(|| hub.create_endpoint("flooder", &[]));
    let (other, _) = blocking(|| hub.create_endpoint("other", &[]));
    let raw = RawAgent::enrol(&hub, &key).await.unwrap();

    // Twice the burst, back to back: the hub keeps the burst's worth, then closes.
    let mut session = raw.connect().await.unwrap();
    for _ in 0..2 * REPORT_BURST {
        if session.send(&report(1)).await.is_err() {
            break;
        }
    }
    let reason = closed_as_violation(&session).await;
    assert!(reason.contains("stack reports faster than"), "{reason}");

    // A report on more stacks than a device runs is refused at once.
    let mut session = raw.connect().await.unwrap();
    session
        .send(&report(MAX_STACKS_PER_DEVICE + 1))
        .await
        .unwrap();
    let reason = closed_as_violation(&session).await;
    assert!(reason.contains("a device runs at most"), "{reason}");

    // The device may come back (a real agent re-sends its last report on its next session), and
    // the hub serves everyone else throughout.
    let mut session = raw.connect().await.unwrap();
    session.send(&report(1)).await.unwrap();
    let shown = blocking(|| hub.show(other));
    assert_eq!(shown["name"], "other");
    assert!(
        tokio::time::timeout(Duration::from_secs(2), session.conn.closed())
            .await
            .is_err(),
        "one report is fine"
    );
}

fn result(id: u64, head: usize, output_bytes: u64) -> AgentMessage {
    AgentMessage::JobResult(JobResult {
        id,
        outcome: JobOutcome::Exited(0),
        head: vec![b'x'; head],
        tail: vec![],
        output_bytes,
        duration_ms: 1,
    })
}

/// Jobs (wire version 4) through the same door: a job message before the agent announced jobs,
/// a second announcement, a result whose output does not add up, and a flood past the burst each
/// close the session; results for jobs the device was never sent store nothing; the hub serves
/// others throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_job_messages_close_the_session_and_store_nothing() {
    let hub = blocking(Hub::start);
    let (_, key) = blocking(|| hub.create_endpoint("forger", &[]));
    let (other, _) = blocking(|| hub.create_endpoint("other", &[]));
    let raw = RawAgent::enrol(&hub, &key).await.unwrap();

    let mut session = raw.connect().await.unwrap();
    session.send(&result(1, 1, 1)).await.unwrap();
    let reason = closed_as_violation(&session).await;
    assert!(reason.contains("did not announce jobs"), "{reason}");

    let mut session = raw.connect().await.unwrap();
    let announce = AgentMessage::Features(Features::JOBS);
    session.send(&announce).await.unwrap();
    session.send(&announce).await.unwrap();
    let reason = closed_as_violation(&session).await;
    assert!(reason.contains("announced twice"), "{reason}");

    let mut session = raw.connect().await.unwrap();
    session.send(&announce).await.unwrap();
    let forged = result(1, MAX_OUTPUT_PART + 1, u64::MAX);
    session.send(&forged).await.unwrap();
    let reason = closed_as_violation(&session).await;
    assert!(reason.contains("does not add up"), "{reason}");

    let mut session = raw.connect().await.unwrap();
    session.send(&announce).await.unwrap();
    for _ in 0..2 * JOB_BURST {
        if session
            .send(&AgentMessage::JobStarted { id: 7 })
            .await
            .is_err()
        {
            break;
        }
    }
    let reason = closed_as_violation(&session).await;
    assert!(reason.contains("job messages faster than"), "{reason}");

    // Well-formed results for a job it was never sent (another device's): accepted on the wire,
    // stored nowhere — the other device's row still waits for its own agent.
    let other_id = other.to_string();
    let created = blocking(|| {
        hub.cli(&[
            "job",
            "run",
            "--endpoint",
            &other_id,
            "--json",
            "--",
            "POST",
            "/images/prune",
        ])
    });
    assert!(created.status.success(), "{created:?}");
    let job: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    let job_id = job["id"].as_u64().unwrap();
    let mut session = raw.connect().await.unwrap();
    session.send(&announce).await.unwrap();
    for _ in 0..50 {
        session.send(&result(job_id, 10, 10)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let shown = blocking(|| hub.cli(&["job", "show", &job_id.to_string(), "--json"]));
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    let counts = &shown["counts"];
    assert_eq!(
        (counts["queued"].as_u64(), counts["succeeded"].as_u64()),
        (Some(1), Some(0)),
        "{shown}"
    );
    let shown = blocking(|| hub.show(other));
    assert_eq!(shown["name"], "other");
    assert!(
        tokio::time::timeout(Duration::from_secs(1), session.conn.closed())
            .await
            .is_err(),
        "well-formed results within the allowance keep the session"
    );
}
