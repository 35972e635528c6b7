//! [`DeliveryRate`] behind quinn's controller traits: the adapter translates arguments, hands the
//! controller a [`PathMemory`]'s offer and records its measurements there.

use std::any::Any;
use std::sync::Arc;
use std::time::Instant;

use quinn::congestion::{Controller, ControllerFactory, ControllerMetrics};
use quinn_proto::RttEstimator;

use super::{DeliveryRate, DeliveryRateConfig, PathMemory};

/// Builds a [`DeliveryRate`] per connection, sharing `memory` with it when there is one (a
/// factory with memory belongs to one connection's transport config), else with a memory of its
/// own.
#[derive(Debug)]
pub(super) struct Factory {
    pub(super) config: Arc<DeliveryRateConfig>,
    pub(super) memory: Option<PathMemory>,
}

impl ControllerFactory for Factory {
    fn build(self: Arc<Self>, _now: Instant, current_mtu: u16) -> Box<dyn Controller> {
        Box::new(Adapter {
            controller: DeliveryRate::new(self.config.clone(), current_mtu),
            memory: self.memory.clone().unwrap_or_default(),
            recorded_round: 0,
        })
    }
}

#[derive(Clone, Debug)]
pub(super) struct Adapter {
    controller: DeliveryRate,
    memory: PathMemory,
    /// The round of the last estimate recorded in `memory`: one record per busy round.
    recorded_round: u64,
}

impl Adapter {
    pub(super) fn controller(&self) -> &DeliveryRate {
        &self.controller
    }

    pub(super) fn memory(&self) -> &PathMemory {
        &self.memory
    }

    /// Hand the controller an offer waiting in the path memory: it resumes at once if the last
    /// round trip it measured (the handshake's, at least) matches the offered path.
    fn take_offer(&mut self) {
        if let Some(offer) = self.memory.take_offer() {
            self.controller.offer_resume(offer);
        }
    }
}

impl Controller for Adapter {
    fn on_sent(&mut self, now: Instant, bytes: u64, _last_packet_number: u64) {
        self.take_offer();
        self.controller.on_sent(now, bytes);
    }

    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        _rtt: &RttEstimator,
    ) {
        // Not quinn's minimum round trip: it never expires (see `delivery_rate::min_rtt`).
        self.controller.on_ack(now, sent, bytes, app_limited);
    }

    fn on_end_acks(
        &mut self,
        now: Instant,
        in_flight: u64,
        _app_limited: bool,
        _largest_packet_num_acked: Option<u64>,
    ) {
        self.controller.on_end_acks(now, in_flight);
        self.controller.set_yielding(self.memory.yielding());
        self.take_offer();
        let round = self.controller.rounds();
        if round != self.recorded_round {
            self.recorded_round = round;
            if let Some(estimate) = self.controller.path_estimate() {
                self.memory.record(estimate);
            }
        }
    }

    fn on_congestion_event(
        &mut self,
        now: Instant,
        _sent: Instant,
        is_persistent_congestion: bool,
        lost_bytes: u64,
    ) {
        self.controller
            .on_congestion_event(now, lost_bytes, is_persistent_congestion);
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.controller.on_mtu_update(new_mtu);
    }

    fn window(&self) -> u64 {
        self.controller.sending_window()
    }

    fn metrics(&self) -> ControllerMetrics {
        let mut metrics = ControllerMetrics::default();
        metrics.congestion_window = self.controller.window();
        metrics.pacing_rate = self.controller.pacing_rate().map(|rate| rate * 8);
        metrics
    }

    fn pacing_rate(&self) -> Option<u64> {
        self.controller.pacing_rate()
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(self.clone())
    }

    fn initial_window(&self) -> u64 {
        self.controller.initial_window()
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::congestion::{PathEstimate, StartupExit};

    #[test]
    #[allow(clippy::disallowed_methods)] // one real instant anchors the virtual clock
    fn an_offer_is_taken_with_the_next_packet_sent_not_a_round_trip_later() {
        // A GEO connection whose handshake measured 600 ms; the hub then offers the device's last
        // path, and a request leaves before any further ack comes back.
        let rtt = Duration::from_millis(600);
        let start = Instant::now();
        let memory = PathMemory::default();
        let mut adapter = Adapter {
            controller: DeliveryRate::new(Arc::new(DeliveryRateConfig::default()), 1200),
            memory: memory.clone(),
            recorded_round: 0,
        };
        adapter.on_sent(start, 1200, 0);
        adapter.controller.on_ack(start + rtt, start, 1200, true);
        adapter.controller.on_end_acks(start + rtt, 0);
        memory.offer(PathEstimate {
            rate: 2_500_000,
            min_rtt: Duration::from_millis(590),
        });

        adapter.on_sent(start + rtt + Duration::from_millis(90), 1200, 1);
        let controller = adapter.controller();
        assert_eq!(controller.startup_exit(), Some(StartupExit::Resumed));
        assert!(controller.bottleneck_rate() >= 2_500_000);
    }
}
