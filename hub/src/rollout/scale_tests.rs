//! A 10,000-device rollout from first poll to completion: the counts come out exact, and the
//! whole run — some 40,000 reports and a poll after each — stays far inside a bound that any
//! per-report rescan of the targets would blow through (10,000 × 40,000 steps).

use std::time::{Duration, SystemTime};

use super::tests::count_of;
use super::*;

const DEVICES: u64 = 10_000;
const SOAK: Duration = Duration::from_secs(60);

/// Devices that report failure: ten, one per thousand, none in the canary.
fn fails(n: u64) -> bool {
    n % 1_000 == 499
}

/// Devices offline throughout: forty, none in the canary.
fn away(n: u64) -> bool {
    n % 250 == 0
}

#[test]
fn ten_thousand_devices_roll_out_with_exact_counts_and_cheap_polls() {
    let start = tokio::time::Instant::now();
    let mut now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let plan = Plan {
        max_failures: "1%".parse().unwrap(),
        soak: SOAK,
        ..Plan::default()
    };
    let targets = (1..=DEVICES).map(|n| (EndpointId(n), !away(n)));
    let mut rollout = Rollout::new(plan, targets, now);
    let mut waves = Vec::new();
    let mut reports = 0;
    let mut poll = rollout.poll(now);
    while !poll.assign.is_empty() {
        waves.push(poll.assign.len());
        for &endpoint in &poll.assign {
            for phase in phases_of(endpoint.0) {
                reports += 1;
                rollout.handle_report(endpoint, phase, now);
                assert_eq!(rollout.poll(now).assign, [], "a wave waits for its soak");
            }
        }
        now += SOAK;
        poll = rollout.poll(now);
    }
    let elapsed = start.elapsed();

    assert_eq!(waves, [100, 900, 9_000]);
    assert_eq!(rollout.state(), &RolloutState::Completed);
    let counts = rollout.counts();
    assert_eq!(
        (counts.healthy, counts.failed, counts.queued, counts.offline),
        (9_950, 10, 40, 40)
    );
    assert_eq!(counts.total(), 10_000);
    for state in TargetState::ALL {
        let recount = rollout.rows().filter(|r| r.state == state).count() as u32;
        assert_eq!(count_of(&counts, state), recount, "{state}");
    }
    assert!(reports > 39_000, "{reports} reports");
    assert!(
        elapsed < Duration::from_secs(10),
        "{reports} reports with a poll each took {elapsed:?}"
    );
}

/// What a device reports, in order: nothing if it is away, else a pull, a start and an end.
fn phases_of(n: u64) -> Vec<Phase> {
    if away(n) {
        return Vec::new();
    }
    let end = if fails(n) {
        Phase::Failed {
            reason: "no space left on device".to_owned(),
        }
    } else {
        Phase::Healthy
    };
    vec![
        Phase::Pulling { done: 0, total: 80 },
        Phase::Pulling {
            done: 80,
            total: 80,
        },
        Phase::Starting,
        end,
    ]
}
