//! Admission control for new agent connections, so that a hub restarted under 25,000 agents works
//! through the reconnect storm at the rate it can, instead of starting every handshake at once.
//!
//! A connection holds a handshake slot from its first packet until its session is set up (TLS
//! handshake, certificate checked against the store, hello and welcome) or, for an enrolment, until
//! the handshake ends (enrolments have their own limit). Above [`AdmissionLimits::retry_above`]
//! slots in use, a client whose address is not yet validated gets a QUIC Retry: one extra round
//! trip for a real agent, and a spoofed source never gets hub state. With every slot taken the
//! connection is refused at once (CONNECTION_REFUSED), so the agent backs off with full jitter
//! and comes back later instead of waiting out a timeout.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How many new connections the hub sets up at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Above this many in flight, unvalidated clients are asked to prove their address (Retry).
    pub retry_above: usize,
    /// In flight at most; more are refused.
    pub max_in_flight: usize,
}

impl Default for AdmissionLimits {
    /// Setting up a session takes a few round trips plus store reads: about 2 s on a GEO path
    /// (600 ms RTT). 2,048 slots keep ~1,000 set-ups a second going on such paths — more than two
    /// cores sign and verify — while bounding the state of half-open connections to under
    /// 200 MiB (well under 100 KiB each, see BENCHMARKS.md). After a hub restart every agent's
    /// first retry lands within a second (full jitter over 1 s): the slots take what the hub can
    /// serve, the rest are refused at once and come back spread over their growing backoff. Retry
    /// starts at a quarter of the slots, when the hub is visibly busy.
    fn default() -> Self {
        Self {
            retry_above: 512,
            max_in_flight: 2048,
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
    /// Too many in flight: refuse now.
    Refuse,
}

/// Counts of what admission decided, for tests and logs.
#[derive(Debug, Default)]
pub struct AdmissionStats {
    /// Retries sent.
    pub retried: AtomicU64,
    /// Connections refused.
    pub refused: AtomicU64,
}

/// The handshake slots of one hub.
#[derive(Debug)]
pub struct Admission {
    limits: AdmissionLimits,
    slots: Arc<Semaphore>,
    /// What was decided so far.
    pub stats: AdmissionStats,
}

impl Admission {
    /// Slots for `limits`.
    pub fn new(limits: AdmissionLimits) -> Self {
        Self {
            limits,
            slots: Arc::new(Semaphore::new(limits.max_in_flight)),
            stats: AdmissionStats::default(),
        }
    }

    /// Connections being set up now.
    pub fn in_flight(&self) -> usize {
        self.limits.max_in_flight - self.slots.available_permits()
    }

    /// Decide on an attempt whose address is `validated` (or not) and that `may_retry` (a client
    /// that already answered a Retry may not be asked again).
    pub fn decide(&self, validated: bool, may_retry: bool) -> Verdict {
        if !validated && may_retry && self.in_flight() >= self.limits.retry_above {
            self.stats.retried.fetch_add(1, Ordering::Relaxed);
            return Verdict::Retry;
        }
        match self.slots.clone().try_acquire_owned() {
            Ok(slot) => Verdict::Accept(slot),
            Err(_) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                Verdict::Refuse
            }
        }
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
