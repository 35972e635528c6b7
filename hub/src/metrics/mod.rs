//! The hub's Prometheus metrics: fleet-level series only, in the OpenMetrics text format, on
//! `GET /metrics` ([`http`]).
//!
//! No series carries a device's id or name: an operator of 25,000 devices needs the fleet's shape
//! (how many online, how late check-ins come, how long a summon takes), and per-device labels would
//! make every scrape as large as the fleet. Per-device detail is the endpoint list's job.
//!
//! Two kinds of series, so the hot paths pay nothing for them:
//! - **events** — check-ins, summons, proxied requests, the agents' UDP bytes, store flushes —
//!   are recorded where they happen into atomics: a counter add, or a bucket add of a
//!   [`histogram::DurationHistogram`]. No lock, so 25,000 session drivers share them freely.
//! - **readings** — devices by status, sessions, requests in flight, handshakes and the
//!   admission queue, rollout and job progress — are what the hub keeps anyway (the session
//!   registry, the store, the admission's counters, rollouts and jobs in memory), read once per
//!   scrape ([`reading`]) instead of mirrored on every change.
//!
//! Names follow Prometheus's conventions: `outpost_hub_` and the unit (`_seconds`, `_bytes`);
//! counters end in `_total`. The crate (`prometheus-client`) encodes both kinds.

mod classes;
mod histogram;
pub(crate) mod http;
mod reading;

use std::time::Duration;

use axum::http::StatusCode;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::registry::{Registry, Unit};
use thiserror::Error;

use crate::context::HubContext;
use crate::store::StoreError;
use classes::StatusClasses;
pub(crate) use classes::WireBytes;
use histogram::DurationHistogram;

/// Why a scrape could not be answered.
#[derive(Debug, Error)]
pub enum ScrapeError {
    /// The store could not be read for the device counts; the next scrape tries again.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A series could not be written (a bug in a label or a name).
    #[error("encoding the metrics failed")]
    Encode(#[from] std::fmt::Error),
}

/// Every event series of one hub, registered once; the readings join them at each scrape.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    checkin_rtt: DurationHistogram,
    checkin_lag: DurationHistogram,
    summons: DurationHistogram,
    proxy: StatusClasses,
    wire: WireBytes,
    flushes: DurationHistogram,
    flushed_rows: Counter,
    traffic: Family<[(&'static str, &'static str); 2], Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every series at zero.
    pub fn new() -> Self {
        let mut metrics = Self {
            registry: Registry::default(),
            // QUIC's smoothed round trip: 1 ms (LAN) to 8 s (a GEO link under an outage).
            checkin_rtt: DurationHistogram::new(exponential_buckets(0.001, 2.0, 14)),
            // How late a check-in came past its interval: 50 ms (jitter) to ~100 s (retries).
            checkin_lag: DurationHistogram::new(exponential_buckets(0.05, 2.0, 12)),
            // One round trip to the device and back: 5 ms to the 15 s summon timeout and past.
            summons: DurationHistogram::new(exponential_buckets(0.005, 2.0, 13)),
            proxy: StatusClasses::default(),
            wire: WireBytes::default(),
            // A few rows (ms) to a reconnect storm's thousands waiting for the writer (s).
            flushes: DurationHistogram::new(exponential_buckets(0.001, 2.0, 15)),
            flushed_rows: Counter::default(),
            traffic: Family::default(),
        };
        metrics.register();
        metrics
    }

    fn register(&mut self) {
        let r = &mut self.registry;
        r.register_with_unit(
            "outpost_hub_checkin_rtt",
            "QUIC's smoothed round trip of the agent's connection at each check-in",
            Unit::Seconds,
            self.checkin_rtt.clone(),
        );
        r.register_with_unit(
            "outpost_hub_checkin_lag",
            "How much later than its check-in interval each check-in arrived (0 when on time)",
            Unit::Seconds,
            self.checkin_lag.clone(),
        );
        r.register_with_unit(
            "outpost_hub_summon_duration",
            "From sending a summon to the device's Ready, for summons a device answered",
            Unit::Seconds,
            self.summons.clone(),
        );
        r.register(
            "outpost_hub_proxy_requests",
            "Docker API requests through the proxy route, by the class of their answer's status",
            self.proxy.family(),
        );
        r.register_with_unit(
            "outpost_hub_wire",
            "UDP payload bytes on the agents' socket (sessions, enrolments, handshakes)",
            Unit::Bytes,
            self.wire.family(),
        );
        r.register_with_unit(
            "outpost_hub_store_flush_duration",
            "Liveness flushes, from the call to the commit (waiting for the store's writer included)",
            Unit::Seconds,
            self.flushes.clone(),
        );
        r.register(
            "outpost_hub_store_flush_rows",
            "Liveness rows the flushes wrote",
            self.flushed_rows.clone(),
        );
        r.register_with_unit(
            "outpost_hub_device_traffic",
            "Bytes the devices' sessions carried, by class and direction, added at each traffic \
             flush (every 5 minutes, and as sessions end)",
            Unit::Bytes,
            self.traffic.clone(),
        );
    }

    /// The counters the agents' socket adds its bytes to.
    pub(crate) fn wire(&self) -> WireBytes {
        self.wire.clone()
    }

    /// A check-in arrived on a connection whose round trip is `rtt`, `lag` later than its interval
    /// (none for a session's first).
    pub fn checkin(&self, rtt: Duration, lag: Option<Duration>) {
        self.checkin_rtt.observe(rtt);
        if let Some(lag) = lag {
            self.checkin_lag.observe(lag);
        }
    }

    /// A summon was answered after `waited`; `None` when the device was active already.
    pub fn summoned(&self, waited: Option<Duration>) {
        if let Some(waited) = waited {
            self.summons.observe(waited);
        }
    }

    /// The summon histogram, for a summon answered on a task of its own: the request that sent
    /// it went on without waiting (a stream opened on standby credit).
    pub(crate) fn summons(&self) -> DurationHistogram {
        self.summons.clone()
    }

    /// A proxied Docker request was answered with `status` (the engine's, or the hub's refusal).
    pub fn proxied(&self, status: StatusCode) {
        self.proxy.count(status);
    }

    /// A liveness flush wrote `rows` in `took`.
    pub fn flushed(&self, took: Duration, rows: usize) {
        self.flushes.observe(took);
        self.flushed_rows.inc_by(rows as u64);
    }

    /// A traffic flush added `up` and `down` bytes of `class` (`crate::traffic::tally::Class`).
    pub fn traffic(&self, class: &'static str, up: u64, down: u64) {
        for (direction, bytes) in [("up", up), ("down", down)] {
            if bytes > 0 {
                self.traffic
                    .get_or_create(&[("class", class), ("direction", direction)])
                    .inc_by(bytes);
            }
        }
    }

    /// The whole exposition: the event series, then what the hub reads now.
    pub async fn render(&self, ctx: &HubContext) -> Result<String, ScrapeError> {
        let mut readings = Registry::default();
        readings.register_collector(Box::new(reading::Reading::take(ctx).await?));
        let mut body = String::new();
        encode_registry(&mut body, &self.registry)?;
        encode_registry(&mut body, &readings)?;
        encode_eof(&mut body)?;
        Ok(body)
    }
}

#[cfg(test)]
mod tests;
