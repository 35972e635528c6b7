//! Trace-driven capacity in the mahimahi format.
//!
//! A mahimahi trace lists, one per line, the millisecond (from the start of the trace) at which one
//! 1500-byte packet may cross the link; a millisecond repeated on several lines carries several
//! packets; when the trace ends it starts again, shifted by its last timestamp. Recorded traces of
//! real cellular links (Winstein et al., NSDI 2013) replay capacity that varies from second to
//! second, which no constant rate captures.
//!
//! Like mahimahi, an opportunity serves up to [`OPPORTUNITY_BYTES`] bytes from the queue; a larger
//! packet spans several opportunities and an opportunity with an empty queue is wasted.

use std::path::Path;
use std::time::Duration;

use crate::error::TraceError;

/// Bytes one delivery opportunity can carry (mahimahi's MTU-sized packet).
pub const OPPORTUNITY_BYTES: u32 = 1500;

/// A parsed capacity trace: sorted opportunity times in ms and the repeat period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    times_ms: Vec<u64>,
    period_ms: u64,
}

impl Trace {
    /// Parses a trace from text (one millisecond timestamp per line; blank lines ignored).
    pub fn parse(text: &str) -> Result<Self, TraceError> {
        let mut times_ms = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let ms: u64 = line.parse().map_err(|_| TraceError::BadLine {
                line: i + 1,
                text: line.to_owned(),
            })?;
            if times_ms.last().is_some_and(|&last| ms < last) {
                return Err(TraceError::NotMonotonic { line: i + 1, ms });
            }
            times_ms.push(ms);
        }
        let period_ms = times_ms.last().copied().unwrap_or(0);
        if period_ms == 0 {
            return Err(TraceError::Empty);
        }
        Ok(Self {
            times_ms,
            period_ms,
        })
    }

    /// Reads and parses a trace file.
    pub fn load(path: &Path) -> Result<Self, TraceError> {
        let text = std::fs::read_to_string(path).map_err(|source| TraceError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Number of opportunities in one pass of the trace.
    pub fn len(&self) -> usize {
        self.times_ms.len()
    }

    /// Always false: a parsed trace has at least one opportunity.
    pub fn is_empty(&self) -> bool {
        self.times_ms.is_empty()
    }

    /// Length of one pass, after which the trace repeats.
    pub fn period(&self) -> Duration {
        Duration::from_millis(self.period_ms)
    }

    /// Mean capacity over one pass, in bits per second.
    pub fn mean_rate_bps(&self) -> f64 {
        self.len() as f64 * f64::from(OPPORTUNITY_BYTES) * 8.0 / (self.period_ms as f64 / 1e3)
    }

    /// Time of the `n`-th opportunity (counting across repeats) from the start of the trace.
    pub fn opportunity_time(&self, n: u64) -> Duration {
        let len = self.times_ms.len() as u64;
        let cycle = n / len;
        let index = (n % len) as usize;
        Duration::from_millis(cycle * self.period_ms + self.times_ms[index])
    }

    /// Index of the first opportunity at or after `elapsed`.
    pub fn first_at_or_after(&self, elapsed: Duration) -> u64 {
        let ceil_ms = elapsed.as_nanos().div_ceil(1_000_000) as u64;
        let cycle = ceil_ms / self.period_ms;
        let within = ceil_ms % self.period_ms;
        let index = self.times_ms.partition_point(|&t| t < within) as u64;
        cycle * self.times_ms.len() as u64 + index
    }
}
