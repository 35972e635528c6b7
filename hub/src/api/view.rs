//! The JSON shape of an endpoint ([`outpost_api::Endpoint`]): the stored record merged with its
//! live session, if any.

use std::time::{Duration, SystemTime};

use outpost_api::{
    CheckinProbes, DeviceStack, Endpoint, EndpointKind, EndpointStatus, LastSilence, PathMeasure,
    Resumes, Sender, Silences, WireCounts, WireTotal,
};
use outpost_protocol::stack::Phase;
use outpost_transport::congestion::{
    ResumeKind, ResumeStats, SenderState, SilenceStats, StartupExit,
};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::agent_link::tunnel::PathKind;
use crate::hubs::FleetHubs;
use crate::registry::{self, LiveView, Status};
use crate::store::deployments::DeploymentRow;
use crate::store::{self, EndpointRecord};

/// Unix seconds as RFC 3339 (UTC).
pub(crate) fn rfc3339_secs(secs: i64) -> Option<String> {
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
}

fn rfc3339(time: SystemTime) -> Option<String> {
    rfc3339_secs(time.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs() as i64)
}

fn status(status: Status) -> EndpointStatus {
    match status {
        Status::Pending => EndpointStatus::Pending,
        Status::Offline => EndpointStatus::Offline,
        Status::Standby => EndpointStatus::Standby,
        Status::Active => EndpointStatus::Active,
    }
}

/// The API's name for a stored kind.
pub(super) fn kind(kind: store::EndpointKind) -> EndpointKind {
    match kind {
        store::EndpointKind::Device => EndpointKind::Device,
        store::EndpointKind::Fleet => EndpointKind::Fleet,
    }
}

fn wire(counts: registry::WireCounts) -> WireCounts {
    WireCounts {
        tx_bytes: counts.tx_bytes,
        tx_datagrams: counts.tx_datagrams,
        rx_bytes: counts.rx_bytes,
        rx_datagrams: counts.rx_datagrams,
        tx_parity_frames: counts.tx_parity_frames,
        rx_rebuilt_chunks: counts.rx_rebuilt_chunks,
    }
}

fn resumes(stats: ResumeStats) -> Resumes {
    Resumes {
        outages: stats.outages,
        resumed: stats.resumed,
        refused: stats.refused,
        retreated: stats.retreated,
        last_from_saved_path: stats
            .last
            .is_some_and(|last| last.kind == ResumeKind::SavedPath),
        last_lent: stats.last.map(|last| last.lent),
        last_measured: stats.last.map(|last| last.measured),
    }
}

fn silences(stats: SilenceStats) -> Silences {
    Silences {
        silences: stats.silences,
        last: stats.last.map(|last| LastSilence {
            length_ms: u64::try_from(last.length.as_millis()).unwrap_or(u64::MAX),
            before: last.before,
            after: last.after,
            rounds: last.rounds,
        }),
    }
}

fn sender(state: SenderState) -> Sender {
    Sender {
        startup_exit: state.startup_exit.map(|exit| startup_exit(exit).into()),
        rate_bytes_per_s: state.bottleneck_rate,
        min_rtt_ms: (state.min_rtt.as_secs_f64() * 1e6).round() / 1e3,
        searches: state.searches,
        yielding: state.yielding,
        corrections: state.corrections,
    }
}

fn startup_exit(exit: StartupExit) -> &'static str {
    match exit {
        StartupExit::BurstMeasured => "burst-measured",
        StartupExit::QueueDelay => "queue-delay",
        StartupExit::QueueOverflow => "queue-overflow",
        StartupExit::RatePlateau => "rate-plateau",
        StartupExit::Resumed => "resumed",
    }
}

