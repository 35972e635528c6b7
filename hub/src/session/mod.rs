//! The hub's side of one agent session as a plain state machine: no sockets, no clock of its own,
//! no locks.
//!
//! Why: everything the hub decides about a connected agent — is it live, which summon did its
//! `Ready` answer, may it hold full flow-control windows, what check-in interval does its NAT
//! need, what must be written to the store and when — used to sit beside the `quinn::Connection`
//! it was about, so testing any of it took real TLS and QUIC. Here it takes plain values (the
//! remote `SocketAddr`, summon ids, `now`), so the tests below play hours of session life on a
//! virtual clock. The registry's handle (`registry::LiveSession`) holds the connection, the
//! control queue and a lock around this; the driver (`agent_link::driver`) feeds it what happened
//! and carries out what it answers.
//!
//! Inputs are `handle_*(now, …)`; outputs are what those return, plus [`HubSession::poll_save`]
//! for the store:
//! - **Check-ins** ([`HubSession::handle_checkin`]): liveness, migrations (a new remote address)
//!   and the adaptive interval for the ack ([`interval`]: shorter where the NAT forgets, longer
//!   where a probe shows it holds). Between check-ins the driver samples the path at each control
//!   frame ([`HubSession::handle_path`]). A device in a `quiet` group that announced
//!   `Features::QUIET` checks in minutes apart instead ([`quiet`]); the liveness bound and a
//!   summon's wait follow the session's own interval.
//! - **Summons**: an admin's request ([`HubSession::handle_summon`]) either needs no frame (the
//!   device is active, or pending and never summoned) or sends `Summon { id }` and waits; the
//!   agent's `Ready { id }` ([`HubSession::handle_ready`]) hands back the waiter. Only a summon the
//!   hub sent and still waits for counts: an unsolicited `Ready` (a pending device, a guessed id)
//!   or one after its summon was given up changes nothing.
//! - **Windows**: an answered summon asks for full windows ([`WindowChange::Grant`]) unless the
//!   session holds them; the driver tries the budget and reports a grant
//!   ([`HubSession::handle_windows_granted`]). At standby the session no longer holds them; the
//!   driver returns its grant on any `Standby`, since a summon takes the grant when it is sent
//!   (`agent_link::driver`), before a `Ready` could confirm it.
//! - **Saving**: a durable change (new connection, address, migrations) is written at the next
//!   flush, a change of [`Liveness`] too, check-ins only every [`LIVENESS_CHECKPOINT`]; the final
//!   flush ([`Flush::Final`]) writes what is unsaved, disconnected, and asks once for the
//!   connection's wire totals.
//!
//! ```text
//!             handle_summon               handle_ready(id)
//!   Standby ─────────────────► waiting ─────────────────────► Active  (again: Summon::Active)
//!      ▲      Summon::Send{id}    │       Ready::Answered,       │
//!      │                          │       WindowChange::Grant    │
//!      ├──────────────────────────┘                              │
//!      │   handle_summon_given_up (a later Ready is Unsolicited) │
//!      └─────────────────────────────────────────────────────────┘
//!            handle_standby: full windows no longer held
//!
//!   A pending device stays in Standby: handle_summon answers Summon::Pending until approval.
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use outpost_protocol::snapshot::EngineSnapshot;
use tokio::time::Instant;

use crate::store::endpoints::SavedPath;
use crate::store::{unix_seconds, LivenessUpdate};
use delivery::{Deliver, Delivery, ReportGate, ReportRefused};
use interval::CheckinTuner;
use jobs::{JobGate, JobRefused};
use outpost_protocol::stack::{StackReport, StateDigest};
use snapshots::SnapshotGate;

pub mod delivery;
pub mod interval;
pub mod jobs;
pub mod quiet;
pub mod snapshots;
mod view;
pub use snapshots::{SnapshotCounts, SnapshotRefused, MAX_STORED_SNAPSHOT};
pub use view::{LiveView, Status, SummonError, WireCounts};

/// How stale an endpoint's stored last check-in may get while it stays connected: what a hub crash
/// (not a clean shutdown, which writes everything) loses of "last seen". At 25,000 agents this is
/// ~42 rows a second instead of one per check-in (1,000 a second at a 25 s interval).
pub const LIVENESS_CHECKPOINT: Duration = Duration::from_secs(10 * 60);

