//! An operator points a real Prometheus (Debian's package) at the hub's metrics listener and
//! watches the fleet: a device created shows offline, its agent connecting turns it to standby
//! and the check-ins start counting, a `docker ps` through the hub summons it (active, one summon
//! timed, answers counted by class), killing its agent brings it back to offline, and a rollout
//! and a job aimed at it count it. The admin API's `/metrics` answers only an admin. The agent's own
//! series (`--metrics`), scraped by Prometheus too, follow its session through a hub restart.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::time::Duration;

use outpost_tests::docker::{require_engine, DockerCli, DOCKER_SOCKET};
use outpost_tests::prometheus::Prometheus;
use outpost_tests::stacks;
use outpost_tests::{wait_for, Agent, Hub};

/// Long enough for a few scrapes after the change and, for a killed agent, the liveness bound
/// at the test hub's 1 s check-ins (2 × 1 s + 10 s).
const SEEN: Duration = Duration::from_secs(40);

/// The series of one device status.
fn devices(status: &str) -> String {
    format!("outpost_hub_devices{{status=\"{status}\"}}")
}

/// The hub's metrics listener, as its log announces it.
fn metrics_target(hub: &Hub) -> String {
    wait_for(
        Duration::from_secs(10),
        "the metrics listener's address",
        || {
            let log = hub.log();
            let line = log.lines().find(|l| l.contains("metrics on http://"))?;
            let rest = line.split("http://").nth(1)?;
            Some(rest.trim_end_matches("/metrics").trim().to_owned())
        },
    )
}

#[test]
fn prometheus_watches_a_device_come_online_get_summoned_and_go_offline() {
    require_engine();
    let hub = Hub::start_with_flags(&["--metrics-listen", "127.0.0.1:0"]);
    let prometheus = Prometheus::scraping(&metrics_target(&hub));
    exactly(&prometheus, "up{job=\"outpost-hub\"}", 1.0);
    exactly(&prometheus, &devices("offline"), 0.0);

    let (id, key) = hub.create_endpoint("kiosk", &[]);
    exactly(&prometheus, &devices("offline"), 1.0);

    let dir = hub.data_dir.parent().unwrap().join("agent");
    let docker_host = format!("unix://{DOCKER_SOCKET}");
    let mut agent = Agent::start(&dir, &[("EDGE_KEY", &key), ("DOCKER_HOST", &docker_host)]);
    online_and_checking_in(&prometheus);

    DockerCli::for_endpoint(&hub, id).ok(&["ps"]);
    at_least(
        &prometheus,
        "outpost_hub_summon_duration_seconds_count",
        1.0,
    );
    at_least(
        &prometheus,
        "outpost_hub_proxy_requests_total{class=\"2xx\"}",
        2.0,
    );
    // Active for the test hub's 3 s standby period: some scrape saw it.
    let active = format!("max_over_time({}[1m])", devices("active"));
    exactly(&prometheus, &active, 1.0);
    exactly(&prometheus, "outpost_hub_proxy_requests_in_flight", 0.0);

    agent.kill();
    exactly(&prometheus, &devices("offline"), 1.0);
    assert_eq!(prometheus.value(&devices("standby")), Some(0.0));
    assert_eq!(prometheus.value(&devices("active")), Some(0.0));

    // A rollout and a job aimed at the device count it among their targets (the job queued, or
    // sent to the session the hub holds until it times out).
    rollout_and_job_for(&hub, id);
    exactly(&prometheus, "sum(outpost_hub_rollouts)", 1.0);
    exactly(&prometheus, "sum(outpost_hub_rollout_targets)", 1.0);
    exactly(&prometheus, "outpost_hub_jobs_open", 1.0);
    exactly(&prometheus, "sum(outpost_hub_job_targets)", 1.0);
}

