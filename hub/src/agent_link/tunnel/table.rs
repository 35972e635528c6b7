//! The hub's live tunnels, as the QUIC endpoint's socket and the rest of the hub see them.
//!
//! quinn knows a peer only by its socket address, so each tunnel gets a virtual one: an address in
//! `100::/64`, IPv6's discard-only prefix (RFC 6666), which no UDP packet ever comes from, with the
//! tunnel's number in its low 64 bits. The socket sends a packet for such an address into that
//! tunnel ([`Tunnels::send`]) and hands quinn the packets every tunnel brings ([`Tunnels::poll_recv`]);
//! the endpoint view, the log and admission read the TCP peer's real address through
//! [`Tunnels::resolve`].

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use outpost_transport::tunnel::{outbound_queue, poll_packets, OutboundReceiver, OutboundSender};
use quinn::udp::RecvMeta;
use std::io::IoSliceMut;
use tokio::sync::{mpsc, watch};

/// Packets from all tunnels waiting for the endpoint: the pumps wait when it is full, which holds
/// back their TCP windows.
const INBOUND_QUEUE: usize = 1024;
/// How long a tunnel outlives its session, for the close frame to reach the agent.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);
/// The first 64 bits of every virtual address: `100::/64`.
const DISCARD_PREFIX: u16 = 0x0100;

/// How a device reaches the hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathKind {
    /// QUIC on UDP.
    Quic,
    /// QUIC packets in a TLS-over-TCP tunnel.
    Tcp {
        /// Through an HTTP proxy (the agent's word).
        via_proxy: bool,
        /// Why the agent uses TCP (the agent's word, device text).
        reason: String,
    },
}

/// A peer's address as an admin should read it, and how it is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path {
    /// The UDP peer, or the tunnel's TCP peer.
    pub addr: SocketAddr,
    /// QUIC or a tunnel.
    pub kind: PathKind,
}

#[derive(Debug)]
struct Peer {
    tcp: SocketAddr,
    via_proxy: bool,
    reason: String,
    outbound: OutboundSender,
    claimed: watch::Sender<bool>,
}

#[derive(Debug)]
struct Inner {
    next: AtomicU64,
    peers: Mutex<HashMap<u64, Peer>>,
    inbound_tx: mpsc::Sender<(SocketAddr, Bytes)>,
    inbound: Mutex<mpsc::Receiver<(SocketAddr, Bytes)>>,
    dropped: AtomicU64,
}

/// The live tunnels; cheap to clone.
#[derive(Clone, Debug)]
pub struct Tunnels(Arc<Inner>);

impl Default for Tunnels {
    fn default() -> Self {
        let (inbound_tx, inbound) = mpsc::channel(INBOUND_QUEUE);
        Self(Arc::new(Inner {
            next: AtomicU64::new(1),
            peers: Mutex::default(),
            inbound_tx,
            inbound: Mutex::new(inbound),
            dropped: AtomicU64::new(0),
        }))
    }
}

/// One registered tunnel, as its task holds it.
#[derive(Debug)]
pub(crate) struct Registered {
    /// Its virtual address.
    pub addr: SocketAddr,
    /// Packets for it.
    pub outbound: OutboundReceiver,
    /// Where its packets go.
    pub inbound: mpsc::Sender<(SocketAddr, Bytes)>,
    /// Becomes true when a QUIC connection is set up over it.
    pub claimed: watch::Receiver<bool>,
}

fn virtual_addr(id: u64) -> SocketAddr {
    let [a, b, c, d] = [
        (id >> 48) as u16,
        (id >> 32) as u16,
        (id >> 16) as u16,
        id as u16,
    ];
    SocketAddr::new(
        IpAddr::V6(Ipv6Addr::new(DISCARD_PREFIX, 0, 0, 0, a, b, c, d)),
        0,
    )
}

/// The tunnel number of a virtual address; `None` for every real one.
fn tunnel_id(addr: SocketAddr) -> Option<u64> {
    let IpAddr::V6(ip) = addr.ip() else {
        return None;
    };
    let s = ip.segments();
    (s[..4] == [DISCARD_PREFIX, 0, 0, 0]).then(|| {
        s[4..]
            .iter()
            .fold(0u64, |id, segment| (id << 16) | u64::from(*segment))
    })
}