/// Whether the hub counts a session live: heard from within the liveness bound. What the store's
/// `connected` flag says (`Live`), and what the endpoint list filters on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// Checked in (or connected) within the bound.
    Live,
    /// Silent past the bound, or the session ended.
    Stale,
}

/// Which flush asks [`HubSession::poll_save`] what to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush {
    /// The batch flusher's (or a status query's): changes only, live as of `stale_after`.
    Periodic {
        /// The liveness bound.
        stale_after: Duration,
    },
    /// The session ended or the hub stops: everything unsaved, disconnected.
    Final,
}

/// What the session answers a check-in with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckIn {
    /// The remote address changed since the last check-in.
    pub migrated: bool,
    /// The interval for the ack, in seconds.
    pub interval_s: u16,
    /// How much later than the interval it was told this check-in came (zero when sooner: a
    /// retry, a probe); `None` for the session's first.
    pub lag: Option<Duration>,
}

/// What an admin's summon needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Summon {
    /// The device waits for approval: it is never summoned.
    Pending,
    /// The device is active already: no frame, no wait.
    Active,
    /// Send `Summon { id }` and wait for its `Ready`.
    Send {
        /// Echoed in the agent's `Ready`.
        id: u32,
    },
}

/// What a change of mode asks of the connection's flow-control windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowChange {
    /// Nothing to do.
    Keep,
    /// Ask the window budget for full windows.
    Grant,
}

/// What an agent's `Ready` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Ready<W> {
    /// No summon waits for that id: ignored.
    Unsolicited,
    /// It answered a waiting summon: wake `waiter`, and see to the windows.
    Answered {
        /// The summoner's waiter.
        waiter: W,
        /// [`WindowChange::Grant`] unless the session holds full windows already.
        windows: WindowChange,
    },
}

/// A certificate renewal request, as the session sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// The session's first: answer it.
    First,
    /// A later one: a protocol violation (one is all a session may ask).
    Again,
}

/// What the store should be told of this session now.
#[derive(Debug, PartialEq, Eq)]
pub struct Save {
    update: LivenessUpdate,
    record_wire: bool,
}

/// What a finished connection leaves in the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionEnd {
    /// UDP payload bytes (sent, received).
    pub wire: (u64, u64),
    /// The path it measured, if it carried enough to measure one.
    pub path: Option<SavedPath>,
    /// The path MTU it found, if over UDP and above QUIC's 1,200-byte floor.
    pub path_mtu: Option<u16>,
}

impl Save {
    /// The row to write; `ended` tells what the finished connection leaves, asked only on the one
    /// save that records it.
    pub fn into_update(self, ended: impl FnOnce() -> ConnectionEnd) -> LivenessUpdate {
        let Self {
            mut update,
            record_wire,
        } = self;
        if record_wire {
            let ended = ended();
            update.wire_ended = Some(ended.wire);
            update.path_ended = ended.path;
            update.path_mtu = ended.path_mtu;
        }
        update
    }
}

/// What the driver knows of the connection itself, for [`HubSession::view`].
#[derive(Clone, Copy, Debug)]
pub struct Link {
    /// QUIC's smoothed round-trip estimate.
    pub rtt: Duration,
    /// UDP traffic of the connection.
    pub wire: WireCounts,
    /// Proxied requests in flight.
    pub proxy_streams: u32,
}

/// The hub's state of one agent session; `W` is what a waiting summoner is woken through.
#[derive(Debug)]
pub struct HubSession<W> {
    endpoint: outpost_protocol::EndpointId,
    /// When the session was established: proof of life until the first check-in lands.
    connected_at: Instant,
    last_checkin: Option<(Instant, SystemTime)>,
    /// The remote address last seen (at a check-in or a control frame).
    remote: SocketAddr,
    /// The remote address of the last check-in, for the tuner.
    checkin_remote: SocketAddr,
    migrations: u64,
    active: bool,
    pending: bool,
    full_windows: bool,
    tuner: CheckinTuner,
    /// The device's group is on the `quiet` policy with this interval: given once the agent
    /// announces `Features::QUIET`.
    quiet_offer: Option<Duration>,
    /// The adaptive tuner set aside while the session is quiet, back when the policy ends. Boxed:
    /// only quiet devices have one, and inline it made every session 152 B larger (a
    /// `CheckinTuner` is 160 B; the session's allocation was 1,032 B).
    adaptive: Option<Box<CheckinTuner>>,
    snapshots: SnapshotGate,
    summons: HashMap<u32, W>,
    next_summon: u32,
    /// The agent asked for a certificate renewal on this session.
    renewal_asked: bool,
    delivery: Delivery,
    reports: ReportGate,
    jobs: JobGate,
    saved: Saved,
}

