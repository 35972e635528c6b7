//! One target of a rollout as plain data, and the rules that read it: which state it shows,
//! whether it is settled, whether it holds its wave back, whether it counts as a failure.
//!
//! Why a separate record: it is exactly what the store keeps per target, so a hub rebuilds a
//! rollout from rows ([`super::Rollout::restore`]); everything else the controller holds (counts,
//! timers, the index) is derived from these.

use std::fmt;
use std::time::{Duration, SystemTime};

use outpost_protocol::stack::Phase;
use outpost_protocol::EndpointId;
use serde::{Deserialize, Serialize};

use super::plan::OnDrift;

/// Where one target is, as `rollout show` counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TargetState {
    /// In a wave not yet started: nothing assigned.
    Waiting,
    /// Assigned; the device has not started on it (or has not said so yet).
    Queued,
    /// Pulling images. Never a failure, however long it takes.
    Pulling,
    /// Pulling is held back by the device's byte budget or transfer window: not a failure, and
    /// it holds its wave back like a pull.
    Deferred,
    /// Replacing containers.
    Starting,
    /// Every container running, some healthcheck not yet passing.
    Running,
    /// Reported healthy; the soak is not over.
    Soaking,
    /// Healthy for the whole soak: done.
    Healthy,
    /// The device reported the version could not be applied (nothing changed) or is unhealthy.
    Failed,
    /// The device started the version, the engine refused a step, and it runs the previous
    /// version again: a failure.
    RolledBack,
    /// A container of the new version died or was removed; the agent re-applies it.
    Drifted,
    /// Went offline after starting the new version and stayed away past
    /// [`super::LOST_AFTER`]: the version may have cut its link, so it counts as a failure.
    Lost,
}

impl TargetState {
    /// Every state, in the order `rollout show` lists them.
    pub const ALL: [Self; 12] = [
        Self::Waiting,
        Self::Queued,
        Self::Pulling,
        Self::Deferred,
        Self::Starting,
        Self::Running,
        Self::Soaking,
        Self::Healthy,
        Self::Failed,
        Self::RolledBack,
        Self::Drifted,
        Self::Lost,
    ];

    /// The lowercase name `rollout show` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Queued => "queued",
            Self::Pulling => "pulling",
            Self::Deferred => "deferred",
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Soaking => "soaking",
            Self::Healthy => "healthy",
            Self::Failed => "failed",
            Self::RolledBack => "rolled_back",
            Self::Drifted => "drifted",
            Self::Lost => "lost",
        }
    }
}

impl fmt::Display for TargetState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One target as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRecord {
    /// Place in the rollout's order (0, 1, …): the targets given at the start, then later
    /// joiners in the order they joined.
    pub position: u32,
    /// The device.
    pub endpoint: EndpointId,
    /// The wave (from 1) it was assigned in; `None` while it waits.
    pub wave: Option<u32>,
    /// Joined the target after the rollout started.
    pub joined: bool,
    /// The last phase the device reported for this version (`Queued` until it reports).
    pub phase: Phase,
    /// When its current [`TargetState`] began.
    pub since: SystemTime,
    /// When the device last reported `Healthy` after something else: the soak's start.
    pub healthy_since: Option<SystemTime>,
    /// Healthy for the whole soak.
    pub soaked: bool,
    /// Offline since then; `None` while online.
    pub offline_since: Option<SystemTime>,
    /// Offline past [`super::LOST_AFTER`] after starting the new version.
    pub lost: bool,
    /// Its failure was accepted by a `rollout resume`, so it no longer counts against the
    /// threshold (for the rest of the rollout, even if it fails again).
    pub forgiven: bool,
    /// The last reason it gave (a failure or a drift) or was given (lost).
    pub reason: Option<String>,
}

impl TargetRecord {
    /// A target waiting for its wave.
    pub(super) fn waiting(
        position: u32,
        endpoint: EndpointId,
        online: bool,
        now: SystemTime,
    ) -> Self {
        Self {
            position,
            endpoint,
            wave: None,
            joined: false,
            phase: Phase::Queued,
            since: now,
            healthy_since: None,
            soaked: false,
            offline_since: (!online).then_some(now),
            lost: false,
            forgiven: false,
            reason: None,
        }
    }