/// Merge a record with its live view here. A device another live hub holds shows `standby`
/// (that hub knows whether it is summoned) and names that hub.
pub(crate) fn endpoint(
    record: &EndpointRecord,
    live: Option<LiveView>,
    hubs: &FleetHubs,
) -> Endpoint {
    let elsewhere = match live {
        Some(_) => None,
        None => record.held_by.and_then(|h| hubs.peer(h)),
    };
    let status = match (record.kind, &live) {
        (store::EndpointKind::Fleet, _) => EndpointStatus::Fleet,
        (_, Some(live)) => status(live.status),
        (_, None) if !record.approved => EndpointStatus::Pending,
        (_, None) if elsewhere.is_some() => EndpointStatus::Standby,
        (_, None) => EndpointStatus::Offline,
    };
    let hub = match &live {
        Some(_) => Some(hubs.name.clone()),
        None => elsewhere.map(|peer| peer.name),
    };
    let rtt = |rtt: Duration| (rtt.as_secs_f64() * 1e6).round() / 1e3;
    Endpoint {
        id: record.id.0,
        name: record.name.clone(),
        kind: kind(record.kind),
        status,
        hub,
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
        transport: live.as_ref().map(|l| transport_name(&l.path).into()),
        transport_reason: live.as_ref().and_then(|l| match &l.path {
            PathKind::Tcp { reason, .. } if !reason.is_empty() => Some(reason.clone()),
            _ => None,
        }),
        migrations: live
            .as_ref()
            .map_or(record.migrations.max(0) as u64, |l| l.migrations),
        wire: live.as_ref().map(|l| wire(l.wire)),
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
        saved_path: record.path.map(|saved| PathMeasure {
            rate_bytes_per_s: saved.estimate.rate,
            min_rtt_ms: rtt(saved.estimate.min_rtt),
            measured_at: rfc3339_secs(saved.measured_at),
        }),
        resumes: live.as_ref().and_then(|l| l.resumes).map(resumes),
        silences: live.as_ref().and_then(|l| l.silences).map(silences),
        sender: live.as_ref().and_then(|l| l.sender).map(sender),
        checkin_interval_s: live.as_ref().map(|l| l.checkin_interval.as_secs()),
        reachability: live.as_ref().and_then(reachability),
        checkin_probes: live.as_ref().map(|l| CheckinProbes {
            sent: l.probes.sent,
            held: l.probes.held,
            failed: l.probes.failed,
        }),
    }
}

/// The transport's name in the endpoint view and the metrics.
pub(crate) fn transport_name(path: &PathKind) -> &'static str {
    match path {
        PathKind::Quic => "quic",
        PathKind::Tcp {
            via_proxy: false, ..
        } => "tcp",
        PathKind::Tcp {
            via_proxy: true, ..
        } => "tcp via proxy",
    }
}

/// What a summon waits for, when not only the round trip: a quiet device's NAT binding may have
/// expired since its last check-in, so the summon reaches it at its next one.
fn reachability(live: &LiveView) -> Option<String> {
    live.quiet.then(|| {
        format!(
            "quiet: reachable at next check-in, ≤ {} s",
            live.checkin_interval.as_secs()
        )
    })
}

/// A deployment as `endpoint show` lists it.
pub(super) fn device_stack(row: DeploymentRow) -> DeviceStack {
    let (phase, reason, pulled) = match row.phase {
        Phase::Queued => ("queued", None, None),
        Phase::Pulling { done, total } => ("pulling", None, Some([done, total])),
        Phase::Starting => ("starting", None, None),
        Phase::Running => ("running", None, None),
        Phase::Healthy => ("healthy", None, None),
        Phase::Failed { reason } => ("failed", Some(reason), None),
        Phase::Drifted { reason } => ("drifted", Some(reason), None),
        Phase::RolledBack { reason } => ("rolled_back", Some(reason), None),
        Phase::Deferred {
            reason,
            done,
            total,
        } => ("deferred", Some(reason), Some([done, total])),
    };
    DeviceStack {
        stack: row.stack,
        version: row.version,
        phase: phase.to_owned(),
        reason,
        pulled,
        reported_at: row.reported_at,
    }
}
