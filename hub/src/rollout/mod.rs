//! Rollouts: a stack version spreading over a set of devices wave by wave, as a plain state
//! machine — no store, no clock of its own, no tasks.
//!
//! Why: a rollout lives for days on a fleet where many devices are offline for hours, and the
//! decisions that matter (may the next wave start, has this wave failed, is a silent device a
//! problem) must be right without anyone watching. Here they take plain values — a device's
//! reported [`Phase`], its presence, `now` — so the tests below play a week of rollout on a
//! virtual clock. The caller (the hub's rollout driver) feeds it what happened, carries out what
//! [`Rollout::poll`] answers (set those devices' desired state), writes what
//! [`Rollout::poll_save`] hands over, and owns the timer [`Poll::next`] asks for.
//!
//! A deploy is done when its containers run, not when a command returns (Portainer's mistake):
//! - **Settled**: healthy for the whole [`Plan::soak`] (a `Healthy` report starts the soak, any
//!   other report ends it, the next `Healthy` starts it over), or `Failed`, or lost (below).
//! - **Slow is not failed**: nothing fails for taking long. A device pulling over a bad link for
//!   hours is pulling.
//! - **Waves** ([`plan`]): wave k is the first `size_k` targets in the caller's order (cumulative;
//!   percentages round up, so 1% of 3 devices is 1). The next wave starts once no device assigned
//!   so far *blocks* and at least one device of the current wave has settled: a wave nobody could
//!   try says nothing about the version, so it is not taken as a pass. A wave that would add
//!   nobody is skipped. Put devices that are online first in the order you give: the canary is
//!   then a device that can answer.
//! - **Offline devices**: an assigned device blocks its wave while it is online and unsettled.
//!   Offline, it blocks only if it had started the new version (`Starting` or later): an offline
//!   device that is queued or pulling has changed nothing yet and gets the version when it
//!   returns, while one that went silent mid-start may have been cut off by the version itself.
//!   That one blocks for [`LOST_AFTER`], then counts as *lost* — a failure, judged by the
//!   threshold like any other, so an admin hears of it instead of a rollout waiting in silence.
//!   Returning (presence or any report) clears lost; a device offline when its soak ends settles
//!   when it is next online.
//! - **Failures**: failed and lost devices among those assigned so far, against
//!   [`Plan::max_failures`]. Passing it pauses the rollout with the first failure's device and
//!   reason ([`PauseReason::Failures`]) and assigns nothing more. `resume` accepts the failures
//!   seen so far (they no longer count) and goes on.
//! - **Late joiners** ([`Rollout::add_target`]): a device that joins the target (enrolment, a
//!   tag, a group) goes to the end of the order. Once the first wave has settled the version has
//!   passed its canary, so a joiner is assigned at the next poll rather than made to wait for the
//!   last wave (a technician installing a device expects it to come up with the fleet's stack);
//!   before that it waits like anyone else. Joiners are assigned after completion too; not while
//!   paused or after an abort.
//! - **Completed**: every wave started and nothing blocks. Offline devices still converge when
//!   they return; their rows keep following them.
//!
//! ```text
//!   Running(wave k) ── nothing blocks, one of wave k settled ──► Running(wave k+1)
//!      │   ▲                                                          │ last wave, nothing blocks
//!      │   └── resume (accepts failures so far)                       ▼
//!      ├── failures > max, or pause ──► Paused ──┐                Completed
//!      └──────────── abort ─────────────────────┴──────────────────► Aborted
//! ```
//!
//! Time is the wall clock (`SystemTime`), because a rollout outlives the hub process: soak and
//! lost timers must mean the same after a restart, and the store keeps Unix seconds. A clock
//! stepped back only lengthens a wait; one stepped forward may shorten a soak, which we accept
//! over forgetting every timer at each restart.

mod drive;
pub mod persist;
pub mod plan;
mod tally;
mod target;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::time::{Duration, SystemTime};

use outpost_protocol::stack::Phase;
use outpost_protocol::EndpointId;
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use persist::{RestoreError, RolloutRecord, Save};
pub use plan::{MaxFailures, OnDrift, Plan, PlanError, Share, Waves};
pub use tally::Counts;
use tally::{Mark, Tally};
pub use target::{TargetRecord, TargetRow, TargetState};

/// How long a device that went offline after starting the new version holds its wave back before
/// it counts as lost: far past the few minutes a dropped link takes to return (an outage the
/// session rides out, `outpost_transport::profile::OUTAGE_TO_RIDE_OUT`, plus a reconnect backoff
/// capped at a minute), short enough that a version that cuts devices off is reported within the
/// hour.
pub const LOST_AFTER: Duration = Duration::from_secs(30 * 60);

/// Where a rollout is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RolloutState {
    /// Assigning wave after wave.
    Running,
    /// Assigning nothing until resumed.
    Paused(PauseReason),
    /// Every wave started and nothing blocks; late joiners are still assigned.
    Completed,
    /// Stopped for good: nothing more is assigned.
    Aborted,
}

