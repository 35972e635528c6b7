//! The controller against a simulated bottleneck on a virtual clock: a rate, a one-way delay each
//! way, a drop-tail queue and seeded random loss. Loss is detected one RTT after the send, as an
//! ack-based detector would; acks travel back without queueing.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

const PACKET: u64 = 1200;

pub(super) struct Link {
    pub(super) rate: f64,
    pub(super) one_way: Duration,
    pub(super) queue: u64,
    pub(super) loss: f64,
    /// From this time on, each way takes this much longer (a satellite hand-over, a reroute).
    pub(super) step: Option<(Duration, Duration)>,
    /// Standard deviation of each way's normal jitter (clamped at 3 σ); as in the emulator,
    /// jitter alone never reorders.
    pub(super) jitter: Duration,
}

impl Link {
    /// One way's jitter: normal, clamped at 3 σ, in seconds either way.
    fn jitter_sample(&self, rng: &mut StdRng) -> f64 {
        let sigma = self.jitter.as_secs_f64();
        if sigma == 0.0 {
            return 0.0;
        }
        let (u1, u2): (f64, f64) = (rng.random_range(f64::MIN_POSITIVE..1.0), rng.random());
        let normal = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        (normal * sigma).clamp(-3.0 * sigma, 3.0 * sigma)
    }

    fn rtt_at(&self, now: Duration) -> Duration {
        match self.step {
            Some((at, extra)) if now >= at => (self.one_way + extra) * 2,
            _ => self.one_way * 2,
        }
    }
}

pub(super) const GEO: Link = Link {
    rate: 20e6 / 8.0,
    one_way: Duration::from_millis(300),
    queue: 750_000,
    loss: 0.01,
    step: None,
    jitter: Duration::ZERO,
};

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Acked { sent: Duration },
    Lost,
}

pub(super) struct Run {
    pub(super) elapsed: Duration,
    /// The virtual clock's instant when the transfer ended.
    pub(super) ended_at: Instant,
    largest_window: u64,
    pub(super) lost: u64,
    /// The largest window while the controller was in startup.
    largest_startup_window: u64,
    /// Packets the queue dropped that were sent after startup ended.
    pub(super) overflowed_in_steady: u64,
    /// The bottleneck's queue, in time, as the packets sent after startup found it: the mean.
    pub(super) queue_in_steady: Duration,
    pub(super) controller: DeliveryRate,
}

/// The one real instant a test reads: the origin its virtual clock counts from.
#[allow(clippy::disallowed_methods)]
pub(super) fn origin() -> Instant {
    Instant::now()
}

/// Send `total` bytes through `link` with `controller`, from virtual time zero.
pub(super) fn transfer(link: &Link, total: u64, controller: DeliveryRate, seed: u64) -> Run {
    transfer_at(origin(), link, total, controller, seed)
}

