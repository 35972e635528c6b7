//! The path's minimum round trip, kept current.
//!
//! quinn's own minimum is over the connection's whole life. When the path gets longer (a LEO
//! satellite hand-over adds 30–50 ms; a mobile network reroutes) that minimum is too short for
//! good: a window of `1.25 × rate × min_rtt` no longer fills the pipe, each round delivers less
//! than the last and the rate estimate decays. On the `leo-satellite` link a `docker load` that
//! started after a delay step ran at 9 Mbit/s of 100 for the whole transfer.
//!
//! So the minimum expires after [`MinRtt::window`] (BBR's rule). If a packet that left an empty
//! pipe (the first of a flight after nothing was in flight: a check-in) was among the samples
//! since, their smallest replaces the expired minimum: at least one of them carried no queue of
//! ours. Not any app-limited packet: one sent at the tail of a transfer waits behind the whole
//! queue (`flaky-cellular` took a 452 ms sample so). Under load every sample carries our own standing
//! queue, and adopting one would grow the window, the queue and the next sample (a ratchet).
//! A loaded sample that the sender's own queue explains (shorter than its window lasts at the
//! bottleneck rate) keeps the old minimum: the window still fills the pipe. A longer one means
//! the path changed, and the minimum is re-measured by a probe: the window drops to half a
//! bandwidth-delay product until what is in flight has drained, and the packets sent after that
//! measure the empty path (BBRv2's `ProbeRTT`, only when needed).
//!
//! The queue check cannot see one case: a minimum far too short for the path. The window then
//! holds little more than its floor of a few packets, it is all the sender has in flight, the
//! round trip is that window over the rate it delivers, and so the queue "explains" every round:
//! each round delivers what the window allows, the rate follows the window and neither grows.
//! A hub whose connection came up over a sub-millisecond path that then became `lte` (the
//! `image_pull` bench's rig) held a 50 MB pull at ~100 KB/s of 2.5 MB/s for minutes with a
//! minimum of 0.07 ms. So an expired minimum is also re-measured when the smallest sample of its
//! whole window (at least 5 s of them, so jitter has had its low moments) is more than twice it
//! plus the jitter allowance: at steady state the sender's own queue adds at most a quarter of
//! the minimum plus that allowance to the smallest round trip.

use std::time::{Duration, Instant};

use super::pacing::{self, Phase};
use super::{DeliveryRate, Mode, UNEXPLAINED_ROUNDS};

/// The minimum expires after this long without a smaller sample ...
const EXPIRY: Duration = Duration::from_secs(5);
/// ... or this many of its round trips, if longer: on a 600 ms GEO path a probe every 5 s would
/// cost 6 % of the rate, and a 10 MB transfer there takes 5 s.
const EXPIRY_ROUND_TRIPS: u32 = 15;
/// A probe lasts at least this long after the pipe has drained (and at least a round trip).
const PROBE_TIME: Duration = Duration::from_millis(200);
/// A probe that finds the minimum where it was (within a tenth and the jitter allowance) doubles
/// the next expiry, up to 2³ times: the rounds that started it carried a queue of the sender's
/// own, not a longer path. A rate read a few per cent high fills the window with such a queue: on
/// `3g`'s upload the round trips sat at 2.5-3 × the 180 ms minimum, and eight probes every
/// 5-11 s, each finding the same 180 ms, cost that upload ~2.4 s of 170 (the `congestion`
/// bench's trace, session 31). A probe or a check-in that finds the path longer starts the
/// doubling over.
const MAX_CONFIRMATIONS: u32 = 3;

/// The current minimum and, while one runs, the probe re-measuring it.
#[derive(Clone, Debug, Default)]
pub(super) struct MinRtt {
    value: Option<Duration>,
    measured_at: Option<Instant>,
    /// The smallest sample since `measured_at`, and whether one of them left an empty pipe.
    candidate: Option<Duration>,
    quiet_seen: bool,
    /// Boxed: every hub-side connection has a controller, and probes are rare.
    probe: Option<Box<Probe>>,
    /// Probes in a row that found the minimum where it was ([`MAX_CONFIRMATIONS`]).
    confirmations: u32,
}

/// What [`MinRtt::on_sample`] knows of a sample besides its times.
#[derive(Clone, Copy, Debug)]
pub(super) struct Sample {
    /// It left an empty pipe.
    pub(super) quiet: bool,
    /// The sender's own queue explains the round trips of late.
    pub(super) explained: bool,
    /// The steady window's jitter allowance.
    pub(super) allowance: Duration,
}

