//! Named QUIC transport profiles, each value derived from the links Outpost devices live on.
//!
//! quinn's defaults suit 100 Mbit/s at 100 ms. Our devices sit behind carrier NATs that forget a
//! mapping after ~30 s of silence, on links that drop out for a minute, with round trips up to 600 ms
//! (GEO). The constants below name those facts; every profile value is computed from them.

use std::sync::Arc;
use std::time::Duration;

use outpost_protocol::agent_session::MAX_CHECKIN_INTERVAL;
use quinn::{IdleTimeout, TransportConfig, VarInt};

use crate::congestion::{Controller, PathMemory};

/// The shortest NAT binding timeout we design for (home gateways measured at 30 s; carriers vary,
/// many are longer). Something must cross the NAT more often than this.
pub const NAT_BINDING_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest outage a session must survive without reconnecting (tunnels, lifts, a LEO dish
/// handing over twice, a cell reselection on a moving vehicle).
pub const OUTAGE_TO_RIDE_OUT: Duration = Duration::from_secs(60);
/// Round trip of a geostationary satellite path: 2 × 35,786 km up and down at c ≈ 480 ms, plus
/// ground segment and scheduling ≈ 600 ms.
pub const GEO_RTT: Duration = Duration::from_millis(600);
/// Typical LTE round trip under load.
pub const CELLULAR_RTT: Duration = Duration::from_millis(100);

/// How soon a sender notices that a path is back after an outage: while nothing is acknowledged,
/// probes go out at most this far apart instead of doubling their interval without bound (quinn's
/// `max_probe_interval`, an Outpost patch: vendor/README.md), and never closer than one probe
/// timeout without backoff (about a loaded round trip plus four deviations). Unbounded, a 5 s
/// outage on a 100 ms path left the path unused for up to 6 s after it returned, and on GEO for
/// 5.5 s. At 1 s (before session 30) a burst of lost acks outlasted the burst itself: during a
/// silence the receiver's only packets are its answers to the probes, so a loss burst of ~5
/// packets on `flaky-cellular` (Gilbert–Elliott, per packet) ate one answer a second for up to 7 s,
/// seven such silences in one 125 s upload (BENCHMARKS.md, session 30). The cost while a transfer
/// waits out an outage is one or two probe packets per interval (≤ 10 KB/s on cellular, ≤ 3 KB/s
/// on GEO, where the probe timeout is the floor); an idle connection has nothing in flight and
/// sends no probes at all.
pub const PROBE_INTERVAL_DURING_OUTAGE: Duration = Duration::from_millis(250);

/// Check-in interval: below the NAT binding timeout with margin for one lost check-in's retry
/// (the session retries an unacked check-in within a few seconds).
pub const DEFAULT_CHECKIN_INTERVAL: Duration = Duration::from_secs(25);
/// Idle timeout: the outage to ride out plus two check-in intervals, so the connection is still
/// there when the link comes back and the first check-in after it lands.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60 + 2 * 25);
/// The idle timeout both sides advertise: enough for the longest interval an agent takes
/// ([`MAX_CHECKIN_INTERVAL`], a `quiet` device's ceiling). quinn fixes the advertised value at the
/// handshake, before the hub knows which device (and which group's policy) it talks to, so each
/// side then keeps its own timeout at [`idle_timeout_for`] its session's interval with
/// `quinn::Connection::set_max_idle_timeout` (an Outpost patch, `vendor/README.md`): a default
/// session still gives up on a silent peer after [`DEFAULT_IDLE_TIMEOUT`]. An older peer
/// advertises [`DEFAULT_IDLE_TIMEOUT`], which then bounds the connection whatever this side sets.
pub const LONGEST_IDLE_TIMEOUT: Duration = idle_timeout_for(MAX_CHECKIN_INTERVAL);

/// The idle timeout a session checking in every `interval` needs: the outage to ride out plus two
/// intervals (one check-in lost), never below [`DEFAULT_IDLE_TIMEOUT`].
pub const fn idle_timeout_for(interval: Duration) -> Duration {
    let needed = OUTAGE_TO_RIDE_OUT
        .saturating_add(interval)
        .saturating_add(interval);
    if needed.as_millis() > DEFAULT_IDLE_TIMEOUT.as_millis() {
        needed
    } else {
        DEFAULT_IDLE_TIMEOUT
    }
}

/// A config's congestion control.
enum Congestion {
    /// The profile's controller, with a connection's path memory or not.
    Profile(Option<PathMemory>),
    /// A tunnel's fixed window.
    FixedWindow,
}

/// Which side of the connection a transport config is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The hub: accepts one control stream from each agent and opens proxy streams.
    Hub,
    /// The agent: opens the control stream; accepts proxy streams only when summoned.
    Agent,
}

