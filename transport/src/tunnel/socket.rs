//! The agent's end of a tunnel as a UDP socket for quinn: every packet quinn sends goes into the
//! tunnel whatever its destination, and every packet the tunnel brings is from the hub's address
//! the connection was dialled to. So a connection dialled over a tunnel has the hub's QUIC
//! address as its remote, and rebinding its endpoint to a real UDP socket (`Endpoint::rebind`)
//! moves it to UDP by ordinary QUIC migration.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::pump::{outbound_queue, pump, OutboundSender, Pumped, QueueFull, INBOUND_PACKETS};

/// A tunnel as quinn's socket.
pub struct TunnelSocket {
    inbound: Mutex<mpsc::Receiver<((), Bytes)>>,
    outbound: OutboundSender,
    hub: SocketAddr,
    local: SocketAddr,
}

impl fmt::Debug for TunnelSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunnelSocket")
            .field("hub", &self.hub)
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl TunnelSocket {
    /// Run a pump on `stream` (hello already sent) and present it as a socket whose packets come
    /// from `hub`; `local` is the TCP connection's local address. The handle ends with the pump.
    pub fn spawn<S>(
        stream: S,
        hub: SocketAddr,
        local: SocketAddr,
    ) -> (Arc<Self>, JoinHandle<Pumped>)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (inbound_tx, inbound) = mpsc::channel(INBOUND_PACKETS);
        let (outbound, outbound_rx) = outbound_queue();
        let task = tokio::spawn(pump(stream, (), inbound_tx, outbound_rx));
        let socket = Arc::new(Self {
            inbound: Mutex::new(inbound),
            outbound,
            hub,
            local,
        });
        (socket, task)
    }
}

/// Fill `bufs` and `meta` from `inbound` as a UDP socket's receive would, each packet from
/// `from(tag)`: how many were filled, `Ready(0)` when the queue has closed, `Pending` (waker
/// registered) when it is empty. A packet longer than its buffer is dropped.
pub fn poll_packets<T>(
    inbound: &mut mpsc::Receiver<(T, Bytes)>,
    cx: &mut Context,
    bufs: &mut [IoSliceMut<'_>],
    meta: &mut [RecvMeta],
    from: impl Fn(T) -> SocketAddr,
) -> Poll<usize> {
    let mut filled = 0;
    while filled < bufs.len().min(meta.len()) {
        let next = if filled == 0 {
            match inbound.poll_recv(cx) {
                Poll::Ready(next) => next,
                Poll::Pending => return Poll::Pending,
            }
        } else {
            inbound.try_recv().ok()
        };
        let Some((tag, packet)) = next else {
            break;
        };
        if packet.len() > bufs[filled].len() {
            continue;
        }
        bufs[filled][..packet.len()].copy_from_slice(&packet);
        meta[filled] = RecvMeta {
            addr: from(tag),
            len: packet.len(),
            stride: packet.len(),
            ecn: None,
            dst_ip: None,
        };
        filled += 1;
    }
    Poll::Ready(filled)
}

/// The tunnel's queue never makes quinn wait: a full queue drops the packet instead.
#[derive(Debug)]
struct AlwaysWritable;

impl UdpPoller for AlwaysWritable {
    fn poll_writable(self: Pin<&mut Self>, _cx: &mut Context) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncUdpSocket for TunnelSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(AlwaysWritable)
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        match self.outbound.try_send(transmit.contents) {
            Ok(()) => Ok(()),
            // One connection keeps less in flight than the queue holds (`window`): a full queue
            // is a router's drop, and QUIC recovers it.
            Err(QueueFull::Full) => Ok(()),
            Err(QueueFull::Closed) => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let mut inbound = self.inbound.lock().unwrap_or_else(|e| e.into_inner());
        match poll_packets(&mut inbound, cx, bufs, meta, |()| self.hub) {
            // The pump ended: the tunnel is gone.
            Poll::Ready(0) => Poll::Ready(Err(io::ErrorKind::ConnectionReset.into())),
            polled => polled.map(Ok),
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    fn max_transmit_segments(&self) -> usize {
        1
    }

    fn max_receive_segments(&self) -> usize {
        1
    }

    fn may_fragment(&self) -> bool {
        false
    }
}
