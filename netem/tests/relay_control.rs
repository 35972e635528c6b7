//! The relay as a middlebox: NAT rebinding and binding timeouts seen by the hub, exact rules
//! and scripted outages with exact counts.

#![allow(clippy::unwrap_used)] // Test code: a failed setup step should panic loudly.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use outpost_netem::control::Controllable;
use outpost_netem::{Profile, Relay, RelayHandle};
use tokio::net::UdpSocket;
use tokio::time::{sleep, timeout};

async fn setup(profile_toml: &str) -> (UdpSocket, UdpSocket, RelayHandle) {
    let hub = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let profile = Profile::from_toml("test", profile_toml, Path::new(".")).unwrap();
    let relay = Relay::bind(
        "127.0.0.1:0".parse().unwrap(),
        hub.local_addr().unwrap(),
        profile,
        3,
    )
    .await
    .unwrap();
    let device = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    (hub, device, relay)
}

/// Sends one datagram from the device and returns the source address the hub sees.
async fn hub_sees(device: &UdpSocket, hub: &UdpSocket, relay: &RelayHandle) -> SocketAddr {
    device.send_to(b"hello", relay.local_addr()).await.unwrap();
    let mut buf = [0u8; 64];
    let (_, from) = timeout(Duration::from_secs(2), hub.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    from
}

async fn try_recv(socket: &UdpSocket, within: Duration) -> Option<usize> {
    let mut buf = [0u8; 64];
    timeout(within, socket.recv_from(&mut buf))
        .await
        .ok()
        .map(|r| r.unwrap().0)
}

#[tokio::test]
async fn hub_sees_a_new_port_after_a_commanded_rebind_and_old_port_is_dead() {
    let (hub, device, relay) = setup("").await;
    let first = hub_sees(&device, &hub, &relay).await;
    assert_eq!(
        hub_sees(&device, &hub, &relay).await,
        first,
        "stable without a rebind"
    );
    relay.control().rebind();
    // Replies to the old mapping no longer reach the device.
    hub.send_to(b"late", first).await.unwrap();
    assert_eq!(try_recv(&device, Duration::from_millis(200)).await, None);
    let second = hub_sees(&device, &hub, &relay).await;
    assert_ne!(second, first);
    // The new mapping carries replies.
    hub.send_to(b"reply", second).await.unwrap();
    assert_eq!(try_recv(&device, Duration::from_secs(2)).await, Some(5));
    assert_eq!(relay.counters().nat.rebinds, 1);
}

#[tokio::test]
async fn idle_binding_times_out_but_keepalives_hold_it() {
    let (hub, device, relay) = setup("[nat]\nbinding_timeout = \"300ms\"\n").await;
    let first = hub_sees(&device, &hub, &relay).await;
    // Keepalives every 100 ms hold the mapping for a second.
    for _ in 0..10 {
        sleep(Duration::from_millis(100)).await;
        assert_eq!(hub_sees(&device, &hub, &relay).await, first);
    }
    // Silence longer than the timeout: the hub's packets are lost, then a new port appears.
    sleep(Duration::from_millis(450)).await;
    hub.send_to(b"anyone?", first).await.unwrap();
    assert_eq!(try_recv(&device, Duration::from_millis(200)).await, None);
    assert_ne!(hub_sees(&device, &hub, &relay).await, first);
    assert_eq!(relay.counters().nat.expired, 1);
}

#[tokio::test]
async fn scheduled_rebinding_moves_the_port() {
    let (hub, device, relay) = setup("[nat]\nrebind_every = \"200ms\"\n").await;
    let first = hub_sees(&device, &hub, &relay).await;
    sleep(Duration::from_millis(250)).await;
    let second = hub_sees(&device, &hub, &relay).await;
    assert_ne!(first, second);
    assert_eq!(relay.counters().nat.rebinds, 1);
}

#[tokio::test]
async fn exact_rules_drop_exactly_and_count_hits() {
    let (hub, device, relay) =
        setup("[[up.rules]]\ndrop_first = 3\n[[up.rules]]\ndrop_every = 4\n").await;
    for i in 0u8..20 {
        device.send_to(&[i], relay.local_addr()).await.unwrap();
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 8];
    while let Ok(Ok((_, _))) = timeout(Duration::from_millis(300), hub.recv_from(&mut buf)).await {
        got.push(buf[0]);
    }
    // Packets are numbered from 1: drop 1, 2, 3 and 4, 8, 12, 16, 20.
    let want: Vec<u8> = (1u8..=20)
        .filter(|n| *n > 3 && n % 4 != 0)
        .map(|n| n - 1)
        .collect();
    assert_eq!(got, want);
    assert_eq!(relay.control().rule_hits().0, vec![3, 5]);
    assert_eq!(relay.counters().up.dropped_rule, 8);
}

#[tokio::test]
async fn scripted_outage_drops_everything_then_the_link_returns() {
    let (hub, device, relay) = setup("").await;
    hub_sees(&device, &hub, &relay).await;
    relay.control().outage(Duration::from_millis(300));
    for _ in 0..5 {
        device.send_to(b"x", relay.local_addr()).await.unwrap();
    }
    assert_eq!(try_recv(&hub, Duration::from_millis(100)).await, None);
    sleep(Duration::from_millis(300)).await;
    hub_sees(&device, &hub, &relay).await;
    assert_eq!(relay.counters().up.dropped_outage, 5);
}

#[tokio::test]
async fn profile_changes_at_run_time() {
    let (hub, device, relay) = setup("").await;
    hub_sees(&device, &hub, &relay).await;
    let slow = Profile::from_toml("slow", "[up]\ndelay = \"300ms\"\n", Path::new(".")).unwrap();
    relay.control().set_profile(slow);
    let start = tokio::time::Instant::now();
    hub_sees(&device, &hub, &relay).await;
    assert!(start.elapsed() >= Duration::from_millis(300));
}
