//! The Outpost hub: accepts agents over QUIC, keeps their sessions, stores endpoints in SQLite and
//! serves the admin HTTPS API.
//!
//! - [`config`]: a hub's configuration, every default a named constant.
//! - [`server`]: start a hub from a resolved [`config::HubConfig`].
//! - [`agent_link`]: the QUIC endpoint (admission, window budget, adaptive check-ins), enrolment and
//!   per-agent session drivers.
//! - [`session`]: the hub's side of one agent session, as a state machine without I/O.
//! - [`registry`]: live sessions in memory, a map of handles (status, summon, revoke).
//! - [`store`]: durable state in SQLite.
//! - [`stacks`]: Compose files read and checked into the stack versions devices run.
//! - [`fleet`]: rollouts at run time: fed reports, presence and a tick; their decisions written.
//! - [`rollout`]: a stack version spreading over devices wave by wave, as a state machine without
//!   I/O (plan parsing, soak, failure threshold, offline devices, late joiners).
//! - [`api`]: the admin HTTPS API.
//! - [`metrics`]: Prometheus series of the fleet, on `/metrics`.
//! - [`mirror`]: the pull-through registry mirror, on `/v2/`.
//! - [`alerts`]: webhooks told of offline devices, paused rollouts, finished jobs, expiring
//!   certificates; signed, queued in the store, retried.
//! - `proxy` (private): the Docker API proxy behind `/api/endpoints/{id}/docker/…`.
//! - [`cli`]: the `outpost-hub` command line, including the admin client.
#![warn(missing_docs)]

pub mod access;
pub mod agent_link;
pub mod alerts;
pub mod announcement;
pub mod api;
pub mod audit;
pub mod changes;
pub mod cli;
pub mod config;
pub mod context;
pub mod fleet;
pub mod fleet_relay;
mod hand_off;
pub mod hubs;
pub mod job_relay;
pub mod jobs;
mod liveness;
pub mod metrics;
pub mod mirror;
pub mod path_mtu;
pub mod peers;
mod ping_cache;
mod ping_carry;
mod proxy;
pub mod registry;
pub mod restart_notice;
pub mod rollout;
pub mod server;
pub mod session;
pub mod shared_ca;
pub mod stacks;
pub mod store;
pub mod tickets;
pub mod traffic;
