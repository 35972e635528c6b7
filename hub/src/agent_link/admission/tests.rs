//! Admission against real quinn endpoints on loopback: the limits decide what a client sees.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::Ordering;
use std::sync::Arc;

use outpost_certs::{pinned_client_config, HubPki, HUB_SERVER_NAME};
use outpost_common::wire::ALPN_ENROLL;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

use super::*;
use crate::agent_link::admit;

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
        while let Some(incoming) = server.accept().await {
            if let Some((incoming, slot)) = admit(&admission, incoming) {
                tokio::spawn(async move {
                    let conn = incoming.await;
                    drop(slot);
                    if let Ok(conn) = conn {
                        conn.closed().await;
                    }
                });
            }
        }
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
}

#[tokio::test]
async fn beyond_the_limits_a_handshake_is_retried_then_refused_and_later_succeeds() {
    let rig = rig(AdmissionLimits {
        retry_above: 1,
        max_in_flight: 2,
    });
    rig.dial().await.unwrap();
    assert_eq!(rig.counts(), (0, 0), "an idle hub admits at once");

    // One handshake in flight: a new client proves its address first, then gets the last slot.
    rig.settle(0).await;
    let busy = rig.admission.occupy(1);
    rig.dial().await.unwrap();
    assert_eq!(rig.counts(), (1, 0));

    // Every slot in flight: after the Retry, the validated client is refused at once.
    rig.settle(1).await;
    let full = rig.admission.occupy(1);
    let refused = rig.dial().await.unwrap_err();
    assert!(
        matches!(&refused, quinn::ConnectionError::ConnectionClosed(close)
            if close.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED),
        "{refused:?}"
    );
    assert_eq!(rig.counts(), (2, 1));

    // The handshakes in flight finish; the same client comes back and is admitted.
    drop((busy, full));
    rig.dial().await.unwrap();
    assert_eq!(rig.counts(), (2, 1));
    rig.settle(0).await;
}

#[test]
fn a_validated_client_is_never_asked_to_retry() {
    let admission = Admission::new(AdmissionLimits {
        retry_above: 0,
        max_in_flight: 1,
    });
    assert!(matches!(admission.decide(true, true), Verdict::Accept(_)));
    assert!(matches!(admission.decide(false, false), Verdict::Accept(_)));
    assert!(matches!(admission.decide(false, true), Verdict::Retry));
}
