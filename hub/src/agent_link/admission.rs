//! Admission control for new agent connections, so that a hub restarted under 25,000 agents works
//! through the reconnect storm at the rate it can, instead of starting every handshake at once.
//!
//! A connection holds a handshake slot from its first packet until its session is set up (TLS
//! handshake, certificate checked against the store, hello and welcome) or, for an enrolment, until
//! the handshake ends (enrolments have their own limit). The handshake itself must finish within
//! [`handshake_deadline`] (a few seconds, from the transport profile's round trip), or the hub
//! drops it and frees the slot: without a deadline quinn keeps a silent handshake for the idle
//! timeout (110 s), and ~1,100 Initials a minute held all 512 slots.
//!
//! A client whose address is not yet validated gets a QUIC Retry whenever a flood is plausible
//! ([`Admission::flood_plausible`]): [`AdmissionLimits::retry_above`] slots in use or freed by the
//! timeout of a handshake admitted without a Retry in the current [`RECENT_TIMEOUTS`] window, any attempt waiting, or as many handshakes
//! timed out within one window (then for the next [`RECENT_TIMEOUTS`]). A Retry costs a real agent one round trip; a spoofed source never answers
//! it, so it gets no hub state and no slot: a spoofed flood holds at most `retry_above` slots, each
//! for one deadline, per [`RECENT_TIMEOUTS`]. With every slot taken the attempt waits for one ([`Waiting`]: round-robin by
//! source prefix, so one network's flood does not push everyone else out) for at most
//! [`AdmissionLimits::max_wait`]; beyond that, or with the queue full, it is refused
//! (CONNECTION_REFUSED), so the agent backs off with full jitter and comes back later instead of
//! waiting out its handshake timeout.
//!
//! A stopping hub drains: it ignores new attempts instead of refusing them, so the agents'
//! retransmitted first packets reach the next hub on the same port and their backoff does not
//! grow during a restart.

mod prefix;
mod waiting;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outpost_transport::profile::TransportProfile;
use tokio::sync::{watch, AcquireError, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

pub use prefix::SourcePrefix;
pub use waiting::Waiting;

/// Time a handshake may take on the hub beyond the network's round trips: its cryptography
/// waiting for a busy CPU. In a reconnect storm on a 2-core hub a whole set-up (handshake, store
/// check, hello) took about a second with 512 slots (`scale` bench); three leave room for a
/// slower machine.
pub const HANDSHAKE_CPU_ALLOWANCE: Duration = Duration::from_secs(3);
/// Initial round trips a handshake may spend on the network: one for the flights themselves,
/// then the hub's first flight lost twice (its probe timeout starts at 3 RTTs and doubles: 3 +
/// 6), as on a lossy satellite link.
pub const HANDSHAKE_ROUND_TRIPS: u32 = 10;
/// The window in which [`AdmissionLimits::retry_above`] handshakes timing out (at their deadline,
/// or at the idle timeout the client asked for) mean a silent flood, and how long the hub then keeps
/// asking every unvalidated client for a Retry. A single timeout does not: a reconnect storm has a
/// few (the `scale` bench), and Retry on every reconnect of 25,000 agents slowed the restart from
/// 43.7 s to 56 s.
pub const RECENT_TIMEOUTS: Duration = Duration::from_secs(30);

/// How long the hub waits for a handshake on `profile`: [`HANDSHAKE_CPU_ALLOWANCE`] plus
/// [`HANDSHAKE_ROUND_TRIPS`] initial round trips. 3.5 s on `lan`, 6 s on `cellular`, 10 s on
/// `satellite`; each is inside the agent's own handshake timeout (`10 × RTT + 15 s`), so the hub
/// gives up first and the agent hears it. The hub's `--transport` (default `cellular`) should be
/// the slowest profile its fleet dials with: a GEO agent's handshake on a `lan` hub has 3.5 s.
pub fn handshake_deadline(profile: &TransportProfile) -> Duration {
    HANDSHAKE_CPU_ALLOWANCE + profile.initial_rtt * HANDSHAKE_ROUND_TRIPS
}

/// How many new connections the hub sets up at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// At this many in flight, unvalidated clients are asked to prove their address (Retry).
    pub retry_above: usize,
    /// In flight at most; more wait.
    pub max_in_flight: usize,
    /// Attempts waiting for a slot at most; more are refused.
    pub max_waiting: usize,
    /// How long an attempt may wait for a slot before it is refused.
    pub max_wait: Duration,
}

