//! Outpost's shared protocol crate: everything the hub and the agent must agree on, and nothing that
//! touches a socket or a clock.
//!
//! - [`ids`]: role newtypes (`EndpointId`, `AgentId`, `Secret`).
//! - [`token`]: the join token (`EDGE_KEY`) and its strict decoder.
//! - [`wire`]: every message on the QUIC connection, its framing and limits, and the protocol flow.
//! - [`session`]: the agent's session state machine (check-ins, summon, standby), driven by the
//!   caller's clock so it can be tested with a virtual one.
//! - [`stream`]: the preface of each proxy stream (hub → agent) and the agent's answer.
//! - [`snapshot`]: the engine summary an agent sends before going to standby.
//! - [`text`]: the rule for text a device supplies (no control characters, bounded length).
//! - [`backoff`]: exponential backoff with full jitter for reconnects.
//! - [`congestion`]: congestion controllers by name, and why loss-based ones fail on our links.
//! - [`transport`]: named QUIC transport profiles (lan, cellular, satellite) with the reason for
//!   every value.
#![warn(missing_docs)]

pub mod backoff;
pub mod congestion;
pub mod ids;
pub mod session;
pub mod snapshot;
pub mod stream;
pub mod text;
pub mod token;
pub mod transport;
pub mod wire;

pub use ids::{AgentId, EndpointId, Secret};
