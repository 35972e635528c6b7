//! Which desired state an agent is sent, and when: the hub's half of stack delivery, without I/O.
//!
//! Every check-in of a version-3 agent names the state it has applied in full. The session
//! compares it with the state the device should run, which it knows only as a digest (the specs
//! themselves stay in the store, shared: a session holds 27 bytes for this, not the stacks):
//!
//! - The first such check-in, or an assignment change ([`Delivery::handle_changed`]), leaves the
//!   desired digest unknown: the driver reads the state from the store and hands its digest back
//!   ([`Delivery::handle_desired`]), which says whether to send it.
//! - A state is sent when the agent has applied another, at most once per session: the agent's
//!   worker carries on with it across outages and reports how it went, and a failed state is not
//!   pushed again until a new session (the next connection retries it) or a new assignment.
//! - An agent whose check-ins never name a state (version 2, or the load tool) is never sent one,
//!   nor is a device waiting for approval.
//!
//! Reports cost a store write each, so a session may send [`REPORT_BURST`] back to back and one
//! per [`REPORT_PERIOD`] after ([`ReportGate`]). The agent's worker coalesces its status and sends
//! pull progress once a second, so a real agent stays far below; a session past the rate, or a
//! report on more stacks than a device may run, is closed as a protocol violation. Nothing is
//! lost by that: an agent sends its latest report again as its next session starts.

use std::time::Duration;

use outpost_protocol::stack::{StackReport, StateDigest, MAX_STACKS_PER_DEVICE};
use thiserror::Error;
use tokio::time::Instant;

use super::snapshots::TokenBucket;

/// Reports a session may send back to back: an apply of six stacks whose images are local
/// changes phase ~20 times within a second.
pub const REPORT_BURST: u32 = 32;
/// One more report per this long.
pub const REPORT_PERIOD: Duration = Duration::from_millis(500);

/// Why a stack report ends the session.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum ReportRefused {
    /// More reports than [`REPORT_BURST`] plus one per [`REPORT_PERIOD`].
    #[error("stack reports faster than {REPORT_BURST} at once and one per {REPORT_PERIOD:?}")]
    OverRate,
    /// More stacks than a device runs.
    #[error("a stack report on {0} stacks; a device runs at most {MAX_STACKS_PER_DEVICE}")]
    TooManyStacks(usize),
}

/// The allowance of stack reports of one session.
#[derive(Clone, Copy, Debug)]
pub struct ReportGate(TokenBucket);

impl ReportGate {
    /// A full allowance at `now`.
    pub fn new(now: Instant) -> Self {
        Self(TokenBucket::new(
            REPORT_BURST,
            REPORT_PERIOD,
            REPORT_BURST,
            now,
        ))
    }

    /// Whether `report`, arriving at `now`, may be kept.
    pub fn admit(&mut self, now: Instant, report: &StackReport) -> Result<(), ReportRefused> {
        if report.stacks.len() > MAX_STACKS_PER_DEVICE {
            return Err(ReportRefused::TooManyStacks(report.stacks.len()));
        }
        if self.0.take(now) {
            Ok(())
        } else {
            Err(ReportRefused::OverRate)
        }
    }
}

/// What the driver must do for delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deliver {
    /// Nothing.
    Nothing,
    /// Read the device's desired state from the store and pass its digest to
    /// [`Delivery::handle_desired`].
    ReadDesired,
}

/// One session's delivery state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// The digest of what the device should run, once read on this session.
    desired: Option<StateDigest>,
    /// What the agent's last check-in said it runs; `None` until it names one.
    applied: Option<StateDigest>,
    /// The state last sent on this session.
    sent: Option<StateDigest>,
}

impl Delivery {
    /// A check-in named `applied`; `approved` is false while the device waits for approval.
    pub fn handle_applied(&mut self, applied: StateDigest, approved: bool) -> Deliver {
        self.applied = Some(applied);
        if !approved {
            return Deliver::Nothing;
        }
        match self.desired {
            None => Deliver::ReadDesired,
            Some(desired) if self.wants(desired) => Deliver::ReadDesired,
            Some(_) => Deliver::Nothing,
        }
    }

    /// What the device should run changed (a deployment); `approved` as above.
    pub fn handle_changed(&mut self, approved: bool) -> Deliver {
        self.desired = None;
        if approved && self.applied.is_some() {
            Deliver::ReadDesired
        } else {
            Deliver::Nothing
        }
    }

