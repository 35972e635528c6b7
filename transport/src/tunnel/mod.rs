//! QUIC packets over a TLS-over-TCP stream (`outpost_protocol::tunnel` has the why and the
//! framing): the pump that moves packets between a stream and two queues, and the agent's side as a
//! socket quinn can run an endpoint on.
//!
//! Both queues are bounded. Outbound, a packet that finds [`OUTBOUND_PACKETS`] waiting is dropped
//! (QUIC recovers it and its controller slows down, as for a full router queue); inbound, the
//! reader waits for room, so a slow endpoint holds back the TCP window, not memory.

mod pump;
mod socket;

pub use pump::{pump, Pumped, INBOUND_PACKETS, OUTBOUND_PACKETS};
pub use socket::TunnelSocket;
