//! The admin API's request and response bodies, as the hub serializes and parses them.
//!
//! The hub's handlers answer with exactly these types and parse requests into them, so a field
//! renamed here changes server and clients together. Times are RFC 3339 text (or Unix seconds
//! where the store keeps them so), ids plain numbers, and absent values `null`: what `--json`
//! prints and scripts read.

use outpost_protocol::snapshot::EngineSnapshot;
use serde::{Deserialize, Deserializer, Serialize};

/// What an endpoint stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointKind {
    /// One managed device.
    Device,
    /// A fleet token's template; each device enrolling with it becomes a pending device.
    Fleet,
}

/// Where an endpoint stands, as the hub sees it now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointStatus {
    /// Enrolled through a fleet token, waiting for an admin's approval.
    Pending,
    /// No live session, or its check-ins stopped.
    Offline,
    /// Connected with its standby windows; a summon wakes it.
    Standby,
    /// Summoned: ready for Docker requests.
    Active,
    /// A fleet token, which never connects itself.
    Fleet,
}

impl EndpointStatus {
    /// The word the API uses for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Offline => "offline",
            Self::Standby => "standby",
            Self::Active => "active",
            Self::Fleet => "fleet",
        }
    }
}

/// UDP datagrams and payload bytes of one connection, in each direction (hub's point of view).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireCounts {
    /// Bytes the hub sent to the agent (UDP payload).
    pub tx_bytes: u64,
    /// Datagrams the hub sent.
    pub tx_datagrams: u64,
    /// Bytes the hub received from the agent (UDP payload).
    pub rx_bytes: u64,
    /// Datagrams the hub received.
    pub rx_datagrams: u64,
    /// Parity frames the hub sent over the end of its bulk bursts (tail repair; absent from hubs
    /// before session 32).
    #[serde(default)]
    pub tx_parity_frames: u64,
    /// Chunks of the device's data the hub rebuilt from the device's parity instead of waiting
    /// for them to be resent.
    #[serde(default)]
    pub rx_rebuilt_chunks: u64,
}

/// Bytes on the wire over an endpoint's lifetime (hub's point of view, UDP payload).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireTotal {
    /// Sent to the agent.
    pub tx_bytes: u64,
    /// Received from the agent.
    pub rx_bytes: u64,
}

/// A path as a connection's congestion controller measured it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PathMeasure {
    /// Bottleneck delivery rate, bytes per second.
    pub rate_bytes_per_s: u64,
    /// Minimum round trip, milliseconds.
    pub min_rtt_ms: f64,
    /// When it was measured, RFC 3339.
    pub measured_at: Option<String>,
}

/// The hub's probes of how long the device's NAT keeps a binding, on the live connection: a
/// probe asks for a silence longer than the interval. One that held costs nothing (the check-in is
/// the probe); one that failed cost a migration (≈ 2.7 KB with QUIC's path validation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckinProbes {
    /// Probes started.
    pub sent: u32,
    /// Probes whose binding held.
    pub held: u32,
    /// Probes whose binding expired.
    pub failed: u32,
}

/// How the hub's sender resumed a rate on the live connection instead of starting over.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resumes {
    /// Outages the sender saw with a rate worth resuming.
    pub outages: u32,
    /// Rates resumed after their round-trip check (after an outage, or from the saved path).
    pub resumed: u32,
    /// Rates not resumed: the round trip showed another path.
    pub refused: u32,
    /// Resumes ended early: the path delivered under half of the resumed rate.
    pub retreated: u32,
    /// The last resumed rate came from the device's saved path (Careful Resume across
    /// connections) rather than from before an outage.
    pub last_from_saved_path: bool,
    /// The last resumed rate and what the path then delivered, bytes per second.
    pub last_lent: Option<u64>,
    /// What the path delivered while the last resumed rate was lent, bytes per second.
    pub last_measured: Option<u64>,
}

