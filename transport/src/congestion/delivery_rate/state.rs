//! What the controller shows of itself: why startup ended, the rate and minimum it holds, and
//! the searches steady state started. A slow transfer is explained by these (a startup that ended
//! on jitter far below the link, then searched), so the endpoint view and the benches' traces
//! print them.

use std::time::Duration;

use super::{DeliveryRate, Mode, StartupExit};

/// The controller's view of the path, for the endpoint view and traces: after a slow transfer,
/// whether startup ended early, on what, and whether steady state had to search for the rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SenderState {
    /// Why startup ended; `None` while in startup.
    pub startup_exit: Option<StartupExit>,
    /// The bottleneck rate estimate, bytes per second.
    pub bottleneck_rate: u64,
    /// The path's minimum round trip as the controller holds it (zero before the first sample).
    pub min_rtt: Duration,
    /// Searches for the rate steady state started ([`DeliveryRate::searches`]).
    pub searches: u32,
    /// Whether the sender yields to interactive traffic ([`DeliveryRate::yielding`]).
    pub yielding: bool,
    /// Rate corrections while yielding ([`DeliveryRate::corrections`]).
    pub corrections: u32,
}

impl DeliveryRate {
    /// What the controller believes of the path and how it got there, for the endpoint view and
    /// traces.
    pub fn sender_state(&self) -> SenderState {
        SenderState {
            startup_exit: self.startup_exit(),
            bottleneck_rate: self.bottleneck_rate(),
            min_rtt: self.path_min_rtt.get(),
            searches: self.searches,
            yielding: self.yielding,
            corrections: self.corrections,
        }
    }

    /// How many times a probe showed the path far faster than the estimate and steady state
    /// searched for the rate ([`super::pacing`]).
    pub fn searches(&self) -> u32 {
        self.searches
    }

    /// How many times the cycle's audit found the cruise overfilling the path and corrected
    /// the rate to what it delivered ([`super::audit`]).
    pub fn corrections(&self) -> u32 {
        self.corrections
    }

    /// Whether the sender yields to interactive traffic: only background transfers are sending.
    pub fn yielding(&self) -> bool {
        self.yielding
    }

    /// Busy round trips so far.
    pub fn rounds(&self) -> u64 {
        self.round
    }

    /// Whether the controller is still in startup.
    pub fn in_startup(&self) -> bool {
        self.mode == Mode::Startup
    }

    /// Why startup ended, once it has (until persistent congestion starts it over).
    pub fn startup_exit(&self) -> Option<StartupExit> {
        match self.mode {
            Mode::Startup => None,
            Mode::Steady(reason) => Some(reason),
        }
    }
}
