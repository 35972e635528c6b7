//! Does UDP reach the hub now? One QUIC packet of an unused version, which any QUIC server answers
//! with a Version Negotiation packet (RFC 9000 §6) from its endpoint, without a handshake and
//! without keeping anything: a full round trip on UDP that costs the hub no cryptography and no
//! state, so a device on TCP may ask every few minutes.

use std::net::SocketAddr;
use std::time::Duration;

use rand::RngCore;
use tokio::net::UdpSocket;
use tokio::time::{timeout_at, Instant};

/// A QUIC server answers only a datagram at least this large with Version Negotiation
/// (RFC 9000 §14.1: the size of a client's first Initial).
const PROBE_SIZE: usize = 1200;
/// A version the QUIC reserved pattern `0x?a?a?a?a` guarantees no server speaks.
const UNSPOKEN_VERSION: u32 = 0x5a6a_7a8a;
const CID_LEN: usize = 8;

/// Whether `hub` answered a probe on UDP within `wait`, with `tries` probes spread over it.
pub async fn udp_answers(hub: SocketAddr, wait: Duration, tries: u32) -> bool {
    let bind: SocketAddr = if hub.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let Ok(socket) = UdpSocket::bind(bind).await else {
        return false;
    };
    if socket.connect(hub).await.is_err() {
        return false;
    }
    let mut cid = [0u8; CID_LEN];
    rand::rng().fill_bytes(&mut cid);
    let probe = probe_packet(&cid);
    let tries = tries.max(1);
    let deadline = Instant::now() + wait;
    for attempt in 0..tries {
        if socket.send(&probe).await.is_err() {
            return false;
        }
        let this_try = Instant::now() + wait / tries;
        let until = if attempt + 1 == tries {
            deadline
        } else {
            this_try
        };
        let mut answer = [0u8; 1500];
        while let Ok(Ok(len)) = timeout_at(until, socket.recv(&mut answer)).await {
            if is_negotiation_for(&answer[..len], &cid) {
                return true;
            }
        }
    }
    false
}

/// A long-header packet of an unspoken version from source connection id `cid`, padded to
/// [`PROBE_SIZE`].
fn probe_packet(cid: &[u8; CID_LEN]) -> Vec<u8> {
    let mut packet = Vec::with_capacity(PROBE_SIZE);
    packet.push(0xc0);
    packet.extend_from_slice(&UNSPOKEN_VERSION.to_be_bytes());
    packet.push(CID_LEN as u8);
    packet.extend_from_slice(cid);
    packet.push(CID_LEN as u8);
    packet.extend_from_slice(cid);
    packet.resize(PROBE_SIZE, 0);
    packet
}

/// Whether `packet` is a Version Negotiation packet (long header, version 0) addressed to `cid`.
fn is_negotiation_for(packet: &[u8], cid: &[u8; CID_LEN]) -> bool {
    packet.len() > 6 + CID_LEN
        && packet[0] & 0x80 != 0
        && packet[1..5] == [0, 0, 0, 0]
        && usize::from(packet[5]) == CID_LEN
        && packet[6..6 + CID_LEN] == cid[..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_quic_server_answers_the_probe_and_a_silent_port_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let pki = outpost_certs::HubPki::load_or_create(dir.path(), &[]).unwrap();
        let tls = pki.server_config(&[b"probe-test"]).unwrap();
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
        let server = quinn::Endpoint::server(
            quinn::ServerConfig::with_crypto(std::sync::Arc::new(crypto)),
            "127.0.0.1:0".parse().unwrap(),
        )
        .unwrap();
        let hub = server.local_addr().unwrap();
        assert!(udp_answers(hub, Duration::from_secs(2), 2).await);
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let started = Instant::now();
        assert!(!udp_answers(silent.local_addr().unwrap(), Duration::from_millis(300), 2).await);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