/// [`transfer`] on a virtual clock that starts at `epoch` (after a previous transfer's end).
pub(super) fn transfer_at(
    epoch: Instant,
    link: &Link,
    total: u64,
    mut controller: DeliveryRate,
    seed: u64,
) -> Run {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut events: BinaryHeap<Reverse<(Duration, Event)>> = BinaryHeap::new();
    let (mut now, mut link_free, mut next_send) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let (mut in_flight, mut delivered, mut largest_window, mut lost) = (0u64, 0u64, 0u64, 0u64);
    let mut overflowed_in_steady = 0;
    let (mut steady_queue, mut steady_sends) = (Duration::ZERO, 0u32);
    let mut largest_startup_window = 0;
    let mut last_ack = Duration::ZERO;
    let mut unsent = total;
    let mut pacer = Pacer::default();
    while delivered < total {
        let window = controller.sending_window();
        largest_window = largest_window.max(controller.window());
        if controller.in_startup() {
            largest_startup_window = largest_startup_window.max(controller.window());
        }
        let can_send = in_flight + PACKET <= window && unsent > 0;
        let next_event = events.peek().map(|Reverse((at, _))| *at);
        if can_send && next_event.is_none_or(|at| next_send <= at) {
            now = now.max(next_send);
            let (rate, capacity) = match controller.pacing_rate() {
                Some(rate) => rate_bucket(rate),
                None => window_bucket(window, link.rtt_at(now)),
            };
            next_send = pacer.send(now, rate, capacity);
            controller.on_sent(epoch + now, PACKET);
            in_flight += PACKET;
            unsent = unsent.saturating_sub(PACKET);
            let backlog = link_free.saturating_sub(now).as_secs_f64() * link.rate;
            let overflows = backlog as u64 + PACKET > link.queue;
            if !controller.in_startup() {
                overflowed_in_steady += u64::from(overflows);
                steady_queue += link_free.saturating_sub(now);
                steady_sends += 1;
            }
            if rng.random_bool(link.loss) || overflows {
                events.push(Reverse((now + link.rtt_at(now), Event::Lost)));
                continue;
            }
            link_free = link_free.max(now) + Duration::from_secs_f64(PACKET as f64 / link.rate);
            let jitter = link.jitter_sample(&mut rng) + link.jitter_sample(&mut rng);
            let acked = (link_free + link.rtt_at(now)).as_secs_f64() + jitter;
            let acked = Duration::from_secs_f64(acked.max(now.as_secs_f64()));
            // Jitter alone never reorders.
            let acked = acked.max(last_ack);
            last_ack = acked;
            events.push(Reverse((acked, Event::Acked { sent: now })));
            continue;
        }
        let Some(Reverse((at, event))) = events.pop() else {
            panic!("nothing in flight and nothing to send");
        };
        now = at;
        in_flight -= PACKET;
        match event {
            Event::Acked { sent } => {
                delivered += PACKET;
                controller.on_ack(epoch + now, epoch + sent, PACKET, false);
            }
            Event::Lost => {
                lost += 1;
                // The lost bytes are sent again.
                unsent += PACKET;
                controller.on_congestion_event(epoch + now, PACKET, false);
            }
        }
        controller.on_end_acks(epoch + now, in_flight);
    }
    Run {
        elapsed: now,
        ended_at: epoch + now,
        largest_window,
        lost,
        largest_startup_window,
        overflowed_in_steady,
        queue_in_steady: steady_queue.checked_div(steady_sends).unwrap_or_default(),
        controller,
    }
}

/// quinn's pacer for a window: a token bucket refilled at 1.25 windows per RTT, holding 2 ms
/// worth of the window (10 to 256 packets); unpaced above `u32::MAX`. Rate and capacity in bytes.
fn window_bucket(window: u64, rtt: Duration) -> (f64, f64) {
    if window > u64::from(u32::MAX) {
        return (f64::INFINITY, f64::INFINITY);
    }
    let capacity = (window as f64 * 0.002 / rtt.as_secs_f64())
        .clamp(10.0 * PACKET as f64, 256.0 * PACKET as f64);
    (1.25 * window as f64 / rtt.as_secs_f64(), capacity)
}

/// quinn's pacer at a controller's own rate (our quinn-proto patch): 4 ms of the rate, 10 to 256
/// packets. The patch waits for half of it, which on a virtual clock (no late timers) paces the
/// same as sending each packet once its tokens are there.
fn rate_bucket(rate: u64) -> (f64, f64) {
    let capacity = (rate as f64 * 0.004).clamp(10.0 * PACKET as f64, 256.0 * PACKET as f64);
    (rate as f64, capacity)
}

/// A token bucket on the virtual clock.
#[derive(Default)]
struct Pacer {
    tokens: f64,
    refilled: Option<Duration>,
}

impl Pacer {
    /// Spend one packet's tokens at `now`, with the bucket refilled at `rate` bytes per second
    /// up to `capacity`; returns when the next packet may leave.
    fn send(&mut self, now: Duration, rate: f64, capacity: f64) -> Duration {
        if rate.is_infinite() {
            return now;
        }
        let since = match self.refilled {
            Some(refilled) => (now - refilled).as_secs_f64(),
            None => f64::INFINITY,
        };
        self.tokens = (self.tokens + since * rate).min(capacity);
        self.refilled = Some(now);
        self.tokens -= PACKET as f64;
        if self.tokens >= 0.0 {
            return now;
        }
        now + Duration::from_secs_f64(-self.tokens / rate)
    }
}

