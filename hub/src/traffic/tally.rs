//! What one session has cost, by class, without I/O: the counters the session's streams add to,
//! the snapshot a flush takes, and the budget check a background transfer makes per chunk.
//!
//! The wire totals are quinn's UDP payload bytes, exact; the classes other than control are the
//! payload their streams carried; control is the rest of the wire (check-ins, control messages,
//! acknowledgements and every packet's QUIC overhead), so the classes always sum to the wire.
//!
//! Payload is counted when a stream hands it to the connection, the wire when quinn sends it. A
//! flush can fall between the two: it records the payload, and the wire that later carries it
//! would be recorded again, as the next flush's control. So each flush carries what it recorded
//! ahead of the wire ([`Flushed::owed`]), and the next flush's wire pays that off before anything
//! counts as control: over a session the recorded bytes sum to the wire exactly. Without it a
//! paced sender with 3 MB queued at a budget period's boundary recorded those bytes in both
//! periods, and the second period's budget stopped 2.5 MB past its end (`tests/tests/budget.rs`).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Wire bytes (UDP payload, both ways) per byte of a blob sent over a fetch stream: QUIC's
/// packet and frame headers and the device's acknowledgements. Measured 1.041–1.045 over six
/// runs of `tests/tests/agent_registry.rs` (8 Mbit/s, 40 ms); 1.05 so that a budget that stops
/// image bytes as they are handed to the connection ends at the budget, not past it. Resent
/// bytes come on top ([`Tally::charged`]): at 100 Mbit/s into a 512 KB queue, a fresh
/// connection's startup lost ~1,200 packets, the period's wire came to 1.064 per image byte, and
/// a budget charged at 1.05 alone ended 1.3 % past its end (`tests/tests/budget.rs`, CI
/// 2026-12-05).
const WIRE_PER_IMAGE_BYTE: (u64, u64) = (105, 100);

/// The most of the sent bytes a budget takes to be resent: past half, a link that loses more
/// is charged as if it lost half (the charge stays finite; the wire still counts every byte).
const MAX_RESENT_SHARE: (u64, u64) = (1, 2);

/// What a byte was spent on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Check-ins, control messages, acknowledgements, packet overhead: the wire's remainder.
    Control,
    /// Proxied Docker API calls (`docker ps`, `logs -f`, `exec`).
    Interactive,
    /// Registry fetch streams: manifests and layers from the hub's mirror.
    Images,
    /// Engine snapshots the agent sends.
    Snapshots,
    /// Desired stack states and the agent's reports on them.
    Stacks,
}

impl Class {
    /// Every class, control first.
    pub const ALL: [Self; 5] = [
        Self::Control,
        Self::Interactive,
        Self::Images,
        Self::Snapshots,
        Self::Stacks,
    ];

    /// The name the store, the API and the metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Control => "control",
            Self::Interactive => "interactive",
            Self::Images => "images",
            Self::Snapshots => "snapshots",
            Self::Stacks => "stacks",
        }
    }

    /// The class a stored name stands for.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// Index into the payload counters; control has none (it is the remainder).
    fn counted(self) -> Option<usize> {
        match self {
            Self::Control => None,
            Self::Interactive => Some(0),
            Self::Images => Some(1),
            Self::Snapshots => Some(2),
            Self::Stacks => Some(3),
        }
    }
}

/// Which way a byte went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Device → hub.
    Up = 0,
    /// Hub → device.
    Down = 1,
}

/// Bytes up and down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UpDown {
    /// Device → hub.
    pub up: u64,
    /// Hub → device.
    pub down: u64,
}

impl UpDown {
    /// Both ways together.
    pub fn total(self) -> u64 {
        self.up.saturating_add(self.down)
    }

    fn minus(self, earlier: Self) -> Self {
        Self {
            up: self.up.saturating_sub(earlier.up),
            down: self.down.saturating_sub(earlier.down),
        }
    }

    /// Add `other` to these.
    pub fn add(&mut self, other: Self) {
        self.up = self.up.saturating_add(other.up);
        self.down = self.down.saturating_add(other.down);
    }
}

