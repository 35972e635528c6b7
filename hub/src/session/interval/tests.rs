//! Virtual-clock tests: time only moves by the intervals the tests add, and the NAT is a rule
//! (a silence of at least `binding` moves the device to a new port).

use super::*;

const CEILING: Duration = Duration::from_secs(25);

/// The timing with probing off (the cap is the configured interval): growth stops there, as it did
/// before probing existed.
const NO_PROBES: TunerTiming = TunerTiming {
    hold: HOLD,
    cap: CEILING,
};

/// Check in every `tuner.interval()` for `count` check-ins, the NAT rebinding whenever the
/// silence reaches `binding`; returns how many bindings expired.
fn run(tuner: &mut CheckinTuner, now: &mut Instant, binding: Duration, count: usize) -> usize {
    let mut expired = 0;
    for _ in 0..count {
        *now += tuner.interval();
        let migrated = tuner.interval() >= binding;
        expired += usize::from(migrated);
        tuner.handle_checkin(*now, migrated);
    }
    expired
}

fn start_with(timing: TunerTiming) -> (CheckinTuner, Instant) {
    let now = Instant::now();
    let mut tuner = CheckinTuner::new(CEILING, timing, now);
    tuner.handle_checkin(now, false);
    (tuner, now)
}

fn start() -> (CheckinTuner, Instant) {
    start_with(NO_PROBES)
}

#[test]
fn a_binding_that_holds_keeps_the_configured_interval() {
    let (mut tuner, mut now) = start();
    let expired = run(&mut tuner, &mut now, Duration::from_secs(30), 1000);
    assert_eq!(expired, 0);
    assert_eq!(tuner.interval(), CEILING);
    assert_eq!(tuner.interval_s(), 25);
}

#[test]
fn an_expired_binding_shortens_the_interval_below_the_nat_timeout() {
    let (mut tuner, mut now) = start();
    // A NAT that forgets after 12 s: 25 → 16.7 → 11.1 s, two expiries, then it holds.
    let expired = run(&mut tuner, &mut now, Duration::from_secs(12), 50);
    assert_eq!(expired, 2);
    assert!(
        tuner.interval() < Duration::from_secs(12),
        "{:?}",
        tuner.interval()
    );
    assert!(tuner.interval() >= FLOOR);
}

#[test]
fn the_interval_never_drops_below_the_floor() {
    let (mut tuner, mut now) = start();
    run(&mut tuner, &mut now, Duration::from_secs(3), 50);
    assert_eq!(tuner.interval(), FLOOR);
}

#[test]
fn a_hub_configured_below_the_floor_keeps_its_interval() {
    let mut now = Instant::now();
    let mut tuner = CheckinTuner::new(Duration::from_secs(2), TunerTiming::default(), now);
    tuner.handle_checkin(now, false);
    let expired = run(&mut tuner, &mut now, Duration::from_secs(1), 10);
    assert_eq!(expired, 10);
    assert_eq!(tuner.interval(), Duration::from_secs(2));
}

#[test]
fn a_migration_after_a_short_silence_changes_nothing() {
    let (mut tuner, mut now) = start();
    now += Duration::from_secs(3);
    assert_eq!(tuner.handle_checkin(now, true), Tuned::Kept);
    assert_eq!(tuner.interval(), CEILING);
}

#[test]
fn the_interval_grows_back_slowly_while_bindings_hold() {
    let (mut tuner, mut now) = start();
    run(&mut tuner, &mut now, Duration::from_secs(12), 50);
    let short = tuner.interval();
    // The device moved to a network whose NAT keeps bindings for a minute.
    while now + short < tuner.changed_at + HOLD {
        run(&mut tuner, &mut now, Duration::from_secs(60), 1);
        assert_eq!(
            tuner.interval(),
            short,
            "no growth before a full hold period"
        );
    }
    run(&mut tuner, &mut now, Duration::from_secs(60), 1);
    assert_eq!(tuner.interval(), short + STEP);
    // Six hours later it is back at the configured interval, never above.
    run(&mut tuner, &mut now, Duration::from_secs(60), 6 * 3600 / 11);
    assert_eq!(tuner.interval(), CEILING);
}

#[test]
fn growing_back_into_an_expiry_costs_one_migration_per_few_hold_periods() {
    let (mut tuner, mut now) = start();
    // A NAT that forgets after 20 s, over a day: at most one expiry per hold period.
    let day = 24 * 3600 / 15;
    let expired = run(&mut tuner, &mut now, Duration::from_secs(20), day);
    assert!(
        expired <= (24 * 3600 / HOLD.as_secs()) as usize,
        "{expired}"
    );
    assert!(tuner.interval() < Duration::from_secs(20) + STEP);
}