/// A named set of transport values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransportProfile {
    /// Profile name (`lan`, `cellular`, `satellite`).
    pub name: &'static str,
    /// RTT assumed before the first sample: too low and the first handshake packets are resent
    /// needlessly on a slow path; too high and a real loss is recovered slowly.
    pub initial_rtt: Duration,
    /// Close the connection after this much silence (what a session sets at its start; the
    /// handshake advertises [`LONGEST_IDLE_TIMEOUT`]).
    pub idle_timeout: Duration,
    /// Default check-in interval (the NAT keepalive).
    pub checkin_interval: Duration,
    /// Receive window per stream: one stream's throughput is at most window / RTT.
    pub stream_window: u32,
    /// Receive window for the whole connection: bounds what one peer can make us buffer.
    pub connection_window: u32,
    /// Bytes we keep unacknowledged in flight across all streams.
    pub send_window: u32,
    /// The hub's congestion window before the first measurement, in bytes: what it sends in the
    /// first round trip towards the agent, the link's fast *down* direction. The agent's sends
    /// (the uplink, a tenth of the downlink on satellite plans) start from
    /// [`RFC9002_INITIAL_WINDOW`].
    pub hub_initial_window: u64,
    /// Congestion control: loss-based on clean paths, delivery-rate where loss is mostly not
    /// congestion (see [`crate::congestion`] and BENCHMARKS.md, "Congestion control").
    pub congestion: Controller,
    /// Parity over the end of each burst, so a packet lost in a transfer's last round trip is
    /// rebuilt by the receiver instead of resent a round trip later (quinn-proto's `tail_repair`,
    /// an Outpost patch: vendor/README.md; [`crate::tail_repair`]). Used only when both sides
    /// enable it. It saves a round trip and costs an eighth of each burst's unacknowledged tail,
    /// so it pays where round trips are long: on GEO it saves ~0.6 s of a 10 MB `docker load` for
    /// ~2 % of its bytes; on LEO (30 ms) the same parity was 230-940 frames (up to 6 % of a 10 MB
    /// `load`, its window being wide) to save 30 ms, so `cellular` leaves it off.
    pub tail_repair: bool,
}

const KIB: u32 = 1024;
const MIB: u32 = 1024 * KIB;

/// RFC 9002's initial window: ten 1,472-byte datagrams.
pub const RFC9002_INITIAL_WINDOW: u64 = 14_720;

/// The hub's initial window on satellite paths: ten times RFC 9002's. At 600 ms a 10-packet
/// start needs about four more round trips (2.4 s) to reach a 20 Mbit/s bandwidth-delay product
/// (1.5 MB); a transfer starting on the long-lived, mostly idle hub ↔ agent connection has no
/// rate to resume from. The delivery-rate controller sends this first window as one burst and
/// reads the link's rate from its acks (`congestion::delivery_rate`), so 147 KB is also the
/// train that measures the path: a tenth of the BDP, well inside a GEO modem's 750 KB queue.
/// Measured with the `congestion` bench (geo-satellite, 10 MB down after 10 s of small exchanges),
/// when this window was still paced: 8.35 s from 14.7 KB, 7.31 s from 73.6 KB, 6.63 s from
/// 147 KB; as a burst, 5.84–5.91 s. The cost is on slow paths that
/// also pick `satellite` for their round trip: EDGE (240 kbit/s, 30 KB queue) overflows its queue
/// once (1 MB down: 41.9 s from 14.7 KB, 44.7 s from 147 KB; see BENCHMARKS.md).
pub const SATELLITE_HUB_INITIAL_WINDOW: u64 = 10 * RFC9002_INITIAL_WINDOW;

/// Loopback and LAN: short round trips, windows of quinn's order.
pub const LAN: TransportProfile = TransportProfile {
    name: "lan",
    initial_rtt: Duration::from_millis(50),
    idle_timeout: DEFAULT_IDLE_TIMEOUT,
    checkin_interval: DEFAULT_CHECKIN_INTERVAL,
    // 2 MiB at 1 ms is far beyond any local disk; at 10 ms it still allows 1.6 Gbit/s.
    stream_window: 2 * MIB,
    connection_window: 4 * MIB,
    send_window: 4 * MIB,
    hub_initial_window: RFC9002_INITIAL_WINDOW,
    congestion: Controller::Cubic,
    tail_repair: false,
};

/// LTE/3G: 50–300 ms, up to ~50 Mbit/s. Window for 50 Mbit/s × 300 ms ≈ 1.9 MB.
pub const CELLULAR: TransportProfile = TransportProfile {
    name: "cellular",
    initial_rtt: Duration::from_millis(300),
    idle_timeout: DEFAULT_IDLE_TIMEOUT,
    checkin_interval: DEFAULT_CHECKIN_INTERVAL,
    stream_window: 2 * MIB,
    connection_window: 4 * MIB,
    send_window: 4 * MIB,
    hub_initial_window: RFC9002_INITIAL_WINDOW,
    congestion: Controller::DeliveryRate,
    tail_repair: false,
};

