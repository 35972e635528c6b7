//! The agent's own Prometheus series (`outpost-agent --metrics 127.0.0.1:PORT`, issue #17): is
//! the session up, how many sessions and interruptions (by cause), check-ins acknowledged and
//! their round trip. A device's monitoring (node-exporter's neighbour, a local Prometheus agent)
//! scrapes it; the hub's `/metrics` stays fleet-level.
//!
//! The series are fed by the session's [`SessionObserver`] hooks, so the driver knows nothing of
//! them. Served in the OpenMetrics text format (`prometheus-client`, the crate the hub uses) on a
//! plain-HTTP listener bound to loopback only: it says nothing secret, but nothing off the device
//! has any business with it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tracing::{info, warn};

use crate::driver::{Interruption, SessionObserver};

/// The exposition's media type.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Check-in round trips, seconds: from a LAN's millisecond to a GEO link's 600 ms and a congested
/// one's seconds.
const RTT_BUCKETS: [f64; 10] = [0.005, 0.02, 0.05, 0.1, 0.2, 0.4, 0.7, 1.0, 2.0, 5.0];

/// Why a session ended or could not start.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Cause {
    cause: &'static str,
}

/// The agent's series.
#[derive(Debug)]
pub struct AgentMetrics {
    registry: Registry,
    connected: Gauge,
    sessions: Counter,
    interruptions: Family<Cause, Counter>,
    checkins: Counter,
    checkin_rtt: Histogram,
}

impl AgentMetrics {
    /// Every series at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("outpost_agent");
        let connected = Gauge::default();
        let sessions = Counter::default();
        let interruptions = Family::<Cause, Counter>::default();
        let checkins = Counter::default();
        let checkin_rtt = Histogram::new(RTT_BUCKETS);
        registry.register(
            "connected",
            "1 while a session with the hub is up",
            connected.clone(),
        );
        registry.register("sessions", "Sessions established", sessions.clone());
        registry.register(
            "interruptions",
            "Sessions lost or not set up, by cause (dial: the hub was not reached; session: an established one ended)",
            interruptions.clone(),
        );
        registry.register(
            "checkins",
            "Check-ins the hub acknowledged",
            checkins.clone(),
        );
        registry.register(
            "checkin_rtt_seconds",
            "Time from a check-in to its acknowledgement",
            checkin_rtt.clone(),
        );
        Self {
            registry,
            connected,
            sessions,
            interruptions,
            checkins,
            checkin_rtt,
        }
    }

    /// The series in OpenMetrics text.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl SessionObserver for AgentMetrics {
    fn established(&self) {
        self.sessions.inc();
        self.connected.set(1);
    }

    fn checkin_acked(&self, rtt: Duration) {
        self.checkins.inc();
        self.checkin_rtt.observe(rtt.as_secs_f64());
    }

    fn interrupted(&self, cause: &Interruption) {
        self.connected.set(0);
        let cause = match cause {
            Interruption::Dial(_) => "dial",
            Interruption::Session(_) => "session",
        };
        self.interruptions.get_or_create(&Cause { cause }).inc();
    }
}

async fn scrape(State(metrics): State<Arc<AgentMetrics>>) -> Response {
    match metrics.render() {
        Ok(body) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Serve `GET /metrics` on `addr` (a loopback address); `None`, with a warning, if it cannot bind.
pub fn start(addr: SocketAddr) -> Option<Arc<AgentMetrics>> {
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .and_then(tokio::net::TcpListener::from_std)
        .inspect_err(|e| warn!(%addr, "this agent serves no metrics: {e}"))
        .ok()?;
    let metrics = Arc::new(AgentMetrics::new());
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(metrics.clone());
    info!(%addr, "metrics listener (plain HTTP, GET /metrics)");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            warn!("metrics listener stopped: {e}");
        }
    });
    Some(metrics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dial::DialError;

    fn line<'a>(text: &'a str, series: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(series))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    }

    #[test]
    fn the_series_follow_the_session() {
        let metrics = AgentMetrics::new();
        let text = metrics.render().expect("render");
        assert_eq!(
            line(&text, "outpost_agent_connected "),
            "outpost_agent_connected 0"
        );
        metrics.established();
        metrics.checkin_acked(Duration::from_millis(30));
        metrics.checkin_acked(Duration::from_millis(600));
        let text = metrics.render().expect("render");
        assert_eq!(
            line(&text, "outpost_agent_connected "),
            "outpost_agent_connected 1"
        );
        assert_eq!(
            line(&text, "outpost_agent_sessions_total"),
            "outpost_agent_sessions_total 1"
        );
        assert_eq!(
            line(&text, "outpost_agent_checkins_total"),
            "outpost_agent_checkins_total 2"
        );
        assert_eq!(
            line(
                &text,
                "outpost_agent_checkin_rtt_seconds_bucket{le=\"0.05\"}"
            ),
            "outpost_agent_checkin_rtt_seconds_bucket{le=\"0.05\"} 1"
        );
        let unreachable = DialError::Unreachable {
            addrs: vec!["198.18.0.1:4433".into()],
            last: "timed out".into(),
        };
        metrics.interrupted(&Interruption::Dial(unreachable));
        let text = metrics.render().expect("render");
        assert_eq!(
            line(&text, "outpost_agent_connected "),
            "outpost_agent_connected 0"
        );
        assert_eq!(
            line(&text, "outpost_agent_interruptions_total{cause=\"dial\"}"),
            "outpost_agent_interruptions_total{cause=\"dial\"} 1"
        );
    }
}
