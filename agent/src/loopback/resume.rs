//! The decisions of a blob transfer, without I/O: where to ask from given what the disk holds, and
//! whether to try again after a failure. The fetcher ([`super::fetch`]) carries them out.
//!
//! A transfer that made progress before it failed starts its backoff again from the bottom, so a
//! link with an outage every minute never climbs to the cap while bytes still flow; one that keeps
//! failing without a byte gives up once [`GIVE_UP_AFTER`] has passed since the last byte arrived,
//! and the engine's next request (it retries a layer several times) starts another. Nothing is
//! lost either way: the `.partial` file stays, and the next attempt asks from its end.

use std::time::Duration;

use outpost_protocol::backoff::Backoff;
use tokio::time::Instant;

/// First retry ceiling: about one check-in's worth of reconnect.
const RETRY_BASE: Duration = Duration::from_millis(500);
/// Largest retry ceiling.
const RETRY_CAP: Duration = Duration::from_secs(8);
/// How long without a byte before a transfer is given up (the `.partial` file stays).
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(180);

/// What to do with a blob the hub says is `size` bytes long, when the disk holds `held` of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Receive `len` bytes from byte `from` on (a resume when `from > 0`).
    Receive {
        /// The first byte to ask for: what the disk holds.
        from: u64,
        /// Bytes still missing.
        len: u64,
    },
    /// Everything is on disk: check it against its digest.
    Verify,
    /// The disk holds more than the blob: not this blob's bytes; discard them and start over.
    Discard,
}

/// Where a transfer stands given what the disk holds.
pub fn plan(held: u64, size: u64) -> Plan {
    match held.cmp(&size) {
        std::cmp::Ordering::Less => Plan::Receive {
            from: held,
            len: size - held,
        },
        std::cmp::Ordering::Equal => Plan::Verify,
        std::cmp::Ordering::Greater => Plan::Discard,
    }
}

/// The retry policy of one transfer.
#[derive(Debug)]
pub struct Retry {
    backoff: Backoff,
    last_progress: Instant,
    held: u64,
}

impl Retry {
    /// A transfer starting at `now` with `held` bytes on disk.
    pub fn new(now: Instant, held: u64) -> Self {
        Self {
            backoff: Backoff::new(RETRY_BASE, RETRY_CAP),
            last_progress: now,
            held,
        }
    }

    /// An attempt failed at `now` with `held` bytes on disk: the delay before the next one, or
    /// `None` to give up.
    pub fn after_failure(&mut self, now: Instant, held: u64) -> Option<Duration> {
        if held > self.held {
            self.held = held;
            self.last_progress = now;
            self.backoff.reset();
        }
        if now.duration_since(self.last_progress) >= GIVE_UP_AFTER {
            return None;
        }
        Some(self.backoff.next_delay(&mut rand::rng()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transfer_asks_from_the_byte_the_disk_holds() {
        assert_eq!(plan(0, 100), Plan::Receive { from: 0, len: 100 });
        assert_eq!(plan(60, 100), Plan::Receive { from: 60, len: 40 });
        assert_eq!(plan(100, 100), Plan::Verify);
        assert_eq!(plan(0, 0), Plan::Verify);
        assert_eq!(plan(101, 100), Plan::Discard);
    }

    #[test]
    fn progress_resets_the_backoff_and_silence_gives_up() {
        let start = Instant::now();
        let mut now = start;
        let mut retry = Retry::new(start, 0);
        for _ in 0..10 {
            let delay = retry.after_failure(now, 0).unwrap();
            assert!(delay <= RETRY_CAP);
            now += delay;
        }
        assert_eq!(retry.backoff.ceiling(), RETRY_CAP);
        // A byte arrived before this failure: back to the bottom.
        let delay = retry.after_failure(now, 1).unwrap();
        assert!(delay <= RETRY_BASE);
        let progressed = now;
        assert!(retry
            .after_failure(progressed + GIVE_UP_AFTER - Duration::from_secs(1), 1)
            .is_some());
        assert_eq!(retry.after_failure(progressed + GIVE_UP_AFTER, 1), None);
        // Progress after a long silence is progress all the same.
        assert!(retry.after_failure(progressed + GIVE_UP_AFTER, 2).is_some());
    }
}
