//! What one session may cost the hub in engine snapshots, decided without I/O.
//!
//! Every admitted snapshot is a store write (an upsert of its JSON) on the one writer connection
//! that admin writes share, so an unlimited device could slow every admin (measured before this
//! gate: 788 writes in 25 s from one device, admin write latency 7 → 51 ms). Each session gets a
//! token bucket on the agent's own pacing ([`MIN_SNAPSHOT_INTERVAL`]): a real agent never waits for
//! a token, a flood costs at most [`APPROVED_BURST`] writes plus one per interval. A session starts
//! with one token, not a full bucket, so reconnecting buys a device one write, not a burst.
//!
//! Over the rate a snapshot is dropped and counted, and the session stays: it is informational,
//! the frame had to be read anyway to keep the control stream in step, and closing would only make
//! the device reconnect into a fresh bucket. Over [`SNAPSHOT_BUDGET`] (which a real agent trims to)
//! it is refused. A pending device, which nobody has vouched for yet, gets one write per
//! [`PENDING_PERIOD`] and its snapshot is trimmed to [`PENDING_SNAPSHOT_BUDGET`].
//!
//! What is stored is sanitized and bounded ([`EngineSnapshot::sanitize`]), so its JSON is at most
//! [`MAX_STORED_SNAPSHOT`] bytes (`store::snapshots` measures the worst case).

use std::time::Duration;

use outpost_protocol::snapshot::{
    EngineSnapshot, MIN_SNAPSHOT_INTERVAL, PENDING_SNAPSHOT_BUDGET, SNAPSHOT_BUDGET,
};
use thiserror::Error;
use tokio::time::Instant;

/// Snapshots an approved device may send back to back (connect, then a standby or two).
pub const APPROVED_BURST: u32 = 3;
/// One snapshot per this long from a pending device.
pub const PENDING_PERIOD: Duration = Duration::from_secs(10 * 60);
/// The most bytes of JSON one stored snapshot takes: twice the encoded budget (a `"` or `\` is
/// escaped to two bytes; control characters, which would take six, are gone) plus the field names
/// of [`MAX_LISTED_CONTAINERS`] entries of [`MAX_NAMES`] names each. The worst case measured
/// (every text `"`, every list full) is 157,196 bytes (`store::snapshots`' test); before the gate a
/// 261 KB frame of control bytes was stored as 1.5 MB.
///
/// [`MAX_LISTED_CONTAINERS`]: outpost_protocol::snapshot::MAX_LISTED_CONTAINERS
/// [`MAX_NAMES`]: outpost_protocol::snapshot::MAX_NAMES
pub const MAX_STORED_SNAPSHOT: usize = 2 * SNAPSHOT_BUDGET + 32 * 1024;

/// At most `capacity` events at once, refilled one per `period`.
#[derive(Clone, Copy, Debug)]
pub struct TokenBucket {
    capacity: u32,
    period: Duration,
    tokens: u32,
    refilled_at: Instant,
}

impl TokenBucket {
    /// A bucket holding `tokens` (at most `capacity`) at `now`.
    pub fn new(capacity: u32, period: Duration, tokens: u32, now: Instant) -> Self {
        Self {
            capacity,
            period,
            tokens: tokens.min(capacity),
            refilled_at: now,
        }
    }

    /// Take a token at `now`, if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        let took = self.tokens > 0;
        self.tokens -= u32::from(took);
        took
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled_at);
        let periods = elapsed.as_nanos() / self.period.as_nanos().max(1);
        let periods = u32::try_from(periods).unwrap_or(u32::MAX);
        if self.tokens.saturating_add(periods) >= self.capacity {
            self.tokens = self.capacity;
            self.refilled_at = now;
        } else {
            self.tokens += periods;
            self.refilled_at += self.period * periods;
        }
    }
}

/// Why a snapshot was not stored.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum SnapshotRefused {
    /// The session sent snapshots faster than its allowance.
    #[error("over the snapshot rate ({refused} refused on this session)")]
    OverRate {
        /// Snapshots refused on this session so far, this one included.
        refused: u64,
    },
    /// The encoded snapshot exceeds [`SNAPSHOT_BUDGET`].
    #[error(
        "{bytes} bytes, over the {SNAPSHOT_BUDGET}-byte budget ({refused} refused on this session)"
    )]
    Oversize {
        /// Its encoded size.
        bytes: usize,
        /// Snapshots refused on this session so far, this one included.
        refused: u64,
    },
}

impl SnapshotRefused {
    /// Snapshots refused on this session so far.
    pub fn refused(self) -> u64 {
        match self {
            Self::OverRate { refused } | Self::Oversize { refused, .. } => refused,
        }
    }
}

/// The snapshot allowance of one session.
#[derive(Clone, Copy, Debug)]
pub struct SnapshotGate {
    pending: bool,
    bucket: TokenBucket,
    counts: SnapshotCounts,
}

/// Snapshots a session sent, by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotCounts {
    /// Admitted for storing.
    pub admitted: u64,
    /// Refused (over the rate or the size).
    pub refused: u64,
}

impl SnapshotGate {
    /// The allowance of a new session of a pending or approved device, at `now`.
    pub fn new(pending: bool, now: Instant) -> Self {
        let (capacity, period) = if pending {
            (1, PENDING_PERIOD)
        } else {
            (APPROVED_BURST, MIN_SNAPSHOT_INTERVAL)
        };
        Self {
            pending,
            bucket: TokenBucket::new(capacity, period, 1, now),
            counts: SnapshotCounts::default(),
        }
    }

