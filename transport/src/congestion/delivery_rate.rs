//! A delivery-rate congestion controller (BBR-style) for links whose loss is mostly not congestion.
//!
//! The window is sized from two measurements, not from loss: the bottleneck rate (the largest
//! delivery rate seen over the last [`RATE_WINDOW_ROUNDS`] busy round trips) and the path's
//! minimum round trip. Steady state paces at the bottleneck rate times a gain that cycles over
//! rounds, and keeps at most `cwnd_gain × rate × min_rtt` (2 BDP) plus 25 ms of the rate in
//! flight ([`pacing`]): the sender runs at about the bottleneck rate with a bounded queue (less
//! than a GEO modem's half-BDP buffer) whatever the round trip's jitter, and a lost packet costs
//! its retransmission, not half the window.
//!
//! Startup sends its first flight as one burst and reads the bottleneck's rate from the spacing
//! of that burst's acks ([`train`]): on a GEO path the window is the steady one a round trip
//! after the transfer starts, instead of in the fourth round with a bandwidth-delay product of
//! overshoot. Where the burst shows nothing, startup keeps `startup_gain × rate × min_rtt` in
//! flight, so the window grows by about that factor per round, and also jumps to what a whole
//! round's ack spacing shows.
//! Startup ends when an ack shows a queue building (HyStart's delay signal), when a round loses
//! more than [`STARTUP_LOSS_EXIT`] of what it delivered, or when the rate stops growing by a
//! quarter for [`FULL_PIPE_ROUNDS`] rounds. The first two are checked on every ack and loss, not
//! only when a round ends: on a 600 ms path the rest of a round in startup sends about a
//! bandwidth-delay product more into a queue that is already full. Which of these ended it (or
//! the burst) is kept as a [`StartupExit`]. What a round measured lives in a [`RoundStats`] that
//! starts over at each round's end.
//!
//! Idle periods (check-ins only) are app-limited: their rounds do not age the rate filter, so the
//! first transfer after an hour of standby starts at the rate the link last delivered instead of
//! from a 15 KB window — what matters most on a 600 ms path. A flight that starts with nothing in
//! flight measures its rate from its own first send, not from the last ack before the pause
//! (BBR's rule). Only persistent congestion (every packet lost for several PTOs: an outage) resets
//! the controller to startup, and when the first round trip after it shows the same path, the
//! controller resumes at the rate it had ([`resume`]; also how a new connection resumes a saved
//! [`PathEstimate`]).
//!
//! Sampling follows the delivery-rate draft (draft-cheng-iccrg-delivery-rate-estimation): each
//! send time remembers how much had been delivered by then, and an ack of a packet sent at `t`
//! yields `(delivered now − delivered at t) / (now − time of that delivery)`.

mod audit;
mod config;
mod max_filter;
mod min_rtt;
mod pacing;
mod resume;
mod round;
mod silence;
mod startup_exit;
mod state;
mod train;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit::Audit;
pub use config::DeliveryRateConfig;
use max_filter::MaxFilter;
use min_rtt::MinRtt;
use pacing::Phase;
use resume::Resume;
pub use resume::{PathEstimate, ResumeKind, ResumeRecord, ResumeStats};
use round::{RoundStats, MIN_ACKS_FOR_ACK_RATE};
use silence::Silences;
pub use silence::{SilenceRecord, SilenceStats};
pub use startup_exit::StartupExit;
pub use state::SenderState;
use train::{Train, Verdict};

