//! How long a stopping hub asks its agents to take coming back (the restart notice's spread), so
//! they arrive at a pace the next hub sets up: each agent's share is one over the set-up rate of
//! its kind of handshake, and an agent holding a ticket the next hub opens (`crate::tickets`)
//! costs less than one that hands over certificates. No I/O: the caller counts the agents.

use std::time::Duration;

use outpost_protocol::wire::RestartNotice;

/// Full handshakes (certificates both ways) a second a hub sets up while its agents come back:
/// 25,000 agents came online in 31–40 s on this 2-core machine with the load tool on the same
/// cores (`scale` bench), ~700 a second, and came back in 44 s with a 42 s spread at this rate.
/// Sent back all at once they overflow the admission queue and the rate falls to ~420 a second
/// (BENCHMARKS.md, "Fast reconnects").
pub const FULL_SETUPS_PER_SECOND: f64 = 600.0;
/// Resumed handshakes (a ticket, no certificates) a second the notice assumes: for now the full
/// rate. 20,000 agents sent back at once, all resuming, were set up at 1,455 a second on this
/// machine (419 in full; `scale --tickets both --reconnect-rate 100000`, BENCHMARKS.md "Fast
/// reconnects"), but a spread sized at 1,400 a second failed at 100,000: the old hub took 20.6 s
/// to stop, every agent whose moment fell in that time (28,000) arrived at once when the new hub
/// started, overflowed the admission queue, spent its tickets on refused attempts and came back in
/// full; all were back after 510 s (181 s at 600). The spread starts when the close arrives, not
/// when the next hub listens, so the rate must keep `stop time × rate` within what the queue
/// absorbs (~8 s of set-ups) until the notice can say "not before the next hub is up".
pub const RESUMED_SETUPS_PER_SECOND: f64 = FULL_SETUPS_PER_SECOND;
/// The shortest spread: a small fleet still arrives over a few seconds, not at once.
pub const MIN_SPREAD: Duration = Duration::from_secs(5);

/// The agents a stopping hub sends back, by the handshake each will make.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Returning {
    /// Agents holding a ticket the next hub opens: their session is younger than a ticket's
    /// lifetime and the keys are the store's.
    pub resuming: usize,
    /// The others.
    pub full: usize,
}

/// The spread for `returning` agents: their set-up time at the measured rates (or at `rate` a
/// second for every agent, when one is configured), within [`MIN_SPREAD`] and
/// [`RestartNotice::MAX_SPREAD`].
pub fn spread(returning: Returning, rate: Option<f64>) -> Duration {
    let seconds = match rate {
        Some(rate) => (returning.resuming + returning.full) as f64 / rate,
        None => {
            returning.resuming as f64 / RESUMED_SETUPS_PER_SECOND
                + returning.full as f64 / FULL_SETUPS_PER_SECOND
        }
    };
    Duration::from_secs_f64(seconds)
        .max(MIN_SPREAD)
        .min(RestartNotice::MAX_SPREAD)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(n: usize) -> Returning {
        Returning {
            resuming: 0,
            full: n,
        }
    }

    fn resuming(n: usize) -> Returning {
        Returning {
            resuming: n,
            full: 0,
        }
    }

    #[test]
    fn the_spread_follows_the_fleet_within_its_bounds() {
        assert_eq!(spread(full(0), None), MIN_SPREAD);
        assert_eq!(spread(full(200), None), MIN_SPREAD);
        assert_eq!(spread(full(25_000), None).as_millis(), 41_666);
        assert_eq!(spread(full(1_000_000), None), RestartNotice::MAX_SPREAD);
        assert_eq!(spread(resuming(1_000_000), None), RestartNotice::MAX_SPREAD);
    }

    #[test]
    fn resuming_agents_count_at_their_own_rate() {
        let mixed = Returning {
            resuming: 60_000,
            full: 6_000,
        };
        let expected = 60_000.0 / RESUMED_SETUPS_PER_SECOND + 6_000.0 / FULL_SETUPS_PER_SECOND;
        assert_eq!(spread(mixed, None), Duration::from_secs_f64(expected));
    }

    #[test]
    fn a_configured_rate_applies_to_every_agent() {
        assert_eq!(spread(full(100_000), Some(100_000.0)), MIN_SPREAD);
        assert_eq!(
            spread(resuming(20_000), Some(1_000.0)),
            Duration::from_secs(20)
        );
    }
}
