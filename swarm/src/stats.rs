//! What the swarm counts while it runs, and the report it ends with.
//!
//! Every agent gets an [`AgentWatch`] (its index into the shared [`Stats`]) as its session
//! observer, so the swarm knows which agents are online without asking the hub.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use outpost_agent::dial::DialError;
use outpost_agent::driver::{Interruption, SessionEnd, SessionObserver};
use serde::Serialize;
use tokio::sync::OwnedSemaphorePermit;

/// Counters shared by every agent of the swarm.
#[derive(Debug)]
pub struct Stats {
    online: Vec<AtomicBool>,
    online_count: AtomicUsize,
    sessions: AtomicU64,
    checkin_rtt: Mutex<Histogram<u64>>,
    summon: Mutex<Histogram<u64>>,
    errors: Mutex<BTreeMap<String, u64>>,
}

/// Largest latency a histogram tells apart, in microseconds: an hour, far above any summon timeout
/// or check-in round trip; a larger sample is counted as this.
const MAX_MICROS: u64 = 3_600_000_000;

fn histogram() -> Mutex<Histogram<u64>> {
    // Microseconds, three significant figures, bounds fixed up front: `saturating_record` never
    // resizes an auto-resizing histogram, so `Histogram::new` (bounds 1..2) clamped every sample
    // above 2.047 ms to 2 µs and reported a round trip faster than loopback UDP.
    Mutex::new(
        Histogram::new_with_bounds(1, MAX_MICROS, 3)
            .expect("hdrhistogram supports these bounds at 3 significant figures"),
    )
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Stats {
    /// Counters for `agents` agents, all offline.
    pub fn new(agents: usize) -> Self {
        Self {
            online: (0..agents).map(|_| AtomicBool::new(false)).collect(),
            online_count: AtomicUsize::new(0),
            sessions: AtomicU64::new(0),
            checkin_rtt: histogram(),
            summon: histogram(),
            errors: Mutex::new(BTreeMap::new()),
        }
    }

    /// Agents whose session is up now.
    pub fn online(&self) -> usize {
        self.online_count.load(Ordering::Relaxed)
    }

    /// Count one error of `kind`.
    pub fn error(&self, kind: impl Into<String>) {
        *lock(&self.errors).entry(kind.into()).or_default() += 1;
    }

    /// Record a successful summon that took `took`.
    pub fn summoned(&self, took: Duration) {
        record(&self.summon, took);
    }

    fn set_online(&self, index: usize, online: bool) {
        let Some(flag) = self.online.get(index) else {
            return;
        };
        if flag.swap(online, Ordering::Relaxed) != online {
            if online {
                self.online_count.fetch_add(1, Ordering::Relaxed);
            } else {
                self.online_count.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// The report's figures so far.
    pub fn snapshot(&self) -> Measured {
        Measured {
            online: self.online(),
            sessions: self.sessions.load(Ordering::Relaxed),
            checkin_rtt_ms: Percentiles::of(&lock(&self.checkin_rtt)),
            summon_ms: Percentiles::of(&lock(&self.summon)),
            errors: lock(&self.errors).clone(),
        }
    }
}

fn record(histogram: &Mutex<Histogram<u64>>, took: Duration) {
    let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    lock(histogram).saturating_record(micros.max(1));
}

/// One agent's observer: reports into the shared [`Stats`] under its index, and releases its
/// start slot once its first session is up or fails.
#[derive(Debug)]
pub struct AgentWatch {
    index: usize,
    stats: Arc<Stats>,
    start_slot: Mutex<Option<OwnedSemaphorePermit>>,
}

impl AgentWatch {
    /// The observer of agent `index`, holding `start_slot` until its first attempt ends.
    pub fn new(index: usize, stats: Arc<Stats>, start_slot: OwnedSemaphorePermit) -> Self {
        Self {
            index,
            stats,
            start_slot: Mutex::new(Some(start_slot)),
        }
    }

    fn release_start_slot(&self) {
        lock(&self.start_slot).take();
    }
}

impl SessionObserver for AgentWatch {
    fn established(&self) {
        self.release_start_slot();
        self.stats.sessions.fetch_add(1, Ordering::Relaxed);
        self.stats.set_online(self.index, true);
    }

    fn checkin_acked(&self, rtt: Duration) {
        record(&self.stats.checkin_rtt, rtt);
    }

    fn interrupted(&self, cause: &Interruption) {
        self.release_start_slot();
        self.stats.set_online(self.index, false);
        self.stats.error(interruption_kind(cause));
    }
}

/// A short label: the failure without its details (addresses, reasons).
fn interruption_kind(cause: &Interruption) -> String {
    match cause {
        Interruption::Dial(DialError::Unreachable { last, .. }) => {
            // `last` is "address: reason[: details]"; keep the reason.
            let reason = last.split(": ").nth(1).unwrap_or("unknown");
            format!("dial: unreachable: {reason}")
        }
        Interruption::Dial(e) => format!("dial: {e}"),
        Interruption::Session(SessionEnd::Lost(why)) => {
            format!("session lost: {}", why.split(':').next().unwrap_or(why))
        }
        Interruption::Session(SessionEnd::Silent) => "session lost: timed out".into(),
        Interruption::Session(SessionEnd::UdpBlocked) => "session: UDP blocked".into(),
        Interruption::Session(SessionEnd::Revoked(_)) => "session: revoked".into(),
        Interruption::Session(SessionEnd::HubStopping { .. }) => "session: hub stopping".into(),
        Interruption::Session(SessionEnd::HubGone { .. }) => "session: hub gone".into(),
    }
}

/// p50, p99 and max of a latency histogram, in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    fn of(histogram: &Histogram<u64>) -> Self {
        let ms = |micros: u64| micros as f64 / 1000.0;
        Self {
            count: histogram.len(),
            p50: ms(histogram.value_at_quantile(0.5)),
            p99: ms(histogram.value_at_quantile(0.99)),
            max: ms(histogram.max()),
        }
    }
}

impl fmt::Display for Percentiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples)",
            self.p50, self.p99, self.max, self.count
        )
    }
}