/// A session's totals at one moment: the wire and each counted class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// UDP payload bytes.
    pub wire: UpDown,
    /// Of the wire's down bytes, those in packets the hub declared lost (their data is sent
    /// again).
    pub lost_down: u64,
    /// Payload per counted class (interactive, images, snapshots, stacks).
    counted: [UpDown; 4],
}

impl Tally {
    /// A tally of `wire` bytes with nothing counted to a class (tests, a session's start).
    pub fn of_wire(wire: UpDown) -> Self {
        Self {
            wire,
            lost_down: 0,
            counted: [UpDown::default(); 4],
        }
    }

    /// The bytes of `class`; control is the wire less the counted classes.
    pub fn class(&self, class: Class) -> UpDown {
        match class.counted() {
            Some(index) => self.counted[index],
            None => self
                .counted
                .iter()
                .fold(self.wire, |rest, c| rest.minus(*c)),
        }
    }

    /// What was spent between `earlier` and this tally.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            wire: self.wire.minus(earlier.wire),
            lost_down: self.lost_down.saturating_sub(earlier.lost_down),
            counted: std::array::from_fn(|i| self.counted[i].minus(earlier.counted[i])),
        }
    }

    /// Nothing spent.
    pub fn is_empty(&self) -> bool {
        self.wire == UpDown::default() && self.counted.iter().all(|c| *c == UpDown::default())
    }

    /// The payload of every counted class, per direction.
    fn payload(&self) -> UpDown {
        self.counted.iter().fold(UpDown::default(), |mut sum, c| {
            sum.add(*c);
            sum
        })
    }

    /// This tally of bytes spent since a flush, settled against `owed`, payload that flush
    /// recorded before it reached the wire: the wire pays `owed` off first (those bytes are
    /// recorded already). Returns the settled tally and what is still owed after it.
    pub fn settle(&self, owed: UpDown) -> (Self, UpDown) {
        let paid = UpDown {
            up: self.wire.up.min(owed.up),
            down: self.wire.down.min(owed.down),
        };
        let wire = self.wire.minus(paid);
        let mut still_owed = owed.minus(paid);
        still_owed.add(self.payload().minus(wire));
        let settled = Self { wire, ..*self };
        (settled, still_owed)
    }

    /// Bytes a budget counts: the wire, or the image bytes handed to the connection with the
    /// wire's share on top if that is more — bytes written to a stream leave the hub later (and
    /// with their framing and acknowledgements), and a budget must count them when they are
    /// committed, not when they are sent. `session` is the whole session's tally: the share of
    /// its sent bytes that were lost is taken to be resent of the committed ones too.
    pub fn charged(&self, session: &Self) -> u64 {
        let (num, den) = WIRE_PER_IMAGE_BYTE;
        let (max_lost, of) = MAX_RESENT_SHARE;
        let sent = u128::from(session.wire.down);
        let lost = u128::from(session.lost_down).min(sent * u128::from(max_lost) / u128::from(of));
        let images = u128::from(self.class(Class::Images).total());
        let framed = images * u128::from(num) / u128::from(den);
        let resent = match sent - lost {
            0 => framed,
            delivered => framed * sent / delivered,
        };
        self.wire
            .total()
            .max(u64::try_from(resent).unwrap_or(u64::MAX))
    }
}

/// Where the last flush left a session: its tally then, and the payload recorded by then that had
/// not reached the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flushed {
    /// The session's tally as of the flush.
    pub at: Tally,
    /// Payload recorded but not yet on the wire, per direction.
    pub owed: UpDown,
}

impl Flushed {
    /// What is spent since this flush with the session at `now`, settled (each byte once), and
    /// the flush that would record it.
    pub fn since(&self, now: &Tally) -> (Tally, Self) {
        let (spent, owed) = now.since(&self.at).settle(self.owed);
        (spent, Self { at: *now, owed })
    }
}

/// The payload counters a session's streams add to: plain atomics, written from the stream
/// tasks, read by the flush.
#[derive(Debug, Default)]
pub struct ClassCounters {
    counted: [[AtomicU64; 2]; 4],
}

