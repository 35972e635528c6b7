//! Issue #12, enrolment side, end to end with real binaries: a leaked join token does not take
//! over a bound device, a device that lost its enrolment comes back with its key, an admin's reset
//! hands the endpoint to a new device, refusals tell nothing about other endpoints, a fleet token
//! is capped, idle enrolment connections are bounded, and certificates renew over the session.

#![allow(clippy::disallowed_methods)] // wall-clock timing of real processes
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use outpost_transport::close::CloseCodeVarint as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use outpost_agent::identity::Identity;
use outpost_protocol::token::JoinToken;
use outpost_protocol::wire::{
    self, AgentMessage, CloseCode, EnrollReply, EnrollRequest, RefusalReason, ALPN_ENROLL,
    ALPN_SESSION,
};
use outpost_protocol::{EndpointId, Secret};
use outpost_tests::{raw_enrol, wait_for, Agent, Hub};

const ONLINE: Duration = Duration::from_secs(20);
const EXIT: Duration = Duration::from_secs(20);

fn agent_dir(hub: &Hub, name: &str) -> PathBuf {
    hub.data_dir.parent().unwrap().join(name)
}

/// A second machine that has the device's identity files (`files` of its data directory).
fn copy_identity(from: &Path, to: &Path, files: &[&str]) {
    std::fs::create_dir_all(to).unwrap();
    for file in files {
        std::fs::copy(from.join(file), to.join(file)).unwrap();
    }
}

fn summon_works(hub: &Hub, id: u64) -> bool {
    hub.admin(&["summon", &id.to_string()]).status.success()
}

#[test]
fn an_impostor_with_the_token_and_the_bound_uuid_is_refused_and_the_device_stays() {
    let hub = Hub::start();
    let (id, key) = hub.create_endpoint("kiosk", &[]);
    let real = Agent::start(&agent_dir(&hub, "real"), &[("EDGE_KEY", &key)]);
    hub.wait_status(id, "standby", ONLINE);
    let uuid = real.agent_id();

    let mut impostor = Agent::start(
        &agent_dir(&hub, "impostor"),
        &[("EDGE_KEY", &key), ("EDGE_ID", &uuid)],
    );
    let exit = impostor.wait_exit(EXIT);
    assert_eq!(exit.code, Some(2), "{}", exit.stderr);
    assert!(
        exit.stderr.contains("already bound to another device"),
        "{}",
        exit.stderr
    );
    let refusal = exit.stderr.lines().find(|l| l.contains("refused")).unwrap();
    assert!(
        !refusal.contains(&uuid),
        "the refusal names the UUID: {refusal}"
    );

    let shown = hub.show(id);
    assert_eq!(
        (shown["agent_id"].as_str(), shown["enroll_count"].as_u64()),
        (Some(&*uuid), Some(1))
    );
    assert_eq!(shown["status"], "standby");
    assert!(
        summon_works(&hub, id),
        "the real device is no longer reachable"
    );
}

#[test]
fn a_device_that_lost_its_enrolment_re_enrols_with_its_key_and_its_old_session_closes() {
    let hub = Hub::start();
    let (id, key) = hub.create_endpoint("sign", &[]);
    let dir = agent_dir(&hub, "sign");
    let mut old = Agent::start(&dir, &[("EDGE_KEY", &key)]);
    hub.wait_status(id, "standby", ONLINE);

    // The same key and id, without the certificate (a lost enrolment reply, a wiped file).
    let again = agent_dir(&hub, "sign-again");
    copy_identity(&dir, &again, &["agent.id", "agent.key"]);
    let _new = Agent::start(&again, &[("EDGE_KEY", &key)]);
    wait_for(ONLINE, "the re-enrolment", || {
        (hub.show(id)["enroll_count"] == 2).then_some(())
    });
    // The superseded certificate's session was closed at once; its certificate is revoked, so
    // the old process stops for good when it redials.
    let exit = old.wait_exit(EXIT);
    assert_eq!(exit.code, Some(4), "{}", exit.stderr);
    hub.wait_status(id, "standby", ONLINE);
    assert!(summon_works(&hub, id));
}

