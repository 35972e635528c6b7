//! What an enrolled but hostile device may cost the hub (issue #12, item 4): a pending device's
//! unsolicited `Ready` takes no window grant and opens no stream, and a snapshot flood is bounded
//! in store writes and stored size while admins and real agents keep being served. Each test
//! speaks raw QUIC with a real agent certificate ([`outpost_tests::raw_agent`]).

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use outpost_transport::close::CloseCodeVarint as _;
use std::time::Duration;

use outpost_api::NewEndpoint;
use outpost_hub::registry::MAX_STORED_SNAPSHOT;
use outpost_protocol::snapshot::{ContainerSummary, EngineSnapshot, PENDING_SNAPSHOT_BUDGET};
use outpost_protocol::wire::{AgentMessage, CloseCode, HubMessage};
use outpost_tests::raw_agent::RawAgent;
use outpost_tests::{wait_for, Agent, Hub};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::time::Instant;

/// Run a blocking harness call (processes, HTTPS) from the async test.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn snapshot(taken_at: i64, containers: usize, image: &str) -> AgentMessage {
    AgentMessage::Snapshot(EngineSnapshot {
        taken_at,
        containers_running: containers as u32,
        containers: (0..containers)
            .map(|i| ContainerSummary {
                id: format!("{i:012}"),
                image: image.to_owned(),
                ..ContainerSummary::default()
            })
            .collect(),
        ..EngineSnapshot::default()
    })
}

/// A real agent on `key`, once the hub shows it in standby.
fn real_agent(hub: &Hub, id: u64, key: &str) -> Agent {
    let dir = hub.data_dir.parent().unwrap().join(format!("agent-{id}"));
    let agent = Agent::start(&dir, &[("EDGE_KEY", key)]);
    hub.wait_status(id, "standby", Duration::from_secs(20));
    agent
}

