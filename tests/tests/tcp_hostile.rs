//! Hostile clients on the hub's agent TCP port get what the QUIC side gives them: a clear end,
//! bounded cost, and no effect on the devices it serves. A real agent on TCP (`--tcp-fallback
//! always`) and the docker CLI through the hub keep working through every attack.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::sync::Arc;
use std::time::Duration;

use outpost_certs::{ca_client_config, HUB_SERVER_NAME};
use outpost_protocol::tunnel::{encode_hello, packet_header, TunnelHello, ALPN_TUNNEL};
use outpost_tests::docker::{require_engine, DockerCli, DOCKER_SOCKET};
use outpost_tests::{Agent, Hub};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The hub's setup deadline (`agent_link::tunnel::SETUP_DEADLINE`) and room for a busy machine.
const SETUP_DEADLINE: Duration = Duration::from_secs(20);
const SETUP_SLOTS: usize = 512;

/// How long until the hub closes `stream`: reads (discarding) until the end, within `limit`.
async fn closed_within<S: AsyncRead + Unpin>(stream: &mut S, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    let ended = tokio::time::timeout(limit, async {
        while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
    assert!(ended.is_ok(), "the hub kept the connection for {limit:?}");
    started.elapsed()
}

async fn tls(hub: &Hub, addr: &str) -> tokio_rustls::client::TlsStream<TcpStream> {
    let ca = std::fs::read_to_string(hub.data_dir.join("ca.pem")).unwrap();
    let config = ca_client_config(&ca, None, &[ALPN_TUNNEL]).unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(HUB_SERVER_NAME).unwrap();
    connector.connect(name, tcp).await.unwrap()
}

fn hello() -> Vec<u8> {
    encode_hello(&TunnelHello {
        via_proxy: false,
        reason: "attack".into(),
    })
}

/// The device still answers through the hub, and the hub still sees it checking in over TCP.
fn device_still_served(hub: &Hub, docker: &DockerCli, id: u64) {
    docker.ok(&["ps"]);
    let shown = hub.show(id);
    assert_eq!(shown["transport"], "tcp", "{shown}");
    assert!(
        matches!(shown["status"].as_str(), Some("standby" | "active")),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_tcp_clients_are_refused_at_bounded_cost_while_a_tcp_device_is_served() {
    require_engine();
    let hub = tokio::task::block_in_place(Hub::start);
    let addr = hub.agent_addr.clone();
    let (id, key) = tokio::task::block_in_place(|| hub.create_endpoint("tcp-kiosk", &[]));
    let tmp = tempfile::tempdir().unwrap();
    let socket = format!("unix://{DOCKER_SOCKET}");
    let _agent = tokio::task::block_in_place(|| {
        Agent::start(
            &tmp.path().join("agent"),
            &[
                ("EDGE_KEY", &key),
                ("DOCKER_HOST", &socket),
                ("OUTPOST_TCP_FALLBACK", "always"),
            ],
        )
    });
    tokio::task::block_in_place(|| hub.wait_status(id, "standby", Duration::from_secs(20)));
    let docker = DockerCli::for_endpoint(&hub, id);

    // Not TLS at all.
    let mut plain = TcpStream::connect(&addr).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: hub\r\n\r\n")
        .await
        .unwrap();
    let took = closed_within(&mut plain, Duration::from_secs(5)).await;
    println!("plain HTTP closed after {took:?}");

    // TLS, then a hello of another protocol.
    let mut bad_hello = tls(&hub, &addr).await;
    bad_hello
        .write_all(b"SSH-2.0-OpenSSH_9.2\r\n")
        .await
        .unwrap();
    let took = closed_within(&mut bad_hello, Duration::from_secs(5)).await;
    println!("bad hello closed after {took:?}");

    // TLS, a good hello, then a packet length past the limit.
    let mut oversized = tls(&hub, &addr).await;
    oversized.write_all(&hello()).await.unwrap();
    oversized.write_all(&[0xff, 0xff]).await.unwrap();
    oversized.write_all(&[0u8; 1024]).await.unwrap();
    let took = closed_within(&mut oversized, Duration::from_secs(5)).await;
    println!("oversized packet closed after {took:?}");

    // TLS, a good hello, then 2,000 packets of noise: QUIC drops them; no session ever comes, so
    // the tunnel ends at the setup deadline.
    let mut noise = tls(&hub, &addr).await;
    noise.write_all(&hello()).await.unwrap();
    let started = Instant::now();
    for i in 0..2_000u32 {
        let packet = vec![(i % 251) as u8 | 0x40; 1200];
        noise.write_all(&packet_header(packet.len())).await.unwrap();
        noise.write_all(&packet).await.unwrap();
    }
    noise.flush().await.unwrap();

    // A slowloris: a byte of a TLS client hello a second.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    let slow_started = Instant::now();
    let dribble = tokio::spawn(async move {
        for byte in [0x16u8, 0x03, 0x01, 0x02, 0x00].iter().cycle().take(60) {
            if slow.write_all(&[*byte]).await.is_err() {
                return slow_started.elapsed();
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        panic!("the hub let a slowloris dribble for a minute");
    });

    tokio::task::block_in_place(|| device_still_served(&hub, &docker, id));

    // Every setup slot taken by idle connections: the rest are closed at once.
    let mut idle = Vec::new();
    for _ in 0..SETUP_SLOTS + 40 {
        idle.push(TcpStream::connect(&addr).await.unwrap());
    }
    let mut closed_at_once = 0;
    for stream in idle.iter_mut().rev().take(40) {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_secs(2), stream.read(&mut byte)).await
        {
            closed_at_once += 1;
        }
    }
    println!("{closed_at_once} of the 40 connections past the slots closed at once");
    assert!(closed_at_once >= 30, "{closed_at_once}");
    tokio::task::block_in_place(|| device_still_served(&hub, &docker, id));

    let took = closed_within(&mut noise, SETUP_DEADLINE + Duration::from_secs(10)).await;
    println!(
        "noise tunnel closed {:?} after its hello",
        started.elapsed().max(took)
    );
    let dribbled = dribble.await.unwrap();
    println!("slowloris cut after {dribbled:?}");
    assert!(dribbled <= SETUP_DEADLINE + Duration::from_secs(10));
    drop(idle);

    let metrics = tokio::task::block_in_place(|| hub.api_call("GET", "/metrics", None));
    let metrics = String::from_utf8(metrics.body).unwrap();
    let line = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
            .to_owned()
    };
    let busy: u64 = line("outpost_hub_agent_tunnels_refused_total{reason=\"busy\"}")
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    println!("refused busy: {busy}");
    assert!(busy >= 30, "{busy}");
    // The device's tunnel never dropped a packet: its connection keeps less in flight than the
    // queue holds.
    let drops = line("outpost_hub_agent_tunnel_drops_total");
    assert!(drops.ends_with(" 0"), "{drops}");
    let on_tcp = line("outpost_hub_sessions_by_transport{transport=\"tcp\"}");
    assert!(on_tcp.ends_with(" 1"), "{on_tcp}");
    tokio::task::block_in_place(|| device_still_served(&hub, &docker, id));
    assert!(
        !hub.log().contains("panicked"),
        "the hub panicked:\n{}",
        hub.log()
    );
}
