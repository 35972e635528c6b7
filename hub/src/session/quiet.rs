//! The `quiet` check-in policy: a group whose devices check in minutes apart.
//!
//! An idle device costs what its check-ins cost: one exchange is three datagrams, 199 B on the
//! wire with IP/UDP headers, so 7.96 B/s at the default 25 s. A device that is almost never
//! summoned (a meter, a kiosk's spare) can check in every [`DEFAULT_QUIET_INTERVAL`] instead. Its
//! NAT binding then usually expires between check-ins: the next check-in comes from a new
//! address (QUIC validates the new path, which costs more than the exchange itself: see
//! BENCHMARKS.md, "A quieter idle"), and until it arrives the hub cannot reach the device, so a
//! summon waits for the next check-in — [`summon_wait`] — and the endpoint view says so
//! (`reachability`). The interval holds whatever the NAT does (`CheckinTuner::quiet`).
//!
//! Only an agent that announced `Features::QUIET` is given the long interval: an older one keeps
//! a 110 s idle timeout it cannot raise, and stays on the default policy.

use std::time::Duration;

use outpost_protocol::agent_session::MAX_CHECKIN_INTERVAL;

/// A quiet group's interval unless the admin names one: five minutes. Measured on the relay with
/// a 120 s NAT (`tests/tests/quiet_idle.rs`): one check-in after an expired binding costs the
/// exchange plus QUIC's path validation; see BENCHMARKS.md for the bytes and the B/s it gives.
pub const DEFAULT_QUIET_INTERVAL: Duration = Duration::from_secs(300);

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
    fn a_quiet_summon_waits_for_the_next_check_in() {
        let hub = Duration::from_secs(30);
        assert_eq!(summon_wait(hub, None), hub);
        assert_eq!(
            summon_wait(hub, Some(Duration::from_secs(300))),
            Duration::from_secs(315)
        );
    }
}
