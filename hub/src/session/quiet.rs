//! The `quiet` check-in policy: a group whose devices check in minutes apart.
//!
//! An idle device costs what its check-ins cost. Measured on the relay (`tests/tests/quiet_idle.rs`,
//! BENCHMARKS.md "A quieter idle"), headers included: an exchange whose NAT binding held is three
//! datagrams, 198 B; one whose binding expired comes from a new port, and QUIC validates the new
//! path — a PATH_CHALLENGE and a PATH_RESPONSE each padded to 1,200 B (RFC 9000, 8.2) — so it
//! costs 2,737 B in six datagrams. At the default 25 s that is 7.96 B/s; the adaptive interval
//! brings it to 3.96 B/s where the NAT holds a binding for 75 s. A device that is almost never
//! summoned (a meter, a kiosk's spare) can go further on this policy, at the price of reachability:
//! its NAT binding usually expires between check-ins, and until the next one arrives the hub cannot
//! reach the device, so a summon waits for it — [`summon_wait`] — and the endpoint view says so
//! (`reachability`). The interval holds whatever the NAT does (`CheckinTuner::quiet`).
//!
//! [`DEFAULT_QUIET_INTERVAL`] is chosen so that the worst case (every check-in after an expired
//! binding) stays ≤ 1 B/s. Where the NAT keeps bindings for minutes an admin can set a few minutes
//! (`--interval 5m`: 198 B / 300 s = 0.66 B/s); under a 120 s NAT five minutes would cost
//! 2,737 B / 300 s = 9.1 B/s, more than the adaptive default.
//!
//! Only an agent that announced `Features::QUIET` is given the long interval: an older one keeps
//! a 110 s idle timeout it cannot raise, and stays on the default policy.

use std::time::Duration;

use outpost_protocol::agent_session::MAX_CHECKIN_INTERVAL;
use outpost_protocol::job::Features;
use tokio::time::Instant;

use super::{CheckinTuner, HubSession};

/// The bytes on the wire (IP/UDP headers included) of one check-in whose NAT binding expired
/// since the last: the exchange and QUIC's path validation, measured on the relay with a 120 s
/// NAT (2,737 B in six datagrams; 2,791 B in seven on a loaded machine), with room for one more
/// retransmission (`tests/tests/quiet_idle.rs` asserts it stays under this).
pub const EXPIRED_CHECKIN_BYTES: u64 = 3_000;

/// A quiet group's interval unless the admin names one: 50 minutes, so that even a check-in after
/// an expired binding every time costs ≤ 1 B/s ([`EXPIRED_CHECKIN_BYTES`] / 3,000 s; measured
/// 0.91–0.93 B/s, and 0.07 B/s where the binding holds). A summon waits up to that long; a few minutes suit groups behind NATs that keep
/// bindings that long (see the module's figures).
pub const DEFAULT_QUIET_INTERVAL: Duration = Duration::from_secs(50 * 60);

/// The intervals an admin may set: from a minute (shorter is what the adaptive default reaches
/// on its own) to the longest an agent takes.
pub const QUIET_RANGE: (Duration, Duration) = (Duration::from_secs(60), MAX_CHECKIN_INTERVAL);

/// What a summon of a quiet device may wait beyond its interval: the check-in's own trip and the
/// path validation that follows it on a slow link.
pub const SUMMON_SLACK: Duration = Duration::from_secs(15);

/// How long a summon of a device with `interval` waits, given the hub's `--summon-timeout`: a
/// quiet device until its next check-in has come and answered.
pub fn summon_wait(hub: Duration, quiet_interval: Option<Duration>) -> Duration {
    quiet_interval.map_or(hub, |interval| hub.max(interval + SUMMON_SLACK))
}

/// Why an interval was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuietIntervalError {
    /// Not a duration.
    #[error("interval {0:?} is not a duration such as 5m or 300s")]
    NotADuration(String),
    /// Outside [`QUIET_RANGE`].
    #[error("interval {0:?} is out of range: from 1m to 1h")]
    OutOfRange(String),
}

