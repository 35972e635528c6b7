//! Resuming a path's rate after an outage and from a saved estimate, on the virtual-clock link of
//! `tests.rs`. An outage is played as quinn reports one: nothing is acknowledged for its length,
//! then the first probe sent after the path returns is acked, and in the same batch of acks every
//! packet sent before is declared lost as persistent congestion.

use super::tests::{fresh, origin, transfer_at, Link, GEO};
use super::*;

const PACKET: u64 = 1200;

/// `flaky-cellular`'s downlink without its loss: 5 Mbit/s, 100 ms.
const CELLULAR: Link = Link {
    rate: 5e6 / 8.0,
    one_way: Duration::from_millis(50),
    queue: 256_000,
    loss: 0.0,
    step: None,
    jitter: Duration::ZERO,
};

/// A controller at steady state on `link`, and the virtual time its transfer ended.
fn steady_on(link: &Link) -> (DeliveryRate, Instant) {
    let run = transfer_at(origin(), link, 4 << 20, fresh(), 3);
    assert!(!run.controller.in_startup());
    (run.controller, run.ended_at)
}

/// An outage of `silence` after `at`, from a full window in flight: the path returns with a
/// round trip of `rtt`, and a probe sent then is acknowledged. Returns when the probe's ack came.
fn outage(controller: &mut DeliveryRate, at: Instant, silence: Duration, rtt: Duration) -> Instant {
    let in_flight = controller.window();
    controller.on_sent(at, in_flight);
    let probe = at + silence;
    controller.on_sent(probe, PACKET);
    let acked = probe + rtt;
    controller.on_ack(acked, probe, PACKET, false);
    controller.on_congestion_event(acked, in_flight, true);
    controller.on_end_acks(acked, 0);
    acked
}

/// A new connection on GEO whose handshake, at `at`, measured one round trip.
fn handshaken(at: Instant) -> DeliveryRate {
    let mut controller = fresh();
    controller.on_sent(at, PACKET);
    controller.on_ack(at + GEO.one_way * 2, at, PACKET, true);
    controller.on_end_acks(at + GEO.one_way * 2, 0);
    controller
}

fn near(value: u64, expected: u64, share: f64) -> bool {
    (value as f64 - expected as f64).abs() <= expected as f64 * share
}

#[test]
fn a_path_back_from_an_outage_resumes_at_its_old_rate() {
    let (mut controller, end) = steady_on(&CELLULAR);
    let before = controller.bottleneck_rate();
    assert!(near(before, CELLULAR.rate as u64, 0.2), "rate {before}");
    let back = outage(
        &mut controller,
        end,
        Duration::from_secs(5),
        CELLULAR.one_way * 2,
    );
    assert_eq!(controller.startup_exit(), Some(StartupExit::Resumed));
    assert_eq!(controller.bottleneck_rate(), before);
    let stats = controller.resume_stats();
    assert_eq!((stats.outages, stats.resumed, stats.refused), (1, 1, 0));
    let window = controller.steady_window(before, controller.path_min_rtt.get());
    assert!(
        controller.window() >= window,
        "window {} below the old rate's {window}",
        controller.window()
    );

    // The rounds after it run at the path's rate: within two of them it was measured again.
    let run = transfer_at(back, &CELLULAR, 1 << 20, controller, 4);
    let ideal = Duration::from_secs_f64((1 << 20) as f64 / CELLULAR.rate);
    assert!(
        run.elapsed < ideal + 4 * CELLULAR.one_way * 2,
        "{:?} for 1 MB (ideal {ideal:?})",
        run.elapsed
    );
    let last = run.controller.resume_stats().last.expect("a resume");
    assert_eq!(last.kind, ResumeKind::AfterOutage);
    assert!(last.rounds >= 2, "{last:?}");
    assert!(
        last.measured as f64 >= 0.5 * before as f64,
        "measured {} of {before} after the outage",
        last.measured
    );
    assert_eq!(run.controller.resume_stats().retreated, 0);
    assert_recovered(&run.controller, before, Duration::from_secs(5));
}

/// The controller counted one silence of about `length`, and within [`silence::RECOVERY_ROUNDS`]
/// busy rounds after it delivered at least half of `before`, the rate it had.
fn assert_recovered(controller: &DeliveryRate, before: u64, length: Duration) {
    let stats = controller.silence_stats();
    assert_eq!(stats.silences, 1, "{stats:?}");
    let last = stats.last.expect("a silence");
    assert!(last.length >= length, "{last:?}");
    assert_eq!(last.before, before, "{last:?}");
    assert_eq!(last.rounds, silence::RECOVERY_ROUNDS, "{last:?}");
    assert!(last.after * 2 >= before, "{last:?}");
}

/// `flaky-cellular`'s downlink without its loss, with its jitter: σ 20 ms each way.
const JITTERY_CELLULAR: Link = Link {
    jitter: Duration::from_millis(20),
    ..CELLULAR
};