#[derive(Clone, Copy, Debug, Default)]
struct Probe {
    /// When what was in flight first fell to the probe's window: packets sent from then on see
    /// no queue of ours.
    drained_at: Option<Instant>,
    min: Option<Duration>,
}

impl MinRtt {
    /// A minimum of `rtt`, measured at `now` (a resumed path's).
    pub(super) fn starting_at(now: Instant, rtt: Duration) -> Self {
        let mut min = Self::default();
        min.set(rtt, now);
        min
    }

    /// The minimum round trip, zero before the first sample.
    pub(super) fn get(&self) -> Duration {
        self.value.unwrap_or_default()
    }

    /// Whether a probe is draining the path: the window must be at most half a BDP.
    pub(super) fn probing(&self) -> bool {
        self.probe.is_some()
    }

    /// How long a minimum stays valid without a smaller sample.
    pub(super) fn window(&self) -> Duration {
        EXPIRY.max(self.get() * EXPIRY_ROUND_TRIPS) * (1 << self.confirmations)
    }

    /// A packet sent at `sent` was acknowledged at `now`. `quiet`: it left an empty pipe (the
    /// first packet of a flight after nothing was in flight, such as a check-in). `explained`:
    /// the round trips of late are no longer than the sender's own queue accounts for.
    /// `allowance`: the jitter allowance the steady window holds beyond its gain.
    pub(super) fn on_sample(&mut self, now: Instant, sent: Instant, sample: Sample) {
        let Sample {
            quiet,
            explained,
            allowance,
        } = sample;
        let rtt = now.saturating_duration_since(sent);
        let probe_time = PROBE_TIME.max(self.get());
        if let Some(probe) = &mut self.probe {
            if probe.drained_at.is_some_and(|drained| sent >= drained) {
                probe.min = Some(probe.min.map_or(rtt, |min| min.min(rtt)));
            }
            let long_enough = probe
                .drained_at
                .is_some_and(|drained| now >= drained + probe_time);
            if let (true, Some(min)) = (long_enough, probe.min) {
                self.confirmations = match self.is_longer(min, allowance) {
                    false => (self.confirmations + 1).min(MAX_CONFIRMATIONS),
                    true => 0,
                };
                self.set(min, now);
            }
            return;
        }
        let expired = self
            .measured_at
            .is_none_or(|at| now.saturating_duration_since(at) > self.window());
        self.candidate = Some(self.candidate.map_or(rtt, |min| min.min(rtt)));
        self.quiet_seen |= quiet;
        if self.value.is_none_or(|value| rtt <= value) {
            self.set(rtt, now);
        } else if let (true, true, Some(candidate)) = (expired, self.quiet_seen, self.candidate) {
            // The window's smallest sample, not the quiet one alone: on a jittery path a
            // single sample lands anywhere in ±85 ms (`flaky-cellular`).
            if self.is_longer(candidate, allowance) {
                self.confirmations = 0;
            }
            self.set(candidate, now);
        } else if expired && (!explained || self.outgrown(allowance)) {
            // While the sender's own queue explains the round trips, the window still fills the
            // pipe and no probe is needed (probing at every expiry cost 3 % of a GEO upload).
            self.probe = Some(Box::default());
        }
    }

    /// Whether `rtt` is longer than the minimum by more than a tenth and the jitter allowance:
    /// the path got longer. A probe's minimum is the smallest of a few dozen samples, the
    /// path's of thousands: on `3g` (±15 ms each way) probes found 180-205 ms against a 180 ms
    /// minimum, and a tenth alone read every third one as a longer path.
    fn is_longer(&self, rtt: Duration, allowance: Duration) -> bool {
        rtt > self.get() + self.get() / 10 + allowance
    }

    /// Whether the smallest sample since the minimum was measured is beyond what the sender's
    /// own queue can add to it (see the module's notes).
    fn outgrown(&self, allowance: Duration) -> bool {
        self.candidate
            .is_some_and(|smallest| smallest > self.get() * 2 + allowance)
    }

    /// `in_flight` bytes remain after a batch of acks; the probe's window is `probe_window`.
    pub(super) fn on_in_flight(&mut self, now: Instant, in_flight: u64, probe_window: u64) {
        if let Some(probe) = &mut self.probe {
            if probe.drained_at.is_none() && in_flight <= probe_window {
                probe.drained_at = Some(now);
            }
        }
    }

    fn set(&mut self, rtt: Duration, now: Instant) {
        self.value = Some(rtt);
        self.measured_at = Some(now);
        self.candidate = None;
        self.quiet_seen = false;
        self.probe = None;
    }
}

