//! A QUIC client whose socket is wrapped by the decorator talks to a plain server: the
//! connection works, pays the profile's delay, and the exact rules drop exactly what they say.

#![allow(clippy::unwrap_used)] // Test code: a failed setup step should panic loudly.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use outpost_netem::control::Controllable;
use outpost_netem::{FrontendCounters, NetemSocket, Profile, Side};
use quinn::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use quinn::{ClientConfig, Endpoint, ServerConfig};

fn tls() -> (ServerConfig, ClientConfig) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let der = CertificateDer::from(cert.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()));
    let server = ServerConfig::with_single_cert(vec![der.clone()], key).unwrap();
    let mut roots = quinn::rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let client = ClientConfig::with_root_certificates(Arc::new(roots)).unwrap();
    (server, client)
}

/// An echo server on a plain socket; returns its address.
fn echo_server(config: ServerConfig) -> (Endpoint, SocketAddr) {
    let server = Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = server.local_addr().unwrap();
    let accept = server.clone();
    tokio::spawn(async move {
        while let Some(incoming) = accept.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    let data = recv.read_to_end(1 << 20).await.unwrap_or_default();
                    let _ = send.write_all(&data).await;
                    let _ = send.finish();
                }
            });
        }
    });
    (server, addr)
}

#[tokio::test]
async fn quic_over_a_decorated_socket_pays_the_delay_and_survives_exact_drops() {
    let (server_config, client_config) = tls();
    let (_server, server_addr) = echo_server(server_config);
    let profile = Profile::from_toml(
        "quic-test",
        "[both]\ndelay = \"50ms\"\n[[up.rules]]\ndrop_first = 1\n",
        Path::new("."),
    )
    .unwrap();
    let socket =
        NetemSocket::bind("127.0.0.1:0".parse().unwrap(), &profile, Side::Device, 9).unwrap();
    let control = socket.control();
    let client = socket.client_endpoint(client_config).unwrap();

    let conn = tokio::time::timeout(Duration::from_secs(10), async {
        client.connect(server_addr, "localhost").unwrap().await
    })
    .await
    .unwrap()
    .unwrap();
    // The first Initial was dropped by the rule, and quinn recovered.
    assert_eq!(control.rule_hits().0, vec![1]);

    let start = tokio::time::Instant::now();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(b"over the emulated link").await.unwrap();
    send.finish().unwrap();
    let echoed = recv.read_to_end(1024).await.unwrap();
    assert_eq!(echoed, b"over the emulated link");
    // One round trip at least: 50 ms each way.
    assert!(
        start.elapsed() >= Duration::from_millis(100),
        "{:?}",
        start.elapsed()
    );
    let rtt = conn.rtt();
    assert!(
        rtt >= Duration::from_millis(95) && rtt < Duration::from_millis(200),
        "quinn rtt {rtt:?}"
    );

    let counters = control.counters();
    assert!(
        counters.up.submitted > 3 && counters.down.submitted > 3,
        "{counters}"
    );
    assert_eq!(counters.up.dropped_rule, 1);
    conn.close(0u32.into(), b"done");
    client.wait_idle().await;
}

#[tokio::test]
async fn each_datagram_of_a_peers_gso_batch_meets_the_model_on_its_own() {
    let (server_config, client_config) = tls();
    let (_server, server_addr) = echo_server(server_config);
    let profile =
        Profile::from_toml("gro-test", "[both]\ndelay = \"5ms\"\n", Path::new(".")).unwrap();
    let socket =
        NetemSocket::bind("127.0.0.1:0".parse().unwrap(), &profile, Side::Device, 3).unwrap();
    let control = socket.control();
    let client = socket.client_endpoint(client_config).unwrap();
    let conn = client
        .connect(server_addr, "localhost")
        .unwrap()
        .await
        .unwrap();

    // 512 KB echoed: the plain server sends it in GSO batches, which loopback may hand to the
    // decorated socket coalesced (GRO).
    let payload = vec![0x5a; 512 * 1024];
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&payload).await.unwrap();
    send.finish().unwrap();
    let echoed = recv.read_to_end(1 << 20).await.unwrap();
    assert_eq!(echoed.len(), payload.len());

    // Every datagram quinn received was judged by the down model once: a batch judged as one
    // unit would have been lost or kept whole, and counted once. The server's last acks may
    // still sit in the model's 5 ms delay when the read returns, so compare once nothing moves.
    let (received, counters) = settled(&conn, &control).await;
    assert!(received > 300, "{received} datagrams");
    assert_eq!(counters.down.submitted, received, "{counters}");
    assert_eq!(counters.down.sent, received, "{counters}");
    conn.close(0u32.into(), b"done");
    client.wait_idle().await;
}

/// The client's received datagram count and the decorator's counters, read once neither has
/// changed for 50 ms (at most 2 s): datagrams still in the model's delay are not yet received.
async fn settled(conn: &quinn::Connection, control: &dyn Controllable) -> (u64, FrontendCounters) {
    let read = || (conn.stats().udp_rx.datagrams, control.counters());
    let mut last = read();
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = read();
        if now.0 == last.0 && now.1.down.submitted == last.1.down.submitted {
            return now;
        }
        last = now;
    }
    last
}
