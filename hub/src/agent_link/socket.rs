//! The hub's UDP socket, as quinn sees it: the platform socket, with GSO where the kernel has it,
//! stateless resets within a budget per destination network ([`reset_budget`]), and counting
//! the bytes it carries for the metrics (two atomic adds per call, so no lock per packet).
//!
//! GSO sends a batch of up to 10 datagrams in one call. The hub's bulk flows go to agents
//! (`docker load`, image blobs): ten 10 MB loads with no link emulation cost the hub 0.68–0.99 s
//! of CPU with GSO against 1.32–1.68 s at one datagram per call (three runs of each, taking turns:
//! `link_profiles -- --profiles transparent --outpost-loads-only --transfers 10`, session 34).
//! quinn keeps a connection's transmit buffer as large as its largest batch; our patch
//! (`vendor/README.md`) releases it once the connection has nothing left to send, so an idle
//! agent's connection holds one MTU, not ~14 KiB (the hub's memory per agent at 25,000 is as it
//! was at one datagram per call: BENCHMARKS.md, session 34).
//!
//! The socket's receive buffer is raised to [`RECEIVE_BUFFER`]: one socket takes every agent's
//! packets, and after a restart 25,000 agents' handshakes arrive at ~50,000 datagrams a second
//! while the hub's two cores are busy with cryptography. With Linux's default 208 KiB the kernel
//! dropped 86,000 of them in 30 s (`/proc/net/snmp` RcvbufErrors during the `scale` bench), and
//! each drop costs an agent a retransmission timeout that doubles.
//!
//! quinn hands the endpoint's stateless responses to [`AsyncUdpSocket::try_send_response`] (our
//! vendored patch, `vendor/README.md`). Of those, a stateless reset is the only one with a short
//! header (RFC 9000 §17.3: the first bit clear; Retry, version negotiation and refusals are long
//! headers), and only resets go through the budget: Retry and refusals answer connection attempts,
//! which admission bounds.

mod reset_budget;

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, Runtime, UdpPoller};
use tokio::time::Instant;

use super::tunnel::Tunnels;
use crate::metrics::WireBytes;
use reset_budget::ResetBudget;

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

/// `inner`, sending stateless resets within their budget and counting the bytes it carries;
/// packets for a tunnel's address go into that tunnel, a GSO batch as its datagrams, and the
/// tunnels' packets arrive with the socket's own, taking turns with them.
#[derive(Debug)]
pub(crate) struct HubSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    resets: Mutex<ResetBudget>,
    bytes: WireBytes,
    tunnels: Tunnels,
    tunnels_first: AtomicBool,
}

impl HubSocket {
    /// Wrap a bound socket for the tokio runtime, adding what it carries to `bytes`.
    pub(crate) fn wrap(
        socket: std::net::UdpSocket,
        bytes: WireBytes,
        tunnels: Tunnels,
    ) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        Ok(Arc::new(Self {
            inner: quinn::TokioRuntime.wrap_udp_socket(socket)?,
            resets: Mutex::new(ResetBudget::new(Instant::now())),
            bytes,
            tunnels,
            tunnels_first: AtomicBool::new(false),
        }))
    }

    fn send(&self, transmit: &Transmit) -> io::Result<()> {
        if !self.tunnels.send(
            transmit.destination,
            transmit.contents,
            transmit.segment_size,
        ) {
            self.inner.try_send(transmit)?;
        }
        self.bytes.sent(transmit.contents.len());
        Ok(())
    }

    fn poll_udp(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_recv(cx, bufs, meta)
    }

    fn poll_tunnels(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.tunnels.poll_recv(cx, bufs, meta).map(Ok)
    }

    /// Whether the reset to `to` fits the budget; drops are logged as a count, every ten seconds
    /// at most.
    fn reset_allowed(&self, to: SocketAddr) -> bool {
        let now = Instant::now();
        let mut budget = self.resets.lock().unwrap_or_else(|e| e.into_inner());
        if budget.allow(now, to.ip()) {
            return true;
        }
        if let Some(dropped) = budget.report(now) {
            tracing::warn!(
                dropped,
                last_to = %to,
                "stateless resets over budget dropped (a spoofed spray, or a crash under a large fleet)"
            );
        }
        false
    }
}

/// Whether `datagram` is a stateless reset: among the endpoint's stateless responses, the only
/// short-header packet.
fn is_stateless_reset(datagram: &[u8]) -> bool {
    datagram.first().is_some_and(|first| first & 0x80 == 0)
}

impl AsyncUdpSocket for HubSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        self.send(transmit)
    }

    fn try_send_response(&self, transmit: &Transmit) -> io::Result<()> {
        if is_stateless_reset(transmit.contents) && !self.reset_allowed(transmit.destination) {
            return Ok(());
        }
        self.send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        // Alternate which source goes first, so a busy one cannot starve the other; a source that
        // has nothing registers its waker before the other is asked.
        let tunnels_first = self.tunnels_first.fetch_xor(true, Ordering::Relaxed);
        let received = if tunnels_first {
            match self.poll_tunnels(cx, bufs, meta) {
                Poll::Pending => self.poll_udp(cx, bufs, meta),
                ready => ready,
            }
        } else {
            match self.poll_udp(cx, bufs, meta) {
                Poll::Pending => self.poll_tunnels(cx, bufs, meta),
                ready => ready,
            }
        };
        if let Poll::Ready(Ok(count)) = received {
            let bytes = meta.iter().take(count).map(|m| m.len).sum();
            self.bytes.received(bytes);
        }
        received
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}