/// The hub's end-of-session count of snapshots for `endpoint`: `(admitted, refused)`.
fn refusal_report(hub: &Hub, endpoint: u64) -> (u64, u64) {
    let field = |line: &str, name: &str| -> u64 {
        let start = line.find(name).unwrap() + name.len();
        let digits: String = line[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().unwrap()
    };
    wait_for(Duration::from_secs(20), "the hub's snapshot report", || {
        hub.log()
            .lines()
            .find(|l| l.contains("were refused") && l.contains(&format!("endpoint={endpoint} ")))
            .map(|l| {
                (
                    field(l, "snapshots.admitted="),
                    field(l, "snapshots.refused="),
                )
            })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsolicited_ready_from_a_pending_device_gets_no_grant_and_no_stream() {
    // A window budget of nothing: exactly one grant, which the pending device must not take.
    let hub = blocking(|| Hub::start_with_flags(&["--window-budget-mib", "0"]));
    let (_, fleet_key) = blocking(|| hub.create_endpoint("fleet", &["--fleet"]));
    let (real_id, real_key) = blocking(|| hub.create_endpoint("real", &[]));
    let raw = RawAgent::enrol(&hub, &fleet_key).await.unwrap();
    assert!(raw.pending);
    let id = raw.endpoint.0;
    let mut session = raw.connect().await.unwrap();
    session.check_in(0).unwrap();

    // Ready for every summon id the hub could have used, then more snapshots than a pending
    // device's allowance, the first one far over its size.
    for summon in 0..64 {
        session
            .send(&AgentMessage::Ready { id: summon })
            .await
            .unwrap();
    }
    session
        .send(&snapshot(1, 100, &"i".repeat(200)))
        .await
        .unwrap();
    for taken_at in 2..12 {
        session.send(&snapshot(taken_at, 1, "small")).await.unwrap();
    }
    // The snapshot follows the Readys on the control stream: once it shows, they were all read.
    let shown = blocking(|| {
        wait_for(
            Duration::from_secs(20),
            "the pending device's snapshot",
            || {
                let shown = hub.show(id);
                shown["snapshot"].is_object().then_some(shown)
            },
        )
    });
    assert_eq!(shown["status"], "pending");
    assert_eq!(shown["full_windows"], false, "{shown}");
    let stored = &shown["snapshot"];
    assert_eq!(stored["taken_at"], 1);
    assert_eq!(stored["containers_running"], 100);
    let listed = stored["containers"].as_array().unwrap().len();
    assert!(
        (1..PENDING_SNAPSHOT_BUDGET / 200).contains(&listed),
        "trimmed to the pending budget: {listed}"
    );

    // Nothing summons a pending device or opens a stream to it.
    let summon = hub.api().summon(id).await.unwrap_err();
    assert_eq!(summon.status(), Some(StatusCode::CONFLICT), "{summon}");
    let ping = blocking(|| hub.api_call("GET", &format!("/api/endpoints/{id}/docker/_ping"), None));
    assert_eq!(ping.status, 409, "{}", String::from_utf8_lossy(&ping.body));
    let opened = tokio::time::timeout(Duration::from_secs(2), session.conn.accept_bi()).await;
    assert!(
        opened.is_err(),
        "the hub opened a stream to a pending device"
    );

    // The one grant is still there for a real device's summon.
    let _agent = blocking(|| real_agent(&hub, real_id, &real_key));
    hub.api().summon(real_id).await.unwrap();
    assert_eq!(blocking(|| hub.show(real_id))["full_windows"], true);

    session.send.finish().unwrap();
    assert_eq!(blocking(|| refusal_report(&hub, id)), (1, 10));
}

/// The measured attack: 788 snapshot frames in 25 s from one device. The test runs it for
/// [`FLOOD_TIME`] at that pace.
const FLOOD_PACE: Duration = Duration::from_micros(25_000_000 / 788);
const FLOOD_TIME: Duration = Duration::from_secs(12);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_flood_is_bounded_while_admins_and_real_agents_are_served() {
    let hub = blocking(Hub::start);
    let (flood_id, flood_key) = blocking(|| hub.create_endpoint("flooder", &[]));
    let (real_id, real_key) = blocking(|| hub.create_endpoint("real", &[]));
    let _agent = blocking(|| real_agent(&hub, real_id, &real_key));
    let raw = RawAgent::enrol(&hub, &flood_key).await.unwrap();
    assert!(!raw.pending);
    let mut session = raw.connect().await.unwrap();

    // Alternately a frame of quotes just inside the budget, which JSON escapes to twice its size,
    // and one of control bytes that sanitizing would triple past it.
    let flood = tokio::spawn(async move {
        let started = Instant::now();
        let mut sent = 0;
        while started.elapsed() < FLOOD_TIME {
            let frame = if sent % 2 == 0 {
                snapshot(sent, 1, &"\"".repeat(60_000))
            } else {
                snapshot(sent, 1, &"\0".repeat(200_000))
            };
            session.send(&frame).await.unwrap();
            sent += 1;
            tokio::time::sleep(FLOOD_PACE).await;
        }
        session.send.finish().unwrap();
        (session, sent as u64, started.elapsed())
    });

    // While it runs: admin writes stay prompt, and the real agent answers summons.
    let mut latencies = Vec::new();
    while !flood.is_finished() {
        let started = Instant::now();
        let new = NewEndpoint::device(format!("admin-{}", latencies.len()));
        let api = blocking(|| hub.api());
        api.create_endpoint(&new).await.unwrap();
        latencies.push(started.elapsed());
        api.summon(real_id).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (_session, sent, took) = flood.await.unwrap();
    latencies.sort();
    println!(
        "{sent} snapshot frames in {took:?}; {} admin writes meanwhile, median {:?}, max {:?}",
        latencies.len(),
        latencies[latencies.len() / 2],
        latencies.last().unwrap()
    );
    // Each call is a fresh HTTPS connection from a debug build on a shared 2-core machine: the
    // bound is generous, what it catches is writes queued behind hundreds of snapshot upserts.
    assert!(latencies.len() >= 5, "{latencies:?}");
    assert!(
        latencies.iter().all(|l| *l < Duration::from_secs(2)),
        "{latencies:?}"
    );

    let (admitted, refused) = blocking(|| refusal_report(&hub, flood_id));
    println!("the hub admitted {admitted} and refused {refused}");
    assert_eq!(admitted + refused, sent, "every frame was read and counted");
    // One token at the start (the first frame, quotes, takes it), one per 10 s after; the burst
    // of three needs 20 s idle first. A refused oversize frame spends its token too.
    let bound = 1 + took.as_secs() / 10 + 1;
    assert!(
        (1..=bound).contains(&admitted),
        "{admitted} stored, at most {bound}"
    );

    let shown = blocking(|| hub.show(flood_id));
    let stored = serde_json::to_string(&shown["snapshot"]).unwrap().len();
    println!("stored snapshot: {stored} bytes of JSON");
    assert!(stored <= MAX_STORED_SNAPSHOT, "{stored}");
    let real = blocking(|| hub.show(real_id));
    assert!(
        ["active", "standby"].contains(&real["status"].as_str().unwrap()),
        "{real}"
    );
    assert_eq!(
        shown["snapshot"]["containers"][0]["image"],
        Value::String("\"".repeat(60_000))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_gets_one_certificate_renewal_and_a_second_request_closes_it() {
    let hub = blocking(Hub::start);
    let (_, key) = blocking(|| hub.create_endpoint("renewing", &[]));
    let raw = RawAgent::enrol(&hub, &key).await.unwrap();
    let mut session = raw.connect().await.unwrap();
    session.send(&raw.renewal().unwrap()).await.unwrap();
    let renewed = tokio::time::timeout(Duration::from_secs(10), session.read())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(renewed, HubMessage::Renewed { .. }), "{renewed:?}");

    // Asking again would cost the hub a signature and a store write each time: refused at once.
    session.send(&raw.renewal().unwrap()).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), session.conn.closed())
        .await
        .unwrap();
    assert!(
        matches!(&closed, quinn::ConnectionError::ApplicationClosed(c)
            if CloseCode::from_varint(c.error_code) == Some(CloseCode::ProtocolViolation)),
        "{closed:?}"
    );
    // The device itself is still welcome on its next connection.
    raw.connect().await.unwrap();
}
