//! Rollouts on a virtual clock: time is a value we move, devices are numbers, so a week of a
//! rollout with devices coming and going costs nothing. Every test checks the kept counters
//! against a recount of the rows as it goes.

use std::collections::BTreeMap;

use super::*;

pub(super) const SOAK: Duration = Duration::from_secs(60);

pub(super) fn id(n: u64) -> EndpointId {
    EndpointId(n)
}

pub(super) fn ids(range: std::ops::RangeInclusive<u64>) -> Vec<EndpointId> {
    range.map(id).collect()
}

fn failed(reason: &str) -> Phase {
    Phase::Failed {
        reason: reason.to_owned(),
    }
}

/// A rollout, a virtual clock, and what the caller would have been told.
pub(super) struct Fleet {
    pub(super) now: SystemTime,
    pub(super) rollout: Rollout,
    /// Every device assigned so far, in the order `poll` said.
    pub(super) assigned: Vec<EndpointId>,
}

impl Fleet {
    /// Devices 1..=n in that order, all online.
    pub(super) fn new(waves: &str, max_failures: &str, n: u64) -> Self {
        Self::with_presence(waves, max_failures, (1..=n).map(|i| (id(i), true)))
    }

    pub(super) fn with_presence(
        waves: &str,
        max_failures: &str,
        targets: impl IntoIterator<Item = (EndpointId, bool)>,
    ) -> Self {
        let plan = Plan {
            waves: waves.parse().unwrap(),
            max_failures: max_failures.parse().unwrap(),
            soak: SOAK,
            on_drift: OnDrift::Reapply,
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        Self {
            now,
            rollout: Rollout::new(plan, targets, now),
            assigned: Vec::new(),
        }
    }

    /// Like [`Fleet::new`], its devices only reporting drift (`--on-drift report`).
    pub(super) fn reporting_drift(waves: &str, max_failures: &str, n: u64) -> Self {
        let mut fleet = Self::new(waves, max_failures, n);
        let plan = Plan {
            on_drift: OnDrift::Report,
            ..fleet.rollout.plan().clone()
        };
        fleet.rollout = Rollout::new(plan, (1..=n).map(|i| (id(i), true)), fleet.now);
        fleet
    }

    pub(super) fn wait(&mut self, by: Duration) {
        self.now += by;
    }

    /// Poll, keep what it assigned, and return it.
    pub(super) fn poll(&mut self) -> Poll {
        let poll = self.rollout.poll(self.now);
        self.assigned.extend(&poll.assign);
        self.check_counts();
        poll
    }

    pub(super) fn assigns(&mut self) -> Vec<EndpointId> {
        self.poll().assign
    }

    pub(super) fn report(&mut self, n: u64, phase: Phase) {
        assert!(
            self.rollout.handle_report(id(n), phase, self.now),
            "{n} is assigned"
        );
        self.check_counts();
    }

    pub(super) fn presence(&mut self, n: u64, online: bool) {
        assert!(self.rollout.handle_presence(id(n), online, self.now));
        self.check_counts();
    }

    /// Report each device healthy, wait out the soak, and poll: what that poll assigns.
    pub(super) fn settle(&mut self, devices: &[EndpointId]) -> Vec<EndpointId> {
        for device in devices {
            self.report(device.0, Phase::Healthy);
        }
        self.wait(SOAK);
        self.assigns()
    }

    pub(super) fn state_of(&self, n: u64) -> TargetState {
        self.row(n).state
    }

    pub(super) fn row(&self, n: u64) -> TargetRow<'_> {
        self.rollout.rows().find(|r| r.endpoint == id(n)).unwrap()
    }

    /// The counters agree with a recount of the rows.
    pub(super) fn check_counts(&self) {
        let mut by_state: BTreeMap<&str, u32> = BTreeMap::new();
        let mut offline = 0;
        for row in self.rollout.rows() {
            *by_state.entry(row.state.as_str()).or_default() += 1;
            offline += u32::from(!row.online);
        }
        let counts = self.rollout.counts();
        let kept = TargetState::ALL.map(|s| (s.as_str(), count_of(&counts, s)));
        for (name, kept) in kept {
            assert_eq!(by_state.get(name).copied().unwrap_or(0), kept, "{name}");
        }
        assert_eq!(counts.offline, offline, "offline");
    }
}

