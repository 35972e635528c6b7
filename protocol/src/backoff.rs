//! Exponential backoff with full jitter, for reconnects.
//!
//! Full jitter (a delay drawn uniformly from zero to the exponential ceiling) spreads a fleet that lost
//! its hub at the same instant across the whole window, so a hub restart does not meet ten thousand
//! agents knocking in the same second. The ceiling resets once a connection has stayed up for a stable
//! period, so one flap after a day online does not start at the cap.

use std::time::Duration;

use rand::Rng;

/// Backoff state for one retry loop.
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff whose first ceiling is `base`, doubling per failure up to `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
            attempt: 0,
        }
    }

    /// The ceiling of the next delay (before jitter).
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// Draw the next delay, uniformly in `[0, ceiling]`, and raise the ceiling.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(0..=nanos))
    }

    /// Failures since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Start again from `base` (after a connection proved stable).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn ceiling_doubles_then_caps() {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
        let mut rng = StdRng::seed_from_u64(1);
        let ceilings: Vec<_> = (0..10)
            .map(|_| {
                let ceiling = backoff.ceiling();
                backoff.next_delay(&mut rng);
                ceiling.as_millis()
            })
            .collect();
        assert_eq!(
            ceilings,
            [500, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000]
        );
        backoff.reset();
        assert_eq!(backoff.ceiling(), Duration::from_millis(500));
    }

    #[test]
    fn delays_stay_within_the_ceiling_and_spread_over_it() {
        let mut rng = StdRng::seed_from_u64(7);
        let cap = Duration::from_secs(30);
        let mut delays = Vec::new();
        for _ in 0..10_000 {
            let mut backoff = Backoff::new(cap, cap);
            let delay = backoff.next_delay(&mut rng);
            assert!(delay <= cap);
            delays.push(delay.as_secs_f64());
        }
        // Uniform on [0, 30]: mean 15, and every third of the window is used about equally.
        let mean = delays.iter().sum::<f64>() / delays.len() as f64;
        assert!((mean - 15.0).abs() < 0.5, "mean {mean}");
        for third in 0..3 {
            let lo = f64::from(third) * 10.0;
            let share = delays
                .iter()
                .filter(|d| **d >= lo && **d < lo + 10.0)
                .count();
            assert!((3000..3700).contains(&share), "third {third}: {share}");
        }
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(90));
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..200 {
            assert!(backoff.next_delay(&mut rng) <= Duration::from_secs(90));
        }
        assert_eq!(backoff.attempts(), 200);
    }
}
