//! The exposition as a scraper reads it: each series' lines, before and after the hub records or
//! changes what it counts. Readings come from a real hub in this process (store, registry,
//! admission), on loopback with port 0.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;
use crate::config::HubConfig;
use crate::server::{self, RunningHub};
use crate::store::{endpoints, EndpointKind, NewEndpoint};

/// The value of the sample `series` (name and labels as written) in `body`.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.parse().expect("a number"))
}

fn encode_events(metrics: &Metrics) -> String {
    let mut body = String::new();
    encode_registry(&mut body, &metrics.registry).expect("encodes");
    body
}

#[test]
fn a_histogram_counts_each_observation_in_the_first_bucket_that_holds_it() {
    let histogram = DurationHistogram::new([0.01, 0.1, 1.0]);
    for ms in [5, 10, 11, 500, 3_000] {
        histogram.observe(Duration::from_millis(ms));
    }
    let mut registry = Registry::default();
    registry.register_with_unit("h", "test", Unit::Seconds, histogram);
    let mut body = String::new();
    encode_registry(&mut body, &registry).expect("encodes");
    assert_eq!(
        sample(&body, "h_seconds_bucket{le=\"0.01\"}"),
        Some(2.0),
        "{body}"
    );
    assert_eq!(sample(&body, "h_seconds_bucket{le=\"0.1\"}"), Some(3.0));
    assert_eq!(sample(&body, "h_seconds_bucket{le=\"1.0\"}"), Some(4.0));
    assert_eq!(sample(&body, "h_seconds_bucket{le=\"+Inf\"}"), Some(5.0));
    assert_eq!(sample(&body, "h_seconds_count"), Some(5.0));
    assert_eq!(sample(&body, "h_seconds_sum"), Some(3.526));
}

#[test]
fn the_event_series_start_at_zero_and_move_as_the_hub_records() {
    let metrics = Metrics::new();
    let before = encode_events(&metrics);
    for series in [
        "outpost_hub_checkin_rtt_seconds_count",
        "outpost_hub_summon_duration_seconds_count",
        "outpost_hub_store_flush_rows_total",
        "outpost_hub_proxy_requests_total{class=\"2xx\"}",
        "outpost_hub_wire_bytes_total{direction=\"sent\"}",
    ] {
        assert_eq!(sample(&before, series), Some(0.0), "{series} in {before}");
    }

    metrics.checkin(Duration::from_millis(40), None);
    metrics.checkin(Duration::from_millis(60), Some(Duration::from_secs(2)));
    metrics.summoned(None);
    metrics.summoned(Some(Duration::from_millis(80)));
    metrics.proxied(StatusCode::OK);
    metrics.proxied(StatusCode::SWITCHING_PROTOCOLS);
    metrics.proxied(StatusCode::SERVICE_UNAVAILABLE);
    metrics.flushed(Duration::from_millis(3), 12);
    metrics.wire().sent(1200);
    metrics.wire().received(80);

    let after = encode_events(&metrics);
    let expect = [
        ("outpost_hub_checkin_rtt_seconds_count", 2.0),
        ("outpost_hub_checkin_rtt_seconds_sum", 0.1),
        ("outpost_hub_checkin_lag_seconds_count", 1.0),
        ("outpost_hub_summon_duration_seconds_count", 1.0),
        ("outpost_hub_proxy_requests_total{class=\"1xx\"}", 1.0),
        ("outpost_hub_proxy_requests_total{class=\"2xx\"}", 1.0),
        ("outpost_hub_proxy_requests_total{class=\"5xx\"}", 1.0),
        ("outpost_hub_store_flush_duration_seconds_count", 1.0),
        ("outpost_hub_store_flush_rows_total", 12.0),
        ("outpost_hub_wire_bytes_total{direction=\"sent\"}", 1200.0),
        ("outpost_hub_wire_bytes_total{direction=\"received\"}", 80.0),
    ];
    for (series, value) in expect {
        assert_eq!(sample(&after, series), Some(value), "{series} in {after}");
    }
}

async fn hub(dir: &std::path::Path) -> RunningHub {
    let loopback = "127.0.0.1:0".parse().expect("address");
    let config = HubConfig {
        agent_listen: loopback,
        api_listen: loopback,
        metrics_listen: Some(loopback),
        ..HubConfig::new(dir.to_owned())
    };
    server::start(config).await.expect("the hub starts")
}

fn device(name: &str) -> NewEndpoint {
    NewEndpoint {
        name: name.to_owned(),
        kind: EndpointKind::Device,
        preassigned: None,
        secret_hash: [0; 32],
    }
}

#[tokio::test]
async fn devices_are_counted_by_status_from_the_store_and_the_sessions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let hub = hub(dir.path()).await;
    let ctx = hub.ctx.clone();
    let body = ctx.metrics.render(&ctx).await.expect("renders");
    assert!(body.ends_with("# EOF\n"), "{body}");
    for status in ["pending", "offline", "standby", "active"] {
        let series = format!("outpost_hub_devices{{status=\"{status}\"}}");
        assert_eq!(sample(&body, &series), Some(0.0), "{series} in {body}");
    }
    assert_eq!(sample(&body, "outpost_hub_sessions"), Some(0.0));

    {
        let conn = ctx.store.lock();
        for name in ["a", "b", "c"] {
            endpoints::create(&conn, &device(name), 0).expect("created");
        }
        conn.execute("UPDATE endpoints SET approved = 0 WHERE name = 'c'", [])
            .expect("one waits for approval");
    }
    let body = ctx.metrics.render(&ctx).await.expect("renders");
    assert_eq!(
        sample(&body, "outpost_hub_devices{status=\"offline\"}"),
        Some(2.0)
    );
    assert_eq!(
        sample(&body, "outpost_hub_devices{status=\"pending\"}"),
        Some(1.0)
    );
    assert_eq!(sample(&body, "outpost_hub_jobs_open"), Some(0.0));
    assert_eq!(
        sample(&body, "outpost_hub_rollouts{state=\"running\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&body, "outpost_hub_handshakes_total{outcome=\"accepted\"}"),
        Some(0.0)
    );
    hub.shutdown().await;
}

/// One HTTP/1.1 request to `addr`; the whole answer as text.
async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    let request = format!("GET {path} HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.expect("sent");
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.expect("answered");
    answer
}

#[tokio::test]
async fn the_metrics_listener_serves_the_exposition_and_nothing_else() {
    let dir = tempfile::tempdir().expect("temp dir");
    let hub = hub(dir.path()).await;
    let addr = hub.metrics_addr.expect("a metrics listener");
    let answer = get(addr, "/metrics").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let content_type = format!("content-type: {}", http::CONTENT_TYPE);
    assert!(
        answer.to_ascii_lowercase().contains(&content_type),
        "{answer}"
    );
    assert!(
        answer.contains("outpost_hub_devices{status=\"offline\"} 0"),
        "{answer}"
    );
    assert!(answer.trim_end().ends_with("# EOF"), "{answer}");
    let elsewhere = get(addr, "/api/endpoints").await;
    assert!(elsewhere.starts_with("HTTP/1.1 404"), "{elsewhere}");
    hub.shutdown().await;
}
