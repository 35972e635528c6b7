//! Devices that come and go: offline ones that have not started do not hold a wave, silent ones
//! that had started do until they count as lost, late joiners follow the canary, all on the same
//! virtual clock as [`super::tests`].

use super::tests::{id, ids, Fleet, SOAK};
use super::*;

#[test]
fn offline_devices_that_have_not_started_do_not_hold_a_wave_but_are_counted() {
    let presence = (1..=10).map(|i| (id(i), i != 2));
    let mut f = Fleet::with_presence("2,100%", "0", presence);
    assert_eq!(f.assigns(), ids(1..=2));
    assert_eq!(
        f.rollout.holdup(),
        Some(Holdup::Unsettled(1)),
        "only device 1"
    );
    assert_eq!(f.settle(&ids(1..=1)), ids(3..=10));
    let counts = f.rollout.counts();
    assert_eq!((counts.queued, counts.offline, counts.healthy), (9, 1, 1));

    // It pulls a little, drops off again: still not holding anything.
    f.presence(2, true);
    f.report(2, Phase::Pulling { done: 1, total: 9 });
    f.presence(2, false);
    f.settle(&ids(3..=10));
    assert_eq!(f.rollout.state(), &RolloutState::Completed);
    assert_eq!(f.state_of(2), TargetState::Pulling);

    // Days later it returns and converges; its row follows it.
    f.wait(Duration::from_secs(3 * 24 * 3600));
    f.settle(&ids(2..=2));
    assert_eq!(f.rollout.counts().healthy, 10);
    assert_eq!(f.rollout.counts().offline, 0, "a report says it is online");
}

#[test]
fn a_wave_whose_every_device_is_offline_waits_for_one_to_answer() {
    let presence = [(id(1), false), (id(2), true)];
    let mut f = Fleet::with_presence("1,100%", "0", presence);
    assert_eq!(f.assigns(), [id(1)]);
    f.wait(Duration::from_secs(24 * 3600));
    assert_eq!(f.assigns(), [], "an untried canary is no pass");
    assert_eq!(f.rollout.holdup(), Some(Holdup::SilentWave));
    f.presence(1, true);
    assert_eq!(f.settle(&ids(1..=1)), [id(2)]);
}

#[test]
fn a_device_silent_after_starting_holds_its_wave_then_counts_as_lost() {
    let mut f = Fleet::new("1,100%", "0", 3);
    f.poll();
    f.report(1, Phase::Starting);
    f.presence(1, false);
    let went = f.now;
    assert_eq!(f.poll().next, Some(went + LOST_AFTER));
    assert_eq!(
        f.rollout.holdup(),
        Some(Holdup::Unsettled(1)),
        "it may be cut off"
    );
    f.wait(LOST_AFTER - Duration::from_secs(1));
    assert_eq!(f.assigns(), []);

    f.wait(Duration::from_secs(5));
    let Some(RolloutState::Paused(reason)) = f.poll().state else {
        panic!("lost counts as failed")
    };
    assert_eq!(
        reason.to_string(),
        "wave 1: 1 of 1 devices failed (max 0): endpoint 1: \
         offline for 30m after starting the new version"
    );
    assert_eq!(f.state_of(1), TargetState::Lost);
    assert_eq!(f.row(1).since, went + LOST_AFTER, "as of its deadline");

    f.presence(1, true);
    assert_eq!(f.state_of(1), TargetState::Starting, "back: no longer lost");
    assert_eq!(f.rollout.counts().lost, 0);
    assert!(
        matches!(f.rollout.state(), RolloutState::Paused(_)),
        "until resumed"
    );
}

#[test]
fn a_soak_that_ends_while_offline_settles_when_the_device_returns() {
    let mut f = Fleet::new("1,100%", "0", 2);
    f.poll();
    f.report(1, Phase::Healthy);
    f.wait(Duration::from_secs(10));
    f.presence(1, false);
    f.wait(SOAK);
    assert_eq!(f.assigns(), [], "not heard from since the soak ended");
    assert_eq!(f.state_of(1), TargetState::Soaking);
    f.wait(Duration::from_secs(600));
    f.presence(1, true);
    assert_eq!(f.state_of(1), TargetState::Healthy);
    assert_eq!(f.assigns(), [id(2)]);
}

#[test]
fn a_late_joiner_waits_for_the_canary_then_is_assigned_at_once() {
    let mut f = Fleet::new("1%,10%,100%", "0", 50);
    assert_eq!(f.assigns(), [id(1)]);
    assert!(f.rollout.add_target(id(51), true, f.now));
    assert!(!f.rollout.add_target(id(51), true, f.now), "once");
    assert_eq!(f.assigns(), [], "the canary has not settled");
    assert_eq!(f.state_of(51), TargetState::Waiting);

    let mut wave2 = ids(2..=6);
    wave2.push(id(51));
    assert_eq!(
        f.settle(&ids(1..=1)),
        wave2,
        "10% of 51 is 6, then the joiner"
    );

    f.rollout.pause("hold on").unwrap();
    assert!(f.rollout.add_target(id(52), false, f.now));
    assert_eq!(f.assigns(), [], "not while paused");
    f.rollout.resume(f.now).unwrap();
    assert_eq!(
        f.assigns(),
        [id(52)],
        "offline, yet assigned: it converges on return"
    );

    assert_eq!(
        f.settle(&wave2),
        ids(7..=50),
        "52 is offline and has not started"
    );
    f.settle(&ids(7..=50));
    assert_eq!(f.rollout.state(), &RolloutState::Completed);
    assert!(f.rollout.add_target(id(53), true, f.now));
    assert_eq!(f.assigns(), [id(53)], "after completion too");
    assert_eq!(f.row(53).wave, Some(3));
}

#[test]
fn one_percent_of_three_devices_is_one_device() {
    let mut f = Fleet::new("1%,10%,100%", "0", 3);
    assert_eq!(f.assigns(), [id(1)]);
    assert_eq!(
        f.settle(&ids(1..=1)),
        ids(2..=3),
        "10% of 3 adds nobody: skipped"
    );
    assert_eq!(f.rollout.wave(), 3);
}

#[test]
fn targets_are_deduplicated_and_strangers_ignored() {
    let targets = [id(5), id(3), id(5), id(4)].map(|d| (d, true));
    let mut f = Fleet::with_presence("100%", "0", targets);
    assert_eq!(f.rollout.counts().total(), 3);
    assert!(
        !f.rollout.handle_report(id(3), Phase::Healthy, f.now),
        "not assigned yet"
    );
    assert!(!f.rollout.handle_report(id(9), Phase::Healthy, f.now));
    assert!(!f.rollout.handle_presence(id(9), true, f.now));
    assert_eq!(f.assigns(), [id(5), id(3), id(4)], "in the caller's order");
}

#[test]
fn an_empty_target_completes_and_later_devices_still_receive_the_stack() {
    let mut f = Fleet::new("1%,10%,100%", "0", 0);
    assert_eq!(f.poll().state, Some(RolloutState::Completed));
    f.rollout.add_target(id(1), true, f.now);
    assert_eq!(f.assigns(), [id(1)]);
}