/// Rounds over which the bottleneck rate is the maximum sample (BBR's 10).
pub(crate) const RATE_WINDOW_ROUNDS: u64 = 10;
/// Startup ends after this many busy rounds without the rate growing by [`FULL_PIPE_GROWTH`].
pub(crate) const FULL_PIPE_ROUNDS: u32 = 2;
/// The growth that counts as "the pipe is not full yet".
pub(crate) const FULL_PIPE_GROWTH: f64 = 1.25;
/// Startup also ends when a round loses more than this share of what it delivered while its
/// round trips show a queue: the bottleneck queue is overflowing.
pub(crate) const STARTUP_LOSS_EXIT: f64 = 0.05;
/// ... and more than this many packets: one random loss in a small early round is not a queue.
pub(crate) const STARTUP_LOSS_EXIT_PACKETS: u64 = 8;
/// Startup ends as soon as an ack shows this much queueing delay above the minimum round trip
/// (or [`QUEUE_DELAY_FLOOR`], for short paths with jitter): the pipe is full and the rest of
/// the window is only filling a queue (HyStart's delay signal). Loss says the same a round later,
/// which on a 600 ms path is 1.5 MB too late.
pub(crate) const STARTUP_QUEUE_SHARE: f64 = 0.25;
/// The least queueing delay that ends startup.
pub(crate) const QUEUE_DELAY_FLOOR: Duration = Duration::from_millis(15);
/// Room for acks that arrive in bursts (Wi-Fi, cellular schedulers), in packets.
const AGGREGATION_PACKETS: u64 = 4;
/// Rounds in a row that outlast the window before the minimum round trip is re-measured.
const UNEXPLAINED_ROUNDS: u32 = 4;
/// What quinn is told the window is while a burst leaves: above `u32::MAX` its pacer stands
/// aside (quinn-proto 0.11's `Pacer::delay`), and the burst's own budget bounds what is sent.
/// quinn reads the window once per datagram and reports sends once per GSO batch, so a burst
/// overshoots its budget by at most one batch (10 datagrams).
const UNPACED_WINDOW: u64 = 1 << 40;
/// A flight that leaves an empty pipe in steady state may put this many bandwidth-delay products
/// in flight before its first ack. quinn paces a window at 1.25 windows per round trip, so the
/// steady window (1.25 BDP + 25 ms) sent from an empty pipe leaves at ~1.6 × the rate, and the
/// bottleneck's queue takes the difference until acks arrive: on GEO that overflowed the
/// modem's 750 KB queue and lost ~1,000 packets of a resumed transfer's first round (the
/// virtual-clock link in `resume_tests`). One BDP leaves at 1.25 × the rate and queues at most
/// a fifth of a BDP; from the first ack on, the flight is ack-clocked and the steady window holds.
const FIRST_FLIGHT_GAIN: f64 = 1.0;
/// Send-time marks kept at most; marks for packets that were lost are dropped oldest first.
const MAX_MARKS: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Startup,
    Steady(StartupExit),
}

/// What had been delivered when packets were sent at `sent`.
#[derive(Clone, Copy, Debug)]
struct SendMark {
    sent: Instant,
    delivered: u64,
    delivered_at: Instant,
    /// When the packet most recently acknowledged at `sent` had itself been sent.
    first_sent: Instant,
    /// The rate the packet was paced at, if steady state paced it.
    paced: Option<u64>,
}

/// The controller's state: pure, driven by the times and byte counts quinn reports.
#[derive(Clone, Debug)]
pub struct DeliveryRate {
    config: Arc<DeliveryRateConfig>,
    mtu: u64,
    window: u64,
    mode: Mode,
    delivered: u64,
    delivered_at: Option<Instant>,
    marks: VecDeque<SendMark>,
    last_sent: Option<Instant>,
    /// Nothing was in flight after the last acks: the next send starts a fresh flight.
    idle: bool,
    /// A flight left an empty pipe and none of it has been acknowledged yet.
    flight_unacked: bool,
    /// When the first packet of the current flight left an empty pipe.
    sent_into_empty_pipe: Option<Instant>,
    /// Send time of the packet acknowledged last.
    last_acked_sent: Option<Instant>,
    /// Busy rounds so far: the filter's clock.
    round: u64,
    /// A round ends when a packet sent at or after this time is acknowledged.
    round_ends_after: Option<Instant>,
    /// The current round's acks and losses, taken when it ends.
    this_round: RoundStats,
    /// Bytes delivered in the last round.
    last_round_delivered: u64,
    /// Rounds in a row whose smallest RTT outlasted the window at the bottleneck rate.
    unexplained_rounds: u32,
    /// The path's minimum RTT.
    path_min_rtt: MinRtt,
    rate: MaxFilter,
    /// Per-round ack-spacing rates: the bottleneck's rate as soon as a burst crosses it.
    spacing: MaxFilter,
    /// A train's rate and the last round it counts in: long enough for the flights sent at
    /// that rate to be measured, short enough that a train misled by bunched acks costs one
    /// round of queue, not ten.
    train_rate: Option<(u64, u64)>,
    full_rate: u64,
    rounds_without_growth: u32,
    /// The current flight's burst while startup has not measured the path yet.
    train: Option<Box<Train>>,
    /// The latest ack's time and round trip.
    latest_rtt: Option<(Instant, Duration)>,
    /// A rate waiting to be resumed, or lent after a resume.
    resume: Resume,
    /// Steady state's pacing gain ([`pacing`]).
    phase: Phase,
    /// Silences and the recovery after each ([`silence`]).
    silences: Silences,
    /// Searches for the rate that steady state started ([`pacing`]).
    searches: u32,
    /// The cycle's check of the rate against what the path delivered ([`audit`]), and how
    /// often it corrected the rate.
    audit: Audit,
    corrections: u32,
    /// When the audit last corrected the rate: packets sent before then left at the rate that
    /// overfilled the path, and their acks are not rate samples.
    corrected_at: Option<Instant>,
    /// Only background transfers are sending: trade a little rate for a short queue ([`audit`]).
    yielding: bool,
}

