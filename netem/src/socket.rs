//! A `quinn::AsyncUdpSocket` decorator that puts an emulated link under an in-process endpoint.
//!
//! Tests that run a hub and an agent in one process wrap one endpoint's socket: outbound
//! datagrams go through one [`LinkModel`] (delayed by a delay line), inbound ones through the
//! other (held in a timer heap until due). No relay process, no ports to coordinate, and quinn
//! sees exactly the loss and delay the profile describes.
//!
//! GSO is kept off (`max_transmit_segments` is 1) so that every QUIC datagram meets the model
//! on its own. On receive, a GRO batch (the inner socket coalesces a peer's GSO sends on
//! loopback) is split at its stride, so each datagram meets the model on its own too: judged as
//! one unit, a batch of ten was lost or kept whole and the burst-loss chain advanced once per
//! batch, so `flaky-cellular`'s bursts of five packets became bursts of up to fifty, and a
//! sender's two probe packets (one GSO send) were one chain step — silences of 5–10 s where the
//! profile has 5-packet bursts (`congestion` bench, `--trace-ms`).
//! NAT behaviour is not emulated here; use the [`Relay`](crate::Relay) for that.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use quinn::udp::{EcnCodepoint, RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, Runtime, TokioRuntime, UdpPoller};
use tokio::time::{Instant, Sleep};

use crate::control::Controllable;
use crate::counters::FrontendCounters;
use crate::delay_line::{DelayLine, Sink};
use crate::model::{LinkConfig, LinkModel, Verdict};
use crate::profile::Profile;

/// Which end of the link the wrapped socket is on; it picks the profile's direction per way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The device (agent): sends on `up`, receives on `down`.
    Device,
    /// The hub: sends on `down`, receives on `up`.
    Hub,
}

impl Side {
    fn configs(self, profile: &Profile) -> (LinkConfig, LinkConfig) {
        match self {
            Self::Device => (profile.up.clone(), profile.down.clone()),
            Self::Hub => (profile.down.clone(), profile.up.clone()),
        }
    }
}

/// The decorator. Create it inside a tokio runtime.
pub struct NetemSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    models: Arc<Models>,
    outbound_line: DelayLine<OutPacket>,
    inbound: Mutex<Inbound>,
}

impl fmt::Debug for NetemSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetemSocket")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Models {
    side: Side,
    outbound: Mutex<LinkModel>,
    inbound: Mutex<LinkModel>,
}

/// Changes a decorated socket's link at run time (see [`Controllable`]).
#[derive(Debug, Clone)]
pub struct NetemSocketControl {
    models: Arc<Models>,
}

impl Controllable for NetemSocketControl {
    fn set_profile(&self, profile: Profile) {
        let (out, inb) = self.models.side.configs(&profile);
        lock(&self.models.outbound).set_config(out);
        lock(&self.models.inbound).set_config(inb);
    }

    fn outage(&self, duration: Duration) {
        let now = Instant::now().into_std();
        lock(&self.models.outbound).trigger_outage(now, duration);
        lock(&self.models.inbound).trigger_outage(now, duration);
    }

    fn rebind(&self) {}

    fn counters(&self) -> FrontendCounters {
        let out = *lock(&self.models.outbound).counters();
        let inb = *lock(&self.models.inbound).counters();
        let (up, down) = match self.models.side {
            Side::Device => (out, inb),
            Side::Hub => (inb, out),
        };
        FrontendCounters {
            up,
            down,
            ..FrontendCounters::default()
        }
    }
}

impl NetemSocketControl {
    /// Hits per exact rule of the (outbound, inbound) links.
    pub fn rule_hits(&self) -> (Vec<u64>, Vec<u64>) {
        (
            lock(&self.models.outbound).rule_hits().to_vec(),
            lock(&self.models.inbound).rule_hits().to_vec(),
        )
    }
}

impl NetemSocket {
    /// Wraps `inner`, applying `profile` as seen from `side`, with randomness from `seed`.
    pub fn new(inner: Arc<dyn AsyncUdpSocket>, profile: &Profile, side: Side, seed: u64) -> Self {
        let epoch = Instant::now().into_std();
        let (out, inb) = side.configs(profile);
        let models = Arc::new(Models {
            side,
            outbound: Mutex::new(LinkModel::new(out, seed, epoch)),
            inbound: Mutex::new(LinkModel::new(inb, seed ^ 0x1B0_u64, epoch)),
        });
        let sink = QuinnSink {
            poller: inner.clone().create_io_poller(),
            inner: inner.clone(),
        };
        Self {
            outbound_line: DelayLine::spawn(sink),
            inner,
            models,
            inbound: Mutex::new(Inbound::default()),
        }
    }

    /// Binds a UDP socket on `addr` and wraps it, ready for `quinn::Endpoint::new_with_abstract_socket`.
    pub fn bind(
        addr: SocketAddr,
        profile: &Profile,
        side: Side,
        seed: u64,
    ) -> io::Result<Arc<Self>> {
        let socket = std::net::UdpSocket::bind(addr)?;
        let inner = TokioRuntime.wrap_udp_socket(socket)?;
        Ok(Arc::new(Self::new(inner, profile, side, seed)))
    }

