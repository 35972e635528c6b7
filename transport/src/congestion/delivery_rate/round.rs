//! What one round trip's acks and losses showed, kept only until the round ends.
//!
//! A round ends when a packet sent after its start is acknowledged. Everything here describes
//! that one round and starts over at its end ([`std::mem::take`] of the `Default`), so nothing
//! per-round can leak into the next by a reset forgotten by hand. What outlives a round (the rate
//! filters, the round counter, what the last round delivered) stays in the controller.

use std::time::{Duration, Instant};

/// A round's acks make a rate sample only with this many acks over at least this span.
pub(super) const MIN_ACKS_FOR_ACK_RATE: u32 = 8;
const MIN_ACK_RATE_SPAN: Duration = Duration::from_millis(2);

/// The current round's acks and losses.
#[derive(Clone, Debug, Default)]
pub(super) struct RoundStats {
    /// Whether any sample in the round was not app-limited.
    pub(super) busy: bool,
    /// Whether any ack in the round was app-limited.
    pub(super) app_limited: bool,
    /// Bytes delivered and lost.
    pub(super) delivered: u64,
    pub(super) lost: u64,
    /// Acks counted, the first one's time and the latest.
    pub(super) acks: u32,
    first_ack: Option<Instant>,
    last_ack: Option<Instant>,
    /// Send times of the packets acknowledged: the first ack's, and the latest.
    first_sent: Option<Instant>,
    last_sent: Option<Instant>,
    /// Bytes acknowledged after the round's first ack frame.
    acked_after_first: u64,
    /// The smallest and largest RTT samples.
    pub(super) min_rtt: Option<Duration>,
    pub(super) max_rtt: Duration,
}

impl RoundStats {
    /// An ack at `now` of `bytes` sent at `sent`.
    pub(super) fn count_ack(&mut self, now: Instant, sent: Instant, bytes: u64, app_limited: bool) {
        self.acks += 1;
        self.last_ack = Some(now);
        let rtt = now.saturating_duration_since(sent);
        self.min_rtt = Some(self.min_rtt.map_or(rtt, |min| min.min(rtt)));
        self.max_rtt = self.max_rtt.max(rtt);
        self.first_sent.get_or_insert(sent);
        self.last_sent = self.last_sent.max(Some(sent));
        match self.first_ack {
            None => self.first_ack = Some(now),
            // Packets acknowledged by the round's first ack frame arrived before the span began.
            Some(first) if first == now => {}
            Some(_) => self.acked_after_first += bytes,
        }
        self.app_limited |= app_limited;
    }

    /// The rate acks arrived at over the round. A burst that crosses the bottleneck leaves it
    /// spaced at the bottleneck's rate (packet pair), so this knows the path's rate a round or
    /// two before the per-packet samples do.
    /// The span is the longer of the acks' and the sends' (as in BBR's rate samples): acks
    /// bunched by the receiver or the network can never show more than the sender sent.
    pub(super) fn ack_rate(&self) -> Option<u64> {
        let acks = self.last_ack?.checked_duration_since(self.first_ack?)?;
        let sends = self.last_sent?.saturating_duration_since(self.first_sent?);
        let span = acks.max(sends);
        if self.acks < MIN_ACKS_FOR_ACK_RATE || span < MIN_ACK_RATE_SPAN {
            return None;
        }
        Some((self.acked_after_first as f64 / span.as_secs_f64()) as u64)
    }
}
