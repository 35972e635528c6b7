//! Steady state's pacing: the sender paces at the bottleneck rate times a gain that cycles, and the
//! window is only a cap for acks that come late.
//!
//! quinn paces a window over the smoothed round trip (1.25 windows per round trip), so the window
//! set both how much may be in flight and how fast it leaves. On a jittery path those two want
//! different sizes: the minimum round trip reads jitter's low tail (64 ms on `flaky-cellular`,
//! whose round trips are mostly 100–140 ms), a window of 1.25 × rate × that minimum ran out before
//! the acks came back, each round delivered ~80 % of the rate it was sized for, the next estimate
//! was lower, and the download settled at under half the link (BENCHMARKS.md, issue #14). A larger
//! window paced the old way leaves faster too and stands in the queue on every path: on GEO, 1.5 ×
//! BDP overflowed the modem's buffer every round.
//!
//! So, as BBR does, the rate comes from the pacer and the window is wide (two bandwidth-delay
//! products): in flight is the rate times the round trip the path really has, jitter included,
//! and the queue is what the pacing gain puts there. The gain cycles over busy rounds: a quarter
//! more for one round (the probe that lets the rate filter see a faster path), a quarter less
//! for the next (draining what the probe queued), then the rate for six. Leaving startup, the
//! sender first paces at half the rate until no more than a bandwidth-delay product is in flight:
//! startup's overshoot drains instead of standing in the queue.
//!
//! The cycle finds a faster path only a quarter per eight rounds, which is enough to follow a
//! path that changes but not to recover from a startup that ended far below the link: a 10-packet
//! first flight whose acks jitter spread, a delay step or a jittery round read as a queue. The
//! first `docker load` after a few calls on the `lte` rig ran at a quarter of the link for
//! seconds so. A probe whose acks show the rate grown by nearly all of its extra quarter
//! ([`SEARCH_TRIGGER`]) says the pipe absorbed it, so steady state searches: it paces at twice
//! the rate while each round's rate grows by a quarter, then drains what the last round queued
//! (the window's cap of two bandwidth-delay products bounds that queue, and a round that
//! overflows the bottleneck's queue ends the search at once). On a path whose estimate is right
//! a probe's round grows the rate by far less, and no search starts. While it runs, the window
//! is sized for the round trips the search sees, not the minimum: a path that got longer than
//! its minimum says is one reason a rate is found far below the link.
//!
//! quinn-proto learns the rate from [`quinn::congestion::Controller::pacing_rate`], our patch
//! (`vendor/README.md`).

use std::time::Duration;

use super::{DeliveryRate, AGGREGATION_PACKETS};

/// The gain of the cycle's probing round.
pub(crate) const PROBE_GAIN: f64 = 1.25;
/// Pacing gains over busy rounds in steady state (BBR's ProbeBW cycle).
pub(crate) const GAIN_CYCLE: [f64; 8] = [PROBE_GAIN, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
/// The gain while startup's queue drains.
pub(crate) const DRAIN_GAIN: f64 = 0.5;
/// Draining lasts at most this many busy rounds: startup leaves at most two bandwidth-delay
/// products queued (its window is three), and half the rate drains half of one a round. Without
/// a bound, a path that got longer than twice the minimum round trip during startup (a LEO
/// hand-over) never shows a BDP or less in flight at half the rate, and the rate filter decayed
/// round by round to a hundredth of the link (the virtual-clock
/// `a_path_that_gets_longer_during_startup_is_still_filled`).
pub(crate) const DRAIN_ROUNDS: u32 = 4;
/// A probe whose round shows the rate grown by this much found the path far faster than the
/// estimate: the pipe took nearly all of the probe's extra quarter.
pub(crate) const SEARCH_TRIGGER: f64 = 1.2;
/// The gain while searching for the rate after such a probe (BBR's startup paces at 2.89).
pub(crate) const SEARCH_GAIN: f64 = 2.0;
/// A search round must grow the rate by this much to go on.
pub(crate) const SEARCH_GROWTH: f64 = 1.25;

/// Where steady state's pacing is: draining after startup or a search, a phase of the cycle,
/// or a search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Pacing at [`DRAIN_GAIN`] until a BDP or less is in flight, for at most [`DRAIN_ROUNDS`]
    /// (`rounds` so far); then the cycle's probe if `then_probe`, else its cruise.
    Drain { rounds: u32, then_probe: bool },
    /// A round of the gain cycle, and the rate its last probe started from.
    Cycle { index: usize, probed_from: u64 },
    /// A probe showed the path far faster than the estimate: pace at [`SEARCH_GAIN`] while each
    /// round's rate grows by [`SEARCH_GROWTH`] (`last` is the rate at the previous round's end).
    /// The first round's acks are of packets sent before it, so it is not judged.
    Search { last: u64, judged: bool },
}