#[test]
fn endpoint_reset_hands_the_endpoint_to_a_new_device_and_kills_the_old_token() {
    let hub = Hub::start();
    let (id, old_key) = hub.create_endpoint("pos", &[]);
    let mut first = Agent::start(&agent_dir(&hub, "first"), &[("EDGE_KEY", &old_key)]);
    hub.wait_status(id, "standby", ONLINE);

    let reset = hub.admin_json(&["reset", &id.to_string()]);
    assert_eq!(
        (reset["id"].as_u64(), &reset["disconnected"]),
        (Some(id), &serde_json::json!(true))
    );
    let new_key = reset["edge_key"].as_str().unwrap().to_owned();
    assert_ne!(new_key, old_key);
    let exit = first.wait_exit(EXIT);
    assert_eq!(exit.code, Some(4), "{}", exit.stderr);
    assert!(
        exit.stderr.contains("reset by an administrator"),
        "{}",
        exit.stderr
    );
    assert!(hub.show(id)["agent_id"].is_null());

    let mut stale = Agent::start(&agent_dir(&hub, "stale"), &[("EDGE_KEY", &old_key)]);
    let exit = stale.wait_exit(EXIT);
    assert_eq!(exit.code, Some(2), "{}", exit.stderr);
    assert!(
        exit.stderr.contains("not valid on this hub"),
        "{}",
        exit.stderr
    );

    let replacement = Agent::start(&agent_dir(&hub, "replacement"), &[("EDGE_KEY", &new_key)]);
    let shown = hub.wait_status(id, "standby", ONLINE);
    assert_eq!(shown["agent_id"], replacement.agent_id());
    assert!(summon_works(&hub, id));
    let missing = hub.admin(&["reset", "4242"]);
    assert!(!missing.status.success());
}

