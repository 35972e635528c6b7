//! A summon waiting on a session that ends is answered at once: the admin's request fails with
//! "disconnected" instead of hanging until the summon timeout. Speaks raw QUIC with a real agent
//! certificate ([`outpost_tests::raw_agent`]) so the test decides when the session ends.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::time::Duration;

use outpost_protocol::wire::HubMessage;
use outpost_tests::raw_agent::RawAgent;
use outpost_tests::Hub;
use reqwest::StatusCode;

/// Far longer than the test may take: on a hub that let the summoner wait it out, the test fails
/// on the bound below, not by passing late.
const SUMMON_TIMEOUT: &str = "120s";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_summon_fails_as_disconnected_as_soon_as_the_session_ends() {
    let hub = tokio::task::block_in_place(|| {
        Hub::start_with_flags(&["--summon-timeout", SUMMON_TIMEOUT])
    });
    let (id, key) = tokio::task::block_in_place(|| hub.create_endpoint("drops-out", &[]));
    let raw = RawAgent::enrol(&hub, &key).await.unwrap();
    let mut session = raw.connect().await.unwrap();

    let api = hub.api();
    let summon = tokio::spawn(async move { api.summon(id).await });
    // The hub sent the summon; the device goes away instead of answering.
    let frame = tokio::time::timeout(Duration::from_secs(20), session.read())
        .await
        .expect("no summon reached the device")
        .unwrap();
    assert!(matches!(frame, HubMessage::Summon { .. }), "{frame:?}");
    session.conn.close(0u32.into(), b"gone");

    let answer = tokio::time::timeout(Duration::from_secs(30), summon)
        .await
        .expect("the summoner was left waiting for its timeout")
        .unwrap();
    let error = answer.unwrap_err();
    assert_eq!(
        error.status(),
        Some(StatusCode::SERVICE_UNAVAILABLE),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("disconnected while being summoned"),
        "{error}"
    );
}
