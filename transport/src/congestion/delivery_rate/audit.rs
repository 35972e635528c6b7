//! The cycle's audit, while the sender yields: did the path deliver the rate steady state paced
//! at?
//!
//! The bottleneck rate is the largest sample of the last ten rounds, and on a jittery path the
//! largest sample reads high. Jitter that bunches acks makes some per-packet samples show up to
//! ~15 % more than the path carries, and the filter keeps the highest for ten rounds (on the
//! `lte` link, 20 Mbit/s with ±8 ms each way: 2.65–2.85 MB/s held against the link's 2.5). Paced
//! at that, the sender adds a tenth of the rate to the queue every round until the window's cap
//! (two bandwidth-delay products plus 25 ms) stops it: a standing queue of 60–90 ms (the
//! `congestion` bench's `--trace-ms`: round trips of 140–160 ms on a 70 ms path; 61 ms on average
//! on the virtual-clock LTE link). Every `docker ps` through the hub while an image flows waits
//! behind it: +79 to +87 ms on lte's 70 ms path (BENCHMARKS.md, session 26), over issue #16's
//! bound of one round trip.
//!
//! So while only background transfers are sending (the hub serving image blobs: the sender
//! *yields*, [`DeliveryRate::set_yielding`]), the cycle's cruise is audited as one span of four
//! rounds: the bytes the path delivered over them (four round trips average out the jitter that
//! a single sample reads) against the rate they were paced at. A path that delivered clearly
//! less while a queue stood at the span's end was being overfilled: the rate
//! is corrected to what it delivered, samples of packets sent before the correction are dropped
//! (they left at the rate that overfilled), the probe is skipped and steady state drains the
//! queue. And no sample reads more than its packet was paced at. On the virtual-clock LTE link
//! the queue after startup falls to 22–41 ms on average (the test below).
//!
//! Why only while yielding: on a path whose jitter is most of its round trip (the virtual
//! `JITTERY` link, `flaky-cellular`'s 64 ms minimum under 100–140 ms round trips) the audit and
//! the cap cost about 5 % of the rate (16 seeds: 15.7 s against 14.9 s on average). A `docker
//! load` is waited for as a whole and wants the rate; an image pre-pull is waited for by nobody,
//! and the calls an admin makes meanwhile want the short queue.
//!
//! The guards keep a slow span from being read as an overfilled path, which would pull the rate
//! down cycle after cycle:
//! - the span's last two rounds must show a queue of at least half of what the overfill would
//!   have queued over the span (the window's cap stops a queue from growing further, so its
//!   level is the sign, not its growth). A sender held back by something else (the receiver, a
//!   window that a spike in the round trip filled) falls short with no queue behind it;
//! - no round may be app-limited (the sender had less to send);
//! - losses stay under [`AUDIT_MAX_LOSS`] of what was delivered (`flaky-cellular`'s bursts and
//!   outages are for [`super::silence`] and the loss recovery, not the audit).
//!
//! A correction cannot feed on itself: the window is two bandwidth-delay products plus 25 ms, so
//! at the corrected rate it holds more than the path's round trip needs unless the round trip is
//! more than twice its minimum, which is a queue; and the cycle's next probe finds any rate the
//! correction undershot.

use std::time::{Duration, Instant};

use super::max_filter::MaxFilter;
use super::pacing::Phase;
use super::round::RoundStats;
use super::DeliveryRate;

/// The span must have delivered less than the paced rate by this factor to count as overfilled.
pub(super) const AUDIT_MARGIN: f64 = 1.05;
/// A span that lost more than this share of what it delivered is not audited.
pub(super) const AUDIT_MAX_LOSS: f64 = 0.02;
/// The span's last rounds must show at least this much queue, whatever the overfill.
const MIN_QUEUE: Duration = Duration::from_millis(10);
/// The span's last rounds whose smallest round trips are averaged for the queue it left.
const LATEST: usize = 2;