/// What the agents measured.
#[derive(Clone, Debug, Serialize)]
pub struct Measured {
    /// Agents online at the time.
    pub online: usize,
    /// Sessions established, reconnections included.
    pub sessions: u64,
    /// Check-in sent → ack received.
    pub checkin_rtt_ms: Percentiles,
    /// Summon request → answer (the device is ready), successful ones.
    pub summon_ms: Percentiles,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
}

/// The end of a swarm run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Agents run.
    pub agents: usize,
    /// Shared UDP sockets.
    pub sockets: usize,
    /// Identities reused from an earlier run.
    pub reused: usize,
    /// Identities enrolled by this run.
    pub enrolled: usize,
    /// Time to create and enrol the new ones.
    pub enrol_seconds: f64,
    /// Enrolments per second (endpoint creation included).
    pub enrol_per_second: f64,
    /// From start to every agent online, if they all came.
    pub all_online_seconds: Option<f64>,
    /// Summons that failed.
    pub summons_failed: u64,
    /// What the agents measured, at the end.
    #[serde(flatten)]
    pub measured: Measured,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.measured;
        writeln!(
            f,
            "agents:        {} over {} sockets",
            self.agents, self.sockets
        )?;
        writeln!(
            f,
            "enrolment:     {} new, {} reused; {:.1} s, {:.1}/s",
            self.enrolled, self.reused, self.enrol_seconds, self.enrol_per_second
        )?;
        match self.all_online_seconds {
            Some(s) => writeln!(f, "all online:    after {s:.1} s")?,
            None => writeln!(f, "all online:    never")?,
        }
        writeln!(f, "online at end: {} ({} sessions)", m.online, m.sessions)?;
        writeln!(f, "check-in RTT:  {}", m.checkin_rtt_ms)?;
        writeln!(
            f,
            "summon:        {} ({} failed)",
            m.summon_ms, self.summons_failed
        )?;
        writeln!(
            f,
            "errors:        {}",
            if m.errors.is_empty() { "none" } else { "" }
        )?;
        for (kind, count) in &m.errors {
            writeln!(f, "  {count:>8}  {kind}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_of_milliseconds_and_seconds_are_recorded_as_they_are() {
        let histogram = histogram();
        for ms in [1, 5, 40, 2_500] {
            record(&histogram, Duration::from_millis(ms));
        }
        let percentiles = Percentiles::of(&lock(&histogram));
        assert_eq!(percentiles.count, 4);
        assert!((percentiles.p50 - 5.0).abs() < 0.01, "{percentiles:?}");
        assert!((percentiles.max - 2_500.0).abs() < 2.5, "{percentiles:?}");
    }
}