    /// The state `rollout show` counts it in.
    pub fn state(&self) -> TargetState {
        if self.wave.is_none() {
            return TargetState::Waiting;
        }
        if self.lost {
            return TargetState::Lost;
        }
        match self.phase {
            Phase::Queued => TargetState::Queued,
            Phase::Pulling { .. } => TargetState::Pulling,
            Phase::Deferred { .. } => TargetState::Deferred,
            Phase::Starting => TargetState::Starting,
            Phase::Running => TargetState::Running,
            Phase::Healthy if self.soaked => TargetState::Healthy,
            Phase::Healthy => TargetState::Soaking,
            Phase::Failed { .. } => TargetState::Failed,
            Phase::RolledBack { .. } => TargetState::RolledBack,
            Phase::Drifted { .. } => TargetState::Drifted,
        }
    }

    /// Online now.
    pub fn online(&self) -> bool {
        self.offline_since.is_none()
    }

    pub(super) fn assigned(&self) -> bool {
        self.wave.is_some()
    }

    /// Done with, for its wave: healthy for the soak, failed, or lost — or drifted where drift
    /// is only reported, which nothing on the device will repair.
    pub(super) fn settled(&self, on_drift: OnDrift) -> bool {
        matches!(
            self.state(),
            TargetState::Healthy
                | TargetState::Failed
                | TargetState::RolledBack
                | TargetState::Lost
        ) || self.drift_stays(on_drift)
    }

    /// Drifted, and left so by the policy: a failure of the kind an admin must look at.
    fn drift_stays(&self, on_drift: OnDrift) -> bool {
        on_drift == OnDrift::Report && self.state() == TargetState::Drifted
    }

    /// The device has replaced containers with the new version's: from here on, what it does
    /// may be the version's doing (a link it cut included).
    pub(super) fn started(&self) -> bool {
        matches!(
            self.phase,
            Phase::Starting | Phase::Running | Phase::Healthy | Phase::Drifted { .. }
        )
    }

    /// Holds its wave back: assigned, not settled, and either online (it will answer) or
    /// started (its silence may be the version's fault). An offline device that has not started
    /// changed nothing yet, so waiting for it would say nothing about the version.
    pub(super) fn blocking(&self, on_drift: OnDrift) -> bool {
        self.assigned() && !self.settled(on_drift) && (self.online() || self.started())
    }

    /// Counts against the failure threshold.
    pub(super) fn failing(&self, on_drift: OnDrift) -> bool {
        (matches!(
            self.state(),
            TargetState::Failed | TargetState::RolledBack | TargetState::Lost
        ) || self.drift_stays(on_drift))
            && !self.forgiven
    }

    /// Heard from (presence or a report) at `now`: no longer offline or lost, and settled if
    /// its soak ended while it was away.
    pub(super) fn come_online(&mut self, soak: Duration, now: SystemTime) {
        if self.offline_since.take().is_none() {
            return;
        }
        self.lost = false;
        let soak_end = self.healthy_since.and_then(|since| since.checked_add(soak));
        self.soaked |= soak_end.is_some_and(|end| end <= now);
    }

    /// Take a report of `phase` at `now`.
    pub(super) fn apply_report(&mut self, phase: Phase, now: SystemTime) {
        if phase == Phase::Healthy {
            self.healthy_since.get_or_insert(now);
        } else {
            self.healthy_since = None;
            self.soaked = false;
        }
        if let Phase::Failed { reason }
        | Phase::Drifted { reason }
        | Phase::RolledBack { reason }
        | Phase::Deferred { reason, .. } = &phase
        {
            self.reason = Some(reason.clone());
        }
        self.phase = phase;
    }
}

/// One target as `rollout show` lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetRow<'a> {
    /// The device.
    pub endpoint: EndpointId,
    /// The wave it was assigned in, if it was.
    pub wave: Option<u32>,
    /// Its state.
    pub state: TargetState,
    /// The last phase it reported, with the pull's bytes.
    pub phase: &'a Phase,
    /// When its state began.
    pub since: SystemTime,
    /// Online now.
    pub online: bool,
    /// The last reason it gave or was given.
    pub reason: Option<&'a str>,
}

impl<'a> From<&'a TargetRecord> for TargetRow<'a> {
    fn from(record: &'a TargetRecord) -> Self {
        Self {
            endpoint: record.endpoint,
            wave: record.wave,
            state: record.state(),
            phase: &record.phase,
            since: record.since,
            online: record.online(),
            reason: record.reason.as_deref(),
        }
    }
}