impl DeliveryRate {
    /// Whether recent rounds' smallest round trips are no longer than the window lasts at the
    /// bottleneck rate (plus a tenth): a queue of the sender's own explains them. At steady
    /// state the window keeps the round trip near that length by design; rounds well beyond it,
    /// [`UNEXPLAINED_ROUNDS`] in a row, mean the path itself got longer. One round is not
    /// enough: with ±20 ms of jitter (`flaky-cellular`) a round's minimum exceeds it now and
    /// then, and probing on each cost that link's upload half its rate.
    pub(super) fn queue_explains_round_trips(&self) -> bool {
        self.unexplained_rounds < UNEXPLAINED_ROUNDS
    }

    /// Whether a round whose smallest round trip was `round_min` is longer than the sender's own
    /// queue explains (plus a tenth). In startup and while its queue drains, that queue is at
    /// most the window; once the pacer sets the rate ([`pacing`]), it is at most the probe
    /// gain's quarter of the minimum, and jitter adds the allowance.
    pub(super) fn outlasts_own_queue(&self, round_min: Duration) -> bool {
        let rate = self.bottleneck_rate();
        if rate == 0 {
            return false;
        }
        let reach = match (self.mode, self.phase) {
            (Mode::Startup, _) | (_, Phase::Drain { .. } | Phase::Search { .. }) => {
                Duration::from_secs_f64(self.window as f64 / rate as f64)
            }
            (Mode::Steady(_), Phase::Cycle { .. }) => {
                self.path_min_rtt.get().mul_f64(pacing::PROBE_GAIN) + self.config.jitter_allowance
            }
        };
        round_min > reach + reach / 10
    }

    /// The window while the minimum round trip is re-measured: half a bandwidth-delay product,
    /// so the bottleneck's queue drains.
    pub(super) fn probe_window(&self) -> u64 {
        self.window_for(self.bottleneck_rate(), self.path_min_rtt.get(), 0.5)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::origin;
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn sample(quiet: bool, explained: bool) -> Sample {
        Sample {
            quiet,
            explained,
            allowance: ms(25),
        }
    }

    #[test]
    fn a_smaller_sample_replaces_the_minimum_at_once() {
        let t = origin();
        let mut min = MinRtt::default();
        min.on_sample(t + ms(40), t, sample(false, true));
        min.on_sample(t + ms(131), t + ms(100), sample(false, true));
        assert_eq!(min.get(), ms(31));
        min.on_sample(t + ms(250), t + ms(200), sample(false, true));
        assert_eq!(min.get(), ms(31), "a larger sample under load is not taken");
    }

    #[test]
    fn a_quiet_sample_replaces_an_expired_minimum() {
        let t = origin();
        let mut min = MinRtt::default();
        min.on_sample(t + ms(30), t, sample(true, true));
        // A check-in after the path got longer.
        let later = t + ms(30) + EXPIRY + ms(1);
        min.on_sample(later + ms(75), later, sample(true, true));
        assert_eq!(min.get(), ms(75));
        assert!(!min.probing());
    }

    #[test]
    fn an_expired_minimum_becomes_the_smallest_sample_since() {
        let t = origin();
        let mut min = MinRtt::default();
        min.on_sample(t + ms(30), t, sample(false, true));
        // Jitter: loaded samples at 60 and 90 ms, then past the expiry a check-in at 120 ms.
        min.on_sample(t + ms(1_060), t + ms(1_000), sample(false, true));
        min.on_sample(t + ms(2_090), t + ms(2_000), sample(false, true));
        let later = t + ms(30) + EXPIRY + ms(1);
        min.on_sample(later + ms(120), later, sample(true, true));
        assert_eq!(min.get(), ms(60));
    }

    #[test]
    fn an_expired_minimum_under_load_is_re_measured_by_a_probe() {
        let t = origin();
        let mut min = MinRtt::default();
        min.on_sample(t + ms(30), t, sample(false, true));
        // Under load past the expiry, rounds of 115 ms: more than the sender's window explains.
        let later = t + ms(30) + EXPIRY + ms(1);
        min.on_sample(later + ms(115), later, sample(false, false));
        assert!(min.probing());
        assert_eq!(min.get(), ms(30), "the loaded sample is not taken");
        // Packets sent before the pipe drained still carry the queue.
        min.on_sample(later + ms(200), later + ms(85), sample(false, true));
        let drained = later + ms(150);
        min.on_in_flight(drained, 10_000, 20_000);
        min.on_sample(drained + ms(76), drained + ms(1), sample(false, true));
        assert!(min.probing(), "a probe lasts at least {PROBE_TIME:?}");
        min.on_sample(drained + ms(250), drained + ms(170), sample(false, true));
        assert!(!min.probing());
        assert_eq!(min.get(), ms(75), "the drained path's round trip");
    }

    #[test]
    fn a_loaded_sample_its_own_queue_explains_keeps_the_minimum_without_a_probe() {
        let t = origin();
        let mut min = MinRtt::default();
        min.on_sample(t + ms(30), t, sample(false, true));
        let later = t + ms(30) + EXPIRY + ms(1);
        min.on_sample(later + ms(55), later, sample(false, true));
        assert!(!min.probing());
        assert_eq!(min.get(), ms(30));
        // Still expired: rounds that the queue no longer explains start the probe at once.
        min.on_sample(later + ms(1_100), later + ms(1_000), sample(false, false));
        assert!(min.probing());
    }

    /// A probe started by a round of `round_trip` at `at` (the minimum expired), drained at
    /// once, that measures `found`; returns when it ended.
    fn probe(min: &mut MinRtt, at: Instant, round_trip: Duration, found: Duration) -> Instant {
        min.on_sample(at + round_trip, at, sample(false, false));
        assert!(min.probing(), "a probe at {:?}", at - origin());
        let drained = at + round_trip;
        min.on_in_flight(drained, 0, 10_000);
        min.on_sample(drained + found, drained, sample(false, true));
        let end = drained + PROBE_TIME + found;
        min.on_sample(end + found, end, sample(false, true));
        assert!(!min.probing());
        end + found
    }

    #[test]
    fn probes_that_find_the_same_minimum_come_ever_further_apart() {
        let t = origin();
        let mut min = MinRtt::default();
        min.on_sample(t + ms(180), t, sample(false, true));
        // `3g`'s upload: the sender's own queue holds the round trips at ~500 ms.
        let mut at = t + ms(180);
        let mut gaps = Vec::new();
        for _ in 0..5 {
            let before = at;
            // Loaded rounds until the minimum has expired and one of them starts a probe.
            loop {
                min.on_sample(at + ms(500), at, sample(false, false));
                if min.probing() {
                    break;
                }
                at += ms(500);
            }
            gaps.push((at - before).as_secs());
            at = probe(&mut min, at, ms(500), ms(185));
            assert_eq!(min.get(), ms(185));
        }
        assert_eq!(gaps, [5, 10, 20, 40, 40]);
        // A probe that finds the path longer (a reroute) starts the doubling over.
        at += min.window() + ms(1);
        probe(&mut min, at, ms(500), ms(300));
        assert_eq!(min.get(), ms(300));
        assert_eq!(min.window(), EXPIRY);
    }

    #[test]
    fn a_long_path_keeps_its_minimum_for_fifteen_round_trips() {
        let t = origin();
        let mut min = MinRtt::default();
        min.on_sample(t + ms(600), t, sample(false, true));
        let later = t + ms(8_000);
        min.on_sample(later + ms(1_100), later, sample(false, false));
        assert!(!min.probing(), "9 s of a 600 ms path is not stale yet");
    }
}

#[cfg(test)]
mod outgrown_tests {
    use super::super::tests::origin;
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn loaded(explained: bool) -> Sample {
        Sample {
            quiet: false,
            explained,
            allowance: ms(25),
        }
    }