/// An interval such as `5m`, within [`QUIET_RANGE`]; [`DEFAULT_QUIET_INTERVAL`] if none.
pub fn parse_interval(text: Option<&str>) -> Result<Duration, QuietIntervalError> {
    let Some(text) = text else {
        return Ok(DEFAULT_QUIET_INTERVAL);
    };
    let interval = humantime::parse_duration(text.trim())
        .map_err(|_| QuietIntervalError::NotADuration(text.to_owned()))?;
    let (min, max) = QUIET_RANGE;
    if interval < min || interval > max {
        return Err(QuietIntervalError::OutOfRange(text.to_owned()));
    }
    Ok(interval)
}

/// The session's side of the policy: what the hub offers, what the agent takes, and what a
/// longer interval changes (liveness bound, summon wait).
impl<W> HubSession<W> {
    /// The device's group is on the `quiet` policy with `interval`, or (`None`) not: read at the
    /// session's start, and again when an admin changes the policy. Returns the quiet interval
    /// if the session becomes quiet now (the agent announced `Features::QUIET`), for the
    /// connection's idle timeout. A withdrawn policy ends at the next check-in, whose ack tells
    /// the agent the adaptive interval again: until then it is silent for up to the quiet one.
    pub fn offer_quiet(&mut self, now: Instant, interval: Option<Duration>) -> Option<Duration> {
        self.quiet_offer = interval;
        let announced = self.jobs.features();
        self.handle_quiet(now, announced)
    }

    /// The agent announced `features` at `now`: if it takes long intervals and its group is
    /// quiet, its interval becomes the group's from the next ack on. Returns that interval, for
    /// the connection's idle timeout.
    pub fn handle_quiet(&mut self, now: Instant, features: Features) -> Option<Duration> {
        let interval = self
            .quiet_offer
            .filter(|_| features.contains(Features::QUIET))?;
        if self.tuner.is_quiet() && self.tuner.interval() == interval {
            return None;
        }
        let quiet = CheckinTuner::quiet(interval, now);
        let adaptive = std::mem::replace(&mut self.tuner, quiet);
        if !adaptive.is_quiet() {
            self.adaptive = Some(Box::new(adaptive));
        }
        Some(interval)
    }

    /// At a check-in: back to the adaptive tuner if the policy was withdrawn.
    pub(super) fn end_quiet_if_withdrawn(&mut self, now: Instant) {
        if self.quiet_offer.is_none() && self.tuner.is_quiet() {
            if let Some(mut adaptive) = self.adaptive.take() {
                adaptive.restart(now);
                self.tuner = *adaptive;
            }
        }
    }

    /// How long a summon waits, given the hub's `--summon-timeout`: a quiet device's until its
    /// next check-in ([`summon_wait`]).
    pub fn summon_wait(&self, hub: Duration) -> Duration {
        summon_wait(hub, self.is_quiet().then(|| self.tuner.interval()))
    }

    /// The probes of this session's NAT binding, the adaptive tuner's while quiet.
    pub fn probe_counts(&self) -> super::interval::ProbeCounts {
        self.adaptive
            .as_ref()
            .map_or(self.tuner.probe_counts(), |tuner| tuner.probe_counts())
    }

    /// The interval this session's agent was last told (a probe's silence while one runs).
    pub fn checkin_interval(&self) -> Duration {
        self.tuner.interval()
    }

    /// Whether the device is on the `quiet` policy: its NAT binding may have expired since its
    /// last check-in, so a summon may wait for the next one.
    pub fn is_quiet(&self) -> bool {
        self.tuner.is_quiet()
    }

