//! The hub's session loop never awaits a write (issue #13, item 2): while a frame to an agent is
//! parked on that agent's flow control, the loop keeps serving it — check-ins are acked. Speaks
//! raw QUIC with a real agent certificate ([`outpost_tests::raw_agent`]).

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::time::Duration;

use outpost_protocol::wire::{self, Datagram, HubMessage};
use outpost_tests::raw_agent::RawAgent;
use outpost_tests::{wait_for, Hub};

/// The agent's control-stream receive window: far smaller than a certificate.
const STREAM_WINDOW: u32 = 64;

/// Run a blocking harness call (processes, HTTPS) from the async test.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_ins_are_acked_while_a_frame_waits_for_the_agents_stream_window() {
    let hub = blocking(Hub::start);
    let (_, key) = blocking(|| hub.create_endpoint("slow-reader", &[]));
    let raw = RawAgent::enrol(&hub, &key).await.unwrap();
    let mut transport = quinn::TransportConfig::default();
    transport.stream_receive_window(STREAM_WINDOW.into());
    let mut session = raw.connect_with(transport).await.unwrap();

    // The renewal's answer, a certificate, cannot fit in the window while the agent reads nothing:
    // once the hub has issued it, its write is parked.
    session.send(&raw.renewal().unwrap()).await.unwrap();
    blocking(|| {
        wait_for(Duration::from_secs(20), "the certificate issued", || {
            hub.log().contains("certificate renewed").then_some(())
        })
    });
    session.check_in(1).unwrap();
    // Generous: on a loop that awaited the write in its branch, the ack never comes.
    let ack = tokio::time::timeout(Duration::from_secs(20), session.conn.read_datagram())
        .await
        .expect("no ack while a write to the agent was parked")
        .unwrap();
    assert!(
        matches!(wire::decode(&ack), Ok(Datagram::Ack { seq: 1, .. })),
        "{ack:?}"
    );

    // The agent reads again: the parked frame arrives whole.
    let renewed = tokio::time::timeout(Duration::from_secs(20), session.read())
        .await
        .unwrap()
        .unwrap();
    let HubMessage::Renewed { cert_der } = renewed else {
        panic!("expected the renewal, got {renewed:?}")
    };
    assert!(
        cert_der.len() > 2 * STREAM_WINDOW as usize,
        "the answer did not need the window: {} bytes",
        cert_der.len()
    );
}