/// What the store was last told, and what changed since.
#[derive(Debug)]
struct Saved {
    /// A durable field changed (new connection, address, migrations): write soon.
    dirty: bool,
    /// A check-in arrived since liveness was last written.
    unsaved_checkin: bool,
    at: Instant,
    /// The `connected` flag last written.
    liveness: Liveness,
    /// The connection's bytes were added to the endpoint's totals (it ended).
    wire_recorded: bool,
}

impl<W> HubSession<W> {
    /// A session of `endpoint` established at `now` from `remote`; `pending` if the device waits
    /// for approval, `migrations` from its earlier connections, `checkin` its interval's tuner
    /// (the hub's interval, or its group's `quiet` one).
    pub fn new(
        endpoint: outpost_protocol::EndpointId,
        now: Instant,
        remote: SocketAddr,
        pending: bool,
        migrations: u64,
        checkin: CheckinTuner,
    ) -> Self {
        Self {
            endpoint,
            connected_at: now,
            last_checkin: None,
            remote,
            checkin_remote: remote,
            migrations,
            active: false,
            pending,
            full_windows: false,
            tuner: checkin,
            quiet_offer: None,
            adaptive: None,
            snapshots: SnapshotGate::new(pending, now),
            summons: HashMap::new(),
            next_summon: 1,
            renewal_asked: false,
            delivery: Delivery::default(),
            reports: ReportGate::new(now),
            jobs: JobGate::default(),
            saved: Saved {
                dirty: true,
                unsaved_checkin: false,
                at: now,
                liveness: Liveness::Stale,
                wire_recorded: false,
            },
        }
    }

    /// A check-in arrived at `now` (`wall` on the wall clock) from `remote`: note it, count a
    /// migration if the address changed, and adapt the interval to a rebinding since the last one.
    pub fn handle_checkin(
        &mut self,
        now: Instant,
        wall: SystemTime,
        remote: SocketAddr,
    ) -> CheckIn {
        let since = |(then, _)| now.saturating_duration_since(then);
        let lag = self
            .last_checkin
            .map(since)
            .map(|gap| gap.saturating_sub(self.tuner.interval()));
        self.last_checkin = Some((now, wall));
        self.saved.unsaved_checkin = true;
        let migrated = self.handle_path(remote);
        let rebound = std::mem::replace(&mut self.checkin_remote, remote) != remote;
        self.end_quiet_if_withdrawn(now);
        self.tuner
            .handle_checkin(now, rebound)
            .log(self.endpoint, self.tuner.interval_s());
        CheckIn {
            migrated,
            interval_s: self.tuner.interval_s(),
            lag,
        }
    }

    /// The connection was seen at `remote` (a control frame): true, and a migration counted, if
    /// that is new. Quinn tells of no path change, so migrations are counted where the driver
    /// looks: two changes between samples count once.
    pub fn handle_path(&mut self, remote: SocketAddr) -> bool {
        let moved = remote != self.remote;
        if moved {
            self.remote = remote;
            self.migrations += 1;
            self.saved.dirty = true;
        }
        moved
    }

    /// An admin wants the device's stream credit; `waiter` is kept until the `Ready` (or until
    /// [`Self::handle_summon_given_up`]) when a frame must be sent.
    pub fn handle_summon(&mut self, waiter: W) -> Summon {
        if self.pending {
            return Summon::Pending;
        }
        if self.active {
            return Summon::Active;
        }
        let id = self.next_summon;
        self.next_summon = self.next_summon.wrapping_add(1);
        self.summons.insert(id, waiter);
        Summon::Send { id }
    }

    /// Summon `id` is no longer waited for (it timed out, or its frame could not be queued).
    pub fn handle_summon_given_up(&mut self, id: u32) -> Option<W> {
        let waiter = self.summons.remove(&id);
        if self.summons.is_empty() {
            // Free the table: at tens of thousands of sessions an idle one holds no allocation.
            self.summons = HashMap::new();
        }
        waiter
    }