/// Silences of the hub's sender on the live connection (no ack for a second or more, or three
/// minimum round trips, with data in flight: an outage) and how it came back from the last.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silences {
    /// Silences so far.
    pub silences: u32,
    /// The last one, once there was one.
    pub last: Option<LastSilence>,
}

/// One silence of the hub's sender and its recovery.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastSilence {
    /// How long no ack arrived, in milliseconds.
    pub length_ms: u64,
    /// The sender's bottleneck rate when it ended, bytes per second.
    pub before: u64,
    /// The best rate delivered in the busy round trips after it (up to two), bytes per second.
    pub after: u64,
    /// Busy round trips measured after it.
    pub rounds: u64,
}

/// What the hub's sender believes of the live connection's path: after a slow transfer, whether
/// startup ended early and on what, and whether steady state had to search for the rate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sender {
    /// Why startup ended (`burst-measured`, `queue-delay`, `queue-overflow`, `rate-plateau`,
    /// `resumed`); none while still in startup.
    pub startup_exit: Option<String>,
    /// The bottleneck rate estimate, bytes per second.
    pub rate_bytes_per_s: u64,
    /// The path's minimum round trip as the controller holds it, milliseconds.
    pub min_rtt_ms: f64,
    /// Times a probe showed the path far faster than the estimate and the sender searched for
    /// the rate.
    pub searches: u32,
    /// Only background transfers (image blobs) are sending, so the sender keeps the queue at the
    /// device's bottleneck short for the admin's calls (absent from hubs before session 27).
    #[serde(default)]
    pub yielding: bool,
    /// Times, while yielding, the sender found it had paced above what the path delivered and
    /// corrected its rate.
    #[serde(default)]
    pub corrections: u32,
}

/// An endpoint: its stored record merged with its live session, if any.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Endpoint id.
    pub id: u64,
    /// Display name.
    pub name: String,
    /// Device or fleet token.
    pub kind: EndpointKind,
    /// Where it stands now.
    pub status: EndpointStatus,
    /// The hub holding its live session, where several hubs share one store (requests through
    /// any hub are forwarded to it); `None` while offline.
    #[serde(default)]
    pub hub: Option<String>,
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
    /// How the device reaches the hub, while connected: `quic` (UDP), `tcp` or `tcp via proxy`
    /// (QUIC in a TLS tunnel, where its network drops UDP).
    #[serde(default)]
    pub transport: Option<String>,
    /// Why the device uses TCP, in the agent's words (e.g. `no QUIC answer within 5 s`).
    #[serde(default)]
    pub transport_reason: Option<String>,
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
    /// The path the device's last finished connection measured; its next connection resumes
    /// from it once the round trip matches (Careful Resume).
    #[serde(default)]
    pub saved_path: Option<PathMeasure>,
    /// The hub's resumes on the live connection, while connected.
    #[serde(default)]
    pub resumes: Option<Resumes>,
    /// The hub's sender's silences on the live connection, while connected.
    #[serde(default)]
    pub silences: Option<Silences>,
    /// The hub's sender's view of the live connection's path, while connected.
    #[serde(default)]
    pub sender: Option<Sender>,
    /// Seconds between check-ins the device was last told, while connected (adaptive: below
    /// the hub's interval when its NAT forgets sooner, above it where a probe showed the binding
    /// holds; a quiet group's interval).
    #[serde(default)]
    pub checkin_interval_s: Option<u64>,
    /// How soon a summon reaches the device, when not at once: on the quiet policy,
    /// `quiet: reachable at next check-in, ≤ N s`.
    #[serde(default)]
    pub reachability: Option<String>,
    /// The hub's probes of the device's NAT binding, while connected.
    #[serde(default)]
    pub checkin_probes: Option<CheckinProbes>,
}

