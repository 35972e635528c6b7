//! Adaptive check-in interval of one agent, without I/O.
//!
//! Check-ins are the NAT keepalive: if the agent's NAT forgets the mapping between two check-ins,
//! the next check-in arrives from a new port (a migration) and, until then, the hub could not reach
//! the device — a summon waits for the next check-in. So when a migration follows a silence of
//! about one interval, the binding expired in that silence: the binding timeout is shorter than the
//! silence, and the interval drops to [`SHORTEN`] of it (multiplicative decrease, converging in a
//! few expiries whatever the real timeout). While bindings hold, the interval grows back by
//! [`STEP`] every hold period (additive increase) up to the hub's configured interval, so a device
//! that moved to a better network stops paying for its old one. Migrations after a short silence
//! (a retry burst, an address change mid-transfer) say nothing about the binding timeout and are
//! ignored.
//!
//! **Past the configured interval, by probing.** Most NATs keep a UDP binding far longer than the
//! 30 s we design for (carriers 60 s to several minutes), and at 198 B per check-in exchange every
//! second of interval is worth having: 7.96 B/s at 25 s, 3.96 B/s at 50 s (measured on the relay
//! with a 120 s NAT, `tests/tests/quiet_idle.rs`). The hub cannot read the
//! NAT's timeout, so it measures it: after a hold period at the configured interval it asks, in
//! one ack, for a longer silence (the probe, [`Tuned::Probing`]). The check-in that ends that
//! silence says whether the binding held: from the same address, it did, and the interval becomes
//! [`SAFE`] of the longest silence proven to hold, up to the cap ([`TunerTiming::cap`]); from a
//! new one, it did not, the interval stays where it was and the next probe aims between the
//! longest silence that held and the shortest that broke. The probe is the check-in itself, so it
//! costs no byte of its own; a failed one costs one migration (QUIC's path validation) and leaves
//! the device unreachable from the binding's expiry to the probe's check-in, once per hold period.
//!
//! **Fixed, for a `quiet` device** ([`CheckinTuner::quiet`]): the interval is the group's, the
//! binding is expected to expire between check-ins, and neither migrations nor probes change it.
//!
//! The session feeds [`CheckinTuner::handle_checkin`] with the arrival time of each check-in and
//! whether the remote address changed; the ack carries [`CheckinTuner::interval_s`], and the
//! returned [`Tuned`] is what the session logs.

use std::time::Duration;

use outpost_protocol::EndpointId;
use outpost_transport::profile::{DEFAULT_IDLE_TIMEOUT, OUTAGE_TO_RIDE_OUT};
use tokio::time::Instant;
use tracing::info;

/// The shortest interval the hub asks for. Each check-in costs three datagrams, 115 B of UDP payload
/// and 199 B with IP/UDP headers; every 10 s that is 19.9 B/s, the whole idle budget of an agent
/// (20 B/s). A NAT that forgets faster than that is better served by the agent's own reconnect.
pub const FLOOR: Duration = Duration::from_secs(10);
/// A migration counts as an expired binding when the silence before it was at least this share of
/// the interval: a regular gap, not a retry a few seconds after a lost check-in.
const REGULAR_GAP: (u32, u32) = (3, 4);
/// After an expiry the interval becomes this share of the silence that broke the binding: a third
/// of margin below a timeout known to be shorter than that silence.
const SHORTEN: (u32, u32) = (2, 3);
/// After a probe held, the interval becomes this share of the longest silence proven to hold: the
/// same third of margin, so one lost check-in's retries (a few seconds) still land in time.
pub const SAFE: (u32, u32) = (2, 3);
/// How long bindings must hold at an interval before it grows by [`STEP`] or is probed past.
pub const HOLD: Duration = Duration::from_secs(30 * 60);
/// How much the interval grows after each [`HOLD`] without an expiry, below the configured one.
pub const STEP: Duration = Duration::from_secs(2);
/// The longest interval probing grows to: the connection's idle timeout less the outage it must
/// ride out (110 s − 60 s = 50 s), so a device that checks in at the cap and then loses its link
/// for a minute still finds its connection. At 198 B per exchange that is 3.96 B/s.
pub const GROWTH_CAP: Duration = DEFAULT_IDLE_TIMEOUT.saturating_sub(OUTAGE_TO_RIDE_OUT);

