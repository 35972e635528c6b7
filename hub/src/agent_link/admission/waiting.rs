//! Connection attempts waiting for a handshake slot, oldest first, each for a bounded time.
//!
//! When every slot is taken, refusing an attempt at once makes its agent back off with a growing
//! ceiling: after a hub restart under 25,000 agents, most were refused several times and the last
//! came back after two minutes (`scale` bench), while the hub had spare capacity for most of
//! them. Holding the attempt instead costs the hub only the client's first packet (quinn buffers
//! its retransmissions), and the agent's handshake starts the moment a slot frees. An attempt
//! that has waited [`AdmissionLimits::max_wait`](super::AdmissionLimits) is refused, so its agent
//! hears "busy" well before its own handshake timeout and retries later.
//!
//! Pure bookkeeping with the time passed in; the accept loop owns the queue and does the I/O.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// A bounded FIFO of items that expire `max_wait` after they arrived.
#[derive(Debug)]
pub struct Waiting<T> {
    queue: VecDeque<(Instant, T)>,
    capacity: usize,
    max_wait: Duration,
}

impl<T> Waiting<T> {
    /// Room for `capacity` items, each held at most `max_wait`.
    pub fn new(capacity: usize, max_wait: Duration) -> Self {
        Self {
            queue: VecDeque::new(),
            capacity,
            max_wait,
        }
    }

    /// Queue `item` arrived at `now`, or give it back when the queue is full.
    pub fn push(&mut self, now: Instant, item: T) -> Result<(), T> {
        if self.queue.len() >= self.capacity {
            return Err(item);
        }
        self.queue.push_back((now, item));
        Ok(())
    }

    /// The oldest item that has not expired at `now`; the expired ones before it go to `expired`.
    pub fn pop_fresh(&mut self, now: Instant, expired: &mut Vec<T>) -> Option<T> {
        self.take_expired(now, expired);
        self.queue.pop_front().map(|(_, item)| item)
    }

    /// Move every item expired at `now` to `expired`.
    pub fn take_expired(&mut self, now: Instant, expired: &mut Vec<T>) {
        while let Some((arrived, _)) = self.queue.front() {
            if now.saturating_duration_since(*arrived) < self.max_wait {
                break;
            }
            if let Some((_, item)) = self.queue.pop_front() {
                expired.push(item);
            }
        }
    }

    /// When the oldest item expires, if any waits.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.queue
            .front()
            .map(|(arrived, _)| *arrived + self.max_wait)
    }

    /// Everything still waiting, oldest first (when the hub stops).
    pub fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.queue.drain(..).map(|(_, item)| item)
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(2);

    #[test]
    fn items_leave_oldest_first_and_a_full_queue_gives_the_item_back() {
        let now = Instant::now();
        let mut waiting = Waiting::new(2, WAIT);
        waiting.push(now, 1).unwrap();
        waiting.push(now, 2).unwrap();
        assert_eq!(waiting.push(now, 3), Err(3));
        let mut expired = Vec::new();
        assert_eq!(waiting.pop_fresh(now, &mut expired), Some(1));
        waiting.push(now, 3).unwrap();
        assert_eq!(waiting.pop_fresh(now, &mut expired), Some(2));
        assert_eq!(waiting.pop_fresh(now, &mut expired), Some(3));
        assert_eq!(waiting.pop_fresh(now, &mut expired), None);
        assert!(expired.is_empty());
    }

    #[test]
    fn an_item_that_waited_max_wait_is_expired_not_handed_out() {
        let start = Instant::now();
        let mut waiting = Waiting::new(8, WAIT);
        waiting.push(start, "old").unwrap();
        waiting
            .push(start + Duration::from_secs(1), "young")
            .unwrap();
        assert_eq!(waiting.next_expiry(), Some(start + WAIT));

        let mut expired = Vec::new();
        let later = start + WAIT;
        assert_eq!(waiting.pop_fresh(later, &mut expired), Some("young"));
        assert_eq!(expired, ["old"]);
        assert!(waiting.is_empty());
        assert_eq!(waiting.next_expiry(), None);
    }

    #[test]
    fn take_expired_keeps_the_fresh_ones_in_order() {
        let start = Instant::now();
        let mut waiting = Waiting::new(8, WAIT);
        for (i, at) in [0, 500, 1500, 1900].into_iter().enumerate() {
            waiting.push(start + Duration::from_millis(at), i).unwrap();
        }
        let mut expired = Vec::new();
        waiting.take_expired(start + Duration::from_millis(2600), &mut expired);
        assert_eq!(expired, [0, 1]);
        assert_eq!(waiting.len(), 2);
        assert_eq!(waiting.drain().collect::<Vec<_>>(), [2, 3]);
    }
}
