//! The relay as a middlebox: NAT rebinding and binding timeouts seen by the hub, exact rules
//! and scripted outages with exact counts.
//!
//! The relay reads tokio's clock, but it cannot run on paused time here: it shares the runtime
//! with real loopback sockets, and a paused runtime that parks while a datagram is in flight
//! jumps its clock to the next timer (the relay's 1 s sweep), expiring the very bindings under
//! test. So the tests run in real time and never rely on the machine being quick: what they wait
//! for, they wait for by the relay's counters (bounded by [`DELIVERY`]); every other interval is
//! a lower bound (a sleep that only has to be long enough), or leaves a margin of most of a
//! second for the test thread to be scheduled (keepalives every 100 ms against a 1 s timeout).

#![allow(clippy::unwrap_used)] // Test code: a failed setup step should panic loudly.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use outpost_netem::control::Controllable;
use outpost_netem::{FrontendCounters, Profile, Relay, RelayHandle};
use tokio::net::UdpSocket;
use tokio::time::{sleep, sleep_until, timeout, Instant};

/// How long a datagram or a counter may take to show up: far beyond what loopback needs, so only
/// a relay that lost it reaches this bound.
const DELIVERY: Duration = Duration::from_secs(10);

/// Waits until the relay's counters satisfy `done`, or fails naming `what` after [`DELIVERY`].
async fn counted(relay: &RelayHandle, what: &str, done: impl Fn(&FrontendCounters) -> bool) {
    let deadline = Instant::now() + DELIVERY;
    while !done(&relay.counters()) {
        assert!(
            Instant::now() < deadline,
            "{what}: not counted within {DELIVERY:?}: {:?}",
            relay.counters()
        );
        sleep(Duration::from_millis(5)).await;
    }
}

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
    let (_, from) = timeout(DELIVERY, hub.recv_from(&mut buf))
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
    assert_eq!(try_recv(&device, DELIVERY).await, Some(5));
    assert_eq!(relay.counters().nat.rebinds, 1);
}

#[tokio::test]
async fn idle_binding_times_out_but_keepalives_hold_it() {
    let (hub, device, relay) = setup("[nat]\nbinding_timeout = \"1s\"\n").await;
    let first = hub_sees(&device, &hub, &relay).await;
    // Keepalives every 100 ms hold the mapping for one and a half timeouts.
    for _ in 0..15 {
        sleep(Duration::from_millis(100)).await;
        assert_eq!(hub_sees(&device, &hub, &relay).await, first);
    }
    // Silence longer than the timeout: the hub's packets are lost, then a new port appears.
    sleep(Duration::from_millis(1500)).await;
    hub.send_to(b"anyone?", first).await.unwrap();
    assert_eq!(try_recv(&device, Duration::from_millis(200)).await, None);
    assert_ne!(hub_sees(&device, &hub, &relay).await, first);
    assert_eq!(relay.counters().nat.expired, 1);
}

#[tokio::test]
async fn scheduled_rebinding_moves_the_port() {
    let (hub, device, relay) = setup("[nat]\nrebind_every = \"200ms\"\n").await;
    let first = hub_sees(&device, &hub, &relay).await;
    // At least the period: the relay moves a due mapping at its next packet, so a longer pause
    // (a busy machine) still moves it exactly once.
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
    // Once all 20 are through the link, what it let pass is counted: no silence to wait out.
    counted(&relay, "20 packets submitted", |c| c.up.submitted == 20).await;
    assert_eq!(relay.counters().up.sent, 12);
    let mut got = Vec::new();
    let mut buf = [0u8; 8];
    for _ in 0..12 {
        timeout(DELIVERY, hub.recv_from(&mut buf))
            .await
            .expect("a packet the link let pass")
            .unwrap();
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
    // Long enough that the five packets reach the relay inside it even on a busy machine.
    let outage = Duration::from_secs(2);
    let started = Instant::now();
    relay.control().outage(outage);
    for _ in 0..5 {
        device.send_to(b"x", relay.local_addr()).await.unwrap();
    }
    counted(&relay, "5 packets dropped by the outage", |c| {
        c.up.dropped_outage == 5
    })
    .await;
    assert_eq!(
        relay.counters().up.sent,
        1,
        "only the packet before the outage"
    );
    let mut buf = [0u8; 8];
    assert!(
        hub.try_recv_from(&mut buf).is_err(),
        "a packet crossed the outage"
    );
    sleep_until(started + outage).await;
    hub_sees(&device, &hub, &relay).await;
    assert_eq!(relay.counters().up.dropped_outage, 5);
    assert_eq!(relay.counters().up.sent, 2);
}

#[tokio::test]
async fn profile_changes_at_run_time() {
    let (hub, device, relay) = setup("").await;
    hub_sees(&device, &hub, &relay).await;
    let slow = Profile::from_toml("slow", "[up]\ndelay = \"300ms\"\n", Path::new(".")).unwrap();
    relay.control().set_profile(slow);
    let start = Instant::now();
    hub_sees(&device, &hub, &relay).await;
    assert!(start.elapsed() >= Duration::from_millis(300));
}