/// How fast the tuner moves: production values by default; `serve --checkin-hold` shortens the
/// hold for a lab or a test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunerTiming {
    /// How long bindings must hold at an interval before it grows or is probed past.
    pub hold: Duration,
    /// The longest interval probing may reach.
    pub cap: Duration,
}

impl Default for TunerTiming {
    fn default() -> Self {
        Self {
            hold: HOLD,
            cap: GROWTH_CAP,
        }
    }
}

/// What a new session's check-ins start from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckinSetup {
    /// The hub's configured interval.
    pub interval: Duration,
    /// How fast the tuner moves.
    pub timing: TunerTiming,
    /// The device's group is on the `quiet` policy with this interval.
    pub quiet: Option<Duration>,
}

/// What a check-in changed, for the session's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tuned {
    /// Nothing.
    Kept,
    /// A binding expired within a regular gap: the interval dropped.
    Shortened {
        /// The silence that broke it.
        silence: Duration,
        /// The new interval.
        to: Duration,
    },
    /// Bindings held for a hold period: the interval grew by [`STEP`] toward the configured one.
    Grew {
        /// The new interval.
        to: Duration,
    },
    /// The ack asks for this silence, to see whether the binding holds that long.
    Probing {
        /// The silence asked for.
        silence: Duration,
    },
    /// The binding held through the probe's silence.
    ProbeHeld {
        /// The silence that held.
        silence: Duration,
        /// The interval from now on.
        to: Duration,
    },
    /// The binding expired within the probe's silence: the interval stays.
    ProbeFailed {
        /// The silence that broke it.
        silence: Duration,
        /// The interval from now on (the one before the probe).
        to: Duration,
    },
}

impl Tuned {
    /// Log a change (the session's decisions are visible in the hub's log; `Kept` is silent).
    pub fn log(self, endpoint: EndpointId, interval_s: u16) {
        match self {
            Self::Kept => {}
            Self::Probing { silence } => info!(%endpoint, ?silence, interval_s,
                "check-in probe: asking for a longer silence, to see whether the NAT binding holds"),
            Self::ProbeHeld { silence, to } => info!(%endpoint, ?silence, ?to, interval_s,
                "check-in probe: the NAT binding held"),
            Self::ProbeFailed { silence, to } => info!(%endpoint, ?silence, ?to, interval_s,
                "check-in probe: the NAT binding expired"),
            Self::Shortened { silence, to } => info!(%endpoint, ?silence, ?to, interval_s,
                "check-in interval shortened: the NAT binding expired between check-ins"),
            Self::Grew { to } => info!(%endpoint, ?to, interval_s, "check-in interval grew back"),
        }
    }
}

/// How probing went in one session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeCounts {
    /// Probes started.
    pub sent: u32,
    /// Probes whose binding held.
    pub held: u32,
    /// Probes whose binding expired (each cost one migration).
    pub failed: u32,
}

/// The check-in interval of one agent, adapted to how long its NAT keeps a binding.
#[derive(Clone, Debug)]
pub struct CheckinTuner {
    ceiling: Duration,
    timing: TunerTiming,
    /// Fixed interval: a `quiet` device.
    quiet: bool,
    interval: Duration,
    /// The silence the last ack asked for, while a probe runs.
    probe: Option<Duration>,
    /// The longest silence after which a check-in came from the same address.
    proven: Duration,
    /// The shortest silence after which a check-in came from a new address.
    broke: Option<Duration>,
    last_checkin: Option<Instant>,
    changed_at: Instant,
    counts: ProbeCounts,
}

fn share(d: Duration, (num, den): (u32, u32)) -> Duration {
    d * num / den
}

impl CheckinTuner {
    /// A tuner starting at `ceiling`, the hub's configured interval, at `now`.
    pub fn new(ceiling: Duration, timing: TunerTiming, now: Instant) -> Self {
        Self {
            ceiling,
            timing,
            quiet: false,
            interval: ceiling,
            probe: None,
            proven: Duration::ZERO,
            broke: None,
            last_checkin: None,
            changed_at: now,
            counts: ProbeCounts::default(),
        }
    }