impl DeliveryRate {
    /// A controller in startup.
    pub fn new(config: Arc<DeliveryRateConfig>, mtu: u16) -> Self {
        let window = config.initial_window;
        Self {
            config,
            mtu: mtu.into(),
            window,
            mode: Mode::Startup,
            delivered: 0,
            delivered_at: None,
            marks: VecDeque::new(),
            last_sent: None,
            idle: true,
            flight_unacked: false,
            sent_into_empty_pipe: None,
            last_acked_sent: None,
            round: 0,
            round_ends_after: None,
            this_round: RoundStats::default(),
            last_round_delivered: 0,
            unexplained_rounds: 0,
            path_min_rtt: MinRtt::default(),
            rate: MaxFilter::default(),
            spacing: MaxFilter::default(),
            train_rate: None,
            full_rate: 0,
            rounds_without_growth: 0,
            train: None,
            latest_rtt: None,
            resume: Resume::default(),
            phase: Phase::default(),
            silences: Silences::default(),
            searches: 0,
            audit: Audit::default(),
            corrections: 0,
            corrected_at: None,
            yielding: false,
        }
    }

    /// The window before any measurement, in bytes.
    pub fn initial_window(&self) -> u64 {
        self.config.initial_window
    }

    /// The congestion window in bytes.
    pub fn window(&self) -> u64 {
        self.window
    }

    /// What may be in flight now: the window, [`UNPACED_WINDOW`] while a flight in startup
    /// leaves as one burst (see [`train`]), or at most [`FIRST_FLIGHT_GAIN`] bandwidth-delay
    /// products while a flight from an empty pipe waits for its first ack.
    pub fn sending_window(&self) -> u64 {
        let bursting = match &self.train {
            Some(train) => train.bursting(),
            None => self.idle,
        };
        match self.mode {
            Mode::Startup if bursting => UNPACED_WINDOW,
            Mode::Steady(_) if self.flight_unacked || self.idle => {
                let rate = self.bottleneck_rate();
                let first_flight =
                    self.window_for(rate, self.path_min_rtt.get(), FIRST_FLIGHT_GAIN);
                self.window.min(first_flight)
            }
            _ => self.window,
        }
    }

    /// The rate to pace at in steady state, bytes per second: the bottleneck rate times the
    /// phase's gain ([`pacing`]). `None` in startup, where quinn paces the window.
    pub fn pacing_rate(&self) -> Option<u64> {
        match self.mode {
            Mode::Startup => None,
            Mode::Steady(_) => pacing::paced(self.bottleneck_rate(), self.phase.gain()),
        }
    }

    /// The bottleneck rate estimate in bytes per second: what the path was measured to deliver,
    /// or a rate lent by a resume while its loan runs.
    pub fn bottleneck_rate(&self) -> u64 {
        self.measured_rate().max(self.resume.lent_rate(self.round))
    }

    /// The larger of the per-packet delivery rate and the ack spacing over a round (which
    /// smooths ack compression over the round), or a first burst's train.
    fn measured_rate(&self) -> u64 {
        let train = match self.train_rate {
            Some((rate, until)) if self.round <= until => rate,
            _ => 0,
        };
        self.rate
            .get(self.round)
            .max(self.spacing.get(self.round))
            .max(train)
    }

    fn min_window(&self) -> u64 {
        4 * self.mtu
    }