    #[test]
    fn a_minimum_far_too_short_is_re_measured_though_the_queue_explains_every_round() {
        let t = origin();
        let mut min = MinRtt::default();
        // The connection came up over a sub-millisecond path ...
        min.on_sample(t + Duration::from_micros(80), t, loaded(true));
        // ... that became a 72 ms one; the window is at its floor, so every round is explained.
        for i in 1..=60u64 {
            let sent = t + ms(100 * i);
            min.on_sample(sent + ms(72), sent, loaded(true));
        }
        assert!(
            min.probing(),
            "an expired 0.08 ms minimum under 72 ms samples"
        );
        let drained = t + ms(6_200);
        min.on_in_flight(drained, 5_000, 5_820);
        min.on_sample(drained + ms(73), drained + ms(1), loaded(true));
        min.on_sample(drained + ms(300), drained + ms(228), loaded(true));
        assert!(!min.probing());
        assert_eq!(min.get(), ms(72), "the path's round trip, measured drained");
    }

    #[test]
    fn a_steady_queue_of_the_senders_own_does_not_start_a_probe() {
        let t = origin();
        let mut min = MinRtt::default();
        min.on_sample(t + ms(54), t, loaded(true));
        // Steady state on LTE: a quarter of the minimum plus 25 ms of standing queue, and jitter.
        for i in 1..=80u64 {
            let sent = t + ms(100 * i);
            min.on_sample(sent + ms(92 + i % 7), sent, loaded(true));
        }
        assert!(!min.probing());
        assert_eq!(min.get(), ms(54));
    }
}