impl Default for AdmissionLimits {
    /// Slots: with the CPU the bottleneck (a reconnect storm on a 2-core hub), the slots in use
    /// do not change how many set-ups finish per second, only how long each takes: `slots /
    /// rate`. At the ~300–700 set-ups a second this machine manages with the load tool beside
    /// it, 2,048 slots made a set-up take 3–7 s, and with its wait in the queue an agent's 15.5 s
    /// handshake timeout fired while the hub was still working for it (the `scale` bench: 1,369
    /// timeouts at 5,000 agents). 512 keep a set-up near a second. On long round trips a set-up
    /// takes ~2.5 s of waiting on the network (GEO: Retry, handshake, hello), so 512 slots allow
    /// ~200 a second there; `--max-handshakes` raises them for such fleets.
    ///
    /// Retry from a quarter of the slots in use (128): an idle hub's occasional reconnects and a
    /// restart's reconnect storm (~600 set-ups a second, each holding a slot for well under a
    /// second) mostly stay below it and pay no extra round trip, while a sender without a real
    /// address holds at most 128 slots, for one deadline, per [`RECENT_TIMEOUTS`]. Retry from 16
    /// slots was tried: every reconnect of the `scale` bench's 25,000 agents paid a Retry round,
    /// and the restart took 56 s instead of 43.7 s (same machine, same run, both hubs measured).
    ///
    /// Waiting: an agent gives up a handshake after `10 × initial RTT + 15 s` (15.5 s on the LAN
    /// profile, `agent/src/dial.rs`); 8 s of waiting plus a set-up of a few seconds under load
    /// stays inside it. 32,768 waiting attempts hold about their first packet each (~1.3 KB
    /// plus buffered retransmissions, bounded by quinn's incoming buffer limits): under 100 MiB.
    fn default() -> Self {
        Self {
            retry_above: RETRY_ABOVE,
            max_in_flight: 512,
            max_waiting: 32_768,
            max_wait: Duration::from_secs(8),
        }
    }
}

/// Slots in use from which unvalidated clients get a Retry (see [`AdmissionLimits::default`]).
const RETRY_ABOVE: usize = 128;

impl AdmissionLimits {
    /// The default limits with `slots` set-ups at once (at least one); Retry from a quarter of
    /// them in use (at most 128).
    pub fn with_slots(slots: usize) -> Self {
        let slots = slots.max(1);
        Self {
            retry_above: RETRY_ABOVE.min(slots / 4),
            max_in_flight: slots,
            ..Self::default()
        }
    }
}

/// What to do with a new connection attempt.
#[derive(Debug)]
pub enum Verdict {
    /// Go ahead, holding this slot.
    Accept(OwnedSemaphorePermit),
    /// Ask the client to validate its address first.
    Retry,
    /// Every slot taken: wait for one.
    Wait,
    /// The hub is stopping: say nothing, so the client's retransmission meets the next hub.
    Ignore,
}

/// Counts of what admission decided, for tests, logs and the metrics.
#[derive(Debug, Default)]
pub struct AdmissionStats {
    /// Handshakes that finished within their deadline.
    pub accepted: AtomicU64,
    /// Attempts waiting for a slot now (the accept loop's queue).
    pub waiting: AtomicU64,
    /// Retries sent.
    pub retried: AtomicU64,
    /// Connections refused.
    pub refused: AtomicU64,
    /// Attempts that waited for a slot.
    pub waited: AtomicU64,
    /// Handshakes that timed out.
    pub timed_out: AtomicU64,
}

/// The handshake slots of one hub.
#[derive(Debug)]
pub struct Admission {
    limits: AdmissionLimits,
    handshake_deadline: Duration,
    /// Handshakes timing out: when a flood of them was last seen.
    timeouts: Mutex<TimeoutWindow>,
    slots: Arc<Semaphore>,
    draining: watch::Sender<bool>,
    /// What was decided so far.
    pub stats: AdmissionStats,
}

impl Admission {
    /// Slots for `limits`, each handshake cut after `handshake_deadline`.
    pub fn new(limits: AdmissionLimits, handshake_deadline: Duration) -> Self {
        Self {
            limits,
            handshake_deadline,
            timeouts: Mutex::new(TimeoutWindow::default()),
            slots: Arc::new(Semaphore::new(limits.max_in_flight)),
            draining: watch::Sender::new(false),
            stats: AdmissionStats::default(),
        }
    }

    /// The limits this admission applies.
    pub fn limits(&self) -> AdmissionLimits {
        self.limits
    }

    /// How long a handshake may take before the hub drops it.
    pub fn handshake_deadline(&self) -> Duration {
        self.handshake_deadline
    }

    /// Stop admitting: from now on every attempt is ignored.
    pub fn drain(&self) {
        self.draining.send_replace(true);
    }

    /// Whether the hub is draining.
    pub fn draining(&self) -> bool {
        *self.draining.borrow()
    }

    /// Resolves once the hub starts draining.
    pub async fn drain_started(&self) {
        let mut draining = self.draining.subscribe();
        let _ = draining.wait_for(|d| *d).await;
    }

