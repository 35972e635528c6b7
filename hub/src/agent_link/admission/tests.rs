//! Admission against real quinn endpoints on loopback: the limits decide what a client sees.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use outpost_certs::{pinned_client_config, HubPki, HUB_SERVER_NAME};
use outpost_protocol::wire::ALPN_ENROLL;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

use super::*;
use crate::agent_link::{accept_loop, handshake};

struct Rig {
    admission: Arc<Admission>,
    server: quinn::Endpoint,
    client: quinn::Endpoint,
    _dir: tempfile::TempDir,
}

/// A deadline no loopback handshake comes near, for the tests not about it.
const DEADLINE: Duration = Duration::from_secs(30);

fn rig(limits: AdmissionLimits) -> Rig {
    rig_with_deadline(limits, DEADLINE)
}

/// A server endpoint that admits with `limits` and holds each admitted connection's slot only
/// for its handshake (cut at `deadline`), and a client that trusts it.
fn rig_with_deadline(limits: AdmissionLimits, deadline: Duration) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let pki = HubPki::load_or_create(dir.path(), &[]).unwrap();
    let tls = QuicServerConfig::try_from(pki.server_config(&[ALPN_ENROLL]).unwrap()).unwrap();
    let server = quinn::Endpoint::server(
        quinn::ServerConfig::with_crypto(Arc::new(tls)),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let (tls, _) = pinned_client_config(pki.ca_fingerprint(), None, &[ALPN_ENROLL]).unwrap();
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    client.set_default_client_config(quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(tls).unwrap(),
    )));
    let admission = Arc::new(Admission::new(limits, deadline));
    let accepting = (server.clone(), admission.clone());
    tokio::spawn(async move {
        let (server, admission) = accepting;
        accept_loop(
            &server,
            &admission,
            &Default::default(),
            |incoming, slot| {
                let admission = admission.clone();
                tokio::spawn(async move {
                    let conn = handshake(&admission, incoming, None).await;
                    drop(slot);
                    if let Some(conn) = conn {
                        conn.closed().await;
                    }
                });
            },
        )
        .await;
    });
    Rig {
        admission,
        server,
        client,
        _dir: dir,
    }
}

impl Rig {
    async fn dial(&self) -> Result<quinn::Connection, quinn::ConnectionError> {
        self.client
            .connect(self.server.local_addr().unwrap(), HUB_SERVER_NAME)
            .unwrap()
            .await
    }