impl Tunnels {
    /// Register a tunnel from `tcp` (its queue bounded by `OUTBOUND_BYTES`).
    pub(crate) fn register(&self, tcp: SocketAddr, via_proxy: bool, reason: String) -> Registered {
        let id = self.0.next.fetch_add(1, Ordering::Relaxed);
        let (outbound_tx, outbound) = outbound_queue();
        let (claimed_tx, claimed) = watch::channel(false);
        self.peers().insert(
            id,
            Peer {
                tcp,
                via_proxy,
                reason,
                outbound: outbound_tx,
                claimed: claimed_tx,
            },
        );
        Registered {
            addr: virtual_addr(id),
            outbound,
            inbound: self.0.inbound_tx.clone(),
            claimed,
        }
    }

    /// Forget the tunnel at `addr`: packets for it are dropped from now on, and its queue closes
    /// once drained, which ends its pump.
    pub(crate) fn remove(&self, addr: SocketAddr) {
        if let Some(id) = tunnel_id(addr) {
            self.peers().remove(&id);
        }
    }

    /// The session over `addr` ended: if it is a tunnel, close it once the connection's close
    /// frame has had [`CLOSE_GRACE`] to go out through it.
    pub(crate) fn release(&self, addr: SocketAddr) {
        if tunnel_id(addr).is_some() {
            let tunnels = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(CLOSE_GRACE).await;
                tunnels.remove(addr);
            });
        }
    }

    /// A QUIC connection was set up with `addr`: if it is a tunnel, it stays.
    pub(crate) fn claim(&self, addr: SocketAddr) {
        if let Some(peer) =
            tunnel_id(addr).and_then(|id| self.peers().get(&id).map(|p| p.claimed.clone()))
        {
            peer.send_replace(true);
        }
    }

    /// Whether `addr` is a tunnel's (virtual) address.
    pub fn is_tunnel(&self, addr: SocketAddr) -> bool {
        tunnel_id(addr).is_some()
    }

    /// Tunnels carrying a QUIC session now.
    pub fn carrying_sessions(&self) -> usize {
        self.peers()
            .values()
            .filter(|p| *p.claimed.borrow())
            .count()
    }

    /// Tunnels open now.
    pub fn len(&self) -> usize {
        self.peers().len()
    }

    /// Whether no tunnel is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Packets dropped because a tunnel's queue was full.
    pub fn dropped(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }

    /// Where `addr` really is and how it is reached.
    pub fn resolve(&self, addr: SocketAddr) -> Path {
        let Some(id) = tunnel_id(addr) else {
            return Path {
                addr,
                kind: PathKind::Quic,
            };
        };
        match self.peers().get(&id) {
            Some(peer) => Path {
                addr: peer.tcp,
                kind: PathKind::Tcp {
                    via_proxy: peer.via_proxy,
                    reason: peer.reason.clone(),
                },
            },
            None => Path {
                addr,
                kind: PathKind::Tcp {
                    via_proxy: false,
                    reason: String::new(),
                },
            },
        }
    }

    /// If `to` is a tunnel's address, queue `contents` for it and say so; `false` for a real
    /// address, which the caller sends over UDP. `contents` is one datagram, or a GSO batch of
    /// datagrams `segment_size` bytes long but the last, queued one by one: a tunnel frames
    /// datagrams, the agent's end hands each to quinn. A datagram is dropped when the queue is
    /// full or the tunnel is gone.
    pub(crate) fn send(
        &self,
        to: SocketAddr,
        contents: &[u8],
        segment_size: Option<usize>,
    ) -> bool {
        let Some(id) = tunnel_id(to) else {
            return false;
        };
        let peers = self.peers();
        let peer = peers.get(&id);
        for datagram in contents.chunks(segment_size.unwrap_or(contents.len()).max(1)) {
            if peer.is_none_or(|peer| peer.outbound.try_send(datagram).is_err()) {
                self.0.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        true
    }

    /// Fill `bufs` with packets the tunnels brought, as a UDP socket's receive would.
    pub(crate) fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<usize> {
        let mut inbound = self.0.inbound.lock().unwrap_or_else(|e| e.into_inner());
        match poll_packets(&mut inbound, cx, bufs, meta, |from| from) {
            // Every sender is held by this table, so the queue never closes while it lives.
            Poll::Ready(0) => Poll::Pending,
            polled => polled,
        }
    }

    fn peers(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Peer>> {
        self.0.peers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_transport::tunnel::OUTBOUND_BYTES;

    #[test]
    fn virtual_addresses_round_trip_and_real_ones_are_not_tunnels() {
        for id in [1, 0xffff, 0x1_0000, u64::MAX] {
            assert_eq!(tunnel_id(virtual_addr(id)), Some(id));
        }
        for real in [
            "198.18.0.2:4433",
            "[2001:db8::1]:4433",
            "[::ffff:10.0.0.1]:1",
        ] {
            assert_eq!(tunnel_id(real.parse().unwrap()), None, "{real}");
        }
    }

    #[test]
    fn a_tunnel_resolves_to_its_tcp_peer_until_removed() {
        let tunnels = Tunnels::default();
        let tcp: SocketAddr = "198.18.0.2:40000".parse().unwrap();
        let registered = tunnels.register(tcp, true, "no QUIC answer".into());
        let path = tunnels.resolve(registered.addr);
        assert_eq!(path.addr, tcp);
        assert_eq!(
            path.kind,
            PathKind::Tcp {
                via_proxy: true,
                reason: "no QUIC answer".into()
            }
        );
        assert!(tunnels.send(registered.addr, b"packet", None));
        tunnels.remove(registered.addr);
        assert!(tunnels.is_empty());
        assert!(
            tunnels.send(registered.addr, b"dropped", None),
            "still a tunnel address"
        );
        assert_eq!(tunnels.dropped(), 1);
        let real: SocketAddr = "198.18.0.3:5".parse().unwrap();
        assert!(!tunnels.send(real, b"udp", None));
        assert_eq!(tunnels.resolve(real).kind, PathKind::Quic);
    }

    #[test]
    fn a_claimed_tunnel_counts_as_carrying_a_session() {
        let tunnels = Tunnels::default();
        let first = tunnels.register("198.18.0.2:1".parse().unwrap(), false, String::new());
        let _second = tunnels.register("198.18.0.2:2".parse().unwrap(), false, String::new());
        assert_eq!(tunnels.carrying_sessions(), 0);
        tunnels.claim(first.addr);
        assert!(*first.claimed.borrow());
        assert_eq!((tunnels.carrying_sessions(), tunnels.len()), (1, 2));
    }

    #[tokio::test]
    async fn a_gso_batch_leaves_the_tunnel_as_its_datagrams() {
        let tunnels = Tunnels::default();
        let registered = tunnels.register("198.18.0.2:1".parse().unwrap(), false, String::new());
        let batch: Vec<u8> = (0..3u8)
            .flat_map(|i| vec![i; if i == 2 { 500 } else { 1200 }])
            .collect();
        assert!(tunnels.send(registered.addr, &batch, Some(1200)));
        drop(tunnels);
        let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
        let (inbound, _unread) = mpsc::channel::<((), Bytes)>(1);
        let pumped = tokio::spawn(outpost_transport::tunnel::pump(
            ours,
            (),
            inbound,
            registered.outbound,
        ));
        let mut datagrams = Vec::new();
        let mut buf = Vec::new();
        while outpost_protocol::tunnel::read_packet(&mut theirs, &mut buf)
            .await
            .is_ok()
        {
            datagrams.push(buf.clone());
        }
        let read: Vec<(usize, u8)> = datagrams.iter().map(|d| (d.len(), d[0])).collect();
        assert_eq!(read, [(1200, 0), (1200, 1), (500, 2)]);
        assert!(datagrams.iter().all(|d| d.iter().all(|b| *b == d[0])));
        pumped.abort();
    }

    #[test]
    fn a_full_tunnel_queue_drops_and_counts() {
        let tunnels = Tunnels::default();
        let registered = tunnels.register("198.18.0.2:1".parse().unwrap(), false, String::new());
        let packet = [0u8; 1000];
        for _ in 0..OUTBOUND_BYTES / packet.len() + 1 {
            tunnels.send(registered.addr, &packet, None);
        }
        assert_eq!(tunnels.dropped(), 1);
    }
}
