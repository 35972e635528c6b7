//! A histogram of durations whose observations are atomic adds: one bucket counter and the sum.
//!
//! Why not the crate's own `Histogram`: it keeps its buckets behind a mutex, and every session
//! driver of a 25,000-device hub observes a check-in here (~1,000 a second), as do the proxy and
//! the flusher. Here an observation never waits for another; a scrape reads each counter once
//! and reports the total as the sum of the buckets it read, so `_count` always equals the `+Inf`
//! bucket even while observations land during the scrape.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// Durations counted into fixed buckets (upper bounds in seconds, inclusive); cheap to clone,
/// every clone counts into the same buckets.
#[derive(Clone, Debug)]
pub(crate) struct DurationHistogram {
    inner: Arc<Buckets>,
}

#[derive(Debug)]
struct Buckets {
    /// Upper bounds in seconds, ascending; the last bucket (`+Inf`) has none.
    bounds: Box<[f64]>,
    /// One more than `bounds`: the last counts what exceeds every bound.
    counts: Box<[AtomicU64]>,
    /// The sum of every observation, in nanoseconds.
    sum_nanos: AtomicU64,
}

impl DurationHistogram {
    /// A histogram with these upper bounds (seconds, ascending) and `+Inf`.
    pub(crate) fn new(bounds: impl IntoIterator<Item = f64>) -> Self {
        let bounds: Box<[f64]> = bounds.into_iter().collect();
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self {
            inner: Arc::new(Buckets {
                bounds,
                counts,
                sum_nanos: AtomicU64::new(0),
            }),
        }
    }

    /// Count one observation.
    pub(crate) fn observe(&self, value: Duration) {
        let seconds = value.as_secs_f64();
        let bucket = self.inner.bounds.partition_point(|bound| *bound < seconds);
        self.inner.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        self.inner.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Each bucket's upper bound (the last `+Inf`) and what it counted, not cumulated.
    fn buckets(&self) -> Vec<(f64, u64)> {
        let bounds = self.inner.bounds.iter().copied();
        bounds
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.inner.counts.iter())
            .map(|(bound, count)| (bound, count.load(Ordering::Relaxed)))
            .collect()
    }
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets = self.buckets();
        let count = buckets.iter().map(|(_, count)| count).sum();
        let sum = self.inner.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}
