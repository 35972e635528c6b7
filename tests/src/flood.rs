//! Attacks on the hub's QUIC front door, for tests that show it holds while they run.
//!
//! [`start`] runs a handshake flood: `attempts` quinn clients at once, each starting a handshake
//! with real Initials and then going silent, over and over until stopped:
//! - [`Silence::AfterHubFlight`]: a sender with a real address. It answers a Retry, and drops
//!   everything it would send once the hub's first flight (its Initial and Handshake) arrives, so
//!   the hub holds the handshake until its deadline.
//! - [`Silence::Spoofed`]: Initials from an address whose answers never return: the client hears
//!   nothing (a Retry included), retransmits its Initial and gives up.
//!
//! Each client has its own UDP socket (a fresh source port per attempt) on one of the plan's
//! source addresses; any 127.x.y.z works on Linux loopback, so a few addresses make a few /24s.
//! The flood counts what it saw ([`FloodCounts`]) through a socket wrapper that reads the first
//! byte of every datagram the hub sends it.
//!
//! [`spray`] is the stateless-reset reflection: datagrams carrying a connection id the hub minted
//! for a connection it no longer has, from sockets that count the resets coming back.

// The flood runs on its own runtime thread for tests driving processes from plain threads.
#![allow(clippy::disallowed_methods)]

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use outpost_certs::{pinned_client_config, Fingerprint, HUB_SERVER_NAME};
use outpost_protocol::token::JoinToken;
use outpost_protocol::wire::ALPN_ENROLL;
use quinn::crypto::rustls::QuicClientConfig;
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, Runtime, TokioRuntime, TransportErrorCode, UdpPoller};
use tokio::sync::watch;

mod spray;

pub use spray::{collect_connection_id, spray, SprayCounts};

/// How each flooding client goes silent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Silence {
    /// Answers a Retry, then sends nothing once the hub's first flight arrives.
    AfterHubFlight,
    /// Hears nothing at all (a spoofed source).
    Spoofed,
}

/// What to flood, from where, how hard.
#[derive(Clone, Debug)]
pub struct FloodPlan {
    /// The hub's agent address.
    pub hub: SocketAddr,
    /// The hub's CA fingerprint ([`ca_fingerprint`]), so the clients accept its first flight.
    pub ca_fingerprint: [u8; 32],
    /// Source addresses, used in turn.
    pub sources: Vec<IpAddr>,
    /// Handshakes in progress at once.
    pub attempts: usize,
    /// How the clients go silent.
    pub silence: Silence,
}

/// The CA fingerprint a join token (EDGE_KEY) pins.
pub fn ca_fingerprint(edge_key: &str) -> [u8; 32] {
    JoinToken::decode(edge_key)
        .expect("a join token")
        .ca_fingerprint
}

/// What the flood saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FloodCounts {
    /// Handshakes started.
    pub started: u64,
    /// Retry packets received.
    pub retries: u64,
    /// Attempts the hub answered with its first flight: each held a slot.
    pub answered: u64,
    /// Answered attempts the hub then closed (cut at its deadline).
    pub cut: u64,
    /// Attempts refused (CONNECTION_REFUSED).
    pub refused: u64,
    /// Shortest and longest time from the hub's first flight to its close, over the cut ones.
    pub cut_after: Option<(Duration, Duration)>,
    /// Shortest time, over the cut ones, from the client's sending of the Initial the hub
    /// admitted (the first since the last Retry) to the hub's close: the hub's deadline starts
    /// after that send, so this is never under it, however late a busy machine handles the
    /// hub's first flight.
    pub cut_after_asking: Option<Duration>,
}

#[derive(Debug, Default)]
struct Counters {
    started: AtomicU64,
    retries: AtomicU64,
    answered: AtomicU64,
    cut: AtomicU64,
    refused: AtomicU64,
    cut_after: Mutex<Option<(Duration, Duration)>>,
    cut_after_asking: Mutex<Option<Duration>>,
}

impl Counters {
    fn snapshot(&self) -> FloodCounts {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FloodCounts {
            started: load(&self.started),
            retries: load(&self.retries),
            answered: load(&self.answered),
            cut: load(&self.cut),
            refused: load(&self.refused),
            cut_after: *self.cut_after.lock().expect("counters"),
            cut_after_asking: *self.cut_after_asking.lock().expect("counters"),
        }
    }

