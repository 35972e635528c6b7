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
            // 1.25 × BDP + 25 ms: probes for a quarter more than the rate each round. Jitter
            // makes the minimum RTT read low (50 ms on a 70 ms LTE path with ±8 ms): 1.25 × BDP
            // alone then kept less than a BDP in flight, each round measured less than the last
            // and the rate decayed to a quarter of the link; the 25 ms cover that (LTE keeps
            // 87 ms of the rate in flight). A plain 1.5 × BDP did too, but on GEO it is 290 ms
            // of standing queue, more than the modem's 750 KB buffer holds at 20 Mbit/s: every
            // round overflowed it and the round trip rose to 870 ms (the `congestion` bench).
            cwnd_gain: 1.25,
            jitter_allowance: Duration::from_millis(25),
        }
    }
}
