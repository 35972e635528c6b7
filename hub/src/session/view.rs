//! What the rest of the hub sees of a live session: its status, the view the API shows, and why a
//! summon failed.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use outpost_protocol::EndpointId;
use outpost_transport::congestion::{ResumeStats, SenderState, SilenceStats};
use serde::Serialize;
use thiserror::Error;

/// What an admin sees of an endpoint's connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Enrolled through a fleet token, waiting for approval.
    Pending,
    /// Not connected, or silent for longer than the liveness bound.
    Offline,
    /// Connected, no stream credit.
    Standby,
    /// Connected and summoned.
    Active,
}

/// Why a summon failed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SummonError {
    /// The device has no live connection.
    #[error("endpoint {0} is offline: the device is not connected to the hub")]
    Offline(EndpointId),
    /// The device waits for approval.
    #[error(
        "endpoint {0} is pending approval: approve it with `outpost-hub endpoint approve {0}`"
    )]
    Pending(EndpointId),
    /// The device did not answer in time.
    #[error("endpoint {0} did not answer the summon within {1:?}")]
    Timeout(EndpointId, Duration),
    /// The connection ended while waiting.
    #[error("endpoint {0} disconnected while being summoned")]
    Disconnected(EndpointId),
    /// Control messages pile up unsent: the device is not reading its control stream.
    #[error("endpoint {0} is not reading its control messages")]
    Busy(EndpointId),
}

/// A point-in-time view of a live session for the API.
#[derive(Clone, Debug)]
pub struct LiveView {
    /// Standby, active or (if silent too long) offline.
    pub status: Status,
    /// Last check-in wall-clock time.
    pub last_checkin: Option<SystemTime>,
    /// Current remote address (a tunnel's TCP peer for a device on TCP).
    pub remote_addr: SocketAddr,
    /// QUIC on UDP, or a TLS-over-TCP tunnel and why; the state machine knows no socket, so its
    /// view says UDP and the live session corrects it (`LiveSession::view`).
    pub path: crate::agent_link::tunnel::PathKind,
    /// QUIC's smoothed round-trip estimate.
    pub rtt: Duration,
    /// Migrations on this and earlier connections.
    pub migrations: u64,
    /// UDP traffic of the current connection, as the hub counts it.
    pub wire: WireCounts,
    /// Proxied Docker requests in flight.
    pub proxy_streams: u32,
    /// The check-in interval this agent was last told (shorter than the hub's when its NAT
    /// forgets bindings sooner).
    pub checkin_interval: Duration,
    /// On the `quiet` policy: the NAT binding may expire between check-ins, so the device is
    /// reachable at its next check-in, within `checkin_interval`.
    pub quiet: bool,
    /// The tuner's probes of the NAT binding on this connection.
    pub probes: super::interval::ProbeCounts,
    /// Whether the connection holds full flow-control windows from the hub's window budget.
    pub full_windows: bool,
    /// The hub's congestion controller's resumes on this connection: only in one endpoint's
    /// detail (`LiveSession::detail_view`) and with the delivery-rate controller.
    pub resumes: Option<ResumeStats>,
    /// The same controller's silences (no ack with data in flight) and its recovery from the
    /// last; where `resumes` is.
    pub silences: Option<SilenceStats>,
    /// The same controller's startup exit, rate and minimum round trip; where `resumes` is.
    pub sender: Option<SenderState>,
}

/// UDP datagrams and payload bytes of one connection, in each direction (hub's point of view).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WireCounts {
    /// Bytes the hub sent to the agent (UDP payload).
    pub tx_bytes: u64,
    /// Datagrams the hub sent.
    pub tx_datagrams: u64,
    /// Bytes the hub received from the agent (UDP payload).
    pub rx_bytes: u64,
    /// Datagrams the hub received.
    pub rx_datagrams: u64,
    /// Parity frames the hub sent over the end of its bulk bursts (tail repair).
    pub tx_parity_frames: u64,
    /// Chunks of the agent's data rebuilt from its parity.
    pub rx_rebuilt_chunks: u64,
}