#[test]
fn a_jittery_path_back_from_an_outage_resumes_on_its_slowest_round_trip() {
    // The minimum reads jitter's low tail (64–117 ms over these seeds); the first ack after the
    // outage draws one round trip, here the slowest the path has: 3 σ each way and the
    // receiver's 25 ms ack delay.
    let slowest =
        JITTERY_CELLULAR.one_way * 2 + JITTERY_CELLULAR.jitter * 6 + Duration::from_millis(25);
    for seed in 1..=20 {
        let run = transfer_at(origin(), &JITTERY_CELLULAR, 4 << 20, fresh(), seed);
        let min = run.controller.path_min_rtt.get();
        let mut controller = run.controller;
        let before = controller.bottleneck_rate();
        outage(
            &mut controller,
            run.ended_at,
            Duration::from_secs(5),
            slowest,
        );
        assert_eq!(
            controller.startup_exit(),
            Some(StartupExit::Resumed),
            "seed {seed}: minimum {min:?}, the first ack's round trip {slowest:?}"
        );
        // The rate the filter held when the outage was declared (its window can age a sample).
        let rate = controller.bottleneck_rate();
        assert!(
            near(rate, before, 0.05),
            "seed {seed}: {rate} lent, {before} before"
        );
    }
}

#[test]
fn an_outage_quinn_does_not_call_persistent_congestion_keeps_the_rate() {
    let (mut controller, end) = steady_on(&CELLULAR);
    let before = controller.bottleneck_rate();
    let in_flight = controller.window();
    controller.on_sent(end, in_flight);
    let probe = end + Duration::from_secs(5);
    controller.on_sent(probe, PACKET);
    let acked = probe + CELLULAR.one_way * 2;
    controller.on_ack(acked, probe, PACKET, false);
    controller.on_congestion_event(acked, in_flight, false);
    controller.on_end_acks(acked, 0);
    assert_eq!(controller.resume_stats().outages, 0);
    assert_eq!(controller.bottleneck_rate(), before, "nothing was reset");

    let run = transfer_at(acked, &CELLULAR, 1 << 20, controller, 4);
    assert_recovered(&run.controller, before, Duration::from_secs(5));
}

#[test]
fn a_path_that_comes_back_longer_starts_over() {
    let (mut controller, end) = steady_on(&CELLULAR);
    // Another path: a satellite's round trip, six times the cellular one.
    outage(
        &mut controller,
        end,
        Duration::from_secs(5),
        GEO.one_way * 2,
    );
    assert!(controller.in_startup());
    assert_eq!(controller.bottleneck_rate(), 0);
    let stats = controller.resume_stats();
    assert_eq!((stats.outages, stats.resumed, stats.refused), (1, 0, 1));
}

#[test]
fn an_outage_during_startup_has_nothing_to_resume() {
    let epoch = origin();
    let mut controller = fresh();
    outage(
        &mut controller,
        epoch,
        Duration::from_secs(5),
        CELLULAR.one_way * 2,
    );
    assert!(controller.in_startup());
    assert_eq!(controller.resume_stats(), ResumeStats::default());
}

#[test]
fn a_saved_estimate_starts_a_new_connection_at_the_path_rate() {
    let (previous, end) = steady_on(&GEO);
    let estimate = previous.path_estimate().expect("an estimate");
    assert!(near(estimate.rate, GEO.rate as u64, 0.25), "{estimate:?}");

    let cold = transfer_at(end, &GEO, 10 << 20, handshaken(end), 5);
    let mut controller = handshaken(end);
    controller.offer_resume(estimate);
    assert_eq!(controller.startup_exit(), Some(StartupExit::Resumed));
    let warm = transfer_at(end + GEO.one_way * 2, &GEO, 10 << 20, controller, 5);
    assert_eq!(warm.controller.startup_exit(), Some(StartupExit::Resumed));
    let last = warm.controller.resume_stats().last.expect("a resume");
    assert_eq!(last.kind, ResumeKind::SavedPath);
    // 10 MB at 20 Mbit/s is 4.2 s, plus a round trip, plus the 1 % loss's last recoveries
    // (here 5.2 s): a cold start spends rounds finding the rate a resumed one starts at (5.8 s).
    assert!(
        warm.elapsed + Duration::from_millis(300) < cold.elapsed,
        "resumed {:?}, cold {:?}",
        warm.elapsed,
        cold.elapsed
    );
    assert!(
        warm.elapsed < Duration::from_millis(5500),
        "{:?}",
        warm.elapsed
    );
    assert!(
        warm.lost < 100,
        "{} packets lost: the first flight overflowed the queue",
        warm.lost
    );
}

