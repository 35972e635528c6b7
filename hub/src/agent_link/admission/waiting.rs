//! Connection attempts waiting for a handshake slot, served round-robin by source prefix, each for
//! a bounded time.
//!
//! When every slot is taken, refusing an attempt at once makes its agent back off with a growing
//! ceiling: after a hub restart under 25,000 agents, most were refused several times and the last
//! came back after two minutes (`scale` bench), while the hub had spare capacity for most of
//! them. Holding the attempt instead costs the hub only the client's first packet (quinn buffers
//! its retransmissions), and the agent's handshake starts the moment a slot frees. An attempt
//! that has waited [`AdmissionLimits::max_wait`](super::AdmissionLimits) is refused, so its agent
//! hears "busy" well before its own handshake timeout and retries later.
//!
//! Each freed slot goes to the next source prefix in turn (oldest attempt first within a prefix),
//! not to the oldest attempt overall: a sender that keeps hundreds of attempts queued from one
//! network gets one slot in each round, and an agent from any other network waits for at most one
//! slot per other waiting prefix. No prefix is capped: 25,000 agents behind one carrier NAT (or
//! the `scale` bench's 25,000 from 127.0.0.1) take every slot while nobody else waits.
//!
//! Pure bookkeeping with the time passed in; the accept loop owns the queue and does the I/O.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::SourcePrefix;

/// A bounded set of items that expire `max_wait` after they arrived, handed out round-robin by
/// prefix.
#[derive(Debug)]
pub struct Waiting<T> {
    /// Each waiting prefix's items, oldest first, with their arrival and sequence number.
    by_prefix: HashMap<SourcePrefix, VecDeque<(Instant, u64, T)>>,
    /// The prefixes with items, in serving order.
    turns: VecDeque<SourcePrefix>,
    /// Every item in arrival order (sequence number), for expiry; entries of items already handed
    /// out are dropped when they reach the front.
    arrivals: VecDeque<(Instant, u64, SourcePrefix)>,
    next_seq: u64,
    len: usize,
    capacity: usize,
    max_wait: Duration,
}

impl<T> Waiting<T> {
    /// Room for `capacity` items, each held at most `max_wait`.
    pub fn new(capacity: usize, max_wait: Duration) -> Self {
        Self {
            by_prefix: HashMap::new(),
            turns: VecDeque::new(),
            arrivals: VecDeque::new(),
            next_seq: 0,
            len: 0,
            capacity,
            max_wait,
        }
    }

    /// Queue `item` from `prefix`, arrived at `now`, or give it back when the queue is full.
    pub fn push(&mut self, now: Instant, prefix: SourcePrefix, item: T) -> Result<(), T> {
        if self.len >= self.capacity {
            return Err(item);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let queue = self.by_prefix.entry(prefix).or_default();
        if queue.is_empty() {
            self.turns.push_back(prefix);
        }
        queue.push_back((now, seq, item));
        self.arrivals.push_back((now, seq, prefix));
        self.len += 1;
        Ok(())
    }

    /// The oldest item of the prefix whose turn it is, if any has not expired at `now`; the
    /// expired ones go to `expired`.
    pub fn pop_fresh(&mut self, now: Instant, expired: &mut Vec<T>) -> Option<T> {
        self.take_expired(now, expired);
        let prefix = self.turns.pop_front()?;
        let queue = self.by_prefix.get_mut(&prefix)?;
        let (_, _, item) = queue.pop_front()?;
        if queue.is_empty() {
            self.by_prefix.remove(&prefix);
        } else {
            self.turns.push_back(prefix);
        }
        self.len -= 1;
        self.drop_handed_out();
        Some(item)
    }

    /// Move every item expired at `now` to `expired`.
    pub fn take_expired(&mut self, now: Instant, expired: &mut Vec<T>) {
        while let Some(&(arrived, seq, prefix)) = self.arrivals.front() {
            if now.saturating_duration_since(arrived) < self.max_wait {
                break;
            }
            self.arrivals.pop_front();
            if let Some(item) = self.remove_front(prefix, seq) {
                expired.push(item);
            }
        }
        self.drop_handed_out();
    }

    /// When the oldest item expires, if any waits.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.arrivals
            .front()
            .map(|(arrived, _, _)| *arrived + self.max_wait)
    }