    /// A quinn client endpoint on this socket, dialing with `config`: every datagram it sends or
    /// receives crosses the link.
    pub fn client_endpoint(
        self: Arc<Self>,
        config: quinn::ClientConfig,
    ) -> io::Result<quinn::Endpoint> {
        let mut endpoint = quinn::Endpoint::new_with_abstract_socket(
            quinn::EndpointConfig::default(),
            None,
            self,
            Arc::new(TokioRuntime),
        )?;
        endpoint.set_default_client_config(config);
        Ok(endpoint)
    }

    /// A handle to change the link or read counters.
    pub fn control(&self) -> NetemSocketControl {
        NetemSocketControl {
            models: self.models.clone(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug)]
struct OutPacket {
    destination: SocketAddr,
    ecn: Option<EcnCodepoint>,
    src_ip: Option<IpAddr>,
    contents: Bytes,
}

struct QuinnSink {
    inner: Arc<dyn AsyncUdpSocket>,
    poller: Pin<Box<dyn UdpPoller>>,
}

impl Sink for QuinnSink {
    type Item = OutPacket;
    async fn deliver(&mut self, p: OutPacket) {
        let transmit = Transmit {
            destination: p.destination,
            ecn: p.ecn,
            contents: &p.contents,
            segment_size: None,
            src_ip: p.src_ip,
        };
        // Bounded: a socket that stays unwritable loses the datagram, as a full NIC queue would.
        for _ in 0..16 {
            match self.inner.try_send(&transmit) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let poller = &mut self.poller;
                    if std::future::poll_fn(|cx| poller.as_mut().poll_writable(cx))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                _ => return,
            }
        }
    }
}

#[derive(Debug)]
struct Held {
    at: Instant,
    seq: u64,
    meta: RecvMeta,
    data: Bytes,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Default)]
struct Inbound {
    held: BinaryHeap<Reverse<Held>>,
    seq: u64,
    timer: Option<Pin<Box<Sleep>>>,
}

impl Inbound {
    fn hold(&mut self, at: Instant, meta: RecvMeta, data: Bytes) {
        self.seq += 1;
        self.held.push(Reverse(Held {
            at,
            seq: self.seq,
            meta,
            data,
        }));
    }

    /// Moves due datagrams into the caller's buffers; returns how many.
    fn release(
        &mut self,
        now: Instant,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> usize {
        let mut n = 0;
        while n < bufs.len().min(meta.len())
            && self.held.peek().is_some_and(|Reverse(h)| h.at <= now)
        {
            let Some(Reverse(h)) = self.held.pop() else {
                break;
            };
            let len = h.data.len().min(bufs[n].len());
            bufs[n][..len].copy_from_slice(&h.data[..len]);
            meta[n] = RecvMeta {
                len,
                stride: h.meta.stride.min(len).max(1),
                ..h.meta
            };
            n += 1;
        }
        n
    }
}

impl AsyncUdpSocket for NetemSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        let now = Instant::now();
        let verdict = lock(&self.models.outbound).submit(now.into_std(), transmit.contents.len());
        let Verdict::Deliver { at, duplicate } = verdict else {
            return Ok(()); // Lost on the link: the sender cannot tell.
        };
        let at = Instant::from_std(at);
        if duplicate.is_none() && self.outbound_line.can_bypass(at, now) {
            return self.inner.try_send(transmit);
        }
        let packet = |contents: Bytes| OutPacket {
            destination: transmit.destination,
            ecn: transmit.ecn,
            src_ip: transmit.src_ip,
            contents,
        };
        let contents = Bytes::copy_from_slice(transmit.contents);
        self.outbound_line.schedule(at, packet(contents.clone()));
        if let Some(dup) = duplicate {
            self.outbound_line
                .schedule(Instant::from_std(dup), packet(contents));
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let mut inbound = lock(&self.inbound);
        // Everything the inner socket has goes through the model into the heap…
        while let Poll::Ready(result) = self.inner.poll_recv(cx, bufs, meta) {
            let count = result?;
            let now = Instant::now();
            let mut model = lock(&self.models.inbound);
            for (buf, m) in bufs.iter().zip(meta.iter()).take(count) {
                for datagram in buf[..m.len].chunks(m.stride.max(1)) {
                    let len = datagram.len();
                    let Verdict::Deliver { at, duplicate } = model.submit(now.into_std(), len)
                    else {
                        continue;
                    };
                    let one = RecvMeta {
                        len,
                        stride: len,
                        ..*m
                    };
                    let data = Bytes::copy_from_slice(datagram);
                    inbound.hold(Instant::from_std(at), one, data.clone());
                    if let Some(dup) = duplicate {
                        inbound.hold(Instant::from_std(dup), one, data);
                    }
                }
            }
        }
        // …and leaves it when due.
        loop {
            let n = inbound.release(Instant::now(), bufs, meta);
            if n > 0 {
                return Poll::Ready(Ok(n));
            }
            let Some(next) = inbound.held.peek().map(|Reverse(h)| h.at) else {
                return Poll::Pending;
            };
            let timer = inbound
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(next)));
            timer.as_mut().reset(next);
            if std::future::Future::poll(timer.as_mut(), cx).is_pending() {
                return Poll::Pending;
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        1
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}
