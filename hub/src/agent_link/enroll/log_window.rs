//! Counting enrolment failures for one summary line per interval: a flood of idle or bogus
//! enrolments must not become a flood of log lines (3,000 idle connections were 3,000 lines).

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

/// How an enrolment connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Enrolled (logged on its own, never counted).
    Enrolled,
    /// Answered with a refusal.
    Refused,
    /// Closed at once: every enrolment slot was taken.
    Busy,
    /// No complete exchange within the deadline.
    TimedOut,
    /// The client went away or broke the stream.
    BrokeOff,
}

/// Counts per outcome since the window opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Counts {
    refused: u64,
    busy: u64,
    timed_out: u64,
    broke_off: u64,
}

/// A summary due: the window's length and its counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Summary {
    span: Duration,
    counts: Counts,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        write!(
            f,
            "{:?}: {} refused, {} turned away busy, {} timed out, {} broke off",
            self.span, c.refused, c.busy, c.timed_out, c.broke_off
        )
    }
}

/// Failures counted since `opened`; a summary once `interval` has passed.
#[derive(Debug)]
pub(super) struct LogWindow {
    interval: Duration,
    opened: Option<Instant>,
    counts: Counts,
}

impl LogWindow {
    pub(super) const fn new(interval: Duration) -> Self {
        Self {
            interval,
            opened: None,
            counts: Counts {
                refused: 0,
                busy: 0,
                timed_out: 0,
                broke_off: 0,
            },
        }
    }

    /// Count `outcome` at `now`; the summary to log when the window is over (the first failure
    /// after a quiet spell opens a window and is reported with it).
    pub(super) fn record(&mut self, now: Instant, outcome: Outcome) -> Option<Summary> {
        let counter = match outcome {
            Outcome::Enrolled => return None,
            Outcome::Refused => &mut self.counts.refused,
            Outcome::Busy => &mut self.counts.busy,
            Outcome::TimedOut => &mut self.counts.timed_out,
            Outcome::BrokeOff => &mut self.counts.broke_off,
        };
        *counter += 1;
        let opened = *self.opened.get_or_insert(now);
        let span = now.saturating_duration_since(opened);
        if span < self.interval {
            return None;
        }
        self.opened = Some(now);
        Some(Summary {
            span,
            counts: std::mem::take(&mut self.counts),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_one_line_per_interval_with_its_counts() {
        let mut window = LogWindow::new(Duration::from_secs(10));
        let start = Instant::now();
        let mut lines = Vec::new();
        for i in 0..3_000u32 {
            let outcome = [Outcome::TimedOut, Outcome::Busy, Outcome::Refused][i as usize % 3];
            let now = start + Duration::from_millis(10) * i;
            lines.extend(window.record(now, outcome));
        }
        // 30 s of attempts: a line at 10 s and one at 20 s; the last 10 s wait for the next.
        assert_eq!(lines.len(), 2);
        let first = lines[0];
        assert_eq!(first.span, Duration::from_secs(10));
        assert_eq!(
            first.counts.busy + first.counts.timed_out + first.counts.refused,
            1_001
        );
        assert!(first.to_string().contains("turned away busy"), "{first}");
        assert_eq!(window.record(start, Outcome::Enrolled), None);
    }
}