/// The device counts online, and what its session does is counted.
fn online_and_checking_in(prometheus: &Prometheus) {
    exactly(prometheus, &devices("standby"), 1.0);
    assert_eq!(prometheus.value(&devices("offline")), Some(0.0));
    exactly(prometheus, "outpost_hub_sessions", 1.0);
    at_least(prometheus, "outpost_hub_checkin_rtt_seconds_count", 2.0);
    at_least(prometheus, "outpost_hub_checkin_lag_seconds_count", 1.0);
    // The enrolment's handshake and the session's.
    at_least(
        prometheus,
        "outpost_hub_handshakes_total{outcome=\"accepted\"}",
        2.0,
    );
    at_least(
        prometheus,
        "outpost_hub_wire_bytes_total{direction=\"received\"}",
        1.0,
    );
    at_least(
        prometheus,
        "outpost_hub_store_flush_duration_seconds_count",
        1.0,
    );
}

/// Deploy a stack to endpoint `id` and run a job on it.
fn rollout_and_job_for(hub: &Hub, id: u64) {
    let endpoint = id.to_string();
    stacks::save(hub, hub.data_dir.parent().unwrap(), "app", COMPOSE);
    stacks::deploy(hub, "app", &["--endpoint", &endpoint]);
    let created = hub.cli(&[
        "job",
        "run",
        "--endpoint",
        &endpoint,
        "--",
        "POST",
        "/images/prune",
    ]);
    assert!(created.status.success(), "{created:?}");
}

/// Wait until Prometheus holds `value` for `promql`.
fn exactly(prometheus: &Prometheus, promql: &str, value: f64) {
    prometheus.wait_value(promql, SEEN, |v| v == value);
}

/// Wait until Prometheus holds at least `value` for `promql`.
fn at_least(prometheus: &Prometheus, promql: &str, value: f64) {
    prometheus.wait_value(promql, SEEN, |v| v >= value);
}

/// A stack for the rollout: never applied (its agent is gone).
const COMPOSE: &str = "services:\n  web:\n    image: outpost-test/busybox:latest\n";

#[test]
fn prometheus_watches_an_agent_lose_its_hub_and_come_back() {
    let mut hub = Hub::start();
    let (id, key) = hub.create_endpoint("kiosk", &[]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = format!("127.0.0.1:{port}");
    let dir = hub.data_dir.parent().unwrap().join("agent");
    let _agent = Agent::start(
        &dir,
        &[("EDGE_KEY", &key), ("OUTPOST_AGENT_METRICS", &target)],
    );
    hub.wait_status(id, "standby", Duration::from_secs(20));
    let prometheus = Prometheus::scraping(&target);
    exactly(&prometheus, "outpost_agent_connected", 1.0);
    exactly(&prometheus, "outpost_agent_sessions_total", 1.0);
    at_least(&prometheus, "outpost_agent_checkins_total", 2.0);
    at_least(&prometheus, "outpost_agent_checkin_rtt_seconds_count", 2.0);

    hub.stop();
    exactly(&prometheus, "outpost_agent_connected", 0.0);
    at_least(
        &prometheus,
        "outpost_agent_interruptions_total{cause=\"session\"}",
        1.0,
    );
    hub.restart();
    exactly(&prometheus, "outpost_agent_sessions_total", 2.0);
    exactly(&prometheus, "outpost_agent_connected", 1.0);
}

#[test]
fn the_admin_api_serves_metrics_to_an_admin_only() {
    let hub = Hub::start();
    let answer = hub.api_call("GET", "/metrics", None);
    assert_eq!(answer.status, 200);
    let content_type = answer.headers["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let body = String::from_utf8(answer.body).unwrap();
    assert!(
        body.contains("outpost_hub_devices{status=\"offline\"} 0"),
        "{body}"
    );

    let (status, body) = get_without_credential(&hub, "/metrics");
    assert_eq!(status, 401, "{body}");
    assert!(!body.contains("outpost_hub_"), "{body}");
}

/// A GET on the admin API that trusts the hub's CA but shows no credential.
fn get_without_credential(hub: &Hub, path: &str) -> (u16, String) {
    let read = |name: &str| std::fs::read(hub.data_dir.join(name)).unwrap();
    let ca = reqwest::Certificate::from_pem(&read("ca.pem")).unwrap();
    let url = format!(
        "{}{path}",
        String::from_utf8(read("api.url")).unwrap().trim()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .add_root_certificate(ca)
            .build()
            .unwrap();
        let response = client.get(&url).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    })
}