    /// The next free slot, for the oldest waiting attempt.
    pub async fn slot(&self) -> Result<OwnedSemaphorePermit, AcquireError> {
        self.slots.clone().acquire_owned().await
    }

    /// Connections being set up now.
    pub fn in_flight(&self) -> usize {
        self.limits.max_in_flight - self.slots.available_permits()
    }

    /// Whether an unvalidated client should prove its address at `now`: attempts `queued`, a flood
    /// of timeouts within the last [`RECENT_TIMEOUTS`], or [`AdmissionLimits::retry_above`] slots
    /// in use or freed by a timeout in the current window.
    ///
    /// A slot freed by the timeout of a handshake admitted without a Retry still counts:
    /// otherwise each silent handshake cut before the flood of them is complete lets one more
    /// unvalidated attempt in without a Retry, and a spoofed flood on a busy machine, whose cuts
    /// spread out, took 151–182 slots instead of 128 (the `flood` test, in CI). Timeouts of
    /// validated handshakes (a restart storm's, on a hub too busy to finish them) do not: counted
    /// too, they kept Retry on through a 25,000-agent restart, and 3,137 handshakes were cut
    /// instead of 460 (`scale` bench).
    pub fn flood_plausible(&self, now: Instant, queued: bool) -> bool {
        if queued {
            return true;
        }
        let timeouts = self.timeouts.lock().unwrap_or_else(|e| e.into_inner());
        timeouts.flood_until.is_some_and(|until| now < until)
            || self.in_flight() + timeouts.retry_free_in_window(now) >= self.limits.retry_above
    }

    /// Decide at `now` on an attempt whose address is `validated` (or not) and that `may_retry` (a
    /// client that already answered a Retry may not be asked again); `queued` says whether
    /// earlier attempts are waiting (they go first).
    pub fn decide(&self, now: Instant, validated: bool, may_retry: bool, queued: bool) -> Verdict {
        if self.draining() {
            return Verdict::Ignore;
        }
        if !validated && may_retry && self.flood_plausible(now, queued) {
            self.stats.retried.fetch_add(1, Ordering::Relaxed);
            return Verdict::Retry;
        }
        if queued {
            return Verdict::Wait;
        }
        match self.slots.clone().try_acquire_owned() {
            Ok(slot) => Verdict::Accept(slot),
            Err(_) => Verdict::Wait,
        }
    }

    /// Count an attempt that had to wait.
    pub fn count_waited(&self) {
        self.stats.waited.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a handshake that timed out at `now`; `validated` if its address was (it answered a
    /// Retry) when it was admitted.
    pub fn count_timed_out(&self, now: Instant, validated: bool) {
        self.stats.timed_out.fetch_add(1, Ordering::Relaxed);
        let mut timeouts = self.timeouts.lock().unwrap_or_else(|e| e.into_inner());
        timeouts.record(now, self.limits.retry_above.max(1), validated);
    }

    /// Count a handshake that finished.
    pub fn count_accepted(&self) {
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// Note how many attempts wait for a slot now.
    pub fn note_waiting(&self, waiting: usize) {
        self.stats.waiting.store(waiting as u64, Ordering::Relaxed);
    }

    /// Count a refusal (queue full, or waited too long).
    pub fn count_refused(&self) {
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Take every free slot, as if that many handshakes were in flight (tests).
    #[cfg(test)]
    pub fn occupy(&self, count: u32) -> OwnedSemaphorePermit {
        self.slots
            .clone()
            .try_acquire_many_owned(count)
            .expect("free slots to occupy")
    }
}

/// Handshake timeouts counted per [`RECENT_TIMEOUTS`] window.
#[derive(Debug, Default)]
struct TimeoutWindow {
    started: Option<Instant>,
    count: usize,
    /// Of those, handshakes admitted without a Retry.
    retry_free: usize,
    /// Until when a flood of timeouts keeps Retry on.
    flood_until: Option<Instant>,
}

impl TimeoutWindow {
    /// Timeouts of handshakes admitted without a Retry in the window that is current at `now`.
    fn retry_free_in_window(&self, now: Instant) -> usize {
        match self.started {
            Some(started) if now.saturating_duration_since(started) < RECENT_TIMEOUTS => {
                self.retry_free
            }
            _ => 0,
        }
    }

    /// One more timeout at `now` (of a handshake admitted after a Retry if `validated`); `flood`
    /// of them within a window turn Retry on.
    fn record(&mut self, now: Instant, flood: usize, validated: bool) {
        if self
            .started
            .is_none_or(|started| now.saturating_duration_since(started) >= RECENT_TIMEOUTS)
        {
            self.started = Some(now);
            self.count = 0;
            self.retry_free = 0;
        }
        self.count += 1;
        self.retry_free += usize::from(!validated);
        if self.count >= flood {
            self.flood_until = Some(now + RECENT_TIMEOUTS);
        }
    }
}

#[cfg(test)]
mod tests;