    /// One cut, `after` the hub's first flight and `after_asking` the admitted Initial.
    fn record_cut(&self, after: Duration, after_asking: Duration) {
        self.cut.fetch_add(1, Ordering::Relaxed);
        let mut range = self.cut_after.lock().expect("counters");
        let (low, high) = range.unwrap_or((after, after));
        *range = Some((low.min(after), high.max(after)));
        let mut shortest = self.cut_after_asking.lock().expect("counters");
        *shortest = Some(shortest.map_or(after_asking, |s| s.min(after_asking)));
    }
}

/// A running flood; stops when dropped.
#[derive(Debug)]
pub struct Flood {
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
    counts: Arc<Counters>,
}

/// Start flooding per `plan`, on a runtime thread of its own.
pub fn start(plan: FloodPlan) -> Flood {
    let counts = Arc::new(Counters::default());
    let (stop, stopped) = watch::channel(false);
    let thread = std::thread::spawn({
        let counts = counts.clone();
        move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("flood runtime");
            runtime.block_on(run(plan, counts, stopped));
        }
    });
    Flood {
        stop,
        thread: Some(thread),
        counts,
    }
}

impl Flood {
    /// What it saw so far.
    pub fn counts(&self) -> FloodCounts {
        self.counts.snapshot()
    }

    /// Stop every client and return the final counts.
    pub fn stop(mut self) -> FloodCounts {
        self.halt();
        self.counts()
    }

