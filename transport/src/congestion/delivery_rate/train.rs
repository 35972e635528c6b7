//! The first flight of a transfer sent as one burst, and the bottleneck rate its acks show.
//!
//! quinn paces every flight at 1.25 windows per round trip, so a paced flight's acks can only
//! show the rate it was sent at, and startup learns the path one doubling per round: from a
//! 147 KB window a 20 Mbit/s GEO path is full only in the fourth round (2.4 s), and the last
//! doubling overshoots the modem's queue by a bandwidth-delay product. A burst is different:
//! it leaves faster than any bottleneck, queues there, and comes out spaced at the bottleneck's
//! rate — so do its acks (packet pair, here a train of a whole window). One round trip after
//! the transfer starts the controller knows the path's rate instead of guessing at it.
//!
//! The burst is never more than the window startup would have sent anyway; it only skips the
//! pacing of that one flight. A train is believed only when its acks came back at most half as
//! fast as its packets left (it really crossed a narrower link), over enough acks to average
//! out the receiver's ack batching.
//!
//! Even then its reading is a rough one: a 147 KB train crosses a 20 Mbit/s link in 60 ms, and
//! the link's jitter is ±10 ms each way. Over netem's model of GEO (`train_tests`) one train in
//! twenty reads below 0.65 of the rate, so steady state starts with a probe, which shows within
//! two rounds whether the path is faster ([`super::pacing`]'s search).

use std::time::{Duration, Instant};

/// A send this long after the one before it starts the burst again: what left earlier (a
/// request's head, 46 ms before its body in the product's `docker load`) crossed on its own,
/// and its early ack would stretch the train. Shorter pauses (a sender busy for a few
/// milliseconds) stay inside the train: one ack a few milliseconds early moves a fit over
/// dozens of acks by about a percent.
const HEAD_GAP: Duration = Duration::from_millis(10);
/// The verdict comes once this share of the train is acknowledged (the rest may be lost), or at
/// an ack of a packet sent after it. The rate is fitted over every ack of the burst up to then,
/// from its first: jitter that never reorders (queues keep order) only ever holds acks back
/// behind a late one and releases them together, and the first ack is the one nothing held. A
/// span from 12.5 % to 87.5 % of the train (sessions 20–28) started inside such a bunch and
/// read a GEO link at 13 × its rate twice in the `congestion` bench (the window jumped to
/// 42 MB, the modem's queue dropped 6,700 packets, a 10 MB download took 8 s instead of 6).
/// Over netem's model of that link with a receiver now and then busy for up to 20 ms
/// (`train_tests`, 500 trains), the old span read a median 0.93 of the link's rate, 3.2 × at
/// the 99th percentile and 30 × at worst; the whole train reads 0.86, 1.4 × and 2.4 ×. Its
/// median is lower (later acks wait behind more of the jitter than the first), and steady
/// state's probing finds the rest.
const SPAN_TO: f64 = 0.95;
/// The span must hold at least this many acks ...
const MIN_ACKS: u32 = 8;
/// ... and last this long, or it says more about ack batching than about the path.
const MIN_SPAN: Duration = Duration::from_millis(2);
/// The span's packets came back at most this share of the rate they left at: a bottleneck.
const SATURATED: f64 = 0.5;

/// What the acks of a finished train showed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The burst crossed a bottleneck of this many bytes per second.
    Bottleneck(u64),
    /// The acks came back about as fast as the burst left, or too few to tell.
    Unknown,
    /// The flight ran out of data long before its budget (a handshake, a check-in): the next
    /// flight may try again.
    TooShort,
}

/// An ack in the train: when it arrived, when its packet left, how much was acked by then.
#[derive(Clone, Copy, Debug)]
struct Mark {
    at: Instant,
    sent: Instant,
    acked: u64,
}

/// One burst and its acks.
#[derive(Clone, Debug)]
pub(super) struct Train {
    /// Bytes the burst may still send unpaced.
    budget: u64,
    sent: u64,
    first_sent: Option<Instant>,
    last_sent: Option<Instant>,
    /// Where the burst's body started: the first send after the last [`HEAD_GAP`].
    body_sent: Option<Instant>,
    acked: u64,
    /// Where the measured span starts, and its latest ack.
    from: Option<Mark>,
    to: Option<Mark>,
    acks: u32,
    /// Ack time against bytes acked over the span: its slope is the bottleneck's time per byte.
    fit: Fit,
    /// The burst ended (at its first ack) with budget left: the flight had no more to send.
    app_limited: bool,
    finished: bool,
}

impl Train {
    /// A train of at most `budget` bytes (the window).
    pub(super) fn new(budget: u64) -> Self {
        Self {
            budget,
            sent: 0,
            first_sent: None,
            last_sent: None,
            body_sent: None,
            acked: 0,
            from: None,
            to: None,
            acks: 0,
            fit: Fit::default(),
            app_limited: false,
            finished: false,
        }
    }

