//! Total outages of the device's link (the netem relay drops everything both ways).
//!
//! - 30 s, shorter than the QUIC idle timeout (110 s): a `docker logs -f` and a `docker exec -i`
//!   running across it end normally with complete output; nothing is reconnected.
//! - 3 minutes, longer than the idle timeout: the hub shows the device offline within its
//!   documented bound (2 × check-in interval + 10 s, `HubContext::stale_after`), the agent reconnects
//!   by itself after the link returns (backoff capped at 60 s), and the next `docker ps` works
//!   without an administrator doing anything.
//!
//! The hub checks in every second here (the harness's test timing), so offline shows within 12 s.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::io::Write as _;
use std::time::Duration;

use outpost_netem::control::Controllable;
use outpost_tests::docker::{chatter, direct_logs, numbered_lines, require_engine, sha256_bytes};
use outpost_tests::link::{DeviceOptions, RelayedDevice};
use tokio::time::Instant;

const SHORT_OUTAGE: Duration = Duration::from_secs(30);
const LONG_OUTAGE: Duration = Duration::from_secs(180);
/// Check-in interval of the test hub (`--checkin-interval 1s` in the harness).
const CHECKIN: Duration = Duration::from_secs(1);
/// docs/architecture.md, Session: offline after 2 × interval + 10 s without a check-in.
fn stale_after() -> Duration {
    CHECKIN * 2 + Duration::from_secs(10)
}
/// How long after the link returns a stream may take to resume: the first check-in after the
/// outage (≤ 1 interval) is acknowledged, and that ACK makes QUIC declare the outage's packets lost
/// and resend them at once; without it, the next probe timeout comes at most one outage length
/// later (the PTO doubles while nothing is acknowledged). Half the outage plus 5 s bounds the first
/// case with room for a slow CI machine while still failing if recovery waits for the backed-off PTO.
fn resume_within(outage: Duration) -> Duration {
    outage / 2 + Duration::from_secs(5)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30_s_outage_during_logs_follow_loses_nothing() {
    require_engine();
    let d = RelayedDevice::start("outage-logs", DeviceOptions::default()).await;
    // 100 numbered lines with noise, one pair every 0.5 s: ~50 s, the outage in the middle.
    let script = chatter(100, 500, "0.5");
    let container =
        tokio::task::block_in_place(|| d.docker.start("outage-logs", &["sh", "-c", &script]));
    let mut follower = d.docker.follow(&["logs", "-f", &container.name]);
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(!follower.has_exited(), "logs -f ended before the outage");
    d.link.outage(SHORT_OUTAGE);
    let cut = Instant::now();
    tokio::time::sleep(SHORT_OUTAGE).await;
    assert!(
        !follower.has_exited(),
        "logs -f ended during the outage ({:?} in)",
        cut.elapsed()
    );
    let back = Instant::now();
    let followed = tokio::task::block_in_place(|| follower.finish(Duration::from_secs(90)));
    let ended = back.elapsed();
    println!("logs -f ended {ended:?} after the link returned");
    assert!(followed.status.success(), "logs -f: {}", followed.stderr);
    // The container writes for about 50 s from its start, so about 12 s of it remain when the link
    // returns; the stream must catch up within resume_within on top of that.
    let bound = Duration::from_secs(12) + resume_within(SHORT_OUTAGE);
    assert!(
        ended <= bound,
        "logs -f ended {ended:?} after the link returned"
    );
    assert!(followed.stderr.is_empty(), "{}", followed.stderr);
    let numbered: Vec<String> = followed
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("line "))
        .collect();
    assert_eq!(numbered, numbered_lines(100));
    let engine = tokio::task::block_in_place(|| direct_logs(&container.name));
    assert_eq!(sha256_bytes(&followed.stdout), sha256_bytes(&engine));
    let dropped = d.link.counters();
    assert!(
        dropped.up.dropped_outage + dropped.down.dropped_outage > 0,
        "the outage dropped nothing: {dropped}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30_s_outage_during_exec_stdin_loses_nothing() {
    require_engine();
    let d = RelayedDevice::start("outage-exec", DeviceOptions::default()).await;
    let container =
        tokio::task::block_in_place(|| d.docker.start("outage-exec", &["sleep", "600"]));
    let mut exec = d.docker.follow_with_stdin(&[
        "exec",
        "-i",
        &container.name,
        "sh",
        "-c",
        "while read l; do echo \"got $l\"; done; echo done",
    ]);
    let feed = |from: u32, to: u32, exec: &mut outpost_tests::docker::Follower| {
        for i in from..to {
            writeln!(exec.stdin(), "{i}").unwrap();
        }
        exec.stdin().flush().unwrap();
    };
    feed(0, 10, &mut exec);
    tokio::time::sleep(Duration::from_secs(3)).await;
    d.link.outage(SHORT_OUTAGE);
    // Input typed during the outage waits in the hub's stream; more comes after the link returns.
    tokio::time::sleep(Duration::from_secs(5)).await;
    feed(10, 20, &mut exec);
    tokio::time::sleep(SHORT_OUTAGE - Duration::from_secs(5)).await;
    assert!(!exec.has_exited(), "exec ended during the outage");
    let back = Instant::now();
    feed(20, 30, &mut exec);
    tokio::time::sleep(Duration::from_secs(1)).await;
    exec.close_stdin();
    let done = tokio::task::block_in_place(|| exec.finish(resume_within(SHORT_OUTAGE) * 2));
    println!("exec ended {:?} after the link returned", back.elapsed());
    assert!(done.status.success(), "exec -i: {}", done.stderr);
    let mut expected: Vec<String> = (0..30).map(|i| format!("got {i}")).collect();
    expected.push("done".into());
    assert_eq!(done.lines(), expected);
    assert!(
        back.elapsed() < resume_within(SHORT_OUTAGE) + Duration::from_secs(1),
        "exec took {:?} to finish after the link returned",
        back.elapsed()
    );
}

/// Polls the endpoint every 500 ms until it shows `status`; returns when it was first seen.
async fn seen_status(d: &RelayedDevice, status: &str, timeout: Duration) -> Instant {
    let started = Instant::now();
    loop {
        let shown = tokio::task::block_in_place(|| d.hub.show(d.id));
        if shown["status"] == status {
            return Instant::now();
        }
        assert!(
            started.elapsed() < timeout,
            "endpoint not {status} after {timeout:?}: {shown}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3_minute_outage_shows_offline_in_bound_and_heals_by_itself() {
    require_engine();
    let d = RelayedDevice::start("outage-long", DeviceOptions::default()).await;
    tokio::task::block_in_place(|| d.docker.ok(&["ps"]));
    d.link.outage(LONG_OUTAGE);
    let cut = Instant::now();

    // The last check-in landed at most one interval before the cut; offline once stale_after has
    // passed since it, and the poll sees it within 0.5 s plus one admin call.
    let offline = seen_status(&d, "offline", stale_after() + Duration::from_secs(5)).await;
    let shown_after = offline - cut;
    println!(
        "offline shown {shown_after:?} after the link went down (bound {:?})",
        stale_after() + Duration::from_secs(2)
    );
    assert!(shown_after <= stale_after() + Duration::from_secs(2));
    // Not before the check-ins went stale either: a link that is merely silent for a while is not
    // reported offline (the connection itself lives on until the idle timeout).
    assert!(
        shown_after >= stale_after() - CHECKIN,
        "offline after only {shown_after:?}"
    );
    // An admin asking meanwhile is told at once that the device is offline.
    let asked = Instant::now();
    let refused = tokio::task::block_in_place(|| d.docker.run(&["ps"]));
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("offline"), "{why}");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );

    tokio::time::sleep_until(cut + LONG_OUTAGE).await;
    let back = Instant::now();
    // The connection died at the idle timeout (110 s); the agent has been redialling with full
    // jitter, ceiling doubling from 1 s to its 60 s cap; a failed dial costs at most its handshake
    // timeout (10 × the lan profile's 50 ms initial RTT + 15 s of room for a busy hub's admission
    // queue = 15.5 s). Worst case, a dial that started just before the link returned times out,
    // then the next starts within one cap, and the handshake, hello and first check-in take a few
    // round trips: standby within 15.5 s + 60 s + 5 s of slack.
    let bound = Duration::from_secs(60) + Duration::from_millis(15_500) + Duration::from_secs(5);
    let standby = seen_status(&d, "standby", bound).await;
    println!(
        "standby again {:?} after the link returned (bound {bound:?})",
        standby - back
    );
    let asked = Instant::now();
    tokio::task::block_in_place(|| d.docker.ok(&["ps"]));
    println!("the next docker ps took {:?}", asked.elapsed());
    let mut agent = d.agent;
    let log = agent.log();
    let story: Vec<&str> = log
        .lines()
        .filter(|l| {
            !l.contains("check-ins") && (l.contains("WARN") || l.contains("connected to the hub"))
        })
        .collect();
    println!("the agent's view:\n{}", story.join("\n"));
    assert!(agent.is_running(), "the agent gave up: {}", agent.log());
    assert!(
        agent.log().contains("reconnecting after backoff"),
        "the agent never reconnected: {}",
        agent.log()
    );
}
