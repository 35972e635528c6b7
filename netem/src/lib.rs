//! Outpost's link emulator: field profiles of bad networks (satellite, cellular) applied to real
//! traffic, without the kernel's `sch_netem`.
//!
//! - [`model`]: the pure, I/O-free [`LinkModel`] that decides each packet's fate from the
//!   caller's clock and a seeded RNG.
//! - [`profile`]: named TOML profiles (`netem/profiles/*.toml`) resolved into model configs.
//! - [`relay`]: a NAT-like UDP relay (binary and in-process) that applies a profile.
//! - [`socket`]: a `quinn::AsyncUdpSocket` decorator for in-process QUIC tests.
//! - [`router`]: an L3 emulator moving all IP traffic between two TUN devices.
//! - [`control`]: run-time commands (change profile, outage, NAT rebind) over a Unix socket.
#![warn(missing_docs)]

pub mod error;
pub mod model;
pub mod profile;
pub mod units;

pub use model::{LinkConfig, LinkCounters, LinkModel, Verdict};
pub mod control;
pub mod counters;
mod delay_line;
pub mod probe;
pub mod relay;

pub use counters::FrontendCounters;
pub use profile::Profile;
pub use relay::{Relay, RelayControl, RelayHandle};
pub mod socket;
pub use socket::{NetemSocket, NetemSocketControl, Side};
pub mod router;
pub use router::{Router, RouterControl, RouterHandle};
