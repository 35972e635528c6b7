//! Stateless-reset reflection: a connection id the hub minted, replayed after the connection is
//! gone, makes the hub send a stateless reset to whatever source the datagram claims.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use outpost_certs::{pinned_client_config, Fingerprint, HUB_SERVER_NAME};
use outpost_hub::agent_link::connection_ids::HUB_CID_LEN;
use outpost_protocol::wire::ALPN_ENROLL;
use quinn::crypto::rustls::QuicClientConfig;
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, Runtime, TokioRuntime, UdpPoller};

/// Size of each sprayed datagram: above quinn's minimum for a reset (a reset must be smaller than
/// what caused it), like a small check-in.
const SPRAY_DATAGRAM: usize = 100;
/// How long the spray listens for late resets after its last datagram.
const LINGER: Duration = Duration::from_millis(300);

/// A connection id the hub at `hub` minted for a connection from `source`: a handshake (enrolment
/// ALPN, trusting `ca_fingerprint`) whose first short-header datagram is read on the way out. quinn
/// does not expose the peer's connection id, but the client puts it in every short header, right
/// after the first byte.
pub fn collect_connection_id(hub: SocketAddr, ca_fingerprint: [u8; 32], source: IpAddr) -> Vec<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (tls, _) = pinned_client_config(Fingerprint(ca_fingerprint), None, &[ALPN_ENROLL])
            .expect("client TLS");
        let config =
            quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).expect("QUIC TLS")));
        let tap = Arc::new(Tap::bind(source));
        let endpoint = quinn::Endpoint::new_with_abstract_socket(
            quinn::EndpointConfig::default(),
            None,
            tap.clone(),
            Arc::new(TokioRuntime),
        )
        .expect("client");
        let conn = endpoint
            .connect_with(config, hub, HUB_SERVER_NAME)
            .expect("dial")
            .await
            .expect("handshake with the hub");
        // One byte on a stream leaves in a 1-RTT packet, alone in its datagram.
        let (mut send, _recv) = conn.open_bi().await.expect("a stream");
        send.write_all(b"x").await.expect("a byte");
        let mut cid = None;
        for _ in 0..200 {
            cid = tap.cid.lock().expect("tap").clone();
            if cid.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        conn.close(0u32.into(), b"");
        endpoint.wait_idle().await;
        cid.expect("a short-header datagram within 2 s of the handshake")
    })
}

/// A client socket that keeps the hub's connection id from the first short header it sends.
#[derive(Debug)]
struct Tap {
    inner: Arc<dyn AsyncUdpSocket>,
    cid: Mutex<Option<Vec<u8>>>,
}

impl Tap {
    fn bind(source: IpAddr) -> Self {
        let socket = UdpSocket::bind(SocketAddr::new(source, 0)).expect("bind the tap");
        Self {
            inner: TokioRuntime.wrap_udp_socket(socket).expect("wrap socket"),
            cid: Mutex::new(None),
        }
    }
}

impl AsyncUdpSocket for Tap {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let short = transmit.contents.first().is_some_and(|b| b & 0x80 == 0);
        if short && transmit.contents.len() > HUB_CID_LEN {
            let mut cid = self.cid.lock().expect("tap");
            cid.get_or_insert_with(|| transmit.contents[1..=HUB_CID_LEN].to_vec());
        }
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_recv(cx, bufs, meta)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// What a spray got back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SprayCounts {
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams received back (stateless resets).
    pub resets: u64,
    /// From the first datagram sent to the end of listening.
    pub elapsed: Duration,
}

/// Send `packets` short-header datagrams carrying `cid` to `hub`, spread evenly over `over`, from
/// one socket on each of `sources`, and count what comes back.
pub fn spray(
    hub: SocketAddr,
    cid: &[u8],
    sources: &[IpAddr],
    packets: u64,
    over: Duration,
) -> SprayCounts {
    let sockets: Vec<_> = sources
        .iter()
        .map(|ip| UdpSocket::bind(SocketAddr::new(*ip, 0)).expect("bind a spray socket"))
        .collect();
    let listening = Arc::new(AtomicBool::new(true));
    let resets = Arc::new(AtomicU64::new(0));
    let listeners: Vec<_> = sockets
        .iter()
        .map(|socket| {
            let socket = socket.try_clone().expect("socket");
            let (listening, resets) = (listening.clone(), resets.clone());
            std::thread::spawn(move || count_replies(&socket, &listening, &resets))
        })
        .collect();
    let mut datagram = vec![0x5a; SPRAY_DATAGRAM];
    // A short header: the form bit clear, the fixed bit set.
    datagram[0] = 0x41;
    datagram[1..1 + cid.len()].copy_from_slice(cid);
    let started = Instant::now();
    let ticks = (over.as_millis() / 10).max(1) as u64;
    let mut sent = 0;
    for tick in 0..ticks {
        let due = packets * (tick + 1) / ticks;
        while sent < due {
            let socket = &sockets[sent as usize % sockets.len()];
            // A full send buffer drops this one datagram; the spray goes on.
            let _ = socket.send_to(&datagram, hub);
            sent += 1;
        }
        let next = started + Duration::from_millis(10 * (tick + 1));
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    std::thread::sleep(LINGER);
    listening.store(false, Ordering::Relaxed);
    for listener in listeners {
        let _ = listener.join();
    }
    SprayCounts {
        sent,
        resets: resets.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    }
}

fn count_replies(socket: &UdpSocket, listening: &AtomicBool, resets: &AtomicU64) {
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("read timeout");
    let mut buf = [0u8; 1500];
    while listening.load(Ordering::Relaxed) {
        if socket.recv_from(&mut buf).is_ok() {
            resets.fetch_add(1, Ordering::Relaxed);
        }
    }
}