/// What one audited round showed.
#[derive(Clone, Copy, Debug)]
pub(super) struct AuditedRound {
    /// When it ended, and the controller's delivered total then.
    pub(super) at: Instant,
    pub(super) delivered: u64,
    /// Bytes it lost.
    pub(super) lost: u64,
    /// Its smallest round trip.
    pub(super) min_rtt: Option<Duration>,
    /// Whether the sender had less to send.
    pub(super) app_limited: bool,
}

/// Where the span started.
#[derive(Clone, Copy, Debug)]
struct Start {
    at: Instant,
    delivered: u64,
    /// Bytes lost in the span's rounds so far.
    lost: u64,
    /// The smallest round trips of the span's last rounds.
    min_rtts: Latest,
    app_limited: bool,
}

/// The smallest round trips of a span's latest [`LATEST`] rounds.
#[derive(Clone, Copy, Debug, Default)]
struct Latest {
    rtts: [Duration; LATEST],
    count: usize,
}

impl Latest {
    fn push(&mut self, rtt: Duration) {
        self.rtts[self.count % LATEST] = rtt;
        self.count += 1;
    }

    /// Their mean (one round's minimum moves with jitter); `None` before there are enough.
    fn mean(&self) -> Option<Duration> {
        (self.count >= LATEST).then(|| self.rtts.iter().sum::<Duration>() / LATEST as u32)
    }
}

/// The audit of the cruise rounds of one cycle.
#[derive(Clone, Debug, Default)]
pub(super) struct Audit {
    start: Option<Start>,
}

impl Audit {
    /// The span starts with the round that ended now: the next rounds' acks are of packets paced
    /// at the cruise rate.
    pub(super) fn begin(&mut self, round: AuditedRound) {
        self.start = Some(Start {
            at: round.at,
            delivered: round.delivered,
            lost: 0,
            min_rtts: Latest::default(),
            app_limited: false,
        });
    }

    /// A round inside the span ended.
    pub(super) fn on_round(&mut self, round: AuditedRound) {
        if let Some(start) = &mut self.start {
            if let Some(rtt) = round.min_rtt {
                start.min_rtts.push(rtt);
            }
            start.lost += round.lost;
            start.app_limited |= round.app_limited;
        }
    }

    /// Steady state left the cycle (a search, a drain, an outage): no verdict on this span.
    pub(super) fn cancel(&mut self) {
        self.start = None;
    }

    /// The span's last round ended; it was paced at `paced` bytes per second on a path whose
    /// minimum round trip is `min_rtt`. The rate the path delivered if it was clearly overfilled.
    pub(super) fn finish(
        &mut self,
        last: AuditedRound,
        paced: u64,
        min_rtt: Duration,
    ) -> Option<u64> {
        self.on_round(last);
        let start = self.start.take()?;
        Self::verdict(start, last, paced, min_rtt).flatten()
    }

    /// `None` for a span that shows nothing (app-limited, lossy); else the rate the path
    /// delivered if it was overfilled.
    fn verdict(
        start: Start,
        last: AuditedRound,
        paced: u64,
        min_rtt: Duration,
    ) -> Option<Option<u64>> {
        if start.app_limited {
            return None;
        }
        let span = last.at.checked_duration_since(start.at)?;
        let delivered = last.delivered.checked_sub(start.delivered)?;
        if span.is_zero() || start.lost as f64 > delivered as f64 * AUDIT_MAX_LOSS {
            return None;
        }
        let rate = delivered as f64 / span.as_secs_f64();
        if rate * AUDIT_MARGIN >= paced as f64 {
            return Some(None);
        }
        // Pacing above the path's rate queues the difference, up to the window's cap: over the
        // span this much, and the last rounds must show at least half of it.
        let queued = span.mul_f64(paced as f64 / rate - 1.0);
        let queue = start.min_rtts.mean()?.saturating_sub(min_rtt);
        Some((queue >= MIN_QUEUE && queue >= queued / 2).then_some(rate as u64))
    }
}