    /// The driver read the desired state: whether to send it now (it is then counted as sent).
    pub fn handle_desired(&mut self, desired: StateDigest) -> bool {
        self.desired = Some(desired);
        let send = self.wants(desired);
        if send {
            self.sent = Some(desired);
        }
        send
    }

    /// The state is not what the agent runs and was not sent on this session.
    fn wants(&self, desired: StateDigest) -> bool {
        self.applied.is_some_and(|a| a != desired) && self.sent != Some(desired)
    }
}

#[cfg(test)]
mod tests {
    use outpost_protocol::stack::{Phase, StackStatus};

    use super::*;

    #[test]
    fn reports_are_held_to_a_burst_and_a_rate() {
        let start = Instant::now();
        let mut gate = ReportGate::new(start);
        let report = StackReport {
            state: V1,
            stacks: vec![],
        };
        for _ in 0..REPORT_BURST {
            assert_eq!(gate.admit(start, &report), Ok(()));
        }
        assert_eq!(gate.admit(start, &report), Err(ReportRefused::OverRate));
        assert_eq!(gate.admit(start + REPORT_PERIOD, &report), Ok(()));
        assert_eq!(
            gate.admit(start + REPORT_PERIOD, &report),
            Err(ReportRefused::OverRate)
        );
        let status = StackStatus {
            project: "p".to_owned(),
            version: 1,
            phase: Phase::Healthy,
        };
        let wide = StackReport {
            state: V1,
            stacks: vec![status; MAX_STACKS_PER_DEVICE + 1],
        };
        let later = start + REPORT_PERIOD * 100;
        assert_eq!(
            gate.admit(later, &wide),
            Err(ReportRefused::TooManyStacks(MAX_STACKS_PER_DEVICE + 1))
        );
    }

    const EMPTY: StateDigest = StateDigest([0; 8]);
    const V1: StateDigest = StateDigest([1; 8]);
    const V2: StateDigest = StateDigest([2; 8]);

    #[test]
    fn a_device_running_another_state_is_sent_the_desired_one_once() {
        let mut delivery = Delivery::default();
        assert_eq!(delivery.handle_applied(EMPTY, true), Deliver::ReadDesired);
        assert!(delivery.handle_desired(V1), "runs nothing, should run v1");
        // The next check-ins still name the old state while the worker pulls: no second send.
        assert_eq!(delivery.handle_applied(EMPTY, true), Deliver::Nothing);
        assert_eq!(delivery.handle_applied(EMPTY, true), Deliver::Nothing);
        // Applied: nothing to do.
        assert_eq!(delivery.handle_applied(V1, true), Deliver::Nothing);
    }

    #[test]
    fn a_device_already_running_the_desired_state_is_sent_nothing() {
        let mut delivery = Delivery::default();
        assert_eq!(delivery.handle_applied(V1, true), Deliver::ReadDesired);
        assert!(!delivery.handle_desired(V1));
        assert_eq!(
            delivery.handle_applied(V1, true),
            Deliver::Nothing,
            "known now: no read"
        );
    }

    #[test]
    fn a_new_assignment_is_read_and_sent_at_once() {
        let mut delivery = Delivery::default();
        delivery.handle_applied(V1, true);
        assert!(!delivery.handle_desired(V1));
        assert_eq!(delivery.handle_changed(true), Deliver::ReadDesired);
        assert!(delivery.handle_desired(V2));
        assert_eq!(delivery.handle_applied(V1, true), Deliver::Nothing);
        // Rolled back to v1 by an admin while v2 was still going: v1 is what it runs, nothing sent.
        assert_eq!(delivery.handle_changed(true), Deliver::ReadDesired);
        assert!(!delivery.handle_desired(V1));
    }

    #[test]
    fn agents_that_never_name_a_state_and_pending_devices_are_sent_nothing() {
        let mut delivery = Delivery::default();
        assert_eq!(
            delivery.handle_changed(true),
            Deliver::Nothing,
            "no version-3 check-in yet"
        );
        assert!(!delivery.handle_desired(V1));
        let mut pending = Delivery::default();
        assert_eq!(pending.handle_applied(EMPTY, false), Deliver::Nothing);
        assert_eq!(pending.handle_changed(false), Deliver::Nothing);
        // Approved later: the next check-in reads and sends.
        assert_eq!(pending.handle_applied(EMPTY, true), Deliver::ReadDesired);
        assert!(pending.handle_desired(V1));
    }
}