    /// `bytes` were sent at `now`.
    pub fn on_sent(&mut self, now: Instant, bytes: u64) {
        self.last_sent = Some(now);
        // No train: this flight started from idle, or the last one was too short to tell.
        if self.mode == Mode::Startup && self.train.is_none() {
            self.train = Some(Box::new(Train::new(self.window)));
        }
        if let Some(train) = &mut self.train {
            train.on_sent(now, bytes);
        }
        if self.idle {
            self.flight_unacked = true;
            self.sent_into_empty_pipe.get_or_insert(now);
            // A flight after an idle period: its rate samples start now, not at the last ack
            // before the pause (as in BBR), or the first round after a check-in 25 s ago would
            // measure a few bytes over 25 s and hold startup back.
            self.delivered_at = Some(now);
            self.last_acked_sent = Some(now);
        }
        if self.marks.back().is_some_and(|m| m.sent == now) {
            return;
        }
        if self.marks.len() == MAX_MARKS {
            self.marks.pop_front();
        }
        self.marks.push_back(SendMark {
            sent: now,
            delivered: self.delivered,
            delivered_at: self.delivered_at.unwrap_or(now),
            first_sent: self.last_acked_sent.unwrap_or(now),
            paced: self.pacing_rate().filter(|_| self.yielding),
        });
    }

    /// A packet of `bytes` sent at `sent` was acknowledged at `now`.
    pub fn on_ack(&mut self, now: Instant, sent: Instant, bytes: u64, app_limited: bool) {
        if let Some(previous) = self.last_heard().filter(|_| !app_limited) {
            let (min_rtt, rate) = (self.path_min_rtt.get(), self.bottleneck_rate());
            self.silences.on_ack_after(now, previous, min_rtt, rate);
        }
        self.idle = false;
        self.flight_unacked = false;
        self.delivered += bytes;
        self.this_round.delivered += bytes;
        self.delivered_at = Some(now);
        if !app_limited {
            self.this_round.busy = true;
        }
        if self.round_ends_after.is_none_or(|end| sent > end) {
            self.end_round(now);
        }
        self.resume.on_acked(sent, self.round);
        self.silences.on_acked(sent, self.round);
        let rtt = now.saturating_duration_since(sent);
        self.latest_rtt = Some((now, rtt));
        if self.resume_pending() {
            self.check_resume(now, rtt);
        }
        self.this_round.count_ack(now, sent, bytes, app_limited);
        let explained = self.queue_explains_round_trips();
        let sample = min_rtt::Sample {
            quiet: app_limited,
            explained,
            allowance: self.config.jitter_allowance,
        };
        self.path_min_rtt.on_sample(now, sent, sample);
        let min_rtt = self.path_min_rtt.get();
        self.exit_early();
        let rate = self
            .sample(now, sent)
            .filter(|_| self.corrected_at.is_none_or(|at| sent >= at));
        self.last_acked_sent = self.last_acked_sent.max(Some(sent));
        if let Some(rate) = rate {
            self.resume.on_sample(rate);
            self.silences.on_sample(rate);
            if !app_limited || rate > self.bottleneck_rate() {
                self.rate.update(self.round, rate);
            }
        }
        self.measure_train(now, sent, bytes);
        match self.mode {
            Mode::Startup => {
                // Grow on the per-packet samples; jump to what the ack spacing shows.
                let grown =
                    self.window_for(self.rate.get(self.round), min_rtt, self.config.startup_gain);
                let jump = self.steady_window(self.spacing.get(self.round), min_rtt);
                self.window = self.window.max(grown).max(jump);
            }
            Mode::Steady(_) => {
                self.window = self.steady_window(self.bottleneck_rate(), self.window_rtt())
            }
        }
        if self.path_min_rtt.probing() {
            self.window = self.window.min(self.probe_window());
        }
    }

    /// The acks of one datagram are processed at `now`: `in_flight` bytes are still
    /// unacknowledged.
    pub fn on_end_acks(&mut self, now: Instant, in_flight: u64) {
        self.path_min_rtt
            .on_in_flight(now, in_flight, self.probe_window());
        if self.mode != Mode::Startup {
            let bdp = pacing::bdp(self.bottleneck_rate(), self.path_min_rtt.get());
            self.phase.on_in_flight(in_flight, bdp);
        }
        self.idle = in_flight == 0;
        if self.idle {
            self.sent_into_empty_pipe = None;
            self.train = None;
            // Every mark is for a packet acknowledged or lost; the next flight's rate samples
            // start from its own first send. Freed rather than cleared: a hub holds one
            // controller per idle device, and the deque keeps its largest capacity (~340 bytes
            // per connection at 400 agents, heaptrack). The price is one small allocation per
            // flight, so one per check-in answer (~1,000 a second at 25,000 agents); keeping a
            // first block instead would keep ~160 bytes per agent.
            self.marks = VecDeque::new();
        }
    }