/// GEO satellite: 600 ms RTT, 20 Mbit/s down. Bandwidth-delay product 20 Mbit/s × 0.6 s = 1.5 MB.
/// The stream window is four BDPs: at 1 % loss a stream almost always has a gap, and the receiver
/// cannot hand data past it to the application, so the window must hold what is in flight (about
/// 1.3 BDP plus the modem's queue) and everything sent while the gap is recovered (loss detection
/// ≈ 9/8 RTT, the retransmission half an RTT more). At twice the BDP the hub stalled on stream
/// credit at every loss: a 12.6 MB `docker load` through the product across geo-satellite
/// (`tests/tests/geo_transfer.rs`) took 9.95–10.47 s with 3/6 MiB windows, 8.98–9.29 s with
/// 6/8 MiB. The connection window stays above the stream's so the control stream keeps credit.
pub const SATELLITE: TransportProfile = TransportProfile {
    name: "satellite",
    initial_rtt: Duration::from_millis(700),
    idle_timeout: DEFAULT_IDLE_TIMEOUT,
    checkin_interval: DEFAULT_CHECKIN_INTERVAL,
    stream_window: 6 * MIB,
    connection_window: 8 * MIB,
    send_window: 6 * MIB,
    hub_initial_window: SATELLITE_HUB_INITIAL_WINDOW,
    congestion: Controller::DeliveryRate,
    tail_repair: true,
};

/// Every profile, for lookup by name.
pub const PROFILES: [TransportProfile; 3] = [LAN, CELLULAR, SATELLITE];

/// The hub's windows for a connection in standby: control frames only, which the hub reads as they
/// arrive. 16 KiB carries a typical engine snapshot in one round trip (the largest control frame in
/// sixteen) and bounds what each idle agent can make the hub buffer; a summoned agent's connection
/// is raised to the profile's windows from the hub's window budget.
pub const HUB_STANDBY_WINDOW: u32 = 16 * KIB;

/// Datagrams are check-ins of a few bytes: a small buffer is plenty and bounds hub memory.
const DATAGRAM_BUFFER: usize = 4 * 1024;

impl TransportProfile {
    /// Look a profile up by name.
    pub fn by_name(name: &str) -> Option<Self> {
        PROFILES.into_iter().find(|p| p.name == name)
    }

    /// The congestion window `role` starts its sends from.
    pub fn initial_window(&self, role: Role) -> u64 {
        match role {
            Role::Hub => self.hub_initial_window,
            Role::Agent => RFC9002_INITIAL_WINDOW,
        }
    }

    /// The quinn transport config for this profile and role.
    pub fn transport_config(&self, role: Role) -> Arc<TransportConfig> {
        self.build(role, Congestion::Profile(None))
    }

    /// The config for a connection inside a TCP tunnel: this profile's, with the fixed window of
    /// [`crate::tunnel::window`] in place of the profile's controller (TCP below controls it).
    pub fn tunnel_config(&self, role: Role) -> Arc<TransportConfig> {
        self.build(role, Congestion::FixedWindow)
    }

    /// The config for one connection, whose path estimate `memory` carries from the last
    /// connection to the next (Careful Resume, `congestion::PathMemory`), starting from the path
    /// MTU the last connection discovered, when there was one.
    pub fn connection_config(
        &self,
        role: Role,
        memory: PathMemory,
        path_mtu: Option<u16>,
    ) -> Arc<TransportConfig> {
        let mut config = self.build_config(role, Congestion::Profile(Some(memory)));
        if let Some(mtu) = path_mtu {
            config.initial_mtu(mtu);
        }
        Arc::new(config)
    }

    /// This profile's config for `role`, starting from a path MTU found on the path before, so
    /// the connection does not search for it again (a hub's memory of a device's network).
    pub fn config_from_mtu(&self, role: Role, path_mtu: u16) -> Arc<TransportConfig> {
        let mut config = self.build_config(role, Congestion::Profile(None));
        config.initial_mtu(path_mtu);
        Arc::new(config)
    }

    fn build(&self, role: Role, congestion: Congestion) -> Arc<TransportConfig> {
        Arc::new(self.build_config(role, congestion))
    }

