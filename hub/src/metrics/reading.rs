//! What a scrape reads of the hub at that moment, and how it is written out.
//!
//! Devices by status combine the store and the registry, as the endpoint list does: pending and
//! approved devices are counted in the store (one index range each); standby and active are the
//! live sessions' own status, so a device shows online from its welcome, not from the next
//! liveness flush; offline is every other approved device. The four are disjoint and add up to
//! the devices (`sum(outpost_hub_devices)`); online is `status=~"standby|active"`.
//!
//! Rollout and job progress are summed over the rollouts and jobs in memory, whose ids the store
//! lists; each keeps its counts up to date already. The mirror's series are its own counters
//! (`crate::mirror::counters`).

use std::collections::BTreeMap;
use std::fmt::Error;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use tokio::time::Instant;

use crate::context::HubContext;
use crate::jobs::TargetState;
use crate::mirror::counters::MirrorCounters;
use crate::registry::Status;
use crate::rollout::{Counts, Rollout, RolloutState};
use crate::store::census::{self, Census};
use crate::store::StoreError;

/// A value with its label's value.
type Labelled = (&'static str, u64);

/// One scrape's reading.
#[derive(Debug, Default)]
pub(super) struct Reading {
    devices: [Labelled; 4],
    sessions: u64,
    proxy_in_flight: u64,
    handshakes_in_flight: u64,
    admission_waiting: u64,
    handshakes: [Labelled; 4],
    admission_waited: u64,
    tls_tickets: [Labelled; 3],
    sessions_by_transport: [Labelled; 2],
    tunnels_open: u64,
    tunnels_refused: [Labelled; 2],
    tunnel_drops: u64,
    rollouts: BTreeMap<&'static str, u64>,
    rollout_targets: Counts,
    jobs_open: u64,
    job_targets: BTreeMap<TargetState, u64>,
    mirror: MirrorCounters,
}

impl Reading {
    /// Read the hub now.
    pub(super) async fn take(ctx: &HubContext) -> Result<Self, StoreError> {
        let census = ctx.store.read(census::take).await?;
        let mut reading = Self::default();
        reading.read_devices(ctx, &census);
        reading.read_links(ctx);
        reading.read_rollouts(ctx, &census.active_rollouts).await;
        reading.read_jobs(ctx, &census.open_jobs);
        reading.mirror = ctx.mirror.counters();
        Ok(reading)
    }

    fn read_devices(&mut self, ctx: &HubContext, census: &Census) {
        let statuses = ctx.registry.statuses(Instant::now(), ctx.stale_after());
        let count = |wanted| statuses.iter().filter(|s| **s == wanted).count() as u64;
        let (standby, active) = (count(Status::Standby), count(Status::Active));
        let offline = census.devices.approved.saturating_sub(standby + active);
        self.devices = [
            ("pending", census.devices.pending),
            ("offline", offline),
            ("standby", standby),
            ("active", active),
        ];
        self.sessions = statuses.len() as u64;
        let on_tcp = ctx.tunnels.carrying_sessions() as u64;
        self.sessions_by_transport = [
            ("quic", self.sessions.saturating_sub(on_tcp)),
            ("tcp", on_tcp),
        ];
    }

    fn read_links(&mut self, ctx: &HubContext) {
        let free = ctx.proxy_slots.available_permits();
        self.proxy_in_flight = ctx.max_proxy_streams.saturating_sub(free) as u64;
        let admission = &ctx.admission;
        let stats = &admission.stats;
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        self.handshakes_in_flight = admission.in_flight() as u64;
        self.admission_waiting = read(&stats.waiting);
        self.admission_waited = read(&stats.waited);
        self.handshakes = [
            ("accepted", read(&stats.accepted)),
            ("retried", read(&stats.retried)),
            ("refused", read(&stats.refused)),
            ("timed_out", read(&stats.timed_out)),
        ];
        let (issued, opened, refused) = ctx.tickets.as_ref().map_or((0, 0, 0), |tickets| {
            let counts = &tickets.counts;
            (
                read(&counts.issued),
                read(&counts.opened),
                read(&counts.refused),
            )
        });
        self.tls_tickets = [
            ("issued", issued),
            ("resumed", opened),
            ("refused", refused),
        ];
        let tunnels = &ctx.tunnel_counts;
        self.tunnels_open = ctx.tunnels.len() as u64;
        self.tunnel_drops = ctx.tunnels.dropped();
        self.tunnels_refused = [
            ("busy", read(&tunnels.refused_busy)),
            ("setup", read(&tunnels.failed_setup)),
        ];
    }

    async fn read_rollouts(&mut self, ctx: &HubContext, ids: &[i64]) {
        self.rollouts = ROLLOUT_STATES.iter().map(|s| (*s, 0)).collect();
        for id in ids {
            let read = |r: &Rollout| (state_name(r.state()), r.counts());
            let Some((state, counts)) = ctx.fleet.with_active(*id, read).await else {
                continue;
            };
            *self.rollouts.entry(state).or_default() += 1;
            add(&mut self.rollout_targets, &counts);
        }
    }

    fn read_jobs(&mut self, ctx: &HubContext, ids: &[i64]) {
        self.job_targets = TargetState::ALL.iter().map(|s| (*s, 0)).collect();
        for counts in ids.iter().filter_map(|id| ctx.jobs.counts(*id)) {
            self.jobs_open += 1;
            for (state, count) in counts {
                *self.job_targets.entry(state).or_default() += u64::from(count);
            }
        }
    }
}

/// A rollout's states, as `rollout show` names them.
const ROLLOUT_STATES: [&str; 4] = ["running", "paused", "completed", "aborted"];

fn state_name(state: &RolloutState) -> &'static str {
    ROLLOUT_STATES[match state {
        RolloutState::Running => 0,
        RolloutState::Paused(_) => 1,
        RolloutState::Completed => 2,
        RolloutState::Aborted => 3,
    }]
}

