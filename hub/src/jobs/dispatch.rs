//! One job's dispatch, without I/O: which targets are sent the job now, which expire, when the
//! job is finished. [`super::Jobs`] feeds it what sessions report and carries out its polls.
//!
//! Rules:
//! - A target is sent the job only while its agent is online and runs jobs, and at most
//!   `concurrency` online targets hold it at once (sent, not yet reported). A device that goes
//!   offline gives its place up; when it returns, it is sent the job again (the agent runs a job
//!   at most once, so a resend costs its result again, never a second run).
//! - At `expires_at` the targets never sent, or sent and never started, are *expired*; targets
//!   that started and stay silent until `expires_at + timeout` are *lost*. A result that arrives
//!   later still replaces either (it is what the device did).
//! - Cancelling expires nothing: targets not yet started are *cancelled*; devices that hold the
//!   job are told, and a running one reports how it ended (a one-shot container it stops ends
//!   *cancelled*).
//! - The job is finished when every target has settled.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use outpost_protocol::EndpointId;

use super::TargetState;

/// One target as the dispatch sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Target {
    state: TargetState,
    /// Its agent is connected and announced that it runs jobs.
    online: bool,
}

/// What a poll decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Poll {
    /// Send the job to these devices now.
    pub send: Vec<EndpointId>,
    /// State changes to store.
    pub changes: Vec<(EndpointId, TargetState)>,
    /// Every target has settled.
    pub finished: bool,
}

/// One job's targets and the rules that move them.
#[derive(Debug)]
pub struct Dispatch {
    concurrency: usize,
    expires_at: SystemTime,
    timeout: Duration,
    targets: BTreeMap<EndpointId, Target>,
    /// Online targets holding the job (sent or running).
    in_flight: usize,
    /// Sent or running targets that came back online: sent again at the next poll.
    resend: Vec<EndpointId>,
    changes: Vec<(EndpointId, TargetState)>,
    cancelled: bool,
}

impl Dispatch {
    /// A job's dispatch with its targets' stored states; every target starts offline.
    pub fn new(
        concurrency: u32,
        expires_at: SystemTime,
        timeout: Duration,
        targets: impl IntoIterator<Item = (EndpointId, TargetState)>,
        cancelled: bool,
    ) -> Self {
        let targets = targets
            .into_iter()
            .map(|(id, state)| {
                (
                    id,
                    Target {
                        state,
                        online: false,
                    },
                )
            })
            .collect();
        Self {
            concurrency: concurrency.max(1) as usize,
            expires_at,
            timeout,
            targets,
            in_flight: 0,
            resend: Vec::new(),
            changes: Vec::new(),
            cancelled,
        }
    }

    /// The device's agent is online and runs jobs (a new session of it, at least).
    pub fn online(&mut self, endpoint: EndpointId) {
        let Some(target) = self.targets.get_mut(&endpoint) else {
            return;
        };
        let was_online = std::mem::replace(&mut target.online, true);
        // A new session of a device already online (it replaced the old one) is sent the job
        // again too: the old session may have lost the order.
        if target.state.holds_the_job() {
            self.in_flight += usize::from(!was_online);
            if !self.resend.contains(&endpoint) {
                self.resend.push(endpoint);
            }
        }
    }

    /// The device's session ended.
    pub fn offline(&mut self, endpoint: EndpointId) {
        let Some(target) = self.targets.get_mut(&endpoint) else {
            return;
        };
        if !target.online {
            return;
        }
        target.online = false;
        if target.state.holds_the_job() {
            self.in_flight -= 1;
        }
        self.resend.retain(|id| *id != endpoint);
    }

    /// The device says it started the job.
    pub fn started(&mut self, endpoint: EndpointId) {
        if let Some(target) = self.targets.get_mut(&endpoint) {
            if matches!(target.state, TargetState::Queued | TargetState::Sent) {
                let was_holding = target.state.holds_the_job();
                target.state = TargetState::Running;
                if target.online && !was_holding {
                    self.in_flight += 1;
                }
                self.changes.push((endpoint, TargetState::Running));
            }
        }
    }

    /// The device's result is stored with this state (already written: no change to save).
    pub fn settled(&mut self, endpoint: EndpointId, state: TargetState) {
        if let Some(target) = self.targets.get_mut(&endpoint) {
            if target.online && target.state.holds_the_job() {
                self.in_flight -= 1;
            }
            target.state = state;
            self.resend.retain(|id| *id != endpoint);
        }
    }

    /// The order could not be queued on the device's session: it waits its turn again.
    pub fn unsent(&mut self, endpoint: EndpointId) {
        if let Some(target) = self.targets.get_mut(&endpoint) {
            if target.state == TargetState::Sent {
                target.state = TargetState::Queued;
                if target.online {
                    self.in_flight -= 1;
                }
                self.changes.push((endpoint, TargetState::Queued));
            }
        }
    }

    /// An admin cancelled the job: targets not yet started will not run it. The online devices
    /// that were sent it or run it, to be told.
    pub fn cancel(&mut self) -> Vec<EndpointId> {
        self.cancelled = true;
        let holding = self
            .targets
            .iter()
            .filter(|(_, t)| t.online && t.state.holds_the_job())
            .map(|(id, _)| *id)
            .collect();
        self.settle_where(
            |state| matches!(state, TargetState::Queued | TargetState::Sent),
            TargetState::Cancelled,
        );
        holding
    }

    /// Expire what is due, send the job to as many online targets as the concurrency allows, and
    /// say what changed.
    pub fn poll(&mut self, now: SystemTime) -> Poll {
        if now >= self.expires_at {
            self.settle_where(
                |state| matches!(state, TargetState::Queued | TargetState::Sent),
                TargetState::Expired,
            );
        }
        if now >= self.expires_at + self.timeout {
            self.settle_where(|state| state == TargetState::Running, TargetState::Lost);
        }
        let mut send = std::mem::take(&mut self.resend);
        if !self.cancelled && now < self.expires_at {
            self.dispatch(&mut send);
        }
        Poll {
            send,
            changes: std::mem::take(&mut self.changes),
            finished: self.targets.values().all(|t| t.state.settled()),
        }
    }

    /// How many targets are in each state.
    pub fn counts(&self) -> BTreeMap<TargetState, u32> {
        let mut counts = BTreeMap::new();
        for target in self.targets.values() {
            *counts.entry(target.state).or_default() += 1;
        }
        counts
    }

    fn dispatch(&mut self, send: &mut Vec<EndpointId>) {
        if self.in_flight >= self.concurrency {
            return;
        }
        for (id, target) in &mut self.targets {
            if self.in_flight >= self.concurrency {
                break;
            }
            if target.online && target.state == TargetState::Queued {
                target.state = TargetState::Sent;
                self.in_flight += 1;
                self.changes.push((*id, TargetState::Sent));
                send.push(*id);
            }
        }
    }

    fn settle_where(&mut self, pick: impl Fn(TargetState) -> bool, to: TargetState) {
        for (id, target) in &mut self.targets {
            if pick(target.state) {
                if target.online && target.state.holds_the_job() {
                    self.in_flight -= 1;
                }
                target.state = to;
                self.changes.push((*id, to));
                self.resend.retain(|r| r != id);
            }
        }
    }
}

#[cfg(test)]
#[path = "dispatch_tests.rs"]
mod tests;