    /// Everything still waiting (when the hub stops).
    pub fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.turns.clear();
        self.arrivals.clear();
        self.len = 0;
        self.by_prefix
            .drain()
            .flat_map(|(_, queue)| queue.into_iter().map(|(_, _, item)| item))
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Take `prefix`'s oldest item if it is the one numbered `seq` (an item leaves its prefix's
    /// queue from the front, so an older arrival is always at the front or already gone).
    fn remove_front(&mut self, prefix: SourcePrefix, seq: u64) -> Option<T> {
        let queue = self.by_prefix.get_mut(&prefix)?;
        if queue.front().map(|(_, s, _)| *s) != Some(seq) {
            return None;
        }
        let (_, _, item) = queue.pop_front()?;
        if queue.is_empty() {
            self.by_prefix.remove(&prefix);
            self.turns.retain(|p| *p != prefix);
        }
        self.len -= 1;
        Some(item)
    }

    /// Keep the front of `arrivals` an item that still waits, so [`Self::next_expiry`] is exact.
    fn drop_handed_out(&mut self) {
        while let Some(&(_, seq, prefix)) = self.arrivals.front() {
            let waiting = self
                .by_prefix
                .get(&prefix)
                .and_then(VecDeque::front)
                .is_some_and(|(_, s, _)| *s == seq);
            if waiting {
                break;
            }
            self.arrivals.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(2);
    const A: SourcePrefix = SourcePrefix::V4([10, 0, 0]);
    const B: SourcePrefix = SourcePrefix::V4([10, 0, 1]);
    const C: SourcePrefix = SourcePrefix::V4([10, 0, 2]);

    #[test]
    fn items_leave_oldest_first_and_a_full_queue_gives_the_item_back() {
        let now = Instant::now();
        let mut waiting = Waiting::new(2, WAIT);
        waiting.push(now, A, 1).unwrap();
        waiting.push(now, A, 2).unwrap();
        assert_eq!(waiting.push(now, A, 3), Err(3));
        let mut expired = Vec::new();
        assert_eq!(waiting.pop_fresh(now, &mut expired), Some(1));
        waiting.push(now, A, 3).unwrap();
        assert_eq!(waiting.pop_fresh(now, &mut expired), Some(2));
        assert_eq!(waiting.pop_fresh(now, &mut expired), Some(3));
        assert_eq!(waiting.pop_fresh(now, &mut expired), None);
        assert!(expired.is_empty());
    }

    #[test]
    fn a_prefix_with_many_waiting_gets_one_turn_in_each_round() {
        let now = Instant::now();
        let mut waiting = Waiting::new(100, WAIT);
        for i in 0..50 {
            waiting.push(now, A, i).unwrap();
        }
        waiting.push(now, B, 100).unwrap();
        waiting.push(now, C, 200).unwrap();
        waiting.push(now, B, 101).unwrap();
        let mut expired = Vec::new();
        let served: Vec<_> = (0..7)
            .map(|_| waiting.pop_fresh(now, &mut expired).unwrap())
            .collect();
        assert_eq!(served, [0, 100, 200, 1, 101, 2, 3]);
        assert_eq!(waiting.len(), 46);
    }

    #[test]
    fn an_item_that_waited_max_wait_is_expired_not_handed_out() {
        let start = Instant::now();
        let mut waiting = Waiting::new(8, WAIT);
        waiting.push(start, A, "old").unwrap();
        waiting
            .push(start + Duration::from_secs(1), A, "young")
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
    fn take_expired_keeps_the_fresh_ones_across_prefixes() {
        let start = Instant::now();
        let mut waiting = Waiting::new(8, WAIT);
        for (i, (at, prefix)) in [(0, A), (500, B), (1500, A), (1900, B)]
            .into_iter()
            .enumerate()
        {
            waiting
                .push(start + Duration::from_millis(at), prefix, i)
                .unwrap();
        }
        let mut expired = Vec::new();
        waiting.take_expired(start + Duration::from_millis(2600), &mut expired);
        assert_eq!(expired, [0, 1]);
        assert_eq!(waiting.len(), 2);
        assert_eq!(
            waiting.next_expiry(),
            Some(start + Duration::from_millis(1500) + WAIT)
        );
        let mut rest: Vec<_> = waiting.drain().collect();
        rest.sort_unstable();
        assert_eq!(rest, [2, 3]);
        assert!(waiting.is_empty());
    }

    #[test]
    fn handed_out_items_do_not_hold_the_next_expiry() {
        let start = Instant::now();
        let mut waiting = Waiting::new(8, WAIT);
        waiting.push(start, A, 0).unwrap();
        waiting.push(start, A, 1).unwrap();
        waiting.push(start + Duration::from_secs(1), B, 2).unwrap();
        let mut expired = Vec::new();
        assert_eq!(waiting.pop_fresh(start, &mut expired), Some(0));
        assert_eq!(waiting.pop_fresh(start, &mut expired), Some(2));
        assert_eq!(waiting.next_expiry(), Some(start + WAIT));
        assert_eq!(waiting.pop_fresh(start, &mut expired), Some(1));
        assert_eq!(waiting.next_expiry(), None);
    }
}