/// `sum += counts`, state by state.
fn add(sum: &mut Counts, counts: &Counts) {
    let fields = [
        (&mut sum.waiting, counts.waiting),
        (&mut sum.queued, counts.queued),
        (&mut sum.pulling, counts.pulling),
        (&mut sum.starting, counts.starting),
        (&mut sum.running, counts.running),
        (&mut sum.soaking, counts.soaking),
        (&mut sum.healthy, counts.healthy),
        (&mut sum.failed, counts.failed),
        (&mut sum.rolled_back, counts.rolled_back),
        (&mut sum.drifted, counts.drifted),
        (&mut sum.lost, counts.lost),
        (&mut sum.offline, counts.offline),
    ];
    for (total, count) in fields {
        *total += count;
    }
}

/// A series' name and help text.
type Named = (&'static str, &'static str);

const DEVICES: Named = (
    "outpost_hub_devices",
    "Devices by status: waiting for approval, offline, connected in standby, summoned.",
);
const SESSIONS: Named = (
    "outpost_hub_sessions",
    "Agent sessions the hub holds (one silent past the liveness bound too, until it times out).",
);
const PROXY_IN_FLIGHT: Named = (
    "outpost_hub_proxy_requests_in_flight",
    "Proxied Docker requests holding a stream now (hijacked connections included).",
);
const HANDSHAKES_IN_FLIGHT: Named = (
    "outpost_hub_handshakes_in_flight",
    "Agent connections being set up now (handshake slots in use).",
);
const ADMISSION_QUEUE: Named = (
    "outpost_hub_admission_queue",
    "Connection attempts waiting for a handshake slot.",
);
const HANDSHAKES: Named = (
    "outpost_hub_handshakes",
    "Connection attempts by what admission did: accepted (handshake finished), retried (sent a \
     QUIC Retry), refused, timed_out.",
);
const TLS_TICKETS: Named = (
    "outpost_hub_tls_tickets",
    "Agents' TLS session tickets under the keys the store shares: issued (one per handshake), \
     resumed (a ticket opened: no certificates exchanged), refused (too old, another store's, \
     damaged: a full handshake followed). All zero with per-process tickets.",
);
const ADMISSION_WAITS: Named = (
    "outpost_hub_admission_waits",
    "Connection attempts that had to wait for a handshake slot.",
);
const ROLLOUTS: Named = (
    "outpost_hub_rollouts",
    "Rollouts in memory (not yet retired) by state.",
);
const ROLLOUT_TARGETS: Named = (
    "outpost_hub_rollout_targets",
    "Targets of the rollouts in memory by state, summed over the rollouts.",
);
const ROLLOUT_TARGETS_OFFLINE: Named = (
    "outpost_hub_rollout_targets_offline",
    "Of those targets, how many are offline now (in any state).",
);
const JOBS_OPEN: Named = ("outpost_hub_jobs_open", "Jobs not yet finished.");
const MIRROR_FETCHES: Named = (
    "outpost_hub_mirror_upstream_fetches",
    "Fetches from the mirror's upstream registries, by kind (blob, manifest).",
);
const MIRROR_UPSTREAM_BYTES: Named = (
    "outpost_hub_mirror_upstream_bytes",
    "Bytes received from the mirror's upstream registries.",
);
const MIRROR_REQUESTS: Named = (
    "outpost_hub_mirror_requests",
    "Mirror requests by whether the store answered them (hit) or an upstream had to (miss).",
);
const MIRROR_REFUSED: Named = (
    "outpost_hub_mirror_refused",
    "Upstream answers refused because their bytes were not their digest.",
);
const MIRROR_STORED_BYTES: Named = (
    "outpost_hub_mirror_stored_bytes",
    "Bytes of blobs the mirror holds.",
);
const MIRROR_AGENT_FETCHES: Named = (
    "outpost_hub_mirror_agent_fetches",
    "Fetch streams agents opened, by where they started (zero, or resumed past byte 0).",
);
const MIRROR_AGENT_BYTES: Named = (
    "outpost_hub_mirror_agent_bytes",
    "Bytes sent to agents' loopback registries on fetch streams.",
);
const MIRROR_AGENT_FORBIDDEN: Named = (
    "outpost_hub_mirror_agent_forbidden",
    "Fetch streams refused because the image was not ordered onto the device.",
);
const MIRROR_STORED_BLOBS: Named = ("outpost_hub_mirror_stored_blobs", "Blobs the mirror holds.");
const SESSIONS_BY_TRANSPORT: Named = (
    "outpost_hub_sessions_by_transport",
    "Agent sessions by transport: QUIC on UDP, or QUIC in a TLS-over-TCP tunnel (UDP blocked).",
);
const TUNNELS_OPEN: Named = (
    "outpost_hub_agent_tunnels",
    "Agents' TCP tunnels open, with a session or still setting one up.",
);
const TUNNELS_REFUSED: Named = (
    "outpost_hub_agent_tunnels_refused",
    "TCP connections to the agent port closed before a session: every setup slot taken (busy), or bad bytes or no session in time (setup).",
);
const TUNNEL_DROPS: Named = (
    "outpost_hub_agent_tunnel_drops",
    "Packets for an agent's TCP tunnel dropped because its queue was full (or it had closed).",
);
const JOB_TARGETS: Named = (
    "outpost_hub_job_targets",
    "Devices of the open jobs by state, summed over the jobs.",
);