    /// Once the burst's acks show a bottleneck, startup is over: the window is the steady one
    /// for that rate, and steady state's probing finds whatever the train missed. A flight too
    /// short to tell (a connection's handshake, a check-in) lets the next one burst, even if a
    /// few of its packets are still in flight.
    fn measure_train(&mut self, now: Instant, sent: Instant, bytes: u64) {
        let verdict = self.train.as_mut().and_then(|t| t.on_ack(now, sent, bytes));
        match (verdict, self.mode) {
            (Some(Verdict::Bottleneck(rate)), Mode::Startup) => {
                // This round and the next: the packets sent at the train's rate are acked then.
                self.train_rate = Some((rate, self.round + 1));
                // Draining, then a probe: a train's reading is a rough one (see [`train`]).
                self.leave_startup(StartupExit::BurstMeasured);
            }
            (Some(Verdict::TooShort), _) => self.train = None,
            _ => {}
        }
    }

    /// The round ends: its ack spacing and smallest round trip are counted, and in startup a
    /// queue or a rate that stopped growing ends startup. An overflowing queue is caught within
    /// the round ([`Self::exit_early`]), while the round's largest round trip is known.
    fn end_round(&mut self, now: Instant) {
        self.round_ends_after = self.last_sent;
        let queue_building = self.queue_is_building();
        let ended = std::mem::take(&mut self.this_round);
        // A whole round's acks: jitter that bunches a few acks averages out over a round trip.
        if let (Some(rate), false) = (ended.ack_rate(), ended.app_limited) {
            self.spacing.update(self.round, rate);
        }
        if let Some(round_min) = ended.min_rtt {
            self.unexplained_rounds = match self.outlasts_own_queue(round_min) {
                true => self.unexplained_rounds.saturating_add(1),
                false => 0,
            };
        }
        if !ended.busy {
            self.audit.cancel();
            return;
        }
        let ack_rate = ended.ack_rate().unwrap_or(0);
        self.resume.on_round_end(self.round, ack_rate);
        self.silences.on_round_end(self.round, ack_rate);
        self.round += 1;
        self.last_round_delivered = ended.delivered;
        if self.mode == Mode::Startup {
            self.audit.cancel();
            if queue_building {
                self.leave_startup(StartupExit::QueueDelay);
            } else {
                self.check_full_pipe();
            }
        } else if let Some(delivered) = self.audit_round(now, &ended) {
            self.correct_rate(now, delivered);
        } else {
            let rate = self.bottleneck_rate();
            if self.phase.on_round_end(rate) {
                self.searches = self.searches.saturating_add(1);
            }
        }
    }

    /// The delivery rate shown by the ack of a packet sent at `sent`, in bytes per second.
    fn sample(&mut self, now: Instant, sent: Instant) -> Option<u64> {
        let index = self.marks.partition_point(|m| m.sent <= sent);
        let mark = *self.marks.get(index.checked_sub(1)?)?;
        // Marks before this one belong to packets acknowledged or lost by now.
        self.marks.drain(..index - 1);
        // Like BBR, the longer of the ack and the send intervals: acks that arrive bunched cannot
        // show more than was sent over the same data.
        let acks = now.checked_duration_since(mark.delivered_at)?;
        let sends = mark.sent.saturating_duration_since(mark.first_sent);
        let elapsed = acks.max(sends);
        if elapsed.is_zero() {
            return None;
        }
        let bytes = self.delivered - mark.delivered;
        let rate = (bytes as f64 / elapsed.as_secs_f64()) as u64;
        // While yielding, nor more than the packet was paced at: acks that jitter bunched, or a
        // pacer's burst, would otherwise read a rate the sender never offered ([`audit`]).
        Some(mark.paced.map_or(rate, |paced| rate.min(paced)))
    }

    /// Loss at `now`: random loss is not congestion here; only persistent congestion (an
    /// outage, or a path that changed under us) resets the controller, to resume at the old rate
    /// if the path turns out to be the same ([`resume`]).
    pub fn on_congestion_event(&mut self, now: Instant, lost_bytes: u64, persistent: bool) {
        self.this_round.lost += lost_bytes;
        self.exit_early();
        if persistent {
            self.on_persistent_congestion(now);
        }
    }

    /// Whether only background transfers are sending on this connection ([`audit`]): while they
    /// are, the cruise rate is audited and no sample reads more than its packet was paced at.
    pub fn set_yielding(&mut self, yielding: bool) {
        self.yielding = yielding;
    }

    /// The path MTU changed.
    pub fn on_mtu_update(&mut self, mtu: u16) {
        self.mtu = mtu.into();
        self.window = self.window.max(self.min_window());
    }
}

#[cfg(test)]
mod resume_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod train_tests;