    /// The device was approved: the approved allowance from now on.
    pub fn approve(&mut self, now: Instant) {
        if self.pending {
            *self = Self {
                counts: self.counts,
                ..Self::new(false, now)
            };
        }
    }

    /// The snapshot to store, sanitized (and for a pending device trimmed), or why not.
    pub fn admit(
        &mut self,
        now: Instant,
        mut snapshot: EngineSnapshot,
    ) -> Result<EngineSnapshot, SnapshotRefused> {
        if !self.bucket.take(now) {
            self.counts.refused += 1;
            return Err(SnapshotRefused::OverRate {
                refused: self.counts.refused,
            });
        }
        snapshot.sanitize();
        if self.pending {
            snapshot = snapshot.fit(PENDING_SNAPSHOT_BUDGET);
        }
        let bytes = snapshot.encoded_len();
        if bytes > SNAPSHOT_BUDGET {
            self.counts.refused += 1;
            return Err(SnapshotRefused::Oversize {
                bytes,
                refused: self.counts.refused,
            });
        }
        self.counts.admitted += 1;
        Ok(snapshot)
    }

    /// Snapshots of this session so far, by outcome.
    pub fn counts(&self) -> SnapshotCounts {
        self.counts
    }
}

#[cfg(test)]
mod tests {
    use outpost_protocol::snapshot::ContainerSummary;

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn snapshot(image: &str, count: usize) -> EngineSnapshot {
        EngineSnapshot {
            containers_running: count as u32,
            containers: (0..count)
                .map(|_| ContainerSummary {
                    image: image.to_owned(),
                    ..ContainerSummary::default()
                })
                .collect(),
            ..EngineSnapshot::default()
        }
    }

    /// Offer one snapshot every `every` for `span` on a virtual clock; returns how many passed.
    fn flood(gate: &mut SnapshotGate, start: Instant, every: Duration, span: Duration) -> usize {
        let offers = (span.as_nanos() / every.as_nanos()) as u32;
        (0..offers)
            .filter(|i| gate.admit(start + every * *i, snapshot("a", 1)).is_ok())
            .count()
    }

    #[test]
    fn a_bucket_refills_one_token_per_period_up_to_its_capacity() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(3, 10 * SECOND, 1, start);
        assert!(bucket.take(start));
        assert!(!bucket.take(start + 9 * SECOND));
        assert!(bucket.take(start + 10 * SECOND));
        // An hour idle fills it to three, not more.
        let later = start + 3600 * SECOND;
        assert_eq!((0..10).filter(|_| bucket.take(later)).count(), 3);
        // Refill keeps the fractions: 25 s after `later`, two tokens, the third at 30 s.
        assert_eq!(
            (0..5).filter(|_| bucket.take(later + 25 * SECOND)).count(),
            2
        );
        assert!(bucket.take(later + 30 * SECOND));
    }

    #[test]
    fn an_approved_flood_is_bounded_and_a_real_agent_never_refused() {
        let start = Instant::now();
        let mut gate = SnapshotGate::new(false, start);
        // The measured attack: 788 snapshots in 25 s.
        let stored = flood(&mut gate, start, 25 * SECOND / 788, 25 * SECOND);
        assert_eq!(stored, 3, "one at start, one per 10 s");
        let refused = gate
            .admit(start + 25 * SECOND, snapshot("a", 1))
            .unwrap_err();
        assert_eq!(refused.refused(), 788 - 3 + 1);
        let counts = gate.counts();
        assert_eq!((counts.admitted, counts.refused), (3, 788 - 3 + 1));

        // An agent at its own pace, for an hour.
        let mut gate = SnapshotGate::new(false, start);
        let stored = flood(&mut gate, start, MIN_SNAPSHOT_INTERVAL, 3600 * SECOND);
        assert_eq!(stored, 360);
    }

    #[test]
    fn a_pending_device_gets_one_small_snapshot_per_ten_minutes() {
        let start = Instant::now();
        let mut gate = SnapshotGate::new(true, start);
        let stored = flood(&mut gate, start, SECOND, 3600 * SECOND);
        assert_eq!(stored, 6);
        let mut gate = SnapshotGate::new(true, start);
        let big = gate.admit(start, snapshot(&"i".repeat(200), 200)).unwrap();
        assert!(big.encoded_len() <= PENDING_SNAPSHOT_BUDGET);
        assert_eq!(big.containers_running, 200);
        gate.approve(start);
        assert!(
            gate.admit(start, snapshot("a", 1)).is_ok(),
            "approval opens the allowance"
        );
    }

    #[test]
    fn an_oversize_snapshot_is_refused_and_text_is_sanitized() {
        let start = Instant::now();
        let mut gate = SnapshotGate::new(false, start);
        let refused = gate
            .admit(start, snapshot(&"i".repeat(1000), 100))
            .unwrap_err();
        assert!(
            matches!(refused, SnapshotRefused::Oversize { bytes, refused: 1 } if bytes > SNAPSHOT_BUDGET)
        );
        let stored = gate
            .admit(start + 10 * SECOND, snapshot("\u{1b}]0;owned\u{7}", 1))
            .unwrap();
        assert_eq!(stored.containers[0].image, "\u{fffd}]0;owned\u{fffd}");
    }
}
