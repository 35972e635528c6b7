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
//! quinn-proto learns the rate from [`quinn::congestion::Controller::pacing_rate`], our patch
//! (`vendor/README.md`).

use std::time::Duration;

/// The gain of the cycle's probing round.
pub(crate) const PROBE_GAIN: f64 = 1.25;
/// Pacing gains over busy rounds in steady state (BBR's ProbeBW cycle).
pub(crate) const GAIN_CYCLE: [f64; 8] = [PROBE_GAIN, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
/// The gain while startup's queue drains.
pub(crate) const DRAIN_GAIN: f64 = 0.5;

/// Where steady state's pacing is: draining after startup, or a phase of the cycle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum Phase {
    #[default]
    Drain,
    Cycle(usize),
}

impl Phase {
    /// The first round of the cycle that paces at the rate itself.
    pub(super) const CRUISE: Self = Self::Cycle(2);

    /// The pacing gain of this phase.
    pub(super) fn gain(self) -> f64 {
        match self {
            Self::Drain => DRAIN_GAIN,
            Self::Cycle(index) => GAIN_CYCLE[index],
        }
    }

    /// A busy round ended: the cycle moves on (draining ends on what is in flight, not rounds).
    pub(super) fn on_round_end(&mut self) {
        if let Self::Cycle(index) = self {
            *index = (*index + 1) % GAIN_CYCLE.len();
        }
    }

    /// `in_flight` bytes are unacknowledged and a bandwidth-delay product is `bdp`: draining ends
    /// once startup's queue is gone, with the cruise phase that follows the probe's drain.
    pub(super) fn on_in_flight(&mut self, in_flight: u64, bdp: u64) {
        if *self == Self::Drain && in_flight <= bdp {
            *self = Self::CRUISE;
        }
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
        let mut phase = Phase::Cycle(0);
        let mut gains = Vec::new();
        for _ in 0..9 {
            gains.push(phase.gain());
            phase.on_round_end();
        }
        assert_eq!(gains, [1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.25]);
    }

    #[test]
    fn draining_ends_on_what_is_in_flight_not_on_rounds() {
        let mut phase = Phase::Drain;
        phase.on_round_end();
        phase.on_in_flight(150_000, 100_000);
        assert_eq!(phase, Phase::Drain);
        phase.on_in_flight(100_000, 100_000);
        assert_eq!(phase, Phase::Cycle(2));
        assert_eq!(phase.gain(), 1.0);
    }

    #[test]
    fn no_rate_paces_nothing() {
        assert_eq!(paced(0, 1.25), None);
        assert_eq!(paced(1_000_000, 0.75), Some(750_000));
    }
}