impl Default for Phase {
    fn default() -> Self {
        Self::draining(true)
    }
}

impl Phase {
    /// The first round of the cycle that paces at the rate itself.
    pub(super) const CRUISE: Self = Self::Cycle {
        index: 2,
        probed_from: 0,
    };
    /// The cycle's last round: the probe is next.
    const BEFORE_PROBE: Self = Self::Cycle {
        index: GAIN_CYCLE.len() - 1,
        probed_from: 0,
    };

    /// Draining begins; `then_probe`: the rate is a rough one (startup's exits, a burst train's),
    /// and the cycle starts with its probe.
    pub(super) fn draining(then_probe: bool) -> Self {
        Self::Drain {
            rounds: 0,
            then_probe,
        }
    }

    /// The cycle's probe, from `rate`.
    fn probing_from(rate: u64) -> Self {
        Self::Cycle {
            index: 0,
            probed_from: rate,
        }
    }

    /// The pacing gain of this phase.
    pub(super) fn gain(self) -> f64 {
        match self {
            Self::Drain { .. } => DRAIN_GAIN,
            Self::Cycle { index, .. } => GAIN_CYCLE[index],
            Self::Search { .. } => SEARCH_GAIN,
        }
    }

    /// A busy round ended with the bottleneck rate at `rate`: the cycle moves on, a probe whose
    /// acks (the round after it) show the path absorbed it starts a search, a search whose round
    /// did not grow the rate drains what it queued, and a drain that outlasted its rounds ends
    /// with a probe (the path may have changed under it). Returns whether a search started.
    pub(super) fn on_round_end(&mut self, rate: u64) -> bool {
        match *self {
            Self::Drain { rounds, .. } if rounds + 1 >= DRAIN_ROUNDS => {
                *self = Self::probing_from(rate);
            }
            Self::Drain { rounds, then_probe } => {
                *self = Self::Drain {
                    rounds: rounds + 1,
                    then_probe,
                };
            }
            Self::Cycle {
                index: 1,
                probed_from,
            } if probed_from > 0 && rate as f64 >= probed_from as f64 * SEARCH_TRIGGER => {
                *self = Self::Search {
                    last: rate,
                    judged: false,
                };
                return true;
            }
            Self::Cycle { index, probed_from } => {
                let index = (index + 1) % GAIN_CYCLE.len();
                let probed_from = if index == 0 { rate } else { probed_from };
                *self = Self::Cycle { index, probed_from };
            }
            Self::Search {
                judged: false,
                last,
            } => *self = Self::Search { last, judged: true },
            Self::Search { last, .. } if rate as f64 >= last as f64 * SEARCH_GROWTH => {
                *self = Self::Search {
                    last: rate,
                    judged: true,
                };
            }
            Self::Search { .. } => *self = Self::draining(false),
        }
        false
    }

    /// `in_flight` bytes are unacknowledged and a bandwidth-delay product is `bdp`: draining ends
    /// once the queue is gone.
    pub(super) fn on_in_flight(&mut self, in_flight: u64, bdp: u64) {
        if let Self::Drain { then_probe, .. } = *self {
            if in_flight <= bdp {
                // The probe starts with the next round: a probe over the rest of this one would
                // be too short to show anything.
                *self = match then_probe {
                    true => Self::BEFORE_PROBE,
                    false => Self::CRUISE,
                };
            }
        }
    }
}

/// The window: a cap over what the pacer sends.
impl DeliveryRate {
    /// The round trip the steady window is sized for: the path's minimum, or while a search runs
    /// ([`pacing`]) this round's smallest round trip if longer. A search starts when the rate
    /// was found far below the link, and one reason is a path that got longer than the minimum
    /// says (a LEO hand-over, +40 ms on a 30 ms path): two bandwidth-delay products at the old
    /// minimum no longer hold what the longer pipe needs, and the search could not grow the rate
    /// past the window (seed 5 of `a_path_that_gets_longer_during_startup_is_still_filled`:
    /// 3.9 s). The search ends when its rate stops growing, and the window is the minimum's again.
    pub(super) fn window_rtt(&self) -> Duration {
        let min_rtt = self.path_min_rtt.get();
        match (self.phase, self.this_round.min_rtt) {
            (Phase::Search { .. }, Some(round_min)) => min_rtt.max(round_min),
            _ => min_rtt,
        }
    }

    /// The steady window at `rate`: [`DeliveryRateConfig::cwnd_gain`] bandwidth-delay products
    /// plus the jitter allowance.
    pub(super) fn steady_window(&self, rate: u64, min_rtt: Duration) -> u64 {
        let allowance = (rate as f64 * self.config.jitter_allowance.as_secs_f64()) as u64;
        self.window_for(rate, min_rtt, self.config.cwnd_gain) + allowance
    }