/// `GET /api/endpoints/{id}`: the endpoint and its engine's last snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndpointDetail {
    /// The endpoint.
    #[serde(flatten)]
    pub endpoint: Endpoint,
    /// The last engine summary its agent sent.
    pub snapshot: Option<EngineSnapshot>,
    /// The stacks it should run, with where it is with each, by stack name.
    #[serde(default)]
    pub stacks: Vec<crate::stacks::DeviceStack>,
    /// Its bytes this budget period, by class, with the budget that applies.
    #[serde(default)]
    pub traffic: Option<crate::traffic::Traffic>,
}

/// `POST /api/endpoints`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEndpoint {
    /// Display name, 1 to 128 characters once trimmed.
    pub name: String,
    /// Only the agent with this UUID may enrol.
    pub agent_id: Option<String>,
    /// A fleet token: many devices may enrol, each waits for approval.
    #[serde(default)]
    pub fleet: bool,
    /// Its group (fleet devices inherit it).
    pub group: Option<String>,
    /// Its tags (fleet devices inherit them).
    #[serde(default)]
    pub tags: Vec<String>,
}

impl NewEndpoint {
    /// A device endpoint named `name`, with nothing else set.
    pub fn device(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

/// The answer to `POST /api/endpoints`: the endpoint and its join token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointCreated {
    /// Endpoint id.
    pub id: u64,
    /// Display name.
    pub name: String,
    /// Device or fleet token.
    pub kind: EndpointKind,
    /// The pre-assigned agent UUID.
    pub agent_id: Option<String>,
    /// Its group.
    pub group: Option<String>,
    /// Its tags.
    pub tags: Vec<String>,
    /// The join token (EDGE_KEY) a device enrols with.
    pub edge_key: String,
}

/// `GET /api/endpoints` parameters. Each is text, as in the query string: the hub checks them and
/// answers a bad one with a 400 that names the parameter and what it accepts. Absent means the
/// default (page 1, 100 per page, sorted by creation, ascending, devices only).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// 1-based page number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    /// Rows per page, 1 to 1000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_page: Option<String>,
    /// Name substring, ASCII case ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<String>,
    /// `pending`, `offline`, `online` (standby or active), `standby` or `active`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Only endpoints in this group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Only endpoints with this tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// `device` or `fleet`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `name`, `created` or `last_checkin`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sort: Option<String>,
    /// `asc` or `desc`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
}

/// One page of `GET /api/endpoints`.
pub type Page = crate::Paged<Endpoint>;

/// A field that may be absent (leave as is), `null` (clear) or a value (set).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// `PATCH /api/endpoints/{id}`: set the group and/or replace the tags.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointPatch {
    /// Absent: leave the group; `Some(None)`: take it out of its group; `Some(name)`: move it.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub group: Option<Option<String>>,
    /// Absent: leave the tags; present: replace them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

/// `POST /api/endpoints/{id}/tags`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTag {
    /// The tag to add.
    pub tag: String,
}

/// The answer to `POST /api/endpoints/{id}/summon`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summoned {
    /// Endpoint id.
    pub id: u64,
    /// Always active: the device is ready.
    pub status: EndpointStatus,
    /// From the request to the device's readiness, in milliseconds.
    pub ready_ms: f64,
}

/// The answer to `DELETE /api/endpoints/{id}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    /// Endpoint id.
    pub removed: u64,
    /// Whether a live session was closed.
    pub disconnected: bool,
}

/// The answer to `POST /api/endpoints/{id}/reset`: the new join token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointReset {
    /// Endpoint id.
    pub id: u64,
    /// Display name.
    pub name: String,
    /// Device or fleet token.
    pub kind: EndpointKind,
    /// Whether a live session was closed.
    pub disconnected: bool,
    /// The new join token; the old one no longer enrols.
    pub edge_key: String,
}

/// `POST /api/admin-certs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAdminCert {
    /// The name recorded in the certificate.
    pub name: String,
    /// `viewer`, `operator` or `admin` (the default).
    #[serde(default)]
    pub role: Option<String>,
    /// The devices it reaches; the whole fleet when absent.
    #[serde(default)]
    pub scope: Option<crate::Scope>,
}