    /// Whether the burst is still leaving (pacing and the window do not apply to it).
    pub(super) fn bursting(&self) -> bool {
        !self.finished && self.budget > 0
    }

    /// `bytes` were sent at `now`.
    pub(super) fn on_sent(&mut self, now: Instant, bytes: u64) {
        if !self.bursting() {
            return;
        }
        self.first_sent.get_or_insert(now);
        if self
            .last_sent
            .is_none_or(|last| now.saturating_duration_since(last) >= HEAD_GAP)
        {
            self.body_sent = Some(now);
        }
        self.last_sent = Some(now);
        self.sent += bytes;
        self.budget = self.budget.saturating_sub(bytes);
    }

    /// A packet sent at `sent` was acknowledged at `now`. Returns the verdict once, when most of
    /// the burst is acknowledged (or a packet sent after it is).
    pub(super) fn on_ack(&mut self, now: Instant, sent: Instant, bytes: u64) -> Option<Verdict> {
        let (Some(first_sent), Some(last_sent)) = (self.first_sent, self.last_sent) else {
            return None;
        };
        if self.finished || sent < first_sent {
            return None;
        }
        // The burst ends at its first ack: what is sent later is clocked by acks, not a burst.
        if self.budget > 0 && self.acked == 0 {
            self.app_limited = true;
        }
        self.budget = 0;
        let after_train = sent > last_sent;
        if !after_train {
            self.count_ack(Mark {
                at: now,
                sent,
                acked: self.acked + bytes,
            });
        }
        if !(self.acked as f64 >= self.sent as f64 * SPAN_TO || after_train) {
            return None;
        }
        self.finished = true;
        Some(self.verdict())
    }

    fn count_ack(&mut self, mark: Mark) {
        self.acked = mark.acked;
        if self.body_sent.is_some_and(|body| mark.sent < body) {
            return;
        }
        match self.from {
            // Packets acknowledged by the same ack frame as the span's first belong to its start.
            Some(from) if from.at == mark.at => self.from = Some(mark),
            Some(from) => {
                self.to = Some(mark);
                self.acks += 1;
                let x = (mark.acked - from.acked) as f64;
                self.fit
                    .add(x, mark.at.duration_since(from.at).as_secs_f64());
            }
            None => {
                self.from = Some(mark);
                self.fit.add(0.0, 0.0);
            }
        }
    }

    fn verdict(&self) -> Verdict {
        let too_short = if self.app_limited {
            Verdict::TooShort
        } else {
            Verdict::Unknown
        };
        let (Some(from), Some(to)) = (self.from, self.to) else {
            return too_short;
        };
        if self.acks < MIN_ACKS {
            return too_short;
        }
        let ack_span = to.at.saturating_duration_since(from.at);
        if ack_span < MIN_SPAN {
            return Verdict::Unknown;
        }
        let send_span = to.sent.saturating_duration_since(from.sent);
        if send_span.as_secs_f64() > ack_span.as_secs_f64() * SATURATED {
            return Verdict::Unknown;
        }
        match self.fit.slope() {
            Some(seconds_per_byte) if seconds_per_byte > 0.0 => {
                Verdict::Bottleneck((1.0 / seconds_per_byte) as u64)
            }
            _ => Verdict::Unknown,
        }
    }
}

/// A least-squares line through (bytes acked, ack time). Not the span's two ends: a receiver
/// that falls behind acks a clump late and then catches up, and the ends alone read that as a
/// faster link (40 % faster in the `congestion` bench); the fit weighs every ack.
#[derive(Clone, Debug, Default)]
struct Fit {
    n: f64,
    x: f64,
    y: f64,
    xx: f64,
    xy: f64,
}

impl Fit {
    fn add(&mut self, x: f64, y: f64) {
        self.n += 1.0;
        self.x += x;
        self.y += y;
        self.xx += x * x;
        self.xy += x * y;
    }

