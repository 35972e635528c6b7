//! Outpost's protocol: everything the hub and the agent must agree on, and nothing that touches a
//! socket or a clock. It does not depend on quinn: the QUIC glue (transport profiles, congestion
//! controllers, close codes as varints) is `outpost-transport`.
//!
//! - [`ids`]: role newtypes (`EndpointId`, `AgentId`, `Secret`).
//! - [`token`]: the join token (`EDGE_KEY`) and its strict decoder.
//! - [`wire`]: every message on the QUIC connection, its framing and limits, and the protocol flow.
//! - [`agent_session`]: the agent's session state machine (check-ins, summon, standby), driven by the
//!   caller's clock so it can be tested with a virtual one.
//! - [`stream`]: the preface of each proxy stream (hub → agent) and the agent's answer.
//! - [`fetch`]: fetch streams (agent → hub): a manifest or a blob from the hub's mirror, resumed
//!   from a byte offset.
//! - [`snapshot`]: the engine summary an agent sends before going to standby.
//! - [`stack`]: a Compose stack as a device receives it (normalised by the hub), its digests.
//! - [`job`]: a command run once on each device of a selection, its result and output capture.
//! - [`text`]: the rule for text a device supplies (no control characters, bounded length).
//! - [`backoff`]: exponential backoff with full jitter for reconnects.
//! - [`registry`]: what a registry request is made of (names, references, digests, byte ranges),
//!   parsed and bounded for the hub's mirror and the agent's loopback registry.
//! - [`tunnel`]: QUIC packets over TLS over TCP where UDP is blocked: the hello and the framing.
//! - [`reconnect`]: the agent's reconnect policy (final or retryable, reset after a stable session,
//!   a stopping hub's restart spread) as a plain decision.
#![warn(missing_docs)]

pub mod agent_session;
pub mod backoff;
pub mod fetch;
pub mod ids;
pub mod job;
pub mod reconnect;
pub mod registry;
pub mod snapshot;
pub mod stack;
pub mod stream;
pub mod text;
pub mod token;
pub mod tunnel;
pub mod window;
pub mod wire;

pub use ids::{AgentId, EndpointId, Secret};
