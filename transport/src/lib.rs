//! Outpost's QUIC transport: how the hub and the agent configure quinn for the links they run on.
//!
//! - [`profile`]: named transport profiles (lan, cellular, satellite) with the reason for every value.
//! - [`congestion`]: congestion controllers by name, and why loss-based ones fail on our links.
//! - [`connection_id`]: the short connection ids an agent issues, and its client endpoint.
//! - [`close`]: the protocol's close codes as QUIC varints.
//! - [`tunnel`]: QUIC packets over TLS over TCP, where UDP is blocked.
//! - [`tail_repair`]: which streams send parity over the end of their bursts.
//!
//! The protocol itself (messages, framing, the session state machine) lives in `outpost-protocol`,
//! which does not depend on quinn.
#![warn(missing_docs)]

pub mod close;
pub mod congestion;
pub mod connection_id;
pub mod profile;
pub mod tail_repair;
pub mod tunnel;
