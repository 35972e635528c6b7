//! Admission against real quinn endpoints on loopback: the limits decide what a client sees.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use outpost_certs::{pinned_client_config, HubPki, HUB_SERVER_NAME};
use outpost_common::wire::ALPN_ENROLL;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

use super::*;
use crate::agent_link::accept_loop;

struct Rig {
    admission: Arc<Admission>,
    server: quinn::Endpoint,
    client: quinn::Endpoint,
    _dir: tempfile::TempDir,
}

/// A server endpoint that admits with `limits` and holds each admitted connection's slot only
/// for its handshake, and a client that trusts it.
fn rig(limits: AdmissionLimits) -> Rig {
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
    let admission = Arc::new(Admission::new(limits));
    let accepting = (server.clone(), admission.clone());
    tokio::spawn(async move {
        let (server, admission) = accepting;
        accept_loop(&server, &admission, |incoming, slot| {
            tokio::spawn(async move {
                let conn = incoming.await;
                drop(slot);
                if let Ok(conn) = conn {
                    conn.closed().await;
                }
            });
        })
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
    let started = tokio::time::Instant::now();
    let first = first.await.unwrap().unwrap_err();
    assert!(is_refusal(&first), "{first:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused after its wait, not at a timeout"
    );
    assert_eq!(rig.counts(), (0, 2));
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

#[test]
fn a_validated_client_is_never_asked_to_retry() {
    let admission = Admission::new(AdmissionLimits {
        retry_above: 0,
        max_in_flight: 2,
        ..AdmissionLimits::default()
    });
    let first = admission.decide(true, true, false);
    assert!(matches!(first, Verdict::Accept(_)));
    let second = admission.decide(false, false, false);
    assert!(matches!(second, Verdict::Accept(_)));
    assert!(matches!(
        admission.decide(false, true, false),
        Verdict::Retry
    ));
    assert!(
        matches!(admission.decide(true, true, false), Verdict::Wait),
        "both slots are held"
    );
}

#[test]
fn attempts_queue_behind_earlier_ones_even_with_a_slot_free() {
    let admission = Admission::new(AdmissionLimits::default());
    assert!(matches!(admission.decide(true, true, true), Verdict::Wait));
    admission.drain();
    assert!(matches!(
        admission.decide(true, true, false),
        Verdict::Ignore
    ));
}
