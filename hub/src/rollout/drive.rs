//! What a rollout does on its own at [`Rollout::poll`]: timers that came due, the failure
//! threshold, the next wave, late joiners — and the one path every change to a target takes, so
//! the counters ([`super::tally`]) and timers never drift from the targets.

use std::time::SystemTime;

use outpost_protocol::EndpointId;

use super::tally::Mark;
use super::target::TargetRecord;
use super::{PauseReason, Poll, Rollout, RolloutState, LOST_AFTER};

impl Rollout {
    /// Everything due at `now`: soaks that ended, devices now lost, a pause if failures passed
    /// the threshold, the next wave if it may start, late joiners. Call it after every input and
    /// at [`Poll::next`].
    pub fn poll(&mut self, now: SystemTime) -> Poll {
        self.fire_timers(now);
        let mut assign = Vec::new();
        if self.state == RolloutState::Running {
            self.check_failures();
        }
        if self.state == RolloutState::Running {
            self.advance(now, &mut assign);
        }
        if self.takes_joiners() {
            for i in std::mem::take(&mut self.joiners) {
                self.assign(i, now, &mut assign);
            }
        }
        let changed = std::mem::take(&mut self.state_changed);
        Poll {
            assign,
            state: changed.then(|| self.state.clone()),
            next: self.timers.first().map(|&(at, _)| at),
        }
    }

    /// Settle the soaks and lose the silent devices whose time came by `now`, each as of its
    /// own deadline.
    fn fire_timers(&mut self, now: SystemTime) {
        while self.timers.first().is_some_and(|&(due, _)| due <= now) {
            let Some((due, i)) = self.timers.pop_first() else {
                return;
            };
            self.deadline[i] = None;
            self.update(i, due, |target| {
                if target.online() {
                    target.soaked = true;
                } else {
                    target.lost = true;
                    target.reason = Some(lost_reason());
                }
            });
        }
    }

    fn check_failures(&mut self) {
        let (failed, assigned) = (self.tally.failing, self.tally.assigned);
        if failed as usize <= self.plan.max_failures.allowed(assigned as usize) {
            return;
        }
        // A scan, once per pause: the earliest failure is the one to name.
        let first = self
            .targets
            .iter()
            .filter(|target| target.failing(self.plan.on_drift))
            .min_by_key(|target| (target.since, target.position));
        let Some(first) = first else {
            return;
        };
        let reason = PauseReason::Failures {
            wave: self.wave,
            failed,
            assigned,
            max: self.plan.max_failures,
            endpoint: first.endpoint,
            reason: first.reason.clone().unwrap_or_default(),
        };
        self.set_state(RolloutState::Paused(reason));
    }

    /// Start the next wave if nothing blocks and the current one has been heard from; complete
    /// once every wave has started and nothing blocks.
    fn advance(&mut self, now: SystemTime, assign: &mut Vec<EndpointId>) {
        let waves = self.plan.waves.count() as u32;
        let heard = self.wave == 0 || self.tally.settled_in_wave > 0;
        if self.tally.blocking == 0 && self.wave < waves && heard {
            self.start_next_wave(now, assign);
        }
        if self.tally.blocking == 0 && self.wave == waves {
            self.set_state(RolloutState::Completed);
        }
    }

    /// Assign the next wave that adds somebody, skipping those that add nobody.
    fn start_next_wave(&mut self, now: SystemTime, assign: &mut Vec<EndpointId>) {
        let n = self.targets.len();
        while (self.wave as usize) < self.plan.waves.count() {
            let reach = self
                .plan
                .waves
                .reach(self.wave as usize, n)
                .max(self.reached);
            self.wave += 1;
            // No target has been assigned in the new wave yet.
            self.tally.settled_in_wave = 0;
            self.record_dirty = true;
            let fresh: Vec<usize> = (self.reached..reach)
                .filter(|&i| !self.targets[i].assigned())
                .collect();
            self.reached = reach;
            if !fresh.is_empty() {
                for i in fresh {
                    self.assign(i, now, assign);
                }
                return;
            }
        }
    }

    /// Joiners are assigned once the first wave has settled (see the module's rules).
    fn takes_joiners(&self) -> bool {
        match self.state {
            RolloutState::Running => self.wave >= 2,
            RolloutState::Completed => true,
            RolloutState::Paused(_) | RolloutState::Aborted => false,
        }
    }

    fn assign(&mut self, i: usize, now: SystemTime, assign: &mut Vec<EndpointId>) {
        if self.targets[i].assigned() {
            return;
        }
        let wave = self.wave;
        self.update(i, now, |target| target.wave = Some(wave));
        assign.push(self.targets[i].endpoint);
    }

    /// The one way a target changes: `change` it at `at`, restart its `since` if its state
    /// changed, move the counters by the difference, reschedule its timer, mark it for saving.
    pub(super) fn update(
        &mut self,
        i: usize,
        at: SystemTime,
        change: impl FnOnce(&mut TargetRecord),
    ) {
        let before = Mark::of(&self.targets[i], self.wave, self.plan.on_drift);
        let target = &mut self.targets[i];
        change(target);
        if target.state() != before.state() {
            target.since = at;
        }
        let after = Mark::of(target, self.wave, self.plan.on_drift);
        self.tally.remove(before);
        self.tally.add(after);
        self.schedule(i);
        self.dirty.insert(i);
    }

    /// Keep target `i`'s timer in step with its record.
    pub(super) fn schedule(&mut self, i: usize) {
        let due = self.deadline_of(&self.targets[i]);
        if let Some(old) = std::mem::replace(&mut self.deadline[i], due) {
            self.timers.remove(&(old, i));
        }
        if let Some(due) = due {
            self.timers.insert((due, i));
        }
    }

    /// When `target` changes by itself: its soak ends (online, healthy), or it is lost (offline
    /// after starting). Never for a target waiting or settled.
    fn deadline_of(&self, target: &TargetRecord) -> Option<SystemTime> {
        if !target.assigned() || target.settled(self.plan.on_drift) {
            return None;
        }
        match (target.offline_since, target.healthy_since) {
            (Some(offline), _) if target.started() => offline.checked_add(LOST_AFTER),
            (None, Some(healthy)) => healthy.checked_add(self.plan.soak),
            _ => None,
        }
    }
}

/// The reason a lost device is given.
fn lost_reason() -> String {
    format!(
        "offline for {} after starting the new version",
        humantime::format_duration(LOST_AFTER)
    )
}
