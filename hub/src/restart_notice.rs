//! How long a stopping hub asks agents to take coming back (the restart notice's spread), so they
//! arrive at a pace a hub sets up (`crate::hand_off` applies it to the agents each hub will take).
//! No I/O.
//!
//! Resumed set-ups (`crate::tickets`) are ~3.5 times as fast as full ones in a storm, yet the
//! spread counts every agent at the full rate, [`SETUPS_PER_SECOND`]: a spread sized to the
//! resumed rate failed at 100,000 agents (BENCHMARKS.md, "Fast reconnects"). The spread starts
//! when an agent receives the close, not when the next hub listens, so the agents whose moment
//! falls in the old hub's stop (20 s at 100,000: its last liveness write) arrive together;
//! `stop time × rate` of them must fit what the admission queue absorbs (~8 s of set-ups), or
//! refused attempts spend their tickets and come back in full. A notice that says "not before the
//! next hub is up" would let the resumed rate count.

use std::time::Duration;

use outpost_protocol::wire::RestartNotice;

/// Session set-ups a second a hub is assumed to manage while agents come back. Full handshakes:
/// 25,000 agents came online in 31–40 s on this 2-core machine with the load tool on the same
/// cores (`scale` bench), ~700 a second, and came back in 44 s with a 42 s spread at this rate;
/// 100,000 came back in 181 s (167 s spread), and 187 s resuming. Sent back all at once, 20,000
/// were set up at 419 a second in full and 1,455 resuming; a 71 s spread (1,400 a second) for
/// 100,000 resuming agents took 510 s.
pub const SETUPS_PER_SECOND: f64 = 600.0;
/// The shortest spread: a small fleet still arrives over a few seconds, not at once.
pub const MIN_SPREAD: Duration = Duration::from_secs(5);

/// The spread in which one hub sets up `agents`: at [`SETUPS_PER_SECOND`], or at `rate` a second
/// when one is configured (`serve --reconnect-rate`, hidden, for benches), within [`MIN_SPREAD`]
/// and [`RestartNotice::MAX_SPREAD`]: 5 s up to 3,000 agents, 42 s for 25,000.
pub fn spread(agents: usize, rate: Option<f64>) -> Duration {
    Duration::from_secs_f64(agents as f64 / rate.unwrap_or(SETUPS_PER_SECOND))
        .max(MIN_SPREAD)
        .min(RestartNotice::MAX_SPREAD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spread_follows_the_fleet_within_its_bounds() {
        assert_eq!(spread(0, None), MIN_SPREAD);
        assert_eq!(spread(200, None), MIN_SPREAD);
        assert_eq!(spread(25_000, None).as_millis(), 41_666);
        assert_eq!(spread(1_000_000, None), RestartNotice::MAX_SPREAD);
    }

    #[test]
    fn a_configured_rate_applies_instead() {
        assert_eq!(spread(100_000, Some(100_000.0)), MIN_SPREAD);
        assert_eq!(spread(20_000, Some(1_000.0)), Duration::from_secs(20));
    }
}