    /// `gain` bandwidth-delay products at `rate`, plus room for ack aggregation.
    pub(super) fn window_for(&self, rate: u64, min_rtt: Duration, gain: f64) -> u64 {
        let bdp = rate as f64 * min_rtt.as_secs_f64();
        let target = (bdp * gain) as u64 + AGGREGATION_PACKETS * self.mtu;
        target.max(self.min_window())
    }
}

/// `rate` bytes per second times `gain`, as a pacing rate; `None` for no rate.
pub(super) fn paced(rate: u64, gain: f64) -> Option<u64> {
    (rate > 0).then_some((rate as f64 * gain) as u64)
}

/// A bandwidth-delay product at `rate` over `min_rtt`.
pub(super) fn bdp(rate: u64, min_rtt: Duration) -> u64 {
    (rate as f64 * min_rtt.as_secs_f64()) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cycle_probes_one_round_drains_the_next_and_cruises_six() {
        let mut phase = Phase::CRUISE;
        let mut gains = Vec::new();
        for _ in 0..9 {
            gains.push(phase.gain());
            assert!(!phase.on_round_end(1_000_000), "a search on a steady rate");
        }
        assert_eq!(gains, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.25, 0.75, 1.0]);
    }

    #[test]
    fn draining_ends_on_what_is_in_flight_not_on_rounds() {
        let mut phase = Phase::draining(false);
        phase.on_round_end(1_000_000);
        phase.on_in_flight(150_000, 100_000);
        assert_eq!(phase.gain(), DRAIN_GAIN);
        phase.on_in_flight(100_000, 100_000);
        assert_eq!(phase, Phase::CRUISE);
        assert_eq!(phase.gain(), 1.0);
    }

    /// The cycle from its probe, the probe starting from `rate`.
    fn probe_from(rate: u64) -> Phase {
        let mut phase = Phase::Cycle {
            index: GAIN_CYCLE.len() - 1,
            probed_from: 0,
        };
        assert!(!phase.on_round_end(rate));
        assert_eq!(phase.gain(), PROBE_GAIN);
        phase
    }

    #[test]
    fn a_probe_the_path_absorbed_starts_a_search_that_ends_when_the_rate_stops_growing() {
        let mut phase = probe_from(1_000_000);
        assert!(
            !phase.on_round_end(1_000_000),
            "the probe's acks are a round later"
        );
        assert!(
            phase.on_round_end(1_240_000),
            "the probe's quarter went through"
        );
        assert_eq!(phase.gain(), SEARCH_GAIN);
        // Its first round's acks are of packets sent before it: not judged.
        assert!(!phase.on_round_end(1_240_000));
        assert_eq!(phase.gain(), SEARCH_GAIN);
        assert!(!phase.on_round_end(2_400_000));
        assert_eq!(phase.gain(), SEARCH_GAIN, "the rate doubled");
        assert!(!phase.on_round_end(2_600_000));
        assert_eq!(phase, Phase::draining(false), "grew by less than a quarter");
    }

    #[test]
    fn a_probe_that_met_the_bottleneck_does_not_search() {
        let mut phase = probe_from(1_000_000);
        assert!(!phase.on_round_end(1_000_000));
        assert!(!phase.on_round_end(1_100_000));
        assert_eq!(phase.gain(), 1.0);
    }

    #[test]
    fn draining_ends_after_its_rounds_even_with_more_than_a_bdp_in_flight() {
        // A path twice as long as its minimum keeps two BDPs in flight at half the rate: the
        // path changed under the drain, and the cycle starts with a probe.
        let mut phase = Phase::draining(false);
        for _ in 0..DRAIN_ROUNDS {
            assert_eq!(phase.gain(), DRAIN_GAIN);
            phase.on_in_flight(200_000, 100_000);
            phase.on_round_end(1_000_000);
        }
        assert_eq!(phase.gain(), PROBE_GAIN);
    }

    #[test]
    fn a_rough_rate_is_probed_in_the_first_whole_round_after_startup_drained() {
        let mut phase = Phase::draining(true);
        phase.on_in_flight(100_000, 100_000);
        assert_eq!(phase.gain(), 1.0, "the rest of the round");
        phase.on_round_end(1_000_000);
        assert_eq!(phase.gain(), PROBE_GAIN);
        phase.on_round_end(1_000_000);
        assert!(
            phase.on_round_end(1_250_000),
            "the probe started from the drained rate"
        );
    }

    #[test]
    fn no_rate_paces_nothing() {
        assert_eq!(paced(0, 1.25), None);
        assert_eq!(paced(1_000_000, 0.75), Some(750_000));
    }
}
