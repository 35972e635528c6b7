//! The controller's tuning, each default with the measurement that chose it.

use std::time::Duration;

/// Tuning for [`DeliveryRate`].
#[derive(Clone, Debug)]
pub struct DeliveryRateConfig {
    /// Window before any measurement, in bytes.
    pub initial_window: u64,
    /// Startup window as a multiple of the measured bandwidth-delay product.
    pub startup_gain: f64,
    /// Steady-state window as a multiple of the bandwidth-delay product ...
    pub cwnd_gain: f64,
    /// ... plus this much of the rate: room for jitter, which makes the minimum RTT read low.
    pub jitter_allowance: Duration,
}

impl Default for DeliveryRateConfig {
    fn default() -> Self {
        Self {
            // RFC 9002's initial window: 10 packets, at least 14,720 bytes.
            initial_window: 14_720,
            startup_gain: 3.0,
            // 2 × BDP + 25 ms, a cap only: the pacer sets the rate (`pacing`). Jitter makes the
            // minimum RTT read low (64 ms on flaky-cellular, whose round trips are mostly
            // 100–140 ms; 50 ms on a 70 ms LTE path with ±8 ms): a window near one BDP then ran
            // out before the acks came back, each round measured less than the last and the
            // rate decayed (to a quarter of the link on LTE with 1.25 × BDP when the window also
            // set the pace). Paced at the rate, a wider window adds no standing queue.
            cwnd_gain: 2.0,
            jitter_allowance: Duration::from_millis(25),
        }
    }
}
