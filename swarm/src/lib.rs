//! `outpost-swarm`: a load tool that runs thousands of simulated devices in one process, each a
//! real agent (the `outpost-agent` library's identity, enrolment, dialer and session driver, not a
//! re-implementation) with its own identity, sharing a few UDP sockets.
//!
//! A run has four phases:
//! 1. [`fleet`]: load identities from the swarm's data directory; for those not enrolled yet,
//!    create an endpoint through the hub's admin API and enrol, with bounded concurrency;
//! 2. start every agent ([`outpost_agent::run_with`]) on one of the shared sockets and wait until
//!    all are online (their session welcomed);
//! 3. summon a sample through the API, one at a time, timing each;
//! 4. hold them checked in for the given time, then stop and report ([`Report`]).
//!
//! What it measures ([`stats`]): check-in RTT (check-in datagram sent → its ack), summon latency
//! (admin request → answer), enrolment rate, and errors by kind.
#![warn(missing_docs)]

pub mod api;
pub mod config;
pub mod fleet;
pub mod stats;
mod swarm;

pub use config::{HubAccess, SwarmConfig};
pub use stats::Report;
pub use swarm::{run, Phase, SwarmError};
