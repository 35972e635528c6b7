//! QUIC packets over a TLS-over-TCP stream (`outpost_protocol::tunnel` has the why and the
//! framing): the pump that moves packets between a stream and two queues, and the agent's side as a
//! socket quinn can run an endpoint on.
//!
//! Both queues are bounded. Outbound, a packet that finds [`OUTBOUND_BYTES`] waiting is dropped;
//! the connection inside keeps less than that in flight ([`window`]), so only a second connection
//! on the same tunnel could fill it. Inbound, the reader waits for room, so a slow endpoint holds
//! back the TCP window, not memory.

mod pump;
mod socket;
pub mod window;

pub use pump::{
    outbound_queue, pump, OutboundReceiver, OutboundSender, Pumped, QueueFull, INBOUND_PACKETS,
    OUTBOUND_BYTES,
};
pub use socket::{poll_packets, TunnelSocket};
pub use window::{FixedWindowFactory, TUNNEL_WINDOW};
