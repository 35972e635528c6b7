//! Noticing that this device's route to the hub changed: a new local address after a Wi-Fi → LTE
//! switch, a DHCP renewal or a carrier re-attach.
//!
//! The socket needs no rebind: it is bound to the wildcard address and the kernel picks the source
//! of each packet, so the next packet leaves from the new address and QUIC migrates. But an idle
//! device sends its next packet only at its next check-in, and until then the hub keeps sending to
//! the old address: a summon would wait up to a whole interval (25 s, measured by the rig test
//! `idle_agent_announces_a_new_address_at_once`). So the driver asks the kernel every
//! [`CHECK_EVERY`] which local address reaches the hub — `connect` on a UDP socket only picks a
//! route, nothing is sent — and checks in at once when it changed.

use std::future::pending;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use tokio::time::{interval, Interval, MissedTickBehavior};

/// How often the route is looked up: two syscalls, no packet.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// Watches the local address the kernel would use to reach the hub.
#[derive(Debug)]
pub(crate) struct RouteWatch {
    hub: SocketAddr,
    source: Option<IpAddr>,
    ticks: Option<Interval>,
}

impl RouteWatch {
    /// Watch the route to `hub`; a disabled watch never reports (many agents in one process
    /// share one host's routes, and the load tool turns it off).
    pub(crate) fn new(hub: SocketAddr, enabled: bool) -> Self {
        let ticks = enabled.then(|| {
            let mut ticks = interval(CHECK_EVERY);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            ticks
        });
        Self {
            hub,
            source: route_source(hub),
            ticks,
        }
    }

    /// Resolves with the new local address when the route to the hub has changed.
    pub(crate) async fn changed(&mut self) -> Option<IpAddr> {
        let Some(ticks) = &mut self.ticks else {
            return pending().await;
        };
        loop {
            ticks.tick().await;
            let now = route_source(self.hub);
            if now != self.source {
                self.source = now;
                return now;
            }
        }
    }
}

/// The local address the kernel would use to reach `hub` now.
fn route_source(hub: SocketAddr) -> Option<IpAddr> {
    let any: SocketAddr = if hub.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let probe = UdpSocket::bind(any).ok()?;
    probe.connect(hub).ok()?;
    probe.local_addr().ok().map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_to_loopback_leaves_from_loopback() {
        assert_eq!(
            route_source(([127, 0, 0, 1], 4433).into()),
            Some(IpAddr::from([127, 0, 0, 1]))
        );
    }

    #[tokio::test]
    async fn a_disabled_watch_never_reports() {
        let mut watch = RouteWatch::new(([127, 0, 0, 1], 4433).into(), false);
        let waited = tokio::time::timeout(Duration::from_millis(50), watch.changed()).await;
        assert!(waited.is_err());
    }
}