impl Collector for Reading {
    fn encode(&self, mut out: DescriptorEncoder) -> Result<(), Error> {
        self.encode_fleet(&mut out)?;
        self.encode_links(&mut out)?;
        self.encode_progress(&mut out)?;
        self.encode_mirror(&mut out)
    }
}

impl Reading {
    fn encode_fleet(&self, out: &mut DescriptorEncoder) -> Result<(), Error> {
        family(out, DEVICES, "status", &self.devices)?;
        gauge(out, SESSIONS, self.sessions)?;
        family(
            out,
            SESSIONS_BY_TRANSPORT,
            "transport",
            &self.sessions_by_transport,
        )
    }

    fn encode_links(&self, out: &mut DescriptorEncoder) -> Result<(), Error> {
        gauge(out, PROXY_IN_FLIGHT, self.proxy_in_flight)?;
        gauge(out, HANDSHAKES_IN_FLIGHT, self.handshakes_in_flight)?;
        gauge(out, ADMISSION_QUEUE, self.admission_waiting)?;
        counters(out, HANDSHAKES, "outcome", &self.handshakes)?;
        counter(out, ADMISSION_WAITS, self.admission_waited)?;
        counters(out, TLS_TICKETS, "outcome", &self.tls_tickets)?;
        gauge(out, TUNNELS_OPEN, self.tunnels_open)?;
        counters(out, TUNNELS_REFUSED, "reason", &self.tunnels_refused)?;
        counter(out, TUNNEL_DROPS, self.tunnel_drops)
    }