pub(super) fn count_of(counts: &Counts, state: TargetState) -> u32 {
    match state {
        TargetState::Waiting => counts.waiting,
        TargetState::Queued => counts.queued,
        TargetState::Pulling => counts.pulling,
        TargetState::Deferred => counts.deferred,
        TargetState::Starting => counts.starting,
        TargetState::Running => counts.running,
        TargetState::Soaking => counts.soaking,
        TargetState::Healthy => counts.healthy,
        TargetState::Failed => counts.failed,
        TargetState::Drifted => counts.drifted,
        TargetState::RolledBack => counts.rolled_back,
        TargetState::Lost => counts.lost,
    }
}

#[test]
fn waves_go_out_in_order_each_once_the_previous_has_soaked() {
    let mut f = Fleet::new("1%,10%,100%", "0", 100);
    assert_eq!(f.assigns(), [id(1)], "the canary");
    assert_eq!(f.rollout.wave(), 1);
    assert_eq!(f.rollout.counts().waiting, 99);

    f.report(
        1,
        Phase::Pulling {
            done: 10,
            total: 100,
        },
    );
    f.report(1, Phase::Starting);
    f.report(1, Phase::Healthy);
    let poll = f.poll();
    assert!(poll.assign.is_empty(), "healthy is not done: it soaks");
    assert_eq!(poll.next, Some(f.now + SOAK), "the caller's timer");
    assert_eq!(f.state_of(1), TargetState::Soaking);
    assert_eq!(f.rollout.holdup(), Some(Holdup::Unsettled(1)));
    f.wait(SOAK - Duration::from_secs(1));
    assert!(f.assigns().is_empty());

    f.wait(Duration::from_secs(1));
    assert_eq!(f.assigns(), ids(2..=10), "10% reached, counting the canary");
    assert_eq!(f.row(1).since, f.now, "healthy since its soak ended");
    assert_eq!(f.settle(&ids(2..=9)), [], "device 10 still holds wave 2");
    assert_eq!(f.settle(&ids(10..=10)), ids(11..=100));
    assert_eq!(f.rollout.wave(), 3);

    f.settle(&ids(11..=99));
    assert_eq!(f.rollout.state(), &RolloutState::Running, "device 100 left");
    f.report(100, Phase::Healthy);
    f.wait(SOAK);
    assert_eq!(f.poll().state, Some(RolloutState::Completed));
    assert_eq!(f.rollout.counts().healthy, 100);
    assert_eq!(
        f.assigned,
        ids(1..=100),
        "each device assigned once, in order"
    );
}

#[test]
fn drift_the_policy_leaves_alone_is_a_failure_that_pauses_the_wave() {
    let drifted = || Phase::Drifted {
        reason: "web: Exited".to_owned(),
    };
    // Re-applied, drift is a passing phase: the device is repairing itself, the wave waits.
    let mut f = Fleet::new("1,100%", "0", 3);
    assert_eq!(f.assigns(), [id(1)]);
    f.report(1, drifted());
    assert_eq!(f.poll().state, None);
    assert_eq!(f.rollout.holdup(), Some(Holdup::Unsettled(1)));

    // Only reported, nothing will repair it: it settles as a failure and the rollout pauses.
    let mut f = Fleet::reporting_drift("1,100%", "0", 3);
    assert_eq!(f.assigns(), [id(1)]);
    f.report(1, drifted());
    let Some(RolloutState::Paused(reason)) = f.poll().state else {
        panic!("expected a pause")
    };
    assert_eq!(
        reason.to_string(),
        "wave 1: 1 of 1 devices failed (max 0): endpoint 1: web: Exited"
    );
    assert_eq!(f.state_of(1), TargetState::Drifted, "shown as what it is");

    // Someone repairs it by hand and resumes: the rollout goes on.
    f.report(1, Phase::Healthy);
    f.rollout.resume(f.now).unwrap();
    f.wait(SOAK);
    assert_eq!(f.assigns(), ids(2..=3));
}