pub(super) fn fresh() -> DeliveryRate {
    DeliveryRate::new(Arc::new(DeliveryRateConfig::default()), 1200)
}

#[test]
fn fills_a_lossy_geo_path_near_link_rate() {
    let size = 10 << 20;
    let run = transfer(&GEO, size, fresh(), 1);
    // Issue #5's target: well under the 7 s the best published QUIC stack took on this path
    // (the ideal is 10 MB at 20 Mbit/s plus one round trip, 4.8 s).
    assert!(
        run.elapsed < Duration::from_millis(6500),
        "10 MB took {:?}",
        run.elapsed
    );
    assert_eq!(
        run.controller.startup_exit(),
        Some(StartupExit::BurstMeasured),
        "the first flight's 12 packets cross the 20 Mbit/s bottleneck as a train"
    );
    let rate = run.controller.bottleneck_rate() as f64;
    assert!(
        rate > GEO.rate * 0.9 && rate < GEO.rate * 1.2,
        "estimate {rate} vs link {}",
        GEO.rate
    );
}

#[test]
fn random_loss_does_not_shrink_the_window() {
    let run = transfer(&GEO, 10 << 20, fresh(), 2);
    let bdp = GEO.rate * 0.6;
    assert!(run.lost > 50, "the link dropped {} packets", run.lost);
    assert!(
        run.controller.window() as f64 >= bdp,
        "window {} after {} losses, BDP {bdp}",
        run.controller.window(),
        run.lost
    );
}

#[test]
fn steady_state_keeps_the_queue_bounded() {
    // Lossless: every drop would be the controller's own queue overflow.
    let link = Link { loss: 0.0, ..GEO };
    let run = transfer(&link, 20 << 20, fresh(), 3);
    let bdp = link.rate * 0.6;
    let allowance = link.rate * 0.025;
    assert!(
        run.controller.window() as f64 <= bdp * 2.0 + allowance + 10.0 * PACKET as f64,
        "steady window {} vs BDP {bdp}",
        run.controller.window()
    );
    // The pacer, not the window, sets the rate: about the link's.
    let paced = run
        .controller
        .pacing_rate()
        .expect("a pacing rate in steady state") as f64;
    assert!(
        paced > link.rate * 0.7 && paced < link.rate * 1.35,
        "paced at {paced}, link {}",
        link.rate
    );
    assert!(
        (run.largest_window as f64) < bdp * 4.0,
        "startup overshot to {} (BDP {bdp})",
        run.largest_window
    );
    // The modem's queue holds half a BDP (300 ms at 20 Mbit/s): the steady window keeps less
    // than that queued, so once startup has ended nothing overflows.
    assert_eq!(run.overflowed_in_steady, 0, "{} lost", run.lost);
}

#[test]
fn a_second_transfer_after_idle_starts_at_the_learned_rate() {
    let first = transfer(&GEO, 10 << 20, fresh(), 4);
    // Idle: app-limited check-in acks, one per round, do not age the filter.
    let mut idle = first.controller;
    let rate = idle.bottleneck_rate();
    let epoch = origin();
    for i in 0..50u64 {
        let sent = epoch + Duration::from_secs(25 * i);
        idle.on_sent(sent, 60);
        idle.on_ack(sent + GEO.one_way * 2, sent, 60, true);
    }
    assert_eq!(idle.bottleneck_rate(), rate);
    let second = transfer(&GEO, 10 << 20, idle, 5);
    assert!(
        second.elapsed < first.elapsed,
        "second {:?} vs first {:?}",
        second.elapsed,
        first.elapsed
    );
}

#[test]
fn persistent_congestion_starts_over_from_a_small_window() {
    let mut run = transfer(&GEO, 4 << 20, fresh(), 6).controller;
    assert!(run.window() > 100_000);
    assert_eq!(run.startup_exit(), Some(StartupExit::BurstMeasured));
    run.on_congestion_event(origin() + Duration::from_secs(60), 0, true);
    assert!(run.in_startup());
    assert_eq!(run.startup_exit(), None);
    assert_eq!(run.window(), 4 * 1200);
    assert_eq!(run.bottleneck_rate(), 0);
}

