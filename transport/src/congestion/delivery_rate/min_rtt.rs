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

use std::time::{Duration, Instant};

/// The minimum expires after this long without a smaller sample ...
const EXPIRY: Duration = Duration::from_secs(5);
/// ... or this many of its round trips, if longer: on a 600 ms GEO path a probe every 5 s would
/// cost 6 % of the rate, and a 10 MB transfer there takes 5 s.
const EXPIRY_ROUND_TRIPS: u32 = 15;
/// A probe lasts at least this long after the pipe has drained (and at least a round trip).
const PROBE_TIME: Duration = Duration::from_millis(200);

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
        EXPIRY.max(self.get() * EXPIRY_ROUND_TRIPS)
    }

    /// A packet sent at `sent` was acknowledged at `now`. `quiet`: it left an empty pipe (the
    /// first packet of a flight after nothing was in flight, such as a check-in). `explained`:
    /// the round trips of late are no longer than the sender's own queue accounts for.
    pub(super) fn on_sample(&mut self, now: Instant, sent: Instant, quiet: bool, explained: bool) {
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
            self.set(candidate, now);
        } else if expired && !explained {
            // While the sender's own queue explains the round trips, the window still fills the
            // pipe and no probe is needed (probing at every expiry cost 3 % of a GEO upload).
            self.probe = Some(Box::default());
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_smaller_sample_replaces_the_minimum_at_once() {
        #[allow(clippy::disallowed_methods)] // one real instant anchors the virtual clock
        let t = Instant::now();
        let mut min = MinRtt::default();
        min.on_sample(t + ms(40), t, false, true);
        min.on_sample(t + ms(131), t + ms(100), false, true);
        assert_eq!(min.get(), ms(31));
        min.on_sample(t + ms(250), t + ms(200), false, true);
        assert_eq!(min.get(), ms(31), "a larger sample under load is not taken");
    }

    #[test]
    fn a_quiet_sample_replaces_an_expired_minimum() {
        #[allow(clippy::disallowed_methods)] // one real instant anchors the virtual clock
        let t = Instant::now();
        let mut min = MinRtt::default();
        min.on_sample(t + ms(30), t, true, true);
        // A check-in after the path got longer.
        let later = t + ms(30) + EXPIRY + ms(1);
        min.on_sample(later + ms(75), later, true, true);
        assert_eq!(min.get(), ms(75));
        assert!(!min.probing());
    }

    #[test]
    fn an_expired_minimum_becomes_the_smallest_sample_since() {
        #[allow(clippy::disallowed_methods)] // one real instant anchors the virtual clock
        let t = Instant::now();
        let mut min = MinRtt::default();
        min.on_sample(t + ms(30), t, false, true);
        // Jitter: loaded samples at 60 and 90 ms, then past the expiry a check-in at 120 ms.
        min.on_sample(t + ms(1_060), t + ms(1_000), false, true);
        min.on_sample(t + ms(2_090), t + ms(2_000), false, true);
        let later = t + ms(30) + EXPIRY + ms(1);
        min.on_sample(later + ms(120), later, true, true);
        assert_eq!(min.get(), ms(60));
    }

    #[test]
    fn an_expired_minimum_under_load_is_re_measured_by_a_probe() {
        #[allow(clippy::disallowed_methods)] // one real instant anchors the virtual clock
        let t = Instant::now();
        let mut min = MinRtt::default();
        min.on_sample(t + ms(30), t, false, true);
        // Under load past the expiry, rounds of 115 ms: more than the sender's window explains.
        let later = t + ms(30) + EXPIRY + ms(1);
        min.on_sample(later + ms(115), later, false, false);
        assert!(min.probing());
        assert_eq!(min.get(), ms(30), "the loaded sample is not taken");
        // Packets sent before the pipe drained still carry the queue.
        min.on_sample(later + ms(200), later + ms(85), false, true);
        let drained = later + ms(150);
        min.on_in_flight(drained, 10_000, 20_000);
        min.on_sample(drained + ms(76), drained + ms(1), false, true);
        assert!(min.probing(), "a probe lasts at least {PROBE_TIME:?}");
        min.on_sample(drained + ms(250), drained + ms(170), false, true);
        assert!(!min.probing());
        assert_eq!(min.get(), ms(75), "the drained path's round trip");
    }

    #[test]
    fn a_loaded_sample_its_own_queue_explains_keeps_the_minimum_without_a_probe() {
        #[allow(clippy::disallowed_methods)] // one real instant anchors the virtual clock
        let t = Instant::now();
        let mut min = MinRtt::default();
        min.on_sample(t + ms(30), t, false, true);
        let later = t + ms(30) + EXPIRY + ms(1);
        min.on_sample(later + ms(55), later, false, true);
        assert!(!min.probing());
        assert_eq!(min.get(), ms(30));
        // Still expired: rounds that the queue no longer explains start the probe at once.
        min.on_sample(later + ms(1_100), later + ms(1_000), false, false);
        assert!(min.probing());
    }

    #[test]
    fn a_long_path_keeps_its_minimum_for_fifteen_round_trips() {
        #[allow(clippy::disallowed_methods)] // one real instant anchors the virtual clock
        let t = Instant::now();
        let mut min = MinRtt::default();
        min.on_sample(t + ms(600), t, false, true);
        let later = t + ms(8_000);
        min.on_sample(later + ms(1_100), later, false, false);
        assert!(!min.probing(), "9 s of a 600 ms path is not stale yet");
    }
}
