//! A NAT-like UDP relay that applies a profile to real processes' traffic.
//!
//! ```text
//!  device (client) ──up──▶ [listen] relay [per-client socket] ──▶ upstream (hub)
//!                  ◀─down──                                   ◀──
//! ```
//!
//! Like a carrier NAT, the relay gives each client address its own upstream socket (a fresh
//! ephemeral port), so the hub sees one address per device. A NAT rebinding switches the client
//! to a new socket, and a binding that stays idle past the timeout is forgotten: in both cases
//! the hub sees a new source port, and replies to the old one are lost. Outbound (up) packets
//! create and refresh bindings; inbound ones never do (RFC 4787 REQ-6).
//!
//! The relay is a thin shell around two [`LinkModel`]s (up and down): it reads, asks the model,
//! and sends now or through a delay line (`delay_line.rs`).

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::control::Controllable;
use crate::counters::{FrontendCounters, NatCounters};
use crate::delay_line::{DelayLine, Sink};
use crate::error::FrontendError;
use crate::model::{Binding, BindingState, LinkModel, NatConfig, Verdict};
use crate::profile::Profile;

/// Largest datagram the relay carries (the UDP maximum).
const MAX_DATAGRAM: usize = 65_535;
/// How often idle and expired NAT bindings are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Entry point: binds a relay and runs it on the current tokio runtime.
#[derive(Debug)]
pub struct Relay;

