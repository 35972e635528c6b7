//! Adaptive check-in interval of one agent, without I/O.
//!
//! Check-ins are the NAT keepalive: if the agent's NAT forgets the mapping between two check-ins,
//! the next check-in arrives from a new port (a migration) and, until then, the hub could not reach
//! the device — a summon waits for the next check-in. So when a migration follows a silence of
//! about one interval, the binding expired in that silence: the binding timeout is shorter than the
//! silence, and the interval drops to [`SHORTEN`] of it (multiplicative decrease, converging in a
//! few expiries whatever the real timeout). While bindings hold, the interval grows back by
//! [`STEP`] every [`HOLD`] (additive increase), up to the hub's configured interval, so a device that
//! moved to a better network stops paying for its old one. Migrations after a short silence (a
//! retry burst, an address change mid-transfer) say nothing about the binding timeout and are
//! ignored.
//!
//! The session feeds [`CheckinTuner::handle_checkin`] with the arrival time of each check-in and
//! whether the remote address changed; the result goes into the ack's `interval_s`.

use std::time::Duration;

use tokio::time::Instant;

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
/// How long bindings must hold at an interval before it grows by [`STEP`].
pub const HOLD: Duration = Duration::from_secs(30 * 60);
/// How much the interval grows after each [`HOLD`] without an expiry.
pub const STEP: Duration = Duration::from_secs(2);

/// The check-in interval of one agent, adapted to how long its NAT keeps a binding.
#[derive(Clone, Debug)]
pub struct CheckinTuner {
    ceiling: Duration,
    interval: Duration,
    last_checkin: Option<Instant>,
    changed_at: Instant,
}

fn share(d: Duration, (num, den): (u32, u32)) -> Duration {
    d * num / den
}

impl CheckinTuner {
    /// A tuner starting at `ceiling`, the hub's configured interval, at `now`.
    pub fn new(ceiling: Duration, now: Instant) -> Self {
        Self {
            ceiling,
            interval: ceiling,
            last_checkin: None,
            changed_at: now,
        }
    }

    /// The interval the agent should use now.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// A check-in arrived at `now`; `migrated` says whether it came from a new address. Returns the
    /// interval to put in the ack.
    pub fn handle_checkin(&mut self, now: Instant, migrated: bool) -> Duration {
        let silence = self
            .last_checkin
            .replace(now)
            .map(|last| now.saturating_duration_since(last));
        match silence {
            Some(silence) if migrated && silence >= share(self.interval, REGULAR_GAP) => {
                // A hub configured below the floor (tests, a lab) keeps its own interval.
                let floor = FLOOR.min(self.ceiling);
                self.interval = share(silence.min(self.interval), SHORTEN).max(floor);
                self.changed_at = now;
            }
            _ if now.saturating_duration_since(self.changed_at) >= HOLD => {
                self.interval = (self.interval + STEP).min(self.ceiling);
                self.changed_at = now;
            }
            _ => {}
        }
        self.interval
    }

    /// The interval in whole seconds, as the ack carries it (at least one).
    pub fn interval_s(&self) -> u16 {
        u16::try_from(self.interval.as_secs().max(1)).unwrap_or(u16::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CEILING: Duration = Duration::from_secs(25);

    /// Check in every `tuner.interval()` for `count` check-ins, the NAT rebinding whenever the
    /// silence reaches `binding`; returns how many bindings expired.
    fn run(tuner: &mut CheckinTuner, now: &mut Instant, binding: Duration, count: usize) -> usize {
        let mut expired = 0;
        for _ in 0..count {
            *now += tuner.interval();
            let migrated = tuner.interval() >= binding;
            expired += usize::from(migrated);
            tuner.handle_checkin(*now, migrated);
        }
        expired
    }

    /// A virtual clock: time only moves by the intervals the tests add.
    fn start() -> (CheckinTuner, Instant) {
        let now = Instant::now();
        let mut tuner = CheckinTuner::new(CEILING, now);
        tuner.handle_checkin(now, false);
        (tuner, now)
    }

    #[test]
    fn a_binding_that_holds_keeps_the_configured_interval() {
        let (mut tuner, mut now) = start();
        let expired = run(&mut tuner, &mut now, Duration::from_secs(30), 1000);
        assert_eq!(expired, 0);
        assert_eq!(tuner.interval(), CEILING);
        assert_eq!(tuner.interval_s(), 25);
    }

    #[test]
    fn an_expired_binding_shortens_the_interval_below_the_nat_timeout() {
        let (mut tuner, mut now) = start();
        // A NAT that forgets after 12 s: 25 → 16.7 → 11.1 s, two expiries, then it holds.
        let expired = run(&mut tuner, &mut now, Duration::from_secs(12), 50);
        assert_eq!(expired, 2);
        assert!(
            tuner.interval() < Duration::from_secs(12),
            "{:?}",
            tuner.interval()
        );
        assert!(tuner.interval() >= FLOOR);
    }

    #[test]
    fn the_interval_never_drops_below_the_floor() {
        let (mut tuner, mut now) = start();
        run(&mut tuner, &mut now, Duration::from_secs(3), 50);
        assert_eq!(tuner.interval(), FLOOR);
    }

    #[test]
    fn a_hub_configured_below_the_floor_keeps_its_interval() {
        let mut now = Instant::now();
        let mut tuner = CheckinTuner::new(Duration::from_secs(2), now);
        tuner.handle_checkin(now, false);
        let expired = run(&mut tuner, &mut now, Duration::from_secs(1), 10);
        assert_eq!(expired, 10);
        assert_eq!(tuner.interval(), Duration::from_secs(2));
    }

    #[test]
    fn a_migration_after_a_short_silence_changes_nothing() {
        let (mut tuner, mut now) = start();
        now += Duration::from_secs(3);
        assert_eq!(tuner.handle_checkin(now, true), CEILING);
    }

    #[test]
    fn the_interval_grows_back_slowly_while_bindings_hold() {
        let (mut tuner, mut now) = start();
        run(&mut tuner, &mut now, Duration::from_secs(12), 50);
        let short = tuner.interval();
        // The device moved to a network whose NAT keeps bindings for a minute.
        while now + short < tuner.changed_at + HOLD {
            run(&mut tuner, &mut now, Duration::from_secs(60), 1);
            assert_eq!(
                tuner.interval(),
                short,
                "no growth before a full hold period"
            );
        }
        run(&mut tuner, &mut now, Duration::from_secs(60), 1);
        assert_eq!(tuner.interval(), short + STEP);
        // Six hours later it is back at the configured interval, never above.
        run(&mut tuner, &mut now, Duration::from_secs(60), 6 * 3600 / 11);
        assert_eq!(tuner.interval(), CEILING);
    }

    #[test]
    fn growing_back_into_an_expiry_costs_one_migration_per_few_hold_periods() {
        let (mut tuner, mut now) = start();
        // A NAT that forgets after 20 s, over a day: at most one expiry per hold period.
        let day = 24 * 3600 / 15;
        let expired = run(&mut tuner, &mut now, Duration::from_secs(20), day);
        assert!(
            expired <= (24 * 3600 / HOLD.as_secs()) as usize,
            "{expired}"
        );
        assert!(tuner.interval() < Duration::from_secs(20) + STEP);
    }
}
