//! Admission control for new agent connections, so that a hub restarted under 25,000 agents works
//! through the reconnect storm at the rate it can, instead of starting every handshake at once.
//!
//! A connection holds a handshake slot from its first packet until its session is set up (TLS
//! handshake, certificate checked against the store, hello and welcome) or, for an enrolment, until
//! the handshake ends (enrolments have their own limit). Above [`AdmissionLimits::retry_above`]
//! slots in use, a client whose address is not yet validated gets a QUIC Retry: one extra round
//! trip for a real agent, and a spoofed source never gets hub state. With every slot taken the
//! attempt waits for one, oldest first ([`Waiting`]), for at most [`AdmissionLimits::max_wait`];
//! beyond that, or with the queue full, it is refused (CONNECTION_REFUSED), so the agent backs
//! off with full jitter and comes back later instead of waiting out its handshake timeout.
//!
//! A stopping hub drains: it ignores new attempts instead of refusing them, so the agents'
//! retransmitted first packets reach the next hub on the same port and their backoff does not
//! grow during a restart.

mod waiting;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, AcquireError, OwnedSemaphorePermit, Semaphore};

pub use waiting::Waiting;

/// How many new connections the hub sets up at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Above this many in flight, unvalidated clients are asked to prove their address (Retry).
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
    /// ~200 a second there; `--max-handshakes` raises them for such fleets. Retry starts at a
    /// quarter of the slots, when the hub is visibly busy.
    ///
    /// Waiting: an agent gives up a handshake after `10 × initial RTT + 15 s` (15.5 s on the LAN
    /// profile, `agent/src/dial.rs`); 8 s of waiting plus a set-up of a few seconds under load
    /// stays inside it. 32,768 waiting attempts hold about their first packet each (~1.3 KB
    /// plus buffered retransmissions, bounded by quinn's incoming buffer limits): under 100 MiB.
    fn default() -> Self {
        Self {
            retry_above: 128,
            max_in_flight: 512,
            max_waiting: 32_768,
            max_wait: Duration::from_secs(8),
        }
    }
}

impl AdmissionLimits {
    /// The default limits with `slots` set-ups at once (at least one), Retry above a quarter.
    pub fn with_slots(slots: usize) -> Self {
        let slots = slots.max(1);
        Self {
            retry_above: slots / 4,
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

/// Counts of what admission decided, for tests and logs.
#[derive(Debug, Default)]
pub struct AdmissionStats {
    /// Retries sent.
    pub retried: AtomicU64,
    /// Connections refused.
    pub refused: AtomicU64,
    /// Attempts that waited for a slot.
    pub waited: AtomicU64,
}

/// The handshake slots of one hub.
#[derive(Debug)]
pub struct Admission {
    limits: AdmissionLimits,
    slots: Arc<Semaphore>,
    draining: watch::Sender<bool>,
    /// What was decided so far.
    pub stats: AdmissionStats,
}

impl Admission {
    /// Slots for `limits`.
    pub fn new(limits: AdmissionLimits) -> Self {
        Self {
            limits,
            slots: Arc::new(Semaphore::new(limits.max_in_flight)),
            draining: watch::Sender::new(false),
            stats: AdmissionStats::default(),
        }
    }

    /// The limits this admission applies.
    pub fn limits(&self) -> AdmissionLimits {
        self.limits
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

    /// Decide on an attempt whose address is `validated` (or not) and that `may_retry` (a client
    /// that already answered a Retry may not be asked again); `queued` says whether earlier
    /// attempts are waiting (they go first).
    pub fn decide(&self, validated: bool, may_retry: bool, queued: bool) -> Verdict {
        if self.draining() {
            return Verdict::Ignore;
        }
        if !validated && may_retry && self.in_flight() >= self.limits.retry_above {
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

#[cfg(test)]
mod tests;
