//! A device in standby takes an admin's first request a round trip sooner: its agent grants the
//! hub one stream of credit in standby (`outpost_protocol::stream::STANDBY_STREAMS`), so the
//! request crosses beside the summon instead of after the summon's `Ready`. The whole product on
//! a clean 1 s round trip through the in-process netem relay: the hub, a real agent, dockerd.
//!
//! Before, the request took at least two round trips (the summon's, then its own); now one, plus
//! the engine's few milliseconds. The bound sits halfway between, far from either on a busy
//! machine. The summon still goes and is answered: the device shows `active`, and the hub's
//! summon histogram counts it. An agent from before grants no standby credit, and the hub's
//! stream then waits for the `Ready` as it always did (a raw QUIC agent plays it).
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::sync::Arc;
use std::time::Duration;

use outpost_netem::Profile;
use outpost_protocol::stream;
use outpost_protocol::wire::{AgentMessage, HubMessage};
use outpost_tests::docker::require_engine;
use outpost_tests::link::{DeviceOptions, RelayedDevice};
use outpost_tests::raw_agent::RawAgent;
use outpost_tests::{metric, Hub};
use tokio::time::Instant;

/// A long, clean path: the round trips are what is counted, not loss or rate.
const LINK: &str = r#"
description = "standby stream test: 1 s round trip, no loss"
[both]
delay = "500ms"
[up]
rate = "10mbit"
queue = "512KB"
[down]
rate = "10mbit"
queue = "512KB"
"#;
const RTT: Duration = Duration::from_secs(1);
const SUMMONS: &str = "outpost_hub_summon_duration_seconds_count";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_request_to_a_device_in_standby_crosses_beside_its_summon() {
    require_engine();
    let dir = tempfile::tempdir().unwrap();
    let options = DeviceOptions {
        profile: Profile::from_toml("standby-stream", LINK, dir.path()).unwrap(),
        transport: "satellite",
        hub_flags: vec!["--transport".into(), "satellite".into()],
        ready_within: Duration::from_secs(60),
        ..DeviceOptions::default()
    };
    let d = RelayedDevice::start("standby-stream", options).await;
    let (shown, summons) =
        tokio::task::block_in_place(|| (d.hub.show(d.id), metric(&d.hub.metrics(), SUMMONS)));
    assert_eq!(shown["status"], "standby", "{shown}");

    let path = format!("/api/endpoints/{}/docker/version", d.id);
    let started = Instant::now();
    let answer = tokio::task::block_in_place(|| d.hub.api_call("GET", &path, None));
    let took = started.elapsed();
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    eprintln!("GET /version on a device in standby, {RTT:?} round trip: {took:?}");
    assert!(
        took < RTT * 3 / 2,
        "the request waited for its summon's answer: {took:?} on a {RTT:?} round trip"
    );

    // The summon went beside the stream, and its answer made the session active.
    tokio::task::block_in_place(|| {
        d.hub.wait_status(d.id, "active", Duration::from_secs(10));
        outpost_tests::wait_for(Duration::from_secs(10), "the summon counted", || {
            (metric(&d.hub.metrics(), SUMMONS) == summons + 1).then_some(())
        });
    });
}

/// An agent from before standby credit grants none: the hub's stream waits for the credit that
/// comes with the summon's `Ready`, as every stream did before, and then goes at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_without_standby_credit_gets_the_stream_once_it_answers_the_summon() {
    let hub = Arc::new(tokio::task::block_in_place(Hub::start));
    let (id, key) = tokio::task::block_in_place(|| hub.create_endpoint("older-agent", &[]));
    let raw = RawAgent::enrol(&hub, &key).await.unwrap();
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(0u32.into());
    let mut session = raw.connect_with(transport).await.unwrap();

    let caller = hub.clone();
    let path = format!("/api/endpoints/{id}/docker/version");
    let call = tokio::task::spawn_blocking(move || caller.api_call("GET", &path, None));
    let frame = tokio::time::timeout(Duration::from_secs(20), session.read())
        .await
        .expect("no summon reached the device")
        .unwrap();
    let HubMessage::Summon { id: summon } = frame else {
        panic!("expected a summon, got {frame:?}");
    };
    let early = tokio::time::timeout(Duration::from_millis(500), session.conn.accept_bi()).await;
    assert!(early.is_err(), "a stream without credit");

    session.conn.set_max_concurrent_bi_streams(8u32.into());
    session
        .send(&AgentMessage::Ready { id: summon })
        .await
        .unwrap();
    let answered = Instant::now();
    let (_, mut recv) = tokio::time::timeout(Duration::from_secs(10), session.conn.accept_bi())
        .await
        .expect("no stream once the summon was answered")
        .unwrap();
    let mut magic = [0; 3];
    recv.read_exact(&mut magic).await.unwrap();
    assert_eq!(&magic, stream::MAGIC);
    // The credit itself let it go, not the hub's deadline for credit that never comes (2 s).
    assert!(
        answered.elapsed() < Duration::from_secs(1),
        "the stream came {:?} after the ready",
        answered.elapsed()
    );

    session.conn.close(0u32.into(), b"done");
    let answer = call.await.unwrap();
    assert_ne!(answer.status, 200, "the device left before answering");
}
