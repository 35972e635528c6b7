//! Alerts by webhook: a device offline longer than its group's threshold (and back), a rollout
//! paused or failed, a job finished, a device certificate about to expire, each POSTed as signed
//! JSON to the webhooks subscribed to it.
//!
//! Why this shape:
//! - The paths that raise events (the liveness flush, the rollout and job tickers) must never
//!   wait on a receiver or the disk for an alert, so they only hand it to [`Alerts`]: a bounded
//!   in-memory inbox behind a short lock, drained by one task ([`watch`]). Liveness transitions
//!   are coalesced per device (the latest state wins), so that part is bounded by the fleet;
//!   other events beyond [`MAX_INBOX`] are dropped with a warning.
//! - Offline detection reads the `connected` transitions the liveness flush writes anyway and
//!   keeps only the devices that are down ([`outages::Outages`], a state machine with no I/O), so
//!   it costs nothing per healthy device at 100,000 devices: no timer per device, no scan.
//! - Every event is written to the store as a delivery row per webhook before anything is sent
//!   ([`crate::store::webhooks`]); one task ([`deliver`]) sends what is due and records each
//!   attempt, retrying with capped exponential backoff ([`sign`]) for up to a day. A restart
//!   loses nothing, and `webhook deliveries` shows every attempt's outcome.

mod deliver;
pub mod outages;
pub mod sign;
mod watch;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use outpost_protocol::EndpointId;
use tokio::sync::Notify;
use tracing::warn;

use crate::store::LivenessUpdate;

pub(crate) use deliver::run_deliveries;
pub(crate) use watch::run_watch;

/// Events waiting for the watch task beyond this are dropped (a receiver that is down does not
/// hold them: they wait in the store, not here).
pub const MAX_INBOX: usize = 4_096;

/// Deliveries pending across webhooks beyond this are refused and logged: a receiver down for a
/// day behind a flapping fleet cannot fill the hub's disk.
pub const MAX_PENDING_DELIVERIES: u64 = 100_000;

/// A device offline this long raises `offline` unless its group (or the stored default) says
/// otherwise.
pub const DEFAULT_OFFLINE_AFTER: Duration = Duration::from_secs(10 * 60);

/// A device certificate expiring within this raises `cert-expiring` (once per expiry and
/// device): a month leaves time to reach a device that stopped renewing.
pub const CERT_WARNING: Duration = Duration::from_secs(30 * 24 * 3_600);

/// Thresholds an operator may set: at least a second, at most a week.
pub const THRESHOLD_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(7 * 24 * 3600));

/// The kinds of event a webhook subscribes to, by their names on the wire.
pub const EVENT_NAMES: &[&str] = &["offline", "online", "rollout", "job", "cert-expiring"];

/// Something a webhook may be told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A rollout paused: by an admin, or because too many devices failed.
    Rollout {
        /// The rollout.
        rollout: i64,
        /// Its stack and version.
        stack: String,
        /// The version.
        version: u32,
        /// Whether device failures paused it (else an admin did).
        failed: bool,
        /// Why, as `rollout show` says it.
        reason: String,
    },
    /// A job finished on every device it targets.
    Job {
        /// The job.
        job: i64,
    },
}

/// What the watch task has not taken yet.
#[derive(Debug, Default)]
struct Inbox {
    /// Each device's latest `connected` state since the last take.
    liveness: HashMap<EndpointId, bool>,
    events: VecDeque<Event>,
    dropped: u64,
}

/// The handle the rest of the hub raises alerts through; never blocks.
#[derive(Debug, Default)]
pub struct Alerts {
    inbox: Mutex<Inbox>,
    /// Wakes the watch task.
    watch: Notify,
    /// Wakes the delivery task (a delivery was queued).
    deliver: Arc<Notify>,
}

impl Alerts {
    /// Raise `event`; dropped (and counted) if the inbox is full.
    pub fn emit(&self, event: Event) {
        let mut inbox = self.lock();
        if inbox.events.len() >= MAX_INBOX {
            inbox.dropped += 1;
            return;
        }
        inbox.events.push_back(event);
        drop(inbox);
        self.watch.notify_one();
    }

    /// The liveness flush's updates: each device's `connected` state as written.
    pub fn liveness(&self, updates: &[LivenessUpdate]) {
        if updates.is_empty() {
            return;
        }
        let mut inbox = self.lock();
        for update in updates {
            inbox.liveness.insert(update.id, update.connected);
        }
        drop(inbox);
        self.watch.notify_one();
    }

    fn take(&self) -> (HashMap<EndpointId, bool>, Vec<Event>) {
        let mut inbox = self.lock();
        if inbox.dropped > 0 {
            warn!(
                dropped = inbox.dropped,
                "alert events dropped: the alert inbox was full"
            );
            inbox.dropped = 0;
        }
        let liveness = std::mem::take(&mut inbox.liveness);
        (liveness, inbox.events.drain(..).collect())
    }

    fn lock(&self) -> MutexGuard<'_, Inbox> {
        // Plain data, consistent after any panic.
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Milliseconds since the Unix epoch, the alerts' clock.
fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(id: u64, connected: bool) -> LivenessUpdate {
        LivenessUpdate {
            id: EndpointId(id),
            last_checkin: None,
            addr: String::new(),
            migrations: 0,
            connected,
            claim: false,
            wire_ended: None,
            path_ended: None,
            path_mtu: None,
        }
    }

    #[test]
    fn liveness_is_coalesced_per_device_and_the_latest_state_wins() {
        let alerts = Alerts::default();
        alerts.liveness(&[update(1, false), update(2, true)]);
        alerts.liveness(&[update(1, true)]);
        let (liveness, events) = alerts.take();
        assert_eq!(
            liveness,
            HashMap::from([(EndpointId(1), true), (EndpointId(2), true)])
        );
        assert!(events.is_empty());
    }

    #[test]
    fn events_beyond_the_inbox_are_dropped_not_waited_for() {
        let alerts = Alerts::default();
        for job in 0..(MAX_INBOX as i64 + 10) {
            alerts.emit(Event::Job { job });
        }
        assert_eq!(alerts.lock().dropped, 10);
        let (_, events) = alerts.take();
        assert_eq!(events.len(), MAX_INBOX);
        assert_eq!(alerts.lock().dropped, 0);
    }
}