    /// This session's liveness bound: the hub's, or two of its own intervals plus ten seconds
    /// when that is longer (a grown or quiet interval), so a device is not shown offline for
    /// checking in as often as it was told to.
    pub fn stale_after(&self, hub: Duration) -> Duration {
        hub.max(self.tuner.interval() * 2 + Duration::from_secs(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_a_minute_to_an_hour_and_five_minutes_by_default() {
        assert_eq!(parse_interval(None), Ok(DEFAULT_QUIET_INTERVAL));
        assert_eq!(parse_interval(Some("4m")), Ok(Duration::from_secs(240)));
        assert_eq!(
            parse_interval(Some("soon")),
            Err(QuietIntervalError::NotADuration("soon".into()))
        );
        assert_eq!(
            parse_interval(Some("30s")),
            Err(QuietIntervalError::OutOfRange("30s".into()))
        );
        assert_eq!(
            parse_interval(Some("2h")),
            Err(QuietIntervalError::OutOfRange("2h".into()))
        );
    }

    #[test]
    fn the_default_quiet_interval_costs_at_most_a_byte_a_second_whatever_the_nat() {
        assert!(EXPIRED_CHECKIN_BYTES <= DEFAULT_QUIET_INTERVAL.as_secs());
        assert!(DEFAULT_QUIET_INTERVAL <= QUIET_RANGE.1);
    }

    fn session(now: Instant, offer: Option<Duration>) -> HubSession<()> {
        let remote = std::net::SocketAddr::from(([192, 0, 2, 1], 1000));
        let interval = Duration::from_secs(25);
        let tuner = CheckinTuner::new(
            interval,
            super::super::interval::TunerTiming::default(),
            now,
        );
        let mut session = HubSession::new(
            outpost_protocol::EndpointId(7),
            now,
            remote,
            false,
            0,
            tuner,
        );
        assert_eq!(
            session.offer_quiet(now, offer),
            None,
            "no features announced yet"
        );
        session
    }

    #[test]
    fn only_an_agent_that_takes_long_intervals_is_put_on_its_groups_quiet_policy() {
        let now = Instant::now();
        let five = Duration::from_secs(300);
        let hub = Duration::from_secs(60);
        let mut old = session(now, Some(five));
        assert_eq!(old.handle_quiet(now, Features::JOBS), None);
        assert!(!old.is_quiet());
        assert_eq!(
            old.summon_wait(Duration::from_secs(15)),
            Duration::from_secs(15)
        );

        let mut new = session(now, Some(five));
        assert_eq!(new.handle_quiet(now, Features::QUIET), Some(five));
        assert!(new.is_quiet());
        assert_eq!(new.checkin_interval(), five);
        assert_eq!(new.stale_after(hub), Duration::from_secs(610));
        assert_eq!(
            new.summon_wait(Duration::from_secs(15)),
            five + SUMMON_SLACK
        );

        let mut elsewhere = session(now, None);
        assert_eq!(elsewhere.handle_quiet(now, Features::QUIET), None);
        assert_eq!(elsewhere.stale_after(hub), hub);
    }

    #[test]
    fn an_admin_changes_the_policy_of_a_connected_device() {
        let start = Instant::now();
        let addr = std::net::SocketAddr::from(([192, 0, 2, 1], 1000));
        let wall = std::time::SystemTime::UNIX_EPOCH;
        let five = Duration::from_secs(300);
        let mut s = session(start, None);
        s.handle_features(start, Features::QUIET).unwrap();
        assert_eq!(s.handle_checkin(start, wall, addr).interval_s, 25);
        // Quiet from now on: the next ack says so.
        assert_eq!(s.offer_quiet(start, Some(five)), Some(five));
        assert_eq!(s.offer_quiet(start, Some(five)), None, "no change");
        let at = start + Duration::from_secs(25);
        assert_eq!(s.handle_checkin(at, wall, addr).interval_s, 300);
        // Withdrawn: still quiet (the agent is silent for up to five minutes) until the next
        // check-in, whose ack gives the adaptive interval back.
        assert_eq!(s.offer_quiet(at, None), None);
        assert!(s.is_quiet());
        assert_eq!(
            s.stale_after(Duration::from_secs(60)),
            Duration::from_secs(610)
        );
        let at = at + five;
        assert_eq!(s.handle_checkin(at, wall, addr).interval_s, 25);
        assert!(!s.is_quiet());
    }

    #[test]
    fn a_quiet_summon_waits_for_the_next_check_in() {
        let hub = Duration::from_secs(30);
        assert_eq!(summon_wait(hub, None), hub);
        assert_eq!(
            summon_wait(hub, Some(Duration::from_secs(300))),
            Duration::from_secs(315)
        );
    }
}
