//! How the sender came back from a silence: no ack for a while with data in flight — an outage, a
//! coverage hole, a hand-over — and what it delivered in the round trips after the path returned.
//!
//! Issue #14 asks that within two round trips after a 5 s outage the sender be back at half its
//! rate or more. Whether quinn calls a silence persistent congestion (and the controller resumes,
//! [`super::resume`]) or not (and it keeps its state) depends on how the silence falls against
//! the probe timeouts: the same 5 s outage on GEO is one or the other as a loaded machine stretches
//! the round-trip variance. So the recovery is measured here, the same way in both cases, from the
//! controller's own samples: the bottleneck rate when the first ack after the silence arrives
//! (before anything resets), and the best delivery rate of the [`RECOVERY_ROUNDS`] busy rounds
//! that follow — each judged, as a resume's loan is, by the better of its samples and its acks'
//! spacing, since the first round after a silence leaves a near-empty pipe and its samples show
//! about half of what its acks do.

use std::time::{Duration, Instant};

use super::DeliveryRate;

/// No ack for this long with data in flight is a silence, or [`SILENCE_ROUND_TRIPS`] minimum
/// round trips where that is longer: a busy sender hears acks every few milliseconds, and even a
/// GEO flight's first ack (600 ms, plus a queue) comes well within it.
pub(crate) const SILENCE_FLOOR: Duration = Duration::from_secs(1);
/// See [`SILENCE_FLOOR`].
const SILENCE_ROUND_TRIPS: u32 = 3;
/// Busy rounds after a silence over which the recovery is measured (issue #14: two round trips).
pub(crate) const RECOVERY_ROUNDS: u64 = 2;

/// The last silence and the recovery after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SilenceRecord {
    /// How long no ack arrived.
    pub length: Duration,
    /// The bottleneck rate when it ended, bytes per second.
    pub before: u64,
    /// The best delivery rate of the busy rounds measured after it, bytes per second.
    pub after: u64,
    /// Busy rounds measured after it, up to [`RECOVERY_ROUNDS`].
    pub rounds: u64,
}

/// Silences the sender saw, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SilenceStats {
    /// Silences with data in flight.
    pub silences: u32,
    /// The last one.
    pub last: Option<SilenceRecord>,
}

/// A recovery being measured.
#[derive(Clone, Copy, Debug)]
struct Recovery {
    /// When the first ack after the silence arrived: packets sent from then on are the sender's
    /// answer to the returned path.
    ended_at: Instant,
    /// The round of the first ack of such a packet: the recovery's first round.
    from_round: Option<u64>,
    /// The best sample in the current round.
    round_best: u64,
}

/// The controller's silence tracking. It outlives a reset by persistent congestion, as the
/// resume state does.
#[derive(Clone, Debug, Default)]
pub(super) struct Silences {
    stats: SilenceStats,
    recovering: Option<Recovery>,
}

impl Silences {
    /// The counts so far.
    pub(super) fn stats(&self) -> SilenceStats {
        self.stats
    }

    /// An ack arrived at `now`; the last one (or the send that started the flight) was at
    /// `previous`, with data in flight since. `rate` is the bottleneck rate as it stands.
    pub(super) fn on_ack_after(
        &mut self,
        now: Instant,
        previous: Instant,
        min_rtt: Duration,
        rate: u64,
    ) {
        let length = now.saturating_duration_since(previous);
        if length < SILENCE_FLOOR.max(min_rtt * SILENCE_ROUND_TRIPS) {
            return;
        }
        self.stats.silences = self.stats.silences.saturating_add(1);
        self.stats.last = Some(SilenceRecord {
            length,
            before: rate,
            after: 0,
            rounds: 0,
        });
        self.recovering = Some(Recovery {
            ended_at: now,
            from_round: None,
            round_best: 0,
        });
    }

    /// A packet sent at `sent` was acknowledged in round `round`: the first sent since the
    /// silence ended starts the recovery's rounds.
    pub(super) fn on_acked(&mut self, sent: Instant, round: u64) {
        if let Some(recovery) = self
            .recovering
            .as_mut()
            .filter(|r| r.from_round.is_none() && sent >= r.ended_at)
        {
            recovery.from_round = Some(round);
        }
    }

    /// A delivery-rate sample.
    pub(super) fn on_sample(&mut self, rate: u64) {
        if let Some(recovery) = self.recovering.as_mut().filter(|r| r.from_round.is_some()) {
            recovery.round_best = recovery.round_best.max(rate);
        }
    }

    /// Busy round `round` ended; its acks arrived at `ack_rate`.
    pub(super) fn on_round_end(&mut self, round: u64, ack_rate: u64) {
        let Some(recovery) = &mut self.recovering else {
            return;
        };
        let best = std::mem::take(&mut recovery.round_best).max(ack_rate);
        let Some(from) = recovery.from_round else {
            return;
        };
        if let Some(last) = &mut self.stats.last {
            last.rounds = round + 1 - from;
            last.after = last.after.max(best);
        }
        if round + 1 >= from + RECOVERY_ROUNDS {
            self.recovering = None;
        }
    }
}

impl DeliveryRate {
    /// Since when the sender has waited for an ack: the last ack, or the first send of a flight
    /// that left an empty pipe.
    pub(super) fn last_heard(&self) -> Option<Instant> {
        match (self.idle, self.sent_into_empty_pipe) {
            (true, Some(first_send)) => Some(first_send),
            _ => self.latest_rtt.map(|(at, _)| at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::origin;
    use super::*;

    const RTT: Duration = Duration::from_millis(100);

    #[test]
    fn a_pause_shorter_than_the_floor_is_no_silence() {
        let start = origin();
        let mut silences = Silences::default();
        silences.on_ack_after(start + Duration::from_millis(900), start, RTT, 1_000);
        assert_eq!(silences.stats(), SilenceStats::default());
        let long_path = Duration::from_millis(600);
        silences.on_ack_after(
            start + Duration::from_millis(1_700),
            start,
            long_path,
            1_000,
        );
        assert_eq!(silences.stats().silences, 0, "three of GEO's round trips");
    }

    #[test]
    fn the_recovery_counts_rounds_from_the_first_packet_sent_after_the_silence() {
        let start = origin();
        let back = start + Duration::from_secs(5);
        let mut silences = Silences::default();
        silences.on_ack_after(back, start, RTT, 600_000);
        // Acks of packets sent before the silence ended (retransmitted stragglers) do not count.
        silences.on_acked(start, 7);
        silences.on_sample(50_000);
        silences.on_round_end(7, 60_000);
        assert_eq!(silences.stats().last.unwrap().rounds, 0);
        // The first round from a near-empty pipe: samples show half, the ack spacing all.
        silences.on_acked(back + RTT / 10, 8);
        silences.on_sample(300_000);
        silences.on_round_end(8, 580_000);
        silences.on_sample(590_000);
        silences.on_round_end(9, 0);
        silences.on_sample(900_000);
        silences.on_round_end(10, 0);
        let last = silences.stats().last.unwrap();
        assert_eq!(last.length, Duration::from_secs(5));
        assert_eq!(last.before, 600_000);
        assert_eq!(last.after, 590_000, "two rounds, not the third");
        assert_eq!(last.rounds, RECOVERY_ROUNDS);
        assert_eq!(silences.stats().silences, 1);
    }
}