/// The answer to `POST /api/admin-certs`, in Docker's TLS file layout. The key is generated by the
/// hub and handed over this once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminCertIssued {
    /// The name in the certificate.
    pub name: String,
    /// Its serial.
    pub serial: String,
    /// The hub CA (ca.pem).
    pub ca_pem: String,
    /// The certificate (cert.pem).
    pub cert_pem: String,
    /// Its private key (key.pem).
    pub key_pem: String,
}

/// One admin certificate of `GET /api/admin-certs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminCert {
    /// Serial number.
    pub serial: String,
    /// The name in the certificate.
    pub name: String,
    /// Its role.
    pub role: String,
    /// The devices it reaches; the whole fleet when absent.
    pub scope: Option<crate::Scope>,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds, when revoked.
    pub revoked_at: Option<i64>,
}

/// The answer to `DELETE /api/admin-certs/{serial or name}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminCertsRevoked {
    /// Serials revoked.
    pub revoked: Vec<String>,
}

/// The answer to `POST /api/admin-token/rotate`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminTokenRotated {
    /// The new token, shown this once.
    pub token: String,
    /// Where the hub wrote it.
    pub written_to: String,
}

/// Every error answer: Docker-style, so the docker CLI prints the message too.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong and, where it helps, what to do.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_tells_leave_clear_and_set_apart() {
        let leave = EndpointPatch::default();
        let clear = EndpointPatch {
            group: Some(None),
            tags: None,
        };
        let set = EndpointPatch {
            group: Some(Some("lab".into())),
            tags: Some(vec!["a".into()]),
        };
        for (patch, json) in [
            (&leave, "{}"),
            (&clear, r#"{"group":null}"#),
            (&set, r#"{"group":"lab","tags":["a"]}"#),
        ] {
            assert_eq!(serde_json::to_string(patch).ok().as_deref(), Some(json));
            assert_eq!(
                serde_json::from_str::<EndpointPatch>(json).ok().as_ref(),
                Some(patch)
            );
        }
    }

    #[test]
    fn unknown_request_fields_are_refused() {
        assert!(serde_json::from_str::<EndpointPatch>(r#"{"grop":"x"}"#).is_err());
        assert!(serde_json::from_str::<NewTag>(r#"{"tag":"x","y":1}"#).is_err());
        assert!(serde_json::from_str::<ListQuery>(r#"{"pge":"1"}"#).is_err());
    }

    #[test]
    fn a_detail_is_the_endpoint_with_its_snapshot_beside_its_fields() {
        let endpoint = Endpoint {
            id: 7,
            name: "kiosk".into(),
            kind: EndpointKind::Device,
            status: EndpointStatus::Standby,
            hub: None,
            agent_id: None,
            fleet_id: None,
            group: None,
            tags: vec![],
            last_checkin: None,
            remote_addr: None,
            rtt_ms: Some(0.25),
            transport: Some("quic".into()),
            transport_reason: None,
            migrations: 0,
            wire: None,
            wire_total: WireTotal::default(),
            proxy_streams: 0,
            full_windows: false,
            enroll_count: 1,
            agent_version: None,
            created_at: None,
            enrolled_at: None,
            saved_path: None,
            resumes: None,
            silences: None,
            sender: None,
            checkin_interval_s: Some(25),
            reachability: None,
            checkin_probes: None,
        };
        let detail = EndpointDetail {
            endpoint,
            snapshot: None,
            stacks: vec![],
            traffic: None,
        };
        let json = serde_json::to_value(&detail).unwrap_or_default();
        assert_eq!(json["status"], EndpointStatus::Standby.as_str());
        assert_eq!(json["snapshot"], serde_json::Value::Null);
        assert_eq!(
            serde_json::from_value::<EndpointDetail>(json).ok(),
            Some(detail)
        );
    }
}