    fn halt(&mut self) {
        self.stop.send_replace(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.halt();
    }
}

async fn run(plan: FloodPlan, counts: Arc<Counters>, stopped: watch::Receiver<bool>) {
    let (tls, _) = pinned_client_config(Fingerprint(plan.ca_fingerprint), None, &[ALPN_ENROLL])
        .expect("client TLS");
    let mut config =
        quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).expect("QUIC TLS")));
    let mut transport = quinn::TransportConfig::default();
    // A silent client outlasts the hub's deadline; a spoofed one gives up after two Initials.
    let idle = match plan.silence {
        Silence::AfterHubFlight => Duration::from_secs(30),
        Silence::Spoofed => Duration::from_secs(2),
    };
    transport.max_idle_timeout(Some(idle.try_into().expect("idle timeout")));
    config.transport_config(Arc::new(transport));
    let workers: Vec<_> = (0..plan.attempts)
        .map(|i| {
            let source = plan.sources[i % plan.sources.len()];
            let attempt = Attempt {
                hub: plan.hub,
                source,
                silence: plan.silence,
                config: config.clone(),
                counts: counts.clone(),
            };
            tokio::spawn(attempt.repeat(stopped.clone()))
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
}

/// One flooding client's loop.
struct Attempt {
    hub: SocketAddr,
    source: IpAddr,
    silence: Silence,
    config: quinn::ClientConfig,
    counts: Arc<Counters>,
}

impl Attempt {
    async fn repeat(self, mut stopped: watch::Receiver<bool>) {
        while !*stopped.borrow() {
            tokio::select! {
                () = self.once() => {}
                _ = stopped.changed() => {}
            }
        }
    }

    async fn once(&self) {
        let socket = Arc::new(Silent::bind(self.source, self.silence, self.counts.clone()));
        let endpoint = match quinn::Endpoint::new_with_abstract_socket(
            quinn::EndpointConfig::default(),
            None,
            socket.clone(),
            Arc::new(TokioRuntime),
        ) {
            Ok(endpoint) => endpoint,
            Err(_) => return tokio::time::sleep(Duration::from_millis(100)).await,
        };
        let Ok(connecting) = endpoint.connect_with(self.config.clone(), self.hub, HUB_SERVER_NAME)
        else {
            return;
        };
        self.counts.started.fetch_add(1, Ordering::Relaxed);
        // The client's side of the handshake completes with the hub's first flight; the hub's
        // needs the client's Finished, which the silent socket drops.
        let end = match connecting.await {
            Ok(conn) => conn.closed().await,
            Err(e) => e,
        };
        let answered_at = *socket.answered_at.lock().expect("silent socket");
        let asked_at = *socket.asked_at.lock().expect("silent socket");
        match end {
            quinn::ConnectionError::ConnectionClosed(close)
                if close.error_code == TransportErrorCode::CONNECTION_REFUSED =>
            {
                self.counts.refused.fetch_add(1, Ordering::Relaxed);
            }
            quinn::ConnectionError::ConnectionClosed(_)
            | quinn::ConnectionError::ApplicationClosed(_) => {
                if let (Some(answered), Some(asked)) = (answered_at, asked_at) {
                    self.counts.record_cut(answered.elapsed(), asked.elapsed());
                }
            }
            _ => {}
        }
    }
}

/// A client socket that goes silent: it counts the hub's Retry packets and first flights, and
/// drops what [`Silence`] says.
#[derive(Debug)]
struct Silent {
    inner: Arc<dyn AsyncUdpSocket>,
    silence: Silence,
    /// When the hub's first flight arrived; from then on nothing is sent.
    answered_at: Mutex<Option<Instant>>,
    /// When the first Initial since the last Retry was sent: the one the hub admits.
    asked_at: Mutex<Option<Instant>>,
    hub_answered: AtomicBool,
    counts: Arc<Counters>,
}

/// Long-header packet types (RFC 9000 §17.2), from the first byte.
const LONG_HEADER: u8 = 0x80;
const TYPE_BITS: u8 = 0x30;
const INITIAL: u8 = 0x00;
const HANDSHAKE: u8 = 0x20;
const RETRY: u8 = 0x30;

/// Whether `datagram` carries a Handshake packet: the hub's first flight (its Initial, then its
/// Handshake with the certificate), as opposed to a refusal (an Initial alone).
fn carries_handshake(mut datagram: &[u8]) -> bool {
    while let Some(&first) = datagram.first() {
        if first & LONG_HEADER == 0 {
            return false;
        }
        match first & TYPE_BITS {
            HANDSHAKE => return true,
            INITIAL => match initial_len(datagram) {
                Some(len) if len <= datagram.len() => datagram = &datagram[len..],
                _ => return false,
            },
            _ => return false,
        }
    }
    false
}

/// The length of the Initial packet at the start of `packet`: flags, version, two connection
/// ids, a token and a length-prefixed payload.
fn initial_len(packet: &[u8]) -> Option<usize> {
    let mut at = 5;
    for _ in 0..2 {
        at += 1 + usize::from(*packet.get(at)?);
    }
    let (token, read) = varint(packet.get(at..)?)?;
    at += read + token;
    let (payload, read) = varint(packet.get(at..)?)?;
    Some(at + read + payload)
}

/// A QUIC variable-length integer and its encoded size.
fn varint(bytes: &[u8]) -> Option<(usize, usize)> {
    let first = *bytes.first()?;
    let size = 1usize << (first >> 6);
    let mut value = u64::from(first & 0x3f);
    for byte in bytes.get(1..size)? {
        value = value << 8 | u64::from(*byte);
    }
    Some((usize::try_from(value).ok()?, size))
}

impl Silent {
    fn bind(source: IpAddr, silence: Silence, counts: Arc<Counters>) -> Self {
        let socket = UdpSocket::bind(SocketAddr::new(source, 0)).expect("bind a flood socket");
        Self {
            inner: TokioRuntime.wrap_udp_socket(socket).expect("wrap socket"),
            silence,
            answered_at: Mutex::new(None),
            asked_at: Mutex::new(None),
            hub_answered: AtomicBool::new(false),
            counts,
        }
    }

    /// Count one datagram from the hub.
    fn heard(&self, datagram: &[u8]) {
        let first = datagram.first().copied().unwrap_or_default();
        if first & LONG_HEADER != 0 && first & TYPE_BITS == RETRY {
            self.counts.retries.fetch_add(1, Ordering::Relaxed);
            *self.asked_at.lock().expect("silent socket") = None;
        } else if carries_handshake(datagram) && !self.hub_answered.swap(true, Ordering::Relaxed) {
            self.counts.answered.fetch_add(1, Ordering::Relaxed);
            *self.answered_at.lock().expect("silent socket") = Some(Instant::now());
        }
    }
}

impl AsyncUdpSocket for Silent {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        if self.hub_answered.load(Ordering::Relaxed) {
            return Ok(());
        }
        let first = transmit.contents.first().copied().unwrap_or_default();
        if first & LONG_HEADER != 0 && first & TYPE_BITS == INITIAL {
            self.asked_at
                .lock()
                .expect("silent socket")
                .get_or_insert_with(Instant::now);
        }
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        loop {
            let received = match self.inner.poll_recv(cx, bufs, meta) {
                Poll::Ready(Ok(received)) => received,
                other => return other,
            };
            for (buf, meta) in bufs.iter().zip(meta.iter()).take(received) {
                self.heard(&buf[..meta.len.min(meta.stride)]);
            }
            if self.silence == Silence::AfterHubFlight {
                return Poll::Ready(Ok(received));
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}