    /// A fixed `interval` (a `quiet` device): bindings may expire between check-ins.
    pub fn quiet(interval: Duration, now: Instant) -> Self {
        Self {
            quiet: true,
            ..Self::new(interval, TunerTiming::default(), now)
        }
    }

    /// The interval the agent should use now (a probe's silence while one runs).
    pub fn interval(&self) -> Duration {
        self.probe.unwrap_or(self.interval)
    }

    /// Whether the interval is fixed and the binding may expire between check-ins.
    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// Probes so far.
    pub fn probe_counts(&self) -> ProbeCounts {
        self.counts
    }

    /// A check-in arrived at `now`; `migrated` says whether it came from a new address. The
    /// interval for the ack is [`Self::interval_s`] afterwards.
    pub fn handle_checkin(&mut self, now: Instant, migrated: bool) -> Tuned {
        let last = self.last_checkin.replace(now);
        let Some(silence) = last.map(|last| now.saturating_duration_since(last)) else {
            return Tuned::Kept;
        };
        if self.quiet || silence < share(self.interval(), REGULAR_GAP) {
            // Quiet: expiries are expected. A short silence: a retry or an address change.
            return Tuned::Kept;
        }
        if self.probe.take().is_some() {
            return self.end_probe(now, silence, migrated);
        }
        if migrated {
            // A hub configured below the floor (tests, a lab) keeps its own interval.
            let floor = FLOOR.min(self.ceiling);
            self.interval = share(silence.min(self.interval), SHORTEN).max(floor);
            self.note_broke(silence);
            self.proven = Duration::ZERO;
            self.changed_at = now;
            return Tuned::Shortened {
                silence,
                to: self.interval,
            };
        }
        self.proven = self.proven.max(silence);
        if now.saturating_duration_since(self.changed_at) < self.timing.hold {
            return Tuned::Kept;
        }
        self.changed_at = now;
        if self.interval < self.ceiling {
            self.interval = (self.interval + STEP).min(self.ceiling);
            return Tuned::Grew { to: self.interval };
        }
        match self.next_probe() {
            Some(probe) => {
                self.probe = Some(probe);
                self.counts.sent += 1;
                Tuned::Probing { silence: probe }
            }
            None => Tuned::Kept,
        }
    }

    /// Start over from `now` after a quiet spell: the silence before the next check-in was the
    /// quiet interval's, and says nothing about the binding at this one.
    pub fn restart(&mut self, now: Instant) {
        self.last_checkin = None;
        self.probe = None;
        self.changed_at = now;
    }

    /// The interval in whole seconds, as the ack carries it (at least one).
    pub fn interval_s(&self) -> u16 {
        u16::try_from(self.interval().as_secs().max(1)).unwrap_or(u16::MAX)
    }

    fn end_probe(&mut self, now: Instant, silence: Duration, migrated: bool) -> Tuned {
        self.changed_at = now;
        if migrated {
            self.note_broke(silence);
            self.counts.failed += 1;
            return Tuned::ProbeFailed {
                silence,
                to: self.interval,
            };
        }
        self.counts.held += 1;
        self.proven = self.proven.max(silence);
        self.interval = self
            .interval
            .max(share(self.proven, SAFE).min(self.timing.cap));
        Tuned::ProbeHeld {
            silence,
            to: self.interval,
        }
    }

    fn note_broke(&mut self, silence: Duration) {
        self.broke = Some(self.broke.map_or(silence, |b| b.min(silence)));
    }

    /// The silence to ask for next: the one that would make the cap safe, or, once a silence is
    /// known to break the binding, halfway between the longest that held and that one; none when
    /// a hold there would not raise the interval by a [`STEP`].
    fn next_probe(&self) -> Option<Duration> {
        let (num, den) = SAFE;
        let for_cap = self.timing.cap * den / num;
        let held = self.proven.max(self.interval);
        let probe = match self.broke {
            Some(broke) if broke > held => ((held + broke) / 2).min(for_cap),
            Some(_) => return None,
            None => for_cap,
        };
        (share(probe, SAFE) >= self.interval + STEP).then_some(probe)
    }
}

#[cfg(test)]
mod tests;