    /// Wait (bounded) until the hub side of earlier handshakes has finished and `in_flight` remain.
    async fn settle(&self, in_flight: usize) {
        for _ in 0..200 {
            if self.admission.in_flight() == in_flight {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!(
            "{} handshakes in flight, expected {in_flight}",
            self.admission.in_flight()
        );
    }

    fn counts(&self) -> (u64, u64) {
        let stats = &self.admission.stats;
        (
            stats.retried.load(Ordering::Relaxed),
            stats.refused.load(Ordering::Relaxed),
        )
    }

    fn waited(&self) -> u64 {
        self.admission.stats.waited.load(Ordering::Relaxed)
    }
}

fn is_refusal(error: &quinn::ConnectionError) -> bool {
    matches!(error, quinn::ConnectionError::ConnectionClosed(close)
        if close.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED)
}

#[tokio::test]
async fn beyond_the_limits_a_handshake_is_retried_then_waits_for_a_slot() {
    let rig = rig(AdmissionLimits {
        retry_above: 1,
        max_in_flight: 2,
        max_waiting: 4,
        max_wait: Duration::from_secs(10),
    });
    rig.dial().await.unwrap();
    assert_eq!(rig.counts(), (0, 0), "an idle hub admits at once");

    // One handshake in flight: a new client proves its address first, then gets the last slot.
    rig.settle(0).await;
    let busy = rig.admission.occupy(1);
    rig.dial().await.unwrap();
    assert_eq!(rig.counts(), (1, 0));

    // Every slot in flight: after the Retry, the validated client waits, and its handshake
    // completes as soon as a slot frees.
    rig.settle(1).await;
    let full = rig.admission.occupy(1);
    let waiting = tokio::spawn({
        let (client, server) = (rig.client.clone(), rig.server.local_addr().unwrap());
        async move { client.connect(server, HUB_SERVER_NAME).unwrap().await }
    });
    for _ in 0..200 {
        if rig.waited() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(rig.waited(), 1, "the attempt is queued, not refused");
    assert!(!waiting.is_finished());
    drop(busy);
    waiting.await.unwrap().unwrap();
    assert_eq!(rig.counts(), (2, 0));
    drop(full);
    rig.settle(0).await;
}

#[tokio::test]
async fn an_attempt_that_waited_too_long_or_found_the_queue_full_is_refused() {
    let rig = rig(AdmissionLimits {
        retry_above: 8,
        max_in_flight: 1,
        max_waiting: 1,
        max_wait: Duration::from_millis(300),
    });
    let _full = rig.admission.occupy(1);
    let first = tokio::spawn({
        let (client, server) = (rig.client.clone(), rig.server.local_addr().unwrap());
        async move { client.connect(server, HUB_SERVER_NAME).unwrap().await }
    });
    // Give the first attempt the only place in the queue; the second finds it full.
    while rig.waited() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let second = rig.dial().await.unwrap_err();
    assert!(is_refusal(&second), "{second:?}");
    let started = Instant::now();
    let first = first.await.unwrap().unwrap_err();
    assert!(is_refusal(&first), "{first:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused after its wait, not at a timeout"
    );
    assert_eq!(
        rig.counts(),
        (1, 2),
        "with an attempt waiting, the second proved its address"
    );
}

#[tokio::test]
async fn a_draining_hub_neither_admits_nor_refuses() {
    let rig = rig(AdmissionLimits::default());
    rig.admission.drain();
    let attempt = tokio::time::timeout(Duration::from_millis(800), rig.dial()).await;
    assert!(attempt.is_err(), "no answer while draining: {attempt:?}");
    assert_eq!(rig.counts(), (0, 0));
    assert_eq!(rig.admission.in_flight(), 0);
}

#[tokio::test]
async fn a_silent_handshake_is_cut_at_the_deadline_and_frees_its_slot() {
    let rig = rig_with_deadline(
        AdmissionLimits {
            retry_above: 1,
            ..AdmissionLimits::default()
        },
        Duration::from_millis(300),
    );
    // A real Initial, sent from a socket that never answers: the hub's first flight goes nowhere.
    let relay = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let _attempt = rig
        .client
        .connect(relay.local_addr().unwrap(), HUB_SERVER_NAME)
        .unwrap();
    let mut initial = vec![0; 1500];
    let len = relay.recv(&mut initial).await.unwrap();
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    silent
        .send_to(&initial[..len], rig.server.local_addr().unwrap())
        .unwrap();
    rig.settle(1).await;
    rig.settle(0).await;
    let stats = &rig.admission.stats;
    assert_eq!(stats.timed_out.load(Ordering::Relaxed), 1);
    assert_eq!(rig.counts(), (0, 0));
    rig.dial().await.unwrap();
    // One cut is as many as the Retry-free slots here (1): a flood of them, so Retry is on.
    assert_eq!(
        rig.counts(),
        (1, 0),
        "after the cut handshakes, Retry is on"
    );
}

fn admission(retry_above: usize, max_in_flight: usize) -> Admission {
    let limits = AdmissionLimits {
        retry_above,
        max_in_flight,
        ..AdmissionLimits::default()
    };
    Admission::new(limits, DEADLINE)
}

#[test]
fn a_validated_client_is_never_asked_to_retry() {
    let admission = admission(0, 2);
    let now = Instant::now();
    let first = admission.decide(now, true, true, false);
    assert!(matches!(first, Verdict::Accept(_)));
    let second = admission.decide(now, false, false, false);
    assert!(matches!(second, Verdict::Accept(_)));
    assert!(matches!(
        admission.decide(now, false, true, false),
        Verdict::Retry
    ));
    assert!(
        matches!(admission.decide(now, true, true, false), Verdict::Wait),
        "both slots are held"
    );
}

#[test]
fn attempts_queue_behind_earlier_ones_even_with_a_slot_free() {
    let admission = Admission::new(AdmissionLimits::default(), DEADLINE);
    let now = Instant::now();
    assert!(matches!(
        admission.decide(now, true, true, true),
        Verdict::Wait
    ));
    admission.drain();
    assert!(matches!(
        admission.decide(now, true, true, false),
        Verdict::Ignore
    ));
}

#[test]
fn a_waiting_attempt_makes_every_unvalidated_client_retry() {
    let admission = admission(16, 512);
    let now = Instant::now();
    assert!(!admission.flood_plausible(now, false), "an idle hub");
    assert!(matches!(
        admission.decide(now, false, true, true),
        Verdict::Retry
    ));
    assert!(matches!(
        admission.decide(now, false, true, false),
        Verdict::Accept(_)
    ));
}

#[test]
fn retry_starts_at_retry_above_slots_in_use() {
    let admission = admission(16, 512);
    let now = Instant::now();
    let _busy = admission.occupy(15);
    assert!(!admission.flood_plausible(now, false));
    let _one_more = admission.occupy(1);
    assert!(admission.flood_plausible(now, false));
}

#[test]
fn a_flood_of_cut_handshakes_keeps_retry_on_and_a_few_do_not() {
    let admission = admission(16, 512);
    let start = Instant::now();
    // A reconnect storm's few timeouts, spread over more than a window, never turn Retry on.
    for i in 0..30u32 {
        admission.count_timed_out(start + RECENT_TIMEOUTS / 10 * i, true);
        assert!(!admission.flood_plausible(start + RECENT_TIMEOUTS / 10 * i, false));
    }
    // As many as retry_above within one window do, for the next window.
    let flood = start + RECENT_TIMEOUTS * 4;
    for i in 0..16 {
        assert!(!admission.flood_plausible(flood, false), "{i} timeouts");
        admission.count_timed_out(flood, true);
    }
    assert!(admission.flood_plausible(flood, false));
    let almost = flood + RECENT_TIMEOUTS - Duration::from_millis(1);
    assert!(matches!(
        admission.decide(almost, false, true, false),
        Verdict::Retry
    ));
    assert!(!admission.flood_plausible(flood + RECENT_TIMEOUTS, false));
    assert_eq!(admission.stats.timed_out.load(Ordering::Relaxed), 46);
}

#[test]
fn a_slot_freed_by_a_timeout_lets_no_unvalidated_attempt_in_without_a_retry() {
    let admission = admission(16, 512);
    let now = Instant::now();
    let mut held: Vec<_> = (0..16).map(|_| admission.occupy(1)).collect();
    assert!(admission.flood_plausible(now, false));
    while let Some(slot) = held.pop() {
        drop(slot);
        admission.count_timed_out(now, false);
        assert!(
            admission.flood_plausible(now, false),
            "{} slots held",
            held.len()
        );
    }
    // Once the window has passed, only the flood flag (set at the sixteenth timeout) remains;
    // after it, an idle hub admits without a Retry again.
    assert!(admission.flood_plausible(now + RECENT_TIMEOUTS / 2, false));
    assert!(!admission.flood_plausible(now + RECENT_TIMEOUTS, false));
}

#[test]
fn a_validated_handshake_cut_by_a_busy_hub_frees_its_slot_for_good() {
    let admission = admission(16, 512);
    let now = Instant::now();
    let mut held: Vec<_> = (0..16).map(|_| admission.occupy(1)).collect();
    held.truncate(15);
    admission.count_timed_out(now, true);
    assert!(
        !admission.flood_plausible(now, false),
        "a restart storm's slow handshake is no flood"
    );
    drop(held.pop());
    admission.count_timed_out(now, false);
    assert!(
        !admission.flood_plausible(now, false),
        "14 in flight and one Retry-free cut"
    );
}

#[test]
fn the_deadline_follows_the_profiles_round_trip() {
    use outpost_transport::profile::{CELLULAR, LAN, SATELLITE};
    assert_eq!(handshake_deadline(&LAN), Duration::from_millis(3_500));
    assert_eq!(handshake_deadline(&CELLULAR), Duration::from_secs(6));
    assert_eq!(handshake_deadline(&SATELLITE), Duration::from_secs(10));
}

#[test]
fn with_slots_retries_from_a_quarter_up_to_128() {
    assert_eq!(AdmissionLimits::with_slots(4096).retry_above, 128);
    assert_eq!(AdmissionLimits::with_slots(32).retry_above, 8);
}
