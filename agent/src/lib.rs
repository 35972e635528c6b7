//! The Outpost agent: runs on each device, dials out to the hub, and keeps one QUIC session.
//!
//! - [`identity`]: UUID, key pair, certificate and enrolment record on disk.
//! - [`docker_host`]: the local engine address proxy streams are relayed to.
//! - [`deploy`]: the stack worker: applies what the hub says the device should run, watches it.
//! - [`dial`]: reaching the pinned hub, with final and retryable failures told apart.
//! - [`enroll`]: the one-time enrolment exchange.
//! - [`driver`]: the async driver around the I/O-free session state machine.
//! - [`route`]: noticing a new local address, so an idle device tells the hub at once.
//! - [`relay`]: proxy streams from the hub relayed byte for byte to the local engine.
//! - [`loopback`]: the device's registry on 127.0.0.1, fed from the hub's mirror over QUIC.
//! - [`job`]: the job runner: runs what the hub orders at most once, keeps results until stored.
//! - [`renew`]: renewing the certificate over the session before it expires.
//! - [`run`]: the agent's life: enrol once, then stay connected with backoff.
//! - [`stack`]: applying a stack (a normalised Compose project) all or nothing, observing it.
#![warn(missing_docs)]

pub mod deploy;
pub mod dial;
pub mod docker_host;
pub mod driver;
pub mod enroll;
pub mod hub_reach;
pub mod identity;
pub mod job;
pub mod loopback;
pub mod metrics;
pub mod relay;
pub mod renew;
pub mod route;
pub mod run;
pub mod snapshot;
pub mod stack;
pub mod transport_choice;
pub mod tunnel;

pub use run::{run, run_with, AgentConfig, AgentError, Hooks, Stacks};
