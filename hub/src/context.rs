//! What every part of a running hub shares: store, live sessions, PKI and resolved settings.

use std::sync::Arc;
use std::time::Duration;

use outpost_certs::HubPki;
use outpost_protocol::wire::EndpointTiming;
use tokio::sync::Semaphore;

use crate::agent_link::admission::Admission;
use crate::agent_link::windows::WindowBudget;
use crate::api::AdminCredentials;
use crate::fleet::Fleet;
use crate::registry::Registry;
use crate::store::Store;

/// Shared state of one running hub.
#[derive(Debug)]
pub struct HubContext {
    /// Durable state.
    pub store: Store,
    /// Live sessions.
    pub registry: Registry,
    /// Devices' cached ping answers between their sessions.
    pub(crate) pings: crate::ping_carry::PingCarry,
    /// CA and server certificate.
    pub pki: HubPki,
    /// This hub among the hubs sharing its store: its id, and the addresses written into new join
    /// tokens and sent to agents.
    pub hubs: crate::hubs::FleetHubs,
    /// The link to the other hubs, for requests for the devices they hold.
    pub peer_link: crate::peers::PeerLink,
    /// Check-in interval and standby period handed to agents.
    pub session: EndpointTiming,
    /// How long an admin request waits for a summoned device.
    pub summon_timeout: Duration,
    /// How fast each session's check-in interval adapts (`serve --checkin-hold`).
    pub checkin_tuning: crate::session::interval::TunerTiming,
    /// The admin token (swappable) and the watch on admin credentials.
    pub admin_credentials: AdminCredentials,
    /// Bounds concurrent enrolments (each signs a certificate and writes the store).
    pub enroll_slots: Semaphore,
    /// Bounds connections being set up (handshake to welcome).
    pub admission: Admission,
    /// Grants of full flow-control windows to summoned agents.
    pub windows: WindowBudget,
    /// Bounds proxied Docker requests in flight across all devices.
    pub proxy_slots: Arc<Semaphore>,
    /// The size of `proxy_slots`, for error messages.
    pub max_proxy_streams: usize,
    /// Lifetime of the agent certificates the hub issues.
    pub agent_cert_validity: Duration,
    /// Devices a fleet token may have waiting for approval.
    pub max_pending_per_fleet: u32,
    /// Rollouts in progress.
    pub fleet: Fleet,
    /// Jobs in progress.
    pub jobs: crate::jobs::Jobs,
    /// The Prometheus series.
    pub metrics: crate::metrics::Metrics,
    /// The audit trail's queue.
    pub audit: crate::audit::Audit,
    /// The registry mirror served under `/v2/`.
    pub mirror: crate::mirror::Mirror,
    /// Where alerts for webhooks are raised.
    pub alerts: crate::alerts::Alerts,
    /// Bytes per device and class, and the budget period.
    pub traffic: crate::traffic::Traffic,
    /// Agents' TLS-over-TCP tunnels (where UDP is blocked), as quinn and the endpoint view see them.
    pub tunnels: crate::agent_link::tunnel::Tunnels,
    /// The QUIC server config for connections inside tunnels: the endpoint's, with a fixed
    /// congestion window (`outpost_transport::tunnel::window`).
    pub tunnel_server_config: Arc<quinn::ServerConfig>,
    /// The path MTU of each network devices connected from, for the next connection from it.
    pub path_mtus: crate::path_mtu::PathMtus,
    /// What the tunnel listener turned away.
    pub tunnel_counts: Arc<crate::agent_link::tunnel::TunnelCounts>,
    /// The agents' TLS tickets under the keys the store shares; `None`: per-process tickets.
    pub tickets: Option<Arc<crate::tickets::StoreTicketer>>,
    /// Session set-ups a second the restart notice assumes (`serve --reconnect-rate`, hidden);
    /// `None`: the measured rates in `server`.
    pub reconnect_rate: Option<f64>,
}

impl HubContext {
    /// The check-in interval.
    pub fn checkin_interval(&self) -> Duration {
        Duration::from_millis(self.session.checkin_interval_ms.into())
    }

    /// After this long without a check-in an endpoint shows offline: two intervals (one lost
    /// check-in and its retries) plus ten seconds of slack for a slow path.
    pub fn stale_after(&self) -> Duration {
        self.checkin_interval() * 2 + Duration::from_secs(10)
    }
}
