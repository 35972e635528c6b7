//! Counters kept up to date on every change instead of recounted: a report or a presence change
//! costs O(log N) at 10,000 targets, and `rollout show`'s counts, the failure threshold and the
//! "may the next wave start" question are read in O(1).
//!
//! Every change to a target goes through [`super::Rollout`]'s one update path, which takes the
//! target's [`Mark`] before and after and moves the counters by the difference.

use super::plan::OnDrift;
use super::target::{TargetRecord, TargetState};

/// What one target contributes to the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Mark {
    state: TargetState,
    offline: bool,
    assigned: bool,
    blocking: bool,
    failing: bool,
    /// Settled, and assigned in the rollout's current wave: evidence about that wave.
    settled_in_wave: bool,
}

impl Mark {
    /// `target`'s contribution while the rollout is in wave `wave` under `on_drift`.
    pub(super) fn of(target: &TargetRecord, wave: u32, on_drift: OnDrift) -> Self {
        Self {
            state: target.state(),
            offline: !target.online(),
            assigned: target.assigned(),
            blocking: target.blocking(on_drift),
            failing: target.failing(on_drift),
            settled_in_wave: target.wave == Some(wave) && target.settled(on_drift),
        }
    }

    pub(super) fn state(self) -> TargetState {
        self.state
    }
}

/// The counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Tally {
    states: [u32; TargetState::ALL.len()],
    pub(super) offline: u32,
    pub(super) assigned: u32,
    pub(super) blocking: u32,
    pub(super) failing: u32,
    pub(super) settled_in_wave: u32,
}

impl Tally {
    pub(super) fn add(&mut self, mark: Mark) {
        self.shift(mark, |count| *count += 1);
    }

    pub(super) fn remove(&mut self, mark: Mark) {
        self.shift(mark, |count| *count -= 1);
    }

    fn shift(&mut self, mark: Mark, step: impl Fn(&mut u32)) {
        step(&mut self.states[mark.state as usize]);
        for (counter, on) in [
            (&mut self.offline, mark.offline),
            (&mut self.assigned, mark.assigned),
            (&mut self.blocking, mark.blocking),
            (&mut self.failing, mark.failing),
            (&mut self.settled_in_wave, mark.settled_in_wave),
        ] {
            if on {
                step(counter);
            }
        }
    }

    pub(super) fn counts(&self) -> Counts {
        let [waiting, queued, pulling, deferred, starting, running, soaking, healthy, failed, rolled_back, drifted, lost] =
            self.states;
        Counts {
            waiting,
            queued,
            pulling,
            deferred,
            starting,
            running,
            soaking,
            healthy,
            failed,
            rolled_back,
            drifted,
            lost,
            offline: self.offline,
        }
    }
}

/// How many targets are in each state, for `rollout show` (and kept with the rollout's record,
/// so a list of finished rollouts reads no target rows).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Counts {
    /// In a wave not yet started.
    pub waiting: u32,
    /// Assigned, not started on it.
    pub queued: u32,
    /// Pulling images.
    pub pulling: u32,
    /// Pulling held back by a byte budget or a transfer window.
    pub deferred: u32,
    /// Replacing containers.
    pub starting: u32,
    /// Running, some healthcheck not yet passing.
    pub running: u32,
    /// Healthy, soak not over.
    pub soaking: u32,
    /// Healthy for the whole soak.
    pub healthy: u32,
    /// Reported failure.
    pub failed: u32,
    /// Started, failed, and back on the previous version.
    pub rolled_back: u32,
    /// Re-applying after a container died or was removed.
    pub drifted: u32,
    /// Offline too long after starting the new version.
    pub lost: u32,
    /// Of all targets, in whatever state, how many are offline now.
    pub offline: u32,
}

impl Counts {
    /// Each state's name (as `rollout show` prints it) and count; `offline` overlaps them and is
    /// not among them.
    pub fn by_state(&self) -> [(&'static str, u32); TargetState::ALL.len()] {
        [
            ("waiting", self.waiting),
            ("queued", self.queued),
            ("pulling", self.pulling),
            ("deferred", self.deferred),
            ("starting", self.starting),
            ("running", self.running),
            ("soaking", self.soaking),
            ("healthy", self.healthy),
            ("failed", self.failed),
            ("rolled_back", self.rolled_back),
            ("drifted", self.drifted),
            ("lost", self.lost),
        ]
    }

    /// Every target: the sum over the states (`offline` overlaps them).
    pub fn total(&self) -> u32 {
        self.waiting
            + self.queued
            + self.pulling
            + self.deferred
            + self.starting
            + self.running
            + self.soaking
            + self.healthy
            + self.failed
            + self.rolled_back
            + self.drifted
            + self.lost
    }
}