/// Why a rollout paused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PauseReason {
    /// An admin paused it.
    Admin {
        /// What they said.
        note: String,
    },
    /// More devices failed than the plan allows.
    Failures {
        /// The wave the rollout was in.
        wave: u32,
        /// Failed or lost devices, not counting those a resume accepted.
        failed: u32,
        /// Devices assigned so far.
        assigned: u32,
        /// The threshold.
        max: MaxFailures,
        /// The device that failed first.
        endpoint: EndpointId,
        /// Its reason.
        reason: String,
    },
}

impl fmt::Display for PauseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Admin { note } if note.is_empty() => f.write_str("paused by an admin"),
            Self::Admin { note } => write!(f, "paused by an admin: {note}"),
            Self::Failures {
                wave,
                failed,
                assigned,
                max,
                endpoint,
                reason,
            } => write!(
                f,
                "wave {wave}: {failed} of {assigned} devices failed (max {max}): \
                 endpoint {endpoint}: {reason}"
            ),
        }
    }
}

/// What [`Rollout::poll`] asks of the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Poll {
    /// Devices to assign the version to now, in the rollout's order.
    pub assign: Vec<EndpointId>,
    /// The rollout's state, if it changed since the last poll.
    pub state: Option<RolloutState>,
    /// Poll again at this time at the latest (a soak ends, a silent device would be lost);
    /// `None`: only after the next input.
    pub next: Option<SystemTime>,
}

/// Why a running rollout has not started its next wave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holdup {
    /// That many assigned devices are not settled yet.
    Unsettled(u32),
    /// Nothing blocks, but no device of the current wave has settled: all of them are offline
    /// and have not started. The next wave waits for one of them to return.
    SilentWave,
}

/// Why an admin's command was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ControlError {
    /// The rollout was aborted; deploy again to start a new one.
    #[error("the rollout was aborted")]
    Aborted,
    /// Every wave has started; nothing is left to pause (abort stops late joiners).
    #[error("the rollout has completed")]
    Completed,
    /// Resume of a rollout that is not paused.
    #[error("the rollout is not paused")]
    NotPaused,
    /// Pause of a rollout already paused; the reason it gives.
    #[error("the rollout is already paused: {0}")]
    AlreadyPaused(PauseReason),
}

/// One rollout of one stack version.
#[derive(Debug)]
pub struct Rollout {
    plan: Plan,
    state: RolloutState,
    /// Waves started (0 before the first poll).
    wave: u32,
    /// Targets `[0, reached)` fall in the waves started.
    reached: usize,
    targets: Vec<TargetRecord>,
    index: HashMap<EndpointId, usize>,
    /// Each target's pending deadline (soak end or lost), mirrored in `timers`.
    deadline: Vec<Option<SystemTime>>,
    timers: BTreeSet<(SystemTime, usize)>,
    /// Joiners not yet assigned.
    joiners: Vec<usize>,
    tally: Tally,
    state_changed: bool,
    record_dirty: bool,
    dirty: BTreeSet<usize>,
}

impl Rollout {
    /// A rollout of `targets` (each with whether it is online now), in the order given; a device
    /// listed twice (two selectors matched it) keeps its first place. Nothing is assigned until
    /// the first [`Self::poll`].
    pub fn new(
        plan: Plan,
        targets: impl IntoIterator<Item = (EndpointId, bool)>,
        now: SystemTime,
    ) -> Self {
        let mut seen = HashSet::new();
        let records = targets
            .into_iter()
            .filter(|(endpoint, _)| seen.insert(*endpoint))
            .enumerate()
            .map(|(i, (endpoint, online))| TargetRecord::waiting(i as u32, endpoint, online, now))
            .collect();
        let mut rollout = Self::build(plan, RolloutState::Running, 0, 0, records);
        rollout.record_dirty = true;
        rollout.dirty = (0..rollout.targets.len()).collect();
        rollout
    }

    /// The rollout around `targets` (checked), with everything derived from them.
    fn build(
        plan: Plan,
        state: RolloutState,
        wave: u32,
        reached: usize,
        targets: Vec<TargetRecord>,
    ) -> Self {
        let mut rollout = Self {
            plan,
            state,
            wave,
            reached,
            index: HashMap::with_capacity(targets.len()),
            deadline: vec![None; targets.len()],
            timers: BTreeSet::new(),
            joiners: Vec::new(),
            tally: Tally::default(),
            state_changed: false,
            record_dirty: false,
            dirty: BTreeSet::new(),
            targets,
        };
        for i in 0..rollout.targets.len() {
            let target = &rollout.targets[i];
            rollout.index.insert(target.endpoint, i);
            rollout
                .tally
                .add(Mark::of(target, wave, rollout.plan.on_drift));
            if target.joined && !target.assigned() {
                rollout.joiners.push(i);
            }
            rollout.schedule(i);
        }
        rollout
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Where the rollout is.
    pub fn state(&self) -> &RolloutState {
        &self.state
    }

    /// Waves started (from 1; 0 before the first poll).
    pub fn wave(&self) -> u32 {
        self.wave
    }

    /// How many targets are in each state.
    pub fn counts(&self) -> Counts {
        self.tally.counts()
    }

    /// Every target, in the rollout's order.
    pub fn rows(&self) -> impl Iterator<Item = TargetRow<'_>> {
        self.targets.iter().map(TargetRow::from)
    }

