//! Which devices have been offline longer than their threshold: a plain state machine with no I/O
//! and no clock of its own, fed the liveness flush's `connected` transitions.
//!
//! Why it looks like this: a device on a flaky link drops for a few seconds every minute, and an
//! alert for each drop is noise operators learn to ignore. So an outage raises `offline` only once
//! it has lasted the device's threshold, and `online` only for an outage that raised `offline`;
//! each outage raises at most one of each, however often the link flaps inside it.
//!
//! Cost: only devices that are down are held, each with one deadline in an ordered set, so a tick
//! touches the outages that are due and nothing else, whatever the fleet's size.
//!
//! Time is milliseconds since the Unix epoch, passed in by the caller (`handle_*(now, …)`), so
//! tests run a 30-minute outage in no time.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use outpost_protocol::EndpointId;

/// What the state machine decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The device has been offline for its whole threshold.
    Offline {
        /// Which device.
        endpoint: EndpointId,
        /// When the outage began (ms since the epoch).
        since_ms: i64,
    },
    /// A device that raised `Offline` is back.
    Online {
        /// Which device.
        endpoint: EndpointId,
        /// When the outage began (ms since the epoch).
        since_ms: i64,
        /// When it came back (ms since the epoch).
        back_ms: i64,
    },
}

/// One device that is down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outage {
    /// Down since `since_ms`; raises `Offline` at `deadline_ms` unless it returns first.
    Waiting { since_ms: i64, deadline_ms: i64 },
    /// Down since `since_ms`, and `Offline` was raised.
    Alerted { since_ms: i64 },
}

/// The devices that are down, and what was decided about them.
#[derive(Debug, Default)]
pub struct Outages {
    down: HashMap<EndpointId, Outage>,
    deadlines: BTreeSet<(i64, EndpointId)>,
    changes: VecDeque<Change>,
}

impl Outages {
    /// An outage that already raised `Offline` before the hub restarted: its `Online` is still owed.
    pub fn restore_alerted(&mut self, endpoint: EndpointId, since_ms: i64) {
        self.down.insert(endpoint, Outage::Alerted { since_ms });
    }

    /// The device went offline at `now_ms`; it raises `Offline` after `threshold` unless it
    /// returns. A device already down stays on its first outage's clock.
    pub fn handle_down(&mut self, now_ms: i64, endpoint: EndpointId, threshold: Duration) {
        if self.down.contains_key(&endpoint) {
            return;
        }
        let after = i64::try_from(threshold.as_millis()).unwrap_or(i64::MAX);
        let deadline_ms = now_ms.saturating_add(after);
        self.down.insert(
            endpoint,
            Outage::Waiting {
                since_ms: now_ms,
                deadline_ms,
            },
        );
        self.deadlines.insert((deadline_ms, endpoint));
    }

    /// The device is online at `now_ms`: an outage shorter than its threshold is forgotten, a
    /// longer one raises `Online`.
    pub fn handle_up(&mut self, now_ms: i64, endpoint: EndpointId) {
        match self.down.remove(&endpoint) {
            Some(Outage::Waiting { deadline_ms, .. }) => {
                self.deadlines.remove(&(deadline_ms, endpoint));
            }
            Some(Outage::Alerted { since_ms }) => self.changes.push_back(Change::Online {
                endpoint,
                since_ms,
                back_ms: now_ms,
            }),
            None => {}
        }
    }

    /// Raise `Offline` for every outage whose threshold has passed by `now_ms`.
    pub fn handle_timeout(&mut self, now_ms: i64) {
        while let Some(&(deadline_ms, endpoint)) = self.deadlines.first() {
            if deadline_ms > now_ms {
                break;
            }
            self.deadlines.pop_first();
            if let Some(Outage::Waiting { since_ms, .. }) = self.down.get(&endpoint).copied() {
                self.down.insert(endpoint, Outage::Alerted { since_ms });
                self.changes
                    .push_back(Change::Offline { endpoint, since_ms });
            }
        }
    }

    /// When [`Outages::handle_timeout`] next has something to do.
    pub fn poll_timeout(&self) -> Option<i64> {
        self.deadlines.first().map(|&(deadline_ms, _)| deadline_ms)
    }

