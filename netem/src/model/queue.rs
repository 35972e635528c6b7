//! The bottleneck: a FIFO drained at a fixed rate or by a capacity trace, bounded in bytes.
//!
//! Bufferbloat is the signature of cellular and satellite links: a sender faster than the link
//! fills the queue and every packet behind it waits. The queue therefore adds delay first and
//! drops (drop-tail) only when its byte limit is reached, as a modem's buffer does.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::trace::{Trace, OPPORTUNITY_BYTES};

/// What limits how fast bytes leave the queue.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Capacity {
    /// No bottleneck: packets leave at once.
    #[default]
    Unlimited,
    /// A constant rate in bits per second.
    Rate(u64),
    /// A mahimahi capacity trace, started at the link's epoch.
    Trace(Arc<Trace>),
}

/// The queue's state across packets.
#[derive(Debug)]
pub(crate) struct QueueState {
    /// Packets waiting or being serialised: (departure time, length), departures non-decreasing.
    in_queue: VecDeque<(Instant, u64)>,
    backlog: u64,
    link_free: Instant,
    trace_opp: u64,
    trace_left: u32,
}

/// Why the queue refused a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueFull;

impl QueueState {
    pub(crate) fn new(epoch: Instant) -> Self {
        Self {
            in_queue: VecDeque::new(),
            backlog: 0,
            link_free: epoch,
            trace_opp: 0,
            trace_left: OPPORTUNITY_BYTES,
        }
    }

    /// Bytes queued (not yet departed) at `now`.
    pub(crate) fn backlog(&mut self, now: Instant) -> u64 {
        while let Some(&(departure, len)) = self.in_queue.front() {
            if departure > now {
                break;
            }
            self.backlog -= len;
            self.in_queue.pop_front();
        }
        self.backlog
    }

    /// Enqueues a packet and returns when it leaves the bottleneck, or refuses it if the queue
    /// would exceed `limit` bytes.
    pub(crate) fn enqueue(
        &mut self,
        now: Instant,
        epoch: Instant,
        len: u64,
        capacity: &Capacity,
        limit: Option<u64>,
    ) -> Result<Instant, QueueFull> {
        if matches!(capacity, Capacity::Unlimited) {
            return Ok(now);
        }
        let backlog = self.backlog(now);
        if limit.is_some_and(|limit| backlog + len > limit) {
            return Err(QueueFull);
        }
        let departure = match capacity {
            Capacity::Unlimited => now,
            Capacity::Rate(bps) => self.serialise(now, len, *bps),
            Capacity::Trace(trace) => self.next_opportunities(now, epoch, len, trace),
        };
        if departure > now {
            self.in_queue.push_back((departure, len));
            self.backlog += len;
        }
        Ok(departure)
    }

    fn serialise(&mut self, now: Instant, len: u64, bps: u64) -> Instant {
        let start = self.link_free.max(now);
        let nanos = u128::from(len) * 8 * 1_000_000_000 / u128::from(bps.max(1));
        self.link_free = start + Duration::from_nanos(nanos as u64);
        self.link_free
    }

    fn next_opportunities(
        &mut self,
        now: Instant,
        epoch: Instant,
        len: u64,
        trace: &Trace,
    ) -> Instant {
        let elapsed = now.saturating_duration_since(epoch);
        if trace.opportunity_time(self.trace_opp) < elapsed {
            // The queue ran dry: opportunities in between were wasted.
            self.trace_opp = trace.first_at_or_after(elapsed);
            self.trace_left = OPPORTUNITY_BYTES;
        } else if self.trace_left == 0 {
            self.trace_opp += 1;
            self.trace_left = OPPORTUNITY_BYTES;
        }
        let mut remaining = len;
        loop {
            let take = remaining.min(u64::from(self.trace_left));
            self.trace_left -= take as u32;
            remaining -= take;
            if remaining == 0 {
                break;
            }
            self.trace_opp += 1;
            self.trace_left = OPPORTUNITY_BYTES;
        }
        epoch + trace.opportunity_time(self.trace_opp)
    }
}