impl DeliveryRate {
    /// The cycle's cruise overfilled the path, which delivered `rate`: the filters start over
    /// from it, and the queue the overfill built drains.
    pub(super) fn correct_rate(&mut self, now: Instant, rate: u64) {
        self.rate = MaxFilter::default();
        self.rate.update(self.round, rate);
        self.spacing = MaxFilter::default();
        self.spacing.update(self.round, rate);
        self.train_rate = None;
        self.phase = Phase::draining(false);
        self.corrections = self.corrections.saturating_add(1);
        self.corrected_at = Some(now);
    }

    /// A round ended in steady state, now: counted in the cycle's audit. The rate the path
    /// delivered when the audit found the cruise overfilling it.
    pub(super) fn audit_round(&mut self, now: Instant, ended: &RoundStats) -> Option<u64> {
        let round = AuditedRound {
            at: now,
            delivered: self.delivered,
            lost: ended.lost,
            min_rtt: ended.min_rtt,
            app_limited: ended.app_limited,
        };
        let lent = self.resume.lent_rate(self.round) > 0;
        // The phase is the one the ended round's packets left in; its acks were of packets sent
        // in the phase before. The span is the acks of the packets sent in the cruise's second
        // to fifth rounds: a drain that ended mid-round paced some of the first round's at half
        // the rate (counting them, each correction's drain made the next span fall short, and
        // the rate walked down a tenth per cycle on the virtual LTE link).
        match self.phase {
            _ if lent || !self.yielding => self.audit.cancel(),
            Phase::Cycle { index: 3, .. } => self.audit.begin(round),
            Phase::Cycle { index: 4..=6, .. } => self.audit.on_round(round),
            // Before the probe leaves: a rate found too high is not probed from.
            Phase::Cycle { index: 7, .. } => {
                let (paced, min_rtt) = (self.bottleneck_rate(), self.path_min_rtt.get());
                return self.audit.finish(round, paced, min_rtt);
            }
            _ => self.audit.cancel(),
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{fresh, origin, transfer, LTE};
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Six rounds of 100 ms from `t0`, delivering `rate` bytes a second, their smallest round
    /// trips rising by `rise_per_round` from the path's minimum, 70 ms.
    fn span(audit: &mut Audit, t0: Instant, rate: u64, rise_per_round: Duration) -> AuditedRound {
        let round = |i: u32| AuditedRound {
            at: t0 + 100 * MS * i,
            delivered: rate / 10 * u64::from(i),
            lost: 0,
            min_rtt: Some(70 * MS + rise_per_round * i),
            app_limited: false,
        };
        audit.begin(round(0));
        for i in 1..6 {
            audit.on_round(round(i));
        }
        round(6)
    }

    /// Within a byte a second: the span's rate is a division.
    fn about(found: Option<u64>, rate: u64) -> bool {
        found.is_some_and(|found| found.abs_diff(rate) <= 1)
    }

    #[test]
    fn a_path_that_delivered_less_while_a_queue_grew_was_overfilled() {
        let mut audit = Audit::default();
        let last = span(&mut audit, origin(), 2_500_000, 7 * MS);
        let found = audit.finish(last, 2_750_000, 70 * MS);
        assert!(about(found, 2_500_000), "{found:?}");
    }

    #[test]
    fn a_queue_standing_at_the_windows_cap_is_an_overfill() {
        // The window stopped the queue growing: 80 ms of it through the whole span.
        let mut audit = Audit::default();
        let mut last = span(&mut audit, origin(), 2_500_000, Duration::ZERO);
        for _ in 0..LATEST {
            last.min_rtt = Some(150 * MS);
            audit.on_round(last);
        }
        let found = audit.finish(last, 2_750_000, 70 * MS);
        assert!(about(found, 2_500_000), "{found:?}");
    }

    #[test]
    fn a_path_that_delivered_the_paced_rate_is_not_corrected() {
        let mut audit = Audit::default();
        let last = span(&mut audit, origin(), 2_500_000, 7 * MS);
        assert_eq!(
            audit.finish(last, 2_600_000, 70 * MS),
            None,
            "within the margin"
        );
        let last = span(&mut audit, origin(), 2_500_000, 7 * MS);
        assert!(
            about(audit.finish(last, 2_700_000, 70 * MS), 2_500_000),
            "past it"
        );
    }

    #[test]
    fn a_shortfall_without_a_queue_is_not_an_overfill() {
        // Round trips at the minimum: the window or the receiver set the pace, not the path.
        let mut audit = Audit::default();
        let last = span(&mut audit, origin(), 2_000_000, Duration::ZERO);
        assert_eq!(audit.finish(last, 2_750_000, 70 * MS), None);
    }

    #[test]
    fn a_span_with_an_app_limited_round_has_no_verdict() {
        let mut audit = Audit::default();
        let mut last = span(&mut audit, origin(), 2_500_000, 7 * MS);
        last.app_limited = true;
        assert_eq!(audit.finish(last, 2_750_000, 70 * MS), None);
    }

    #[test]
    fn one_late_round_is_not_a_queue() {
        // Round trips at the minimum but for a jittery last round: averaged with the round
        // before, less than half of what a 37 % overfill queues over the span.
        let mut audit = Audit::default();
        let mut last = span(&mut audit, origin(), 2_000_000, Duration::ZERO);
        last.min_rtt = Some(110 * MS);
        assert_eq!(audit.finish(last, 2_750_000, 70 * MS), None);
    }

    #[test]
    fn a_lossy_span_is_left_to_loss_recovery() {
        let mut audit = Audit::default();
        let mut last = span(&mut audit, origin(), 2_500_000, 7 * MS);
        last.lost = last.delivered / 30;
        assert_eq!(audit.finish(last, 2_750_000, 70 * MS), None);
    }

    #[test]
    fn the_cruise_on_a_jittery_lte_path_does_not_queue_to_the_window_cap() {
        // `lte`: 70 ms, ±8 ms each way. The rate filter's largest sample reads high, and paced
        // at it the sender queued until the window's cap: without the audit, 52-68 ms on
        // average after startup over these seeds (70-90 ms in the `congestion` bench), what
        // every `docker ps` during an image pull waited behind. With it, 22-41 ms: what a
        // probe's inflated samples queue before the next audit finds them out.
        let size = 30 << 20;
        let ideal = size as f64 / LTE.rate;
        for seed in 1..=8 {
            let mut controller = fresh();
            controller.set_yielding(true);
            let run = transfer(&LTE, size, controller, seed);
            let (queue, corrections) = (run.queue_in_steady, run.controller.corrections());
            assert!(
                queue < 45 * MS && corrections > 0,
                "seed {seed}: {queue:?} queued on average after startup, {corrections} corrections"
            );
            assert!(
                run.elapsed.as_secs_f64() < ideal * 1.15,
                "seed {seed}: took {:?}, ideal {ideal:.2} s",
                run.elapsed
            );
        }
    }

    #[test]
    fn a_sender_that_does_not_yield_keeps_its_rate_unaudited() {
        // The same path and seeds: a `docker load` keeps the rate the filter holds.
        for seed in 1..=2 {
            let run = transfer(&LTE, 30 << 20, fresh(), seed);
            assert_eq!(run.controller.corrections(), 0, "seed {seed}");
            assert!(
                run.queue_in_steady > 45 * MS,
                "seed {seed}: {:?}",
                run.queue_in_steady
            );
        }
    }

    #[test]
    fn a_cancelled_span_has_no_verdict() {
        let mut audit = Audit::default();
        let last = span(&mut audit, origin(), 2_500_000, 7 * MS);
        audit.cancel();
        assert_eq!(audit.finish(last, 2_750_000, 70 * MS), None);
    }
}