#[test]
fn a_slow_narrow_link_is_not_flooded() {
    // EDGE-like: 200 kbit/s, 150 ms one way, a 20 KB queue, 30 % loss.
    let link = Link {
        rate: 200e3 / 8.0,
        one_way: Duration::from_millis(150),
        queue: 20_000,
        loss: 0.3,
        step: None,
        jitter: Duration::ZERO,
    };
    let size = 256 << 10;
    let run = transfer(&link, size, fresh(), 7);
    assert_eq!(run.controller.startup_exit(), Some(StartupExit::QueueDelay));
    // Each packet crosses 1/(1 - 0.3) times on average; allow slack for startup.
    let ideal = size as f64 / 0.7 / link.rate + 0.3;
    assert!(
        run.elapsed.as_secs_f64() < ideal * 1.5,
        "took {:?}, ideal {ideal:.1} s",
        run.elapsed
    );
}

/// `count` packets sent at `sent`, acknowledged at `acked` (not app-limited), then the acks end.
fn flight(controller: &mut DeliveryRate, sent: Instant, acked: Instant, count: u64) {
    for _ in 0..count {
        controller.on_sent(sent, PACKET);
    }
    for _ in 0..count {
        controller.on_ack(acked, sent, PACKET, false);
    }
}

#[test]
fn a_flight_after_idle_measures_from_its_own_start() {
    let mut controller = fresh();
    let epoch = origin();
    let rtt = GEO.one_way * 2;
    // A check-in, then 25 s of silence with nothing in flight.
    controller.on_sent(epoch, 60);
    controller.on_ack(epoch + rtt, epoch, 60, true);
    controller.on_end_acks(epoch + rtt, 0);
    let start = epoch + Duration::from_secs(25);
    flight(&mut controller, start, start + rtt, 12);
    // 12 packets in one round trip: 24 KB/s, not 12 packets over the 25 s pause (600 B/s).
    let rate = controller.bottleneck_rate();
    assert!(rate > 12_000, "first rate sample after idle: {rate} B/s");
}

#[test]
fn an_idle_connection_keeps_no_send_marks() {
    let mut controller = fresh();
    let epoch = origin();
    let rtt = GEO.one_way * 2;
    // A flight of 64 packets a millisecond apart: one mark each.
    for i in 0..64 {
        controller.on_sent(epoch + Duration::from_millis(i), PACKET);
    }
    assert!(controller.marks.capacity() >= 64);
    for i in 0..64 {
        let sent = epoch + Duration::from_millis(i);
        controller.on_ack(sent + rtt, sent, PACKET, false);
    }
    controller.on_end_acks(epoch + rtt + Duration::from_millis(64), 0);
    // A hub holds one controller per idle device: nothing of the flight's bookkeeping stays.
    assert_eq!(controller.marks.capacity(), 0);
    let rate = controller.bottleneck_rate();
    assert!(rate > 0, "the flight was measured before its marks went");
}

/// Startup's second round: 100 packets sent a round trip after the first flight, 50 of them
/// acknowledged, the first 25 after the path's minimum round trip and the next 25 `queued`
/// later (a queue building).
fn second_round(queued: Duration) -> DeliveryRate {
    let mut controller = fresh();
    let epoch = origin();
    let rtt = GEO.one_way * 2;
    // A paced first flight: its acks come back as it left, so its train shows no bottleneck
    // and this round is startup's own.
    let gap = Duration::from_millis(1);
    for i in 0..12 {
        controller.on_sent(epoch + gap * i, PACKET);
    }
    for i in 0..12 {
        controller.on_ack(epoch + rtt + gap * i, epoch + gap * i, PACKET, false);
    }
    let next = epoch + rtt;
    for _ in 0..100 {
        controller.on_sent(next, PACKET);
    }
    for i in 0..50 {
        let delay = if i < 25 { Duration::ZERO } else { queued };
        controller.on_ack(next + rtt + delay, next, PACKET, false);
    }
    assert!(controller.in_startup());
    controller
}

