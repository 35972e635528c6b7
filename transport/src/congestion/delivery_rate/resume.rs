//! Resuming the rate a path delivered before: after an outage on the same connection, and on a new
//! connection from the estimate a device's last connection left (Careful Resume,
//! draft-ietf-tsvwg-careful-resume).
//!
//! To a sender an outage looks like persistent congestion: for seconds every packet is lost. A
//! controller that reads it so starts over from four packets and needs startup's rounds to find
//! the rate again — on `flaky-cellular`'s 5 s outages a minute, that restart is where much of a
//! bulk transfer's time went (BENCHMARKS.md). But a link that comes back from a coverage hole or a
//! hand-over is the same link: the same round trip, the same bottleneck. So the controller keeps
//! the rate and minimum round trip it had, and the first round trip measured after the silence
//! decides: one that [`PathEstimate::matches`] the old path resumes at the old rate; a different
//! one (a new network, a reroute) starts over as before.
//!
//! The rate is only lent, in both cases, as Careful Resume's "unvalidated phase": for
//! [`LOAN_ROUNDS`] busy rounds it counts towards the bottleneck rate beside the rate filter's own
//! samples, and from then on only what those rounds measured counts. A round sent at the lent
//! rate that delivers less than half of it ends the loan at once (the draft's safe retreat): the
//! path is not what it was, and a queue is building at its bottleneck.
//!
//! Every decision is counted in [`ResumeStats`], for tests, traces and the bench.

use std::time::{Duration, Instant};

use super::min_rtt::MinRtt;
use super::{DeliveryRate, Mode, StartupExit};

/// Busy rounds a lent rate counts for after the first ack of a packet sent under it: that round
/// (a flight from an empty pipe, whose samples show at most about half the rate) and two more,
/// whose own samples take over. Rounds before that one are acks of packets sent before the resume
/// (stragglers of the outage, retransmissions): they say nothing of the lent rate, and judging
/// them retreated from a path that delivered the full rate (`careful_resume` test on the GEO relay,
/// one run in three before).
const LOAN_ROUNDS: u64 = 2;
/// A round trip more than this many times the saved minimum (plus [`RTT_SLACK`]) is another
/// path. The check is one sample, the minimum the low tail of many: on a jittery path the two are
/// far apart. On `flaky-cellular` (100 ms, σ 20 ms each way) the hub kept minimums of 64–155 ms
/// (47 ms in one trace), while one round trip there takes up to 100 ms plus 3 σ each way plus
/// the receiver's 25 ms ack delay, 245 ms. At 1.5 × (before) the first ack after an outage
/// refused the path's own rate and the sender started over from four packets (the `congestion`
/// bench's upload, BENCHMARKS.md, session 30); at 4 × only a far-tail sample after a far-tail
/// minimum is refused. The draft allows 10 ×; we lend the full rate where it lends half a window
/// paced over the new round trip, so we stay tighter: 4 × still tells a cellular path (100 ms)
/// from a satellite one (600 ms).
const RTT_GROWTH: f64 = 4.0;
/// Slack for the shortest paths, whose minimum is a few milliseconds.
const RTT_SLACK: Duration = Duration::from_millis(10);
/// A round trip under half the saved minimum is another path too (the draft's lower bound).
const RTT_SHRINK: u32 = 2;
/// A round at the lent rate that delivers less than this share of it ends the loan.
const RETREAT_SHARE: f64 = 0.5;

/// What a path delivered: the rate and minimum round trip to resume from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathEstimate {
    /// Bottleneck rate in bytes per second.
    pub rate: u64,
    /// The path's minimum round trip.
    pub min_rtt: Duration,
}

impl PathEstimate {
    /// Whether a round trip of `rtt` says this is the path the estimate was measured on.
    pub fn matches(&self, rtt: Duration) -> bool {
        let longest = self.min_rtt.mul_f64(RTT_GROWTH) + RTT_SLACK;
        rtt <= longest && rtt >= self.min_rtt / RTT_SHRINK
    }
}

/// Where a lent rate came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResumeKind {
    /// The same connection, before an outage.
    AfterOutage,
    /// A previous connection from the same device (Careful Resume).
    SavedPath,
}

/// The last resume: what was lent and what the path then delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResumeRecord {
    /// Where the rate came from.
    pub kind: ResumeKind,
    /// The rate lent, in bytes per second.
    pub lent: u64,
    /// The largest delivery rate measured while the loan ran, in bytes per second.
    pub measured: u64,
    /// Busy rounds since the resume, counted until the loan ends.
    pub rounds: u64,
}

/// The controller's resume decisions, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResumeStats {
    /// Outages (persistent congestion) with a rate worth resuming.
    pub outages: u32,
    /// Estimates lent after their round-trip check.
    pub resumed: u32,
    /// Estimates dropped because the round trip showed another path.
    pub refused: u32,
    /// Loans ended early: a round at the lent rate delivered less than half of it.
    pub retreated: u32,
    /// The last resume.
    pub last: Option<ResumeRecord>,
}

/// A rate lent until a round.
#[derive(Clone, Copy, Debug)]
struct Loan {
    rate: u64,
    /// When the rate was lent.
    resumed_at: Instant,
    /// The round of the first ack of a packet sent since `resumed_at`: the loan's first.
    from_round: Option<u64>,
    /// The largest sample in the current round.
    round_best: u64,
}

/// The controller's resume state: an estimate waiting for its round-trip check, a loan running.
#[derive(Clone, Debug, Default)]
pub(super) struct Resume {
    pending: Option<(PathEstimate, ResumeKind)>,
    loan: Option<Loan>,
    stats: ResumeStats,
}

