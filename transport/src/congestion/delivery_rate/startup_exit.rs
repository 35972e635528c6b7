//! Why startup ended, kept so tests and traces can tell the exits apart: each is tuned
//! against a different link (the burst on GEO, the delay signal on LTE's jitter, overflow on a
//! modem's queue, the plateau where nothing else fires), and a change that moves a transfer from
//! one exit to another changes its speed by seconds. The checks that end startup live here too.

use std::time::Duration;

use super::pacing::Phase;
use super::{
    DeliveryRate, Mode, FULL_PIPE_GROWTH, FULL_PIPE_ROUNDS, MIN_ACKS_FOR_ACK_RATE,
    QUEUE_DELAY_FLOOR, STARTUP_LOSS_EXIT, STARTUP_LOSS_EXIT_PACKETS, STARTUP_QUEUE_SHARE,
};

/// Why startup ended: what showed the controller the pipe was full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartupExit {
    /// The first flight's burst came back spaced by a bottleneck, and its rate is the window's.
    BurstMeasured,
    /// A round's smallest round trip showed a standing queue (HyStart's delay signal).
    QueueDelay,
    /// A round lost more than 5 % of what it delivered (`STARTUP_LOSS_EXIT`) while its round
    /// trips showed a queue: the bottleneck's queue overflowed.
    QueueOverflow,
    /// The rate stopped growing by a quarter (`FULL_PIPE_GROWTH`) for two rounds
    /// (`FULL_PIPE_ROUNDS`).
    RatePlateau,
    /// A round trip matched a rate the path delivered before (an outage ago, or on the device's
    /// last connection), and the controller resumed at it (`resume`).
    Resumed,
}

/// The checks that end startup.
impl DeliveryRate {
    /// Startup is over for `reason`; the first reason found is the one kept.
    /// Startup's queue drains first ([`super::pacing`]), except after a resume, which starts
    /// from an empty pipe.
    pub(super) fn leave_startup(&mut self, reason: StartupExit) {
        if self.mode == Mode::Startup {
            self.mode = Mode::Steady(reason);
            self.phase = match reason {
                StartupExit::Resumed => Phase::CRUISE,
                _ => Phase::draining(true),
            };
        }
    }

    /// Whether the round's smallest RTT sample shows a standing queue. The round's minimum, not
    /// each sample: per-packet jitter (±10 ms on LTE) would end startup at a tenth of the rate.
    pub(super) fn queue_is_building(&self) -> bool {
        let (Some(round_min), Some(threshold)) =
            (self.this_round.min_rtt, self.queue_delay_threshold())
        else {
            return false;
        };
        let queued = round_min.saturating_sub(self.path_min_rtt.get());
        self.this_round.acks >= MIN_ACKS_FOR_ACK_RATE && queued > threshold
    }

    /// The queueing delay above the minimum RTT that says the pipe is full, once there is one.
    pub(super) fn queue_delay_threshold(&self) -> Option<Duration> {
        let threshold = self.path_min_rtt.get().mul_f64(STARTUP_QUEUE_SHARE);
        (!self.path_min_rtt.get().is_zero()).then(|| threshold.max(QUEUE_DELAY_FLOOR))
    }

    /// Whether a round that delivered `delivered` bytes and lost `lost` shows the bottleneck's
    /// queue overflowing rather than random loss: an overflowing queue also delays what it
    /// delivers. A burst of loss at the path's minimum round trip (a fade, a cell edge, 12 of
    /// the hub's first 48 packets after a GEO upload in the `congestion` bench) is not a full
    /// pipe, and ending startup on it left a 10 MB download at a tenth of the rate for 10 s.
    pub(super) fn overflowing(&self, delivered: u64, lost: u64) -> bool {
        let queued = self
            .queue_delay_threshold()
            .is_some_and(|threshold| self.this_round.max_rtt > self.path_min_rtt.get() + threshold);
        queued
            && lost as f64 > delivered as f64 * STARTUP_LOSS_EXIT
            && lost > STARTUP_LOSS_EXIT_PACKETS * self.mtu
    }

    /// Leave startup, or a steady state's search for the rate ([`Phase::Search`]), as soon as an
    /// ack or a loss shows the pipe full, without waiting for the round to end: on a 600 ms path
    /// startup's window grows by half the link's bandwidth-delay product in the rest of a round,
    /// all of it overflowing the queue, and a search paces at twice the rate.
    pub(super) fn exit_early(&mut self) {
        let searching = self.mode != Mode::Startup && matches!(self.phase, Phase::Search { .. });
        if !(self.mode == Mode::Startup || searching) || !self.this_round.busy {
            return;
        }
        // Against at least what the last round delivered: early in a round a short burst of
        // loss (a cell edge, flaky-cellular's bursts) is a large share of the little delivered
        // so far, and ended startup at a fraction of the rate.
        let delivered = self.this_round.delivered.max(self.last_round_delivered);
        let full = if self.queue_is_building() && !searching {
            StartupExit::QueueDelay
        } else if self.overflowing(delivered, self.this_round.lost) {
            StartupExit::QueueOverflow
        } else {
            return;
        };
        match searching {
            true => self.phase = Phase::draining(false),
            false => self.leave_startup(full),
        }
    }

    pub(super) fn check_full_pipe(&mut self) {
        let rate = self.bottleneck_rate();
        if rate as f64 >= self.full_rate as f64 * FULL_PIPE_GROWTH {
            self.full_rate = rate;
            self.rounds_without_growth = 0;
            return;
        }
        self.rounds_without_growth += 1;
        if self.rounds_without_growth >= FULL_PIPE_ROUNDS {
            self.leave_startup(StartupExit::RatePlateau);
        }
    }
}
