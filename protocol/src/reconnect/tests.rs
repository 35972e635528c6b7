//! Each rule of the policy, with a seeded generator: the same draws on every run.

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;

const BASE: Duration = Duration::from_secs(1);
const CAP: Duration = Duration::from_secs(60);
const STABLE: Duration = Duration::from_secs(120);
const BRIEF: Duration = Duration::from_secs(3);

fn policy() -> Reconnect {
    Reconnect::new(Backoff::new(BASE, CAP), STABLE)
}

fn lost() -> Outcome<&'static str> {
    Outcome::Lost
}

fn delay(next: Next<&str>) -> Duration {
    match next {
        Next::Retry(delay) => delay,
        Next::Stop(reason) => panic!("stopped: {reason}"),
    }
}

#[test]
fn failures_back_off_with_a_ceiling_that_doubles_up_to_the_cap() {
    let mut reconnect = policy();
    let mut rng = StdRng::seed_from_u64(1);
    for attempt in 0..10u32 {
        let ceiling = BASE.saturating_mul(1 << attempt).min(CAP);
        assert_eq!(reconnect.backoff.ceiling(), ceiling);
        let delay = delay(reconnect.after(lost(), BRIEF, &mut rng));
        assert!(
            delay <= ceiling,
            "attempt {attempt}: {delay:?} > {ceiling:?}"
        );
    }
    assert_eq!(reconnect.attempts(), 10);
    assert_eq!(reconnect.backoff.ceiling(), CAP);
}

#[test]
fn a_stable_session_resets_the_backoff_and_a_brief_one_does_not() {
    let mut reconnect = policy();
    let mut rng = StdRng::seed_from_u64(2);
    for _ in 0..6 {
        reconnect.after(lost(), Duration::ZERO, &mut rng);
    }
    reconnect.after(lost(), STABLE - Duration::from_millis(1), &mut rng);
    assert_eq!(
        reconnect.attempts(),
        7,
        "just short of stable is not stable"
    );
    let after_stable = delay(reconnect.after(lost(), STABLE, &mut rng));
    assert!(after_stable <= BASE, "{after_stable:?}");
    assert_eq!(reconnect.attempts(), 1, "counted from the base again");
}

#[test]
fn a_stopping_hub_spreads_the_redial_over_its_window_and_the_backoff_stays() {
    let mut reconnect = policy();
    let mut rng = StdRng::seed_from_u64(3);
    for _ in 0..4 {
        reconnect.after(lost(), BRIEF, &mut rng);
    }
    let spread = Duration::from_secs(42);
    let delays: Vec<Duration> = (0..3_000)
        .map(|_| {
            let stopping = Outcome::HubStopping { spread };
            delay(reconnect.after(stopping, BRIEF, &mut rng))
        })
        .collect();
    assert_eq!(reconnect.attempts(), 4, "a restart is no failure");
    assert!(delays.iter().all(|d| *d <= spread));
    // Uniform over [0, 42 s]: each third of the window gets about a third of the fleet.
    for third in 0..3u32 {
        let (lo, hi) = (spread * third / 3, spread * (third + 1) / 3);
        let share = delays.iter().filter(|d| **d >= lo && **d < hi).count();
        assert!((900..1_100).contains(&share), "third {third}: {share}");
    }
}

#[test]
fn a_stopping_hub_after_a_stable_session_also_resets_the_backoff() {
    let mut reconnect = policy();
    let mut rng = StdRng::seed_from_u64(4);
    for _ in 0..5 {
        reconnect.after(lost(), BRIEF, &mut rng);
    }
    let stopping = Outcome::<&str>::HubStopping {
        spread: Duration::from_secs(10),
    };
    reconnect.after(stopping, STABLE * 10, &mut rng);
    assert_eq!(reconnect.attempts(), 0);
}

#[test]
fn a_final_failure_stops_with_its_reason_whatever_came_before() {
    let mut reconnect = policy();
    let mut rng = StdRng::seed_from_u64(5);
    reconnect.after(lost(), BRIEF, &mut rng);
    for lasted in [Duration::ZERO, STABLE] {
        let next = reconnect.after(Outcome::Final("revoked"), lasted, &mut rng);
        assert_eq!(next, Next::Stop("revoked"));
    }
}

#[test]
fn success_starts_again_from_the_base() {
    let mut reconnect = policy();
    let mut rng = StdRng::seed_from_u64(6);
    for _ in 0..3 {
        reconnect.after(lost(), Duration::ZERO, &mut rng);
    }
    reconnect.succeeded();
    assert_eq!(reconnect.attempts(), 0);
    assert_eq!(reconnect.backoff.ceiling(), BASE);
}