#[test]
fn a_first_deploy_pauses_when_its_canary_fails_and_says_why() {
    let mut f = Fleet::new("1,100%", "0", 5);
    assert_eq!(f.assigns(), [id(1)]);
    f.report(1, failed("pull access denied for registry.example/pos"));
    let poll = f.poll();
    assert!(poll.assign.is_empty());
    let Some(RolloutState::Paused(reason)) = poll.state else {
        panic!("expected a pause, got {:?}", poll.state)
    };
    assert_eq!(
        reason.to_string(),
        "wave 1: 1 of 1 devices failed (max 0): endpoint 1: \
         pull access denied for registry.example/pos"
    );
    assert_eq!(f.rollout.holdup(), None, "paused, not held up");

    f.wait(Duration::from_secs(7 * 24 * 3600));
    let poll = f.poll();
    assert_eq!((poll.assign, poll.state), (vec![], None), "nothing more");
    assert_eq!(f.rollout.counts().waiting, 4);
    assert_eq!(
        f.row(1).reason,
        Some("pull access denied for registry.example/pos")
    );
}

#[test]
fn a_device_that_rolled_back_counts_as_a_failure_and_says_why() {
    let mut f = Fleet::new("1,100%", "0", 5);
    assert_eq!(f.assigns(), [id(1)]);
    f.report(1, Phase::Starting);
    f.report(
        1,
        Phase::RolledBack {
            reason: "start container pos-web-1: port is already allocated".to_owned(),
        },
    );
    let poll = f.poll();
    assert!(poll.assign.is_empty());
    assert!(
        matches!(poll.state, Some(RolloutState::Paused(_))),
        "{:?}",
        poll.state
    );
    let counts = f.rollout.counts();
    assert_eq!((counts.rolled_back, counts.failed), (1, 0));
    assert_eq!(f.row(1).state, TargetState::RolledBack);
    assert_eq!(
        f.row(1).reason,
        Some("start container pos-web-1: port is already allocated")
    );
}

#[test]
fn resume_accepts_the_failures_so_far_and_a_new_failure_pauses_again() {
    let mut f = Fleet::new("1,100%", "0", 5);
    f.poll();
    f.report(1, failed("disk full"));
    f.poll();

    f.rollout.resume(f.now).unwrap();
    let poll = f.poll();
    assert_eq!(
        poll.assign,
        ids(2..=5),
        "the failed canary settled its wave"
    );
    assert_eq!(poll.state, Some(RolloutState::Running));

    f.wait(Duration::from_secs(5));
    f.report(4, failed("port 80 in use"));
    f.report(1, failed("disk still full"));
    let Some(RolloutState::Paused(reason)) = f.poll().state else {
        panic!("a new failure passes max 0")
    };
    assert_eq!(
        reason.to_string(),
        "wave 2: 1 of 5 devices failed (max 0): endpoint 4: port 80 in use",
        "device 1's failure was accepted and stays so"
    );
}

#[test]
fn a_failure_rate_within_the_threshold_does_not_pause() {
    let mut f = Fleet::new("10,100%", "10%", 20);
    assert_eq!(f.assigns().len(), 10);
    f.report(3, failed("exit 1"));
    assert_eq!(f.poll().state, None, "1 of 10 is 10%: reached, not passed");
    f.report(7, failed("exit 1"));
    let Some(RolloutState::Paused(PauseReason::Failures {
        failed,
        assigned,
        endpoint,
        ..
    })) = f.poll().state
    else {
        panic!("2 of 10 passes 10%")
    };
    assert_eq!(
        (failed, assigned, endpoint),
        (2, 10, id(3)),
        "names the first"
    );
}

