//! The JSON shape of an endpoint: the stored record merged with its live session, if any.

use std::time::{Duration, SystemTime};

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::registry::{LiveView, Status, WireCounts};
use crate::store::{EndpointKind, EndpointRecord};

/// An endpoint as the API returns it.
#[derive(Clone, Debug, Serialize)]
pub struct EndpointView {
    /// Endpoint id.
    pub id: u64,
    /// Display name.
    pub name: String,
    /// `device` or `fleet`.
    pub kind: EndpointKind,
    /// `pending`, `offline`, `standby`, `active` (devices) or `fleet`.
    pub status: String,
    /// The bound agent's UUID.
    pub agent_id: Option<String>,
    /// The fleet a device enrolled through.
    pub fleet_id: Option<u64>,
    /// The group it is in.
    pub group: Option<String>,
    /// Its tags.
    pub tags: Vec<String>,
    /// Last check-in, RFC 3339.
    pub last_checkin: Option<String>,
    /// The agent's current (or last known) address.
    pub remote_addr: Option<String>,
    /// Round trip to the agent in milliseconds, while connected.
    pub rtt_ms: Option<f64>,
    /// Connection migrations (address changes) seen, sampled at each check-in and control frame:
    /// changes between two samples count once.
    pub migrations: u64,
    /// UDP traffic of the current connection, while connected.
    pub wire: Option<WireCounts>,
    /// UDP payload bytes over all of the endpoint's connections, the live one included: what a
    /// metered link was charged for. Finished connections are stored as they end (visible after
    /// the next liveness flush, ≤ 5 s); a hub crash loses the counts of the connections it had
    /// open, and a connection replaced by the same device's newer one is not counted.
    pub wire_total: WireTotal,
    /// Proxied Docker requests in flight.
    pub proxy_streams: u32,
    /// Whether the connection holds full flow-control windows (granted only when summoned).
    pub full_windows: bool,
    /// Times a certificate was issued to this endpoint.
    pub enroll_count: i64,
    /// Agent build version.
    pub agent_version: Option<String>,
    /// Creation time, RFC 3339.
    pub created_at: Option<String>,
    /// First enrolment, RFC 3339.
    pub enrolled_at: Option<String>,
}

fn rfc3339_secs(secs: i64) -> Option<String> {
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
}

fn rfc3339(time: SystemTime) -> Option<String> {
    rfc3339_secs(time.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs() as i64)
}

fn status_text(status: Status) -> &'static str {
    match status {
        Status::Pending => "pending",
        Status::Offline => "offline",
        Status::Standby => "standby",
        Status::Active => "active",
    }
}

/// Bytes on the wire over an endpoint's lifetime (hub's point of view, UDP payload).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WireTotal {
    /// Sent to the agent.
    pub tx_bytes: u64,
    /// Received from the agent.
    pub rx_bytes: u64,
}

impl EndpointView {
    /// Merge a record with its live view.
    pub fn new(record: &EndpointRecord, live: Option<LiveView>) -> Self {
        let status = match (record.kind, &live) {
            (EndpointKind::Fleet, _) => "fleet",
            (_, Some(live)) => status_text(live.status),
            (_, None) if !record.approved => "pending",
            (_, None) => "offline",
        };
        let rtt = |rtt: Duration| (rtt.as_secs_f64() * 1e6).round() / 1e3;
        Self {
            id: record.id.0,
            name: record.name.clone(),
            kind: record.kind,
            status: status.into(),
            agent_id: record.agent_id.map(|a| a.to_string()),
            fleet_id: record.fleet_id.map(|f| f.0),
            group: record.group.clone(),
            tags: record.tags.clone(),
            last_checkin: live
                .as_ref()
                .and_then(|l| l.last_checkin)
                .and_then(rfc3339)
                .or_else(|| record.last_checkin.and_then(rfc3339_secs)),
            remote_addr: live
                .as_ref()
                .map(|l| l.remote_addr.to_string())
                .or_else(|| record.last_addr.clone()),
            rtt_ms: live.as_ref().map(|l| rtt(l.rtt)),
            migrations: live
                .as_ref()
                .map_or(record.migrations.max(0) as u64, |l| l.migrations),
            wire: live.as_ref().map(|l| l.wire),
            wire_total: WireTotal {
                tx_bytes: record.wire_tx_bytes + live.as_ref().map_or(0, |l| l.wire.tx_bytes),
                rx_bytes: record.wire_rx_bytes + live.as_ref().map_or(0, |l| l.wire.rx_bytes),
            },
            proxy_streams: live.as_ref().map_or(0, |l| l.proxy_streams),
            full_windows: live.as_ref().is_some_and(|l| l.full_windows),
            enroll_count: record.enroll_count,
            agent_version: record.agent_version.clone(),
            created_at: rfc3339_secs(record.created_at),
            enrolled_at: record.enrolled_at.and_then(rfc3339_secs),
        }
    }
}
