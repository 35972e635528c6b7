//! What a connection's path delivered, shared between its controller and whoever keeps it across
//! connections: the hub per device (in its store, so it survives a hub restart), the agent for
//! its own uplink. The next connection from the same device is offered the estimate and resumes
//! at it once a round trip confirms the path is the same (Careful Resume; see
//! `delivery_rate::resume`).
//!
//! quinn builds a connection's controller from the transport config's factory, which knows
//! nothing of the device: the device is known only after the handshake, from its certificate. So
//! each connection's config carries its own [`PathMemory`], and the hub fills it in once it knows
//! whose connection it is; the controller picks the offer up at its next ack or send, whichever
//! comes first. The send matters: a request that arrives a moment after the device connected
//! (a standby stream opens at once) would otherwise leave at startup's pace, the offer waiting
//! a round trip for an ack (GEO `load` after a reconnect: 0.9 s slower).
//!
//! The same handle carries the one thing the hub tells a controller about the traffic it sends:
//! whether only background transfers (image blobs) are sending, so the sender yields a little
//! rate for a short queue (`delivery_rate::audit`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::PathEstimate;

/// One connection's path estimate: the offer it may resume from and the latest it measured.
#[derive(Clone, Debug, Default)]
pub struct PathMemory(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    /// Set while an offer waits, so the controller's per-ack check is one atomic load.
    offered: AtomicBool,
    offer: Mutex<Option<PathEstimate>>,
    latest: Mutex<Option<PathEstimate>>,
    yielding: AtomicBool,
}

impl PathMemory {
    /// Offer the connection's controller a previous connection's estimate.
    pub fn offer(&self, estimate: PathEstimate) {
        *lock(&self.0.offer) = Some(estimate);
        self.0.offered.store(true, Ordering::Release);
    }

    /// What the connection's path delivered, once its controller measured it.
    pub fn latest(&self) -> Option<PathEstimate> {
        *lock(&self.0.latest)
    }

    /// Only background transfers are sending (`true`), or something else is too.
    pub fn set_yielding(&self, yielding: bool) {
        self.0.yielding.store(yielding, Ordering::Relaxed);
    }

    /// Whether the sender should yield (the controller's side).
    pub(super) fn yielding(&self) -> bool {
        self.0.yielding.load(Ordering::Relaxed)
    }

    /// The waiting offer, taken (the controller's side).
    pub(super) fn take_offer(&self) -> Option<PathEstimate> {
        // A load first: the controller asks before every packet it sends, and an offer is rare.
        if !self.0.offered.load(Ordering::Acquire) || !self.0.offered.swap(false, Ordering::AcqRel)
        {
            return None;
        }
        lock(&self.0.offer).take()
    }

    /// A new measurement (the controller's side).
    pub(super) fn record(&self, estimate: PathEstimate) {
        *lock(&self.0.latest) = Some(estimate);
    }
}

/// The estimates are plain values: a panic elsewhere cannot leave them half-written.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn an_offer_is_taken_once() {
        let memory = PathMemory::default();
        assert_eq!(memory.take_offer(), None);
        let estimate = PathEstimate {
            rate: 2_500_000,
            min_rtt: Duration::from_millis(600),
        };
        memory.clone().offer(estimate);
        assert_eq!(memory.take_offer(), Some(estimate));
        assert_eq!(memory.take_offer(), None);
    }

    #[test]
    fn the_latest_measurement_is_read_by_any_clone() {
        let memory = PathMemory::default();
        let estimate = PathEstimate {
            rate: 625_000,
            min_rtt: Duration::from_millis(100),
        };
        memory.record(estimate);
        assert_eq!(memory.clone().latest(), Some(estimate));
    }
}