    fn build_config(&self, role: Role, congestion: Congestion) -> TransportConfig {
        let mut config = TransportConfig::default();
        config
            .initial_rtt(self.initial_rtt)
            .max_idle_timeout(IdleTimeout::try_from(LONGEST_IDLE_TIMEOUT).ok())
            // Check-ins are the keepalive: they cross the NAT every interval already, and a QUIC PING
            // on top would double the idle bytes of every device.
            .keep_alive_interval(None)
            .stream_receive_window(VarInt::from_u32(self.stream_window))
            .receive_window(VarInt::from_u32(self.connection_window))
            .send_window(self.send_window.into())
            .max_probe_interval(Some(PROBE_INTERVAL_DURING_OUTAGE))
            .datagram_receive_buffer_size(Some(DATAGRAM_BUFFER))
            .datagram_send_buffer_size(DATAGRAM_BUFFER)
            .max_concurrent_uni_streams(VarInt::from_u32(0));
        let incoming_bidi = match role {
            // The agent may open exactly one stream: the control stream.
            Role::Hub => 1,
            // Standby: the hub may open one stream beside its summon.
            Role::Agent => outpost_protocol::stream::STANDBY_STREAMS,
        };
        config.max_concurrent_bidi_streams(VarInt::from_u32(incoming_bidi));
        // Inside a TCP tunnel nothing is lost: parity would be bytes for nothing.
        config.tail_repair(self.tail_repair && matches!(congestion, Congestion::Profile(_)));
        match congestion {
            Congestion::Profile(memory) => {
                self.congestion
                    .apply(&mut config, self.initial_window(role), memory)
            }
            Congestion::FixedWindow => {
                config.congestion_controller_factory(Arc::new(
                    crate::tunnel::window::FixedWindowFactory,
                ));
            }
        }
        if role == Role::Hub {
            config
                .receive_window(VarInt::from_u32(HUB_STANDBY_WINDOW))
                .send_window(HUB_STANDBY_WINDOW.into());
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_beats_the_nat_and_idle_timeout_rides_out_an_outage() {
        for profile in PROFILES {
            assert!(
                profile.checkin_interval < NAT_BINDING_TIMEOUT,
                "{}",
                profile.name
            );
            assert!(
                profile.idle_timeout >= OUTAGE_TO_RIDE_OUT + profile.checkin_interval,
                "{}",
                profile.name
            );
            // Room for the control stream while a bulk stream holds its whole window.
            assert!(
                profile.stream_window < profile.connection_window,
                "{}",
                profile.name
            );
        }
    }

    #[test]
    fn every_interval_an_agent_takes_fits_the_idle_timeout_advertised() {
        assert_eq!(
            idle_timeout_for(DEFAULT_CHECKIN_INTERVAL),
            DEFAULT_IDLE_TIMEOUT
        );
        // A `quiet` device every five minutes: an outage and two intervals, 11 minutes.
        assert_eq!(
            idle_timeout_for(Duration::from_secs(300)),
            Duration::from_secs(660)
        );
        assert!(LONGEST_IDLE_TIMEOUT >= OUTAGE_TO_RIDE_OUT + 2 * MAX_CHECKIN_INTERVAL);
        // quinn takes it as a transport parameter (at most 2^62 ms).
        assert!(IdleTimeout::try_from(LONGEST_IDLE_TIMEOUT).is_ok());
    }

    #[test]
    fn satellite_windows_cover_the_bandwidth_delay_product() {
        let bdp = 20_000_000 / 8 * GEO_RTT.as_millis() as u32 / 1000;
        // In flight plus a loss recovery's worth: see SATELLITE.
        assert!(SATELLITE.stream_window >= 4 * bdp);
        assert!(SATELLITE.initial_rtt >= GEO_RTT);
    }

    #[test]
    fn windows_are_bounded_for_a_hub_with_many_agents() {
        // The hub's worst case is connection_window per agent; keep it single-digit MiB.
        for profile in PROFILES {
            assert!(profile.connection_window <= 8 * MIB, "{}", profile.name);
        }
    }

    #[test]
    fn only_the_hub_on_satellite_paths_starts_from_a_larger_window() {
        assert_eq!(
            SATELLITE.initial_window(Role::Hub),
            10 * RFC9002_INITIAL_WINDOW
        );
        assert_eq!(
            SATELLITE.initial_window(Role::Agent),
            RFC9002_INITIAL_WINDOW
        );
        // Paced over one GEO round trip, the first window stays under a tenth of the BDP.
        let bdp = 20_000_000 / 8 * GEO_RTT.as_millis() as u64 / 1000;
        assert!(SATELLITE.initial_window(Role::Hub) <= bdp / 10);
        for profile in [LAN, CELLULAR] {
            assert_eq!(profile.initial_window(Role::Hub), RFC9002_INITIAL_WINDOW);
        }
    }

    #[test]
    fn profiles_are_found_by_name() {
        assert_eq!(TransportProfile::by_name("satellite"), Some(SATELLITE));
        assert_eq!(TransportProfile::by_name("dialup"), None);
    }
}