#[test]
fn startup_ends_within_the_round_that_overflows() {
    // A fifth of the round lost at once while its acks waited 200 ms in a queue: the queue
    // overflowed, and the rest of the round would only add to it.
    let mut controller = second_round(Duration::from_millis(200));
    controller.on_congestion_event(origin(), 10 * PACKET, false);
    assert_eq!(controller.startup_exit(), Some(StartupExit::QueueOverflow));
}

#[test]
fn a_loss_burst_without_a_queue_does_not_end_startup() {
    // The same loss at the path's minimum round trip: a fade, not a full pipe.
    let mut controller = second_round(Duration::ZERO);
    controller.on_congestion_event(origin(), 10 * PACKET, false);
    assert!(controller.in_startup());
    assert_eq!(controller.startup_exit(), None);
}

#[test]
fn a_rate_that_stops_growing_ends_startup() {
    // A paced sender that has only 12 packets per round trip to send (not app-limited: the
    // application keeps the stream full, the link is what is slow): no queue and no loss, so
    // only the rate standing still for FULL_PIPE_ROUNDS rounds ends startup.
    let mut controller = fresh();
    let epoch = origin();
    let rtt = GEO.one_way * 2;
    let gap = Duration::from_millis(1);
    for round in 0..6u32 {
        let start = epoch + rtt * round;
        for i in 0..12 {
            controller.on_sent(start + gap * i, PACKET);
        }
        for i in 0..12 {
            controller.on_ack(start + rtt + gap * i, start + gap * i, PACKET, false);
        }
        if controller.startup_exit().is_some() {
            break;
        }
    }
    assert_eq!(controller.startup_exit(), Some(StartupExit::RatePlateau));
}

#[test]
fn a_satellite_first_flight_finds_the_rate_in_one_round_trip() {
    // The satellite profile's hub side: a 147 KB first flight, sent as one burst.
    let config = DeliveryRateConfig {
        initial_window: 147_200,
        ..DeliveryRateConfig::default()
    };
    let run = transfer(&GEO, 10 << 20, DeliveryRate::new(Arc::new(config), 1200), 8);
    assert_eq!(
        run.controller.startup_exit(),
        Some(StartupExit::BurstMeasured)
    );
    let bdp = GEO.rate * 0.6;
    // Paced startup overshot to about 3 BDP here and finished in 6.4-6.8 s; the burst's acks
    // end startup after one round trip, before its window grows.
    assert!(
        (run.largest_startup_window as f64) < bdp * 1.5,
        "largest window in startup {} vs BDP {bdp}",
        run.largest_startup_window
    );
    // 5.87 s while a train of 32 acks or more was cruised at without a probe; the probe that
    // now follows every train costs 0.15 s on this link without jitter, and saves up to 1.4 s
    // on the jittery one (`a_satellite_first_flight_over_jitter_fills_the_link`).
    assert!(
        run.elapsed < Duration::from_millis(6_100),
        "10 MB took {:?}",
        run.elapsed
    );
}

/// The emulated GEO link with its ±10 ms of jitter each way (normal, σ 10 ms), which never
/// reorders and so bunches acks behind a late one.
const JITTERY_GEO: Link = Link {
    jitter: Duration::from_millis(10),
    ..GEO
};