    fn encode_progress(&self, out: &mut DescriptorEncoder) -> Result<(), Error> {
        let rollouts: Vec<Labelled> = self.rollouts.iter().map(|(s, n)| (*s, *n)).collect();
        family(out, ROLLOUTS, "state", &rollouts)?;
        let targets = self.rollout_targets.by_state().map(|(s, n)| (s, n.into()));
        family(out, ROLLOUT_TARGETS, "state", &targets)?;
        let offline = self.rollout_targets.offline.into();
        gauge(out, ROLLOUT_TARGETS_OFFLINE, offline)?;
        gauge(out, JOBS_OPEN, self.jobs_open)?;
        let jobs: Vec<Labelled> = self
            .job_targets
            .iter()
            .map(|(s, n)| (s.as_str(), *n))
            .collect();
        family(out, JOB_TARGETS, "state", &jobs)
    }
}

impl Reading {
    fn encode_mirror(&self, out: &mut DescriptorEncoder) -> Result<(), Error> {
        let m = &self.mirror;
        let fetches = [("blob", m.blob_fetches), ("manifest", m.manifest_fetches)];
        counters(out, MIRROR_FETCHES, "kind", &fetches)?;
        counter(out, MIRROR_UPSTREAM_BYTES, m.upstream_bytes)?;
        counters(
            out,
            MIRROR_REQUESTS,
            "result",
            &[("hit", m.hits), ("miss", m.misses)],
        )?;
        counter(out, MIRROR_REFUSED, m.refused)?;
        let from_zero = m.agent_fetches.saturating_sub(m.resumed_fetches);
        let starts = [("zero", from_zero), ("resumed", m.resumed_fetches)];
        counters(out, MIRROR_AGENT_FETCHES, "start", &starts)?;
        counter(out, MIRROR_AGENT_BYTES, m.agent_bytes)?;
        counter(out, MIRROR_AGENT_FORBIDDEN, m.agent_forbidden)?;
        gauge(out, MIRROR_STORED_BYTES, m.stored_bytes)?;
        gauge(out, MIRROR_STORED_BLOBS, m.stored_blobs)
    }
}

fn gauge(out: &mut DescriptorEncoder, (name, help): Named, value: u64) -> Result<(), Error> {
    let metric = out.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(metric)
}

fn counter(out: &mut DescriptorEncoder, (name, help): Named, value: u64) -> Result<(), Error> {
    let metric = out.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(metric)
}

fn family(
    out: &mut DescriptorEncoder,
    (name, help): Named,
    label: &'static str,
    values: &[Labelled],
) -> Result<(), Error> {
    let mut metric = out.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (value_label, value) in values {
        ConstGauge::new(*value).encode(metric.encode_family(&[(label, *value_label)])?)?;
    }
    Ok(())
}

fn counters(
    out: &mut DescriptorEncoder,
    (name, help): Named,
    label: &'static str,
    values: &[Labelled],
) -> Result<(), Error> {
    let mut metric = out.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value_label, value) in values {
        ConstCounter::new(*value).encode(metric.encode_family(&[(label, *value_label)])?)?;
    }
    Ok(())
}