    /// The agent reported `Ready` for summon `id`.
    pub fn handle_ready(&mut self, id: u32) -> Ready<W> {
        let Some(waiter) = self.handle_summon_given_up(id) else {
            return Ready::Unsolicited;
        };
        self.active = true;
        let windows = if self.full_windows {
            WindowChange::Keep
        } else {
            WindowChange::Grant
        };
        Ready::Answered { waiter, windows }
    }

    /// The budget granted the full windows [`Ready::Answered`] asked for.
    pub fn handle_windows_granted(&mut self) {
        self.full_windows = true;
    }

    /// The session ended: every summon still waiting is answered by dropping its waiter, which the
    /// summoner reads as "disconnected" at once instead of waiting out its timeout.
    pub fn handle_ended(&mut self) -> Vec<W> {
        std::mem::take(&mut self.summons).into_values().collect()
    }

    /// The agent returned to standby (or the session ended): no longer active, and no longer
    /// holding full windows.
    pub fn handle_standby(&mut self) {
        self.active = false;
        self.full_windows = false;
    }

    /// A check-in named the state the agent runs ([`delivery`]).
    pub fn handle_applied(&mut self, applied: StateDigest) -> Deliver {
        self.delivery.handle_applied(applied, !self.pending)
    }

    /// What the device should run changed ([`delivery`]).
    pub fn handle_desired_changed(&mut self) -> Deliver {
        self.delivery.handle_changed(!self.pending)
    }

    /// The device's desired state, as read for [`Deliver::ReadDesired`]: whether to send it.
    pub fn handle_desired(&mut self, desired: StateDigest) -> bool {
        self.delivery.handle_desired(desired)
    }

    /// A stack report arrived: whether to keep it ([`delivery`]; a refusal ends the session).
    pub fn handle_report(
        &mut self,
        now: Instant,
        report: &StackReport,
    ) -> Result<(), ReportRefused> {
        self.reports.admit(now, report)
    }

    /// The agent announced what it can do: whether it runs jobs ([`jobs`]; a refusal ends the
    /// session).
    pub fn handle_features(
        &mut self,
        now: Instant,
        features: outpost_protocol::job::Features,
    ) -> Result<bool, JobRefused> {
        // A device waiting for approval runs nothing until it is approved (`runs_jobs` then).
        Ok(self.jobs.announce(now, features)? && !self.pending)
    }

    /// Whether the agent announced jobs and the device is approved: it may be sent jobs.
    pub fn runs_jobs(&self) -> bool {
        self.jobs.runs_jobs() && !self.pending
    }

    /// Whether the agent reads drift policies (`HubMessage::DesiredOrder`, version 5); if not,
    /// it is sent `Desired` and re-applies every stack that drifts.
    pub fn reads_drift_policy(&self) -> bool {
        self.jobs
            .features()
            .contains(outpost_protocol::job::Features::DRIFT_REPORT)
    }

    /// When the session's connection was set up (its TLS handshake, and the tickets it got).
    pub fn connected_at(&self) -> Instant {
        self.connected_at
    }

    /// Whether the agent takes `HubMessage::HubAddrs` mid-session
    /// ([`Features::HUB_ADDRS`](outpost_protocol::job::Features::HUB_ADDRS)).
    pub fn takes_hub_addrs(&self) -> bool {
        self.jobs
            .features()
            .contains(outpost_protocol::job::Features::HUB_ADDRS)
    }

    /// Whether the agent announced `feature` this session.
    pub fn announced(&self, feature: outpost_protocol::job::Features) -> bool {
        self.jobs.features().contains(feature)
    }

    /// Whether the agent understands a deferral of its background transfers
    /// ([`Features::DEFERRAL`](outpost_protocol::job::Features::DEFERRAL)); if not, a spent
    /// budget refuses its fetches as unavailable.
    pub fn takes_deferrals(&self) -> bool {
        self.jobs
            .features()
            .contains(outpost_protocol::job::Features::DEFERRAL)
    }

    /// A job message arrived, with its result if it is one: whether to keep it ([`jobs`]).
    pub fn handle_job_message(
        &mut self,
        now: Instant,
        result: Option<&outpost_protocol::job::JobResult>,
    ) -> Result<(), JobRefused> {
        self.jobs.admit(now, result)
    }

