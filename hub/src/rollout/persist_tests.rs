//! A rollout written out row by row and rebuilt, as a hub restart does: it carries on exactly
//! where it was, and rows that do not fit together are refused.

use std::collections::BTreeMap;

use super::tests::{id, ids, Fleet, SOAK};
use super::*;

/// What the store would hold after every save so far.
#[derive(Default)]
struct Store {
    rollout: Option<RolloutRecord>,
    targets: BTreeMap<u32, TargetRecord>,
}

impl Store {
    /// Take a save, through JSON as a store column would.
    fn write(&mut self, save: Save) {
        if let Some(record) = save.rollout {
            let json = serde_json::to_string(&record).unwrap();
            self.rollout = Some(serde_json::from_str(&json).unwrap());
        }
        for target in save.targets {
            let json = serde_json::to_string(&target).unwrap();
            self.targets
                .insert(target.position, serde_json::from_str(&json).unwrap());
        }
    }

    fn restore(
        &self,
        online: impl Fn(EndpointId) -> bool,
        now: SystemTime,
    ) -> Result<Rollout, RestoreError> {
        let rows = self.targets.values().rev().cloned();
        Rollout::restore(self.rollout.clone().unwrap(), rows, online, now)
    }
}

#[test]
fn a_save_hands_over_only_what_changed() {
    let mut f = Fleet::new("1,100%", "0", 3);
    let first = f.rollout.poll_save();
    assert!(first.rollout.is_some());
    assert_eq!(first.targets.len(), 3, "everything, the first time");
    f.poll();
    let wave = f.rollout.poll_save();
    assert_eq!(wave.rollout.map(|r| r.wave), Some(1));
    assert_eq!(wave.targets.len(), 1, "the canary");
    f.report(1, Phase::Pulling { done: 1, total: 2 });
    let report = f.rollout.poll_save();
    assert_eq!(report.rollout, None);
    assert_eq!(report.targets.len(), 1);
    assert_eq!(
        report.targets[0].phase,
        Phase::Pulling { done: 1, total: 2 }
    );
    assert_eq!(f.rollout.poll_save(), Save::default());
}

/// Ten devices in waves 1, 5, 100%, mid-way through wave 2: one soaking, one failed (allowed),
/// one silent after starting, one pulling offline, a joiner; all saved as they went.
fn mid_rollout() -> (Fleet, Store) {
    let mut f = Fleet::new("1,5,100%", "1", 10);
    let mut store = Store::default();
    f.poll();
    assert_eq!(f.settle(&ids(1..=1)), ids(2..=5));
    f.report(2, Phase::Healthy);
    f.report(
        3,
        Phase::Failed {
            reason: "exit 1".to_owned(),
        },
    );
    f.report(4, Phase::Starting);
    f.presence(4, false);
    f.report(5, Phase::Pulling { done: 5, total: 50 });
    f.presence(5, false);
    assert!(f.rollout.add_target(id(11), true, f.now));
    assert_eq!(f.assigns(), [id(11)]);
    f.wait(Duration::from_secs(20));
    store.write(f.rollout.poll_save());
    (f, store)
}

#[test]
fn a_restored_rollout_carries_on_as_the_original_would() {
    let (mut f, store) = mid_rollout();
    let online = |e: EndpointId| ![id(4), id(5)].contains(&e);
    let mut restored = store.restore(online, f.now).unwrap();
    assert_eq!(restored.counts(), f.rollout.counts());
    assert_eq!(restored.record(), f.rollout.record());
    assert!(restored.rows().eq(f.rollout.rows()), "every row as it was");
    assert_eq!(restored.holdup(), f.rollout.holdup());

    // Both go on identically: 2's and 11's soaks end, then device 4 is lost.
    f.report(11, Phase::Healthy);
    restored.handle_report(id(11), Phase::Healthy, f.now);
    for step in [SOAK, LOST_AFTER] {
        f.wait(step);
        assert_eq!(restored.poll(f.now), f.poll());
        assert!(restored.rows().eq(f.rollout.rows()));
    }
    assert!(
        matches!(restored.state(), RolloutState::Paused(_)),
        "3 and 4 failed, max 1"
    );
}

#[test]
fn presence_is_not_trusted_across_a_restart() {
    let (f, store) = mid_rollout();
    let later = f.now + Duration::from_secs(90);
    let restored = store.restore(|e| e == id(2), later).unwrap();
    let row = |n| restored.rows().find(|r| r.endpoint == id(n)).unwrap();
    assert!(row(2).online);
    assert!(!row(11).online, "saved online, absent after the restart");
    assert_eq!(restored.counts().offline, 10);
    // Device 4 went offline (after starting) 20 s before the save: it keeps that time, not the
    // restart's, and device 2's soak ended during the restart.
    let mut restored = restored;
    let poll = restored.poll(later);
    assert_eq!(
        poll.next,
        Some(f.now - Duration::from_secs(20) + LOST_AFTER)
    );
    assert_eq!(row_state(&restored, 2), TargetState::Healthy);
}

fn row_state(rollout: &Rollout, n: u64) -> TargetState {
    rollout.rows().find(|r| r.endpoint == id(n)).unwrap().state
}

#[test]
fn rows_that_do_not_fit_together_are_refused() {
    let (f, store) = mid_rollout();
    let record = store.rollout.clone().unwrap();
    let rows: Vec<TargetRecord> = store.targets.values().cloned().collect();
    let restore = |record: RolloutRecord, rows: Vec<TargetRecord>| {
        Rollout::restore(record, rows, |_| true, f.now)
    };

    let mut twice = rows.clone();
    twice[3].endpoint = id(1);
    assert_eq!(
        restore(record.clone(), twice).unwrap_err(),
        RestoreError::DuplicateTarget(id(1))
    );
    let mut gap = rows.clone();
    gap.remove(4);
    assert_eq!(
        restore(record.clone(), gap).unwrap_err(),
        RestoreError::Positions(4)
    );
    let mut ahead = rows.clone();
    ahead[7].wave = Some(3);
    assert_eq!(
        restore(record.clone(), ahead).unwrap_err(),
        RestoreError::WaveAhead {
            endpoint: id(8),
            wave: 3,
            started: 2
        }
    );
    let past = RolloutRecord { wave: 4, ..record };
    assert!(matches!(
        restore(past, rows),
        Err(RestoreError::PastPlan {
            wave: 4,
            waves: 3,
            ..
        })
    ));
}
