//! Bad input gets a clear error and loses nothing: malformed tokens at the agent, and hostile
//! enrolment and session attempts spoken directly over QUIC to a real hub, which must keep serving.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use outpost_transport::close::CloseCodeVarint as _;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use std::time::Duration;

use outpost_certs::{certs_from_pem, pinned_client_config, Fingerprint, HUB_SERVER_NAME};
use outpost_protocol::token::JoinToken;
use outpost_protocol::wire::{
    self, CloseCode, EnrollReply, EnrollRequest, RefusalReason, ALPN_ENROLL, ALPN_SESSION,
    MAX_ENROLL_FRAME,
};
use outpost_protocol::{AgentId, Secret};
use outpost_tests::{Agent, Hub};

fn agent_dir(hub: &Hub, name: &str) -> std::path::PathBuf {
    hub.data_dir
        .parent()
        .expect("hub dir has a parent")
        .join(name)
}

fn expect_token_error(hub: &Hub, name: &str, key: &str, needle: &str) {
    let mut agent = Agent::start(&agent_dir(hub, name), &[("EDGE_KEY", key)]);
    let exit = agent.wait_exit(Duration::from_secs(10));
    assert_eq!(exit.code, Some(64), "{name}: {}", exit.stderr);
    assert!(
        exit.stderr.contains(needle),
        "{name}: expected {needle:?} in {}",
        exit.stderr
    );
}

#[test]
fn malformed_tokens_are_refused_with_distinct_errors() {
    let hub = Hub::start();
    let (_, key) = hub.create_endpoint("kiosk", &[]);
    expect_token_error(
        &hub,
        "garbage",
        "this is not a token!",
        "not valid base64url",
    );
    expect_token_error(&hub, "cut", &key[..key.len() / 2], "truncated");

    let mut bytes = base64_decode(&key);
    bytes[0] = 7;
    expect_token_error(&hub, "version", &base64_encode(&bytes), "has version 7");

    let mut bytes = base64_decode(&key);
    bytes.extend([0, 0]);
    expect_token_error(
        &hub,
        "trailing",
        &base64_encode(&bytes),
        "2 unexpected bytes",
    );
}

fn base64_decode(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).unwrap()
}

fn base64_encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A raw QUIC client that trusts the hub (as a malicious agent would: the CA is not secret).
async fn raw_connect(hub: &Hub, alpn: &[u8]) -> quinn::Connection {
    let ca = std::fs::read_to_string(hub.data_dir.join("ca.pem")).unwrap();
    let pin = Fingerprint::of(&certs_from_pem(&ca).unwrap()[0]);
    let (tls, _) = pinned_client_config(pin, None, &[alpn]).unwrap();
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    endpoint
        .connect(hub.agent_addr.parse().unwrap(), HUB_SERVER_NAME)
        .unwrap()
        .await
        .unwrap()
}

async fn enrol_raw(hub: &Hub, bytes: &[u8]) -> EnrollReply {
    let conn = raw_connect(hub, ALPN_ENROLL).await;
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    let _ = send.finish();
    let reply = wire::read_frame(&mut recv, MAX_ENROLL_FRAME).await.unwrap();
    conn.close(0u32.into(), b"");
    reply
}

fn refusal(reply: EnrollReply) -> (RefusalReason, String) {
    match reply {
        EnrollReply::Refused(r) => (r.reason, r.message),
        EnrollReply::Accepted(_) => panic!("hostile enrolment was accepted"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_enrolments_are_refused_and_the_hub_keeps_serving() {
    let hub = tokio::task::spawn_blocking(Hub::start).await.unwrap();
    let (id, key) = {
        let hub = &hub;
        tokio::task::block_in_place(|| hub.create_endpoint("target", &[]))
    };
    let token = JoinToken::decode(&key).unwrap();

    // An oversized frame header: refused before the hub reads (or allocates) the body.
    let (reason, message) = refusal(enrol_raw(&hub, &u32::MAX.to_be_bytes()).await);
    assert_eq!(reason, RefusalReason::Malformed);
    assert!(message.contains("exceeds"), "{message}");

    // A well-framed body that is not a request.
    let mut garbage = 5u32.to_be_bytes().to_vec();
    garbage.extend([0xff; 5]);
    let (reason, message) = refusal(enrol_raw(&hub, &garbage).await);
    assert_eq!(reason, RefusalReason::Malformed, "{message}");

    // A real request shape with a broken certificate request.
    let bad_csr = EnrollRequest {
        endpoint: token.endpoint,
        secret: token.secret.clone(),
        agent_id: AgentId::generate(),
        csr_der: vec![0x30, 0x03, 0x01, 0x01, 0xff],
        agent_version: "evil".into(),
    };
    let (reason, message) = refusal(enrol_raw(&hub, &wire::encode_frame(&bad_csr)).await);
    assert_eq!(reason, RefusalReason::Malformed);
    assert!(message.contains("certificate request"), "{message}");

    // The right endpoint with a guessed secret.
    let key_pair = outpost_certs::AgentKey::generate().unwrap();
    let agent_id = AgentId::generate();
    let guess = EnrollRequest {
        endpoint: token.endpoint,
        secret: Secret::generate(),
        agent_id,
        csr_der: key_pair.csr_der(agent_id.0).unwrap(),
        agent_version: "evil".into(),
    };
    let (reason, _) = refusal(enrol_raw(&hub, &wire::encode_frame(&guess)).await);
    assert_eq!(reason, RefusalReason::BadSecret);

    // None of that bound the endpoint, and a genuine agent still enrols.
    let hub_ref = &hub;
    tokio::task::block_in_place(|| {
        assert!(hub_ref.show(id)["agent_id"].is_null());
        let _agent = Agent::start(&agent_dir(hub_ref, "genuine"), &[("EDGE_KEY", &key)]);
        hub_ref.wait_status(id, "standby", Duration::from_secs(20));
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_without_a_certificate_is_closed_with_a_reason() {
    let hub = tokio::task::spawn_blocking(Hub::start).await.unwrap();
    let conn = raw_connect(&hub, ALPN_SESSION).await;
    let reason = tokio::time::timeout(Duration::from_secs(10), conn.closed())
        .await
        .unwrap();
    let quinn::ConnectionError::ApplicationClosed(close) = reason else {
        panic!("expected an application close, got {reason:?}");
    };
    assert_eq!(
        CloseCode::from_varint(close.error_code),
        Some(CloseCode::ProtocolViolation)
    );
    assert!(String::from_utf8_lossy(&close.reason).contains("no client certificate"));
}
