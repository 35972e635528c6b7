//! The congestion window of a connection inside a tunnel: fixed, because TCP below already does
//! congestion control and recovery for the path.
//!
//! Measured without it (`tcp_fallback` bench, `flaky-cellular`, 10 MB down): the delivery-rate
//! controller above TCP took 97.9 s where QUIC on UDP took 22.5 s and TCP+TLS 19.4 s. Through
//! TCP's retransmissions and its backed-off timer after an outage, the QUIC sender sees seconds of
//! silence, declares persistent congestion and restarts from a small window, while TCP beneath
//! is ready to go at the path's rate. Inside a tunnel QUIC loses nothing (TCP delivers in order)
//! unless the tunnel's queue drops, so the window only has to keep that queue from overflowing:
//! [`TUNNEL_WINDOW`] bytes in flight, with the queue sized to hold them
//! (`pump::OUTBOUND_BYTES`), and TCP sets the pace.

use std::any::Any;
use std::sync::Arc;
use std::time::Instant;

use quinn::congestion::{Controller, ControllerFactory};
use quinn_proto::RttEstimator;

/// Bytes in flight on a tunnelled connection: a GEO path's bandwidth-delay product at 20 Mbit/s
/// (1.5 MB at 600 ms) with room, so the window is never what limits a tunnel on our links.
pub const TUNNEL_WINDOW: u64 = 2 << 20;

/// Builds a [`FixedWindow`].
#[derive(Debug)]
pub struct FixedWindowFactory;

impl ControllerFactory for FixedWindowFactory {
    fn build(self: Arc<Self>, _now: Instant, _current_mtu: u16) -> Box<dyn Controller> {
        Box::new(FixedWindow)
    }
}

/// A window of [`TUNNEL_WINDOW`] whatever happens.
#[derive(Clone, Copy, Debug)]
pub struct FixedWindow;

impl Controller for FixedWindow {
    fn on_ack(
        &mut self,
        _now: Instant,
        _sent: Instant,
        _bytes: u64,
        _app_limited: bool,
        _rtt: &RttEstimator,
    ) {
    }

    fn on_congestion_event(
        &mut self,
        _now: Instant,
        _sent: Instant,
        _is_persistent_congestion: bool,
        _lost_bytes: u64,
    ) {
    }

    fn on_mtu_update(&mut self, _new_mtu: u16) {}

    fn window(&self) -> u64 {
        TUNNEL_WINDOW
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(*self)
    }

    fn initial_window(&self) -> u64 {
        TUNNEL_WINDOW
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}
