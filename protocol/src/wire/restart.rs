//! What a stopping hub tells its agents: come back at a random moment within a spread.
//!
//! Without it, every agent of a restarted hub redials within its first backoff ceiling (a
//! second): 25,000 handshakes in one second against a hub that sets up ~600 a second on two
//! cores. Most waited out the hub's admission queue and were refused, their backoff grew, and
//! the last came back after 65–135 s (`scale` bench). The hub knows how many agents it holds, so
//! it sizes the spread to its own set-up rate, and the fleet arrives at a pace it can serve.
//!
//! The notice travels as the CONNECTION_CLOSE reason of [`CloseCode::Stopping`](super::CloseCode)
//! in plain text, readable in any log: `reconnect within 41667 ms`. The decoder is strict and
//! bounded, and clamps the spread so a hub can never park its agents for long.
//!
//! Where other hubs of the fleet are alive, a stopping hub hands its agents to them:
//! `reconnect elsewhere within 13889 ms` asks the agent to dial the other hubs of its list before
//! this one. The spread is then sized to the other hubs' set-up rate together. Only agents that
//! announced `Features::HUB_ADDRS` are sent it: an older agent's decoder knows only the first
//! form, and would take the second for a lost connection.

use std::time::Duration;

const PREFIX: &str = "reconnect within ";
const ELSEWHERE_PREFIX: &str = "reconnect elsewhere within ";
const SUFFIX: &str = " ms";
/// Most digits of a spread in milliseconds (a `u64` always parses from ten).
const MAX_DIGITS: usize = 10;
/// Longest reason read: the longer prefix, the digits and the suffix.
const MAX_REASON: usize = ELSEWHERE_PREFIX.len() + MAX_DIGITS + SUFFIX.len();

/// "Reconnect at a random moment within `spread`", to this hub or, `elsewhere`, to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartNotice {
    /// The window to draw the reconnect moment from, uniformly.
    pub spread: Duration,
    /// Dial the fleet's other hubs first: this one hands its agents to them.
    pub elsewhere: bool,
}

impl RestartNotice {
    /// The longest spread an agent honours: a fleet of 180,000 at 600 set-ups a second. At
    /// 120 s, 100,000 agents came back at 830 a second, more than the hub set up; the queue
    /// overflowed and the last agent was back after 312 s (`scale` bench).
    pub const MAX_SPREAD: Duration = Duration::from_secs(300);

    /// A notice for `spread`, clamped to [`Self::MAX_SPREAD`].
    pub fn new(spread: Duration) -> Self {
        Self {
            spread: spread.min(Self::MAX_SPREAD),
            elsewhere: false,
        }
    }

    /// A notice handing the agent to another hub within `spread` (clamped).
    pub fn elsewhere(spread: Duration) -> Self {
        Self {
            elsewhere: true,
            ..Self::new(spread)
        }
    }

    /// The close reason carrying this notice.
    pub fn encode(&self) -> String {
        let prefix = if self.elsewhere {
            ELSEWHERE_PREFIX
        } else {
            PREFIX
        };
        format!("{prefix}{}{SUFFIX}", self.spread.as_millis())
    }

    /// Read a close reason; `None` unless it is exactly a notice. A spread above
    /// [`Self::MAX_SPREAD`] is clamped.
    pub fn decode(reason: &[u8]) -> Option<Self> {
        if reason.len() > MAX_REASON {
            return None;
        }
        let text = std::str::from_utf8(reason).ok()?;
        let (rest, elsewhere) = match text.strip_prefix(ELSEWHERE_PREFIX) {
            Some(rest) => (rest, true),
            None => (text.strip_prefix(PREFIX)?, false),
        };
        let digits = rest.strip_suffix(SUFFIX)?;
        if digits.is_empty()
            || digits.len() > MAX_DIGITS
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let millis: u64 = digits.parse().ok()?;
        let spread = Duration::from_millis(millis);
        Some(if elsewhere {
            Self::elsewhere(spread)
        } else {
            Self::new(spread)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_survives_its_encoding() {
        let notice = RestartNotice::new(Duration::from_millis(41_667));
        assert_eq!(notice.encode(), "reconnect within 41667 ms");
        assert_eq!(
            RestartNotice::decode(notice.encode().as_bytes()),
            Some(notice)
        );
    }

    #[test]
    fn a_hand_off_to_another_hub_survives_its_encoding() {
        let notice = RestartNotice::elsewhere(Duration::from_millis(13_889));
        assert_eq!(notice.encode(), "reconnect elsewhere within 13889 ms");
        assert_eq!(
            RestartNotice::decode(notice.encode().as_bytes()),
            Some(notice)
        );
        let long = RestartNotice::decode(b"reconnect elsewhere within 9999999999 ms").unwrap();
        assert_eq!(long.spread, RestartNotice::MAX_SPREAD);
        assert!(long.elsewhere);
    }

    #[test]
    fn a_spread_beyond_the_maximum_is_clamped_both_ways() {
        let long = RestartNotice::new(Duration::from_secs(3600));
        assert_eq!(long.spread, RestartNotice::MAX_SPREAD);
        let decoded = RestartNotice::decode(b"reconnect within 9999999999 ms").unwrap();
        assert_eq!(decoded.spread, RestartNotice::MAX_SPREAD);
    }

    #[test]
    fn anything_else_is_not_a_notice() {
        for reason in [
            &b""[..],
            b"hub shutting down",
            b"reconnect within  ms",
            b"reconnect within -5 ms",
            b"reconnect within +5 ms",
            b"reconnect within 5 s",
            b"reconnect within 5",
            b"reconnect within 99999999999 ms",
            b"reconnect within 5 ms ",
            b"\xffreconnect within 5 ms",
            b"reconnect elsewhere within  ms",
            b"reconnect elsewhere  within 5 ms",
            b"reconnect elsewhere within 99999999999 ms",
            b"reconnect within elsewhere 5 ms",
        ] {
            assert_eq!(RestartNotice::decode(reason), None, "{reason:?}");
        }
    }
}