impl ClassCounters {
    /// Count `bytes` of `class` going `direction`; control is never counted directly.
    pub fn add(&self, class: Class, direction: Direction, bytes: u64) {
        if let Some(index) = class.counted() {
            self.counted[index][direction as usize].fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// The counters with the wire totals `wire`, of which `lost_down` were lost on the way
    /// down, as one tally.
    pub fn tally(&self, wire: UpDown, lost_down: u64) -> Tally {
        Tally {
            wire,
            lost_down,
            counted: std::array::from_fn(|i| UpDown {
                up: self.counted[i][0].load(Ordering::Relaxed),
                down: self.counted[i][1].load(Ordering::Relaxed),
            }),
        }
    }
}

/// A device's budget as one background transfer checks it: what the store held for the period
/// when the transfer started, and the session's tally the store had been told of then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allowance {
    /// The budget for the period.
    pub budget: u64,
    /// Bytes the store held for the device in the period.
    pub stored: u64,
    /// Where the flush that the stored bytes include left the session.
    pub flushed: Flushed,
}

impl Allowance {
    /// Bytes spent in the period, with the session at `now`. A flush since the allowance was
    /// taken moves bytes from the session's part to the store's without changing the sum.
    pub fn used(&self, now: &Tally) -> u64 {
        self.stored
            .saturating_add(self.flushed.since(now).0.charged(now))
    }