impl Relay {
    /// Listens on `listen` for device traffic and relays it to `upstream` through `profile`,
    /// with randomness from `seed`. Bind port 0 to get an ephemeral port ([`RelayHandle::local_addr`]).
    pub async fn bind(
        listen: SocketAddr,
        upstream: SocketAddr,
        profile: Profile,
        seed: u64,
    ) -> Result<RelayHandle, FrontendError> {
        let socket = UdpSocket::bind(listen)
            .await
            .map_err(|source| FrontendError::Bind {
                addr: listen,
                source,
            })?;
        let local_addr = socket.local_addr()?;
        let socket = Arc::new(socket);
        let epoch = Instant::now().into_std();
        let shared = Arc::new(Shared {
            up: Mutex::new(LinkModel::new(profile.up.clone(), seed, epoch)),
            // A different stream for the other direction, still fixed by the seed.
            down: Mutex::new(LinkModel::new(profile.down.clone(), seed ^ 0xD0_57, epoch)),
            nat: Mutex::new(profile.nat),
            mappings: Mutex::new(HashMap::new()),
            nat_counters: Mutex::new(NatCounters::default()),
            upstream,
            listen: socket.clone(),
            down_line: DelayLine::spawn(UdpSink),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run_up(shared.clone(), stop_rx));
        Ok(RelayHandle {
            local_addr,
            control: RelayControl { shared },
            stop: stop_tx,
            task,
        })
    }
}

/// A running relay. Dropping it stops the relay as well.
#[derive(Debug)]
pub struct RelayHandle {
    local_addr: SocketAddr,
    control: RelayControl,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RelayHandle {
    /// The address devices send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A cloneable handle to change the link while it runs.
    pub fn control(&self) -> RelayControl {
        self.control.clone()
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> FrontendCounters {
        self.control.counters()
    }

    /// Stops the relay, closes its sockets and returns the final counters.
    pub async fn shutdown(mut self) -> FrontendCounters {
        let _ = self.stop.send(true);
        let _ = (&mut self.task).await;
        self.control.shared.drop_all_mappings();
        self.control.counters()
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        // Reader tasks hold the shared state; abort them so sockets close.
        self.control.shared.drop_all_mappings();
    }
}

/// Run-time control of a relay: change profile, trigger an outage, force a NAT rebinding.
#[derive(Debug, Clone)]
pub struct RelayControl {
    shared: Arc<Shared>,
}

impl Controllable for RelayControl {
    fn set_profile(&self, profile: Profile) {
        lock(&self.shared.up).set_config(profile.up);
        lock(&self.shared.down).set_config(profile.down);
        *lock(&self.shared.nat) = profile.nat;
    }

    fn outage(&self, duration: Duration) {
        let now = Instant::now().into_std();
        lock(&self.shared.up).trigger_outage(now, duration);
        lock(&self.shared.down).trigger_outage(now, duration);
    }

    fn rebind(&self) {
        let moved = self.shared.drop_all_mappings();
        lock(&self.shared.nat_counters).rebinds += moved;
    }

    fn counters(&self) -> FrontendCounters {
        FrontendCounters {
            up: *lock(&self.shared.up).counters(),
            down: *lock(&self.shared.down).counters(),
            nat: *lock(&self.shared.nat_counters),
        }
    }
}

impl RelayControl {
    /// Hits per exact rule of the up and down links.
    pub fn rule_hits(&self) -> (Vec<u64>, Vec<u64>) {
        (
            lock(&self.shared.up).rule_hits().to_vec(),
            lock(&self.shared.down).rule_hits().to_vec(),
        )
    }

    /// The upstream-side source address the hub currently sees for `client`, if mapped.
    pub fn mapped_addr(&self, client: SocketAddr) -> Option<SocketAddr> {
        lock(&self.shared.mappings)
            .get(&client)
            .and_then(|m| m.socket.local_addr().ok())
    }
}

#[derive(Debug)]
struct Shared {
    up: Mutex<LinkModel>,
    down: Mutex<LinkModel>,
    nat: Mutex<NatConfig>,
    mappings: Mutex<HashMap<SocketAddr, Mapping>>,
    nat_counters: Mutex<NatCounters>,
    upstream: SocketAddr,
    listen: Arc<UdpSocket>,
    down_line: DelayLine<Outgoing>,
}

#[derive(Debug)]
struct Mapping {
    binding: Binding,
    socket: Arc<UdpSocket>,
    up_line: DelayLine<Outgoing>,
    reader: JoinHandle<()>,
    generation: u64,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// A datagram to send: socket, destination, payload.
type Outgoing = (Arc<UdpSocket>, SocketAddr, Bytes);

#[derive(Debug)]
struct UdpSink;

impl Sink for UdpSink {
    type Item = Outgoing;
    async fn deliver(&mut self, (socket, dest, data): Outgoing) {
        if let Err(e) = socket.send_to(&data, dest).await {
            tracing::debug!(%dest, error = %e, "relay send failed");
        }
    }
}

/// Locks a mutex, recovering from poisoning (a panicked holder leaves plain counters behind).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    fn drop_all_mappings(&self) -> u64 {
        let drained: Vec<Mapping> = lock(&self.mappings).drain().map(|(_, m)| m).collect();
        drained.len() as u64
    }

    /// The upstream socket and up delay line for `client`, creating or moving the binding as
    /// the NAT would.
    async fn binding_for(
        self: &Arc<Self>,
        client: SocketAddr,
        now: Instant,
    ) -> std::io::Result<(Arc<UdpSocket>, DelayLine<Outgoing>)> {
        let nat = *lock(&self.nat);
        let previous = {
            let mut mappings = lock(&self.mappings);
            if let Some(m) = mappings.get_mut(&client) {
                match m.binding.state(&nat, now.into_std()) {
                    BindingState::Active => {
                        m.binding.touch_outbound(now.into_std());
                        return Ok((m.socket.clone(), m.up_line.clone()));
                    }
                    state => Some((state, mappings.remove(&client))),
                }
            } else {
                None
            }
        };
        {
            let mut counters = lock(&self.nat_counters);
            counters.mappings += 1;
            match previous {
                Some((BindingState::Expired, _)) => counters.expired += 1,
                Some((BindingState::RebindDue, _)) => counters.rebinds += 1,
                _ => {}
            }
        }
        let bind_addr: SocketAddr = if self.upstream.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = Arc::new(UdpSocket::bind(bind_addr).await?);
        let generation = previous.map_or(0, |(_, m)| m.map_or(0, |m| m.generation + 1));
        let reader = tokio::spawn(run_down(self.clone(), client, socket.clone(), generation));
        let mapping = Mapping {
            binding: Binding::new(now.into_std()),
            socket: socket.clone(),
            up_line: DelayLine::spawn(UdpSink),
            reader,
            generation,
        };
        let up_line = mapping.up_line.clone();
        lock(&self.mappings).insert(client, mapping);
        Ok((socket, up_line))
    }

    /// True if an inbound packet for `client` on mapping `generation` may pass at `now`.
    fn inbound_allowed(&self, client: SocketAddr, generation: u64, now: Instant) -> bool {
        let nat = *lock(&self.nat);
        let mappings = lock(&self.mappings);
        let ok = mappings.get(&client).is_some_and(|m| {
            m.generation == generation
                && m.binding.state(&nat, now.into_std()) == BindingState::Active
        });
        drop(mappings);
        if !ok {
            lock(&self.nat_counters).dropped_inbound += 1;
        }
        ok
    }

    fn sweep(&self, now: Instant) {
        let nat = *lock(&self.nat);
        let mut expired = Vec::new();
        lock(&self.mappings).retain(|_, m| {
            let keep = m.binding.state(&nat, now.into_std()) != BindingState::Expired;
            if !keep {
                expired.push(m.generation);
            }
            keep
        });
        lock(&self.nat_counters).expired += expired.len() as u64;
    }
}

/// Carries out a verdict: send now, or schedule on the delay line.
async fn dispatch(
    verdict: Verdict,
    now: Instant,
    line: &DelayLine<Outgoing>,
    socket: &Arc<UdpSocket>,
    dest: SocketAddr,
    data: &[u8],
) {
    let Verdict::Deliver { at, duplicate } = verdict else {
        return;
    };
    let at = Instant::from_std(at);
    if duplicate.is_none() && line.can_bypass(at, now) {
        let _ = socket.send_to(data, dest).await;
        return;
    }
    let data = Bytes::copy_from_slice(data);
    line.schedule(at, (socket.clone(), dest, data.clone()));
    if let Some(dup) = duplicate {
        line.schedule(Instant::from_std(dup), (socket.clone(), dest, data));
    }
}

/// The up direction: device → upstream, one task for all clients.
async fn run_up(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        let (len, client) = tokio::select! {
            _ = stop.changed() => break,
            _ = sweep.tick() => { shared.sweep(Instant::now()); continue; }
            r = shared.listen.recv_from(&mut buf) => match r {
                Ok(r) => r,
                // ICMP errors from earlier sends surface here on some systems; keep going.
                Err(_) => continue,
            },
        };
        let now = Instant::now();
        let Ok((socket, line)) = shared.binding_for(client, now).await else {
            continue;
        };
        let verdict = lock(&shared.up).submit(now.into_std(), len);
        dispatch(verdict, now, &line, &socket, shared.upstream, &buf[..len]).await;
    }
    shared.drop_all_mappings();
}

/// The down direction of one mapping: upstream → device.
async fn run_down(
    shared: Arc<Shared>,
    client: SocketAddr,
    socket: Arc<UdpSocket>,
    generation: u64,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let Ok((len, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        if from != shared.upstream {
            continue; // Address-dependent filtering: only the upstream may answer.
        }
        let now = Instant::now();
        if !shared.inbound_allowed(client, generation, now) {
            continue;
        }
        let verdict = lock(&shared.down).submit(now.into_std(), len);
        dispatch(
            verdict,
            now,
            &shared.down_line,
            &shared.listen,
            client,
            &buf[..len],
        )
        .await;
    }
}
