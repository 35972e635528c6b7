//! Propagation delay: a fixed base, jitter, slow level shifts ("steps") and opt-in reordering.
//!
//! Jitter alone never reorders packets: a packet is never delivered before the one submitted
//! ahead of it (as on a real path, where jitter comes from queues that keep order). Reordering is a
//! separate, explicit probability, as in tc-netem's `reorder`: the chosen packet skips the
//! propagation delay and so overtakes the packets in flight.
//!
//! Steps model LEO satellite handovers: the path changes every `every` seconds, and with it the
//! base delay. Intervals alternate between the base and base + U(min, max), the extra being drawn
//! per interval from the seed (not from the packet stream), so the shape of the delay over time
//! does not depend on how many packets were sent.

use std::time::Duration;

use rand::Rng;

/// How jitter is distributed around the base delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JitterDistribution {
    /// Uniform in `[-jitter, +jitter]` (tc-netem's default).
    #[default]
    Uniform,
    /// Normal with standard deviation `jitter`, cut at ±3 σ.
    Normal,
}

/// A periodic level shift of the base delay (LEO satellite handovers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DelayStep {
    /// Length of one interval; the delay level changes at each boundary.
    pub every: Duration,
    /// Smallest extra delay in a "high" interval.
    pub min: Duration,
    /// Largest extra delay in a "high" interval.
    pub max: Duration,
}

/// Propagation delay settings for one direction.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DelayConfig {
    /// Fixed one-way delay.
    pub base: Duration,
    /// Jitter amplitude (uniform half-width, or normal σ).
    pub jitter: Duration,
    /// Shape of the jitter.
    pub distribution: JitterDistribution,
    /// Optional periodic level shifts.
    pub step: Option<DelayStep>,
    /// Probability that a packet skips the delay and overtakes those in flight.
    pub reorder: f64,
}

impl DelayConfig {
    /// The one-way delay for a packet leaving the queue `elapsed` after the link's epoch.
    pub(crate) fn sample(&self, elapsed: Duration, seed: u64, rng: &mut impl Rng) -> Duration {
        let base = self.base + self.step_extra(elapsed, seed);
        if self.jitter.is_zero() {
            return base;
        }
        let j = self.jitter.as_secs_f64();
        let offset = match self.distribution {
            JitterDistribution::Uniform => rng.random_range(-j..=j),
            JitterDistribution::Normal => (standard_normal(rng) * j).clamp(-3.0 * j, 3.0 * j),
        };
        Duration::from_secs_f64((base.as_secs_f64() + offset).max(0.0))
    }

    /// The extra delay of the step interval containing `elapsed` (zero without steps).
    pub(crate) fn step_extra(&self, elapsed: Duration, seed: u64) -> Duration {
        let Some(step) = self.step else {
            return Duration::ZERO;
        };
        if step.every.is_zero() {
            return Duration::ZERO;
        }
        let interval = (elapsed.as_nanos() / step.every.as_nanos()) as u64;
        if interval % 2 == 0 {
            return Duration::ZERO;
        }
        let unit = unit_from_hash(seed, interval);
        let span = step.max.saturating_sub(step.min).as_secs_f64();
        step.min + Duration::from_secs_f64(span * unit)
    }
}

/// A standard normal sample by the Box–Muller transform (keeps us off `rand_distr`).
pub(crate) fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A value in `[0, 1)` determined by `(seed, index)` alone (SplitMix64 finaliser).
pub(crate) fn unit_from_hash(seed: u64, index: u64) -> f64 {
    let mut z = seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}
