//! QUIC over a TLS-over-TCP tunnel, for devices whose network drops UDP.
//!
//! # Why packets, not a second multiplexer
//! The session (check-in datagrams, summons that open stream credit, stream priorities, flow-control
//! windows, stateless resets, migration) is QUIC's, end to end. Carrying the same QUIC packets over a
//! TCP stream, as RFC 9298 carries UDP over HTTP/1.1 and HTTP/2 proxies and as Tailscale's relays
//! carry WireGuard packets, keeps one session protocol and one code path for both transports: every
//! feature and test of the QUIC path holds on TCP, and a connection moves between the two by QUIC
//! migration, streams and all. A second multiplexer (yamux, HTTP/2) would mean a second copy of the
//! session with its own windows, priorities and summons. The cost: QUIC's loss recovery and
//! congestion control run above TCP's. The tunnel never retransmits on its own; a packet that finds
//! the tunnel's queue full is dropped, as a router would, so QUIC's controller sees the queue
//! instead of growing into it.
//!
//! # Framing
//! ```text
//! agent ── TLS (ALPN outpost-tunnel/1, the hub's certificate checked against the pinned CA) ──▶ hub
//! agent ── hello: "OPT1" ‖ flags (bit 0: through an HTTP proxy) ‖ reason length (1 byte) ‖ reason ──▶
//! both ── packet: length (2 bytes, big-endian, 1..=MAX_PACKET) ‖ one QUIC packet ──▶ both
//! ```
//! The hello says how the device came to use TCP, for the endpoint view; it proves nothing (the QUIC
//! handshake inside authenticates the device as on UDP). Each length is checked before its body is
//! read: a zero or oversized length ends the tunnel.

use std::future::Future;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::text;

/// ALPN of the tunnel's TLS connection.
pub const ALPN_TUNNEL: &[u8] = b"outpost-tunnel/1";
/// Largest packet the tunnel carries: quinn's MTU discovery stops at 1452 bytes of UDP payload,
/// and a tunnel has no MTU of its own, so anything above an Ethernet frame is not a QUIC packet.
pub const MAX_PACKET: usize = 1500;
/// Longest reason in a hello ("no QUIC answer within 5 s" is 26 bytes).
pub const MAX_REASON: usize = 200;
/// The hello's first four bytes: the tunnel protocol and its version.
const MAGIC: &[u8; 4] = b"OPT1";
const VIA_PROXY: u8 = 1;

/// What the agent says when it opens a tunnel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelHello {
    /// Whether the tunnel passes through an HTTP proxy (CONNECT).
    pub via_proxy: bool,
    /// Why the agent uses TCP, as an admin should read it.
    pub reason: String,
}

/// Why a tunnel's bytes could not be read.
#[derive(Debug, Error)]
pub enum TunnelError {
    /// The first bytes are not a tunnel hello of this version.
    #[error("not an Outpost tunnel (bad hello)")]
    BadMagic,
    /// The hello's flags name something this version does not know.
    #[error("unknown tunnel flags {0:#04x}")]
    UnknownFlags(u8),
    /// The hello's reason is not text a device may send.
    #[error("tunnel reason refused: {0}")]
    Reason(String),
    /// A packet length of zero or above [`MAX_PACKET`]; nothing of its body was read.
    #[error("tunnel packet of {0} bytes (1..={MAX_PACKET} allowed)")]
    BadLength(usize),
    /// The tunnel ended cleanly between two packets.
    #[error("tunnel closed by peer")]
    Closed,
    /// Transport failure, including an end in the middle of a packet or hello.
    #[error("tunnel I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// The hello's bytes; a reason longer than [`MAX_REASON`] is cut at a character boundary.
pub fn encode_hello(hello: &TunnelHello) -> Vec<u8> {
    let mut reason = hello.reason.as_str();
    while reason.len() > MAX_REASON {
        let mut end = MAX_REASON.min(reason.len() - 1);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason = &reason[..end];
    }
    let mut bytes = Vec::with_capacity(6 + reason.len());
    bytes.extend_from_slice(MAGIC);
    bytes.push(if hello.via_proxy { VIA_PROXY } else { 0 });
    bytes.push(reason.len() as u8);
    bytes.extend_from_slice(reason.as_bytes());
    bytes
}

/// Read a hello: at most 6 + [`MAX_REASON`] bytes, refused at the first byte that is wrong.
pub async fn read_hello<R: AsyncRead + Unpin>(reader: &mut R) -> Result<TunnelHello, TunnelError> {
    let mut head = [0u8; 6];
    reader.read_exact(&mut head).await?;
    if &head[..4] != MAGIC {
        return Err(TunnelError::BadMagic);
    }
    let flags = head[4];
    if flags & !VIA_PROXY != 0 {
        return Err(TunnelError::UnknownFlags(flags));
    }
    let len = usize::from(head[5]);
    if len > MAX_REASON {
        return Err(TunnelError::Reason(format!(
            "{len} bytes, more than {MAX_REASON}"
        )));
    }
    let mut reason = vec![0u8; len];
    reader.read_exact(&mut reason).await?;
    let reason = String::from_utf8(reason).map_err(|_| TunnelError::Reason("not UTF-8".into()))?;
    text::device_text(&reason).map_err(|e| TunnelError::Reason(e.to_string()))?;
    Ok(TunnelHello {
        via_proxy: flags & VIA_PROXY != 0,
        reason,
    })
}

/// The length prefix of a packet of `len` bytes (`len` ≤ [`MAX_PACKET`]).
pub fn packet_header(len: usize) -> [u8; 2] {
    (len.min(MAX_PACKET) as u16).to_be_bytes()
}

/// Read one packet into `buf` (cleared first): its length, checked, then its body. A clean end
/// before a packet begins is [`TunnelError::Closed`].
pub async fn read_packet<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> Result<(), TunnelError> {
    let mut head = [0u8; 2];
    match reader.read(&mut head[..1]).await? {
        0 => return Err(TunnelError::Closed),
        _ => reader.read_exact(&mut head[1..]).await?,
    };
    let len = usize::from(u16::from_be_bytes(head));
    if len == 0 || len > MAX_PACKET {
        return Err(TunnelError::BadLength(len));
    }
    buf.clear();
    buf.resize(len, 0);
    reader.read_exact(buf).await?;
    Ok(())
}

/// Decode a hello from a byte slice (the fuzz target's entry point; the hub reads from the stream).
pub fn decode_hello(bytes: &[u8]) -> Result<TunnelHello, TunnelError> {
    let mut reader = bytes;
    let polled = {
        let read = std::pin::pin!(read_hello(&mut reader));
        read.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    };
    // A slice never makes a reader wait: one poll reaches the end.
    let std::task::Poll::Ready(hello) = polled else {
        return Err(TunnelError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    };
    let hello = hello?;
    if reader.is_empty() {
        Ok(hello)
    } else {
        Err(TunnelError::Reason(format!(
            "{} bytes after the hello",
            reader.len()
        )))
    }
}

#[cfg(test)]
mod tests;
