//! How long a stopping hub asks agents to take coming back (the restart notice's spread), so they
//! arrive at a pace a hub sets up (`crate::hand_off` applies it to the agents each hub will take).
//! No I/O.
//!
//! An agent that will resume its TLS session (`crate::tickets`: a ticket under the keys the store
//! shares, from a handshake under [`TICKET_LIFETIME`] ago) costs less to set up than one that
//! comes back in full, so each kind is counted at its own rate. The spread starts when an agent
//! reads the close, which a stopping hub sends only after its last store write
//! (`RunningHub::shutdown`): before that order, the agents whose moment fell in the old hub's
//! 19 s stop at 100,000 found no hub and arrived together, more than the admission queue
//! absorbs (~8 s of set-ups); refused attempts spent their tickets and came back in full.
//!
//! [`TICKET_LIFETIME`]: crate::tickets::TICKET_LIFETIME

use std::time::Duration;

use outpost_protocol::wire::RestartNotice;

/// Full session set-ups a second a hub is assumed to manage while agents come back. 25,000
/// agents came online in 31–40 s on this 2-core machine with the load tool on the same cores
/// (`scale` bench), ~700 a second, and came back in 44 s with a 42 s spread at this rate;
/// 100,000 came back in 181 s (167 s spread). Sent back all at once, 20,000 were set up at 419 a
/// second in full.
pub const SETUPS_PER_SECOND: f64 = 600.0;
/// Resumed session set-ups a second. Sent back all at once, 20,000 agents were set up at 1,483
/// a second resuming (`scale --tickets store --reconnect-rate 100000`: 0.80 ms of hub CPU and
/// 0.66 of the load tool's a set-up, on the same two cores). A hub holding 100,000 is busier:
/// their check-ins take ~0.4 of a core on each side. Counted with a margin below the storm's
/// rate: an agent refused after waiting out the admission queue has spent a ticket, and one
/// refused twice comes back in full, at a third of the rate. 100,000 came back in 122 s at this
/// rate; at 1,200 they collapsed (hub and load tool each at a full core, a third of the fleet
/// not back after 7 minutes: BENCHMARKS.md, session 23).
pub const RESUMED_SETUPS_PER_SECOND: f64 = 1_000.0;
/// The shortest spread: a small fleet still arrives over a few seconds, not at once.
pub const MIN_SPREAD: Duration = Duration::from_secs(5);

/// Agents coming back: how many set up in full and how many resume.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Returning {
    /// Agents without a ticket the next hub opens.
    pub full: usize,
    /// Agents whose ticket the next hub opens.
    pub resumed: usize,
}

impl Returning {
    /// Each of `hubs` hubs' share, rounded up.
    pub fn per_hub(self, hubs: usize) -> Self {
        let hubs = hubs.max(1);
        Self {
            full: self.full.div_ceil(hubs),
            resumed: self.resumed.div_ceil(hubs),
        }
    }

    /// Both kinds.
    pub fn total(self) -> usize {
        self.full + self.resumed
    }
}

/// The spread in which one hub sets up `returning`: each kind at its rate, or every agent at
/// `rate` a second when one is configured (`serve --reconnect-rate`, hidden, for benches), within
/// [`MIN_SPREAD`] and [`RestartNotice::MAX_SPREAD`]: 5 s up to 3,000 agents in full, 42 s for
/// 25,000, 100 s for 100,000 resuming.
pub fn spread(returning: Returning, rate: Option<f64>) -> Duration {
    let seconds = match rate {
        Some(rate) => returning.total() as f64 / rate,
        None => {
            returning.full as f64 / SETUPS_PER_SECOND
                + returning.resumed as f64 / RESUMED_SETUPS_PER_SECOND
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
            full: n,
            resumed: 0,
        }
    }

    #[test]
    fn the_spread_follows_the_fleet_within_its_bounds() {
        assert_eq!(spread(full(0), None), MIN_SPREAD);
        assert_eq!(spread(full(200), None), MIN_SPREAD);
        assert_eq!(spread(full(25_000), None).as_millis(), 41_666);
        assert_eq!(spread(full(1_000_000), None), RestartNotice::MAX_SPREAD);
    }

    #[test]
    fn resuming_agents_count_at_their_own_rate() {
        let resumed = Returning {
            full: 0,
            resumed: 100_000,
        };
        assert_eq!(spread(resumed, None), Duration::from_secs(100));
        let mixed = Returning {
            full: 6_000,
            resumed: 10_000,
        };
        assert_eq!(spread(mixed, None), Duration::from_secs(20));
    }

    #[test]
    fn a_configured_rate_applies_instead() {
        assert_eq!(spread(full(100_000), Some(100_000.0)), MIN_SPREAD);
        let mixed = Returning {
            full: 10_000,
            resumed: 10_000,
        };
        assert_eq!(spread(mixed, Some(1_000.0)), Duration::from_secs(20));
    }

    #[test]
    fn each_hub_takes_its_share_rounded_up() {
        let returning = Returning {
            full: 5,
            resumed: 10,
        };
        assert_eq!(
            returning.per_hub(2),
            Returning {
                full: 3,
                resumed: 5
            }
        );
        assert_eq!(returning.per_hub(0), returning);
    }
}