    /// Why a running rollout waits, if it does.
    pub fn holdup(&self) -> Option<Holdup> {
        if self.state != RolloutState::Running || self.wave == 0 {
            return None;
        }
        if self.tally.blocking > 0 {
            return Some(Holdup::Unsettled(self.tally.blocking));
        }
        let more_waves = (self.wave as usize) < self.plan.waves.count();
        (more_waves && self.tally.settled_in_wave == 0).then_some(Holdup::SilentWave)
    }

    /// A device reported `phase` for this rollout's version at `now` (which also says it is
    /// online). False, and ignored, if it is not a target or not assigned yet.
    pub fn handle_report(&mut self, endpoint: EndpointId, phase: Phase, now: SystemTime) -> bool {
        let Some(i) = self.index.get(&endpoint).copied() else {
            return false;
        };
        if !self.targets[i].assigned() {
            return false;
        }
        let soak = self.plan.soak;
        self.update(i, now, |target| {
            target.come_online(soak, now);
            target.apply_report(phase, now);
        });
        true
    }

    /// A device came online or went offline at `now`. False if it is not a target.
    pub fn handle_presence(&mut self, endpoint: EndpointId, online: bool, now: SystemTime) -> bool {
        let Some(i) = self.index.get(&endpoint).copied() else {
            return false;
        };
        if self.targets[i].online() != online {
            let soak = self.plan.soak;
            self.update(i, now, |target| {
                if online {
                    target.come_online(soak, now);
                } else {
                    target.offline_since = Some(now);
                }
            });
        }
        true
    }

    /// A device joined the target at `now`. False if it is a target already.
    pub fn add_target(&mut self, endpoint: EndpointId, online: bool, now: SystemTime) -> bool {
        if self.index.contains_key(&endpoint) {
            return false;
        }
        let i = self.targets.len();
        let mut record = TargetRecord::waiting(i as u32, endpoint, online, now);
        record.joined = true;
        self.tally
            .add(Mark::of(&record, self.wave, self.plan.on_drift));
        self.targets.push(record);
        self.deadline.push(None);
        self.index.insert(endpoint, i);
        self.joiners.push(i);
        self.dirty.insert(i);
        true
    }

    /// An admin pauses the rollout.
    pub fn pause(&mut self, note: impl Into<String>) -> Result<(), ControlError> {
        self.refuse_if_over()?;
        if let RolloutState::Paused(reason) = &self.state {
            return Err(ControlError::AlreadyPaused(reason.clone()));
        }
        let note = note.into();
        self.set_state(RolloutState::Paused(PauseReason::Admin { note }));
        Ok(())
    }

    /// An admin resumes a paused rollout at `now`: the failures seen so far are accepted.
    pub fn resume(&mut self, now: SystemTime) -> Result<(), ControlError> {
        self.refuse_if_over()?;
        if self.state == RolloutState::Running {
            return Err(ControlError::NotPaused);
        }
        // O(N) once per resume, which only an admin does.
        let failing: Vec<usize> = (0..self.targets.len())
            .filter(|&i| self.targets[i].failing(self.plan.on_drift))
            .collect();
        for i in failing {
            self.update(i, now, |target| target.forgiven = true);
        }
        self.set_state(RolloutState::Running);
        Ok(())
    }

    /// An admin aborts the rollout: nothing more is assigned (devices keep what they have).
    pub fn abort(&mut self) -> Result<(), ControlError> {
        if self.state == RolloutState::Aborted {
            return Err(ControlError::Aborted);
        }
        self.set_state(RolloutState::Aborted);
        Ok(())
    }

    fn refuse_if_over(&self) -> Result<(), ControlError> {
        match self.state {
            RolloutState::Aborted => Err(ControlError::Aborted),
            RolloutState::Completed => Err(ControlError::Completed),
            _ => Ok(()),
        }
    }

    fn set_state(&mut self, state: RolloutState) {
        self.state = state;
        self.state_changed = true;
        self.record_dirty = true;
    }
}

#[cfg(test)]
mod persist_tests;
#[cfg(test)]
mod plan_tests;
#[cfg(test)]
mod presence_tests;
#[cfg(test)]
mod scale_tests;
#[cfg(test)]
mod tests;
