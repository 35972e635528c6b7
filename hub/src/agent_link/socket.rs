//! The hub's UDP socket, as quinn sees it: the platform socket, sending one datagram per call.
//!
//! quinn keeps, per connection, a transmit buffer as large as the biggest batch it ever sent, and
//! a batch holds as many datagrams as the socket may send in one call (up to 10 with GSO). After a
//! handshake every connection would keep ~14 KiB for a batch it rarely needs again: the hub's
//! traffic to agents is acks, control frames and request bodies, while the bulk flows the other
//! way. One datagram per call keeps that buffer at one MTU (measured: 13.6 KiB less per agent);
//! receiving still uses GRO.
//!
//! The socket's receive buffer is raised to [`RECEIVE_BUFFER`]: one socket takes every agent's
//! packets, and after a restart 25,000 agents' handshakes arrive at ~50,000 datagrams a second
//! while the hub's two cores are busy with cryptography. With Linux's default 208 KiB the kernel
//! dropped 86,000 of them in 30 s (`/proc/net/snmp` RcvbufErrors during the `scale` bench), and
//! each drop costs an agent a retransmission timeout that doubles.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, Runtime, UdpPoller};

/// Receive buffer asked for; Linux caps it at `net.core.rmem_max` (raise that on a busy hub).
pub(crate) const RECEIVE_BUFFER: usize = 8 << 20;

/// Bind the agents' UDP socket with a receive buffer of [`RECEIVE_BUFFER`] (or the most the
/// kernel allows), logging what it got.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    let sock = socket2::SockRef::from(&socket);
    if let Err(e) = sock.set_recv_buffer_size(RECEIVE_BUFFER) {
        tracing::warn!("cannot raise the UDP receive buffer: {e}");
    }
    let got = sock.recv_buffer_size()?;
    tracing::info!(
        receive_buffer = got,
        asked = RECEIVE_BUFFER,
        "agent socket bound"
    );
    Ok(socket)
}

/// `inner`, sending one datagram per call.
#[derive(Debug)]
pub(crate) struct OneDatagramPerSend(Arc<dyn AsyncUdpSocket>);

impl OneDatagramPerSend {
    /// Wrap a bound socket for the tokio runtime.
    pub(crate) fn wrap(socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        Ok(Arc::new(Self(quinn::TokioRuntime.wrap_udp_socket(socket)?)))
    }
}

impl AsyncUdpSocket for OneDatagramPerSend {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.0.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        self.0.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.0.poll_recv(cx, bufs, meta)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        1
    }

    fn max_receive_segments(&self) -> usize {
        self.0.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.0.may_fragment()
    }
}