fn refused(reply: EnrollReply) -> (RefusalReason, String) {
    match reply {
        EnrollReply::Refused(r) => (r.reason, r.message),
        EnrollReply::Accepted(_) => panic!("a hostile enrolment was accepted"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_and_an_unknown_endpoint_are_answered_alike() {
    let hub = tokio::task::spawn_blocking(Hub::start).await.unwrap();
    let (id, key) = tokio::task::block_in_place(|| hub.create_endpoint("target", &[]));
    let token = JoinToken::decode(&key).unwrap();
    let existing = raw_enrol::request(&token, Secret::generate(), "1.0");
    let missing = EnrollRequest {
        endpoint: EndpointId(token.endpoint.0 + 1000),
        ..raw_enrol::request(&token, Secret::generate(), "1.0")
    };
    let a = refused(raw_enrol::enrol(&hub, &existing).await);
    let b = refused(raw_enrol::enrol(&hub, &missing).await);
    assert_eq!(a, b);
    assert_eq!(a.0, RefusalReason::BadSecret);

    // Device text: an escape sequence in the version is refused, without echoing it.
    let hostile = raw_enrol::request(&token, token.secret.clone(), "1.0\x1b]0;pwned\x07");
    let (reason, message) = refused(raw_enrol::enrol(&hub, &hostile).await);
    assert_eq!(reason, RefusalReason::Malformed);
    assert!(
        message.contains("U+001B") && !message.contains("pwned"),
        "{message}"
    );

    tokio::task::block_in_place(|| {
        assert!(hub.show(id)["agent_id"].is_null());
        let _agent = Agent::start(&agent_dir(&hub, "genuine"), &[("EDGE_KEY", &key)]);
        hub.wait_status(id, "standby", ONLINE);
    });
}

#[test]
fn a_fleet_token_stops_at_its_pending_cap_until_the_admin_approves() {
    let hub = Hub::start_with_flags(&["--max-pending-per-fleet", "2"]);
    let (_, key) = hub.create_endpoint("fleet", &["--fleet"]);
    let _a = Agent::start(&agent_dir(&hub, "a"), &[("EDGE_KEY", &key)]);
    let _b = Agent::start(&agent_dir(&hub, "b"), &[("EDGE_KEY", &key)]);
    let pending = || hub.admin_json(&["list", "--json", "--status", "pending"]);
    wait_for(ONLINE, "two pending devices", || {
        (pending()["total"] == 2).then_some(())
    });

    let mut third = Agent::start(&agent_dir(&hub, "c"), &[("EDGE_KEY", &key)]);
    let exit = third.wait_exit(EXIT);
    assert_eq!(exit.code, Some(2), "{}", exit.stderr);
    assert!(
        exit.stderr.contains("waiting for approval"),
        "{}",
        exit.stderr
    );
    assert_eq!(pending()["total"], 2);

    let first = pending()["items"][0]["id"].as_u64().unwrap();
    assert!(hub.admin(&["approve", &first.to_string()]).status.success());
    let _third = Agent::start(&agent_dir(&hub, "c"), &[("EDGE_KEY", &key)]);
    wait_for(ONLINE, "the third device to enrol", || {
        (pending()["total"] == 2).then_some(())
    });
    hub.wait_status(first, "standby", ONLINE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_enrolment_connections_are_bounded_and_closed_within_the_deadline() {
    let hub = tokio::task::spawn_blocking(Hub::start).await.unwrap();
    let (id, key) = tokio::task::block_in_place(|| hub.create_endpoint("late", &[]));
    let attacker = raw_enrol::client(&hub, ALPN_ENROLL);
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(raw_enrol::connect(&attacker, &hub).await);
    }
    let started = Instant::now();
    // A real device arrives during the flood.
    let hub_ref = &hub;
    let agent = tokio::task::block_in_place(|| {
        Agent::start(&agent_dir(hub_ref, "late"), &[("EDGE_KEY", &key)])
    });
    let mut busy = 0;
    for conn in &idle {
        let reason = tokio::time::timeout(Duration::from_secs(30), conn.closed())
            .await
            .expect("an idle enrolment connection outlived the deadline by far");
        if let quinn::ConnectionError::ApplicationClosed(close) = reason {
            busy += usize::from(CloseCode::from_varint(close.error_code) == Some(CloseCode::Busy));
        }
    }
    let all_closed = started.elapsed();
    eprintln!("{busy} of 200 idle enrolments turned away busy; all closed after {all_closed:?}");
    // 64 slots: the rest were turned away at once; the 64 held on until the 10 s deadline.
    assert!(busy >= 200 - 64, "only {busy} turned away busy");
    assert!(
        all_closed < Duration::from_secs(25),
        "closed after {all_closed:?}"
    );
    tokio::task::block_in_place(|| {
        hub_ref.wait_status(id, "standby", Duration::from_secs(60));
        eprintln!(
            "the device was online {:?} after it started",
            started.elapsed()
        );
        drop(agent);
        let log = hub_ref.log();
        assert_eq!(log.matches("enrolment failed").count(), 0);
        let summaries = log
            .matches("enrolment attempts without a certificate")
            .count();
        assert!(summaries <= 4, "{summaries} summary lines:\n{log}");
    });
}

#[test]
fn certificates_renew_over_the_session_and_the_old_one_dies_when_the_new_one_is_used() {
    // 30 s certificates: backdated an hour like every certificate, each is past 2/3 of its life
    // at once, so every session start renews.
    let hub = Hub::start_with_flags(&["--agent-cert-validity", "30s"]);
    let (id, key) = hub.create_endpoint("renewing", &[]);
    let dir = agent_dir(&hub, "renewing");
    let enrolled = Instant::now();
    let original_cert = enrol_directly(&hub, &key, &dir);
    let original = agent_dir(&hub, "original");
    copy_identity(
        &dir,
        &original,
        &["agent.id", "agent.key", "hub-ca.pem", "enrollment.json"],
    );
    std::fs::write(original.join("agent.pem"), &original_cert).unwrap();

    let mut agent = Agent::start(&dir, &[]);
    hub.wait_status(id, "standby", ONLINE);
    let renewed = |agent: &Agent| agent.log().contains("certificate renewed");
    wait_for(ONLINE, "a renewal", || renewed(&agent).then_some(()));
    assert_ne!(
        std::fs::read_to_string(dir.join("agent.pem")).unwrap(),
        original_cert
    );

    // The next connection presents the renewed certificate: the original is revoked.
    agent.kill();
    let mut agent = Agent::start(&dir, &[]);
    wait_for(ONLINE, "a second renewal", || renewed(&agent).then_some(()));
    hub.wait_status(id, "standby", ONLINE);
    let mut stale = Agent::start(&original, &[]);
    let exit = stale.wait_exit(EXIT);
    assert_eq!(exit.code, Some(4), "{}", exit.stderr);

    // Halfway through, one more connection (and renewal), so a certificate outlives the original.
    std::thread::sleep(Duration::from_secs(15).saturating_sub(enrolled.elapsed()));
    agent.kill();
    let mut agent = Agent::start(&dir, &[]);
    wait_for(ONLINE, "a third renewal", || renewed(&agent).then_some(()));

    // Past the original's expiry the device still connects; the original fails at the agent, for
    // good, with a clear message and its own exit code.
    std::thread::sleep(Duration::from_secs(32).saturating_sub(enrolled.elapsed()));
    agent.kill();
    let _agent = Agent::start(&dir, &[]);
    hub.wait_status(id, "standby", ONLINE);
    assert!(summon_works(&hub, id));
    let mut expired = Agent::start(&original, &[]);
    let exit = expired.wait_exit(EXIT);
    assert_eq!(exit.code, Some(5), "{}", exit.stderr);
    assert!(
        exit.stderr.contains("certificate expired"),
        "{}",
        exit.stderr
    );
}

/// Enrol a device identity in `dir` over raw QUIC (as the agent would) and return the PEM of the
/// certificate it got, which the agent's first renewal replaces.
fn enrol_directly(hub: &Hub, key: &str, dir: &Path) -> String {
    let token = JoinToken::decode(key).unwrap();
    let mut identity = Identity::load_or_create(dir, None).unwrap();
    let request = EnrollRequest {
        endpoint: token.endpoint,
        secret: token.secret.clone(),
        agent_id: identity.agent_id,
        csr_der: identity.key.csr_der(identity.agent_id.0).unwrap(),
        agent_version: "test".into(),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let EnrollReply::Accepted(enrolled) = runtime.block_on(raw_enrol::enrol(hub, &request)) else {
        panic!("the enrolment was refused");
    };
    identity.save_enrollment(&enrolled).unwrap();
    std::fs::read_to_string(dir.join("agent.pem")).unwrap()
}

#[test]
fn a_hello_with_an_escape_sequence_in_its_version_is_refused() {
    let hub = Hub::start();
    let (id, key) = hub.create_endpoint("terminal", &[]);
    let dir = agent_dir(&hub, "terminal");
    enrol_directly(&hub, &key, &dir);
    let identity = Identity::load_or_create(&dir, None).unwrap();
    let auth = (
        identity.certificate().unwrap(),
        identity.key.private_key_der(),
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let close = runtime.block_on(async {
        let client = raw_enrol::client_with(&hub, ALPN_SESSION, Some(auth));
        let conn = raw_enrol::connect(&client, &hub).await;
        let (mut send, _recv) = conn.open_bi().await.unwrap();
        let hello = AgentMessage::Hello {
            agent_version: "1.0\x1b]0;owned\x07\x1b[2J".into(),
        };
        wire::write_frame(&mut send, &hello).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), conn.closed())
            .await
            .unwrap()
    });
    assert!(
        matches!(&close, quinn::ConnectionError::ApplicationClosed(c)
            if CloseCode::from_varint(c.error_code) == Some(CloseCode::ProtocolViolation)),
        "{close:?}"
    );
    let log = hub.log();
    assert!(
        log.contains("the agent version holds the control character U+001B"),
        "{log}"
    );
    assert!(
        !log.contains("owned"),
        "the escape sequence reached the log"
    );
    // The device itself, with its genuine version, is served.
    let _agent = Agent::start(&dir, &[]);
    let shown = hub.wait_status(id, "standby", ONLINE);
    assert_eq!(shown["agent_version"], "test");
}