#[test]
fn a_satellite_first_flight_over_jitter_fills_the_link() {
    // Each seed's first 10 MB over GEO with jitter; ideal 4.8 s with the handshake's round trip.
    // Cruising at the train's reading as soon as it had 32 acks: median 6.04 s, 90th
    // percentile 7.13 s, worst 7.90 s (a train read 0.55 of the link, and the cycle's first
    // probe came eight rounds later). Probing after every train: 6.12, 6.33 and 6.51 s.
    let config = Arc::new(DeliveryRateConfig {
        initial_window: 147_200,
        ..DeliveryRateConfig::default()
    });
    let mut times: Vec<f64> = (0..60)
        .map(|seed| {
            let controller = DeliveryRate::new(config.clone(), 1200);
            transfer(&JITTERY_GEO, 10 << 20, controller, seed)
                .elapsed
                .as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let (median, tail, worst) = (times[30], times[54], times[59]);
    assert!(median < 6.3, "median {median:.2} s");
    assert!(tail < 6.6, "90th percentile {tail:.2} s");
    assert!(worst < 7.0, "worst {worst:.2} s");
}

/// `flaky-cellular`'s downlink between its outages: 5 Mbit/s, 50 ms and 20 ms of normal jitter
/// each way (a minimum round trip near 65 ms, most 80–130 ms), a 256 KB queue, 1 % loss.
const JITTERY: Link = Link {
    rate: 5e6 / 8.0,
    one_way: Duration::from_millis(50),
    queue: 256_000,
    loss: 0.01,
    step: None,
    jitter: Duration::from_millis(20),
};

#[test]
fn a_jittery_path_is_filled_at_its_rate() {
    let size = 8 << 20;
    let run = transfer(&JITTERY, size, fresh(), 11);
    let ideal = size as f64 / JITTERY.rate + 0.1;
    // A window of about one BDP at the jitter-low minimum runs out before the acks of a typical
    // round trip come back: with 1.25 BDP + 25 ms it took 22.2 s (1.64 × ideal), paced at the
    // rate under 2 BDP + 25 ms 15.7 s. What is left is startup's: a round's smallest round trip
    // a jitter's worth above the minimum ends it at half the rate, and the cycle's probes find
    // the rest (a search once one shows the path absorbing it).
    assert!(
        run.elapsed.as_secs_f64() < ideal * 1.25,
        "took {:?}, ideal {ideal:.2} s, startup ended by {:?}",
        run.elapsed,
        run.controller.startup_exit()
    );
    let paced = run.controller.pacing_rate().expect("paced in steady state") as f64;
    assert!(paced > JITTERY.rate * 0.8, "paced at {paced}");
}

/// A LEO-like uplink: 20 Mbit/s, 30 ms, a 250 KB queue, 1 % loss.
const LEO: Link = Link {
    rate: 20e6 / 8.0,
    one_way: Duration::from_millis(15),
    queue: 250_000,
    loss: 0.01,
    step: None,
    jitter: Duration::ZERO,
};

#[test]
fn a_path_that_gets_longer_mid_transfer_is_still_filled() {
    // 3 s in, each way takes 25 ms longer (30 → 80 ms): a window sized from the old minimum
    // no longer fills the pipe. With the lifetime minimum this transfer took 74 s.
    let link = Link {
        step: Some((Duration::from_secs(3), Duration::from_millis(25))),
        ..LEO
    };
    let size = 40 << 20;
    let run = transfer(&link, size, fresh(), 9);
    let ideal = size as f64 / link.rate;
    assert!(
        run.elapsed.as_secs_f64() < ideal * 1.15,
        "took {:?}, ideal {ideal:.1} s",
        run.elapsed
    );
    assert!(run.controller.path_min_rtt.get() >= Duration::from_millis(80));
}

#[test]
fn re_measuring_the_minimum_does_not_ratchet_the_queue() {
    // 40 s of lossless transfer: the minimum expires eight times under load. Each probe must
    // find the empty path's 30 ms, not the sender's own queue.
    let link = Link { loss: 0.0, ..LEO };
    let size = 100 << 20;
    let run = transfer(&link, size, fresh(), 10);
    let min_rtt = run.controller.path_min_rtt.get();
    assert!(
        min_rtt < Duration::from_millis(33),
        "minimum {min_rtt:?} on a 30 ms path"
    );
    assert_eq!(run.overflowed_in_steady, 0, "{} lost", run.lost);
    let ideal = size as f64 / link.rate;
    assert!(
        run.elapsed.as_secs_f64() < ideal * 1.06,
        "took {:?}, ideal {ideal:.1} s (probes cost throughput)",
        run.elapsed
    );
}

/// One round: a window of packets sent at `at`, each acknowledged `rtt` later.
fn round_at(controller: &mut DeliveryRate, at: Instant, rtt: Duration) {
    let count = controller.window() / PACKET;
    for _ in 0..count {
        controller.on_sent(at, PACKET);
    }
    for _ in 0..count {
        controller.on_ack(at + rtt, at, PACKET, false);
    }
}

#[test]
fn only_rounds_in_a_row_that_outlast_the_window_start_a_probe() {
    // Steady on a 30 ms path, then past the minimum's expiry with rounds at 40 ms (the
    // sender's own queue) and single jittery rounds at 100 ms: no probe. `flaky-cellular`'s
    // ±20 ms jitter made single rounds like these probe often enough to halve its upload
    // (50.9 s for 2 MB in the `congestion` bench, 21.4 s with this rule).
    let link = Link { loss: 0.0, ..LEO };
    let mut controller = transfer(&link, 4 << 20, fresh(), 12).controller;
    assert_eq!(controller.startup_exit(), Some(StartupExit::BurstMeasured));
    let mut at = origin() + Duration::from_secs(60);
    for rtt in [40, 100, 40, 40, 100, 40, 100, 100, 100, 40] {
        let rtt = Duration::from_millis(rtt);
        round_at(&mut controller, at, rtt);
        at += rtt;
        assert!(
            !controller.path_min_rtt.probing(),
            "probing after a {rtt:?} round"
        );
    }
    // The path got longer: every round now takes 100 ms.
    for _ in 0..UNEXPLAINED_ROUNDS + 1 {
        round_at(&mut controller, at, Duration::from_millis(100));
        at += Duration::from_millis(100);
    }
    assert!(controller.path_min_rtt.probing());
}

/// LTE (`netem/profiles/lte.toml`): 20 Mbit/s, 35 ms and 8 ms of normal jitter each way, a 1 MB
/// queue, 0.1 % loss.
pub(super) const LTE: Link = Link {
    rate: 20e6 / 8.0,
    one_way: Duration::from_millis(35),
    queue: 1_000_000,
    loss: 0.001,
    step: None,
    jitter: Duration::from_millis(8),
};

#[test]
fn a_rate_read_low_in_startup_is_found_by_a_search() {
    // A fresh connection's 10-packet first flight: jitter spreads its acks, the train reads a
    // bottleneck far below the link's, and steady state starts there. The cycle's probes alone
    // grew it a quarter per eight rounds: 4.4-8.9 s for 10 MB over seeds 1-6 (ideal 4.2 s), as
    // the first `docker load` after a few calls took 6.3 s on the `lte` rig.
    let size = 10 << 20;
    let ideal = size as f64 / LTE.rate;
    for seed in 1..=6 {
        let run = transfer(&LTE, size, fresh(), seed);
        assert!(
            run.elapsed.as_secs_f64() < ideal * 1.4,
            "seed {seed}: took {:?}, ideal {ideal:.2} s, startup ended by {:?}, {} searches",
            run.elapsed,
            run.controller.startup_exit(),
            run.controller.searches()
        );
    }
}

#[test]
fn a_path_that_gets_longer_during_startup_is_still_filled() {
    // LEO: 100 Mbit/s, 30 ms, and 150 ms into the transfer a hand-over adds 20 ms each way
    // (`leo-satellite` steps by 30-50 ms every other 15 s). The minimum then held for 5 s
    // capped the window below the longer path's pipe, startup's drain never saw a BDP in
    // flight, and the rate decayed: 2.6-10.4 s for 10 MB over seeds 1-6 (ideal 0.84 s). With
    // the drain bounded and the search's window sized for the round trips it sees: 1.2-2.3 s.
    let link = Link {
        rate: 100e6 / 8.0,
        queue: 1_000_000,
        step: Some((Duration::from_millis(150), Duration::from_millis(20))),
        jitter: Duration::from_millis(2),
        ..LEO
    };
    let size = 10 << 20;
    for seed in 1..=6 {
        let run = transfer(&link, size, fresh(), seed);
        assert!(
            run.elapsed < Duration::from_secs(3),
            "seed {seed}: took {:?}, startup ended by {:?}, minimum {:?}",
            run.elapsed,
            run.controller.startup_exit(),
            run.controller.path_min_rtt.get()
        );
    }
}
