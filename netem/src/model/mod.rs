//! The pure link model: one direction of an emulated link, with no I/O and no clock of its own.
//!
//! Every input is [`LinkModel::submit`]`(now, len)`; the answer is a [`Verdict`]: deliver at a
//! given time (plus maybe a duplicate), or drop with a reason. Randomness comes from a seeded RNG,
//! so a run is reproducible from its seed and a test can drive hours of virtual time in
//! milliseconds. The front ends (UDP relay, quinn socket decorator, TUN router) only carry out
//! verdicts.
//!
//! A packet goes through the stages in the order a real path applies them:
//! exact rules → MTU → outage → random loss → bottleneck queue (rate or trace) → propagation
//! delay (jitter, steps, reordering) → duplication.

mod delay;
mod loss;
mod nat;
mod outage;
mod queue;
mod rules;
#[cfg(test)]
pub(crate) mod tests;
mod trace;

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;

pub use delay::{DelayConfig, DelayStep, JitterDistribution};
pub use loss::{GilbertElliott, LossConfig};
pub use nat::{Binding, BindingState, NatConfig};
pub use outage::{OutageSchedule, OutageWindow, PeriodicOutage};
pub use queue::Capacity;
pub use rules::Rule;
pub use trace::{Trace, OPPORTUNITY_BYTES};

use loss::{chance, LossState};
use queue::QueueState;
use rules::RuleState;

/// Everything that shapes one direction of a link. `Default` is a transparent link.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LinkConfig {
    /// Propagation delay, jitter, steps and reordering.
    pub delay: DelayConfig,
    /// Random and bursty loss.
    pub loss: LossConfig,
    /// Probability that a packet is delivered twice.
    pub duplicate: f64,
    /// The bottleneck's capacity.
    pub capacity: Capacity,
    /// Bottleneck queue limit in bytes (`None`: unbounded).
    pub queue_bytes: Option<u64>,
    /// Packets longer than this are dropped (`None`: no limit).
    pub mtu: Option<usize>,
    /// Scheduled outages.
    pub outages: OutageSchedule,
    /// Exact drop rules for tests.
    pub rules: Vec<Rule>,
}

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// An exact rule matched; the index is the rule's position in [`LinkConfig::rules`].
    Rule(usize),
    /// Longer than the MTU.
    Mtu,
    /// The link was in an outage.
    Outage,
    /// Random or burst loss.
    Loss,
    /// The bottleneck queue was full.
    QueueFull,
}

/// The model's decision for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver the packet at `at`, and a second copy at `duplicate` if set.
    Deliver {
        /// When the packet reaches the far end.
        at: Instant,
        /// When a duplicate copy reaches the far end, if the packet was duplicated.
        duplicate: Option<Instant>,
    },
    /// Drop the packet.
    Drop(DropReason),
}

/// Per-direction counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkCounters {
    /// Packets submitted to the link.
    pub submitted: u64,
    /// Packets delivered (not counting duplicates).
    pub sent: u64,
    /// Bytes delivered (not counting duplicates).
    pub bytes_sent: u64,
    /// Delivered packets that were held back (delay or queue) rather than passed at once.
    pub delayed: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
    /// Packets dropped by exact rules.
    pub dropped_rule: u64,
    /// Packets dropped for exceeding the MTU.
    pub dropped_mtu: u64,
    /// Packets dropped during outages.
    pub dropped_outage: u64,
    /// Packets dropped by random or burst loss.
    pub dropped_loss: u64,
    /// Packets dropped because the queue was full.
    pub dropped_queue: u64,
    /// Largest queue backlog seen, in bytes.
    pub queue_high_water: u64,
}

impl LinkCounters {
    /// All drops, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_rule
            + self.dropped_mtu
            + self.dropped_outage
            + self.dropped_loss
            + self.dropped_queue
    }

    fn count_drop(&mut self, reason: DropReason) {
        let slot = match reason {
            DropReason::Rule(_) => &mut self.dropped_rule,
            DropReason::Mtu => &mut self.dropped_mtu,
            DropReason::Outage => &mut self.dropped_outage,
            DropReason::Loss => &mut self.dropped_loss,
            DropReason::QueueFull => &mut self.dropped_queue,
        };
        *slot += 1;
    }
}

/// One direction of an emulated link.
#[derive(Debug)]
pub struct LinkModel {
    config: LinkConfig,
    seed: u64,
    rng: StdRng,
    epoch: Instant,
    loss: LossState,
    queue: QueueState,
    rules: RuleState,
    last_delivery: Option<Instant>,
    manual_outage_until: Option<Instant>,
    counters: LinkCounters,
}