    /// The agent asked for a certificate renewal.
    pub fn handle_renewal(&mut self) -> Renewal {
        if std::mem::replace(&mut self.renewal_asked, true) {
            Renewal::Again
        } else {
            Renewal::First
        }
    }

    /// An admin approved the device at `now`: true if it was pending (tell the agent).
    pub fn handle_approval(&mut self, now: Instant) -> bool {
        self.snapshots.approve(now);
        std::mem::replace(&mut self.pending, false)
    }

    /// The agent sent an engine snapshot at `now`: what to store, or why not ([`snapshots`]).
    pub fn handle_snapshot(
        &mut self,
        now: Instant,
        snapshot: EngineSnapshot,
    ) -> Result<EngineSnapshot, SnapshotRefused> {
        self.snapshots.admit(now, snapshot)
    }

    /// Snapshots this session sent, by outcome.
    pub fn snapshot_counts(&self) -> SnapshotCounts {
        self.snapshots.counts()
    }

    /// Live if heard from within `stale_after` (or this session's longer bound,
    /// [`Self::stale_after`]): a check-in, or the connection itself until the first one.
    pub fn liveness(&self, now: Instant, stale_after: Duration) -> Liveness {
        let alive_at = self.last_checkin.map_or(self.connected_at, |(at, _)| at);
        if now.saturating_duration_since(alive_at) <= self.stale_after(stale_after) {
            Liveness::Live
        } else {
            Liveness::Stale
        }
    }

    /// The status an admin sees, with `stale_after` the liveness bound.
    pub fn status(&self, now: Instant, stale_after: Duration) -> Status {
        match (self.pending, self.liveness(now, stale_after), self.active) {
            (true, _, _) => Status::Pending,
            (false, Liveness::Stale, _) => Status::Offline,
            (false, Liveness::Live, false) => Status::Standby,
            (false, Liveness::Live, true) => Status::Active,
        }
    }

    /// The view the API shows, with what the driver knows of the connection.
    pub fn view(&self, now: Instant, stale_after: Duration, link: Link) -> LiveView {
        LiveView {
            status: self.status(now, stale_after),
            last_checkin: self.last_checkin.map(|(_, wall)| wall),
            remote_addr: self.remote,
            path: crate::agent_link::tunnel::PathKind::Quic,
            rtt: link.rtt,
            migrations: self.migrations,
            wire: link.wire,
            proxy_streams: link.proxy_streams,
            checkin_interval: self.tuner.interval(),
            quiet: self.tuner.is_quiet(),
            probes: self.probe_counts(),
            full_windows: self.full_windows,
            resumes: None,
            silences: None,
            sender: None,
        }
    }

    /// What to write to the store at `now`, if anything: durable changes and a change of
    /// liveness at once, check-ins once per [`LIVENESS_CHECKPOINT`]; at [`Flush::Final`]
    /// everything unsaved, disconnected, with the wire totals the first time.
    pub fn poll_save(&mut self, now: Instant, flush: Flush) -> Option<Save> {
        let (liveness, fin) = match flush {
            Flush::Periodic { stale_after } => (self.liveness(now, stale_after), false),
            Flush::Final => (Liveness::Stale, true),
        };
        let saved = &mut self.saved;
        let checkpoint = saved.unsaved_checkin
            && (fin || now.saturating_duration_since(saved.at) >= LIVENESS_CHECKPOINT);
        let record_wire = fin && !saved.wire_recorded;
        if !(saved.dirty || checkpoint || record_wire || liveness != saved.liveness) {
            return None;
        }
        // Going live is a claim: the device checks in here now (`LivenessUpdate::claim`).
        let claim = liveness == Liveness::Live && saved.liveness != Liveness::Live;
        saved.wire_recorded |= record_wire;
        saved.dirty = false;
        saved.unsaved_checkin = false;
        saved.at = now;
        saved.liveness = liveness;
        let update = LivenessUpdate {
            id: self.endpoint,
            last_checkin: self.last_checkin.map(|(_, wall)| unix_seconds(wall)),
            addr: self.remote.to_string(),
            migrations: self.migrations as i64,
            connected: liveness == Liveness::Live,
            claim,
            wire_ended: None,
            path_ended: None,
            path_mtu: None,
        };
        Some(Save {
            update,
            record_wire,
        })
    }
}

#[cfg(test)]
mod tests;
