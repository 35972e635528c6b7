//! Congestion controllers for Outpost's links, chosen by name per transport profile.
//!
//! Loss-based control (quinn's default Cubic, and NewReno) reads every lost packet as congestion.
//! On the links devices live on, most loss is not congestion: rain fade on a GEO dish, a cell edge,
//! a LEO hand-over. At 1 % random loss and 600 ms the Mathis bound for a Reno-like sender is
//! ≈ 1.22 × 1200 B / (0.6 s × √0.01) ≈ 24 KB/s, so a 10 MB transfer takes minutes. A delivery-rate
//! controller sizes its window from what the path delivered, not from what it lost.
//!
//! [`Controller`] names the choices so profiles, flags and the `congestion` bench can pick one.
//! A connection's [`PathMemory`] carries its path estimate from one connection to the next, and
//! [`delivery_rate_of`] reads the controller's state (its decisions) for traces and tests.

mod delivery_rate;
mod path_memory;
mod quinn_adapter;

use std::sync::Arc;

use quinn::congestion::{BbrConfig, CubicConfig, NewRenoConfig};
use quinn::TransportConfig;

pub use delivery_rate::{
    DeliveryRate, DeliveryRateConfig, PathEstimate, ResumeKind, ResumeRecord, ResumeStats,
    SenderState, SilenceRecord, SilenceStats, StartupExit,
};
pub use path_memory::PathMemory;

/// A copy of the delivery-rate controller's state on `connection`, if it runs one.
pub fn delivery_rate_of(connection: &quinn::Connection) -> Option<DeliveryRate> {
    Some(adapter_of(connection)?.controller().clone())
}

/// The path memory of the delivery-rate controller on `connection`'s current path, if it runs one:
/// offer it a saved estimate, read what it measured.
pub fn path_memory_of(connection: &quinn::Connection) -> Option<PathMemory> {
    Some(adapter_of(connection)?.memory().clone())
}

/// A copy of the delivery-rate adapter on `connection`'s current path, if it runs one.
fn adapter_of(connection: &quinn::Connection) -> Option<Box<quinn_adapter::Adapter>> {
    connection
        .congestion_state()
        .into_any()
        .downcast::<quinn_adapter::Adapter>()
        .ok()
}

/// A congestion controller by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Controller {
    /// quinn's default: CUBIC (RFC 9438), loss-based.
    Cubic,
    /// NewReno (RFC 9002's reference), loss-based.
    NewReno,
    /// quinn's experimental BBRv1 port.
    QuinnBbr,
    /// Outpost's delivery-rate controller ([`DeliveryRate`]).
    DeliveryRate,
}

impl Controller {
    /// Every controller, for benches and flag parsing.
    pub const ALL: [Self; 4] = [
        Self::Cubic,
        Self::NewReno,
        Self::QuinnBbr,
        Self::DeliveryRate,
    ];

    /// The name used in profiles, flags and tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cubic => "cubic",
            Self::NewReno => "newreno",
            Self::QuinnBbr => "quinn-bbr",
            Self::DeliveryRate => "delivery-rate",
        }
    }

    /// Look a controller up by name.
    pub fn by_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Install this controller in a quinn transport config, starting from `initial_window` bytes.
    /// The delivery-rate controller resumes from its path memory's offer and records what it
    /// measures there: `memory` if given (one connection's config, shared by the controllers of
    /// all its paths), else a memory of its own ([`path_memory_of`]). The others ignore it.
    pub fn apply(
        self,
        config: &mut TransportConfig,
        initial_window: u64,
        memory: Option<PathMemory>,
    ) {
        match self {
            Self::Cubic => {
                let mut cubic = CubicConfig::default();
                cubic.initial_window(initial_window);
                config.congestion_controller_factory(Arc::new(cubic))
            }
            Self::NewReno => {
                let mut reno = NewRenoConfig::default();
                reno.initial_window(initial_window);
                config.congestion_controller_factory(Arc::new(reno))
            }
            Self::QuinnBbr => {
                let mut bbr = BbrConfig::default();
                bbr.initial_window(initial_window);
                config.congestion_controller_factory(Arc::new(bbr))
            }
            Self::DeliveryRate => {
                let delivery_rate = DeliveryRateConfig {
                    initial_window,
                    ..DeliveryRateConfig::default()
                };
                config.congestion_controller_factory(Arc::new(quinn_adapter::Factory {
                    config: Arc::new(delivery_rate),
                    memory,
                }))
            }
        };
    }
}