#[test]
fn a_generous_nat_is_probed_once_and_the_interval_grows_to_the_cap() {
    let (mut tuner, mut now) = start_with(TunerTiming::default());
    // A NAT that keeps bindings for two minutes, as the rig's relay does.
    let binding = Duration::from_secs(120);
    let mut until_hold = 0;
    while tuner.probe_counts().sent == 0 {
        run(&mut tuner, &mut now, binding, 1);
        until_hold += 1;
    }
    // The first probe after a hold period at the configured interval asks for the silence that
    // makes the cap safe: 50 s × 3/2.
    assert_eq!(until_hold, HOLD.as_secs() / 25);
    assert_eq!(tuner.interval(), Duration::from_secs(75));
    assert_eq!(run(&mut tuner, &mut now, binding, 1), 0);
    assert_eq!(tuner.interval(), GROWTH_CAP);
    assert_eq!(
        tuner.probe_counts(),
        ProbeCounts {
            sent: 1,
            held: 1,
            failed: 0
        }
    );
    // A day later: no probe past the cap, no expiry.
    assert_eq!(run(&mut tuner, &mut now, binding, 24 * 3600 / 50), 0);
    assert_eq!(tuner.interval(), GROWTH_CAP);
    assert_eq!(tuner.probe_counts().sent, 1);
}

#[test]
fn a_probe_into_an_expiry_keeps_the_interval_and_the_next_aims_between() {
    let (mut tuner, mut now) = start_with(TunerTiming::default());
    // A NAT that forgets after 60 s: the 75 s probe fails, the 50 s one holds (interval 33 s),
    // the 62.5 s one fails, the 56 s and 59.4 s ones hold (39.6 s), then a probe would gain less
    // than a step.
    let binding = Duration::from_secs(60);
    let day = 24 * 3600 / 25;
    let expired = run(&mut tuner, &mut now, binding, day);
    let counts = tuner.probe_counts();
    assert_eq!(expired, counts.failed as usize, "only probes ever expire");
    assert_eq!(counts.failed, 2, "{counts:?}");
    assert_eq!(counts.held, 3, "{counts:?}");
    assert!(
        tuner.interval() > Duration::from_secs(36),
        "{:?}",
        tuner.interval()
    );
    assert!(
        tuner.interval() * 3 / 2 <= binding,
        "{:?}",
        tuner.interval()
    );
}

#[test]
fn the_shortest_nat_we_design_for_costs_two_failed_probes_in_a_session() {
    let (mut tuner, mut now) = start_with(TunerTiming::default());
    let expired = run(
        &mut tuner,
        &mut now,
        Duration::from_secs(30),
        7 * 24 * 3600 / 25,
    );
    assert_eq!(expired, 2);
    assert_eq!(tuner.interval(), CEILING);
}

#[test]
fn an_expiry_after_growth_shortens_as_before() {
    let (mut tuner, mut now) = start_with(TunerTiming::default());
    run(&mut tuner, &mut now, Duration::from_secs(120), 100);
    assert_eq!(tuner.interval(), GROWTH_CAP);
    // The device moves behind a NAT that forgets after 40 s.
    run(&mut tuner, &mut now, Duration::from_secs(40), 1);
    assert_eq!(tuner.interval(), GROWTH_CAP * 2 / 3);
}

#[test]
fn a_short_hold_converges_within_two_check_ins() {
    let timing = TunerTiming {
        hold: Duration::ZERO,
        cap: GROWTH_CAP,
    };
    let now = Instant::now();
    let mut tuner = CheckinTuner::new(CEILING, timing, now);
    assert_eq!(tuner.handle_checkin(now, false), Tuned::Kept);
    let probe = tuner.handle_checkin(now + CEILING, false);
    assert_eq!(
        probe,
        Tuned::Probing {
            silence: Duration::from_secs(75)
        }
    );
    let held = tuner.handle_checkin(now + CEILING + Duration::from_secs(75), false);
    assert_eq!(
        held,
        Tuned::ProbeHeld {
            silence: Duration::from_secs(75),
            to: GROWTH_CAP
        }
    );
}

#[test]
fn a_quiet_device_keeps_its_interval_through_expiries() {
    let mut now = Instant::now();
    let interval = Duration::from_secs(300);
    let mut tuner = CheckinTuner::quiet(interval, now);
    tuner.handle_checkin(now, false);
    let expired = run(&mut tuner, &mut now, Duration::from_secs(120), 100);
    assert_eq!(expired, 100);
    assert_eq!(tuner.interval(), interval);
    assert_eq!(tuner.probe_counts(), ProbeCounts::default());
    assert!(tuner.is_quiet());
}