#[test]
fn abort_stops_everything_for_good() {
    let mut f = Fleet::new("1,100%", "0", 3);
    f.poll();
    f.rollout.abort().unwrap();
    f.report(1, Phase::Healthy);
    f.wait(SOAK);
    let poll = f.poll();
    assert_eq!(poll.assign, [], "the canary settled; nothing follows");
    assert_eq!(poll.state, Some(RolloutState::Aborted));
    assert!(f.rollout.add_target(id(9), true, f.now));
    f.wait(SOAK);
    assert_eq!(
        f.poll(),
        Poll {
            assign: vec![],
            state: None,
            next: None
        }
    );
    assert_eq!(f.rollout.pause("x"), Err(ControlError::Aborted));
    assert_eq!(f.rollout.resume(f.now), Err(ControlError::Aborted));
    assert_eq!(f.rollout.abort(), Err(ControlError::Aborted));
    assert_eq!(
        f.state_of(1),
        TargetState::Healthy,
        "rows keep following reports"
    );
}

#[test]
fn admin_commands_refuse_what_makes_no_sense() {
    let mut f = Fleet::new("100%", "0", 1);
    assert_eq!(f.rollout.resume(f.now), Err(ControlError::NotPaused));
    f.rollout.pause("maintenance window").unwrap();
    assert_eq!(f.assigns(), [], "paused before the first wave");
    let Err(ControlError::AlreadyPaused(reason)) = f.rollout.pause("again") else {
        panic!("paused twice")
    };
    assert_eq!(reason.to_string(), "paused by an admin: maintenance window");
    f.rollout.resume(f.now).unwrap();
    assert_eq!(f.assigns(), [id(1)]);
    f.settle(&ids(1..=1));
    assert_eq!(f.rollout.state(), &RolloutState::Completed);
    assert_eq!(f.rollout.pause(""), Err(ControlError::Completed));
    assert_eq!(f.rollout.abort(), Ok(()), "abort stops late joiners");
}

#[test]
fn the_soak_starts_over_after_anything_but_healthy() {
    let mut f = Fleet::new("1,100%", "0", 2);
    f.poll();
    let start = f.now;
    f.report(1, Phase::Healthy);
    f.wait(Duration::from_secs(50));
    f.report(1, Phase::Running);
    f.wait(Duration::from_secs(10));
    f.report(1, Phase::Healthy);
    assert_eq!(f.poll().next, Some(start + Duration::from_secs(120)));
    f.wait(Duration::from_secs(30));
    f.report(1, Phase::Healthy);
    assert_eq!(
        f.poll().next,
        Some(start + Duration::from_secs(120)),
        "still the same soak"
    );
    f.wait(Duration::from_secs(29));
    assert_eq!(f.assigns(), [], "59 s healthy is not 60");
    f.wait(Duration::from_secs(1));
    assert_eq!(f.assigns(), [id(2)]);

    f.report(2, Phase::Healthy);
    f.wait(SOAK);
    f.report(
        1,
        Phase::Drifted {
            reason: "container pos exited (137)".to_owned(),
        },
    );
    let poll = f.poll();
    assert_eq!(
        poll.state, None,
        "a settled device that drifts holds completion back"
    );
    assert_eq!(f.state_of(1), TargetState::Drifted);
    assert_eq!(f.state_of(2), TargetState::Healthy);
    assert_eq!(f.settle(&ids(1..=1)), []);
    assert_eq!(f.rollout.state(), &RolloutState::Completed);
}

#[test]
fn a_slow_pull_is_never_a_failure() {
    let mut f = Fleet::new("1,100%", "0", 2);
    f.poll();
    for hour in 1..=72 {
        f.wait(Duration::from_secs(3600));
        f.report(
            1,
            Phase::Pulling {
                done: hour,
                total: 1_000,
            },
        );
        let poll = f.poll();
        assert_eq!((poll.state, poll.next), (None, None), "no pause, no timer");
    }
    assert_eq!(
        f.row(1).phase,
        &Phase::Pulling {
            done: 72,
            total: 1_000
        }
    );
    assert_eq!(
        f.row(1).since + Duration::from_secs(71 * 3600),
        f.now,
        "pulling since"
    );
    assert_eq!(f.rollout.holdup(), Some(Holdup::Unsettled(1)));
}