    /// The next decision, in the order they were made.
    pub fn poll_change(&mut self) -> Option<Change> {
        self.changes.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000;
    const THRESHOLD: Duration = Duration::from_secs(20);

    fn drain(outages: &mut Outages) -> Vec<Change> {
        std::iter::from_fn(|| outages.poll_change()).collect()
    }

    /// Step the clock a second at a time to `until`, ticking whenever a deadline is due.
    fn run_until(outages: &mut Outages, now: &mut i64, until: i64) {
        while *now < until {
            *now += SEC;
            if outages.poll_timeout().is_some_and(|t| t <= *now) {
                outages.handle_timeout(*now);
            }
        }
    }

    fn run_for(outages: &mut Outages, now: &mut i64, ms: i64) {
        let until = *now + ms;
        run_until(outages, now, until);
    }

    #[test]
    fn an_outage_longer_than_the_threshold_raises_offline_once_then_online() {
        let mut outages = Outages::default();
        let id = EndpointId(7);
        let mut now = 1_000 * SEC;
        outages.handle_down(now, id, THRESHOLD);
        assert_eq!(outages.poll_timeout(), Some(now + 20 * SEC));
        run_until(&mut outages, &mut now, 1_019 * SEC);
        assert_eq!(drain(&mut outages), vec![]);
        run_until(&mut outages, &mut now, 1_000 * SEC + 30 * 60 * SEC);
        assert_eq!(
            drain(&mut outages),
            vec![Change::Offline {
                endpoint: id,
                since_ms: 1_000 * SEC
            }]
        );
        // Reported down again during the same outage: still the one alert.
        outages.handle_down(now, id, THRESHOLD);
        run_for(&mut outages, &mut now, 60 * SEC);
        assert_eq!(drain(&mut outages), vec![]);
        outages.handle_up(now, id);
        assert_eq!(
            drain(&mut outages),
            vec![Change::Online {
                endpoint: id,
                since_ms: 1_000 * SEC,
                back_ms: now
            }]
        );
        assert_eq!((outages.down.len(), outages.poll_timeout()), (0, None));
    }

    #[test]
    fn a_device_flapping_five_seconds_a_minute_raises_nothing_for_hours() {
        let mut outages = Outages::default();
        let id = EndpointId(1);
        let mut now = 0;
        for _ in 0..(3 * 60) {
            outages.handle_down(now, id, THRESHOLD);
            run_for(&mut outages, &mut now, 5 * SEC);
            outages.handle_up(now, id);
            run_for(&mut outages, &mut now, 55 * SEC);
        }
        assert_eq!(drain(&mut outages), vec![]);
        assert_eq!((outages.down.len(), outages.poll_timeout()), (0, None));
    }

    #[test]
    fn a_return_before_the_threshold_raises_no_online_and_clears_the_deadline() {
        let mut outages = Outages::default();
        outages.handle_down(0, EndpointId(1), THRESHOLD);
        outages.handle_down(SEC, EndpointId(2), THRESHOLD);
        outages.handle_up(19 * SEC, EndpointId(1));
        assert_eq!(outages.poll_timeout(), Some(21 * SEC));
        outages.handle_timeout(21 * SEC);
        assert_eq!(
            drain(&mut outages),
            vec![Change::Offline {
                endpoint: EndpointId(2),
                since_ms: SEC
            }]
        );
    }

    #[test]
    fn each_device_has_its_own_threshold_and_deadlines_fire_in_order() {
        let mut outages = Outages::default();
        outages.handle_down(0, EndpointId(1), Duration::from_secs(600));
        outages.handle_down(0, EndpointId(2), Duration::from_secs(30));
        outages.handle_timeout(601 * SEC);
        let offline: Vec<_> = drain(&mut outages)
            .into_iter()
            .map(|c| match c {
                Change::Offline { endpoint, .. } => endpoint,
                Change::Online { .. } => panic!("{c:?}"),
            })
            .collect();
        assert_eq!(offline, vec![EndpointId(2), EndpointId(1)]);
    }

    #[test]
    fn a_hundred_thousand_devices_dropping_at_once_alert_only_for_those_still_down() {
        let mut outages = Outages::default();
        for id in 0..100_000 {
            outages.handle_down(0, EndpointId(id), THRESHOLD);
        }
        for id in (0..100_000).step_by(2) {
            outages.handle_up(5 * SEC, EndpointId(id));
        }
        assert_eq!(outages.deadlines.len(), 50_000);
        outages.handle_timeout(19 * SEC);
        assert_eq!(outages.poll_change(), None);
        outages.handle_timeout(20 * SEC);
        let changes = drain(&mut outages);
        assert_eq!(changes.len(), 50_000);
        assert!(changes
            .iter()
            .all(|c| matches!(c, Change::Offline { endpoint, .. } if endpoint.0 % 2 == 1)));
        assert_eq!(outages.poll_timeout(), None);
    }

    #[test]
    fn a_restored_alert_owes_its_online_and_is_not_raised_again() {
        let mut outages = Outages::default();
        outages.restore_alerted(EndpointId(3), 5 * SEC);
        outages.handle_down(60 * SEC, EndpointId(3), THRESHOLD);
        outages.handle_timeout(3_600 * SEC);
        outages.handle_up(3_600 * SEC, EndpointId(3));
        assert_eq!(
            drain(&mut outages),
            vec![Change::Online {
                endpoint: EndpointId(3),
                since_ms: 5 * SEC,
                back_ms: 3_600 * SEC
            }]
        );
    }
}