impl Resume {
    /// The lent rate, while the loan runs.
    pub(super) fn lent_rate(&self, round: u64) -> u64 {
        match self.loan {
            Some(loan)
                if loan
                    .from_round
                    .is_none_or(|from| round <= from + LOAN_ROUNDS) =>
            {
                loan.rate
            }
            _ => 0,
        }
    }

    /// A packet sent at `sent` was acknowledged in round `round`: the first sent since the resume
    /// starts the loan's rounds.
    pub(super) fn on_acked(&mut self, sent: Instant, round: u64) {
        if let Some(loan) = self
            .loan
            .as_mut()
            .filter(|loan| loan.from_round.is_none() && sent >= loan.resumed_at)
        {
            loan.from_round = Some(round);
        }
    }

    /// A delivery-rate sample.
    pub(super) fn on_sample(&mut self, rate: u64) {
        let Some(loan) = self.loan.as_mut().filter(|loan| loan.from_round.is_some()) else {
            return;
        };
        loan.round_best = loan.round_best.max(rate);
        if let Some(last) = &mut self.stats.last {
            last.measured = last.measured.max(rate);
        }
    }

    /// Busy round `round` ended (the next one is `round + 1`); its acks arrived at `ack_rate`.
    /// Judged by the better of that and its best sample: the first round of a flight from an
    /// empty pipe measures its samples from the flight's first send, a round trip early, so
    /// they show at most about half the rate; the ack spacing shows all of it.
    pub(super) fn on_round_end(&mut self, round: u64, ack_rate: u64) {
        let Some(loan) = &mut self.loan else { return };
        let best = std::mem::take(&mut loan.round_best).max(ack_rate);
        let Some(from) = loan.from_round else { return };
        if let Some(last) = &mut self.stats.last {
            last.rounds = round + 1 - from;
            last.measured = last.measured.max(best);
        }
        if round > from && (best as f64) < loan.rate as f64 * RETREAT_SHARE {
            self.stats.retreated += 1;
            self.loan = None;
        } else if round >= from + LOAN_ROUNDS {
            self.loan = None;
        }
    }

    /// The round-trip check of a pending estimate: lends its rate if `rtt` matches.
    fn check(&mut self, now: Instant, rtt: Duration) -> Option<PathEstimate> {
        let (estimate, kind) = self.pending.take()?;
        if !estimate.matches(rtt) {
            self.stats.refused += 1;
            return None;
        }
        self.stats.resumed += 1;
        self.stats.last = Some(ResumeRecord {
            kind,
            lent: estimate.rate,
            measured: 0,
            rounds: 0,
        });
        self.loan = Some(Loan {
            rate: estimate.rate,
            resumed_at: now,
            from_round: None,
            round_best: 0,
        });
        Some(estimate)
    }
}

impl DeliveryRate {
    /// The controller's resume decisions so far.
    pub fn resume_stats(&self) -> ResumeStats {
        self.resume.stats
    }

    /// The silences the sender saw and how it came back from the last one.
    pub fn silence_stats(&self) -> super::SilenceStats {
        self.silences.stats()
    }

    /// What this connection's path delivered, once startup has found the pipe full: the estimate
    /// a later connection from the same device may resume from.
    pub fn path_estimate(&self) -> Option<PathEstimate> {
        let min_rtt = self.path_min_rtt.get();
        let rate = self.measured_rate();
        let measured = self.mode != Mode::Startup && rate > 0 && !min_rtt.is_zero();
        measured.then_some(PathEstimate { rate, min_rtt })
    }

    /// Start from `estimate`, a previous connection's [`Self::path_estimate`], once a round trip
    /// confirms the path is the same (Careful Resume). The round trip already measured (the
    /// handshake's) is the check if there is one, else the next ack's.
    pub fn offer_resume(&mut self, estimate: PathEstimate) {
        self.resume.pending = Some((estimate, ResumeKind::SavedPath));
        if let Some((at, rtt)) = self.latest_rtt {
            self.check_resume(at, rtt);
        }
    }

    /// Persistent congestion at `now`: every packet lost for several probe timeouts. The
    /// controller starts over, keeping what the path delivered before for the round-trip check;
    /// the ack that revealed the losses (processed just before, at `now`) is the first check.
    pub(super) fn on_persistent_congestion(&mut self, now: Instant) {
        let before = self.path_estimate().map(|estimate| PathEstimate {
            rate: self.bottleneck_rate(),
            ..estimate
        });
        let latest = self.latest_rtt;
        let mut resume = std::mem::take(&mut self.resume);
        let silences = std::mem::take(&mut self.silences);
        *self = Self::new(self.config.clone(), self.mtu as u16);
        self.silences = silences;
        self.window = self.min_window();
        if let Some(estimate) = before {
            resume.stats.outages += 1;
            resume.pending = Some((estimate, ResumeKind::AfterOutage));
        }
        resume.loan = None;
        self.resume = resume;
        if let Some((_, rtt)) = latest.filter(|(at, _)| *at == now) {
            self.check_resume(now, rtt);
        }
    }

    /// A round trip of `rtt` measured at `now`: a pending estimate is lent if it matches.
    pub(super) fn check_resume(&mut self, now: Instant, rtt: Duration) {
        let Some(estimate) = self.resume.check(now, rtt) else {
            return;
        };
        self.path_min_rtt = MinRtt::starting_at(now, estimate.min_rtt.min(rtt));
        self.train = None;
        self.leave_startup(StartupExit::Resumed);
        let window = self.steady_window(estimate.rate, self.path_min_rtt.get());
        self.window = self.window.max(window);
    }

    /// Whether an estimate waits for its round-trip check.
    pub(super) fn resume_pending(&self) -> bool {
        self.resume.pending.is_some()
    }
}
