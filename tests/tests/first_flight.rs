//! The satellite profile's first flight leaves the hub as one burst, through real quinn over a
//! real UDP socket with a 600 ms emulated round trip.
//!
//! The delivery-rate controller reads the bottleneck's rate from the spacing of that burst's
//! acks, which only works if quinn really sends it unpaced: the controller gets that by
//! reporting a window above `u32::MAX` while the burst leaves, for which quinn's pacer stands
//! aside. This test catches a quinn upgrade that changes that. Paced (1.25 windows per round
//! trip), the first 120 KB arrived over 360 ms; as a burst they cross the emulated 20 Mbit/s
//! link in 45 ms.
#![allow(clippy::disallowed_methods)] // the spread of real arrivals is what is measured
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use outpost_netem::{NetemSocket, Profile, Side};
use outpost_transport::profile::{self, Role};
use quinn::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use quinn::{ClientConfig, Endpoint, ServerConfig};

/// GEO without loss or jitter: the first flight's timing is then the sender's alone.
const LINK: &str = r#"
description = "600 ms, 20 Mbit/s down, no loss"
[both]
delay = "300ms"
[up]
rate = "2mbit"
queue = "64KB"
[down]
rate = "20mbit"
queue = "750KB"
"#;

/// What the hub sends: more than the first flight.
const ANSWER: usize = 1 << 20;
/// The first flight's bytes measured at the receiver (the window minus headers and handshake).
const FIRST_FLIGHT: usize = 120_000;

fn configs() -> (ServerConfig, ClientConfig) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let der = CertificateDer::from(cert.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()));
    let mut server = ServerConfig::with_single_cert(vec![der.clone()], key).unwrap();
    let mut hub = Arc::try_unwrap(profile::SATELLITE.transport_config(Role::Hub)).unwrap();
    hub.max_concurrent_bidi_streams(4u32.into())
        .receive_window(profile::SATELLITE.connection_window.into())
        .send_window(profile::SATELLITE.send_window.into());
    server.transport_config(Arc::new(hub));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let mut client = ClientConfig::with_root_certificates(Arc::new(roots)).unwrap();
    client.transport_config(profile::SATELLITE.transport_config(Role::Agent));
    (server, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_satellite_first_flight_leaves_as_one_burst() {
    let (server_config, client_config) = configs();
    let server = Endpoint::server(server_config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let server_addr = server.local_addr().unwrap();
    tokio::spawn(async move {
        let conn = server.accept().await.unwrap().await.unwrap();
        let (mut send, mut recv) = conn.accept_bi().await.unwrap();
        recv.read_to_end(16).await.unwrap();
        send.write_all(&vec![0x5a; ANSWER]).await.unwrap();
        send.finish().unwrap();
        conn.closed().await;
    });
    let profile = Profile::from_toml("geo-lossless", LINK, std::path::Path::new(".")).unwrap();
    let socket =
        NetemSocket::bind("127.0.0.1:0".parse().unwrap(), &profile, Side::Device, 1).unwrap();
    let client = socket.client_endpoint(client_config).unwrap();
    let conn = client
        .connect(server_addr, "localhost")
        .unwrap()
        .await
        .unwrap();
    // A few seconds of nothing: the hub's controller is idle when the answer starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(b"go").await.unwrap();
    send.finish().unwrap();
    let (mut first, mut received) = (None, 0usize);
    let mut buf = vec![0u8; 64 << 10];
    let spread = loop {
        let n = recv
            .read(&mut buf)
            .await
            .unwrap()
            .expect("the answer ended early");
        let now = Instant::now();
        let start = *first.get_or_insert(now);
        received += n;
        if received >= FIRST_FLIGHT {
            break now - start;
        }
    };
    assert!(
        spread < Duration::from_millis(200),
        "the first {received} bytes arrived over {spread:?}: paced, not a burst \
         (a burst crosses 20 Mbit/s in ~50 ms; paced took 360 ms)"
    );
    conn.close(0u32.into(), b"done");
}