    fn slope(&self) -> Option<f64> {
        let spread = self.n * self.xx - self.x * self.x;
        (spread > 0.0).then(|| (self.n * self.xy - self.x * self.y) / spread)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::origin;
    use super::*;

    const PACKET: u64 = 1200;

    /// A 100-packet burst sent `send_gap` apart, acked in pairs `spacing` apart from `rtt` on.
    fn run(send_gap: Duration, spacing: Duration) -> Option<Verdict> {
        let epoch = origin();
        let mut train = Train::new(100 * PACKET);
        for i in 0..100u32 {
            assert!(train.bursting());
            train.on_sent(epoch + send_gap * i, PACKET);
        }
        assert!(!train.bursting());
        let rtt = Duration::from_millis(600);
        let mut verdict = None;
        for pair in 0..50u32 {
            let sent = epoch + send_gap * (2 * pair);
            let at = epoch + rtt + spacing * pair;
            for _ in 0..2 {
                if let Some(v) = train.on_ack(at, sent, PACKET) {
                    assert!(verdict.is_none(), "a second verdict");
                    verdict = Some(v);
                }
            }
        }
        verdict
    }

    #[test]
    fn acks_spaced_by_a_bottleneck_show_its_rate() {
        // Two 1,200-byte packets every 0.96 ms: 2.5 MB/s, a 20 Mbit/s link.
        let burst = Duration::from_micros(10);
        let Some(Verdict::Bottleneck(rate)) = run(burst, Duration::from_micros(960)) else {
            panic!("no bottleneck found");
        };
        assert!((2_400_000..=2_600_000).contains(&rate), "rate {rate}");
    }

    #[test]
    fn acks_as_fast_as_the_burst_show_nothing() {
        // A link faster than the sender: the acks come back as the burst left (a pair every
        // 0.2 ms), over a span long enough to measure.
        let gap = Duration::from_micros(100);
        assert_eq!(run(gap, 2 * gap), Some(Verdict::Unknown));
    }

    #[test]
    fn the_verdict_waits_for_most_of_the_train() {
        let epoch = origin();
        let mut train = Train::new(20 * PACKET);
        for _ in 0..20 {
            train.on_sent(epoch, PACKET);
        }
        let rtt = Duration::from_millis(600);
        // 19 of 20 is the first count at or above `SPAN_TO`.
        for i in 0..18 {
            let at = epoch + rtt + Duration::from_millis(i);
            assert_eq!(
                train.on_ack(at, epoch, PACKET),
                None,
                "after {} acks",
                i + 1
            );
        }
        let verdict = train.on_ack(epoch + rtt + Duration::from_millis(18), epoch, PACKET);
        assert!(
            matches!(verdict, Some(Verdict::Bottleneck(_))),
            "{verdict:?}"
        );
    }

    #[test]
    fn a_head_sent_before_the_body_does_not_stretch_the_train() {
        // The request's head leaves 46 ms before a 100-packet body burst (the product's
        // `docker load`); acks of the body come 0.48 ms apart per packet (2.5 MB/s).
        let epoch = origin();
        let rtt = Duration::from_millis(600);
        let gap = Duration::from_millis(46);
        let mut train = Train::new(101 * PACKET);
        train.on_sent(epoch, PACKET);
        for _ in 0..100 {
            train.on_sent(epoch + gap, PACKET);
        }
        assert_eq!(train.on_ack(epoch + rtt, epoch, PACKET), None);
        let mut verdict = None;
        for i in 0..100u32 {
            let at = epoch + gap + rtt + Duration::from_micros(480) * i;
            verdict = verdict.or(train.on_ack(at, epoch + gap, PACKET));
        }
        let Some(Verdict::Bottleneck(rate)) = verdict else {
            panic!("no bottleneck found: {verdict:?}");
        };
        assert!((2_400_000..=2_600_000).contains(&rate), "rate {rate}");
    }

    #[test]
    fn a_pause_shorter_than_a_head_gap_stays_in_the_train() {
        // The burst leaves in two halves 5 ms apart (a sender busy for a moment); acks of all
        // 100 packets come 0.48 ms apart (2.5 MB/s). Both halves count: the span's first ack is
        // the first half's.
        let epoch = origin();
        let rtt = Duration::from_millis(600);
        let pause = Duration::from_millis(5);
        assert!(pause < HEAD_GAP);
        let mut train = Train::new(100 * PACKET);
        let sent = |i: u32| if i < 50 { epoch } else { epoch + pause };
        for i in 0..100 {
            train.on_sent(sent(i), PACKET);
        }
        let mut verdict = None;
        for i in 0..100u32 {
            let at = epoch + rtt + Duration::from_micros(480) * i;
            verdict = verdict.or(train.on_ack(at, sent(i), PACKET));
        }
        let Some(Verdict::Bottleneck(rate)) = verdict else {
            panic!("no bottleneck found: {verdict:?}");
        };
        assert!((2_400_000..=2_600_000).contains(&rate), "rate {rate}");
        assert_eq!(train.from.map(|from| from.sent), Some(epoch));
    }

    #[test]
    fn a_short_flight_shows_nothing() {
        // A check-in: two packets and their ack, far below the window the train may use.
        let epoch = origin();
        let mut train = Train::new(100 * PACKET);
        train.on_sent(epoch, 2 * PACKET);
        let at = epoch + Duration::from_millis(600);
        assert_eq!(train.on_ack(at, epoch, 2 * PACKET), Some(Verdict::TooShort));
        assert!(!train.bursting());
    }

    #[test]
    fn the_burst_ends_at_its_first_ack() {
        let epoch = origin();
        let mut train = Train::new(100 * PACKET);
        for _ in 0..20 {
            train.on_sent(epoch, PACKET);
        }
        let at = epoch + Duration::from_millis(600);
        assert_eq!(train.on_ack(at, epoch, PACKET), None);
        assert!(
            !train.bursting(),
            "sends clocked by acks are not part of the burst"
        );
    }
}