#[test]
fn a_saved_estimate_for_a_faster_path_is_given_back_within_a_round() {
    let (previous, end) = steady_on(&GEO);
    let estimate = previous.path_estimate().expect("an estimate");
    // The device's link is now a quarter as fast, on the same round trip.
    let slower = Link {
        rate: GEO.rate / 4.0,
        ..GEO
    };
    let mut controller = fresh();
    controller.offer_resume(estimate);
    let run = transfer_at(end, &slower, 4 << 20, controller, 5);
    let stats = run.controller.resume_stats();
    assert_eq!((stats.resumed, stats.retreated), (1, 1), "{stats:?}");
    assert!(
        near(run.controller.bottleneck_rate(), slower.rate as u64, 0.3),
        "rate {} on a {} B/s link",
        run.controller.bottleneck_rate(),
        slower.rate
    );
}

#[test]
fn a_saved_estimate_from_another_path_is_refused() {
    let (previous, end) = steady_on(&GEO);
    let mut controller = fresh();
    controller.offer_resume(previous.path_estimate().expect("an estimate"));
    // The device moved to a 100 ms cellular path.
    let run = transfer_at(end, &CELLULAR, 1 << 20, controller, 5);
    let stats = run.controller.resume_stats();
    assert_eq!((stats.resumed, stats.refused), (0, 1));
    assert_ne!(run.controller.startup_exit(), Some(StartupExit::Resumed));
}

#[test]
fn the_round_trip_check_allows_a_queue_and_jitter_but_not_another_path() {
    let estimate = PathEstimate {
        rate: 625_000,
        min_rtt: Duration::from_millis(100),
    };
    let ms = Duration::from_millis;
    assert!(estimate.matches(ms(100)));
    assert!(
        estimate.matches(ms(245)),
        "jitter's high tail over a minimum from its low tail"
    );
    assert!(estimate.matches(ms(410)));
    assert!(!estimate.matches(ms(420)));
    assert!(
        !estimate.matches(ms(600)),
        "a satellite's round trip: another path"
    );
    assert!(estimate.matches(ms(60)));
    assert!(!estimate.matches(ms(40)), "under half: another path");
}

#[test]
fn a_connection_that_never_filled_its_pipe_has_no_estimate() {
    assert_eq!(fresh().path_estimate(), None);
}

/// A new GEO connection resumed from a saved estimate of the link's rate at its handshake's ack:
/// the controller and that moment.
fn resumed_on_geo() -> (DeliveryRate, Instant) {
    let at = origin();
    let mut controller = handshaken(at);
    controller.offer_resume(PathEstimate {
        rate: GEO.rate as u64,
        min_rtt: GEO.one_way * 2,
    });
    (controller, at + GEO.one_way * 2)
}

#[test]
fn acks_of_packets_sent_before_the_resume_neither_judge_nor_age_the_loan() {
    let (mut controller, resumed_at) = resumed_on_geo();
    let rate = GEO.rate as u64;
    let before = resumed_at - Duration::from_millis(1);
    let after = resumed_at + Duration::from_millis(1);
    // Two busy rounds of stragglers (the outage's last packets, retransmissions): no samples, too
    // few acks for a rate. Judged, they would have ended the loan.
    for round in 0..2 {
        controller.resume.on_acked(before, round);
        controller.resume.on_sample(rate / 50);
        controller.resume.on_round_end(round, 0);
    }
    assert_eq!(controller.resume_stats().retreated, 0);
    assert_eq!(
        controller.resume.lent_rate(5),
        rate,
        "the loan has not started aging"
    );
    // The lent flight: its first round measures from an empty pipe, unjudged; the next delivers.
    controller.resume.on_acked(after, 2);
    controller.resume.on_sample(rate * 2 / 5);
    controller.resume.on_round_end(2, 0);
    controller.resume.on_acked(after, 3);
    controller.resume.on_sample(rate * 9 / 10);
    controller.resume.on_round_end(3, rate);
    assert_eq!(controller.resume.lent_rate(4), rate);
    controller.resume.on_round_end(4, rate);
    assert_eq!(
        controller.resume.lent_rate(5),
        0,
        "two rounds after its first, the loan is over"
    );
    let last = controller.resume_stats().last.expect("a resume");
    assert_eq!(
        (
            last.rounds,
            last.measured,
            controller.resume_stats().retreated
        ),
        (3, rate, 0)
    );
}

#[test]
fn a_lent_round_that_delivers_under_half_ends_the_loan_at_once() {
    let (mut controller, resumed_at) = resumed_on_geo();
    let rate = GEO.rate as u64;
    let after = resumed_at + Duration::from_millis(1);
    controller.resume.on_acked(after, 0);
    controller.resume.on_round_end(0, rate / 4);
    controller.resume.on_acked(after, 1);
    controller.resume.on_sample(rate / 4);
    controller.resume.on_round_end(1, rate / 3);
    assert_eq!(controller.resume_stats().retreated, 1);
    assert_eq!(controller.resume.lent_rate(1), 0);
}