    /// Whether `bytes` more fit in the budget, with the session at `now`.
    pub fn fits(&self, now: &Tally, bytes: u64) -> bool {
        self.used(now).saturating_add(bytes) <= self.budget
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(wire: (u64, u64), images_down: u64) -> Tally {
        let counters = ClassCounters::default();
        counters.add(Class::Images, Direction::Down, images_down);
        counters.add(Class::Interactive, Direction::Up, 10);
        counters.tally(
            UpDown {
                up: wire.0,
                down: wire.1,
            },
            0,
        )
    }

    #[test]
    fn control_is_what_the_counted_classes_leave_of_the_wire() {
        let t = tally((500, 9_000), 8_000);
        assert_eq!(t.class(Class::Images), UpDown { up: 0, down: 8_000 });
        assert_eq!(t.class(Class::Interactive), UpDown { up: 10, down: 0 });
        assert_eq!(
            t.class(Class::Control),
            UpDown {
                up: 490,
                down: 1_000
            }
        );
        let sum = Class::ALL.iter().map(|c| t.class(*c).total()).sum::<u64>();
        assert_eq!(sum, t.wire.total());
    }

    #[test]
    fn bytes_written_but_not_yet_sent_are_charged() {
        let waiting = tally((100, 1_000), 64_000);
        assert_eq!(
            waiting.charged(&waiting),
            67_200,
            "with the wire's share on top"
        );
        let sent = tally((900, 66_500), 64_000);
        assert_eq!(sent.charged(&sent), 67_400);
    }

    #[test]
    fn a_lossy_session_is_charged_for_the_resending_of_what_it_committed() {
        // A tenth of the bytes the hub sent were lost: committed image bytes will cost a ninth
        // more than their framing.
        let lossy = Tally {
            lost_down: 100,
            ..tally((100, 1_000), 64_000)
        };
        assert_eq!(lossy.charged(&lossy), 67_200 * 10 / 9);
        // A period that lost nothing itself is charged at the session's share: its committed
        // bytes are sent on the same path.
        let before = Tally {
            lost_down: 100,
            ..tally((50, 500), 0)
        };
        let period = lossy.since(&before);
        assert_eq!(period.lost_down, 0);
        assert_eq!(period.charged(&lossy), 67_200 * 10 / 9);
        assert_eq!(period.charged(&period), 67_200, "its own share alone");
        // Past half lost, the charge is that of half.
        let dire = Tally {
            lost_down: 1_000,
            ..lossy
        };
        assert_eq!(dire.charged(&dire), 67_200 * 2);
        let silent = Tally {
            lost_down: 0,
            ..tally((0, 0), 64_000)
        };
        assert_eq!(
            silent.charged(&silent),
            67_200,
            "nothing sent, nothing lost"
        );
    }

    #[test]
    fn a_budget_stops_earlier_on_a_lossy_session() {
        let allowance = Allowance {
            budget: 70_000,
            stored: 0,
            flushed: Flushed::default(),
        };
        let clean = tally((100, 1_000), 64_000);
        assert!(allowance.fits(&clean, 2_000));
        let lossy = Tally {
            lost_down: 100,
            ..clean
        };
        assert!(!allowance.fits(&lossy, 2_000));
    }

    #[test]
    fn an_allowance_holds_across_a_flush() {
        let at_start = tally((1_000, 1_000), 0);
        let allowance = Allowance {
            budget: 50_000,
            stored: 30_000,
            flushed: Flushed {
                at: at_start,
                owed: UpDown::default(),
            },
        };
        let later = tally((2_000, 12_000), 10_000);
        assert_eq!(allowance.used(&later), 30_000 + 12_000);
        assert!(allowance.fits(&later, 8_000));
        assert!(!allowance.fits(&later, 8_001));
        // A flush writes the session's 12,000 to the store and moves its marker: same sum.
        let flushed = Allowance {
            stored: 42_000,
            flushed: allowance.flushed.since(&later).1,
            ..allowance
        };
        assert_eq!(flushed.used(&later), allowance.used(&later));
    }

    /// Bytes recorded by a run of flushes of one session, from `tallies` (cumulative).
    fn recorded(tallies: &[Tally]) -> (u64, Flushed) {
        let mut flushed = Flushed::default();
        let mut sum = 0;
        for now in tallies {
            let (spent, next) = flushed.since(now);
            sum += Class::ALL
                .iter()
                .map(|c| spent.class(*c).total())
                .sum::<u64>();
            flushed = next;
        }
        (sum, flushed)
    }

    #[test]
    fn payload_counted_before_a_flush_and_sent_after_it_is_recorded_once() {
        // 64 KB of image bytes handed to the stream, 10 KB of them on the wire at the first
        // flush; by the second all of it is sent, with 3 KB of framing and acknowledgements.
        let handed = tally((500, 10_000), 64_000);
        let sent = tally((1_500, 67_000), 64_000);
        let (sum, flushed) = recorded(&[handed, sent]);
        assert_eq!(sum, sent.wire.total(), "each byte recorded once");
        assert_eq!(flushed.owed, UpDown::default(), "nothing left owed");

        let (first, after_first) = Flushed::default().since(&handed);
        assert_eq!(first.class(Class::Images).down, 64_000);
        assert_eq!(after_first.owed.down, 54_000, "recorded ahead of the wire");
        let (second, _) = after_first.since(&sent);
        assert_eq!(
            second.class(Class::Control).down,
            3_000,
            "only the framing is new control, not the 54 KB sent late"
        );
    }

    #[test]
    fn an_owed_payload_spans_flushes_that_send_less_than_it() {
        let handed = tally((100, 1_000), 100_000);
        let trickle = tally((200, 21_000), 100_000);
        let done = tally((300, 106_000), 100_000);
        let (sum, flushed) = recorded(&[handed, trickle, done]);
        assert_eq!(sum, done.wire.total());
        assert_eq!(flushed.owed, UpDown::default());
        let (_, after_trickle) = recorded(&[handed, trickle]);
        assert_eq!(after_trickle.owed.down, 79_000);
    }

    #[test]
    fn a_period_after_a_flush_is_not_charged_for_what_the_last_one_committed() {
        // The boundary flush recorded 64 KB of images, 54 KB of it still queued; the new
        // period's allowance starts from that flush and nothing new is committed.
        let handed = tally((500, 10_000), 64_000);
        let boundary = Flushed::default().since(&handed).1;
        let allowance = Allowance {
            budget: 50_000,
            stored: 0,
            flushed: boundary,
        };
        let queue_drained = tally((1_500, 67_000), 64_000);
        assert_eq!(
            allowance.used(&queue_drained),
            4_000,
            "the queued 54 KB belong to the last period; only the framing is new"
        );
        assert!(allowance.fits(&queue_drained, 46_000));
    }

    #[test]
    fn class_names_round_trip() {
        for class in Class::ALL {
            assert_eq!(Class::parse(class.as_str()), Some(class));
        }
        assert_eq!(Class::parse("video"), None);
    }
}
