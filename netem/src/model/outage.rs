//! Scheduled outages: the link carries nothing for a while, then comes back.
//!
//! Satellite links black out on handovers and in rain fade, cellular links in tunnels. A periodic
//! schedule reproduces the regular kind (LEO handovers every 15 s); a list of windows reproduces a
//! scripted scenario. Windows are half-open, `[start, start + duration)`, measured from the link's
//! epoch, so counts in tests are exact.

use std::time::Duration;

/// One outage window, relative to the link's epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutageWindow {
    /// When the outage starts.
    pub start: Duration,
    /// How long it lasts.
    pub duration: Duration,
}

impl OutageWindow {
    fn contains(&self, elapsed: Duration) -> bool {
        elapsed >= self.start && elapsed < self.start + self.duration
    }
}

/// A repeating outage: every `every`, for `duration`, starting `offset` into each period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodicOutage {
    /// Period of the schedule.
    pub every: Duration,
    /// Length of each outage.
    pub duration: Duration,
    /// Where in each period the outage starts.
    pub offset: Duration,
}

/// All scheduled outages of one direction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutageSchedule {
    /// The repeating outage, if any.
    pub periodic: Option<PeriodicOutage>,
    /// One-off windows.
    pub windows: Vec<OutageWindow>,
}

impl OutageSchedule {
    /// True if the link is down `elapsed` after its epoch.
    pub fn is_down(&self, elapsed: Duration) -> bool {
        if self.windows.iter().any(|w| w.contains(elapsed)) {
            return true;
        }
        let Some(p) = self.periodic else {
            return false;
        };
        if p.every.is_zero() || elapsed < p.offset {
            return false;
        }
        let into_period = (elapsed - p.offset).as_nanos() % p.every.as_nanos();
        into_period < p.duration.as_nanos()
    }
}