impl LinkModel {
    /// A link shaped by `config`, with randomness from `seed`; schedules (outages, traces, delay
    /// steps, time rules) count from `epoch`.
    pub fn new(config: LinkConfig, seed: u64, epoch: Instant) -> Self {
        Self {
            rules: RuleState::new(&config.rules),
            config,
            seed,
            rng: StdRng::seed_from_u64(seed),
            epoch,
            loss: LossState::default(),
            queue: QueueState::new(epoch),
            last_delivery: None,
            manual_outage_until: None,
            counters: LinkCounters::default(),
        }
    }

    /// Decides the fate of a packet of `len` bytes submitted at `now`.
    pub fn submit(&mut self, now: Instant, len: usize) -> Verdict {
        self.counters.submitted += 1;
        let verdict = self.decide(now, len);
        match verdict {
            Verdict::Deliver { at, duplicate } => {
                self.counters.sent += 1;
                self.counters.bytes_sent += len as u64;
                self.counters.delayed += u64::from(at > now);
                self.counters.duplicated += u64::from(duplicate.is_some());
            }
            Verdict::Drop(reason) => self.counters.count_drop(reason),
        }
        verdict
    }

    fn decide(&mut self, now: Instant, len: usize) -> Verdict {
        let elapsed = now.saturating_duration_since(self.epoch);
        if let Some(rule) = self.rules.check(&self.config.rules, elapsed) {
            return Verdict::Drop(DropReason::Rule(rule));
        }
        if self.config.mtu.is_some_and(|mtu| len > mtu) {
            return Verdict::Drop(DropReason::Mtu);
        }
        if self.is_down(now) {
            return Verdict::Drop(DropReason::Outage);
        }
        if self.loss.lose(&self.config.loss, &mut self.rng) {
            return Verdict::Drop(DropReason::Loss);
        }
        let departure = match self.queue.enqueue(
            now,
            self.epoch,
            len as u64,
            &self.config.capacity,
            self.config.queue_bytes,
        ) {
            Ok(departure) => departure,
            Err(_) => return Verdict::Drop(DropReason::QueueFull),
        };
        let backlog = self.queue.backlog(now);
        self.counters.queue_high_water = self.counters.queue_high_water.max(backlog);
        let at = self.propagate(departure);
        let duplicate = chance(&mut self.rng, self.config.duplicate).then_some(at);
        Verdict::Deliver { at, duplicate }
    }

    fn propagate(&mut self, departure: Instant) -> Instant {
        let delay = &self.config.delay;
        if chance(&mut self.rng, delay.reorder) {
            // Skips the propagation delay and overtakes whatever is in flight.
            return departure;
        }
        let elapsed = departure.saturating_duration_since(self.epoch);
        let at = departure + delay.sample(elapsed, self.seed, &mut self.rng);
        // Jitter alone never reorders.
        let at = self.last_delivery.map_or(at, |last| at.max(last));
        self.last_delivery = Some(at);
        at
    }

    /// True if the link is in a scheduled or triggered outage at `now`.
    pub fn is_down(&self, now: Instant) -> bool {
        self.manual_outage_until.is_some_and(|until| now < until)
            || self
                .config
                .outages
                .is_down(now.saturating_duration_since(self.epoch))
    }

    /// Takes the link down from `now` for `duration` (a scripted outage).
    pub fn trigger_outage(&mut self, now: Instant, duration: Duration) {
        let until = now + duration;
        self.manual_outage_until = Some(self.manual_outage_until.map_or(until, |u| u.max(until)));
    }

    /// Switches to a new configuration at run time. Counters, the queue and the epoch carry over;
    /// rule hit counters restart if the rules changed.
    pub fn set_config(&mut self, config: LinkConfig) {
        if config.rules != self.config.rules {
            self.rules = RuleState::new(&config.rules);
        }
        self.config = config;
    }

    /// The configuration in force.
    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// Counters since the link was created.
    pub fn counters(&self) -> &LinkCounters {
        &self.counters
    }

    /// Hits per exact rule, in the order of [`LinkConfig::rules`].
    pub fn rule_hits(&self) -> &[u64] {
        self.rules.hits()
    }

    /// Bytes waiting in the bottleneck queue at `now`.
    pub fn queue_backlog(&mut self, now: Instant) -> u64 {
        self.queue.backlog(now)
    }

    /// The instant schedules count from.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }
}
