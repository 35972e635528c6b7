//! Exact drop rules for tests: drop the first N, drop every Nth, drop from t1 to t2.
//!
//! Random loss makes a test assert "about 1 %"; a rule makes it assert "packet 7 was dropped, and
//! exactly 12 were". Each rule counts its own hits so a test can check that the fault it meant to
//! inject really happened (the natlab approach). Rules see every packet submitted to the link,
//! before any other stage, and packet numbers start at 1.

use std::time::Duration;

/// One exact drop rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Drop packets 1..=N.
    DropFirst(u64),
    /// Drop packets N, 2N, 3N, …
    DropEvery(u64),
    /// Drop packets submitted in `[from, to)` after the epoch.
    DropBetween {
        /// Start of the window.
        from: Duration,
        /// End of the window (exclusive).
        to: Duration,
    },
}

impl Rule {
    fn matches(&self, number: u64, elapsed: Duration) -> bool {
        match *self {
            Self::DropFirst(n) => number <= n,
            Self::DropEvery(n) => n > 0 && number % n == 0,
            Self::DropBetween { from, to } => elapsed >= from && elapsed < to,
        }
    }
}

/// Packet numbering and per-rule hit counters.
#[derive(Debug, Clone, Default)]
pub(crate) struct RuleState {
    seen: u64,
    hits: Vec<u64>,
}

impl RuleState {
    pub(crate) fn new(rules: &[Rule]) -> Self {
        Self {
            seen: 0,
            hits: vec![0; rules.len()],
        }
    }

    /// Numbers the packet and returns the index of the first matching rule; every matching rule
    /// counts a hit.
    pub(crate) fn check(&mut self, rules: &[Rule], elapsed: Duration) -> Option<usize> {
        self.seen += 1;
        let mut first = None;
        for (i, rule) in rules.iter().enumerate() {
            if rule.matches(self.seen, elapsed) {
                self.hits[i] += 1;
                first = first.or(Some(i));
            }
        }
        first
    }

    pub(crate) fn hits(&self) -> &[u64] {
        &self.hits
    }
}
